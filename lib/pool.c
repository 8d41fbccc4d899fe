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
 *
 * Objects are stacked into a zspage back to back, each rounded up to
 * OBJ_ALIGN bytes; an object may straddle the two pages of a 2-page zspage
 * (they are contiguous in the arena).  There are no size classes: any object
 * can go into any zspage with room, which is what lets freed space be reused
 * by objects of other sizes (zsmalloc's churn weakness).
 *
 * Handles
 * -------
 * A handle is 1 + the index of a slot in the handle table.  The slot holds
 * the object's location (zspage, offset, length) and the caller's owner tag,
 * and links the object into its zspage's list in offset order.  Because only
 * the slot knows where the object is, objects can move freely: defrag slides
 * a zspage's objects down to merge its holes, compaction moves objects
 * between zspages, and no handle changes.  The table is two-level (a
 * directory of lazily mapped chunks), so it grows without ever moving.
 *
 * Placement
 * ---------
 * An allocation first tries the most recently used zspage (objects stored
 * together stay together: they tend to be freed together, which is what
 * lets whole zspages empty).  Failing that it takes, by default, the zspage
 * whose free space fits most tightly (free-space buckets of BUCKET_BYTES with
 * a bitmap, so the search is a few word scans), else a fresh zspage.  A
 * zspage whose free space is enough but not contiguous is defragmented in
 * place first.
 *
 * LRU and eviction
 * ----------------
 * zspages, not objects, are on the LRU; storing into a zspage makes it most
 * recently used.  Eviction takes the coldest zspage whole (second chance for
 * one that was read since: zswap found this cuts refaults), isolates it and
 * hands its objects to the caller; the zspage is released when its last
 * object is freed.  See uzswap.h for the caller's side of the protocol.
 *
 * Locking
 * -------
 * One mutex per pool covers everything here; every critical section is
 * short (at most a defrag's memmove of 8 KiB or a compaction step).  The
 * pool never calls out while holding it and never touches memory it does
 * not own, so it can be used from the shim's fault-service threads.  An
 * application thread never takes it.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mmap_region.h"
#include "pool_internal.h"
#include "pool_layout.h"
#include "uzswap.h"

/* ------------------------------------------------------------ helpers */

/* The slot of a live handle, or NULL. */
static struct handle_slot *handle_lookup(struct uzs_pool *p, uzs_handle_t h)
{
	struct handle_slot *s;

	if (h == 0 || h > p->handles_hwm)
		return NULL;
	s = slot_at(p, (uint32_t)(h - 1));
	return s->len ? s : NULL;
}

/* ------------------------------------------------------- handle table */

static int handle_get(struct uzs_pool *p, uint32_t *idx)
{
	uint32_t chunk;

	if (p->handle_free != NIL) {
		*idx = p->handle_free;
		p->handle_free = slot_at(p, *idx)->next;
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
		p->st.metadata_bytes += HCHUNK_SLOTS * sizeof(struct handle_slot);
	}
	*idx = p->handles_hwm++;
	return 0;
}

static void handle_put(struct uzs_pool *p, uint32_t idx)
{
	struct handle_slot *s = slot_at(p, idx);

	s->len = 0;
	s->zspage = NIL;
	s->next = p->handle_free;
	p->handle_free = idx;
}

/* ---------------------------------------------------------------- LRU */

static void lru_unlink(struct uzs_pool *p, uint32_t id)
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

static void lru_push_mru(struct uzs_pool *p, uint32_t id)
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

/* ------------------------------------------------------------ buckets */

static void bucket_remove(struct uzs_pool *p, uint32_t id)
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

/* Insert at the head (freshly used) or the tail (only freed into). */
static void bucket_insert(struct uzs_pool *p, uint32_t id, bool at_head)
{
	struct zspage *z = &p->zs[id];
	uint32_t b = zs_free(z) >> BUCKET_SHIFT, cur;

	z->bucket = (int16_t)b;
	z->bkt_prev = z->bkt_next = NIL;
	if (p->bucket_head[b] == NIL) {
		p->bucket_head[b] = id;
		p->bucket_bits[b / 64] |= 1ull << (b % 64);
		return;
	}
	if (at_head) {
		z->bkt_next = p->bucket_head[b];
		p->zs[z->bkt_next].bkt_prev = id;
		p->bucket_head[b] = id;
		return;
	}
	/* Buckets are short in practice; a tail pointer per bucket would cost
	 * 1 KiB per pool to save this walk on the free path. Bounded walk: past
	 * 8 steps, insert there (recency order is a preference, not a rule). */
	cur = p->bucket_head[b];
	for (int i = 0; i < 8 && p->zs[cur].bkt_next != NIL; i++)
		cur = p->zs[cur].bkt_next;
	z->bkt_prev = cur;
	z->bkt_next = p->zs[cur].bkt_next;
	if (z->bkt_next != NIL)
		p->zs[z->bkt_next].bkt_prev = id;
	p->zs[cur].bkt_next = id;
}

/* Put a zspage in the bucket its free space says, if it can take anything. */
static void bucket_update(struct uzs_pool *p, uint32_t id, bool at_head)
{
	struct zspage *z = &p->zs[id];

	bucket_remove(p, id);
	if (z->flags & ZS_ISOLATED)
		return;
	if (zs_free(z) < OBJ_ALIGN || z->nobjs >= zs_max_objs(z))
		return;
	bucket_insert(p, id, at_head);
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

/* A zspage (not `exclude`) with room for size bytes, by placement policy. */
static uint32_t find_room(struct uzs_pool *p, uint32_t size, uint32_t exclude)
{
	uint32_t from = (size + (1u << BUCKET_SHIFT) - 1) >> BUCKET_SHIFT;
	uint32_t best = NIL;
	int b;

	for (b = bucket_first_from(p, from); b >= 0;
	     b = bucket_first_from(p, (uint32_t)b + 1)) {
		uint32_t id = p->bucket_head[b];

		if (id == exclude)
			id = p->zs[id].bkt_next;
		if (id == NIL)
			continue;
		if (p->placement == UZS_PLACE_BEST_FIT)
			return id;
		if (best == NIL || p->zs[id].stamp > p->zs[best].stamp)
			best = id;
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

/* -------------------------------------------------------------- zspages */

static unsigned fresh_zspage_pages(const struct uzs_pool *p, uint32_t size)
{
	if (p->zspage_pages)
		return p->zspage_pages;
	/* Automatic: pairs halve the tail waste per page of large objects (two
	 * 2.7 KiB objects leave 1.4 KiB in one page, three fill a pair); one
	 * page is enough when objects are small enough to fill it. */
	return size > UZS_PAGE_SIZE / 4 ? 2 : 1;
}

static uint32_t zspage_new(struct uzs_pool *p, uint32_t size, int *err)
{
	unsigned npages = fresh_zspage_pages(p, size);
	struct zspage *z;
	uint32_t id;

	if (p->pages_held + npages > p->max_pages) {
		if (npages == 2 && size <= UZS_PAGE_SIZE &&
		    p->pages_held + 1 <= p->max_pages)
			npages = 1;
		else {
			*err = -ENOSPC;
			return NIL;
		}
	}
	if (p->cached != NIL && p->zs[p->cached].npages_cached == npages) {
		id = p->cached;     /* memory still there: no page faults */
		p->cached = NIL;
		p->zs[id].npages_cached = 0;
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
	z->used = z->tail = z->nobjs = 0;
	z->first_obj = z->last_obj = NIL;
	z->bucket = -1;
	z->bkt_prev = z->bkt_next = NIL;
	z->stamp = 0;
	lru_push_mru(p, id);
	p->pages_held += npages;
	p->st.zspages++;
	p->st.pool_bytes += (uint64_t)npages * UZS_PAGE_SIZE;
	return id;
}

/* Give an empty zspage's pages back to the OS at once. */
static void zspage_release(struct uzs_pool *p, uint32_t id)
{
	struct zspage *z = &p->zs[id];
	unsigned npages = z->npages;

	bucket_remove(p, id);
	if (!(z->flags & ZS_ISOLATED))
		lru_unlink(p, id);
	else
		p->st.evicted_pages_freed += npages;
	if (p->mru == id)
		p->mru = NIL;
	z->npages = 0;
	z->flags = 0;
	z->generation++;
	p->pages_held -= npages;
	p->st.zspages--;
	p->st.pool_bytes -= (uint64_t)npages * UZS_PAGE_SIZE;
	if (p->cached == NIL) {
		/* Keep one empty zspage's memory (8 KiB at most): a pool that
		 * hovers at a zspage boundary would otherwise pay a discard and
		 * fresh page faults every time it crosses it. */
		p->cached = id;
		z->npages_cached = (uint8_t)npages;
		return;
	}
	uzs_region_discard(zs_base(p, id), (size_t)npages * UZS_PAGE_SIZE);
	slot_give(p, id, npages);
}

/* Slide objects down to merge the holes into one run at the tail. */
static void zspage_defrag(struct uzs_pool *p, uint32_t id)
{
	struct zspage *z = &p->zs[id];
	unsigned char *base = zs_base(p, id);
	uint32_t cursor = 0;

	for (uint32_t i = z->first_obj; i != NIL;) {
		struct handle_slot *s = slot_at(p, i);

		if (s->offset != cursor) {
			memmove(base + cursor, base + s->offset, obj_size(s->len));
			s->offset = (uint16_t)cursor;
		}
		cursor += obj_size(s->len);
		i = s->next;
	}
	z->tail = (uint16_t)cursor;
	p->st.defrags++;
}

/* Append slot idx (len, owner set) to zspage id, which has room. */
static void zspage_place(struct uzs_pool *p, uint32_t id, uint32_t idx)
{
	struct zspage *z = &p->zs[id];
	struct handle_slot *s = slot_at(p, idx);
	uint32_t size = obj_size(s->len), end = 0, next;

	s->zspage = id;
	z->used = (uint16_t)(z->used + size);
	z->nobjs++;
	if (zs_capacity(z) - z->tail < size) {
		/* No room at the tail: first a hole that fits (no copying),
		 * else slide everything down to merge the holes. */
		for (next = z->first_obj; next != NIL; next = slot_at(p, next)->next) {
			struct handle_slot *n = slot_at(p, next);

			if (n->offset - end >= size) {
				s->offset = (uint16_t)end;
				s->next = next;
				s->prev = n->prev;
				if (n->prev != NIL)
					slot_at(p, n->prev)->next = idx;
				else
					z->first_obj = idx;
				n->prev = idx;
				p->st.hole_fills++;
				return;
			}
			end = n->offset + obj_size(n->len);
		}
		zspage_defrag(p, id);
	}
	s->offset = z->tail;
	s->next = NIL;
	s->prev = z->last_obj;
	if (z->last_obj != NIL)
		slot_at(p, z->last_obj)->next = idx;
	else
		z->first_obj = idx;
	z->last_obj = idx;
	z->tail = (uint16_t)(z->tail + size);
}

/* Take slot idx out of its zspage's object list. */
static void zspage_unplace(struct uzs_pool *p, uint32_t idx)
{
	struct handle_slot *s = slot_at(p, idx);
	struct zspage *z = &p->zs[s->zspage];

	if (s->prev != NIL)
		slot_at(p, s->prev)->next = s->next;
	else
		z->first_obj = s->next;
	if (s->next != NIL) {
		slot_at(p, s->next)->prev = s->prev;
	} else {
		struct handle_slot *last;

		z->last_obj = s->prev;
		last = s->prev != NIL ? slot_at(p, s->prev) : NULL;
		z->tail = last ? (uint16_t)(last->offset + obj_size(last->len)) : 0;
	}
	z->used = (uint16_t)(z->used - obj_size(s->len));
	z->nobjs--;
}

static bool zspage_fits(const struct zspage *z, uint32_t size)
{
	return zs_free(z) >= size && z->nobjs < zs_max_objs(z);
}

/* ------------------------------------------------------------ public API */

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
	if (!p->arena || !p->zs)
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
	p->placement = UZS_PLACE_BEST_FIT;
	p->free_single = p->free_pair = NIL;
	p->lru_head = p->lru_tail = p->mru = p->cached = NIL;
	for (unsigned b = 0; b < NBUCKETS; b++)
		p->bucket_head[b] = NIL;
	p->handle_free = NIL;
	*out = p;
	return 0;
fail:
	uzs_region_unreserve(p->zs, (size_t)p->arena_pages * sizeof(struct zspage));
	uzs_region_unreserve(p->arena, (size_t)p->arena_pages * UZS_PAGE_SIZE);
	uzs_region_unreserve(p, sizeof(*p));
	return err;
}

void uzs_pool_destroy(struct uzs_pool *p)
{
	if (!p)
		return;
	for (uint32_t c = 0; c < HCHUNK_MAX && p->hchunk[c]; c++)
		uzs_region_unreserve(p->hchunk[c],
				     HCHUNK_SLOTS * sizeof(struct handle_slot));
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
	uint32_t size, id, idx;
	struct handle_slot *s;
	int err = 0;

	if (len == 0 || len > UZS_PAGE_SIZE || !src || !out)
		return -EINVAL;
	size = obj_size((uint32_t)len);

	pthread_mutex_lock(&p->lock);
	id = p->mru;
	if (id == NIL || !zspage_fits(&p->zs[id], size)) {
		id = find_room(p, size, NIL);
		if (id == NIL)
			id = zspage_new(p, size, &err);
		if (id == NIL)
			goto fail;
	}
	/* The handle last: a failure here must undo nothing but a fresh,
	 * still empty zspage. */
	err = handle_get(p, &idx);
	if (err) {
		if (p->zs[id].nobjs == 0)
			zspage_release(p, id);
		goto fail;
	}
	s = slot_at(p, idx);
	s->owner = owner;
	s->len = (uint16_t)len;
	zspage_place(p, id, idx);
	memcpy(zs_base(p, id) + s->offset, src, len);

	p->zs[id].stamp = ++p->clock;
	if (p->lru_head != id) {
		lru_unlink(p, id);
		lru_push_mru(p, id);
	}
	p->mru = id;
	bucket_update(p, id, true);
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

long uzs_pool_read(struct uzs_pool *p, uzs_handle_t h, void *dst,
		   size_t dst_len)
{
	struct handle_slot *s;
	long len = -EINVAL;

	if (!dst)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	s = handle_lookup(p, h);
	if (s && s->len <= dst_len) {
		memcpy(dst, zs_base(p, s->zspage) + s->offset, s->len);
		/* An evictor reading its batch is not a use. */
		if (!(p->zs[s->zspage].flags & ZS_ISOLATED))
			p->zs[s->zspage].flags |= ZS_REFERENCED;
		len = s->len;
	}
	pthread_mutex_unlock(&p->lock);
	return len;
}

int uzs_pool_free(struct uzs_pool *p, uzs_handle_t h)
{
	struct handle_slot *s;
	uint32_t id;

	pthread_mutex_lock(&p->lock);
	s = handle_lookup(p, h);
	if (!s) {
		pthread_mutex_unlock(&p->lock);
		return -EINVAL;
	}
	id = s->zspage;
	p->st.objects--;
	p->st.stored_bytes -= s->len;
	p->st.frees++;
	zspage_unplace(p, (uint32_t)(h - 1));
	handle_put(p, (uint32_t)(h - 1));
	if (p->zs[id].nobjs == 0)
		zspage_release(p, id);
	else if (id != p->mru)
		bucket_update(p, id, false);
	else
		bucket_update(p, id, true);
	pthread_mutex_unlock(&p->lock);
	return 0;
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
		len = s->len;
	pthread_mutex_unlock(&p->lock);
	return len;
}

int uzs_pool_evict_begin(struct uzs_pool *p, struct uzs_evict_batch *batch)
{
	uint32_t id, n = 0;
	uint64_t tries;

	pthread_mutex_lock(&p->lock);
	/* Each zspage is passed over at most once: its referenced bit clears. */
	for (tries = 0, id = p->lru_tail; id != NIL; tries++, id = p->lru_tail) {
		struct zspage *z = &p->zs[id];

		if (!(z->flags & ZS_REFERENCED) || tries >= p->st.zspages)
			break;
		z->flags &= (uint8_t)~ZS_REFERENCED;
		lru_unlink(p, id);
		lru_push_mru(p, id);
	}
	if (id == NIL) {
		pthread_mutex_unlock(&p->lock);
		return -ENOENT;
	}
	lru_unlink(p, id);
	bucket_remove(p, id);
	p->zs[id].flags |= ZS_ISOLATED;
	p->zs[id].flags &= (uint8_t)~ZS_REFERENCED;
	if (p->mru == id)
		p->mru = NIL;
	for (uint32_t i = p->zs[id].first_obj; i != NIL; i = slot_at(p, i)->next) {
		batch->entries[n].handle = (uzs_handle_t)i + 1;
		batch->entries[n].owner = slot_at(p, i)->owner;
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
		lru_push_mru(p, id);
		bucket_update(p, id, false);
	}
	pthread_mutex_unlock(&p->lock);
}

/* The zspage with the most free space that is worth emptying, or NIL. */
static uint32_t compact_source(struct uzs_pool *p)
{
	for (int w = BITMAP_WORDS - 1; w >= 0; w--) {
		uint64_t bits = p->bucket_bits[w];
		uint32_t id;

		if (!bits)
			continue;
		id = p->bucket_head[w * 64 + 63 - __builtin_clzll(bits)];
		/* Only zspages at most half full: emptying a fuller one copies
		 * more than a page's worth to free one page. */
		return p->zs[id].used * 2 <= zs_capacity(&p->zs[id]) ? id : NIL;
	}
	return NIL;
}

size_t uzs_pool_compact(struct uzs_pool *p)
{
	size_t released = 0;
	uint64_t moved = 0;
	uint32_t src;

	pthread_mutex_lock(&p->lock);
	while ((src = compact_source(p)) != NIL) {
		struct zspage *z = &p->zs[src];
		unsigned npages = z->npages;

		/* Off the buckets so it is never its own (or anyone's) target. */
		bucket_remove(p, src);
		z->flags |= ZS_ISOLATED;
		if (p->mru == src)
			p->mru = NIL;
		while (z->first_obj != NIL) {
			uint32_t idx = z->first_obj;
			struct handle_slot *s = slot_at(p, idx);
			uint32_t size = obj_size(s->len);
			uint32_t dst = find_room(p, size, src);
			unsigned char *from;

			if (dst == NIL)
				break;
			from = zs_base(p, src) + s->offset;
			zspage_unplace(p, idx);
			zspage_place(p, dst, idx);
			memcpy(zs_base(p, dst) + s->offset, from, s->len);
			bucket_update(p, dst, false);
			moved++;
		}
		z->flags &= (uint8_t)~ZS_ISOLATED;
		if (z->nobjs) {
			/* Nowhere left to put the rest: stop here.  The holes left
			 * behind are merged by the next defrag of this zspage. */
			bucket_update(p, src, false);
			break;
		}
		zspage_release(p, src);
		released += npages;
	}
	if (moved) {
		p->st.compactions++;
		p->st.compacted_objects += moved;
		p->st.compacted_pages_freed += released;
	}
	pthread_mutex_unlock(&p->lock);
	return released;
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
	out->metadata_bytes = p->st.metadata_bytes +
			      (uint64_t)p->arena_bump * sizeof(struct zspage);
	pthread_mutex_unlock(&p->lock);
}
