/*
 * own_fds.c - the descriptors uzswap holds in the program's table: kept
 * out of the program's way, and known, so that the shim can keep them out
 * of its reach (preload/fd_guard.c).
 *
 * Why it matters.  A program that closes descriptors it did not open
 * (daemons closing everything from 3 up, closefrom(3), close_range) would
 * close our userfaultfd.  Its last reference gone, the kernel drops every
 * registration, and each page we had taken out then reads as zeros, with
 * no fault to tell us: every compressed byte silently lost.  A shell that
 * redirects to a fixed number (`exec 3>log`) would do the same with dup2
 * had our userfaultfd got number 3.
 *
 * So each descriptor the engine keeps is moved to a high number (the
 * lowest free one from 64 below min(RLIMIT_NOFILE, 1024): out of the way
 * of programs' fixed numbers, still below FD_SETSIZE) and recorded here;
 * the shim's close, close_range, closefrom, dup2 and dup3 leave recorded
 * ones alone.  The engine forgets a descriptor before it closes it.
 *
 * The record is one small array of atomics: the shim asks from any thread
 * and from signal handlers, with no lock.  Entries hold fd + 1 (0: free).
 */
#include "config.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "own_fds.h"

#define HIGH_FD_CEILING 1024
#define HIGH_FD_BELOW 64

static int own[UZS_OWN_FDS_MAX];

/* Where moved descriptors start; 0 when the table is too small to move. */
static int high_base(void)
{
	struct rlimit rl;
	rlim_t top = HIGH_FD_CEILING;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < top)
		top = rl.rlim_cur;
	return top >= 2 * HIGH_FD_BELOW ? (int)top - HIGH_FD_BELOW : 0;
}

static int move_high(int fd)
{
	int base = high_base(), moved;

	if (!base || fd >= base)
		return fd;
	moved = fcntl(fd, F_DUPFD_CLOEXEC, base);
	if (moved < 0)
		return fd;      /* a full table: keep the number we have */
	close(fd);
	return moved;
}

int uzs_fd_own(int fd)
{
	if (fd < 0)
		return fd;
	fd = move_high(fd);
	for (unsigned i = 0; i < UZS_OWN_FDS_MAX; i++) {
		int expect = 0;

		if (__atomic_compare_exchange_n(&own[i], &expect, fd + 1, false,
						__ATOMIC_RELEASE, __ATOMIC_RELAXED))
			return fd;
	}
	return fd;      /* unrecorded: unguarded, but still usable */
}

void uzs_fd_close(int fd)
{
	if (fd < 0)
		return;
	for (unsigned i = 0; i < UZS_OWN_FDS_MAX; i++) {
		int expect = fd + 1;

		if (__atomic_compare_exchange_n(&own[i], &expect, 0, false,
						__ATOMIC_RELEASE, __ATOMIC_RELAXED))
			break;
	}
	close(fd);
}

bool uzs_fd_is_own(int fd)
{
	if (fd < 0)
		return false;
	for (unsigned i = 0; i < UZS_OWN_FDS_MAX; i++)
		if (__atomic_load_n(&own[i], __ATOMIC_ACQUIRE) == fd + 1)
			return true;
	return false;
}

unsigned uzs_fds_owned(int *out)
{
	unsigned n = 0;

	/* Insertion sort: there are at most UZS_OWN_FDS_MAX. */
	for (unsigned i = 0; i < UZS_OWN_FDS_MAX; i++) {
		int fd = __atomic_load_n(&own[i], __ATOMIC_ACQUIRE) - 1;
		unsigned j;

		if (fd < 0)
			continue;
		for (j = n++; j > 0 && out[j - 1] > fd; j--)
			out[j] = out[j - 1];
		out[j] = fd;
	}
	return n;
}
