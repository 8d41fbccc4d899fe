/*
 * core_guard.c - complete core dumps.
 *
 * The kernel writes a page that is not present into a core dump as zeros:
 * it does not fault pages in to dump them.  Under uzswap, every page taken
 * out would read as zeros in the core of a crashed program, the memory a
 * post-mortem most needs among them.  (uzswap's own memory is left out of
 * dumps altogether: mmap_region.c.)
 *
 * So, at start, the signals whose default action is a core dump and that a
 * handler can die of again get one, where the program has left them at
 * their default: SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGQUIT,
 * SIGXCPU, SIGXFSZ.  (SIGTRAP and SIGSYS are left alone: returning from
 * their handler would step over the breakpoint or the refused call, and the
 * program would go on.)  The handler, when a core will be written, puts
 * every page back (uzs_engine_thaw_for_dump), restores the default action
 * and dies of the signal again: a fault by returning to the instruction
 * that raised it, any other signal by raising it anew.  A program that
 * installs its own handler replaces ours, as it would the default.
 */
#include "config.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core_guard.h"

static struct uzs_engine *const *guarded;

static const int dumping_signals[] = {
	SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGQUIT, SIGXCPU, SIGXFSZ,
};

/* Will the kernel write a core for this process?  Async-signal-safe. */
static int core_will_be_written(void)
{
	struct rlimit rl;
	char c = 0;
	int fd;

	if (prctl(PR_GET_DUMPABLE) != 1 || getrlimit(RLIMIT_CORE, &rl) != 0)
		return 0;
	fd = open("/proc/sys/kernel/core_pattern", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, &c, 1) != 1)
			c = 0;
		close(fd);
	}
	/* A pipe to a collector ignores the limit, except 1 (core(5)). */
	if (c == '|')
		return rl.rlim_cur != 1;
	return rl.rlim_cur > 0;
}

/* Raised by the instruction the handler returns to, not by a sender? */
static int raised_by_fault(int sig, const siginfo_t *si)
{
	return si->si_code > 0 && (sig == SIGSEGV || sig == SIGBUS ||
				   sig == SIGILL || sig == SIGFPE);
}

static void on_fatal_signal(int sig, siginfo_t *si, void *uc)
{
	struct sigaction dfl;
	struct uzs_engine *e = *guarded;

	(void)uc;
	if (e && core_will_be_written())
		uzs_engine_thaw_for_dump(e);
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	sigaction(sig, &dfl, NULL);
	/* Blocked while we run: delivered, with the default action, as we
	 * return. */
	if (!raised_by_fault(sig, si))
		raise(sig);
}

void uzs_core_guard_install(struct uzs_engine *const *engine)
{
	guarded = engine;
	for (size_t i = 0; i < sizeof(dumping_signals) / sizeof(dumping_signals[0]); i++) {
		struct sigaction old, sa;

		if (sigaction(dumping_signals[i], NULL, &old) != 0 ||
		    old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO))
			continue;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_fatal_signal;
		sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
		sigemptyset(&sa.sa_mask);
		sigaction(dumping_signals[i], &sa, NULL);
	}
}
