/*
 * cfloor is the smallest graceful PID 1, in C: bench/gofloor -g without the Go runtime.
 * It starts one child as the leader of its own process group, sends SIGTERM to that whole
 * group when it gets one, reaps every child (orphans included), and exits 0 once none is
 * left. Signals are taken with sigwaitinfo in its one thread, as tini does.
 *
 * It is not an init to use. initbench runs it as c-floor-g beside go-floor-g, so
 * docs/benchmarks.md shows what a graceful stop costs on the machine without Go (every
 * service handles its own SIGTERM and exits before the init may), apart from what the Go
 * runtime adds on top (go-floor-g) and what sidecar-init adds on top of that. tini, the
 * goals' anchor, is not graceful: its services are killed by the kernel when it exits.
 *
 * Built like tini is packaged in Debian: dynamically linked, so its start-up pays the same
 * loader as tini's. Build: cc -O2 -s -o cfloor cfloor.c (initbench does).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs("usage: cfloor COMMAND [ARG...]\n", stderr);
		return 2;
	}
	sigset_t wanted;
	sigemptyset(&wanted);
	sigaddset(&wanted, SIGTERM);
	sigaddset(&wanted, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &wanted, NULL) != 0) {
		perror("cfloor: sigprocmask");
		return 2;
	}
	pid_t child = fork();
	if (child < 0) {
		perror("cfloor: fork");
		return 127;
	}
	if (child == 0) {
		setpgid(0, 0);
		sigprocmask(SIG_UNBLOCK, &wanted, NULL);
		execvp(argv[1], argv + 1);
		perror("cfloor: exec");
		_exit(127);
	}
	setpgid(child, child); /* on both sides: the group exists before either goes on */
	for (;;) {
		int sig = sigwaitinfo(&wanted, NULL);
		if (sig == SIGTERM) {
			kill(-child, SIGTERM);
			continue;
		}
		if (sig != SIGCHLD)
			continue; /* EINTR */
		for (;;) {
			pid_t pid = waitpid(-1, NULL, WNOHANG);
			if (pid < 0 && errno == EINTR)
				continue;
			if (pid < 0 && errno == ECHILD)
				return 0; /* every child and orphan is reaped */
			if (pid <= 0)
				break;
		}
	}
}
