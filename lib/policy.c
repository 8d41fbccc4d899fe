/*
 * policy.c - what is cold.
 *
 * User space cannot read accessed bits, so coldness is estimated from two
 * signals the kernel does give us:
 *
 *  - Writes.  Managed memory is registered for asynchronous write protection
 *    (UFFD_FEATURE_WP_ASYNC): a write to a protected page is let through by
 *    the kernel with no message, and PAGEMAP_SCAN reports it as WRITTEN and
 *    protects it again, all in one ioctl per region.  A page written since
 *    the last scan has age 0; any other resident page ages by the scan
 *    intervals since the last timed scan (usually one; more when scans back
 *    off, see reclaim.c).
 *
 *  - Reads, indirectly, by refault.  A page that is only read looks cold to
 *    the write signal; when it is taken out and then touched, the fault says
 *    it was not cold after all.  Such a page restarts at age 0 and is
 *    protected for 8 scans, doubling with each further refault (fault.c):
 *    a hot working set is taken out less and less often, and not at all
 *    while it fits under the limit, because cold pages are always older and
 *    go first.
 *
 * Choosing victims: with UZSWAP_COLD_AGE, every unprotected resident page at
 * least that old.  With UZSWAP_LIMIT, when resident managed memory plus the
 * pool exceeds the limit, the oldest pages until it no longer does (a
 * histogram of ages gives the threshold in one pass), unprotected pages
 * first.  Without WP_ASYNC (Linux < 6.7) only refaults reset age.
 *
 * Without the PAGEMAP_SCAN ioctl (Linux < 6.7, or masked) the same answers
 * come from /proc/self/pagemap, read by hand (read_ranges): one more system
 * call per chunk and a little more CPU, the same decisions.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "engine_internal.h"
#include "pool_internal.h"

#define AGE_MAX 255u
#define UNMOVABLE_RETRY_SCANS 16u
#define SCAN_CHUNK ((uintptr_t)16 << 20)

/* Append the page at a to out, merged into the last range if adjacent;
 * false when the vector is full. */
static bool add_page(struct range_list *out, uintptr_t a, uint64_t category)
{
	struct page_region *last = out->n ? &out->v[out->n - 1] : NULL;

	if (last && last->end == a) {
		last->end = a + UZS_PAGE_SIZE;
		return true;
	}
	if (out->n == SCAN_VEC)
		return false;
	out->v[out->n++] = (struct page_region){ a, a + UZS_PAGE_SIZE, category };
	return true;
}

/* Does a page map entry fall in the category (one of PRESENT, WRITTEN)? */
static bool entry_is(uint64_t pm, uint64_t category)
{
	if (category == PAGE_IS_PRESENT)
		return pm & UZS_PM_PRESENT;
	/* With WP_ASYNC, a present page that lost its protection was written
	 * since it was protected (a hole, which the ioctl also calls written,
	 * no caller asks about: age_chunk looks only at present pages). */
	return (pm & UZS_PM_PRESENT) && !(pm & UZS_PM_UFFD_WP);
}

/*
 * What PAGEMAP_SCAN answers, read from /proc/self/pagemap instead, for
 * kernels without the ioctl (Linux < 6.7): 8 bytes a page, UZS_PAGEMAP_BATCH
 * pages a pread, into the engine's own buffer (no malloc on this thread).
 * With wp, the written pages found are protected again by one
 * UFFDIO_WRITEPROTECT over their span (one TLB flush, as the ioctl's).  That
 * is not atomic with the read as the ioctl is: a write in between is missed
 * and the page ages a scan too many, a matter of accuracy, never of data
 * (what is cold only decides what is compressed).
 */
static uintptr_t read_ranges(struct uzs_engine *e, uintptr_t start,
			     uintptr_t end, uint64_t category, bool wp,
			     struct range_list *out)
{
	uintptr_t a = start, stop = end;

	out->n = 0;
	while (a < end && stop == end) {
		size_t n = (end - a) >> UZS_PAGE_SHIFT;
		ssize_t got;

		if (n > UZS_PAGEMAP_BATCH)
			n = UZS_PAGEMAP_BATCH;
		got = pread(e->pagemap_fd, e->pagemap_buf, n * sizeof(uint64_t),
			    (off_t)(a >> UZS_PAGE_SHIFT) * 8);
		if (got <= 0)
			break;          /* as the ioctl failing: nothing more */
		n = (size_t)got / sizeof(uint64_t);
		for (size_t i = 0; i < n; i++, a += UZS_PAGE_SIZE) {
			if (entry_is(e->pagemap_buf[i], category) &&
			    !add_page(out, a, category)) {
				stop = a;       /* full: the caller goes on here */
				break;
			}
		}
	}
	if (wp && out->n)
		uzs_uffd_writeprotect(&e->app, out->v[0].start,
				      out->v[out->n - 1].end - out->v[0].start, 1);
	return stop;
}

/* Collect [start, end) pages of category (PAGE_IS_PRESENT or
 * PAGE_IS_WRITTEN); WP them again if wp.  Returns the address where the walk
 * stopped (end when complete).  The ioctl where the kernel has it, else the
 * page map read by hand. */
static uintptr_t scan_ranges(struct uzs_engine *e, uintptr_t start,
			     uintptr_t end, uint64_t category, bool wp,
			     struct range_list *out)
{
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.flags = wp ? PM_SCAN_WP_MATCHING : 0,
		.start = start,
		.end = end,
		.vec = (uintptr_t)out->v,
		.vec_len = SCAN_VEC,
		.category_mask = category,
		.return_mask = category,
	};
	long n;

	if (!e->have_pagemap_scan)
		return read_ranges(e, start, end, category, wp, out);
	n = ioctl(e->pagemap_fd, PAGEMAP_SCAN, &a);
	if (n < 0) {
		out->n = 0;
		return end;
	}
	out->n = (size_t)n;
	/* A full vector may have stopped early; walk_end says where. */
	return out->n == SCAN_VEC ? (uintptr_t)a.walk_end : end;
}

static bool in_ranges(const struct range_list *l, size_t *cursor, uintptr_t a)
{
	while (*cursor < l->n && l->v[*cursor].end <= a)
		(*cursor)++;
	return *cursor < l->n && l->v[*cursor].start <= a;
}

struct scan_state {
	unsigned age_by;                /* scan intervals to age unwritten
					 * pages by (0: a kicked scan) */
	bool retry_unmovable;           /* clear UNMOVABLE flags this scan */
	unsigned rearm_every;           /* a chunk is protected again every
					 * this many timed scans (1..4) */
	uint64_t hist[AGE_MAX + 1];     /* unprotected candidates by age */
	uint64_t hist_protected[AGE_MAX + 1];
	uint64_t resident;
};

/*
 * A page flagged by a DONTNEED event (fault.c) is released by a write: the
 * event re-armed write tracking over its range (uzs_policy_rearm), so a
 * write seen now came after the event, and means the page is in use again
 * (MADV_FREE, which never zaps, or a program racing its own DONTNEED).  A
 * page seen gone is released in mark_present().
 *
 * And by time.  After MADV_FREE a page the program does not write again
 * stays present and unwritten for good: it would never be compressed
 * (allocators that free with MADV_FREE would pin such memory uncompressed,
 * and st_madvise saw it).  The danger the flag guards against lasts only
 * from our reading the event to the kernel's zap, which the madvise caller
 * does next; REMOVING_GRACE_NS later it is long done, unless that thread
 * was kept off the CPU for all that time.  The flag resets the page's age
 * (fault.c), so the age says how long ago it was set.
 */
#define REMOVING_GRACE_NS (2000u * 1000000ull)

static void removing_seen(const struct uzs_engine *e, struct uzs_pte *q,
			  bool written)
{
	uint64_t grace = REMOVING_GRACE_NS / e->cfg.scan_interval_ns;

	if (grace < 2)
		grace = 2;
	if ((q->flags & UZS_PTE_REMOVING) &&
	    (written || q->age >= (grace < AGE_MAX ? grace : AGE_MAX)))
		q->flags &= (uint8_t)~UZS_PTE_REMOVING;
}

void uzs_policy_rearm(struct uzs_engine *e, uintptr_t start, uintptr_t end)
{
	struct range_list *scratch = &e->scan[1];

	if (!e->have_wp_async)
		return;
	while (start < end) {
		uintptr_t stop = scan_ranges(e, start, end, PAGE_IS_WRITTEN, true,
					     scratch);

		if (stop <= start)
			break;
		start = stop;
	}
}

/* Age the pages of [start, end) from one pair of scans.  Under e->lock. */
static void age_chunk(struct uzs_engine *e, uintptr_t start, uintptr_t end,
		      struct range_list *present, struct range_list *written,
		      struct scan_state *s)
{
	size_t wc = 0;

	for (size_t i = 0; i < present->n; i++) {
		uintptr_t lo = present->v[i].start, hi = present->v[i].end;
		struct uzs_pt_walk wk;

		if (lo < start)
			lo = start;
		if (hi > end)
			hi = end;
		wk = uzs_pt_walk_start(lo, hi);
		while (uzs_pt_walk_next(e->pt, &wk, true)) {
			if (!wk.pte)
				return;     /* page table full */
			for (size_t k = 0; k < wk.n; k++) {
				struct uzs_pte *q = &wk.pte[k];
				uintptr_t a = wk.addr + (k << UZS_PAGE_SHIFT);
				bool w = e->have_wp_async && in_ranges(written, &wc, a);

				if (q->state != UZS_PTE_NONE)
					continue;
				removing_seen(e, q, w);
				s->resident++;
				if (w) {
					/* Written again since found incompressible
					 * or unmovable, unless this scan is kicked:
					 * then it may date from before. */
					q->age = 0;
					if (s->age_by)
						q->flags &= (uint8_t)~(UZS_PTE_INCOMPRESSIBLE |
								       UZS_PTE_UNMOVABLE);
				} else if (s->age_by) {
					q->age = (uint8_t)(q->age + s->age_by < AGE_MAX ?
							   q->age + s->age_by : AGE_MAX);
				}
				if (!w && s->age_by)
					q->protect = (uint8_t)(q->protect > s->age_by ?
							       q->protect - s->age_by : 0);
				/* A page MOVE refused (read-only then, pinned,
				 * mlocked) is tried again now and then: the
				 * reason may be gone without any write. */
				if (s->retry_unmovable)
					q->flags &= (uint8_t)~UZS_PTE_UNMOVABLE;
				if (q->flags & (UZS_PTE_INCOMPRESSIBLE | UZS_PTE_UNMOVABLE))
					continue;
				if (q->protect)
					s->hist_protected[q->age]++;
				else
					s->hist[q->age]++;
			}
		}
	}
}

/* Pages to take out so the limit holds again, or 0. */
static uint64_t pages_over_limit(struct uzs_engine *e, uint64_t resident)
{
	uint64_t limit = e->cfg.limit >> UZS_PAGE_SHIFT;
	uint64_t used;

	if (!limit)
		return 0;
	e->pool_bytes_seen = uzs_pools_held(e);
	used = uzs_limit_used_pages(e, resident);
	if (used <= limit)
		return 0;
	return used - limit + uzs_limit_headroom_pages(e);
}

/*
 * Would taking every protected page too bring us under the limit?  Each
 * page taken costs, in the pool, what compression has cost on average so
 * far.  If even taking all of them would leave us over, the limit is below
 * the working set plus the pool and what nothing shrinks (bookkeeping,
 * memory we do not manage): taking pages just proven in use would only
 * bring them straight back (a thrash that slowed a test program 400-fold),
 * so they stay, the limit is exceeded, and that is said once.  With nothing
 * stored yet there is no evidence either way: try.  With a backing file
 * the pool can shrink to nothing (evict.c), which comes first; pages in use
 * go only for what the pool cannot cover.  Under e->lock.
 */
static bool protected_would_fit(struct uzs_engine *e,
				const struct scan_state *s, uint64_t need,
				uint64_t got)
{
	uint64_t prot = 0, stored = e->st.pages_stored;
	uint64_t pool_pages = e->pool_bytes_seen >> UZS_PAGE_SHIFT;
	uint64_t limit = e->cfg.limit >> UZS_PAGE_SHIFT, taken, after;
	uint64_t fixed = uzs_limit_fixed_pages(e);
	double cost;

	for (unsigned a = 0; a <= AGE_MAX; a++)
		prot += s->hist_protected[a];
	if (uzs_evict_possible(e)) {
		/* The pool can shrink to nothing (evict.c), coldest first:
		 * that goes before pages in use.  Only what it cannot cover
		 * is taken from them, if that is enough at all. */
		if (pool_pages >= need - got)
			return false;
		taken = got + prot;
		after = fixed + (s->resident > taken ? s->resident - taken : 0);
		if (after <= limit)
			return true;
		goto cannot;
	}
	if (!stored)
		return true;
	cost = pool_pages < stored ? (double)pool_pages / (double)stored : 1.0;
	taken = got + prot;
	after = fixed + pool_pages + (uint64_t)((double)taken * cost) +
		(s->resident > taken ? s->resident - taken : 0);
	if (after <= limit)
		return true;
cannot:
	if (!e->limit_warned) {
		uzs_log(e, UZS_LOG_WARN, "UZSWAP_LIMIT cannot be met: the pages "
			"in use, the pool and what uzswap cannot take out need "
			"%llu MiB; staying above it rather than compressing "
			"pages in use",
			(unsigned long long)(after >> 8));
		e->limit_warned = true;
	}
	return false;
}

/*
 * Short of pages to take out, how low can the limit's measure go with the
 * pool evicted to the backing file?  No lower than what stays without it:
 * the pages not taken, a batch in staging, our own bookkeeping (page
 * table, handle slots, zspage descriptors) and the anonymous memory we do
 * not manage (limit.c), which no eviction shrinks.
 * Above the limit, that floor (plus the headroom a round aims below) is
 * what faults are held back to instead: a 512 KiB limit on 46 MiB managed
 * has 536 KiB of bookkeeping alone, and holding faults back for eviction
 * that could not help made a 3-second test run 10 s, 60 on a loaded
 * machine.  0 when the limit itself can be met.  Under e->lock.
 */
static uint64_t limit_floor(struct uzs_engine *e, const struct scan_state *s,
			    uint64_t got)
{
	uint64_t keep = s->resident > got ? s->resident - got : 0;
	uint64_t floor = keep + uzs_limit_fixed_pages(e);

	if (floor <= e->cfg.limit >> UZS_PAGE_SHIFT)
		return 0;
	if (!e->limit_warned) {
		uzs_log(e, UZS_LOG_WARN, "UZSWAP_LIMIT cannot be met: the pages "
			"in use, uzswap's bookkeeping and the memory it does "
			"not manage need %llu KiB",
			(unsigned long long)(floor << (UZS_PAGE_SHIFT - 10)));
		e->limit_warned = true;
	}
	return floor + uzs_limit_headroom_pages(e);
}

/* The youngest age still taken so that at least `need` pages are. */
static unsigned threshold_for(const uint64_t *hist, uint64_t need,
			      uint64_t *got)
{
	int age;

	for (age = (int)AGE_MAX; age > 0; age--) {
		*got += hist[age];
		if (*got >= need)
			break;
	}
	if (age == 0)
		*got += hist[0];
	return (unsigned)(age < 0 ? 0 : age);
}

/* Mark which pages are present, for collect_victims.  Under e->lock. */
static void mark_present(struct uzs_engine *e, uintptr_t start, uintptr_t end,
			 const struct range_list *present)
{
	size_t pc = 0;

	struct uzs_pt_walk w = uzs_pt_walk_start(start, end);

	while (uzs_pt_walk_next(e->pt, &w, false)) {
		for (size_t k = 0; w.pte && k < w.n; k++) {
			uintptr_t a = w.addr + (k << UZS_PAGE_SHIFT);

			if (in_ranges(present, &pc, a))
				w.pte[k].flags |= UZS_PTE_PRESENT;
			else	/* gone: any DONTNEED on it is done (fault.c) */
				w.pte[k].flags &= (uint8_t)~(UZS_PTE_PRESENT |
							     UZS_PTE_REMOVING);
		}
	}
}

/*
 * The region at or after addr, clipped to start at addr: false when there is
 * none.  Regions change under the fault thread between chunks, so a walk
 * keeps an address, not an index.  Under e->lock.
 */
static bool next_span(struct uzs_engine *e, uintptr_t addr, uintptr_t *start,
		      uintptr_t *end, bool *wp)
{
	for (size_t r = 0; r < e->nregions; r++) {
		if (e->regions[r].end <= addr)
			continue;
		*start = e->regions[r].start > addr ? e->regions[r].start : addr;
		*end = e->regions[r].end;
		*wp = e->regions[r].wp;
		return true;
	}
	return false;
}

/*
 * Age every managed page by one scan.  The lock is taken per chunk of
 * SCAN_CHUNK bytes, so a fault waits at most one chunk's work (about a
 * hundred microseconds) for the scan, however large the process.
 *
 * A kicked scan (age_by 0) reads which pages were written but leaves them
 * unprotected: "written since the last timed scan" is all either kind of
 * scan needs, and each page protected again costs the program a fault at
 * its next write.  Under a limit, scans are kicked several times a second
 * while a hot set comes back, and protecting it again at each made
 * examples/cache's hot phase take 20,000 more faults (PVM guests like this
 * one pay a VM exit for each).
 *
 * For the same reason a timed scan protects again only one chunk in
 * s->rearm_every, in turn (see rearm_every()).  A page in another chunk,
 * written since its chunk was last protected, reads as written and stays
 * at age 0 for up to that many scans more: it looks younger than it is by
 * at most that, an error of accuracy, never of data.
 */
static bool rearm_due(const struct uzs_engine *e, const struct scan_state *s,
		      uintptr_t start)
{
	return s->age_by &&
	       ((start / SCAN_CHUNK) + e->rearm_turn) % s->rearm_every == 0;
}

static void age_all(struct uzs_engine *e, struct scan_state *s)
{
	struct range_list *present = &e->scan[0], *written = &e->scan[1];
	uintptr_t cursor = 0, start, end;
	bool wp;

	for (;;) {
		uintptr_t stop, wstop, pstop;

		uzs_lock(e);
		if (!next_span(e, cursor, &start, &end, &wp)) {
			pthread_mutex_unlock(&e->lock);
			return;
		}
		stop = end - start > SCAN_CHUNK ? start + SCAN_CHUNK : end;
		wstop = stop;
		/* The pagemap ioctls never wait for the fault thread, so they
		 * are safe under the lock, and quick for one chunk.  Only a
		 * timed scan protects written pages again (see above). */
		if (e->have_wp_async && wp)
			wstop = scan_ranges(e, start, stop, PAGE_IS_WRITTEN,
					    rearm_due(e, s, start), written);
		else
			written->n = 0;
		pstop = scan_ranges(e, start, wstop, PAGE_IS_PRESENT, false,
				    present);
		/* Ageing allocates the table for new resident pages, so it goes
		 * first: then they are marked present in this same scan. */
		age_chunk(e, start, pstop, present, written, s);
		mark_present(e, start, pstop, present);
		pthread_mutex_unlock(&e->lock);
		cursor = pstop > start ? pstop : start + UZS_PAGE_SIZE;
	}
}

/* Choose victims by age, chunk by chunk like age_all. */
static void collect_victims(struct uzs_engine *e, unsigned min_age,
			    unsigned min_age_protected)
{
	uintptr_t cursor = 0, start, end;
	bool wp;

	e->nvictims = 0;
	for (;;) {
		uintptr_t stop;

		uzs_lock(e);
		if (!next_span(e, cursor, &start, &end, &wp)) {
			pthread_mutex_unlock(&e->lock);
			return;
		}
		stop = end - start > SCAN_CHUNK ? start + SCAN_CHUNK : end;
		struct uzs_pt_walk w = uzs_pt_walk_start(start, stop);

		while (uzs_pt_walk_next(e->pt, &w, false)) {
			for (size_t k = 0; w.pte && k < w.n; k++) {
				struct uzs_pte *q = &w.pte[k];
				unsigned need_age = q->protect ? min_age_protected
							       : min_age;

				if (q->state != UZS_PTE_NONE || q->age < need_age ||
				    !(q->flags & UZS_PTE_PRESENT) ||
				    (q->flags & (UZS_PTE_INCOMPRESSIBLE |
						 UZS_PTE_UNMOVABLE |
						 UZS_PTE_REMOVING)))
					continue;
				if (e->nvictims == e->victims_cap) {
					pthread_mutex_unlock(&e->lock);
					return;
				}
				e->victims[e->nvictims++] = w.addr + (k << UZS_PAGE_SHIFT);
			}
		}
		pthread_mutex_unlock(&e->lock);
		cursor = stop;
	}
}

/*
 * How many timed scans apart a chunk's written pages are protected again.
 * Each one costs the program a fault at its next write to the page, so a
 * hot set written all the time pays one per page per protection: in
 * examples/cache's hot phase under a limit, where scans are not spaced out
 * (they take pages out), 5,000-11,000 faults a phase at every scan against
 * 4,800 restores.  Every 4th scan (REARM_EVERY_MAX) pays a quarter of
 * that.  The cost is accuracy: a page looks written for up to that many
 * scans more, so with UZSWAP_COLD_AGE no more scans than an eighth of it
 * (the cap scans that back off also keep), and scans already far apart
 * (backed off) protect every time.
 */
#define REARM_EVERY_MAX 4u

static unsigned rearm_every(const struct uzs_engine *e, unsigned age_by)
{
	uint64_t cap = REARM_EVERY_MAX;

	if (e->cfg.cold_age_ns) {
		uint64_t eighth = e->cfg.cold_age_ns / 8 / e->cfg.scan_interval_ns;

		if (eighth < cap)
			cap = eighth;
	}
	cap = age_by ? cap / age_by : cap;
	return cap > 1 ? (unsigned)cap : 1;
}

void uzs_policy_scan(struct uzs_engine *e, unsigned age_by)
{
	struct scan_state s;
	uint64_t need, cold_scans = 0;
	unsigned min_age = AGE_MAX + 1, min_age_prot = AGE_MAX + 1;

	memset(&s, 0, sizeof(s));
	s.age_by = age_by < AGE_MAX ? age_by : AGE_MAX;
	s.retry_unmovable = age_by && e->st.scans % UNMOVABLE_RETRY_SCANS == 0;
	s.rearm_every = rearm_every(e, s.age_by);
	if (age_by)
		e->rearm_turn++;
	age_all(e, &s);

	if (e->cfg.cold_age_ns) {
		cold_scans = e->cfg.cold_age_ns / e->cfg.scan_interval_ns;
		if (cold_scans < 1)
			cold_scans = 1;
		if (cold_scans > AGE_MAX)
			cold_scans = AGE_MAX;
		min_age = min_age_prot = (unsigned)cold_scans;
	}
	uzs_lock(e);
	e->resident_pages = s.resident;
	e->st.scans++;
	need = pages_over_limit(e, s.resident);
	e->limit_stuck = false;
	e->limit_floor_pages = 0;
	if (need) {
		uint64_t got = 0;
		unsigned t = threshold_for(s.hist, need, &got);

		if (t < min_age)
			min_age = t;
		if (got < need && protected_would_fit(e, &s, need, got)) {
			/* Not enough cold pages: protected ones go too. */
			t = threshold_for(s.hist_protected, need - got, &got);
			if (t < min_age_prot)
				min_age_prot = t;
		}
		/* Short of the limit even so: a fault over the limit need not
		 * ask again before the next timed scan, nothing will change. */
		e->limit_stuck = got < need;
		if (e->limit_stuck && uzs_evict_possible(e))
			e->limit_floor_pages = limit_floor(e, &s, got);
	}
	pthread_mutex_unlock(&e->lock);
	e->nvictims = 0;
	if (min_age <= AGE_MAX || min_age_prot <= AGE_MAX)
		collect_victims(e, min_age, min_age_prot);
}
