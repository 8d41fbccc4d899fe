/*
 * mmap_region.c - reserve, discard and unreserve the library's own mappings.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include "mmap_region.h"
#include "uzswap.h"

/*
 * Every reservation is also recorded here, because the [anon:uzswap] name
 * needs CONFIG_ANON_VMA_NAME, which not every kernel has.  The table is
 * static (this library's .bss, which the engine never manages) and
 * append-mostly: slots are claimed with a compare-and-swap and cleared on
 * unreserve, so readers need no lock and see at worst a stale entry, which
 * only makes them skip a range they could have managed.
 */
#define OWN_MAX 4096u

static struct own_range {
	uintptr_t start, end;   /* end == 0: free slot */
} own_ranges[OWN_MAX];

static void own_add(uintptr_t start, uintptr_t end)
{
	for (unsigned i = 0; i < OWN_MAX; i++) {
		uintptr_t zero = 0;

		if (__atomic_compare_exchange_n(&own_ranges[i].end, &zero, end,
						false, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED)) {
			__atomic_store_n(&own_ranges[i].start, start,
					 __ATOMIC_RELEASE);
			return;
		}
	}
	/* Full: the [anon:uzswap] name (where supported) still protects it. */
}

static void own_remove(uintptr_t start)
{
	for (unsigned i = 0; i < OWN_MAX; i++) {
		if (__atomic_load_n(&own_ranges[i].start, __ATOMIC_ACQUIRE) == start &&
		    __atomic_load_n(&own_ranges[i].end, __ATOMIC_ACQUIRE)) {
			__atomic_store_n(&own_ranges[i].start, 0, __ATOMIC_RELEASE);
			__atomic_store_n(&own_ranges[i].end, 0, __ATOMIC_RELEASE);
			return;
		}
	}
}

uintptr_t uzs_region_own_overlap(uintptr_t start, uintptr_t end,
				 uintptr_t *own_start)
{
	uintptr_t best = 0, best_end = 0;

	/* The lowest own range overlapping [start, end), if any. */
	for (unsigned i = 0; i < OWN_MAX; i++) {
		uintptr_t e = __atomic_load_n(&own_ranges[i].end, __ATOMIC_ACQUIRE);
		uintptr_t s = __atomic_load_n(&own_ranges[i].start, __ATOMIC_ACQUIRE);

		if (!e || e <= start || s >= end)
			continue;
		if (!best_end || s < best) {
			best = s;
			best_end = e;
		}
	}
	*own_start = best;
	return best_end;
}

static size_t page_round(size_t len)
{
	return (len + UZS_PAGE_SIZE - 1) & ~(size_t)(UZS_PAGE_SIZE - 1);
}

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

void *uzs_region_reserve(size_t len)
{
	void *p = mmap(NULL, page_round(len), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	own_add((uintptr_t)p, (uintptr_t)p + page_round(len));
	/* The name shows in /proc/self/maps as [anon:uzswap]: the engine's
	 * scan skips it, and it keeps the kernel from merging our mappings
	 * with the application's.  Kernels before 5.17 refuse; harmless. */
	prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)p,
	      page_round(len), (unsigned long)UZS_REGION_NAME);
	return p;
}

void uzs_region_unreserve(void *addr, size_t len)
{
	if (!addr)
		return;
	own_remove((uintptr_t)addr);
	munmap(addr, page_round(len));
}

void uzs_region_discard(void *addr, size_t len)
{
	/* DONTNEED, not FREE: the pool promises RSS falls at once. */
	madvise(addr, page_round(len), MADV_DONTNEED);
}
