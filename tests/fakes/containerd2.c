/* Stands in for containerd 2 as a shim's parent: an executable whose Go
 * build info names containerd 2's main package (all a shim can read of its
 * caller's version), which runs its arguments as a child and exits as it
 * does, as containerd runs `shim ... start`. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

__attribute__((section(".go.buildinfo"), used))
static const char buildinfo[] =
    "\xff Go buildinf:\x08\x02"
    "path\tgithub.com/containerd/containerd/v2/cmd/containerd\n"
    "mod\tgithub.com/containerd/containerd/v2\tv2.0.0\n";

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PROGRAM [ARG...]\n", argv[0]);
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        execv(argv[1], argv + 1);
        perror("execv");
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
