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

/* Verify one live zspage's fragment list; count its fragments in *frags. */
static int check_zspage(struct uzs_pool *p, uint32_t id, uint64_t *frags)
{
	const struct zspage *z = &p->zs[id];
	uint32_t end = 0, used = 0, n = 0, prev = NIL;

	for (uint32_t r = z->first; r != NIL; r = frag_at(p, r)->next) {
		const struct frag *f = frag_at(p, r);
		const struct handle_slot *s = slot_at(p, r >> 1);

		CHECK((r >> 1) < p->handles_hwm && n < zs_max_frags(z));
		CHECK(s->f[0].len >= 1 && slot_len(s) <= UZS_PAGE_SIZE);
		CHECK(f->len >= 1 && f->zspage == id && f->prev == prev);
		CHECK(f->offset >= end);
		end = f->offset + f->len;
		CHECK(end <= zs_capacity(z));
		used += f->len;
		prev = r;
		n++;
	}
	CHECK(z->last == prev && z->nfrags == n && n > 0);
	CHECK(z->used == used && z->dust <= zs_free(z));
	*frags += n;
	return 0;
bad:
	return -EUCLEAN;
}

/* Every live slot: sane fragments; totals into objs, bytes, frags, split. */
static int check_slots(struct uzs_pool *p, uint64_t *objs, uint64_t *bytes,
		       uint64_t *frags, uint64_t *split)
{
	for (uint32_t i = 0; i < p->handles_hwm; i++) {
		const struct handle_slot *s = slot_at(p, i);

		if (!s->f[0].len)
			continue;
		for (unsigned n = 0; n < 2; n++) {
			const struct frag *f = &s->f[n];

			if (!f->len)
				continue;
			CHECK(f->zspage < p->arena_bump && p->zs[f->zspage].npages);
			(*frags)++;
		}
		CHECK(slot_len(s) <= UZS_PAGE_SIZE);
		(*objs)++;
		*bytes += slot_len(s);
		*split += s->f[1].len != 0;
	}
	return 0;
bad:
	return -EUCLEAN;
}

/* Free space [offset, end) of zspage id lies between fragment prev (NIL:
 * the zspage's start) and the fragment after it: no fragment overlaps it. */
static int check_between(struct uzs_pool *p, uint32_t id, uint32_t prev,
			 uint32_t offset, uint32_t end)
{
	uint32_t next = p->zs[id].first;

	if (prev != NIL) {
		const struct frag *f = frag_at(p, prev);

		CHECK(f->len && f->zspage == id);
		CHECK(f->offset + f->len <= offset);
		next = f->next;
	}
	if (next != NIL)
		CHECK(frag_at(p, next)->offset >= end);
	return 0;
bad:
	return -EUCLEAN;
}

/* The cursor's holes lie in its zspage, in order, and hold no fragment. */
static int check_cursor(struct uzs_pool *p)
{
	const struct cursor *c = &p->cur;
	const struct zspage *z;
	uint32_t end = 0;

	if (c->zspage == NIL)
		return 0;
	z = &p->zs[c->zspage];
	CHECK(c->zspage < p->arena_bump && z->npages && z->bucket < 0);
	CHECK(!(z->flags & (ZS_ISOLATED | ZS_DRAINING)) && z->dust == 0);
	CHECK(c->at <= c->nholes && c->nholes <= ZSPAGE_MAX_FRAGS + 1);
	for (uint32_t i = c->at; i < c->nholes; i++) {
		const struct hole *h = &c->holes[i];

		CHECK(h->offset >= end && h->offset + h->len <= zs_capacity(z));
		end = h->offset + h->len;
		if (h->len)
			CHECK(!check_between(p, c->zspage, h->prev, h->offset, end));
	}
	return 0;
bad:
	return -EUCLEAN;
}

/* Known hole i is free space between the fragments it names, in a zspage
 * allocation may fill. */
static int check_hole(struct uzs_pool *p, uint32_t i)
{
	const struct recent_hole *h = &p->recent[i];
	const struct zspage *z = &p->zs[h->zspage];
	uint32_t end = h->offset + h->len;

	CHECK(h->zspage < p->arena_bump && z->npages && h->len >= MIN_SPLIT);
	CHECK(z->nfrags < zs_max_frags(z));
	CHECK(!(z->flags & (ZS_ISOLATED | ZS_DRAINING)));
	CHECK(h->zspage != p->cur.zspage && end <= zs_capacity(z));
	CHECK(!check_between(p, h->zspage, h->prev, h->offset, end));
	return 0;
bad:
	return -EUCLEAN;
}

/*
 * The known holes: each zspage's list holds sane holes, no two of which
 * overlap; the size classes hold exactly the same holes, each in the class
 * its length names; free records account for the rest.
 */
static int check_recent(struct uzs_pool *p)
{
	uint64_t listed = 0, sized = 0, nfree = 0;

	CHECK(p->nrecent <= p->recent_hwm && p->recent_hwm <= p->recent_cap);
	for (uint32_t id = 0; id < p->arena_bump; id++) {
		const struct zspage *z = &p->zs[id];

		if (!z->npages)
			continue;
		for (uint32_t i = z->holes, prev = NIL; i != NIL;
		     prev = i, i = p->recent[i].znext) {
			const struct recent_hole *h = &p->recent[i];

			CHECK(i < p->recent_hwm && listed++ < p->nrecent);
			CHECK(h->zspage == id && h->zprev == prev);
			CHECK(z->hole_ends &
			      hole_end_bit(z, h->offset + h->len));
			if (check_hole(p, i))
				goto bad;
			for (uint32_t k = z->holes; k != i; k = p->recent[k].znext) {
				const struct recent_hole *o = &p->recent[k];

				CHECK(o->offset >= h->offset + h->len ||
				      o->offset + o->len <= h->offset);
			}
		}
	}
	for (uint32_t c = 0; c < NHSIZES; c++) {
		bool bit = p->hsize_bits[c / 64] >> (c % 64) & 1;

		CHECK(bit == (p->hsize_head[c] != NIL));
		for (uint32_t i = p->hsize_head[c], prev = NIL; i != NIL;
		     prev = i, i = p->recent[i].snext) {
			CHECK(i < p->recent_hwm && sized++ < p->nrecent);
			CHECK(p->recent[i].zspage != NIL);
			CHECK(p->recent[i].sprev == prev);
			CHECK((p->recent[i].len >> HSIZE_SHIFT) == c);
		}
	}
	for (uint32_t i = p->recent_free; i != NIL; i = p->recent[i].snext) {
		CHECK(i < p->recent_hwm && nfree++ < p->recent_hwm);
		CHECK(p->recent[i].zspage == NIL);
	}
	CHECK(listed == p->nrecent && sized == p->nrecent);
	CHECK(nfree + p->nrecent == p->recent_hwm);
	return 0;
bad:
	return -EUCLEAN;
}

int uzs_pool_check(struct uzs_pool *p)
{
	uint64_t objs = 0, bytes = 0, zspages = 0, pages = 0, lru = 0;
	uint64_t frags = 0, slot_frags = 0, split = 0, free_slots = 0;
	int rc = -EUCLEAN;

	pthread_mutex_lock(&p->lock);
	for (uint32_t id = 0; id < p->arena_bump; id++) {
		const struct zspage *z = &p->zs[id];

		if (!z->npages)
			continue;
		CHECK(z->npages <= ZSPAGE_MAX_PAGES);
		CHECK(z->npages == 1 || id % 2 == 0);
		CHECK(!(z->flags & (ZS_FREE_SLOT | ZS_DRAINING)));
		if (check_zspage(p, id, &frags))
			goto bad;
		zspages++;
		pages += z->npages;
		/* In the bucket its unswept space names iff it is a target. */
		if ((z->flags & ZS_ISOLATED) || id == p->cur.zspage ||
		    z->nfrags >= zs_max_frags(z) || zs_unswept(z) < SWEEP_MIN)
			CHECK(z->bucket < 0);
		else
			CHECK(z->bucket == (int)(zs_unswept(z) >> BUCKET_SHIFT));
		if (z->npages == 2)
			id++;
	}
	if (check_slots(p, &objs, &bytes, &slot_frags, &split) ||
	    check_cursor(p) || check_recent(p))
		goto bad;
	CHECK(frags == slot_frags && split == p->st.split_objects);
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
	/* Kept empty zspages: no live zspage, on no free list, counted. */
	{
		uint32_t nkept = 0;

		for (unsigned k = 0; k < ZSPAGE_MAX_PAGES; k++)
			for (uint32_t id = p->kept[k]; id != NIL;
			     id = p->zs[id].bkt_next) {
				CHECK(nkept++ < EMPTY_KEPT_MAX);
				CHECK(!p->zs[id].npages &&
				      p->zs[id].npages_kept == k + 1 &&
				      !(p->zs[id].flags & ZS_FREE_SLOT));
			}
		CHECK(nkept == p->nkept);
	}
	/* Handle free list: free slots only, and it accounts for the rest. */
	{
		uint64_t nfree = 0;

		for (uint32_t i = p->handle_free; i != NIL;
		     i = slot_at(p, i)->f[0].next) {
			CHECK(i < p->handles_hwm && nfree <= p->handles_hwm);
			CHECK(slot_at(p, i)->f[0].len == 0);
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
	if (h != 0 && h <= p->handles_hwm &&
	    slot_at(p, (uint32_t)(h - 1))->f[0].len)
		id = slot_at(p, (uint32_t)(h - 1))->f[0].zspage;
	pthread_mutex_unlock(&p->lock);
	return id;
}

unsigned uzs_pool_fragments_of(struct uzs_pool *p, uzs_handle_t h,
			       uint32_t zspage[2], uint32_t offset[2])
{
	const struct handle_slot *s;
	unsigned n = 0;

	pthread_mutex_lock(&p->lock);
	if (h != 0 && h <= p->handles_hwm) {
		s = slot_at(p, (uint32_t)(h - 1));
		for (; n < 2 && s->f[n].len; n++) {
			if (zspage)
				zspage[n] = s->f[n].zspage;
			if (offset)
				offset[n] = s->f[n].offset;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return n;
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
