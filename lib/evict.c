/*
 * evict.c - pool pages out to the backing file.
 *
 * The pool's LRU decides what leaves it: the coldest pool page (zspage) goes
 * whole, so each eviction really frees pool memory (the seed's point, and
 * zbud's).  Its objects go, still compressed, to the backing file in one
 * write, and each page's entry becomes BACKED with the object's location.
 * A fault on a BACKED page reads the object back (fault.c).
 *
 * When: past UZSWAP_POOL_MAX, down to 15/16 of it; and under UZSWAP_LIMIT
 * when taking cold pages out is not enough (the pool itself is what is over
 * the limit: policy.c then leaves pages in use alone and says so), by as
 * much as the limit is exceeded.  With UZSWAP_BACKING=off, or once a write
 * has failed, nothing is evicted: a capped pool then refuses new objects
 * and the pages that do not fit stay uncompressed.
 *
 * Never losing a write: an object is copied out of the pool under the engine
 * lock and its entry flagged WRITEBACK; the file write happens without the
 * lock (a fault must not wait for the disk of another page); then, under
 * the lock again, an entry that is still STORED with the same handle and
 * still flagged becomes BACKED and the pool copy is freed.  Anything that
 * touched the entry meanwhile (a fault restored it, the program discarded
 * or moved it) cleared the flag or changed the entry, and then the file
 * copy is the one dropped.  A page being faulted in is never written back:
 * the fault thread holds the lock while it restores.
 *
 * A write that fails (disk full, EIO, file size limit) changes nothing: the
 * objects are still in the pool.  One warning says why, and eviction stops.
 *
 * With a pool per NUMA node (pools.c) the cap and the targets above are on
 * their total, and each eviction takes the coldest zspage of the pool that
 * holds the most.  The pools' LRUs share no clock, so the coldest zspage
 * of all cannot be named; taking from the fullest pool never empties a
 * node's small pool to make room in another's large one.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "backing.h"
#include "engine_internal.h"
#include "mmap_region.h"
#include "pool_internal.h"

#define EVICT_BUF UZS_BACKING_BATCH_MAX_BYTES
/* Tidy the file (punch free blocks) at most this often. */
#define TRIM_INTERVAL_NS (1000u * 1000000u)

void uzs_evict_setup(struct uzs_engine *e)
{
	struct uzs_backing_config bc = { 0 };
	struct uzs_backing_stats bs;
	char err[256];
	int rc;

	if (e->cfg.backing == UZS_BACKING_OFF ||
	    (!e->cfg.pool_max && !e->cfg.limit))
		return;
	e->evict_batch = uzs_region_reserve(sizeof(*e->evict_batch));
	e->evict_buf = uzs_region_reserve(EVICT_BUF);
	if (!e->evict_batch || !e->evict_buf) {
		uzs_log(e, UZS_LOG_WARN, "no memory for eviction: pool pages "
			"will not be evicted");
		return;
	}
	if (e->cfg.backing == UZS_BACKING_PATH)
		bc.path = e->cfg.backing_path;
	rc = uzs_backing_open(&bc, &e->backing, err, sizeof(err));
	if (rc) {
		uzs_log(e, UZS_LOG_WARN, "%s; pool pages will not be evicted "
			"(UZSWAP_BACKING)", err);
		e->backing = NULL;
		return;
	}
	uzs_backing_stats(e->backing, &bs);
	if (bs.on_tmpfs)
		uzs_log(e, UZS_LOG_WARN, "the backing file is on tmpfs, in "
			"memory: evicting to it saves nothing without swap; set "
			"UZSWAP_BACKING to a directory on disk");
}

bool uzs_evict_possible(const struct uzs_engine *e)
{
	return e->backing && !e->backing_failed;
}

void uzs_evict_forget(struct uzs_engine *e, uint64_t loc)
{
	if (e->backing && uzs_backing_free(e->backing, loc) != 0)
		uzs_log(e, UZS_LOG_ERROR, "backing location %#llx was not live",
			(unsigned long long)loc);
}

/* Is this entry of pool's batch still a STORED page with that handle?
 * Under e->lock. */
static struct uzs_pte *stored_entry(struct uzs_engine *e, unsigned pool,
				    const struct uzs_evict_entry *en)
{
	struct uzs_pte *p = uzs_pt_lookup(e->pt, (uintptr_t)en->owner);

	return p && p->state == UZS_PTE_STORED && p->pool == pool &&
	       p->val == en->handle ? p : NULL;
}

/*
 * Copy out the batch's objects that are still ours and flag their entries.
 * Fills objs/which; returns how many.  Under e->lock.
 */
static unsigned collect(struct uzs_engine *e, unsigned pool,
			struct uzs_evict_batch *b, struct uzs_backing_obj *objs,
			unsigned *which)
{
	size_t used = 0;
	unsigned n = 0;

	for (unsigned i = 0; i < b->count; i++) {
		struct uzs_pte *p = stored_entry(e, pool, &b->entries[i]);
		long len;

		if (!p || (p->flags & UZS_PTE_WRITEBACK))
			continue;
		len = uzs_pool_read(e->pools[pool], b->entries[i].handle,
				    e->evict_buf + used, EVICT_BUF - used);
		if (len <= 0)
			continue;   /* no room left in this write: stays */
		p->flags |= UZS_PTE_WRITEBACK;
		objs[n] = (struct uzs_backing_obj){ e->evict_buf + used, (size_t)len };
		which[n++] = i;
		used += (size_t)len;
	}
	return n;
}

/* After the write: each entry untouched since becomes BACKED.  Under
 * e->lock. */
static void settle(struct uzs_engine *e, unsigned pool,
		   struct uzs_evict_batch *b, const unsigned *which, unsigned n,
		   const uint64_t *locs, int rc)
{
	for (unsigned k = 0; k < n; k++) {
		const struct uzs_evict_entry *en = &b->entries[which[k]];
		struct uzs_pte *p = stored_entry(e, pool, en);
		bool ours = p && (p->flags & UZS_PTE_WRITEBACK);

		if (ours)
			p->flags &= (uint8_t)~UZS_PTE_WRITEBACK;
		if (rc)
			continue;
		if (!ours) {
			uzs_evict_forget(e, locs[k]);
			continue;
		}
		p->state = UZS_PTE_BACKED;
		p->val = locs[k];
		uzs_pool_free(e->pools[pool], en->handle);
		uzs_count_stored(e, pool, -1);
		e->st.pages_backed++;
		e->st.backing_writes++;
		e->st.backing_write_bytes += uzs_backing_loc_len(locs[k]);
	}
}

/* Evict the coldest zspage of pool: 0, -ENOENT (nothing to evict) or the
 * write's error. */
static int evict_one(struct uzs_engine *e, unsigned pool)
{
	struct uzs_evict_batch *b = e->evict_batch;
	struct uzs_backing_obj objs[UZS_POOL_MAX_ZSPAGE_OBJS];
	unsigned which[UZS_POOL_MAX_ZSPAGE_OBJS], n;
	uint64_t locs[UZS_POOL_MAX_ZSPAGE_OBJS];
	int rc = 0;

	if (uzs_pool_evict_begin(e->pools[pool], b) < 0)
		return -ENOENT;
	uzs_lock(e);
	n = collect(e, pool, b, objs, which);
	pthread_mutex_unlock(&e->lock);
	if (n)
		rc = uzs_backing_write_batch(e->backing, objs, n, locs);
	uzs_lock(e);
	settle(e, pool, b, which, n, locs, rc);
	e->st.evictions++;
	if (rc) {
		e->st.backing_errors++;
		e->backing_failed = true;
		uzs_log(e, UZS_LOG_WARN, "writing to the backing file failed (%s):"
			" nothing lost, but no more pool pages will be evicted",
			uzs_strerror(-rc));
	}
	pthread_mutex_unlock(&e->lock);
	/* Objects not written (changed meanwhile, or the write failed) keep
	 * the zspage, which goes back to the LRU. */
	uzs_pool_evict_end(e->pools[pool], b);
	return rc;
}

/* The pool holding the most, of those not in `spent` (bit i: pool i has
 * nothing to evict); -1 if none holds anything. */
static int fullest_pool(struct uzs_engine *e, uint64_t spent)
{
	uint64_t most = 0;
	int best = -1;

	for (unsigned i = 0; i < e->numa.npools; i++) {
		uint64_t held = uzs_pool_held_bytes(e->pools[i]);

		if (!(spent & (1ull << i)) && held > most) {
			most = held;
			best = (int)i;
		}
	}
	return best;
}

size_t uzs_evict_pool(struct uzs_engine *e, uint64_t target)
{
	uint64_t before = uzs_pools_held(e), held = before, spent = 0;
	/* Each zspage comes up once per call at most: one whose objects all
	 * stay (moved by mremap, see below) must not be retried forever. */
	size_t tries = before / UZS_PAGE_SIZE + 1;

	while (held > target && tries-- && uzs_evict_possible(e)) {
		int pool = fullest_pool(e, spent), rc;

		if (pool < 0)
			break;
		rc = evict_one(e, (unsigned)pool);
		if (rc == -ENOENT)
			spent |= 1ull << pool;
		else if (rc < 0)
			break;
		held = uzs_pools_held(e);
	}
	return (size_t)((before > held ? before - held : 0) / UZS_PAGE_SIZE);
}

void uzs_evict_round(struct uzs_engine *e)
{
	static const uint64_t none = UINT64_MAX;
	uint64_t held, target = none, limit = e->cfg.limit, used, now;
	bool stuck;

	if (!uzs_evict_possible(e))
		return;
	held = uzs_pools_held(e);
	if (e->cfg.pool_max && held > e->cfg.pool_max)
		target = e->cfg.pool_max - e->cfg.pool_max / 16;
	uzs_lock(e);
	used = uzs_limit_used_pages(e, e->resident_pages) << UZS_PAGE_SHIFT;
	stuck = e->limit_stuck;
	pthread_mutex_unlock(&e->lock);
	if (limit && stuck && used > limit) {
		uint64_t over = used - limit +
				(uzs_limit_headroom_pages(e) << UZS_PAGE_SHIFT);
		uint64_t t = held > over ? held - over : 0;

		if (t < target)
			target = t;
	}
	if (target != none)
		uzs_evict_pool(e, target);
	now = uzs_now_ns();
	if (now >= e->next_trim_ns) {
		uzs_backing_trim(e->backing);
		e->next_trim_ns = now + TRIM_INTERVAL_NS;
	}
}
