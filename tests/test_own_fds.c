/*
 * test_own_fds.c - the record of uzswap's own descriptors (lib/own_fds.c):
 * moved out of the low numbers, known, listed in order, forgotten when
 * closed.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "own_fds.h"

/* Where own_fds.c starts moving to: 64 below min(RLIMIT_NOFILE, 1024). */
static int high_base(void)
{
	struct rlimit rl;
	rlim_t top = 1024;

	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < top)
		top = rl.rlim_cur;
	return (int)top - 64;
}

static int open_null(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	cr_assert_geq(fd, 0);
	return fd;
}

static bool is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

Test(own_fds, moved_high_and_known)
{
	int low = open_null(), fd = uzs_fd_own(low);

	cr_assert_geq(fd, high_base(), "kept at %d", fd);
	cr_assert(!is_open(low), "the low number %d is given back", low);
	cr_assert(is_open(fd));
	cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC, "close-on-exec");
	cr_assert(uzs_fd_is_own(fd));
	cr_assert(!uzs_fd_is_own(low));
	uzs_fd_close(fd);
	cr_assert(!uzs_fd_is_own(fd), "forgotten once closed");
	cr_assert(!is_open(fd), "and closed");
}

Test(own_fds, listed_in_order)
{
	int fds[5], out[UZS_OWN_FDS_MAX];
	unsigned n;

	for (int i = 0; i < 5; i++)
		fds[i] = uzs_fd_own(open_null());
	/* Closed out of order: the list stays sorted. */
	uzs_fd_close(fds[1]);
	uzs_fd_close(fds[3]);
	n = uzs_fds_owned(out);
	cr_assert_eq(n, 3);
	cr_assert_eq(out[0], fds[0]);
	cr_assert_eq(out[1], fds[2]);
	cr_assert_eq(out[2], fds[4]);
	for (unsigned i = 1; i < n; i++)
		cr_assert_lt(out[i - 1], out[i]);
	uzs_fd_close(fds[0]);
	uzs_fd_close(fds[2]);
	uzs_fd_close(fds[4]);
	cr_assert_eq(uzs_fds_owned(out), 0);
}

Test(own_fds, full_record_still_gives_a_usable_descriptor)
{
	int fds[UZS_OWN_FDS_MAX + 1], extra;

	for (int i = 0; i < UZS_OWN_FDS_MAX; i++)
		fds[i] = uzs_fd_own(open_null());
	extra = uzs_fd_own(open_null());
	cr_assert(is_open(extra));
	cr_assert(!uzs_fd_is_own(extra), "not recorded: the record is full");
	for (int i = 0; i < UZS_OWN_FDS_MAX; i++) {
		cr_assert(uzs_fd_is_own(fds[i]));
		uzs_fd_close(fds[i]);
	}
	/* Freed slots are used again. */
	fds[0] = uzs_fd_own(extra);
	cr_assert(uzs_fd_is_own(fds[0]));
	uzs_fd_close(fds[0]);
}

Test(own_fds, negative_is_left_alone)
{
	cr_assert_eq(uzs_fd_own(-1), -1);
	cr_assert(!uzs_fd_is_own(-1));
	uzs_fd_close(-1);       /* nothing to do, nothing closed */
}
