/*
 * pool_check.c - read-only inspection of a pool: the invariant checker for
 * tests, and small accessors for tests, benchmarks and the engine.  Nothing
 * here mutates a pool.
 */
#include "config.h"

#include <errno.h>

#include "pool_layout.h"

#define CHECK(cond)                                                       \
	do {                                                              \
		if (!(cond))                                              \
			goto bad;                                         \
	} while (0)

/* Verify one live zspage's object list; add its totals to objs, bytes. */
static int check_zspage(struct uzs_pool *p, uint32_t id, uint64_t *objs,
			uint64_t *bytes)
{
	const struct zspage *z = &p->zs[id];
	uint32_t end = 0, used = 0, n = 0, prev = NIL;

	for (uint32_t i = z->first_obj; i != NIL; i = slot_at(p, i)->next) {
		const struct handle_slot *s = slot_at(p, i);

		CHECK(i < p->handles_hwm && n < zs_max_objs(z));
		CHECK(s->len >= 1 && s->len <= UZS_PAGE_SIZE);
		CHECK(s->zspage == id && s->prev == prev);
		CHECK(s->offset >= end && s->offset % OBJ_ALIGN == 0);
		end = s->offset + obj_size(s->len);
		CHECK(end <= zs_capacity(z));
		used += obj_size(s->len);
		*bytes += s->len;
		prev = i;
		n++;
	}
	CHECK(z->last_obj == prev && z->nobjs == n && n > 0);
	CHECK(z->used == used && z->tail == end);
	*objs += n;
	return 0;
bad:
	return -EUCLEAN;
}

int uzs_pool_check(struct uzs_pool *p)
{
	uint64_t objs = 0, bytes = 0, zspages = 0, pages = 0, lru = 0;
	uint64_t free_slots = 0;
	int rc = -EUCLEAN;

	pthread_mutex_lock(&p->lock);
	for (uint32_t id = 0; id < p->arena_bump; id++) {
		const struct zspage *z = &p->zs[id];

		if (!z->npages)
			continue;
		CHECK(z->npages <= ZSPAGE_MAX_PAGES);
		CHECK(z->npages == 1 || id % 2 == 0);
		CHECK(!(z->flags & ZS_FREE_SLOT));
		if (check_zspage(p, id, &objs, &bytes))
			goto bad;
		zspages++;
		pages += z->npages;
		/* In the bucket its free space names, unless it has no room. */
		if (z->flags & ZS_ISOLATED)
			CHECK(z->bucket < 0);
		else if (zs_free(z) >= OBJ_ALIGN && z->nobjs < zs_max_objs(z))
			CHECK(z->bucket == (int)(zs_free(z) >> BUCKET_SHIFT));
		else
			CHECK(z->bucket < 0);
		if (z->npages == 2)
			id++;
	}
	CHECK(objs == p->st.objects && bytes == p->st.stored_bytes);
	CHECK(zspages == p->st.zspages && pages == p->pages_held);
	CHECK(pages * UZS_PAGE_SIZE == p->st.pool_bytes);
	CHECK(p->pages_held <= p->max_pages);

	/* LRU: doubly linked, live non-isolated zspages only. */
	for (uint32_t id = p->lru_head, prev = NIL; id != NIL;
	     prev = id, id = p->zs[id].lru_next) {
		CHECK(lru <= zspages && p->zs[id].npages);
		CHECK(p->zs[id].lru_prev == prev);
		CHECK(!(p->zs[id].flags & ZS_ISOLATED));
		lru++;
		if (p->zs[id].lru_next == NIL)
			CHECK(p->lru_tail == id);
	}
	/* Buckets: members agree with the bitmap and their own bucket field. */
	for (uint32_t b = 0; b < NBUCKETS; b++) {
		bool bit = p->bucket_bits[b / 64] >> (b % 64) & 1;

		CHECK(bit == (p->bucket_head[b] != NIL));
		for (uint32_t id = p->bucket_head[b], n = 0; id != NIL;
		     id = p->zs[id].bkt_next, n++) {
			CHECK(n <= zspages && p->zs[id].bucket == (int)b);
		}
	}
	/* Free arena slots: singles are flagged, pairs are even. */
	for (uint32_t id = p->free_single; id != NIL; id = p->zs[id].bkt_next) {
		CHECK(free_slots++ <= p->arena_bump);
		CHECK((p->zs[id].flags & ZS_FREE_SLOT) && !p->zs[id].npages);
		CHECK(!(p->zs[id ^ 1u].flags & ZS_FREE_SLOT));
	}
	for (uint32_t id = p->free_pair; id != NIL; id = p->zs[id].bkt_next) {
		CHECK(free_slots++ <= p->arena_bump);
		CHECK(id % 2 == 0 && !p->zs[id].npages && !p->zs[id + 1].npages);
	}
	/* The cached empty zspage: no live zspage, on no free list. */
	if (p->cached != NIL)
		CHECK(!p->zs[p->cached].npages && p->zs[p->cached].npages_cached &&
		      !(p->zs[p->cached].flags & ZS_FREE_SLOT));
	/* Handle free list: free slots only, and it accounts for the rest. */
	{
		uint64_t nfree = 0;

		for (uint32_t i = p->handle_free; i != NIL; i = slot_at(p, i)->next) {
			CHECK(i < p->handles_hwm && nfree <= p->handles_hwm);
			CHECK(slot_at(p, i)->len == 0);
			nfree++;
		}
		CHECK(nfree + objs == p->handles_hwm);
	}
	rc = 0;
bad:
	pthread_mutex_unlock(&p->lock);
	return rc;
}

size_t uzs_pool_lru_order(struct uzs_pool *p, uint32_t *ids, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&p->lock);
	for (uint32_t id = p->lru_tail; id != NIL && n < max;
	     id = p->zs[id].lru_prev)
		ids[n++] = id;
	pthread_mutex_unlock(&p->lock);
	return n;
}

uint32_t uzs_pool_zspage_of(struct uzs_pool *p, uzs_handle_t h)
{
	uint32_t id = NIL;

	pthread_mutex_lock(&p->lock);
	if (h != 0 && h <= p->handles_hwm && slot_at(p, (uint32_t)(h - 1))->len)
		id = slot_at(p, (uint32_t)(h - 1))->zspage;
	pthread_mutex_unlock(&p->lock);
	return id;
}

unsigned uzs_pool_zspage_pages(struct uzs_pool *p, uint32_t id)
{
	unsigned n = 0;

	pthread_mutex_lock(&p->lock);
	if (id < p->arena_bump)
		n = p->zs[id].npages;
	pthread_mutex_unlock(&p->lock);
	return n;
}

uint64_t uzs_pool_held_bytes(struct uzs_pool *p)
{
	uint64_t bytes;

	pthread_mutex_lock(&p->lock);
	bytes = p->st.pool_bytes;
	pthread_mutex_unlock(&p->lock);
	return bytes;
}
