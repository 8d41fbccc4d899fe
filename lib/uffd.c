/*
 * uffd.c - userfaultfd setup and ioctl wrappers.
 *
 * A userfaultfd can be had three ways, in order of preference:
 *  1. /dev/userfaultfd (Linux 6.1+): its file permissions decide, and the
 *     descriptor handles kernel-mode faults too;
 *  2. userfaultfd(2) without UFFD_USER_MODE_ONLY: needs CAP_SYS_PTRACE or
 *     vm.unprivileged_userfaultfd=1;
 *  3. userfaultfd(2) with UFFD_USER_MODE_ONLY: always allowed, but a system
 *     call that touches a missing page (read(2) into a compressed buffer)
 *     then fails with EFAULT instead of waiting for us.  uzswap refuses it:
 *     a tool that makes read(2) fail is not transparent.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "own_fds.h"
#include "uffd.h"

static int open_dev_userfaultfd(void)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	int fd;

	if (dev < 0)
		return -errno;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	fd = fd < 0 ? -errno : fd;
	close(dev);
	return fd;
}

/* A full (kernel-fault-capable) userfaultfd, or -errno. */
static int open_full_uffd(void)
{
	int fd = open_dev_userfaultfd();

	if (fd >= 0)
		return fd;
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

static int user_mode_only_available(void)
{
	int fd = (int)syscall(SYS_userfaultfd,
			      O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);

	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

/* Ask the kernel what it supports: UFFDIO_API may be done once per fd. */
static int probe_features(uint64_t *features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int fd = open_full_uffd();

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api) != 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	close(fd);
	*features = api.features;
	return 0;
}

/* A page nobody can read, the source of uzs_uffd_registered's copies:
 * made once (engines start single-threaded, at load or in a fork child),
 * kept for the life of the process. */
static void *noaccess_page(void)
{
	static void *page;

	if (!page) {
		void *p = mmap(NULL, 4096, PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		page = p == MAP_FAILED ? NULL : p;
	}
	return page;
}

int uzs_uffd_open(struct uzs_uffd *u, uint64_t want, uint64_t need,
		  char *err, size_t errlen)
{
	struct uffdio_api api = { .api = UFFD_API };
	uint64_t have = 0;
	int rc;

	u->fd = -1;
	u->noaccess = (uintptr_t)noaccess_page();
	if (!u->noaccess) {
		snprintf(err, errlen, "uzswap: cannot map one page: %s",
			 strerror(errno));
		return -ENOMEM;
	}
	rc = probe_features(&have);
	if (rc == -EPERM || rc == -EACCES) {
		snprintf(err, errlen,
			 "uzswap: userfaultfd %s; enable it with one of: "
			 "read/write access to /dev/userfaultfd, "
			 "sysctl vm.unprivileged_userfaultfd=1, or CAP_SYS_PTRACE",
			 user_mode_only_available()
				 ? "is limited to user-mode faults for this user"
				 : "is not permitted for this user");
		return rc;
	}
	if (rc == -ENOSYS) {
		snprintf(err, errlen, "uzswap: this kernel has no userfaultfd "
			 "(CONFIG_USERFAULTFD) or a seccomp filter blocks it");
		return rc;
	}
	if (rc < 0) {
		snprintf(err, errlen, "uzswap: cannot open userfaultfd: %s",
			 strerror(-rc));
		return rc;
	}
	if ((have & need) != need) {
		snprintf(err, errlen, "uzswap: this kernel's userfaultfd lacks "
			 "features 0x%llx that uzswap needs (Linux 4.11 or later)",
			 (unsigned long long)(need & ~have));
		return -EOPNOTSUPP;
	}
	u->fd = open_full_uffd();
	if (u->fd < 0) {
		snprintf(err, errlen, "uzswap: cannot open userfaultfd: %s",
			 strerror(-u->fd));
		return u->fd;
	}
	api.features = (want | need) & have;
	if (ioctl(u->fd, UFFDIO_API, &api) != 0) {
		rc = -errno;
		snprintf(err, errlen, "uzswap: UFFDIO_API failed: %s",
			 strerror(errno));
		close(u->fd);
		u->fd = -1;
		return rc;
	}
	/* The kernel writes back every feature it has, not the ones asked
	 * for and enabled: those are what was asked for (and it has). */
	u->features = (want | need) & have;
	u->ioctls = api.ioctls;
	u->fd = uzs_fd_own(u->fd);
	return 0;
}

void uzs_uffd_close(struct uzs_uffd *u)
{
	uzs_fd_close(u->fd);
	u->fd = -1;
}

int uzs_uffd_register(struct uzs_uffd *u, uintptr_t start, size_t len,
		      uint64_t mode)
{
	struct uffdio_register r = {
		.range = { .start = start, .len = len }, .mode = mode,
	};

	return ioctl(u->fd, UFFDIO_REGISTER, &r) ? -errno : 0;
}

int uzs_uffd_unregister(struct uzs_uffd *u, uintptr_t start, size_t len)
{
	struct uffdio_range r = { .start = start, .len = len };

	return ioctl(u->fd, UFFDIO_UNREGISTER, &r) ? -errno : 0;
}

/*
 * Why this question needs asking: UFFDIO_REGISTER succeeds over a range
 * with holes in it, registering only what is mapped, and UFFDIO_MOVE takes
 * a page out of any anonymous mapping, registered or not (only its
 * destination must be).  A page taken out of a mapping that is not
 * registered never faults back to us: the kernel gives the program a zero
 * page instead.
 *
 * No ioctl asks it directly, so this one asks UFFDIO_COPY to copy from a
 * page that cannot be read (u->noaccess).  The kernel looks up the
 * destination first and fails with ENOENT (or EINVAL) unless the whole
 * range lies in one mapping registered with this userfaultfd; only then
 * does it read the source, which fails with EFAULT before anything is
 * mapped.  EEXIST (a huge page there) also means it got past the lookup.
 * tests/test_uffd.c holds the kernel to all of it.
 */
int uzs_uffd_registered(struct uzs_uffd *u, uintptr_t start, size_t len)
{
	struct uffdio_copy c = {
		.dst = start, .src = u->noaccess, .len = len,
		.mode = UFFDIO_COPY_MODE_DONTWAKE,
	};
	int rc = ioctl(u->fd, UFFDIO_COPY, &c) ? -errno : 0;

	switch (rc) {
	case -EFAULT:
	case -EEXIST:
		return 1;
	case -ENOENT:
	case -EINVAL:
		return 0;
	default:
		return rc;
	}
}

/* The kernel reports progress in the struct even when the ioctl fails. */
static size_t progress(int64_t reported)
{
	return reported > 0 ? (size_t)reported : 0;
}

int uzs_uffd_copy(struct uzs_uffd *u, uintptr_t dst, const void *src,
		  size_t len, uint64_t mode, size_t *done)
{
	struct uffdio_copy c = {
		.dst = dst, .src = (uintptr_t)src, .len = len, .mode = mode,
	};
	int rc = ioctl(u->fd, UFFDIO_COPY, &c) ? -errno : 0;

	*done = rc ? progress(c.copy) : len;
	return rc;
}

int uzs_uffd_zeropage(struct uzs_uffd *u, uintptr_t dst, size_t len,
		      size_t *done)
{
	struct uffdio_zeropage z = { .range = { .start = dst, .len = len } };
	int rc = ioctl(u->fd, UFFDIO_ZEROPAGE, &z) ? -errno : 0;

	*done = rc ? progress(z.zeropage) : len;
	return rc;
}

int uzs_uffd_move(struct uzs_uffd *u, uintptr_t dst, uintptr_t src,
		  size_t len, uint64_t mode, size_t *done)
{
	struct uffdio_move m = { .dst = dst, .src = src, .len = len, .mode = mode };
	int rc = ioctl(u->fd, UFFDIO_MOVE, &m) ? -errno : 0;

	*done = rc ? progress(m.move) : len;
	return rc;
}

int uzs_uffd_wake(struct uzs_uffd *u, uintptr_t start, size_t len)
{
	struct uffdio_range r = { .start = start, .len = len };

	return ioctl(u->fd, UFFDIO_WAKE, &r) ? -errno : 0;
}

int uzs_uffd_writeprotect(struct uzs_uffd *u, uintptr_t start, size_t len,
			  int protect)
{
	struct uffdio_writeprotect w = {
		.range = { .start = start, .len = len },
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return ioctl(u->fd, UFFDIO_WRITEPROTECT, &w) ? -errno : 0;
}
