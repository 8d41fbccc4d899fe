/*
 * rlimit_guard.c - RLIMIT_AS and RLIMIT_DATA as the program means them:
 * its own address space, not uzswap's.
 *
 * uzswap reserves some hundreds of GiB of address space for its tables and
 * pool (no memory: MAP_NORESERVE), and the kernel counts it against
 * RLIMIT_AS, and its read-write part against RLIMIT_DATA.  A program that caps itself (`ulimit -v` in a shell script,
 * a test runner's resource.setrlimit) would find its next mmap or brk
 * refused at once: bash under uzswap died of `ulimit -v 2000000`.  So
 * while uzswap holds reservations, a finite limit of either the program sets on
 * itself is raised by what they take (and slack for what they may grow by),
 * and reading it back takes that off again: the program sees the numbers
 * it set, and gets the room it asked for.
 *
 * setrlimit, getrlimit and prlimit (on the process itself) are wrapped,
 * with their 64-bit twins, which glibc on 64-bit machines exports as
 * separate symbols.  Raw system calls, and prlimit on other processes
 * (the `prlimit` command), see the kernel's numbers.
 */
#include "config.h"

#include <errno.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "guard.h"
#include "mmap_region.h"

_Static_assert(sizeof(struct rlimit) == sizeof(struct rlimit64) &&
	       sizeof(rlim_t) == sizeof(rlim64_t),
	       "the 64-bit calls share the plain ones' code");

/* Room left for reservations made after the limit is set. */
#define SLACK ((rlim_t)64 << 20)

/* What was added to each limit in force; 0 if it is the program's own. */
static rlim_t added_as, added_data;

static rlim_t raise_by(rlim_t v, rlim_t by)
{
	return v == RLIM_INFINITY || RLIM_INFINITY - v <= by ? v : v + by;
}

static rlim_t lower_by(rlim_t v, rlim_t by)
{
	return v == RLIM_INFINITY ? v : v > by ? v - by : 0;
}

GUARD_ENTRY static int sys_prlimit(int resource, const struct rlimit *new, struct rlimit *old)
{
	return (int)syscall(SYS_prlimit64, 0, resource, new, old);
}

/* The process's own limit, set (new) and/or read (old), as the program
 * sees it.  What is added is fixed at the first setting, so that setting
 * back what was read changes nothing.  The hard limit is never raised
 * beyond where it is unless the program asks for that: without privilege
 * raising it fails, and a program that sets (soft, the hard it read)
 * would get EPERM, as would one exec'd under a limit we raised, which sees
 * it raised. */
GUARD_ENTRY static int own_prlimit(int resource, const struct rlimit *new,
				   struct rlimit *old)
{
	struct rlimit adj, now;
	rlim_t by, was, *added;

	if (!GUARDS_ON() || (resource != RLIMIT_AS && resource != RLIMIT_DATA))
		return sys_prlimit(resource, new, old);
	added = resource == RLIMIT_AS ? &added_as : &added_data;
	was = __atomic_load_n(added, __ATOMIC_RELAXED);
	by = was;
	if (new) {
		size_t ours = uzs_region_reserved_bytes(resource == RLIMIT_DATA);

		if (!by && ours)
			by = (rlim_t)ours + SLACK;
		if (sys_prlimit(resource, NULL, &now) != 0)
			return -1;
		adj.rlim_max = raise_by(new->rlim_max, by);
		if (new->rlim_max <= now.rlim_max && adj.rlim_max > now.rlim_max)
			adj.rlim_max = now.rlim_max;
		adj.rlim_cur = raise_by(new->rlim_cur, by);
		if (new->rlim_cur <= new->rlim_max && adj.rlim_cur > adj.rlim_max)
			adj.rlim_cur = adj.rlim_max;
		new = &adj;
	}
	if (sys_prlimit(resource, new, old) != 0)
		return -1;
	if (old) {
		old->rlim_cur = lower_by(old->rlim_cur, was);
		old->rlim_max = lower_by(old->rlim_max, was);
	}
	if (new)
		__atomic_store_n(added, by, __ATOMIC_RELAXED);
	return 0;
}

GUARD_ENTRY int setrlimit(__rlimit_resource_t resource, const struct rlimit *rl)
{
	return own_prlimit((int)resource, rl, NULL);
}

/* struct rlimit64 is struct rlimit on 64-bit machines (checked below). */
GUARD_ENTRY int setrlimit64(__rlimit_resource_t resource, const struct rlimit64 *rl)
{
	return own_prlimit((int)resource, (const struct rlimit *)rl, NULL);
}

GUARD_ENTRY int getrlimit(__rlimit_resource_t resource, struct rlimit *rl)
{
	return own_prlimit((int)resource, NULL, rl);
}

GUARD_ENTRY int getrlimit64(__rlimit_resource_t resource, struct rlimit64 *rl)
{
	return own_prlimit((int)resource, NULL, (struct rlimit *)rl);
}

GUARD_ENTRY int prlimit(pid_t pid, __rlimit_resource_t resource, const struct rlimit *new,
	    struct rlimit *old)
{
	if (pid && pid != getpid())
		return (int)syscall(SYS_prlimit64, pid, resource, new, old);
	return own_prlimit((int)resource, new, old);
}

GUARD_ENTRY int prlimit64(pid_t pid, __rlimit_resource_t resource,
	      const struct rlimit64 *new, struct rlimit64 *old)
{
	return prlimit(pid, resource, (const struct rlimit *)new,
		       (struct rlimit *)old);
}
