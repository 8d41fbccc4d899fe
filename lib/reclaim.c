/*
 * reclaim.c - taking cold pages out, and the reclaim thread.
 *
 * Never drop a page whose contents could have changed after we read them:
 * a page is taken out with UFFDIO_MOVE, which atomically unmaps it from the
 * application and maps it into our staging area, so there is no window in
 * which a write could land in a copy we are about to throw away.  Batches of
 * up to UZS_MOVE_BATCH contiguous pages go in one ioctl (one TLB flush for
 * the batch instead of one per page).
 *
 * A page's life through here, with the states of pagetable.h:
 *
 *   NONE --(lock: mark, MOVE)--> STAGED(slot) --(no lock: compress, store)-->
 *        --(lock: still STAGED(slot)?)--> ZERO | SAME | STORED(handle)
 *
 * While STAGED, a fault on the page is served by the fault thread straight
 * from the staging slot (SLOT_CONSUMED), and a DONTNEED/munmap of it just
 * clears the entry; either way, the final step finds the entry changed and
 * frees what it stored.  A page that does not compress (or finds the pool
 * full) is put back with UFFDIO_COPY and flagged so it is not tried again
 * until it is written.
 *
 * MOVE is issued under the engine lock.  That is safe because MOVE never
 * waits for the fault thread: while a layout event is unread it fails with
 * EAGAIN instead, and the round ends so the fault thread can read it.  That
 * EAGAIN is also what makes the take-out safe against a mapping that was
 * unmapped and replaced at the same address before we read the UNMAP: MOVE
 * is issued on the application's userfaultfd precisely to get it.
 *
 * MOVE refuses (EBUSY) a page shared with another process, which after a
 * fork is every page until it is written.  Such a page is made exclusive
 * again with MADV_POPULATE_WRITE - the kernel's own write fault, which
 * copies it without changing a byte - and moved in the same round.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine_internal.h"
#include "mmap_region.h"
#include "pool_internal.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

struct staged {
	unsigned slot;
	uint8_t pool;           /* of the page's NUMA node (pools.c) */
	bool lost;              /* the slot is empty: cannot happen */
	struct uzs_compressed c;
	uzs_handle_t handle;
	int store_rc;
};

/* Does the page at a hold a page (present or swapped)?  1, 0, or -1 when
 * the page map cannot say. */
static int page_held(struct uzs_engine *e, uintptr_t a)
{
	uint64_t pm;

	if (e->pagemap_fd < 0 ||
	    pread(e->pagemap_fd, &pm, sizeof(pm),
		  (off_t)(a >> UZS_PAGE_SHIFT) * 8) != sizeof(pm))
		return -1;
	return (pm & (UZS_PM_PRESENT | UZS_PM_SWAPPED)) != 0;
}

/*
 * After a short move: the pages that did land in staging, counted from the
 * page map rather than from what the ioctl reported, because the count can
 * be short.  Linux 6.18's UFFDIO_MOVE moves batches of pages; when a step
 * fails with EAGAIN (a source entry changed under it: a write-protected
 * page being written, say) the walk retries, and a retry that moves a
 * batch leaves the EAGAIN set, so the walk goes round again without
 * counting the batch, meets its own pages at the destination and fails
 * with EEXIST.  bench/move_probe shows it (a few moves in 20000 under
 * contention).  Trusting the count, a page would sit in a slot we call
 * free while its entry says "never taken out", read as zeros, and make the
 * next move into that slot fail with EEXIST.  A page counts only if its
 * slot holds one and the program's address no longer does: a stray page
 * in the slot is not the program's.
 */
static size_t really_moved(struct uzs_engine *e, uintptr_t addr,
			   unsigned slot, size_t moved, size_t n)
{
	size_t k = moved;

	while (k < n &&
	       page_held(e, (uintptr_t)e->staging +
			    ((uintptr_t)(slot + k) << UZS_PAGE_SHIFT)) == 1 &&
	       page_held(e, addr + (k << UZS_PAGE_SHIFT)) == 0)
		k++;
	if (k != moved)
		uzs_log(e, UZS_LOG_INFO, "UFFDIO_MOVE reported %zu pages moved "
			"but moved %zu", moved, k);
	return k;
}

/* Mark [addr, addr+n) staged into slots [slot, slot+n) and move them.
 * Returns pages moved; *err gets the error that stopped the batch.  Under
 * e->lock. */
static size_t move_run(struct uzs_engine *e, uintptr_t addr, size_t n,
		       unsigned slot, int *err)
{
	size_t done = 0, moved;

	for (size_t i = 0; i < n; i++) {
		struct uzs_pte *p = uzs_pt_lookup(e->pt, addr + (i << UZS_PAGE_SHIFT));

		p->state = UZS_PTE_STAGED;
		p->val = slot + i;
		e->slots[slot + i] = (struct uzs_staging_slot){
			addr + (i << UZS_PAGE_SHIFT), SLOT_FILLED };
	}
	*err = uzs_uffd_move(&e->app, (uintptr_t)e->staging +
			     ((uintptr_t)slot << UZS_PAGE_SHIFT), addr,
			     n << UZS_PAGE_SHIFT, UFFDIO_MOVE_MODE_DONTWAKE, &done);
	moved = done >> UZS_PAGE_SHIFT;
	if (moved < n)
		moved = really_moved(e, addr, slot, moved, n);
	for (size_t i = moved; i < n; i++) {
		struct uzs_pte *p = uzs_pt_lookup(e->pt, addr + (i << UZS_PAGE_SHIFT));

		p->state = UZS_PTE_NONE;
		p->val = 0;
		e->slots[slot + i].state = SLOT_FREE;
	}
	return moved;
}

/* Is addr still a page we may take out?  Under e->lock. */
static bool still_victim(struct uzs_engine *e, uintptr_t addr)
{
	struct uzs_pte *p = uzs_pt_lookup(e->pt, addr);

	return p && p->state == UZS_PTE_NONE &&
	       !(p->flags & UZS_PTE_REMOVING) && uzs_region_find(e, addr);
}

/* Length of the run of victims starting at *i: contiguous, still eligible,
 * at most max.  Under e->lock. */
static size_t next_run(struct uzs_engine *e, size_t *i, size_t max)
{
	size_t n = 0;

	while (*i < e->nvictims && !still_victim(e, e->victims[*i]))
		(*i)++;
	while (*i + n < e->nvictims && n < max &&
	       e->victims[*i + n] == e->victims[*i] + (n << UZS_PAGE_SHIFT) &&
	       still_victim(e, e->victims[*i + n]))
		n++;
	return n;
}

bool uzs_staging_holds(struct uzs_engine *e, unsigned slot, unsigned n)
{
	uint64_t pm[UZS_STAGING_PAGES];
	uintptr_t a = (uintptr_t)e->staging + ((uintptr_t)slot << UZS_PAGE_SHIFT);
	ssize_t want = (ssize_t)(n * sizeof(pm[0]));

	if (e->pagemap_fd < 0 || slot + n > UZS_STAGING_PAGES ||
	    pread(e->pagemap_fd, pm, (size_t)want,
		  (off_t)(a >> UZS_PAGE_SHIFT) * 8) != want)
		return true;
	for (unsigned i = 0; i < n; i++)
		if (!(pm[i] & (UZS_PM_PRESENT | UZS_PM_SWAPPED)))
			return false;
	return true;
}

/* A slot that should be empty is not: say what is there, for a bug report
 * (pagemap bits: 63 present, 57 uffd-wp, 56 exclusive).  Seen before short
 * moves were recounted (really_moved); not since. */
static void report_full_slot(struct uzs_engine *e, unsigned slot)
{
	uint64_t pm = 0;
	uintptr_t a = (uintptr_t)e->staging + ((uintptr_t)slot << UZS_PAGE_SHIFT);
	unsigned refs = 0;

	if (e->pagemap_fd >= 0 &&
	    pread(e->pagemap_fd, &pm, sizeof(pm),
		  (off_t)(a >> UZS_PAGE_SHIFT) * 8) != sizeof(pm))
		pm = 0;
	for (unsigned i = 0; i < UZS_STAGING_PAGES; i++)
		refs += e->slots[i].state != SLOT_FREE;
	uzs_log(e, UZS_LOG_INFO, "staging slot %u is not empty (pagemap %#llx, "
		"slot state %u for %#lx, %u slots in use)", slot,
		(unsigned long long)pm, e->slots[slot].state,
		(unsigned long)e->slots[slot].addr, refs);
}

/* Empty one free slot through the trash.  Under e->lock. */
static bool clear_free_slot(struct uzs_engine *e, unsigned slot)
{
	size_t off = (size_t)slot << UZS_PAGE_SHIFT, done;
	int rc;

	if (e->slots[slot].state != SLOT_FREE)
		return false;
	rc = uzs_uffd_move(&e->stage, (uintptr_t)e->trash + off,
			   (uintptr_t)e->staging + off, UZS_PAGE_SIZE,
			   UFFDIO_MOVE_MODE_DONTWAKE |
			   UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES, &done);
	uzs_region_discard(e->trash + off, UZS_PAGE_SIZE);
	return rc == 0 && uzs_staging_holds(e, slot, 1) == false;
}

/*
 * How much of the run of n pages at addr lies in one mapping registered
 * with the program's userfaultfd: n, a shorter prefix, or 0.  MOVE would
 * take a page out of a mapping that is not registered just as well, and
 * that page would never fault back: the program would read zeros.  The
 * table should never name such a page (regions.c, adopt), and this makes
 * sure, at the cost of an ioctl a run.  A run over two registered mappings
 * (mprotect split one) is halved until its first part passes.  *err gets
 * -EAGAIN while a layout event is unread.  Under e->lock.
 */
static size_t registered_run(struct uzs_engine *e, uintptr_t addr, size_t n,
			     int *err)
{
	for (;;) {
		int rc = uzs_uffd_registered(&e->app, addr, n << UZS_PAGE_SHIFT);

		*err = rc < 0 ? rc : 0;
		if (rc == 1)
			return n;
		if (rc == -EAGAIN || n == 1)
			return 0;
		n /= 2;
	}
}

/* Stage victims into free slots; returns slots filled.  Under e->lock. */
static unsigned stage_batch(struct uzs_engine *e, size_t *vi,
			    struct staged *out)
{
	unsigned used = 0, cleared = 0;

	while (used < UZS_STAGING_PAGES && *vi < e->nvictims) {
		size_t max = UZS_STAGING_PAGES - used, n, moved;
		uintptr_t addr;
		int err;

		if (used) {
			/* Let a waiting fault in between two MOVEs. */
			pthread_mutex_unlock(&e->lock);
			uzs_lock(e);
		}

		if (max > UZS_MOVE_BATCH)
			max = UZS_MOVE_BATCH;
		n = next_run(e, vi, max);
		if (!n)
			break;
		addr = e->victims[*vi];
		n = registered_run(e, addr, n, &err);
		if (err == -EAGAIN) {
			*vi = e->nvictims;      /* as for MOVE, below */
			break;
		}
		if (!n) {
			struct uzs_pte *p = uzs_pt_lookup(e->pt, addr);

			/* Cannot happen (regions.c, adopt): say so once. */
			if (!e->said_unregistered)
				uzs_log(e, UZS_LOG_INFO, "page %#lx is not in a "
					"registered mapping: left in place (and any "
					"more such)", (unsigned long)addr);
			e->said_unregistered = true;
			if (p)
				p->flags |= UZS_PTE_UNMOVABLE;
			(*vi)++;
			continue;
		}
		moved = move_run(e, addr, n, used, &err);
		for (size_t k = 0; k < moved; k++)
			out[used + k].slot = used + (unsigned)k;
		used += (unsigned)moved;
		e->st.takeouts += moved;
		*vi += moved;
		/* A short move reports EAGAIN whatever stopped it: go on from
		 * the page it stopped at, whose MOVE alone says why. */
		if (moved == n || moved > 0)
			continue;
		/* Stopped at victims[*vi]: decide what to do with it. */
		uintptr_t bad = e->victims[*vi];

		if (err == -EBUSY) {
			/* Shared (fork) or pinned.  Break the sharing outside
			 * the lock, then retry this page once. */
			int rc;

			pthread_mutex_unlock(&e->lock);
			rc = madvise((void *)bad, UZS_PAGE_SIZE, MADV_POPULATE_WRITE);
			uzs_lock(e);
			if (rc == 0 && still_victim(e, bad) &&
			    move_run(e, bad, 1, used, &err) == 1) {
				out[used].slot = used;
				used++;
				e->st.takeouts++;
			} else {
				struct uzs_pte *p = uzs_pt_lookup(e->pt, bad);

				if (p)
					p->flags |= UZS_PTE_UNMOVABLE;
				e->st.takeout_busy++;
			}
		} else if (err == -EAGAIN) {
			/* A layout event is pending: end the round so the
			 * fault thread can read it. */
			*vi = e->nvictims;
			break;
		} else if (err == -EEXIST) {
			/* A free staging slot holds a page.  No entry refers to
			 * it, so nothing of the program's is in it: clear it and
			 * go on.  If it cannot be cleared, stop taking out,
			 * which is always safe. */
			report_full_slot(e, used);
			if (e->takeouts_stopped || ++cleared > 4 ||
			    !clear_free_slot(e, used)) {
				uzs_log(e, UZS_LOG_ERROR, "staging slot %u cannot "
					"be cleared: no more pages will be "
					"compressed", used);
				e->takeouts_stopped = true;
				*vi = e->nvictims;
				break;
			}
			continue;       /* the same page, into the cleared slot */
		} else if (err != -ENOENT) {
			/* EINVAL: e.g. an mlocked or read-only mapping. */
			struct uzs_pte *p = uzs_pt_lookup(e->pt, bad);

			if (p)
				p->flags |= UZS_PTE_UNMOVABLE;
			uzs_log(e, UZS_LOG_DEBUG, "cannot take out %#lx: %s",
				(unsigned long)bad, uzs_strerror(-err));
		}
		(*vi)++;
	}
	return used;
}

/* Into its pool; pools at their cap make room by eviction if they can. */
static int store(struct uzs_engine *e, const struct staged *s,
		 uintptr_t owner, uzs_handle_t *handle)
{
	const struct uzs_compressed *c = &s->c;
	int rc = uzs_pools_alloc(e, s->pool, c->data, c->len, owner, handle);

	if (rc == -ENOSPC && e->cfg.pool_max && uzs_evict_possible(e)) {
		uzs_evict_pool(e, e->cfg.pool_max - e->cfg.pool_max / 16);
		rc = uzs_pools_alloc(e, s->pool, c->data, c->len, owner, handle);
	}
	return rc;
}

/* Which pool each staged page goes to: one question for the batch. */
static void find_pools(struct uzs_engine *e, struct staged *b, unsigned n)
{
	void *pages[UZS_STAGING_PAGES];
	uint8_t pools[UZS_STAGING_PAGES];

	for (unsigned i = 0; i < n; i++)
		pages[i] = e->staging + ((size_t)b[i].slot << UZS_PAGE_SHIFT);
	uzs_pools_of_pages(e, pages, n, pools);
	for (unsigned i = 0; i < n; i++)
		b[i].pool = pools[i];
}

/* Compress and store every staged page.  No lock held: the slots are ours,
 * and a fault on one of these pages only reads its slot. */
/*
 * Compression runs at SCHED_IDLE.  It is the reclaim thread's long stretch
 * of CPU (a batch of 256 pages is about 2.5 ms), and on two vCPUs the
 * program's thread, woken by a restore, or the fault thread, woken by a
 * fault, often landed behind it: with both at normal priority the woken
 * one waited out the slice, and fault_bench's stored p99 (shuffled) was
 * 0.5-2 ms.  An idle-policy thread is preempted by any waking thread at
 * once: p99 73-78 us, 3.5x the floor's p50.  Only compression, which
 * takes no lock: runs of UZS_COMPRESS_RUN pages are compressed into a
 * buffer of our own, then stored at normal priority, because a holder of
 * the engine's or a pool's lock starved by busy program threads would
 * stall every fault.  Going back from SCHED_IDLE needs CAP_SYS_NICE or an
 * RLIMIT_NICE of 20; without either, compression stays at normal priority.
 *
 * Not while a fault is held back over the limit (fault.c, hold_back): the
 * program is then waiting for compression, which must not wait in turn
 * for every other busy process on the machine.  With two CPU-bound
 * processes beside it, a test reading its data back under a 512 KiB
 * limit took 13-25 s instead of 4.5.
 */
static bool may_leave_idle(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	struct rlimit rl;

	if (getrlimit(RLIMIT_NICE, &rl) == 0 &&
	    (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= 20))
		return true;
	memset(d, 0, sizeof(d));
	return syscall(SYS_capget, &h, d) == 0 &&
	       (d[CAP_SYS_NICE / 32].effective & (1u << (CAP_SYS_NICE % 32)));
}

static void compress_priority(struct uzs_engine *e, bool idle)
{
	struct sched_param sp = { 0 };

	if (!e->compress_idle)
		return;
	if (idle && __atomic_load_n(&e->holding_back, __ATOMIC_RELAXED))
		return;
	if (pthread_setschedparam(pthread_self(), idle ? SCHED_IDLE : SCHED_OTHER,
				  &sp) != 0 && !idle) {
		/* Cannot happen after may_leave_idle; if it does, stay put
		 * rather than hold the lock at idle priority unawares. */
		e->compress_idle = false;
		uzs_log(e, UZS_LOG_WARN, "cannot leave SCHED_IDLE after "
			"compressing: reclaim runs at idle priority from now on");
	}
}

/* Compress pages [from, to) of the batch at idle priority, each stored
 * page's bytes into compress_buf. */
static void compress_run(struct uzs_engine *e, struct staged *b, unsigned from,
			 unsigned to, bool all)
{
	compress_priority(e, true);
	for (unsigned i = from; i < to; i++) {
		const void *page = e->staging + ((size_t)b[i].slot << UZS_PAGE_SHIFT);
		unsigned char *out = e->compress_buf +
				     ((size_t)(i - from) << UZS_PAGE_SHIFT);

		b[i].handle = 0;
		b[i].store_rc = 0;
		b[i].lost = !all && !uzs_staging_holds(e, b[i].slot, 1);
		if (b[i].lost) {
			b[i].c.kind = UZS_PAGE_INCOMPRESSIBLE;
			continue;
		}
		uzs_codec_compress(e->codec, page, &b[i].c);
		if (b[i].c.kind == UZS_PAGE_STORED) {
			memcpy(out, b[i].c.data, b[i].c.len);
			b[i].c.data = out;
		}
	}
	compress_priority(e, false);
}

static void compress_batch(struct uzs_engine *e, struct staged *b, unsigned n)
{
	/* Reading an empty slot would compress the zero page it maps there:
	 * one look at the page map first (slots are 0..n-1). */
	bool all = uzs_staging_holds(e, 0, n);

	find_pools(e, b, n);
	for (unsigned from = 0; from < n; from += UZS_COMPRESS_RUN) {
		unsigned to = n - from > UZS_COMPRESS_RUN ? from + UZS_COMPRESS_RUN : n;

		compress_run(e, b, from, to, all);
		for (unsigned i = from; i < to; i++)
			if (b[i].c.kind == UZS_PAGE_STORED)
				b[i].store_rc = store(e, &b[i],
						      e->slots[b[i].slot].addr,
						      &b[i].handle);
	}
}

/* Put a page that will not be stored back in place, on its node; one
 * that did not compress is not tried again until written.  Under e->lock,
 * which is dropped while a pending event is read by the fault thread. */
static void put_back(struct uzs_engine *e, unsigned slot, unsigned pool,
		     bool incompressible)
{
	uzs_pools_place(e, &e->reclaim_pref, (int)pool);
	for (;;) {
		struct uzs_staging_slot *s = &e->slots[slot];
		struct uzs_pte *p = uzs_pt_lookup(e->pt, s->addr);
		struct uzs_region *r;
		size_t done;
		int rc;

		if (s->state != SLOT_FILLED || !p || p->state != UZS_PTE_STAGED ||
		    p->val != slot)
			return;         /* consumed or dropped meanwhile */
		/* Write-protected, as it was: otherwise the next scan would
		 * see it written and try to compress it all over again. */
		r = uzs_region_find(e, s->addr);
		rc = uzs_uffd_copy(&e->app, s->addr,
				   e->staging + ((size_t)slot << UZS_PAGE_SHIFT),
				   UZS_PAGE_SIZE,
				   r && r->wp ? UFFDIO_COPY_MODE_WP : 0, &done);
		if (rc == -EAGAIN) {
			pthread_mutex_unlock(&e->lock);
			usleep(20);
			uzs_lock(e);
			continue;
		}
		/* Placed (0), or the mapping is gone (ENOENT): either way the
		 * entry is done with.  Anything else means the page could not
		 * go back: say so and poison it, never let it read as zeros. */
		if (rc && rc != -ENOENT) {
			uzs_log(e, UZS_LOG_ERROR, "putting page %#lx back failed: "
				"%s", (unsigned long)s->addr, uzs_strerror(-rc));
			uzs_poison_page(e, s->addr, "it could not be put back");
		}
		p->state = UZS_PTE_NONE;
		p->val = 0;
		if (incompressible)
			p->flags |= UZS_PTE_INCOMPRESSIBLE;
		return;
	}
}

/*
 * Every slot is settled: empty the first n slots for the next batch, by
 * moving their pages to the trash and discarding them there (no event: the
 * trash belongs to the event-less userfaultfd).  Without e->lock: no entry
 * names a slot any more (commit_batch settled them all), so no other
 * thread looks at these slots, and the MOVE is on the event-less
 * userfaultfd, which no event of the program's can stop.  Under the lock
 * it held the fault thread up for 1.25 ms on average (256 pages moved and
 * discarded, each a page-table update the hypervisor sees here).
 */
static void empty_staging(struct uzs_engine *e, unsigned n)
{
	size_t len = (size_t)n << UZS_PAGE_SHIFT, off = 0;
	unsigned tries = 0;
	int rc = 0;

	/* A short move (EAGAIN) is the kernel losing a race with itself,
	 * e.g. a page under migration: go on from where it stopped. */
	while (off < len && tries++ < 16) {
		size_t done;

		rc = uzs_uffd_move(&e->stage, (uintptr_t)e->trash + off,
				   (uintptr_t)e->staging + off, len - off,
				   UFFDIO_MOVE_MODE_DONTWAKE |
				   UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES, &done);
		off += done;
		if (rc == -EEXIST) {
			/* Pages this very move put in the trash and did not
			 * count (see really_moved): the trash holds nothing of
			 * anyone's by definition, so empty it all, go on. */
			uzs_log(e, UZS_LOG_INFO, "trash not empty: cleared");
			uzs_region_discard(e->trash, (size_t)UZS_STAGING_PAGES
					   << UZS_PAGE_SHIFT);
			continue;
		}
		if (rc && rc != -EAGAIN)
			break;
	}
	uzs_region_discard(e->trash, len);
	for (unsigned i = 0; i < UZS_STAGING_PAGES; i++)
		e->slots[i].state = SLOT_FREE;
	if (off < len && !e->takeouts_stopped) {
		/* Every slot is settled, so nothing is lost; but a slot
		 * that stays full would refuse every later take-out. */
		uzs_log(e, UZS_LOG_ERROR, "cannot empty the staging area (%s): "
			"no more pages will be compressed",
			uzs_strerror(rc ? -rc : EAGAIN));
		e->takeouts_stopped = true;
	}
}

/* Record each stored page, or undo it if the page changed hands.  Under
 * e->lock; the slots are emptied afterwards, without it. */
static void commit_batch(struct uzs_engine *e, struct staged *b, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct uzs_staging_slot *s = &e->slots[b[i].slot];
		struct uzs_pte *p = uzs_pt_lookup(e->pt, s->addr);
		bool ours = s->state == SLOT_FILLED && p &&
			    p->state == UZS_PTE_STAGED && p->val == b[i].slot;

		if (!ours) {
			if (b[i].handle)
				uzs_pool_free(e->pools[b[i].pool], b[i].handle);
			continue;
		}
		if (b[i].lost) {
			uzs_log(e, UZS_LOG_ERROR, "internal error: staging slot %u "
				"lost the page of %#lx", b[i].slot,
				(unsigned long)s->addr);
			uzs_poison_page(e, s->addr, "internal error: lost track of it");
			p->state = UZS_PTE_NONE;
			p->val = 0;
			e->takeouts_stopped = true;
			continue;
		}
		e->st.compressed[b[i].c.kind]++;
		p->pool = b[i].pool;
		switch (b[i].c.kind) {
		case UZS_PAGE_ZERO:
			p->state = UZS_PTE_ZERO;
			p->val = 0;
			e->st.pages_zero++;
			break;
		case UZS_PAGE_SAME:
			p->state = UZS_PTE_SAME;
			p->val = b[i].c.word;
			e->st.pages_same++;
			break;
		case UZS_PAGE_STORED:
			if (b[i].store_rc == 0) {
				/* Tagged with the address at compress time; an
				 * mremap since moved it (slot addr follows). */
				uzs_pool_set_owner(e->pools[b[i].pool], b[i].handle,
						   s->addr);
				p->state = UZS_PTE_STORED;
				p->val = b[i].handle;
				uzs_count_stored(e, b[i].pool, 1);
				break;
			}
			/* Pool full: keep the page, try again later. */
			put_back(e, b[i].slot, b[i].pool, false);
			continue;
		case UZS_PAGE_INCOMPRESSIBLE:
			put_back(e, b[i].slot, b[i].pool, true);
			continue;
		}
		if (e->resident_pages)
			e->resident_pages--;
		e->staging_held++;
	}
}

/* A capped pool that cannot shrink and has no room: taking pages out
 * would only put them back.  (UZSWAP_POOL_MAX with UZSWAP_BACKING=off.) */
static bool pool_full(struct uzs_engine *e)
{
	return e->pool_cap && !uzs_evict_possible(e) &&
	       uzs_pools_held(e) + 2 * UZS_PAGE_SIZE > e->pool_cap;
}

size_t uzs_reclaim_victims(struct uzs_engine *e)
{
	struct staged batch[UZS_STAGING_PAGES];
	size_t vi = 0, total = 0;

	while (vi < e->nvictims && !e->takeouts_stopped && !pool_full(e)) {
		unsigned n;

		uzs_lock(e);
		n = stage_batch(e, &vi, batch);
		pthread_mutex_unlock(&e->lock);
		if (!n)
			continue;
		compress_batch(e, batch, n);
		uzs_lock(e);
		commit_batch(e, batch, n);
		if (e->cfg.limit)
			uzs_watch_rss(e);
		pthread_mutex_unlock(&e->lock);
		empty_staging(e, n);
		__atomic_store_n(&e->staging_held, 0, __ATOMIC_RELAXED);
		total += n;
	}
	return total;
}

/* ------------------------------------------------------ the thread */

/* Sleep until timeout, a kick (returns true) or stop. */
static bool wait_for_work(struct uzs_engine *e, uint64_t timeout_ns, bool *stop)
{
	struct pollfd fds[2] = {
		{ .fd = e->kick_fd, .events = POLLIN },
		{ .fd = e->stop_fd, .events = POLLIN },
	};
	int ms = (int)((timeout_ns + 999999u) / 1000000u);
	bool kicked = false;

	if (poll(fds, 2, ms) > 0) {
		uint64_t v;

		if (fds[1].revents)
			*stop = true;
		if (fds[0].revents && read(e->kick_fd, &v, sizeof(v)) == sizeof(v))
			kicked = true;
	}
	return kicked;
}

/*
 * Scans back off while they find nothing to do.  A scan is not free: it
 * write-protects again every page written since the last one, and the
 * program's next write to each then takes a (kernel-handled) fault.  On a
 * VM with shadow page tables that made a hot phase of examples/cache take
 * 2.2x the CPU with nothing compressed at all.  So after a timed scan that
 * took nothing out, the next comes twice as late, up to SCAN_BACKOFF_MAX
 * intervals, and never later than an eighth of UZSWAP_COLD_AGE (ages keep
 * counting in intervals: a late scan ages pages by all the intervals it
 * covers).  Taking anything out, a kick or growth brings the interval back.
 */
#define SCAN_BACKOFF_MAX 16u

static unsigned max_backoff(const struct uzs_engine *e)
{
	uint64_t cap = SCAN_BACKOFF_MAX;

	if (e->cfg.cold_age_ns) {
		uint64_t eighth = e->cfg.cold_age_ns / 8 / e->cfg.scan_interval_ns;

		if (eighth < cap)
			cap = eighth ? eighth : 1;
	}
	return (unsigned)cap;
}

/* Scan intervals since the last timed scan, rounded, at least 1. */
static unsigned intervals_since(const struct uzs_engine *e, uint64_t last,
				uint64_t now)
{
	uint64_t k;

	if (!last)
		return 1;
	k = (now - last + e->cfg.scan_interval_ns / 2) / e->cfg.scan_interval_ns;
	return k < 1 ? 1 : k > 255 ? 255 : (unsigned)k;
}

void *uzs_reclaim_thread_main(void *arg)
{
	struct uzs_engine *e = arg;
	uint64_t next_scan = 0, last_timed = 0;
	unsigned backoff = 1;
	bool stop = false, kicked = false;

	e->compress_idle = may_leave_idle();
	while (!stop) {
		uint64_t now = uzs_now_ns(), wake;
		bool timed = now >= next_scan;

		if (timed || kicked) {
			/* Ages count scan intervals, so only timed scans age;
			 * a kick (over the limit) just looks and chooses again. */
			unsigned age_by = timed ? intervals_since(e, last_timed, now) : 0;
			size_t took;

			uzs_lock(e);
			uzs_regions_refresh(e);
			pthread_mutex_unlock(&e->lock);
			__atomic_store_n(&e->kicked, false, __ATOMIC_RELAXED);
			uzs_policy_scan(e, age_by);
			if (e->cfg.limit)
				uzs_limit_remark(e);
			took = uzs_reclaim_victims(e);
			uzs_evict_round(e);
			if (took || kicked)
				backoff = 1;
			else if (timed && backoff < max_backoff(e))
				backoff *= 2;
			if (backoff > max_backoff(e))
				backoff = max_backoff(e);
			if (timed) {
				last_timed = now;
				next_scan = now + e->cfg.scan_interval_ns * backoff;
			}
		}
		uzs_engine_publish(e);
		now = uzs_now_ns();
		wake = next_scan;
		if (e->stats_fd >= 0 && e->next_stats_ns < wake)
			wake = e->next_stats_ns;
		kicked = wait_for_work(e, wake > now ? wake - now : 0, &stop);
	}
	return NULL;
}
