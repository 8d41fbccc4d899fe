/*
 * limit.c - what UZSWAP_LIMIT counts, and the watch that keeps memory from
 * growing past it unseen.
 *
 * The limit bounds the process's anonymous memory, ours included.  Its
 * measure (uzs_limit_used_pages) is what our own accounts say, plus what
 * they cannot see:
 *
 *  - accounted: resident managed pages (the last scan's count plus every
 *    fault since), pages taken out but not yet emptied from staging, the
 *    pools as they are now (a round of take-outs grows them long before the
 *    next scan), and our bookkeeping (page table, handle slots, zspage
 *    descriptors, empty pool pages kept for reuse: about 1.5% of what is
 *    managed, 4 MiB for 256 MiB);
 *  - unmanaged: the rest of the process's anonymous RSS, when it is more:
 *    stacks, the C library's data, mappings below UZSWAP_MIN_REGION, our
 *    threads' buffers.  Read at each look of the watch.  Without it a
 *    program held at a 64 MiB limit sat at 67.6 MiB of RSS: 1.8 MiB of it
 *    anonymous memory nobody counted, 1.8 MiB file pages.
 *
 * File pages (program text, libraries, files the program maps) are not
 * counted: the kernel reclaims them by itself.
 *
 * The watch.  A program that allocates fast must not run far past the
 * limit before its new mappings are found: a mapping we have not
 * registered fills natively at the program's full speed (a glibc slab of
 * 32 MiB in tens of milliseconds).  So the fault thread looks every few
 * milliseconds while the program runs (fault.c) and the reclaim thread
 * between batches of a round: anonymous growth our accounts do not explain
 * registers new mappings at once, and their first touches come to the
 * fault thread, which holds them back over the limit.
 */
#include "config.h"

#include <fcntl.h>
#include <unistd.h>

#include "engine_internal.h"

/* Resident and file-backed resident pages of the whole process, from
 * /proc/self/statm (our own buffer, no stdio); false if unreadable. */
static bool read_statm(const struct uzs_engine *e, uint64_t *resident,
		       uint64_t *shared)
{
	char buf[128];
	const char *p = buf;
	uint64_t *field[] = { NULL, resident, shared };
	ssize_t n = pread(e->statm_fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return false;
	buf[n] = 0;
	for (unsigned f = 0; f < 3; f++) {
		uint64_t v = 0;

		while (*p == ' ')
			p++;
		if (*p < '0' || *p > '9')
			return false;
		while (*p >= '0' && *p <= '9')
			v = v * 10 + (uint64_t)(*p++ - '0');
		if (field[f])
			*field[f] = v;
	}
	return true;
}

/* The process's anonymous resident pages (statm's resident less its
 * file-backed and shared ones), 0 if unknown. */
static uint64_t anon_rss_pages(const struct uzs_engine *e)
{
	uint64_t resident, shared;

	if (!read_statm(e, &resident, &shared) || shared > resident)
		return 0;
	return resident - shared;
}

/* What our own accounts explain, in pages (see the top of the file). */
static uint64_t accounted_pages(struct uzs_engine *e, uint64_t resident)
{
	uint64_t own = uzs_pools_held(e) + uzs_pools_overhead(e) +
		       uzs_pt_bytes(e->pt);

	return resident + __atomic_load_n(&e->staging_held, __ATOMIC_RELAXED) +
	       ((own + UZS_PAGE_SIZE - 1) >> UZS_PAGE_SHIFT);
}

uint64_t uzs_limit_used_pages(struct uzs_engine *e, uint64_t resident)
{
	return accounted_pages(e, resident) + e->unmanaged_pages;
}

/*
 * What the limit counts that neither taking pages out nor evicting the
 * pool shrinks: a batch in staging, our bookkeeping and the anonymous
 * memory we do not manage.
 */
uint64_t uzs_limit_fixed_pages(struct uzs_engine *e)
{
	uint64_t pools = uzs_pools_held(e) >> UZS_PAGE_SHIFT;
	uint64_t used = uzs_limit_used_pages(e, 0);

	return used > pools ? used - pools : 0;
}

/*
 * How far below the limit a take-out round aims, so that one new page does
 * not mean one more round: 1/32 of the limit, and at least
 * LIMIT_HEADROOM_MIN pages, so that a tiny limit does not mean a round
 * every few pages.
 */
#define LIMIT_HEADROOM_MIN 64u

uint64_t uzs_limit_headroom_pages(const struct uzs_engine *e)
{
	uint64_t limit = e->cfg.limit >> UZS_PAGE_SHIFT;

	return limit / 32 > LIMIT_HEADROOM_MIN ? limit / 32 : LIMIT_HEADROOM_MIN;
}

/*
 * Growth below this is not worth a look at the mappings: a sixty-fourth of
 * the limit, at least 64 pages.  Our own accounts are exact (a batch in
 * staging counts until it is emptied), so what is left is the program's
 * own small change, which the unmanaged count takes in anyway.
 */
static int64_t unseen_min(const struct uzs_engine *e)
{
	uint64_t limit = e->cfg.limit >> UZS_PAGE_SHIFT;

	return (int64_t)(limit / 64 > 64 ? limit / 64 : 64);
}

/*
 * Pages the process's anonymous memory grew by since the mark that our
 * accounts do not explain, if more than unseen_min; else 0.  Measuring
 * plain RSS growth instead went wrong both ways: during a round our
 * take-outs shrink the RSS as fast as a new mapping filled natively grows
 * it (20 MiB slabs went unseen), and restores grow it with pages already
 * counted (counting them twice held a hot phase back for nothing).
 * Falling behind our accounts moves the mark down.
 */
static uint64_t anon_unseen(struct uzs_engine *e, uint64_t anon)
{
	uint64_t acc = accounted_pages(e, e->resident_pages);
	int64_t unseen = (int64_t)(anon - e->rss_mark) -
			 (int64_t)(acc - e->used_mark);

	if (unseen <= unseen_min(e)) {
		if (unseen < 0) {
			e->rss_mark = anon;
			e->used_mark = acc;
		}
		return 0;
	}
	e->rss_mark = anon;
	e->used_mark = acc + (uint64_t)unseen;
	return (uint64_t)unseen;
}

static void count_unmanaged(struct uzs_engine *e, uint64_t anon)
{
	uint64_t acc = accounted_pages(e, e->resident_pages);

	e->unmanaged_pages = anon > acc ? anon - acc : 0;
}

uint64_t uzs_watch_rss(struct uzs_engine *e)
{
	uint64_t anon = anon_rss_pages(e), grew;

	if (!anon)
		return 0;
	grew = anon_unseen(e, anon);
	if (grew) {
		uzs_regions_refresh(e);
		/* Counted by the next scan; until then, the fault thread's
		 * estimate must not miss memory that grew unseen (it decides
		 * whether to hold back). */
		e->resident_pages += grew;
	}
	count_unmanaged(e, anon);
	return anon;
}

void uzs_limit_remark(struct uzs_engine *e)
{
	uint64_t anon;

	uzs_lock(e);
	anon = anon_rss_pages(e);
	if (anon) {
		e->rss_mark = anon;
		e->used_mark = accounted_pages(e, e->resident_pages);
		count_unmanaged(e, anon);
	}
	pthread_mutex_unlock(&e->lock);
}
