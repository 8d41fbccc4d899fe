/*
 * fd_guard.c - the program's close, close_range, closefrom, dup2 and dup3,
 * less the power to take uzswap's descriptors away.
 *
 * Closing our userfaultfd would silently turn every compressed page into
 * zeros (lib/own_fds.c says why), and daemons do close everything from 3
 * up.  So these wrappers pass each call on to the C library, except that
 * a descriptor the engine holds (uzs_fd_is_own):
 *  - is not closed: close() fails with EBADF, as for any descriptor the
 *    program does not have, and a range is closed around it;
 *  - is not replaced: dup2/dup3 onto it fail with EBUSY (which Linux's own
 *    dup2 may return), said once on stderr.  Ours sit high (own_fds.c), so
 *    only a program that picks such numbers itself meets this.
 * Calls the C library makes internally (fclose, say) do not come here,
 * nor do raw system calls, which can still close them (README, uzswap's
 * descriptors).
 *
 * Every path is async-signal-safe, as close and dup2 are: the check is a
 * few atomic loads, and the real functions are looked up at load time
 * (before that, the system calls are made directly).
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "guard.h"
#include "own_fds.h"

static int (*real_close)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);

__attribute__((constructor)) static void fd_guard_init(void)
{
	real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
	real_dup2 = (int (*)(int, int))dlsym(RTLD_NEXT, "dup2");
	real_dup3 = (int (*)(int, int, int))dlsym(RTLD_NEXT, "dup3");
}

GUARD_ENTRY static int pass_close(int fd)
{
	return real_close ? real_close(fd) : (int)syscall(SYS_close, fd);
}

GUARD_ENTRY static int sys_close_range(unsigned first, unsigned last, unsigned flags)
{
	return (int)syscall(SYS_close_range, first, last, flags);
}

GUARD_ENTRY int close(int fd)
{
	if (GUARDS_ON() && uzs_fd_is_own(fd)) {
		errno = EBADF;
		return -1;
	}
	return pass_close(fd);
}

GUARD_ENTRY int close_range(unsigned first, unsigned last, int flags)
{
	int own[UZS_OWN_FDS_MAX];
	unsigned n, from = first;

	/* Only marking close-on-exec, which ours already are. */
	if (!GUARDS_ON() || first > last || (flags & CLOSE_RANGE_CLOEXEC))
		return sys_close_range(first, last, (unsigned)flags);
	n = uzs_fds_owned(own);
	for (unsigned i = 0; i < n; i++) {
		unsigned fd = (unsigned)own[i];

		if (fd < from || fd > last)
			continue;
		if (fd > from && sys_close_range(from, fd - 1, (unsigned)flags))
			return -1;
		if (fd == last)
			return 0;
		from = fd + 1;
	}
	return sys_close_range(from, last, (unsigned)flags);
}

GUARD_ENTRY void closefrom(int lowfd)
{
	struct rlimit rl;

	if (lowfd < 0)
		lowfd = 0;
	if (close_range((unsigned)lowfd, ~0u, 0) == 0 || errno != ENOSYS)
		return;
	/* A kernel before close_range (5.9): one number at a time. */
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur > (1u << 20))
		rl.rlim_cur = 1u << 20;
	for (rlim_t fd = (rlim_t)lowfd; fd < rl.rlim_cur; fd++)
		close((int)fd);
}

static int refuse_replace(void)
{
	static int said;
	static const char msg[] = "uzswap: dup2/dup3 onto a descriptor uzswap "
				  "holds: refused (EBUSY)\n";

	if (!__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED) &&
	    write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		(void)0;
	errno = EBUSY;
	return -1;
}

GUARD_ENTRY int dup2(int oldfd, int newfd)
{
	if (GUARDS_ON() && oldfd != newfd && uzs_fd_is_own(newfd))
		return refuse_replace();
	if (real_dup2)
		return real_dup2(oldfd, newfd);
	if (oldfd == newfd)
		return syscall(SYS_fcntl, oldfd, F_GETFD) < 0 ? -1 : newfd;
	return (int)syscall(SYS_dup3, oldfd, newfd, 0);
}

GUARD_ENTRY int dup3(int oldfd, int newfd, int flags)
{
	if (GUARDS_ON() && oldfd != newfd && uzs_fd_is_own(newfd))
		return refuse_replace();
	return real_dup3 ? real_dup3(oldfd, newfd, flags)
			 : (int)syscall(SYS_dup3, oldfd, newfd, flags);
}
