/*
 * fault.c - the fault thread: every message of the application's
 * userfaultfd, page faults and layout events, handled strictly in order.
 *
 * Why one thread, in order
 * ------------------------
 * A layout event (madvise DONTNEED, munmap, mremap) is "complete" the moment
 * we read it: the application thread that caused it goes on to zap or move
 * the pages.  If a fault read *before* the event were resolved *after* it
 * (by another thread, or later by this one), its UFFDIO_COPY could put old
 * data into memory the application has just discarded - a wrong byte, and
 * silently.  So no message is read while an earlier fault is unresolved, and
 * the only reordering allowed is the kernel's own: when a resolution fails
 * with EAGAIN because an event is pending, that event logically came first,
 * so it is read and handled, and the fault is then resolved against the new
 * state.  Faults read in the meantime wait in a queue, in order.
 *
 * A single thread also measured best on a 2-vCPU VM: the scheduler runs it
 * on the faulting thread's CPU (18 us p50 for a compressed page, versus 21-26
 * for two pinned threads sharing a token, 36 for a thread pinned elsewhere).
 *
 * What a missing page means
 * -------------------------
 * The page table says.  NONE: never taken out, so this is the first touch of
 * fresh memory (or of memory the application discarded): zero-fill a window
 * of pages at once, so a program that allocates a lot pays one round trip per
 * window, not per page.  ZERO/SAME: fill without the codec.  STORED:
 * decompress from the pool into place, then free the object.  BACKED: the
 * same from the backing file (evict.c).  STAGED: the
 * reclaimer has the page but has not stored it yet: copy it back from
 * staging.  A page that cannot be restored (corrupt object) is poisoned, so
 * the application gets SIGBUS on it, never zeros.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backing.h"
#include "engine_internal.h"

#ifndef UFFDIO_POISON
struct uffdio_poison {
	struct uffdio_range range;
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, 0x08, struct uffdio_poison)
#endif

#define FIRST_TOUCH_MIN 16u
#define FIRST_TOUCH_MAX 256u

static int fetch_messages(struct uzs_engine *e);

/* ------------------------------------------------------------ helpers */

static void pte_clear(struct uzs_engine *e, struct uzs_pte *p)
{
	switch (p->state) {
	case UZS_PTE_STORED:
		uzs_pool_free(uzs_pte_pool(e, p), p->val);
		uzs_count_stored(e, p->pool, -1);
		break;
	case UZS_PTE_ZERO:
		e->st.pages_zero--;
		break;
	case UZS_PTE_SAME:
		e->st.pages_same--;
		break;
	case UZS_PTE_STAGED:
		/* The reclaimer sees the state change and frees its copy. */
		break;
	case UZS_PTE_BACKED:
		uzs_evict_forget(e, p->val);
		e->st.pages_backed--;
		break;
	}
	p->state = UZS_PTE_NONE;
	p->val = 0;
	/* An eviction in flight sees this and drops its file copy. */
	p->flags &= (uint8_t)~UZS_PTE_WRITEBACK;
}

void uzs_drop_range(struct uzs_engine *e, uintptr_t start, uintptr_t end)
{
	struct uzs_pt_walk w = uzs_pt_walk_start(start, end);

	while (uzs_pt_walk_next(e->pt, &w, false)) {
		for (size_t i = 0; w.pte && i < w.n; i++) {
			pte_clear(e, &w.pte[i]);
			w.pte[i].age = w.pte[i].flags = w.pte[i].protect = 0;
			w.pte[i].refaults = 0;
		}
	}
}

/*
 * madvise(DONTNEED) raises REMOVE, waits until we have read it, and only
 * then zaps the range.  A page still mapped in between must not be taken
 * out: taken out before the zap, it would escape it, and come back later
 * with the contents the program had just thrown away.  So the range is
 * flagged until each page is seen gone (policy.c, at a scan), faults in
 * (it was missing, so zapped or never there) or is seen written after the
 * event (policy.c: MADV_FREE, which raises the same event, never zaps; write
 * tracking is re-armed over the range here so that a write seen later is
 * known to come after it), or 2 s have passed (policy.c: a page freed with
 * MADV_FREE and never written again).  The table is allocated for
 * the whole range: a page without an entry is resident but not yet seen by
 * a scan, the very case to catch.
 */
static void mark_removing(struct uzs_engine *e, uintptr_t start, uintptr_t end)
{
	struct uzs_pt_walk w = uzs_pt_walk_start(start, end);

	while (uzs_pt_walk_next(e->pt, &w, true)) {
		if (!w.pte) {
			/* Table full: no take-outs at all is the safe way. */
			uzs_log(e, UZS_LOG_ERROR, "page table full: no more "
				"pages will be compressed");
			e->takeouts_stopped = true;
			return;
		}
		for (size_t i = 0; i < w.n; i++) {
			w.pte[i].flags |= UZS_PTE_REMOVING;
			w.pte[i].age = 0;       /* how long ago, for policy.c */
		}
	}
	/* Writes seen from now on come after the event. */
	uzs_policy_rearm(e, start, end);
}

static void move_range(struct uzs_engine *e, uintptr_t from, uintptr_t to,
		       size_t len)
{
	for (size_t off = 0; off < len; off += UZS_PAGE_SIZE) {
		struct uzs_pte *src = uzs_pt_lookup(e->pt, from + off), *dst;

		if (!src || (src->state == UZS_PTE_NONE && !src->age))
			continue;
		dst = uzs_pt_run(e->pt, to + off, true, &(size_t){ 0 });
		if (!dst) {
			/* No room for the table: lose only the bookkeeping of a
			 * resident page; a taken-out page must not be lost. */
			uzs_log(e, UZS_LOG_ERROR, "page table full during mremap");
			continue;
		}
		pte_clear(e, dst);
		*dst = *src;
		/* The eviction in flight, if any, names the old address. */
		dst->flags &= (uint8_t)~UZS_PTE_WRITEBACK;
		if (dst->state == UZS_PTE_STAGED)
			e->slots[dst->val].addr = to + off;
		/* Eviction finds a page by the owner tag of its object. */
		if (dst->state == UZS_PTE_STORED)
			uzs_pool_set_owner(uzs_pte_pool(e, dst), dst->val, to + off);
		memset(src, 0, sizeof(*src));
	}
}

/* The limit's measure now: resident memory as estimated (last scan plus
 * faults since).  Under e->lock. */
static uint64_t limit_used_pages(struct uzs_engine *e)
{
	return uzs_limit_used_pages(e, e->resident_pages);
}

/*
 * The level faults are held to, in pages, 0 for none: the limit, or when
 * the last scan found it out of reach even with the pool evicted, the
 * lowest level within reach (policy.c, limit_floor).  None when pages in
 * use would have to go and there is no backing file to take the pool.
 */
static uint64_t held_to(const struct uzs_engine *e)
{
	uint64_t limit = e->cfg.limit >> UZS_PAGE_SHIFT;

	if (e->limit_stuck && !uzs_evict_possible(e))
		return 0;
	return limit > e->limit_floor_pages ? limit : e->limit_floor_pages;
}

/* Over the limit between scans (a program allocating fast): wake the
 * reclaim thread once, rather than wait for its next interval. */
static void check_limit(struct uzs_engine *e)
{
	uint64_t limit = held_to(e);

	if (!limit || e->kicked)
		return;
	if (limit_used_pages(e) > limit) {
		e->kicked = true;
		uzs_kick_reclaim(e);
	}
}

/*
 * Backpressure.  A program that fills fresh memory faster than pages can be
 * compressed would run far past UZSWAP_LIMIT before the reclaim thread
 * caught up; the kernel's answer is direct reclaim in the allocating task,
 * ours is to hold back the fault that makes memory grow, a first touch or
 * a restore, while the limit's measure exceeds the limit (reclaim aims a
 * thirty-second below it, which keeps the two from chattering).  Restores
 * count as much as first touches: a program reading back all its data
 * under a 25% limit went 100 MiB past it while the reclaim thread spent a
 * second on one round.  A page in staging is resident already: not held.
 *
 * The fault waits in steps of THROTTLE_STEP_US with the lock dropped, so
 * the reclaim thread can work, and is then resolved afresh (-EAGAIN to
 * drain_queue, which reads pending events in between: the table may have
 * changed).  It waits only while reclaim makes progress: THROTTLE_STALL_NS
 * without the measure going down means reclaim cannot keep up, and holding
 * back then pauses for THROTTLE_OFF_NS, so a program is slowed to the speed
 * of compression, never stopped.  (The stall allows for a batch of
 * take-outs on a busy machine, tens of milliseconds; a shorter one let a
 * fast program run free most of the time.)  Faults are held back to
 * held_to(): the limit, or the lowest level within reach.
 */
#define THROTTLE_STEP_US 200u
#define THROTTLE_STALL_NS (100u * 1000000u)
#define THROTTLE_OFF_NS (20u * 1000000u)

/* Should a fault that makes memory grow wait now?  Keeps the marks of
 * progress.  Under e->lock. */
static bool must_wait(struct uzs_engine *e)
{
	uint64_t limit = held_to(e), now, used;

	if (!limit)
		return false;
	used = limit_used_pages(e);
	if (e->takeouts_stopped || used <= limit) {
		e->throttle_mark_ns = 0;
		return false;
	}
	now = uzs_now_ns();
	if (now < e->throttle_off_until)
		return false;
	if (!e->throttle_mark_ns || used < e->throttle_mark_pages) {
		e->throttle_mark_ns = now;      /* progress: wait on */
		e->throttle_mark_pages = used;
	} else if (now - e->throttle_mark_ns > THROTTLE_STALL_NS) {
		e->throttle_mark_ns = 0;
		e->throttle_off_until = now + THROTTLE_OFF_NS;
		return false;
	}
	return true;
}

static bool hold_back(struct uzs_engine *e, bool restore)
{
	bool wait = must_wait(e);
	uint64_t t0;

	/* Compression leaves idle priority while we wait (reclaim.c). */
	__atomic_store_n(&e->holding_back, wait, __ATOMIC_RELAXED);
	if (!wait)
		return false;
	if (!e->kicked) {
		e->kicked = true;
		uzs_kick_reclaim(e);
	}
	t0 = uzs_now_ns();
	pthread_mutex_unlock(&e->lock);
	usleep(THROTTLE_STEP_US);
	uzs_lock_fault(e);
	t0 = uzs_now_ns() - t0;
	e->st.throttle_ns += t0;
	if (restore)
		e->st.throttle_restore_ns += t0;
	return true;
}

static void account_fault(struct uzs_engine *e, enum uzs_fault_kind kind,
			  uint64_t t0)
{
	check_limit(e);
	e->st.faults[kind]++;
	if (kind != UZS_FAULT_FIRST_TOUCH && kind != UZS_FAULT_SPURIOUS) {
		uzs_latency_add(&e->st.fault_latency, uzs_now_ns() - t0);
		e->st.refaults++;
	}
}

/* ------------------------------------------------------ resolution */

/*
 * After a successful restore: the page is resident and proven in use.  It is
 * kept from being taken out again for 8 scans, doubling at each further
 * refault (up to 255), so a page that keeps coming back is left alone for
 * longer and longer.
 */
static void mark_restored(struct uzs_engine *e, struct uzs_pte *p)
{
	p->state = UZS_PTE_NONE;
	p->val = 0;
	p->age = 0;
	p->flags |= UZS_PTE_REFAULTED;
	p->flags &= (uint8_t)~UZS_PTE_INCOMPRESSIBLE;
	static const uint8_t protect_for[] = { 0, 8, 16, 32, 64, 255 };

	if (p->refaults < 5)
		p->refaults++;
	p->protect = protect_for[p->refaults];
	e->resident_pages++;
}

/*
 * A page restored ahead of a reader is not proven in use: no refault, no
 * protection.  If the reader never comes it ages like any resident page.
 */
static void mark_read_ahead(struct uzs_engine *e, struct uzs_pte *p)
{
	p->state = UZS_PTE_NONE;
	p->val = 0;
	p->age = 0;
	p->flags &= (uint8_t)~UZS_PTE_INCOMPRESSIBLE;
	e->resident_pages++;
	e->st.read_ahead++;
}

/*
 * Copy one page in.  A page a fault asked for is in use, protected from
 * take-out for a while (mark_restored) and at age 0: it is copied in with
 * write tracking off, as arming it would cost the program one more fault
 * at its first write, for nothing (examples/cache's hot phase under a
 * limit: 4,800 restores took another 5,000-7,000 such faults).  It reads
 * as written until a scan protects its chunk again (policy.c).  A page
 * read ahead or thawed for a fork is not known to be in use: tracked, so
 * it ages unless written.
 */
static int copy_page(struct uzs_engine *e, uintptr_t addr, const void *src,
		     enum uzs_restore_why why)
{
	uint64_t mode = 0;
	size_t done;
	struct uzs_region *r = uzs_region_find(e, addr);

	if (why != UZS_RESTORE_FAULT && r && r->wp)
		mode = UFFDIO_COPY_MODE_WP;
	return uzs_uffd_copy(&e->app, addr, src, UZS_PAGE_SIZE, mode, &done);
}

void uzs_poison_page(struct uzs_engine *e, uintptr_t addr, const char *why)
{
	struct uffdio_poison p = {
		.range = { .start = addr, .len = UZS_PAGE_SIZE },
	};

	uzs_log(e, UZS_LOG_ERROR, "page %#lx cannot be restored (%s): %s",
		(unsigned long)addr, why,
		e->have_poison ? "poisoned, access raises SIGBUS"
			       : "no UFFDIO_POISON here, aborting");
	if (!e->have_poison || ioctl(e->app.fd, UFFDIO_POISON, &p) != 0)
		abort();
}

/* A staged page whose slot does not hold it: say so, poison it. */
static int lost_staged(struct uzs_engine *e, struct uzs_pte *p, uintptr_t addr,
		       const char *slot_state)
{
	uzs_log(e, UZS_LOG_ERROR, "internal error: page %#lx is staged in "
		"slot %llu, which %s", (unsigned long)addr,
		(unsigned long long)p->val, slot_state);
	uzs_poison_page(e, addr, "internal error: lost track of it");
	p->state = UZS_PTE_NONE;
	p->val = 0;
	return 0;
}

/* An object read ahead from the backing file, or none (obj NULL). */
struct backed_read {
	const void *obj;
	long len;
};

static int restore(struct uzs_engine *e, uintptr_t addr,
		   struct backed_read pre, enum uzs_restore_why why)
{
	struct uzs_pte *p = uzs_pt_lookup(e->pt, addr);
	const void *src;
	long len;
	int rc;

	if (!p || p->state == UZS_PTE_NONE)
		return -ENOENT;
	switch (p->state) {
	case UZS_PTE_ZERO:
		src = e->zeros;
		break;
	case UZS_PTE_SAME:
		uzs_page_fill(e->fault_page, p->val);
		src = e->fault_page;
		break;
	case UZS_PTE_STORED:
		len = uzs_pool_read(uzs_pte_pool(e, p), p->val, e->fault_obj,
				    UZS_PAGE_SIZE);
		if (len < 0 || uzs_codec_decompress(e->fault_obj, (size_t)len,
						    e->fault_page) != 0) {
			uzs_poison_page(e, addr, "corrupt compressed data");
			pte_clear(e, p);
			return 0;
		}
		src = e->fault_page;
		break;
	case UZS_PTE_BACKED:
		if (!pre.obj) {
			len = uzs_backing_read(e->backing, p->val, e->fault_obj,
					       UZS_PAGE_SIZE);
			pre = (struct backed_read){ e->fault_obj, len };
		}
		len = pre.len;
		if (len < 0 || uzs_codec_decompress(pre.obj, (size_t)len,
						    e->fault_page) != 0) {
			/* Never zeros instead: the program gets SIGBUS on
			 * this page, as after a failed swap-in. */
			e->st.backing_errors++;
			uzs_poison_page(e, addr, len < 0 ? "reading the backing file "
				    "failed" : "corrupt data in the backing file");
			pte_clear(e, p);
			return 0;
		}
		e->st.backing_reads++;
		src = e->fault_page;
		break;
	case UZS_PTE_STAGED:
		/* Cannot happen: the entry and its slot disagree, or the slot
		 * is empty (reading it would map the zero page there, as
		 * staging raises no missing faults).  The page's bytes are
		 * not known to be anywhere: never guess, never zeros. */
		if (p->val >= UZS_STAGING_PAGES ||
		    e->slots[p->val].state != SLOT_FILLED ||
		    e->slots[p->val].addr != addr)
			return lost_staged(e, p, addr, "does not hold it");
		if (!uzs_staging_holds(e, (unsigned)p->val, 1))
			return lost_staged(e, p, addr, "is empty");
		src = e->staging + p->val * UZS_PAGE_SIZE;
		break;
	default:
		return -EINVAL;
	}
	rc = copy_page(e, addr, src, why);
	if (rc == 0 || rc == -EEXIST) {
		/* EEXIST: present already (cannot be, as we hold the only copy,
		 * unless the app raced a new mapping in): ours is stale. */
		if (p->state == UZS_PTE_STAGED)
			e->slots[p->val].state = SLOT_CONSUMED;
		pte_clear(e, p);
		if (why == UZS_RESTORE_AHEAD)
			mark_read_ahead(e, p);
		else
			mark_restored(e, p);
	}
	return rc;
}

int uzs_fault_restore(struct uzs_engine *e, uintptr_t addr,
		      enum uzs_restore_why why)
{
	return restore(e, addr, (struct backed_read){ NULL, 0 }, why);
}

/*
 * A page in the backing file: read its object with the lock dropped, so a
 * slow disk stalls only this fault, not the reclaim thread and, through it,
 * every other.  Only this thread changes a backed entry (events are read
 * here; eviction only turns stored entries into backed ones), except the
 * fork hook, which may restore the page meanwhile: so the entry is checked
 * again under the lock, and if it changed the read is thrown away and the
 * fault resolved afresh (-EAGAIN).  The object goes to a buffer of this
 * thread's own, which the fork hook's restore never uses.
 */
static int restore_backed(struct uzs_engine *e, struct uzs_pte *p,
			  uintptr_t addr, enum uzs_restore_why why)
{
	uint64_t loc = p->val;
	long len;

	pthread_mutex_unlock(&e->lock);
	len = uzs_backing_read(e->backing, loc, e->backed_obj, UZS_PAGE_SIZE);
	uzs_lock_fault(e);
	/* Table nodes are never freed: p is still the entry for addr. */
	if (p->state != UZS_PTE_BACKED || p->val != loc)
		return -EAGAIN;
	return restore(e, addr, (struct backed_read){ e->backed_obj, len }, why);
}

/* Zero-fill n pages at addr; done gets the bytes filled. */
static int fill_zeros(struct uzs_engine *e, const struct uzs_region *r,
		      uintptr_t addr, size_t n, bool write, size_t *done)
{
	int rc;

	if (write)
		return uzs_uffd_copy(&e->app, addr, e->zeros, n << UZS_PAGE_SHIFT,
				     0, done);
	rc = uzs_uffd_zeropage(&e->app, addr, n << UZS_PAGE_SHIFT, done);
	/* ZEROPAGE refuses a page that holds a uffd-wp marker (write tracking
	 * leaves them on pages that are not present); COPY takes it.  A page
	 * really present fails COPY with EEXIST too, and is then spurious. */
	if (rc == -EEXIST && *done == 0)
		rc = uzs_uffd_copy(&e->app, addr, e->zeros, n << UZS_PAGE_SHIFT,
				   r && r->wp ? UFFDIO_COPY_MODE_WP : 0, done);
	return rc;
}

/*
 * First touch: zero-fill from addr over the following pages that are also
 * untouched and in the same region.  The window grows while touches are
 * sequential (a program filling fresh memory) and shrinks back otherwise.
 */
static int first_touch(struct uzs_engine *e, uintptr_t addr, bool write,
		       size_t *filled)
{
	struct uzs_region *r;
	size_t want, n = 1, done = 0;
	int rc;

	r = uzs_region_find(e, addr);
	want = e->first_touch_window;

	if (addr == e->last_first_touch_end && want < FIRST_TOUCH_MAX)
		want *= 2;
	else if (addr != e->last_first_touch_end)
		want = FIRST_TOUCH_MIN;
	e->first_touch_window = want;
	if (r) {
		size_t room = (r->end - addr) >> UZS_PAGE_SHIFT;

		if (want > room)
			want = room;
		while (n < want) {
			struct uzs_pte *p = uzs_pt_lookup(e->pt,
				addr + (n << UZS_PAGE_SHIFT));

			if (p && p->state != UZS_PTE_NONE)
				break;
			n++;
		}
	}
	rc = fill_zeros(e, r, addr, n, write, &done);
	/* The window may reach into a mapping our table has not caught up
	 * with (mprotect splits a region without telling us): the kernel
	 * refuses a range over two mappings.  The faulting page alone is
	 * what must be resolved, or it faults again and again. */
	if (rc == -ENOENT && done == 0 && n > 1)
		rc = fill_zeros(e, r, addr, 1, write, &done);
	*filled = done >> UZS_PAGE_SHIFT;
	e->resident_pages += *filled;
	/* They were missing: a DONTNEED pending on them has been done. */
	for (size_t i = 0; i < *filled; i++) {
		struct uzs_pte *q = uzs_pt_lookup(e->pt, addr + (i << UZS_PAGE_SHIFT));

		if (q)
			q->flags &= (uint8_t)~UZS_PTE_REMOVING;
	}
	e->last_first_touch_end = addr + done;
	if ((rc == -EEXIST || rc == -EAGAIN) && done > 0)
		rc = 0;         /* the faulting page is in (and woken) */
	return rc;
}

/*
 * Read-ahead.  A program reading back memory it left alone for long often
 * reads it in order (a scan, a copy, a checksum), and pays a round trip to
 * this thread per page: about 80 us here, where the copy itself takes 20.
 * After READ_AHEAD_STREAK restores in order, the pages after the faulting
 * one are restored too, without waiting for their faults: 2, then twice as
 * many at each fault in order, up to READ_AHEAD_MAX.  In order means at the
 * page after the last run, or past it over pages that were never taken out
 * (the reader walked through them).  So three pages are needed, and a
 * random reader of two-page records does not set it off.  A run skips
 * pages not taken out, reads those in the backing file with the lock
 * dropped (restore_backed; examples/cache's verify under a 25% limit has
 * nearly every page there, and stopping at them left its read-back at one
 * round trip a page), stops at the region's end, at the limit, and when
 * other faults are waiting, queued or not yet read (they go first: a run
 * of 32 takes half a millisecond).  Pages read ahead are not protected
 * (mark_read_ahead).  Under e->lock, dropped and taken again.
 */
#define READ_AHEAD_STREAK 2u
#define READ_AHEAD_MAX 32u
#define READ_AHEAD_CHECK 8u     /* pages between looks for waiting faults */

static bool messages_waiting(struct uzs_engine *e)
{
	struct pollfd pfd = { .fd = e->app.fd, .events = POLLIN };

	return e->qlen > 1 || poll(&pfd, 1, 0) > 0;
}

/* Did the reader come in order: to the page after the last run, or past
 * it over pages that are not taken out? */
static bool in_order(struct uzs_engine *e, uintptr_t addr)
{
	uintptr_t a = e->read_ahead_next;

	if (addr < a || addr - a > ((uintptr_t)READ_AHEAD_MAX << UZS_PAGE_SHIFT))
		return false;
	for (; a < addr; a += UZS_PAGE_SIZE) {
		const struct uzs_pte *p = uzs_pt_lookup(e->pt, a);

		if (p && p->state != UZS_PTE_NONE)
			return false;
	}
	return true;
}

static void read_ahead(struct uzs_engine *e, uintptr_t addr)
{
	uint64_t limit = e->cfg.limit >> UZS_PAGE_SHIFT;
	const struct uzs_region *r = uzs_region_find(e, addr);
	unsigned want, n = 0, streak;
	uintptr_t end;

	streak = in_order(e, addr) ? e->read_ahead_streak + 1 : 0;
	e->read_ahead_streak = streak;
	e->read_ahead_next = addr + UZS_PAGE_SIZE;
	if (streak < READ_AHEAD_STREAK || !r)
		return;
	/* Not r->end: regions may change while a backed read drops the lock
	 * (a page in a region gone since fails its copy, harmlessly). */
	end = r->end;
	streak -= READ_AHEAD_STREAK;
	want = streak < 5 ? 2u << streak : READ_AHEAD_MAX;
	if (want > READ_AHEAD_MAX)
		want = READ_AHEAD_MAX;
	for (; n < want; n++) {
		uintptr_t a = addr + ((uintptr_t)(n + 1) << UZS_PAGE_SHIFT);
		struct uzs_pte *p;
		int rc;

		if (a >= end)
			break;
		if (n % READ_AHEAD_CHECK == 0 && messages_waiting(e))
			break;
		p = uzs_pt_lookup(e->pt, a);
		if (!p || p->state == UZS_PTE_NONE)
			continue;
		if ((p->state != UZS_PTE_ZERO && p->state != UZS_PTE_SAME &&
		     p->state != UZS_PTE_STORED && p->state != UZS_PTE_BACKED) ||
		    (limit && limit_used_pages(e) >= limit))
			break;
		rc = p->state == UZS_PTE_BACKED ?
			     restore_backed(e, p, a, UZS_RESTORE_AHEAD) :
			     uzs_fault_restore(e, a, UZS_RESTORE_AHEAD);
		if (rc)
			break;
	}
	e->read_ahead_next = addr + ((uintptr_t)(n + 1) << UZS_PAGE_SHIFT);
}

static int resolve_fault(struct uzs_engine *e, const struct uffd_msg *m)
{
	uintptr_t addr = PAGE_ALIGN_DOWN(m->arg.pagefault.address);
	bool write = m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE;
	struct uzs_pte *p = uzs_pt_lookup(e->pt, addr);
	uint64_t t0 = uzs_now_ns();
	enum uzs_fault_kind kind;
	size_t filled = 0;
	int rc;

	if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
		/* Only with synchronous write protection, which we do not
		 * arm; undo it rather than leave the writer stuck. */
		uzs_uffd_writeprotect(&e->app, addr, UZS_PAGE_SIZE, 0);
		return 0;
	}
	if ((!p || p->state == UZS_PTE_NONE) && !uzs_region_find(e, addr)) {
		/* A registered range we do not know: grown in place, or moved
		 * by an mremap whose event is still unread.  Read it first. */
		fetch_messages(e);
		p = uzs_pt_lookup(e->pt, addr);
	}
	if (!p || p->state == UZS_PTE_NONE) {
		if (hold_back(e, false))
			return -EAGAIN;
		kind = UZS_FAULT_FIRST_TOUCH;
		uzs_pools_place(e, &e->fault_pref, -1);
		rc = first_touch(e, addr, write, &filled);
	} else {
		kind = p->state == UZS_PTE_ZERO     ? UZS_FAULT_ZERO :
		       p->state == UZS_PTE_SAME     ? UZS_FAULT_SAME :
		       p->state == UZS_PTE_STORED   ? UZS_FAULT_STORED :
		       p->state == UZS_PTE_BACKED   ? UZS_FAULT_BACKED :
						      UZS_FAULT_STAGED;
		/* A staged page is resident already (in staging). */
		if (kind != UZS_FAULT_STAGED && hold_back(e, true))
			return -EAGAIN;
		/* Back on its node (pools.c); a staged page's is not known. */
		uzs_pools_place(e, &e->fault_pref,
				kind == UZS_FAULT_STAGED ? -1 : p->pool);
		rc = p->state == UZS_PTE_BACKED ?
			     restore_backed(e, p, addr, UZS_RESTORE_FAULT) :
			     uzs_fault_restore(e, addr, UZS_RESTORE_FAULT);
	}
	if (rc == -EAGAIN)
		return rc;
	if (rc == -EEXIST || rc == -ENOENT) {
		/* Already present (two threads faulted on one page) or the
		 * mapping is gone: make sure nobody stays asleep on it. */
		uzs_uffd_wake(&e->app, addr, UZS_PAGE_SIZE);
		kind = UZS_FAULT_SPURIOUS;
	} else if (rc && rc != -ESRCH) {
		uzs_log(e, UZS_LOG_WARN, "fault at %#lx: %s", (unsigned long)addr,
			uzs_strerror(-rc));
		uzs_uffd_wake(&e->app, addr, UZS_PAGE_SIZE);
	}
	account_fault(e, kind, t0);
	if (rc == 0 && kind != UZS_FAULT_FIRST_TOUCH)
		read_ahead(e, addr);
	return rc;
}

/* ----------------------------------------------------------- events */

static void handle_event(struct uzs_engine *e, const struct uffd_msg *m)
{
	switch (m->event) {
	case UFFD_EVENT_REMOVE:
		e->st.events_remove++;
		uzs_drop_range(e, m->arg.remove.start, m->arg.remove.end);
		mark_removing(e, m->arg.remove.start, m->arg.remove.end);
		break;
	case UFFD_EVENT_UNMAP:
		e->st.events_unmap++;
		uzs_drop_range(e, m->arg.remove.start, m->arg.remove.end);
		uzs_regions_remove(e, m->arg.remove.start, m->arg.remove.end);
		break;
	case UFFD_EVENT_REMAP:
		e->st.events_remap++;
		move_range(e, m->arg.remap.from, m->arg.remap.to,
			   m->arg.remap.len);
		uzs_regions_move(e, m->arg.remap.from, m->arg.remap.to,
				 m->arg.remap.len);
		break;
	default:
		uzs_log(e, UZS_LOG_WARN, "unexpected userfaultfd event %u",
			m->event);
		break;
	}
}

/* ------------------------------------------------------ message loop */

static void enqueue(struct uzs_engine *e, const struct uffd_msg *m)
{
	if (e->qlen == UZS_FAULT_QUEUE) {
		/* Each thread has at most one fault pending, so this needs
		 * more threads than the queue: resolve the oldest now. */
		uzs_log(e, UZS_LOG_WARN, "fault queue full");
		return;
	}
	e->queue[(e->qhead + e->qlen) % UZS_FAULT_QUEUE] = *m;
	e->qlen++;
}

/* Read what is there without blocking: events now, faults to the queue. */
static int fetch_messages(struct uzs_engine *e)
{
	struct uffd_msg msgs[32];
	ssize_t n = read(e->app.fd, msgs, sizeof(msgs));

	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
		if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
			enqueue(e, &msgs[i]);
		else
			handle_event(e, &msgs[i]);
	}
	return (int)((size_t)n / sizeof(msgs[0]));
}

/* Resolve queued faults in order; false once the process is exiting. */
static bool drain_queue(struct uzs_engine *e)
{
	unsigned again = 0;

	while (e->qlen) {
		struct uffd_msg m = e->queue[e->qhead];
		int rc = resolve_fault(e, &m);

		if (rc == -EAGAIN) {
			/* An event is pending: it goes first.  It may not be
			 * readable yet (queued a moment after mmap_changing is
			 * raised): yield and retry. */
			if (fetch_messages(e) <= 0 && ++again > 1000) {
				pthread_mutex_unlock(&e->lock);
				usleep(50);
				uzs_lock_fault(e);
			} else if (again > 10) {
				sched_yield();
			}
			continue;
		}
		again = 0;
		e->qhead = (e->qhead + 1) % UZS_FAULT_QUEUE;
		e->qlen--;
		if (rc == -ESRCH)
			return false;
	}
	return true;
}

/*
 * With a limit, the fault thread also watches the process's RSS for
 * mappings filling unseen (uzs_watch_rss): it is the one thread that is
 * never busy for long, where the reclaim thread can spend tens of
 * milliseconds in one scan or eviction while a new slab fills natively.
 * Every RSS_WATCH_MIN_MS while the RSS moves or faults come; the interval
 * doubles, up to RSS_WATCH_MAX_MS, while neither does (at 5 ms throughout,
 * an idle program cost a CPU 0.8% more).  Faults count because an RSS held
 * still by hold_back is not a quiet program: with the RSS alone, the watch
 * backed off to 80 ms while examples/cache was held at the limit, and its
 * next 32 MiB slab filled 9 MiB natively before it was seen.
 */
#define RSS_WATCH_MIN_MS 5
#define RSS_WATCH_MAX_MS 80
#define RSS_STILL_PAGES 64u

struct rss_watch {
	uint64_t next_ns, last_rss;
	uint64_t last_faults;           /* faults of every kind, at the last look */
	int interval_ms;                /* 0: no limit, no watching */
};

static uint64_t faults_so_far(const struct uzs_engine *e)
{
	uint64_t n = 0;

	for (unsigned k = 0; k < UZS_FAULT_KINDS; k++)
		n += e->st.faults[k];
	return n;
}

/* The poll timeout until the next look, -1 for none. */
static int watch_timeout_ms(const struct rss_watch *w)
{
	uint64_t now = uzs_now_ns();

	if (!w->interval_ms)
		return -1;
	if (now >= w->next_ns)
		return 0;
	return (int)((w->next_ns - now + 999999u) / 1000000u);
}

static void watch_rss(struct uzs_engine *e, struct rss_watch *w)
{
	uint64_t now = uzs_now_ns(), rss, faults;

	if (!w->interval_ms || now < w->next_ns)
		return;
	uzs_lock_fault(e);
	rss = uzs_watch_rss(e);
	check_limit(e);
	faults = faults_so_far(e);
	pthread_mutex_unlock(&e->lock);
	if (rss + RSS_STILL_PAGES < w->last_rss ||
	    rss > w->last_rss + RSS_STILL_PAGES || faults != w->last_faults)
		w->interval_ms = RSS_WATCH_MIN_MS;
	else if (w->interval_ms < RSS_WATCH_MAX_MS)
		w->interval_ms *= 2;
	w->last_rss = rss;
	w->last_faults = faults;
	w->next_ns = now + (uint64_t)w->interval_ms * 1000000u;
}

void *uzs_fault_thread_main(void *arg)
{
	struct uzs_engine *e = arg;
	struct rss_watch watch = {
		.interval_ms = e->cfg.limit ? RSS_WATCH_MIN_MS : 0,
	};

	for (;;) {
		struct pollfd fds[2] = {
			{ .fd = e->app.fd, .events = POLLIN },
			{ .fd = e->stop_fd, .events = POLLIN },
		};

		if (poll(fds, 2, watch_timeout_ms(&watch)) < 0 && errno != EINTR)
			break;
		if (fds[1].revents)
			break;
		watch_rss(e, &watch);
		if (!(fds[0].revents & POLLIN))
			continue;
		uzs_lock_fault(e);
		fetch_messages(e);
		bool alive = drain_queue(e);
		pthread_mutex_unlock(&e->lock);
		if (!alive)
			break;
	}
	return NULL;
}
