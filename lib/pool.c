/*
 * pool.c - the compressed-page pool: a hybrid of zsmalloc and zbud.
 *
 * Layout
 * ------
 * Pool memory is one reserved arena of 4 KiB pages.  A *zspage* is one page,
 * or two adjacent pages starting at an even page index (so a freed pair can
 * be reused whole and two freed halves re-pair: see slot_*).  A zspage is
 * named by the index of its first page; its descriptor lives in a parallel
 * array, outside pool memory, so pool pages hold nothing but object bytes.
 * A zspage that empties leaves the pool at once; its pages stay mapped
 * among a few kept for reuse, and go back to the OS with the others kept,
 * in one call with one TLB flush, when one more comes (EMPTY_KEPT_MAX).
 *
 * Objects are stacked into zspages back to back at byte granularity, with
 * no size classes: any object can go into any zspage with room, which is
 * what lets freed space be reused by objects of other sizes (zsmalloc's
 * churn weakness).  An object is stored as one *fragment*, or split into
 * two: a head that fills a hole exactly and a tail at the start of the next
 * hole, in the same zspage or in the next one filled.  Splitting is what
 * lets 2-3 KiB objects fill 1- and 2-page zspages to the last byte (two
 * 3000 B objects would leave 2 KiB of an 8 KiB zspage unused) and lets
 * holes left by freed objects be refilled by objects of any size.  Within a
 * 2-page zspage a fragment may also straddle the page boundary (the pages
 * are contiguous in the arena).
 *
 * Handles
 * -------
 * A handle is 1 + the index of a slot in the handle table.  The slot holds
 * the caller's owner tag and the object's one or two fragments (zspage,
 * offset, length), each linked into its zspage's list of fragments in
 * offset order.  Because only the slot knows where the object is, objects
 * can move freely: compaction moves them between zspages and no handle
 * changes.  The table is two-level (a directory of lazily mapped chunks),
 * so it grows without ever moving.
 *
 * Placement
 * ---------
 * Allocation fills one zspage at a time, the *cursor*: the most recently
 * stored into.  When the cursor is chosen, one walk of its fragments (a
 * *sweep*) lists its holes; objects then go into those holes front to back,
 * first fit, with no search and no copying of other objects.  When the
 * cursor's holes are used up the next zspage is chosen (by default the one
 * with the most free space not yet found unusable: see zspage.dust and the
 * buckets), else a fresh one is made.  Frees never search either: they
 * unlink the fragments, and the space they free is found by the next sweep
 * of that zspage.
 *
 * A sweep walks a zspage's fragments through their handle slots, which lie
 * all over the handle table: one cache miss per fragment, microseconds per
 * sweep.  So the hole a free leaves is also remembered at once, exactly (the
 * unlink reads both neighbours anyway), in a table of *known holes*
 * (pool_layout.h), indexed by size; so are the holes the cursor leaves
 * behind when it moves on.  An object that does not fit whole in the
 * cursor's holes goes into the best-fitting known hole, or is split over
 * two of them; only when they cannot take it does the cursor move on.  In
 * steady state (a free for every alloc) nearly every alloc reuses a free's
 * hole without a sweep, and freed space anywhere in the pool is refilled
 * before the pool grows, not just the cursor's.
 *
 * LRU and eviction
 * ----------------
 * zspages, not objects, are on the LRU; storing into a zspage makes it most
 * recently used (a split object touches its head's zspage, then its
 * tail's).  Eviction takes the coldest zspage whole (second chance for one
 * that was read since: zswap found this cuts refaults), isolates it and
 * hands the caller every object with a fragment in it; the zspage is
 * released when the caller has freed them all.  An object split into a
 * second zspage is handed out whole with the evicted one: freeing it frees
 * its fragment in the other zspage too, which keeps its place on the LRU
 * (and is released at once if that was its last fragment).  See uzswap.h
 * for the caller's side of the protocol.
 *
 * Locking
 * -------
 * One mutex per pool covers everything here; every critical section is
 * short (at most one sweep of 256 fragments, or one compaction).  The pool
 * never calls out while holding it and never touches memory it does not
 * own, so it can be used from the shim's fault-service threads.  An
 * application thread never takes it.
 *
 * Speed
 * -----
 * In a pool that fits in cache (bench/pool_bench --hot) an alloc+free pair
 * is 1000-1700 instructions, 150 of them the two mutexes.  The small
 * helpers on that path are declared inline: at -O2 GCC kept most of them
 * out of line, and the calls cost an eighth of the instructions.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mmap_region.h"
#include "pool_internal.h"
#include "pool_layout.h"
#include "uzswap.h"

/* ------------------------------------------------------- handle table */

/* The slot of a live handle, or NULL. */
static struct handle_slot *handle_lookup(struct uzs_pool *p, uzs_handle_t h)
{
	struct handle_slot *s;

	if (h == 0 || h > p->handles_hwm)
		return NULL;
	s = slot_at(p, (uint32_t)(h - 1));
	return s->f[0].len ? s : NULL;
}

/* A free slot; *fresh says it came from the high-water mark (for unget). */
static inline int handle_get(struct uzs_pool *p, uint32_t *idx, bool *fresh)
{
	uint32_t chunk;

	*fresh = false;
	if (p->handle_free != NIL) {
		*idx = p->handle_free;
		p->handle_free = slot_at(p, *idx)->f[0].next;
		return 0;
	}
	chunk = p->handles_hwm >> HCHUNK_SHIFT;
	if ((p->handles_hwm & (HCHUNK_SLOTS - 1)) == 0) {
		if (chunk >= HCHUNK_MAX)
			return -ENOSPC;
		p->hchunk[chunk] = uzs_region_reserve(HCHUNK_SLOTS *
						      sizeof(struct handle_slot));
		if (!p->hchunk[chunk])
			return -ENOMEM;
	}
	*fresh = true;
	*idx = p->handles_hwm++;
	return 0;
}

static void handle_put(struct uzs_pool *p, uint32_t idx)
{
	struct handle_slot *s = slot_at(p, idx);

	memset(s->f, 0, sizeof(s->f));
	s->f[0].zspage = s->f[1].zspage = NIL;
	s->f[0].next = p->handle_free;
	p->handle_free = idx;
}

/* Undo handle_get exactly: a failed alloc leaves the table as it was,
 * chunk directory and metadata_bytes included. */
static void handle_unget(struct uzs_pool *p, uint32_t idx, bool fresh)
{
	if (!fresh) {
		handle_put(p, idx);
		return;
	}
	p->handles_hwm--;
	if ((p->handles_hwm & (HCHUNK_SLOTS - 1)) == 0) {
		uint32_t chunk = p->handles_hwm >> HCHUNK_SHIFT;

		uzs_region_unreserve(p->hchunk[chunk],
				     HCHUNK_SLOTS * sizeof(struct handle_slot));
		p->hchunk[chunk] = NULL;
	}
}

/* ---------------------------------------------------------------- LRU */

static inline void lru_unlink(struct uzs_pool *p, uint32_t id)
{
	struct zspage *z = &p->zs[id];

	if (z->lru_prev != NIL)
		p->zs[z->lru_prev].lru_next = z->lru_next;
	else
		p->lru_head = z->lru_next;
	if (z->lru_next != NIL)
		p->zs[z->lru_next].lru_prev = z->lru_prev;
	else
		p->lru_tail = z->lru_prev;
	z->lru_prev = z->lru_next = NIL;
}

static inline void lru_push_mru(struct uzs_pool *p, uint32_t id)
{
	struct zspage *z = &p->zs[id];

	z->lru_prev = NIL;
	z->lru_next = p->lru_head;
	if (p->lru_head != NIL)
		p->zs[p->lru_head].lru_prev = id;
	else
		p->lru_tail = id;
	p->lru_head = id;
}

/* A store into zspage id: it becomes the most recently used. */
static void lru_touch(struct uzs_pool *p, uint32_t id)
{
	p->zs[id].stamp = ++p->clock;
	if (p->lru_head != id) {
		lru_unlink(p, id);
		lru_push_mru(p, id);
	}
}

/* ------------------------------------------------------------ buckets */

static inline void bucket_remove(struct uzs_pool *p, uint32_t id)
{
	struct zspage *z = &p->zs[id];
	int b = z->bucket;

	if (b < 0)
		return;
	if (z->bkt_prev != NIL)
		p->zs[z->bkt_prev].bkt_next = z->bkt_next;
	else
		p->bucket_head[b] = z->bkt_next;
	if (z->bkt_next != NIL)
		p->zs[z->bkt_next].bkt_prev = z->bkt_prev;
	if (p->bucket_head[b] == NIL)
		p->bucket_bits[b / 64] &= ~(1ull << (b % 64));
	z->bkt_prev = z->bkt_next = NIL;
	z->bucket = -1;
}

static inline void bucket_insert(struct uzs_pool *p, uint32_t id, uint32_t b)
{
	struct zspage *z = &p->zs[id];

	z->bucket = (int16_t)b;
	z->bkt_prev = NIL;
	z->bkt_next = p->bucket_head[b];
	if (z->bkt_next != NIL)
		p->zs[z->bkt_next].bkt_prev = id;
	p->bucket_head[b] = id;
	p->bucket_bits[b / 64] |= 1ull << (b % 64);
}

/* Whether a zspage may become the cursor: worth a sweep, not in use. */
static bool zspage_sweepable(const struct uzs_pool *p, uint32_t id)
{
	const struct zspage *z = &p->zs[id];

	return !(z->flags & (ZS_ISOLATED | ZS_DRAINING)) &&
	       id != p->cur.zspage && z->nfrags < zs_max_frags(z) &&
	       zs_unswept(z) >= SWEEP_MIN;
}

/* Put a zspage in the bucket its unswept space says, if it is a target. */
static inline void bucket_update(struct uzs_pool *p, uint32_t id)
{
	const struct zspage *z = &p->zs[id];
	int b = zspage_sweepable(p, id) ?
		(int)(zs_unswept(z) >> BUCKET_SHIFT) : -1;

	if (z->bucket == b)
		return;
	bucket_remove(p, id);
	if (b >= 0)
		bucket_insert(p, id, (uint32_t)b);
}

/* Highest non-empty bucket, or -1. */
static int bucket_top(const struct uzs_pool *p)
{
	for (int w = BITMAP_WORDS - 1; w >= 0; w--)
		if (p->bucket_bits[w])
			return w * 64 + 63 - __builtin_clzll(p->bucket_bits[w]);
	return -1;
}

/* First non-empty bucket >= from, or -1. */
static int bucket_first_from(const struct uzs_pool *p, uint32_t from)
{
	for (uint32_t w = from / 64; w < BITMAP_WORDS; w++) {
		uint64_t bits = p->bucket_bits[w];

		if (w == from / 64)
			bits &= ~0ull << (from % 64);
		if (bits)
			return (int)(w * 64 + (uint32_t)__builtin_ctzll(bits));
	}
	return -1;
}

/*
 * The next zspage to fill, or NIL.  rest, when not 0, is the tail of an
 * object whose head is already placed: it goes to the zspage with the least
 * unswept space that could hold it (a freed object's hole, often exactly),
 * so that the head is rarely given up.  Otherwise the placement policy
 * decides.
 */
static uint32_t pick_target(const struct uzs_pool *p, uint32_t rest)
{
	uint32_t best = NIL;
	int b;

	if (rest) {
		b = bucket_first_from(p, (rest + (1u << BUCKET_SHIFT) - 1) >>
					 BUCKET_SHIFT);
		if (b >= 0)
			return p->bucket_head[b];
	}
	b = bucket_top(p);
	if (b < 0 || p->placement == UZS_PLACE_EMPTIEST)
		return b < 0 ? NIL : p->bucket_head[b];
	/* RECENT: bucket heads are their bucket's latest arrivals; the most
	 * recently stored into of them is close enough to the global one. */
	for (uint32_t w = 0; w < BITMAP_WORDS; w++) {
		for (uint64_t bits = p->bucket_bits[w]; bits; bits &= bits - 1) {
			uint32_t id = p->bucket_head[w * 64 +
						     (uint32_t)__builtin_ctzll(bits)];

			if (best == NIL || p->zs[id].stamp > p->zs[best].stamp)
				best = id;
		}
	}
	return best;
}

/* --------------------------------------------------------- arena slots */

static void slot_list_push(struct uzs_pool *p, uint32_t *head, uint32_t id)
{
	struct zspage *z = &p->zs[id];

	z->bkt_prev = NIL;
	z->bkt_next = *head;
	if (*head != NIL)
		p->zs[*head].bkt_prev = id;
	*head = id;
}

static void slot_list_remove(struct uzs_pool *p, uint32_t *head, uint32_t id)
{
	struct zspage *z = &p->zs[id];

	if (z->bkt_prev != NIL)
		p->zs[z->bkt_prev].bkt_next = z->bkt_next;
	else
		*head = z->bkt_next;
	if (z->bkt_next != NIL)
		p->zs[z->bkt_next].bkt_prev = z->bkt_prev;
	z->bkt_prev = z->bkt_next = NIL;
}

static uint32_t slot_pop(struct uzs_pool *p, uint32_t *head)
{
	uint32_t id = *head;

	if (id != NIL)
		slot_list_remove(p, head, id);
	return id;
}

/*
 * Arena slots come in aligned pairs of pages.  A 2-page zspage takes a whole
 * pair; a 1-page zspage takes half of one, and the other half waits on the
 * single list.  When both halves are free they merge back into a pair, so
 * the arena's virtual size stays within 2x the pages ever held at once.
 */
static uint32_t slot_take(struct uzs_pool *p, unsigned npages)
{
	uint32_t id;

	if (npages == 1) {
		id = slot_pop(p, &p->free_single);
		if (id != NIL) {
			p->zs[id].flags &= (uint8_t)~ZS_FREE_SLOT;
			return id;
		}
	}
	id = slot_pop(p, &p->free_pair);
	if (id == NIL) {
		if (p->arena_bump + 2 > p->arena_pages)
			return NIL;
		id = p->arena_bump;
		p->arena_bump += 2;
	}
	if (npages == 1) {
		p->zs[id + 1].flags |= ZS_FREE_SLOT;
		slot_list_push(p, &p->free_single, id + 1);
	}
	return id;
}

static void slot_give(struct uzs_pool *p, uint32_t id, unsigned npages)
{
	uint32_t buddy = id ^ 1u;

	if (npages == 2) {
		slot_list_push(p, &p->free_pair, id);
		return;
	}
	if (p->zs[buddy].flags & ZS_FREE_SLOT) {
		slot_list_remove(p, &p->free_single, buddy);
		p->zs[buddy].flags &= (uint8_t)~ZS_FREE_SLOT;
		slot_list_push(p, &p->free_pair, id & ~1u);
		return;
	}
	p->zs[id].flags |= ZS_FREE_SLOT;
	slot_list_push(p, &p->free_single, id);
}

/* -------------------------------------------------------- known holes */

static uint32_t hsize_of(uint32_t len)
{
	return len >> HSIZE_SHIFT;
}

/* Put hole i at the tail of its size class: a class is filled in the
 * order its holes were made (first fit among holes of one size). */
static inline void hsize_link(struct uzs_pool *p, uint32_t i)
{
	struct recent_hole *r = &p->recent[i];
	uint32_t c = hsize_of(r->len);

	r->snext = NIL;
	r->sprev = p->hsize_tail[c];
	if (r->sprev != NIL)
		p->recent[r->sprev].snext = i;
	else
		p->hsize_head[c] = i;
	p->hsize_tail[c] = i;
	p->hsize_bits[c / 64] |= 1ull << (c % 64);
}

static inline void hsize_unlink(struct uzs_pool *p, uint32_t i)
{
	struct recent_hole *r = &p->recent[i];
	uint32_t c = hsize_of(r->len);

	if (r->sprev != NIL)
		p->recent[r->sprev].snext = r->snext;
	else
		p->hsize_head[c] = r->snext;
	if (r->snext != NIL)
		p->recent[r->snext].sprev = r->sprev;
	else
		p->hsize_tail[c] = r->sprev;
	if (p->hsize_head[c] == NIL)
		p->hsize_bits[c / 64] &= ~(1ull << (c % 64));
}

/* First non-empty size class >= from, or -1.  On the store path (a store
 * whose own class has no fit), so the first word is masked outside the
 * loop. */
static int hsize_first_from(const struct uzs_pool *p, uint32_t from)
{
	uint32_t w = from / 64;
	uint64_t bits;

	if (w >= HSIZE_WORDS)
		return -1;
	bits = p->hsize_bits[w] & ~0ull << (from % 64);
	while (!bits) {
		if (++w == HSIZE_WORDS)
			return -1;
		bits = p->hsize_bits[w];
	}
	return (int)(w * 64 + (uint32_t)__builtin_ctzll(bits));
}

/* Highest non-empty size class, or -1. */
static int hsize_top(const struct uzs_pool *p)
{
	for (int w = HSIZE_WORDS - 1; w >= 0; w--)
		if (p->hsize_bits[w])
			return w * 64 + 63 - __builtin_clzll(p->hsize_bits[w]);
	return -1;
}

static inline void recent_remove(struct uzs_pool *p, uint32_t i)
{
	struct recent_hole *r = &p->recent[i];
	struct zspage *z = &p->zs[r->zspage];

	hsize_unlink(p, i);
	if (r->zprev != NIL)
		p->recent[r->zprev].znext = r->znext;
	else
		z->holes = r->znext;
	if (r->znext != NIL)
		p->recent[r->znext].zprev = r->zprev;
	r->zspage = NIL;
	r->snext = p->recent_free;
	p->recent_free = i;
	p->nrecent--;
}

static void recent_forget_zspage(struct uzs_pool *p, uint32_t id)
{
	while (p->zs[id].holes != NIL)
		recent_remove(p, p->zs[id].holes);
	p->zs[id].hole_ends = 0;
}

/* A free record, or NIL when the table is full. */
static uint32_t recent_get(struct uzs_pool *p)
{
	uint32_t i = p->recent_free;

	if (i != NIL) {
		p->recent_free = p->recent[i].snext;
		return i;
	}
	if (p->recent_hwm == p->recent_cap)
		return NIL;
	return p->recent_hwm++;
}

/* Remember hole [lo, hi) of zspage id, after fragment prev.  When the table
 * is full the smallest hole makes room: it stays free space that a sweep
 * of its zspage finds. */
static void recent_add(struct uzs_pool *p, uint32_t id, uint32_t lo,
		       uint32_t hi, uint32_t prev)
{
	struct zspage *z = &p->zs[id];
	struct recent_hole *r;
	uint32_t i;

	if (hi - lo < MIN_SPLIT)
		return;
	i = recent_get(p);
	if (i == NIL) {
		int c = hsize_first_from(p, 0);

		if (c < 0 || p->recent[p->hsize_head[c]].len >= hi - lo)
			return;
		recent_remove(p, p->hsize_head[c]);
		i = recent_get(p);
	}
	r = &p->recent[i];
	*r = (struct recent_hole){ id, (uint16_t)lo, (uint16_t)(hi - lo), prev,
				   NIL, NIL, z->holes, NIL };
	if (z->holes != NIL)
		p->recent[z->holes].zprev = i;
	z->holes = i;
	z->hole_ends |= hole_end_bit(z, hi);
	hsize_link(p, i);
	p->nrecent++;
}

/*
 * A free has left bytes [lo, hi) of zspage id free, after fragment prev:
 * they become one known hole, and the known holes inside them (those on
 * either side of the freed fragment) go.  The first of those is reused for
 * it, moved to the tail of its new size class: the same lists as removing
 * them and adding a new record would leave, for less work.  No hole is
 * kept where allocation may not go (see struct uzs_pool).  The walk of the
 * zspage's holes is skipped when none may end in [lo, hi) (hole_bits),
 * and refreshes zspage.hole_ends when it is made.
 */
static void recent_freed(struct uzs_pool *p, uint32_t id, uint32_t lo,
			 uint32_t hi, uint32_t prev)
{
	struct zspage *z = &p->zs[id];
	uint32_t kept = NIL, ends = 0;
	struct recent_hole *r;

	if (z->hole_ends & hole_bits(z, lo, hi)) {
		for (uint32_t i = z->holes, next; i != NIL; i = next) {
			r = &p->recent[i];
			next = r->znext;
			if (r->offset < lo || r->offset + r->len > hi)
				ends |= hole_end_bit(z, r->offset + r->len);
			else if (kept == NIL)
				kept = i;
			else
				recent_remove(p, i);
		}
		z->hole_ends = ends;
	}
	if ((z->flags & (ZS_ISOLATED | ZS_DRAINING)) || id == p->cur.zspage) {
		if (kept != NIL)
			recent_remove(p, kept);
		return;
	}
	if (kept == NIL) {
		recent_add(p, id, lo, hi, prev);
		return;
	}
	r = &p->recent[kept];
	hsize_unlink(p, kept);
	r->offset = (uint16_t)lo;
	r->len = (uint16_t)(hi - lo);
	r->prev = prev;
	z->hole_ends |= hole_end_bit(z, hi);
	hsize_link(p, kept);
}

/* Rename fragment reference from to to in the known holes of zspage id. */
static void recent_rename(struct uzs_pool *p, uint32_t id, uint32_t from,
			  uint32_t to)
{
	for (uint32_t i = p->zs[id].holes; i != NIL; i = p->recent[i].znext)
		if (p->recent[i].prev == from)
			p->recent[i].prev = to;
}

/* -------------------------------------------------------------- zspages */

static unsigned fresh_zspage_pages(const struct uzs_pool *p, uint32_t size)
{
	if (p->zspage_pages)
		return p->zspage_pages;
	/* Automatic: a pair per sweep halves the sweeps per byte stored for
	 * large objects and splits fewer of them; one page is enough when
	 * objects are small enough to fill it without splitting. */
	return size > UZS_PAGE_SIZE / 4 ? 2 : 1;
}

static uint32_t zspage_new(struct uzs_pool *p, uint32_t size, int *err)
{
	unsigned npages = fresh_zspage_pages(p, size);
	struct zspage *z;
	uint32_t id;

	if (p->pages_held + npages > p->max_pages) {
		if (npages == 2 && p->pages_held + 1 <= p->max_pages) {
			npages = 1;
		} else {
			*err = -ENOSPC;
			return NIL;
		}
	}
	if (p->kept[npages - 1] != NIL) {
		id = p->kept[npages - 1];   /* still mapped: no page faults */
		p->kept[npages - 1] = p->zs[id].bkt_next;
		p->nkept--;
		p->zs[id].npages_kept = 0;
	} else {
		id = slot_take(p, npages);
	}
	if (id == NIL) {
		*err = -ENOSPC;
		return NIL;
	}
	z = &p->zs[id];
	z->npages = (uint8_t)npages;
	z->flags = 0;
	z->used = z->dust = z->nfrags = 0;
	z->first = z->last = NIL;
	z->holes = NIL;
	z->hole_ends = 0;
	z->bucket = -1;
	z->bkt_prev = z->bkt_next = NIL;
	z->stamp = 0;
	lru_push_mru(p, id);
	p->pages_held += npages;
	p->st.zspages++;
	p->st.pool_bytes += (uint64_t)npages * UZS_PAGE_SIZE;
	return id;
}

/* Memory of the kept empty zspages. */
static uint64_t kept_bytes(const struct uzs_pool *p)
{
	uint64_t pages = 0;

	for (unsigned k = 0; k < ZSPAGE_MAX_PAGES; k++)
		for (uint32_t id = p->kept[k]; id != NIL; id = p->zs[id].bkt_next)
			pages += k + 1;
	return pages * UZS_PAGE_SIZE;
}

/* Give every kept empty zspage back to the OS, with one TLB flush. */
static void kept_discard(struct uzs_pool *p)
{
	struct iovec v[EMPTY_KEPT_MAX];
	unsigned n = 0;

	for (unsigned k = 0; k < ZSPAGE_MAX_PAGES; k++)
		for (uint32_t id = p->kept[k]; id != NIL; id = p->zs[id].bkt_next)
			v[n++] = (struct iovec){ zs_base(p, id),
				(size_t)(k + 1) * UZS_PAGE_SIZE };
	uzs_region_discard_many(v, n);
	for (unsigned k = 0; k < ZSPAGE_MAX_PAGES; k++) {
		uint32_t id = p->kept[k];

		while (id != NIL) {
			uint32_t next = p->zs[id].bkt_next;

			p->zs[id].npages_kept = 0;
			slot_give(p, id, k + 1);
			id = next;
		}
		p->kept[k] = NIL;
	}
	p->nkept = 0;
}

/* An empty zspage leaves the pool: kept mapped for reuse, or, when
 * EMPTY_KEPT_MAX are kept already, given back with them all. */
static void zspage_release(struct uzs_pool *p, uint32_t id)
{
	struct zspage *z = &p->zs[id];
	unsigned npages = z->npages;

	bucket_remove(p, id);
	recent_forget_zspage(p, id);
	if (!(z->flags & ZS_ISOLATED))
		lru_unlink(p, id);
	else
		p->st.evicted_pages_freed += npages;
	if (p->cur.zspage == id)
		p->cur.zspage = NIL;
	z->npages = 0;
	z->flags = 0;
	z->generation++;
	p->pages_held -= npages;
	p->st.zspages--;
	p->st.pool_bytes -= (uint64_t)npages * UZS_PAGE_SIZE;
	if (p->nkept == EMPTY_KEPT_MAX)
		kept_discard(p);
	z->npages_kept = (uint8_t)npages;
	z->bkt_next = p->kept[npages - 1];
	p->kept[npages - 1] = id;
	p->nkept++;
}

/* ------------------------------------------------------------ fragments */

/*
 * Make fragment ref the first len bytes of hole h of zspage id: link it
 * after the fragment before the hole, and shrink the hole.
 */
static inline void frag_link(struct uzs_pool *p, uint32_t ref, uint32_t id,
			     struct hole *h, uint32_t len)
{
	struct zspage *z = &p->zs[id];
	struct frag *f = frag_at(p, ref);

	f->zspage = id;
	f->offset = h->offset;
	f->len = (uint16_t)len;
	f->prev = h->prev;
	f->next = h->prev != NIL ? frag_at(p, h->prev)->next : z->first;
	if (f->prev != NIL)
		frag_at(p, f->prev)->next = ref;
	else
		z->first = ref;
	if (f->next != NIL)
		frag_at(p, f->next)->prev = ref;
	else
		z->last = ref;
	h->prev = ref;
	h->offset = (uint16_t)(h->offset + len);
	h->len = (uint16_t)(h->len - len);
	z->used = (uint16_t)(z->used + len);
	z->nfrags++;
}

/* Link into the hole a sweep left behind as dust (a split head given up
 * by the cursor): the space taken was counted as dust. */
static void frag_link_dust(struct uzs_pool *p, uint32_t ref, uint32_t id,
			   struct hole *h, uint32_t len)
{
	struct zspage *z = &p->zs[id];

	frag_link(p, ref, id, h, len);
	z->dust = (uint16_t)(z->dust > len ? z->dust - len : 0);
}

/* Forget the cursor's holes: its zspage changed under it.  The zspage goes
 * back to the buckets with all its free space to be found again. */
static void cursor_drop(struct uzs_pool *p)
{
	uint32_t id = p->cur.zspage;

	if (id == NIL)
		return;
	p->cur.zspage = NIL;
	p->zs[id].dust = 0;
	bucket_update(p, id);
}

/*
 * Take fragment ref out of its zspage's list (the zspage may be empty
 * afterwards: the caller releases it).  [*lo, *hi) is the free extent it
 * leaves: from the end of the fragment before it to the start of the one
 * after, read here while their slots are at hand anyway.
 */
static void frag_unlink(struct uzs_pool *p, uint32_t ref, uint32_t *lo,
			uint32_t *hi)
{
	struct frag *f = frag_at(p, ref);
	struct zspage *z = &p->zs[f->zspage];

	if (f->prev != NIL) {
		struct frag *before = frag_at(p, f->prev);

		before->next = f->next;
		*lo = before->offset + before->len;
	} else {
		z->first = f->next;
		*lo = 0;
	}
	if (f->next != NIL) {
		struct frag *after = frag_at(p, f->next);

		after->prev = f->prev;
		*hi = after->offset;
	} else {
		z->last = f->prev;
		*hi = zs_capacity(z);
	}
	z->used = (uint16_t)(z->used - f->len);
	z->nfrags--;
	/* The sweep's holes no longer describe the zspage (a hole may now
	 * reach into the space freed here, and its neighbours changed). */
	if (f->zspage == p->cur.zspage)
		cursor_drop(p);
}

/* Move fragment from to the (unused) reference to: same place, new owner
 * slot.  Compaction uses it to give a placed object back its old handle. */
static void frag_move(struct uzs_pool *p, uint32_t from, uint32_t to)
{
	struct frag *f = frag_at(p, from), *t = frag_at(p, to);
	struct zspage *z = &p->zs[f->zspage];

	*t = *f;
	if (t->prev != NIL)
		frag_at(p, t->prev)->next = to;
	else
		z->first = to;
	if (t->next != NIL)
		frag_at(p, t->next)->prev = to;
	else
		z->last = to;
	recent_rename(p, t->zspage, from, to);
	if (t->zspage == p->cur.zspage)
		for (uint32_t i = p->cur.at; i < p->cur.nholes; i++)
			if (p->cur.holes[i].prev == from)
				p->cur.holes[i].prev = to;
}

/* Unlink fragment ref and remember the hole it leaves (recent_freed). */
static void frag_free(struct uzs_pool *p, uint32_t ref)
{
	const struct frag *f = frag_at(p, ref);
	uint32_t id = f->zspage, prev = f->prev, lo, hi;
	struct zspage *z = &p->zs[id];

	frag_unlink(p, ref, &lo, &hi);
	if (z->nfrags == 0) {
		zspage_release(p, id);
		return;
	}
	recent_freed(p, id, lo, hi, prev);
	bucket_update(p, id);
}

/* Remove a live object from its zspages, releasing any it empties. */
static void obj_unplace(struct uzs_pool *p, uint32_t idx)
{
	struct handle_slot *s = slot_at(p, idx);

	for (unsigned n = 0; n < 2; n++)
		if (s->f[n].len)
			frag_free(p, frag_ref(idx, n));
}

static inline void obj_copy_in(struct uzs_pool *p,
			       const struct handle_slot *s, const void *src)
{
	memcpy(zs_base(p, s->f[0].zspage) + s->f[0].offset, src, s->f[0].len);
	if (s->f[1].len)
		memcpy(zs_base(p, s->f[1].zspage) + s->f[1].offset,
		       (const unsigned char *)src + s->f[0].len, s->f[1].len);
}

static void obj_copy_out(struct uzs_pool *p, const struct handle_slot *s,
			 void *dst)
{
	memcpy(dst, zs_base(p, s->f[0].zspage) + s->f[0].offset, s->f[0].len);
	if (s->f[1].len)
		memcpy((unsigned char *)dst + s->f[0].len,
		       zs_base(p, s->f[1].zspage) + s->f[1].offset, s->f[1].len);
}

/* -------------------------------------------------------------- cursor */

/* Make zspage id the cursor: one walk of its fragments lists its holes. */
static void cursor_sweep(struct uzs_pool *p, uint32_t id)
{
	struct zspage *z = &p->zs[id];
	struct cursor *c = &p->cur;
	uint32_t end = 0, prev = NIL, n = 0;

	bucket_remove(p, id);
	recent_forget_zspage(p, id);
	z->dust = 0;
	for (uint32_t r = z->first; r != NIL; r = frag_at(p, r)->next) {
		const struct frag *f = frag_at(p, r);

		if (f->offset > end)
			c->holes[n++] = (struct hole){ (uint16_t)end,
				(uint16_t)(f->offset - end), prev };
		end = f->offset + f->len;
		prev = r;
	}
	if (zs_capacity(z) > end)
		c->holes[n++] = (struct hole){ (uint16_t)end,
			(uint16_t)(zs_capacity(z) - end), prev };
	c->zspage = id;
	c->at = 0;
	c->nholes = n;
	c->reused = z->nfrags > 0;
	p->st.sweeps++;
}

/*
 * Give up the cursor's remaining holes but hole `keep` (-1: none): they go
 * to the known holes, so that objects the next zspage cannot take still
 * find them.  Without this, every zspage the cursor passed kept what it
 * could not use until a free there: most of the free space after churn.
 * Not while compacting: the cursor may be a zspage still to be drained.
 */
static void cursor_spill(struct uzs_pool *p, int keep)
{
	struct cursor *c = &p->cur;
	const struct zspage *z = &p->zs[c->zspage];

	if (z->nfrags < zs_max_frags(z) && !p->compacting)
		for (uint32_t i = c->at; i < c->nholes; i++)
			if ((int)i != keep)
				recent_add(p, c->zspage, c->holes[i].offset,
					   c->holes[i].offset + c->holes[i].len,
					   c->holes[i].prev);
	c->at = c->nholes;
}

/* Stop filling the cursor: its free space is dust (not worth a sweep) until
 * something is freed there, though its holes stay known (cursor_spill). */
static void cursor_leave(struct uzs_pool *p)
{
	uint32_t id = p->cur.zspage;

	if (id == NIL)
		return;
	cursor_spill(p, -1);
	p->cur.zspage = NIL;
	p->zs[id].dust = (uint16_t)zs_free(&p->zs[id]);
	bucket_update(p, id);
}

/* Forget that zspage id (if still live and not the cursor) has dust. */
static void zspage_undust(struct uzs_pool *p, uint32_t id)
{
	if (id == NIL || !p->zs[id].npages || id == p->cur.zspage)
		return;
	p->zs[id].dust = 0;
	bucket_update(p, id);
}

/* The cursor's next hole, or NULL when it has none left. */
static struct hole *cursor_hole(struct uzs_pool *p)
{
	struct cursor *c = &p->cur;

	if (c->zspage == NIL)
		return NULL;
	while (c->at < c->nholes && c->holes[c->at].len == 0)
		c->at++;
	return c->at < c->nholes ? &c->holes[c->at] : NULL;
}

/* Move the cursor to the next zspage worth filling, or a fresh one if
 * may_grow.  size is the object being placed (for a fresh zspage's size),
 * rest the part of it still to place if its head is placed. */
static bool cursor_advance(struct uzs_pool *p, uint32_t size, uint32_t rest,
			   bool may_grow, int *err)
{
	uint32_t old = p->cur.zspage, id;

	cursor_leave(p);
	id = pick_target(p, rest);
	if (id == NIL) {
		if (may_grow)
			id = zspage_new(p, size, err);
		else
			*err = -ENOSPC;
		if (id == NIL) {
			/* Nothing will be stored: what the cursor left is not
			 * dust, a smaller object may fit there next. */
			zspage_undust(p, old);
			return false;
		}
	}
	cursor_sweep(p, id);
	return true;
}

/* The first of the cursor's holes that holds len bytes, but not `not`;
 * with best, the smallest such hole instead.  -1 if none. */
static int hole_fit(const struct cursor *c, uint32_t len, int not, bool best)
{
	int found = -1;

	for (uint32_t i = c->at; i < c->nholes; i++) {
		const struct hole *h = &c->holes[i];

		if (h->len < len || (int)i == not)
			continue;
		if (!best)
			return (int)i;
		if (found < 0 || h->len < c->holes[found].len)
			found = (int)i;
	}
	return found;
}

/* The cursor's largest hole, or -1 if it has none. */
static int hole_largest(const struct cursor *c)
{
	int found = -1;

	for (uint32_t i = c->at; i < c->nholes; i++)
		if (c->holes[i].len &&
		    (found < 0 || c->holes[i].len > c->holes[found].len))
			found = (int)i;
	return found;
}

/* Link object idx whole into hole i of the cursor. */
static void place_whole(struct uzs_pool *p, uint32_t idx, int i, uint32_t len)
{
	struct handle_slot *s = slot_at(p, idx);

	frag_link(p, frag_ref(idx, 0), p->cur.zspage, &p->cur.holes[i], len);
	s->f[1].len = 0;
	s->f[1].zspage = NIL;
	p->st.hole_fills += p->cur.reused;
}

/* Whether the cursor has a hole that takes len bytes whole. */
static bool cursor_fits(struct uzs_pool *p, uint32_t len)
{
	const struct zspage *z;

	if (!cursor_hole(p))
		return false;
	z = &p->zs[p->cur.zspage];
	return z->nfrags < zs_max_frags(z) && hole_fit(&p->cur, len, -1, false) >= 0;
}

/* Whether known hole i's zspage may take n more fragments. */
static bool recent_has_room(const struct uzs_pool *p, uint32_t i, unsigned n)
{
	const struct zspage *z = &p->zs[p->recent[i].zspage];

	return z->nfrags + n <= zs_max_frags(z);
}

/*
 * A known hole of at least len bytes, or NIL: the smallest of the first
 * HSIZE_SCAN in len's own size class that holds it, else the newest of the
 * next class up that has any.  Its zspage takes one more fragment: a
 * zspage that reaches its limit loses its known holes (recent_stored), so
 * the descriptors need not be read here.
 */
static inline uint32_t recent_fit(const struct uzs_pool *p, uint32_t len)
{
	uint32_t c = hsize_of(len), found = NIL, best = UINT32_MAX, n = 0;
	int up;

	for (uint32_t i = p->hsize_head[c]; i != NIL && n < HSIZE_SCAN;
	     i = p->recent[i].snext, n++) {
		const struct recent_hole *r = &p->recent[i];

		if (r->len >= len && r->len < best) {
			found = i;
			best = r->len;
			if (best == len)
				break;  /* none fits better */
		}
	}
	if (found != NIL || c + 1 >= NHSIZES)
		return found;
	up = hsize_first_from(p, c + 1);
	return up < 0 ? NIL : p->hsize_head[up];
}

/* The newest of the largest known holes, if its zspage takes two more
 * fragments; else NIL. */
static uint32_t recent_largest(const struct uzs_pool *p)
{
	int c = hsize_top(p);

	if (c < 0 || !recent_has_room(p, p->hsize_head[c], 2))
		return NIL;
	return p->hsize_head[c];
}

/* After a store into zspage id from the known holes: one at its fragment
 * limit can take nothing more, so its holes go (see recent_fit). */
static inline void recent_stored(struct uzs_pool *p, uint32_t id)
{
	const struct zspage *z = &p->zs[id];

	if (z->nfrags >= zs_max_frags(z))
		recent_forget_zspage(p, id);
	bucket_update(p, id);
}

/*
 * Link fragment ref as the first len bytes of known hole i, which stays,
 * shorter (in its new size class), or goes.  The space may have been
 * unswept or dust (a hole the cursor left): dust only shrinks if the
 * zspage no longer has that much free.
 */
static void recent_take(struct uzs_pool *p, uint32_t ref, uint32_t i,
			uint32_t len)
{
	struct recent_hole *r = &p->recent[i];
	struct hole h = { r->offset, r->len, r->prev };
	uint32_t id = r->zspage;
	struct zspage *z = &p->zs[id];

	frag_link(p, ref, id, &h, len);
	if (z->dust > zs_free(z))
		z->dust = (uint16_t)zs_free(z);
	if (h.len < MIN_SPLIT) {
		recent_remove(p, i);
		return;
	}
	hsize_unlink(p, i);
	r->offset = h.offset;
	r->len = h.len;
	r->prev = h.prev;
	hsize_link(p, i);
}

/*
 * Place object idx of len bytes in the known holes: whole, in the best fit
 * recent_fit finds; else split, its head filling the largest and its tail
 * in the best fit for the rest among the others.  False if they cannot
 * take it.
 */
static bool place_recent(struct uzs_pool *p, uint32_t idx, uint32_t len)
{
	struct handle_slot *s = slot_at(p, idx);
	uint32_t i = recent_fit(p, len), j, hid, tid, head;

	if (i != NIL) {
		hid = p->recent[i].zspage;
		recent_take(p, frag_ref(idx, 0), i, len);
		s->f[1].len = 0;
		s->f[1].zspage = NIL;
		recent_stored(p, hid);
		p->st.hole_fills++;
		return true;
	}
	i = recent_largest(p);
	if (i == NIL)
		return false;
	head = p->recent[i].len;
	/* Out of its size class while the tail looks: not the tail's hole. */
	hsize_unlink(p, i);
	j = recent_fit(p, len - head);
	hsize_link(p, i);
	if (j == NIL)
		return false;
	hid = p->recent[i].zspage;
	tid = p->recent[j].zspage;
	/* recent_largest left room for both fragments in the head's zspage.
	 * Tail first, as place() does; the head takes its hole whole. */
	recent_take(p, frag_ref(idx, 1), j, len - head);
	recent_take(p, frag_ref(idx, 0), i, head);
	recent_stored(p, hid);
	if (tid != hid)
		recent_stored(p, tid);
	p->st.hole_fills++;
	return true;
}

/*
 * The tail of object idx (len bytes, its head reserved in hole *head of
 * zspage head_z, which is no longer the cursor) into a known hole, then the
 * head.  False if no known hole holds the rest.
 */
static bool place_tail_recent(struct uzs_pool *p, uint32_t idx, uint32_t len,
			      uint32_t head_z, struct hole *head)
{
	uint32_t rest = len - head->len, j = recent_fit(p, rest), tid;

	if (j == NIL)
		return false;
	tid = p->recent[j].zspage;
	if (tid == head_z &&
	    p->zs[tid].nfrags + 2u > zs_max_frags(&p->zs[tid]))
		return false;
	recent_take(p, frag_ref(idx, 1), j, rest);
	frag_link_dust(p, frag_ref(idx, 0), head_z, head, head->len);
	recent_stored(p, tid);
	if (tid != head_z)
		recent_stored(p, head_z);
	p->st.hole_fills++;
	return true;
}

/*
 * Find room for an object of len bytes in slot idx and link its fragments
 * (no bytes copied):
 *  1. whole, in the cursor's first hole that holds it;
 *  2. else in the known holes (place_recent), whole or split;
 *  3. else split in the cursor: head filling its largest hole, tail in the
 *     smallest other hole that holds the rest;
 *  4. else the head fills its largest hole and the cursor moves on; the
 *     tail goes into a known hole that holds the rest, else the first hole
 *     of the next zspage that does (when none does, the head is given up
 *     and the object starts over there).
 * Whenever the cursor has no hole left, the known holes are tried before
 * another zspage is swept or a fresh one made: free space anywhere is
 * filled before the pool grows.  Returns false with *err set, and nothing
 * linked, if a fresh zspage was needed but not allowed (may_grow false:
 * compaction) or not possible (the size limit).
 */
static bool place(struct uzs_pool *p, uint32_t idx, uint32_t len,
		  bool may_grow, int *err)
{
	struct cursor *c = &p->cur;
	struct hole head = { 0, 0, NIL };
	uint32_t head_z = NIL;
	bool head_reused = false, tried = false;

	if (!cursor_fits(p, len)) {
		if (place_recent(p, idx, len))
			return true;
		tried = true;
	}
	for (;;) {
		uint32_t id = c->zspage;
		struct zspage *z;
		int i, j;

		if (!cursor_hole(p)) {
			if (head_z != NIL ?
			    place_tail_recent(p, idx, len, head_z, &head) :
			    !tried && place_recent(p, idx, len))
				return true;
			tried = true;
			if (!cursor_advance(p, len, head_z != NIL ?
					    len - head.len : 0, may_grow, err)) {
				if (head_z != NIL)
					recent_add(p, head_z, head.offset,
						   head.offset + head.len,
						   head.prev);
				zspage_undust(p, head_z);
				return false;
			}
			continue;
		}
		z = &p->zs[id];
		if (z->nfrags >= zs_max_frags(z)) {
			c->at = c->nholes;  /* no fragment fits any more */
			continue;
		}
		if (head_z != NIL) {
			j = hole_fit(c, len - head.len, -1, false);
			if (j >= 0) {
				frag_link(p, frag_ref(idx, 1), id, &c->holes[j],
					  len - head.len);
				frag_link_dust(p, frag_ref(idx, 0), head_z,
					       &head, head.len);
				recent_stored(p, head_z);
				p->st.hole_fills += head_reused;
				return true;
			}
			/* The rest does not fit: the head's hole is free again. */
			recent_add(p, head_z, head.offset,
				   head.offset + head.len, head.prev);
			head_z = NIL;
		}
		i = hole_fit(c, len, -1, false);
		if (i >= 0) {
			place_whole(p, idx, i, len);
			return true;
		}
		i = hole_largest(c);
		if (c->holes[i].len < MIN_SPLIT) {
			c->at = c->nholes;
			continue;
		}
		if (z->nfrags + 2u <= zs_max_frags(z)) {
			j = hole_fit(c, len - c->holes[i].len, i, true);
			if (j >= 0) {
				frag_link(p, frag_ref(idx, 1), id, &c->holes[j],
					  len - c->holes[i].len);
				frag_link(p, frag_ref(idx, 0), id, &c->holes[i],
					  c->holes[i].len);
				p->st.hole_fills += c->reused;
				return true;
			}
		}
		head = c->holes[i];
		head_z = id;
		head_reused = c->reused;
		cursor_spill(p, i);
		cursor_leave(p);
	}
}

/* ------------------------------------------------------------ public API */

static size_t recent_bytes(const struct uzs_pool *p)
{
	return (size_t)p->recent_cap * sizeof(struct recent_hole);
}

int uzs_pool_create(const struct uzs_pool_config *config,
		    struct uzs_pool **out)
{
	struct uzs_pool_config def = { 0, -1, 0 };
	size_t max_bytes;
	struct uzs_pool *p;
	int err = -ENOMEM;

	if (!config)
		config = &def;
	if (config->zspage_pages > ZSPAGE_MAX_PAGES)
		return -EINVAL;
	max_bytes = config->max_bytes ? config->max_bytes : UZS_POOL_DEFAULT_MAX;
	if (max_bytes < UZS_PAGE_SIZE ||
	    max_bytes / UZS_PAGE_SIZE > (NIL - 2) / 2)
		return -EINVAL;

	p = uzs_region_reserve(sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->max_pages = (uint32_t)(max_bytes / UZS_PAGE_SIZE);
	/* Pairing can strand at most one free half per held page: 2x. */
	p->arena_pages = (p->max_pages + 1) * 2;
	p->arena = uzs_region_reserve((size_t)p->arena_pages * UZS_PAGE_SIZE);
	p->zs = uzs_region_reserve((size_t)p->arena_pages * sizeof(struct zspage));
	p->recent_cap = HOLES_MAX;
	p->recent = uzs_region_reserve(recent_bytes(p));
	if (!p->arena || !p->zs || !p->recent)
		goto fail;
	if (config->numa_node >= 0) {
		unsigned long mask[16] = { 0 };
		unsigned node = (unsigned)config->numa_node;

		err = -EINVAL;
		if (node >= sizeof(mask) * 8 ||
		    (mask[node / 64] |= 1ul << (node % 64),
		     syscall(SYS_mbind, p->arena,
			     (size_t)p->arena_pages * UZS_PAGE_SIZE,
			     2 /* MPOL_BIND */, mask, sizeof(mask) * 8, 0) != 0))
			goto fail;
	}
	pthread_mutex_init(&p->lock, NULL);
	p->zspage_pages = config->zspage_pages;
	p->placement = UZS_PLACE_EMPTIEST;
	p->free_single = p->free_pair = NIL;
	p->lru_head = p->lru_tail = NIL;
	p->kept[0] = p->kept[1] = NIL;
	p->cur.zspage = NIL;
	for (unsigned b = 0; b < NBUCKETS; b++)
		p->bucket_head[b] = NIL;
	p->handle_free = NIL;
	p->recent_free = NIL;
	for (unsigned c = 0; c < NHSIZES; c++)
		p->hsize_head[c] = p->hsize_tail[c] = NIL;
	/* The table's first page is counted from the start (metadata_in_use):
	 * touch it, so that the count is what is resident. */
	memset(p->recent, 0, UZS_PAGE_SIZE < recent_bytes(p) ?
			     UZS_PAGE_SIZE : recent_bytes(p));
	*out = p;
	return 0;
fail:
	uzs_region_unreserve(p->recent, recent_bytes(p));
	uzs_region_unreserve(p->zs, (size_t)p->arena_pages * sizeof(struct zspage));
	uzs_region_unreserve(p->arena, (size_t)p->arena_pages * UZS_PAGE_SIZE);
	uzs_region_unreserve(p, sizeof(*p));
	return err;
}

void uzs_pool_not_inherited(struct uzs_pool *p)
{
	madvise(p->arena, (size_t)p->arena_pages * UZS_PAGE_SIZE, MADV_DONTFORK);
	madvise(p->zs, (size_t)p->arena_pages * sizeof(struct zspage),
		MADV_DONTFORK);
}

void uzs_pool_destroy(struct uzs_pool *p)
{
	if (!p)
		return;
	for (uint32_t c = 0; c < HCHUNK_MAX && p->hchunk[c]; c++)
		uzs_region_unreserve(p->hchunk[c],
				     HCHUNK_SLOTS * sizeof(struct handle_slot));
	uzs_region_unreserve(p->recent, recent_bytes(p));
	uzs_region_unreserve(p->zs, (size_t)p->arena_pages * sizeof(struct zspage));
	uzs_region_unreserve(p->arena, (size_t)p->arena_pages * UZS_PAGE_SIZE);
	pthread_mutex_destroy(&p->lock);
	uzs_region_unreserve(p, sizeof(*p));
}

void uzs_pool_set_placement(struct uzs_pool *p, enum uzs_placement placement)
{
	pthread_mutex_lock(&p->lock);
	p->placement = placement;
	pthread_mutex_unlock(&p->lock);
}

int uzs_pool_alloc(struct uzs_pool *p, const void *src, size_t len,
		   uint64_t owner, uzs_handle_t *out)
{
	struct handle_slot *s;
	uint32_t idx;
	bool fresh;
	int err;

	if (len == 0 || len > UZS_PAGE_SIZE || !src || !out)
		return -EINVAL;

	pthread_mutex_lock(&p->lock);
	err = handle_get(p, &idx, &fresh);
	if (err)
		goto fail;
	if (!place(p, idx, (uint32_t)len, true, &err)) {
		handle_unget(p, idx, fresh);
		goto fail;
	}
	s = slot_at(p, idx);
	s->owner = owner;
	obj_copy_in(p, s, src);
	lru_touch(p, s->f[0].zspage);
	if (s->f[1].len) {
		lru_touch(p, s->f[1].zspage);
		p->st.split_objects++;
	}
	p->st.objects++;
	p->st.stored_bytes += len;
	p->st.allocs++;
	pthread_mutex_unlock(&p->lock);
	*out = (uzs_handle_t)idx + 1;
	return 0;
fail:
	p->st.alloc_failures++;
	pthread_mutex_unlock(&p->lock);
	return err;
}

/* A read is a use of each zspage the object is in, unless one of them is
 * isolated: then it is an evictor reading its batch. */
static void mark_referenced(struct uzs_pool *p, const struct handle_slot *s)
{
	unsigned n = s->f[1].len ? 2 : 1;

	for (unsigned k = 0; k < n; k++)
		if (p->zs[s->f[k].zspage].flags & ZS_ISOLATED)
			return;
	for (unsigned k = 0; k < n; k++)
		p->zs[s->f[k].zspage].flags |= ZS_REFERENCED;
}

long uzs_pool_read(struct uzs_pool *p, uzs_handle_t h, void *dst,
		   size_t dst_len)
{
	struct handle_slot *s;
	long len = -EINVAL;

	if (!dst)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	s = handle_lookup(p, h);
	if (s && slot_len(s) <= dst_len) {
		obj_copy_out(p, s, dst);
		mark_referenced(p, s);
		len = (long)slot_len(s);
	}
	pthread_mutex_unlock(&p->lock);
	return len;
}

int uzs_pool_free(struct uzs_pool *p, uzs_handle_t h)
{
	struct handle_slot *s;
	uint32_t idx;

	pthread_mutex_lock(&p->lock);
	s = handle_lookup(p, h);
	if (!s) {
		pthread_mutex_unlock(&p->lock);
		return -EINVAL;
	}
	idx = (uint32_t)(h - 1);
	p->st.objects--;
	p->st.stored_bytes -= slot_len(s);
	p->st.frees++;
	if (s->f[1].len)
		p->st.split_objects--;
	obj_unplace(p, idx);
	handle_put(p, idx);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

int uzs_pool_set_owner(struct uzs_pool *p, uzs_handle_t h, uint64_t owner)
{
	struct handle_slot *s;
	int rc = -EINVAL;

	pthread_mutex_lock(&p->lock);
	s = handle_lookup(p, h);
	if (s) {
		s->owner = owner;
		rc = 0;
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

int uzs_pool_owner(struct uzs_pool *p, uzs_handle_t h, uint64_t *owner)
{
	struct handle_slot *s;
	int rc = -EINVAL;

	if (!owner)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	s = handle_lookup(p, h);
	if (s) {
		*owner = s->owner;
		rc = 0;
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

long uzs_pool_length(struct uzs_pool *p, uzs_handle_t h)
{
	struct handle_slot *s;
	long len = -EINVAL;

	pthread_mutex_lock(&p->lock);
	s = handle_lookup(p, h);
	if (s)
		len = (long)slot_len(s);
	pthread_mutex_unlock(&p->lock);
	return len;
}

/* ------------------------------------------------------------ eviction */

/* The coldest zspage, giving a read one a second chance; NIL if none. */
static uint32_t evict_victim(struct uzs_pool *p)
{
	uint32_t id;
	uint64_t tries;

	/* Each zspage is passed over at most once: its referenced bit clears. */
	for (tries = 0, id = p->lru_tail; id != NIL; tries++, id = p->lru_tail) {
		struct zspage *z = &p->zs[id];

		if (!(z->flags & ZS_REFERENCED) || tries >= p->st.zspages)
			break;
		z->flags &= (uint8_t)~ZS_REFERENCED;
		lru_unlink(p, id);
		lru_push_mru(p, id);
	}
	return id;
}

int uzs_pool_evict_begin(struct uzs_pool *p, struct uzs_evict_batch *batch)
{
	uint32_t id, n = 0;

	pthread_mutex_lock(&p->lock);
	id = evict_victim(p);
	if (id == NIL) {
		pthread_mutex_unlock(&p->lock);
		return -ENOENT;
	}
	if (p->cur.zspage == id)
		p->cur.zspage = NIL;
	lru_unlink(p, id);
	bucket_remove(p, id);
	recent_forget_zspage(p, id);
	p->zs[id].flags |= ZS_ISOLATED;
	p->zs[id].flags &= (uint8_t)~ZS_REFERENCED;
	for (uint32_t r = p->zs[id].first; r != NIL; r = frag_at(p, r)->next) {
		const struct handle_slot *s = slot_at(p, r >> 1);

		/* An object with both fragments here is listed once. */
		if ((r & 1) && s->f[0].zspage == id)
			continue;
		batch->entries[n].handle = (uzs_handle_t)(r >> 1) + 1;
		batch->entries[n].owner = s->owner;
		n++;
	}
	batch->zspage = id;
	batch->generation = p->zs[id].generation;
	batch->count = n;
	p->st.evictions++;
	pthread_mutex_unlock(&p->lock);
	return (int)n;
}

void uzs_pool_evict_end(struct uzs_pool *p, struct uzs_evict_batch *batch)
{
	uint32_t id = batch->zspage;
	struct zspage *z;

	pthread_mutex_lock(&p->lock);
	z = &p->zs[id];
	if (id < p->arena_bump && z->npages && z->generation == batch->generation &&
	    (z->flags & ZS_ISOLATED)) {
		z->flags &= (uint8_t)~ZS_ISOLATED;
		z->dust = 0;
		lru_push_mru(p, id);
		bucket_update(p, id);
	}
	pthread_mutex_unlock(&p->lock);
}

/* ---------------------------------------------------------- compaction */

enum move_result { MOVED, PINNED, NO_ROOM };

/*
 * Move object idx out of the zspage being drained into the holes of others
 * (never a fresh zspage).  It is placed under a spare slot first, so that a
 * failure leaves it untouched; then its old fragments go and the new ones
 * take its slot, so the handle never changes.
 */
static enum move_result compact_move(struct uzs_pool *p, uint32_t idx)
{
	struct handle_slot *s = slot_at(p, idx), *t;
	uint32_t len = slot_len(s), tmp;
	bool fresh;
	int err;

	/* An object also in a zspage being evicted stays: the evictor is
	 * about to write it back from there. */
	if (s->f[1].len && (p->zs[s->f[1].zspage].flags & ZS_ISOLATED))
		return PINNED;
	if (p->zs[s->f[0].zspage].flags & ZS_ISOLATED)
		return PINNED;
	if (handle_get(p, &tmp, &fresh))
		return NO_ROOM;
	if (!place(p, tmp, len, false, &err)) {
		handle_unget(p, tmp, fresh);
		return NO_ROOM;
	}
	t = slot_at(p, tmp);
	obj_copy_out(p, s, p->bounce);
	obj_copy_in(p, t, p->bounce);
	if (s->f[1].len)
		p->st.split_objects--;
	obj_unplace(p, idx);
	for (unsigned n = 0; n < 2; n++) {
		if (t->f[n].len) {
			frag_move(p, frag_ref(tmp, n), frag_ref(idx, n));
		} else {
			s->f[n].len = 0;
			s->f[n].zspage = NIL;
		}
	}
	if (s->f[1].len)
		p->st.split_objects++;
	memset(t->f, 0, sizeof(t->f));
	handle_unget(p, tmp, fresh);
	p->st.compacted_objects++;
	return MOVED;
}

/* Empty zspage id into the others; true if it was released. */
static bool compact_drain(struct uzs_pool *p, uint32_t id, bool *no_room)
{
	struct zspage *z = &p->zs[id];
	uint32_t r;

	if (p->cur.zspage == id)
		cursor_drop(p);
	z->flags |= ZS_DRAINING;
	bucket_remove(p, id);
	recent_forget_zspage(p, id);
	for (r = z->first; r != NIL;) {
		uint32_t idx = r >> 1, next = frag_at(p, r)->next;
		enum move_result m;

		/* The next fragment of another object survives the move. */
		while (next != NIL && (next >> 1) == idx)
			next = frag_at(p, next)->next;
		m = compact_move(p, idx);
		if (m == NO_ROOM) {
			*no_room = true;
			break;
		}
		if (!z->npages)
			return true;    /* its last fragment went: released */
		r = next;
	}
	z->flags &= (uint8_t)~ZS_DRAINING;
	bucket_update(p, id);
	return false;
}

/*
 * Heapsort, ascending: not qsort, which may call malloc (glibc's does for
 * large arrays), and the pool must not touch the C heap.
 */
static void sift_down(uint64_t *k, size_t root, size_t n)
{
	for (size_t child; (child = 2 * root + 1) < n; root = child) {
		if (child + 1 < n && k[child + 1] > k[child])
			child++;
		if (k[root] >= k[child])
			return;
		uint64_t t = k[root];

		k[root] = k[child];
		k[child] = t;
	}
}

static void sort_u64(uint64_t *k, size_t n)
{
	for (size_t i = n / 2; i-- > 0;)
		sift_down(k, i, n);
	for (size_t end = n; end-- > 1;) {
		uint64_t t = k[0];

		k[0] = k[end];
		k[end] = t;
		sift_down(k, 0, end);
	}
}

/*
 * The zspages worth emptying, emptiest first: at most three quarters full,
 * not being evicted.  Each is (used << 32 | id) in keys[]; returns how many.
 * Every zspage's dust is cleared on the way, so that each hole in the pool
 * can take the objects moved (found by sweeps; the known holes keep only
 * those of fuller zspages, and the cursor spills none while compacting).
 */
static size_t compact_candidates(struct uzs_pool *p, uint64_t *keys)
{
	size_t n = 0;

	cursor_leave(p);
	for (uint32_t id = 0; id < p->arena_bump; id++) {
		struct zspage *z = &p->zs[id];

		if (!z->npages || (z->flags & ZS_ISOLATED))
			continue;
		z->dust = 0;
		bucket_update(p, id);
		if (z->used * 4u <= zs_capacity(z) * 3u) {
			keys[n++] = (uint64_t)z->used << 32 | id;
			/* Not a target through its known holes: objects moved
			 * there would move again when it is drained. */
			recent_forget_zspage(p, id);
		}
	}
	sort_u64(keys, n);
	return n;
}

/* Free bytes in zspages that can take objects, other than zspage id. */
static uint64_t compact_room(struct uzs_pool *p, uint32_t id)
{
	return p->st.pool_bytes - p->st.stored_bytes - zs_free(&p->zs[id]);
}

size_t uzs_pool_compact(struct uzs_pool *p)
{
	size_t keys_len, n, released;
	uint64_t moved0, *keys;
	uint32_t held0;
	bool no_room = false;

	pthread_mutex_lock(&p->lock);
	keys_len = (size_t)p->arena_bump * sizeof(*keys);
	keys = keys_len ? uzs_region_reserve(keys_len) : NULL;
	if (!keys) {
		pthread_mutex_unlock(&p->lock);
		return 0;
	}
	held0 = p->pages_held;
	moved0 = p->st.compacted_objects;
	p->compacting = true;
	n = compact_candidates(p, keys);
	for (size_t i = 0; i < n && !no_room; i++) {
		uint32_t id = (uint32_t)keys[i];
		struct zspage *z = &p->zs[id];

		/* Emptied on the way by moves of its objects' other halves. */
		if (!z->npages)
			continue;
		/* Emptiest first: once one does not fit, none after it will
		 * (isolated zspages' free space makes this optimistic; a move
		 * that finds no room stops the run). */
		if (compact_room(p, id) < z->used)
			break;
		compact_drain(p, id, &no_room);
	}
	p->compacting = false;
	released = held0 - p->pages_held;
	if (p->st.compacted_objects != moved0) {
		p->st.compactions++;
		p->st.compacted_pages_freed += released;
	}
	uzs_region_unreserve(keys, keys_len);
	pthread_mutex_unlock(&p->lock);
	return released;
}

/* ---------------------------------------------------------------- stats */

/* The known-hole table's pages touched so far: its first page from the
 * start, then whole pages as the high-water mark reaches them.  Counting
 * pages, not records, keeps the figure from moving with every hole. */
static uint64_t recent_in_use(const struct uzs_pool *p)
{
	uint64_t bytes = (uint64_t)p->recent_hwm * sizeof(struct recent_hole);

	bytes = (bytes + UZS_PAGE_SIZE - 1) & ~(uint64_t)(UZS_PAGE_SIZE - 1);
	return bytes ? bytes : UZS_PAGE_SIZE;
}

/*
 * Memory outside pool pages that the pool has touched: the handle slots
 * below the high-water mark, the zspage descriptors below the arena's
 * high-water mark, the known-hole table, and the pool structure up to the chunk directory entries
 * in use (the rest of what is reserved is never touched, so never backed).
 */
static uint64_t metadata_in_use(const struct uzs_pool *p)
{
	uint32_t chunks = (p->handles_hwm + HCHUNK_SLOTS - 1) >> HCHUNK_SHIFT;

	return (uint64_t)p->handles_hwm * sizeof(struct handle_slot) +
	       (uint64_t)p->arena_bump * sizeof(struct zspage) +
	       recent_in_use(p) +
	       offsetof(struct uzs_pool, hchunk) +
	       (uint64_t)chunks * sizeof(p->hchunk[0]) +
	       (sizeof(*p) - offsetof(struct uzs_pool, handles_hwm));
}

uint64_t uzs_pool_overhead_bytes(struct uzs_pool *p)
{
	uint64_t bytes;

	pthread_mutex_lock(&p->lock);
	bytes = metadata_in_use(p) + kept_bytes(p);
	pthread_mutex_unlock(&p->lock);
	return bytes;
}

void uzs_pool_stats(struct uzs_pool *p, struct uzs_pool_stats *out)
{
	pthread_mutex_lock(&p->lock);
	*out = p->st;
	memset(out->zspages_by_fullness, 0, sizeof(out->zspages_by_fullness));
	for (uint32_t id = 0; id < p->arena_bump; id++) {
		const struct zspage *z = &p->zs[id];
		unsigned g;

		if (!z->npages)
			continue;
		g = z->used == zs_capacity(z) ? 4 :
			     (unsigned)(z->used * 4u / zs_capacity(z));

		out->zspages_by_fullness[g]++;
	}
	out->metadata_bytes = metadata_in_use(p);
	pthread_mutex_unlock(&p->lock);
}
