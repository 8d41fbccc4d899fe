/*
 * mlock_guard.c - the program's mlockall and munlockall, less uzswap's own
 * memory.
 *
 * mlockall(MCL_CURRENT) locks every mapping of the process and populates
 * it: uzswap's too, which are reservations of address space touched a page
 * at a time (the pool's arena and the span for tables: gigabytes).  A 32
 * MiB test program was OOM-killed at 24 GiB of RSS.  And a locked page can
 * never be discarded (MADV_DONTNEED refuses it), so the pool could not
 * shrink nor staging empty.
 *
 * So MCL_CURRENT is done here instead, a mapping at a time from
 * /proc/self/maps: mlock2 on every part that is not ours (with
 * MLOCK_ONFAULT for MCL_ONFAULT).  The program's pages end up locked as
 * mlockall would leave them, pages taken out faulting back in first, and
 * a locked page is never taken out again (UFFDIO_MOVE refuses it).
 * MCL_FUTURE can only be set for every mapping, so it goes to the kernel,
 * and the reservations uzswap makes from then on unlock themselves
 * (mmap_region.c).
 *
 * Differences from the kernel's mlockall, both only under races with
 * other threads: the mappings are locked one by one, not at once; and a
 * mapping made or unmapped meanwhile may be missed or skipped.  The limit
 * (RLIMIT_MEMLOCK without CAP_IPC_LOCK) is checked per mapping, so a
 * program over it can be left with part of its memory locked.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "guard.h"
#include "maps_line.h"
#include "mmap_region.h"

#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 0x01
#endif
#ifndef MCL_ONFAULT
#define MCL_ONFAULT 4
#endif

/* Is any of uzswap's memory mapped?  Without it, nothing to keep out. */
static bool uzswap_present(void)
{
	uintptr_t s;

	return uzs_region_own_overlap(0, UINTPTR_MAX, &s) != 0;
}

/* Lock [start, end) as mlockall would: an error only if the program's
 * memory could not be locked (not for a mapping gone meanwhile, nor for
 * the special ones mlockall passes over, such as [vsyscall]). */
static int lock_range(uintptr_t start, uintptr_t end, unsigned flags)
{
	unsigned char v;

	if (syscall(SYS_mlock2, start, end - start, flags) == 0)
		return 0;
	if (errno == EINVAL || errno == EFAULT)
		return 0;
	if (errno == ENOMEM && mincore((void *)start, 1, &v) != 0)
		return 0;       /* unmapped since maps was read */
	return -errno;
}

/* Lock the parts of [start, end) that are not ours. */
static int lock_mapping(uintptr_t start, uintptr_t end, unsigned flags)
{
	while (start < end) {
		uintptr_t own_start, own_end = uzs_region_own_overlap(start, end,
								      &own_start);
		int rc;

		if (!own_end)
			return lock_range(start, end, flags);
		if (own_start > start && (rc = lock_range(start, own_start, flags)))
			return rc;
		start = own_end;
	}
	return 0;
}

/* One line of /proc/self/maps. */
static int lock_line(const char *line, unsigned flags)
{
	struct maps_line l;

	if (!uzs_maps_line_parse(line, line + strlen(line), &l))
		return 0;
	/* mlock2 populates what it locks and fails (ENOMEM) where it cannot,
	 * as on a PROT_NONE mapping; mlockall locks that without a word. */
	if (!strncmp(l.perms, "---", 3))
		flags |= MLOCK_ONFAULT;
	return lock_mapping(l.start, l.end, flags);
}

/* MCL_CURRENT, less our memory: every mapping in /proc/self/maps. */
static int lock_current(unsigned flags)
{
	char buf[4096];
	size_t have = 0;
	bool skipping = false;  /* the rest of a line longer than buf */
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	while (!rc) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
		char *line = buf, *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = 0;
		while (!rc && (nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
			*nl = 0;
			if (!skipping)
				rc = lock_line(line, flags);
			skipping = false;
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
		if (have == sizeof(buf) - 1) {
			/* A long file name: the range is at the start. */
			if (!skipping)
				rc = lock_line(buf, flags);
			skipping = true;
			have = 0;
		}
	}
	close(fd);
	return rc;
}

GUARD_ENTRY int mlockall(int flags)
{
	int rc = 0;

	if (!GUARDS_ON() || !uzswap_present() || (flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)) ||
	    !(flags & (MCL_CURRENT | MCL_FUTURE)))
		return (int)syscall(SYS_mlockall, flags);
	/* The kernel's mlockall without MCL_FUTURE ends an earlier one; only
	 * munlockall can do that without locking all. */
	if (!(flags & MCL_FUTURE) && syscall(SYS_munlockall) == 0)
		uzs_region_lock_future(false);
	if (flags & MCL_FUTURE) {
		/* Said first: a reservation made while the kernel turns it
		 * on must already unlock itself. */
		uzs_region_lock_future(true);
		if (syscall(SYS_mlockall, flags & (MCL_FUTURE | MCL_ONFAULT)) != 0) {
			int err = errno;

			uzs_region_lock_future(false);
			errno = err;
			return -1;
		}
	}
	if (flags & MCL_CURRENT)
		rc = lock_current(flags & MCL_ONFAULT ? MLOCK_ONFAULT : 0);
	if (rc) {
		errno = -rc;
		return -1;
	}
	return 0;
}

GUARD_ENTRY int munlockall(void)
{
	int rc = (int)syscall(SYS_munlockall);

	if (rc == 0 && GUARDS_ON())
		uzs_region_lock_future(false);
	return rc;
}
