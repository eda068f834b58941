/*
 * The service of the init benchmark's start-up, shutdown, footprint and idle trials: the
 * "tiny static program" of issue 7. It reports on a FIFO that it runs, waits for SIGTERM,
 * reports that, and exits.
 *
 * Why C without libc: the service's own start-up and exit are in every start-up and
 * shutdown figure, for every init, and they are not the init's work. A Go service costs
 * about 1 ms of CPU to start (its runtime), and a static glibc one about as much on a
 * virtual machine (glibc's start-up runs CPUID about a hundred times to size its caches,
 * and each one is a VM exit). Either inflates both sides of every ratio and pulls it
 * towards 1. This one makes at most eight system calls; with it tini's medians here come close to
 * the anchors issue 7 lists.
 *
 * Protocol (the same as bench/service, which the reap trial still uses):
 *   I NAME HOW  written first, when the init handed it SIGTERM "ignored" (SIG_IGN survives
 *            execve: an init that calls signal.Ignore) or "blocked" (so does the mask). A
 *            daemon that keeps what it inherited never takes its stop signal, but this one
 *            would: its sigtimedwait takes a blocked signal, and a blocked signal is queued
 *            even when ignored (the kernel's sig_ignored()). The harness fails the trial;
 *            bench/service cannot tell (the Go runtime installs its own SIGTERM handler, and
 *            unblocks it for signal.Notify, before main runs);
 *   R NAME   written once it runs, with SIGTERM already blocked, so a SIGTERM sent after
 *            the harness read "R" cannot be missed;
 *   T NAME   written when SIGTERM arrives, unless it wrote "I"; then it exits 0.
 * NAME is the argument after -id, else the last element of the working directory (an s6
 * service directory). The FIFO is $INITBENCH_FIFO, opened O_NONBLOCK: the harness holds
 * its read end for the whole run, and one write of under PIPE_BUF bytes is atomic.
 *
 * SIGTERM is taken with rt_sigtimedwait, not a handler: no handler means no signal frame
 * and no restorer to write by hand. Any failure exits 1 (the harness then counts the
 * service as never ready, or not graceful).
 *
 * Build: cc -O2 -static -nostdlib -ffreestanding -fno-stack-protector -s (initbench does).
 */

typedef unsigned long word;

#if defined(__x86_64__)
enum {
	SYS_write = 1,
	SYS_rt_sigaction = 13,
	SYS_rt_sigprocmask = 14,
	SYS_getcwd = 79,
	SYS_rt_sigtimedwait = 128,
	SYS_exit_group = 231,
	SYS_openat = 257,
};

static long syscall4(long n, long a, long b, long c, long d)
{
	register long r10 __asm__("r10") = d;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	return ret;
}

/* The kernel starts a process with argc at the stack pointer, argv and envp above it. */
__asm__(".globl _start\n"
	"_start:\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call start\n"
	"	hlt\n");
#elif defined(__aarch64__)
enum {
	SYS_getcwd = 17,
	SYS_openat = 56,
	SYS_write = 64,
	SYS_exit_group = 94,
	SYS_rt_sigaction = 134,
	SYS_rt_sigprocmask = 135,
	SYS_rt_sigtimedwait = 137,
};

static long syscall4(long n, long a, long b, long c, long d)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
	return x0;
}

__asm__(".globl _start\n"
	"_start:\n"
	"	mov x0, sp\n"
	"	bl start\n");
#else
#error "bench/tinyservice: only x86_64 and aarch64 are written; use bench/service (-service)"
#endif

enum {
	AT_FDCWD = -100,
	O_WRONLY = 01,
	O_NONBLOCK = 04000,
	O_CLOEXEC = 02000000,
	SIG_BLOCK = 0,
	SIG_IGN = 1,
	SIGTERM = 15,
	NAME_MAX_SENT = 200, /* a line stays far under PIPE_BUF */
};

static __attribute__((noreturn)) void exit_group(int status)
{
	for (;;)
		syscall4(SYS_exit_group, status, 0, 0, 0);
}

static void say(const char *msg)
{
	long n = 0;
	while (msg[n])
		n++;
	syscall4(SYS_write, 2, (long)msg, n, 0);
}

static __attribute__((noreturn)) void fail(const char *msg)
{
	say("bench tiny service: ");
	say(msg);
	say("\n");
	exit_group(1);
}

static int equal(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

/* getenv over the initial environment. */
static const char *lookup(char **envp, const char *key)
{
	for (; *envp; envp++) {
		const char *e = *envp, *k = key;
		while (*k && *e == *k)
			e++, k++;
		if (!*k && *e == '=')
			return e + 1;
	}
	return 0;
}

/* report writes "TAG NAME\n", or "TAG NAME ARG\n", to the FIFO in one write(2). */
static void report(long fifo, char tag, const char *name, const char *arg)
{
	char line[NAME_MAX_SENT + 20];
	long n = 0;
	line[n++] = tag;
	line[n++] = ' ';
	while (*name && n < NAME_MAX_SENT + 2)
		line[n++] = *name++;
	if (arg) {
		line[n++] = ' ';
		while (*arg && n < NAME_MAX_SENT + 18)
			line[n++] = *arg++;
	}
	line[n++] = '\n';
	if (syscall4(SYS_write, fifo, (long)line, n, 0) != n)
		fail("write to $INITBENCH_FIFO failed");
}

__attribute__((noreturn, used)) void start(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1), **envp = argv + argc + 1;

	/* Blocked before "R", so SIGTERM stays pending until it is waited for. The mask it
	 * replaces, and SIGTERM's disposition, are what the init handed on. */
	word term = 1UL << (SIGTERM - 1), mask = 0;
	if (syscall4(SYS_rt_sigprocmask, SIG_BLOCK, (long)&term, (long)&mask, sizeof term) != 0)
		fail("block SIGTERM failed");
	/* The kernel's struct sigaction on both: handler, flags, restorer, mask. */
	word action[4] = {0};
	if (syscall4(SYS_rt_sigaction, SIGTERM, 0, (long)action, sizeof term) != 0)
		fail("read the disposition of SIGTERM failed");
	const char *inherited = action[0] == SIG_IGN ? "ignored" : mask & term ? "blocked" : 0;

	if (lookup(envp, "INITBENCH_ORPHANS"))
		fail("$INITBENCH_ORPHANS is set: orphan mode is bench/service's, not this one's");
	const char *name = 0;
	for (long i = 1; i + 1 < argc; i++)
		if (equal(argv[i], "-id"))
			name = argv[i + 1];
	static char cwd[4096];
	if (!name) {
		if (syscall4(SYS_getcwd, (long)cwd, sizeof cwd, 0, 0) < 0)
			fail("no -id and no working directory to name the service after");
		name = cwd;
		for (const char *p = cwd; *p; p++)
			if (*p == '/' && p[1])
				name = p + 1;
	}
	const char *path = lookup(envp, "INITBENCH_FIFO");
	if (!path)
		fail("$INITBENCH_FIFO is not set");
	long fifo = syscall4(SYS_openat, AT_FDCWD, (long)path, O_WRONLY | O_NONBLOCK | O_CLOEXEC, 0);
	if (fifo < 0)
		fail("open $INITBENCH_FIFO failed (is the harness reading it?)");

	if (inherited)
		report(fifo, 'I', name, inherited);
	report(fifo, 'R', name, 0);
	while (syscall4(SYS_rt_sigtimedwait, (long)&term, 0, 0, sizeof term) != SIGTERM)
		; /* EINTR: a stop and continue (SIGSTOP, SIGCONT) interrupts the wait */
	if (!inherited)
		report(fifo, 'T', name, 0);
	exit_group(0);
}
