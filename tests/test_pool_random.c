/*
 * test_pool_random.c - long randomized operation sequences (fixed seeds, so a
 * failure replays exactly) checked against a reference model.
 *
 * The model is the array of {handle, len, tag, owner} of pool_testlib.h plus
 * a model of the zspages: which zspages each object is in (one, or two for
 * an object split across zspages), how many objects have a fragment in each
 * zspage, its pages, its second-chance bit, and the LRU order (a store
 * makes the head's zspage, then the tail's, most recently used).
 * From that it predicts, exactly: pool_bytes, zspages, the LRU order, which
 * zspage evict_begin takes and what its batch holds, and when a zspage is
 * released.  Every read compares the whole object; every 10000 operations
 * every live object is read back and uzs_pool_check() runs.
 *
 * 24 sequences cover every (size distribution, zspage_pages 0/1/2,
 * placement) combination; 8 more run against a small max_bytes so that
 * allocations fail and eviction makes room.  About 1.07 million operations
 * in all.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_testlib.h"

enum dist { D_UNIFORM, D_SMALL, D_LARGE, D_REAL };

static const uint32_t edge_lens[] = { 1, 2, 7, 8, 9, 15, 16, 17, 56, 1024, 1025,
				      2048, 3072, 4087, 4088, 4089, 4095, 4096 };

static uint32_t draw_len(uint64_t *st, enum dist d)
{
	uint64_t r = tu_rand(st) % 1000;

	if (r < 15)
		return edge_lens[tu_rand(st) % (sizeof(edge_lens) / sizeof(edge_lens[0]))];
	r = tu_rand(st) % 100;
	switch (d) {
	case D_UNIFORM:
		return (uint32_t)tu_range(st, 1, PG);
	case D_SMALL:   /* mostly tiny: many objects per zspage */
		if (r < 60)
			return (uint32_t)tu_range(st, 1, 128);
		if (r < 90)
			return (uint32_t)tu_range(st, 129, 512);
		return (uint32_t)tu_range(st, 513, PG);
	case D_LARGE:   /* mostly near a page: few per zspage, straddling */
		if (r < 15)
			return PG;
		if (r < 65)
			return (uint32_t)tu_range(st, 3072, PG);
		if (r < 90)
			return (uint32_t)tu_range(st, 2048, 3071);
		return (uint32_t)tu_range(st, 1, 2047);
	case D_REAL:    /* LZO output of swapped pages: peaks at 1-2.6 KiB */
		if (r < 8)
			return (uint32_t)tu_range(st, 20, 120);
		if (r < 30)
			return (uint32_t)tu_range(st, 121, 1200);
		if (r < 80)
			return (uint32_t)tu_range(st, 1201, 2600);
		if (r < 97)
			return (uint32_t)tu_range(st, 2601, 3072);
		return (uint32_t)tu_range(st, 3073, PG);
	}
	return 1;
}

/* ---------------------------------------------------- the zspage model */

struct zmodel {
	uint32_t cap;
	uint32_t *cnt;          /* live objects (model) per zspage id */
	uint8_t *pages;         /* pages of a live zspage */
	uint8_t *ref;           /* read since it last came up for eviction */
	uint8_t *iso;           /* isolated by an eviction in progress */
	uint8_t *onlru;
	uint32_t *prev, *next;  /* LRU: head = most recently used */
	uint32_t head, tail;
	uint64_t lru_len, zspages, pool_pages;
};

#define ZNIL UINT32_MAX

static void zm_grow(struct zmodel *z, uint32_t id)
{
	uint32_t nc = z->cap ? z->cap : 256;

	cr_assert_lt(id, 1u << 26, "absurd zspage id %u", id);
	if (id < z->cap)
		return;
	while (nc <= id)
		nc *= 2;
#define GROW(f)                                                              \
	do {                                                                 \
		z->f = realloc(z->f, (size_t)nc * sizeof(*z->f));            \
		cr_assert_not_null(z->f);                                    \
		memset(z->f + z->cap, 0, (size_t)(nc - z->cap) * sizeof(*z->f)); \
	} while (0)
	GROW(cnt);
	GROW(pages);
	GROW(ref);
	GROW(iso);
	GROW(onlru);
	GROW(prev);
	GROW(next);
#undef GROW
	z->cap = nc;
}

static void zm_free(struct zmodel *z)
{
	free(z->cnt);
	free(z->pages);
	free(z->ref);
	free(z->iso);
	free(z->onlru);
	free(z->prev);
	free(z->next);
}

static void zm_unlink(struct zmodel *z, uint32_t id)
{
	cr_assert(z->onlru[id]);
	if (z->prev[id] != ZNIL)
		z->next[z->prev[id]] = z->next[id];
	else
		z->head = z->next[id];
	if (z->next[id] != ZNIL)
		z->prev[z->next[id]] = z->prev[id];
	else
		z->tail = z->prev[id];
	z->onlru[id] = 0;
	z->lru_len--;
}

static void zm_push_mru(struct zmodel *z, uint32_t id)
{
	cr_assert(!z->onlru[id]);
	z->prev[id] = ZNIL;
	z->next[id] = z->head;
	if (z->head != ZNIL)
		z->prev[z->head] = id;
	else
		z->tail = id;
	z->head = id;
	z->onlru[id] = 1;
	z->lru_len++;
}

/* ------------------------------------------------------------ a run */

struct run {
	struct uzs_pool *p;
	struct tl_model m;
	struct zmodel z;
	uint64_t st;
	uint64_t tagc;
	size_t max_bytes;
	unsigned zp;
	enum dist dist;
	uint32_t *ids;          /* scratch for uzs_pool_lru_order */
	size_t ids_cap;
	/* the eviction in progress, if any */
	bool evicting;
	bool ev_released;       /* its zspage went (the id may be reused) */
	uint32_t ev_z;
	uint64_t ev_tags[UZS_POOL_MAX_ZSPAGE_OBJS];
	unsigned ev_n;
	uint64_t ops_alloc, ops_free, ops_read, ops_compact, ops_evict, enospc;
};

/* The distinct zspages of a live object, head's first; returns 1 or 2. */
static unsigned zspages_now(struct run *r, uzs_handle_t h, uint32_t ids[2])
{
	unsigned n = uzs_pool_fragments_of(r->p, h, ids, NULL);

	cr_assert(n == 1 || n == 2, "live handle %llu has %u fragments",
		  (unsigned long long)h, n);
	if (n == 2 && ids[1] == ids[0])
		n = 1;
	if (n == 1)
		ids[1] = ZNIL;
	cr_assert_eq(uzs_pool_zspage_of(r->p, h), ids[0]);
	return n;
}

/* Its zspages have not changed since the model last looked. */
static void expect_in_place(struct run *r, const struct tl_obj *o)
{
	uint32_t ids[2];

	zspages_now(r, o->h, ids);
	cr_assert(ids[0] == o->zs && ids[1] == o->zs2, "object moved to "
		  "another zspage outside compaction");
}

/* A zspage lost its last object: it must be gone from the pool at once. */
static void zspage_gone(struct run *r, uint32_t id)
{
	struct zmodel *z = &r->z;

	if (z->onlru[id])
		zm_unlink(z, id);
	if (z->iso[id]) {
		r->m.evicted_pages += z->pages[id];
		z->iso[id] = 0;
		cr_assert(r->evicting && id == r->ev_z);
		r->ev_released = true;
	}
	z->ref[id] = 0;
	z->zspages--;
	z->pool_pages -= z->pages[id];
	z->pages[id] = 0;
}

/* A fragment of a new object went into zspage id (maybe a fresh one). */
static void store_into(struct run *r, uint32_t id)
{
	struct zmodel *z = &r->z;

	zm_grow(z, id);
	cr_assert(!z->iso[id], "alloc landed in isolated zspage %u", id);
	if (z->cnt[id] == 0) {
		unsigned pages = uzs_pool_zspage_pages(r->p, id);

		/* A fresh zspage, of the configured size unless the limit
		 * only left room for one page. */
		cr_assert(pages == 1 || pages == 2, "new zspage of %u pages", pages);
		if (r->zp == 1)
			cr_assert_eq(pages, 1);
		if (r->zp == 2 && pages == 1)
			cr_assert(r->max_bytes &&
				  (z->pool_pages + 2) * PG > r->max_bytes,
				  "1-page zspage in a 2-page pool with room");
		cr_assert(!z->onlru[id]);
		z->pages[id] = (uint8_t)pages;
		z->ref[id] = 0;
		z->zspages++;
		z->pool_pages += pages;
		zm_push_mru(z, id);
	} else {
		/* Storing into a zspage makes it the most recently used. */
		zm_unlink(z, id);
		zm_push_mru(z, id);
	}
	z->cnt[id]++;
	if (r->max_bytes)
		cr_assert_leq(z->pool_pages * PG, r->max_bytes);
	if (r->evicting && !r->ev_released)
		cr_assert_neq(id, r->ev_z, "alloc landed in the zspage being evicted");
}

/* A read marks the object's zspages, unless one is being evicted (then it
 * is the evictor's read). */
static void mark_read(struct run *r, const struct tl_obj *o)
{
	uint32_t ids[2] = { o->zs, o->zs2 };

	if (r->evicting && !r->ev_released &&
	    (ids[0] == r->ev_z || ids[1] == r->ev_z))
		return;
	for (unsigned k = 0; k < 2 && ids[k] != ZNIL; k++)
		r->z.ref[ids[k]] = 1;
}

static void alloc_len(struct run *r, uint32_t len)
{
	uint32_t ids[2];
	uint64_t owner;
	struct tl_obj *o;
	unsigned nz;
	int rc;

	switch (tu_rand(&r->st) % 16) {
	case 0: owner = 0; break;
	case 1: owner = UINT64_MAX; break;
	default: owner = tu_rand(&r->st); break;
	}
	r->ops_alloc++;
	rc = tl_model_alloc(r->p, &r->m, len, ++r->tagc, owner,
			    r->max_bytes != 0 && tu_rand(&r->st) % 4 == 0);
	if (rc) {
		cr_assert(r->max_bytes, "unlimited pool refused an alloc");
		r->enospc++;
		return;
	}
	o = &r->m.o[r->m.n - 1];
	nz = zspages_now(r, o->h, ids);
	o->zs = ids[0];
	o->zs2 = ids[1];
	for (unsigned k = 0; k < nz; k++)
		store_into(r, ids[k]);
	if (tu_rand(&r->st) % 8 == 0) {
		tl_model_expect_at(r->p, &r->m, r->m.n - 1);
		mark_read(r, o);
	}
}

static void free_at(struct run *r, size_t i)
{
	struct zmodel *z = &r->z;
	uzs_handle_t h = r->m.o[i].h;
	uint32_t ids[2] = { r->m.o[i].zs, r->m.o[i].zs2 };
	struct uzs_pool_stats before;
	bool check_bytes = tu_rand(&r->st) % 8 == 0;

	expect_in_place(r, &r->m.o[i]);
	if (check_bytes)
		uzs_pool_stats(r->p, &before);
	r->ops_free++;
	tl_model_free_at(r->p, &r->m, i);
	for (unsigned k = 0; k < 2 && ids[k] != ZNIL; k++)
		if (--z->cnt[ids[k]] == 0)
			zspage_gone(r, ids[k]);
	if (check_bytes) {
		struct uzs_pool_stats after = tl_stats(r->p);

		cr_assert_eq(after.pool_bytes, z->pool_pages * PG,
			     "pool_bytes %llu after a free, model %llu",
			     (unsigned long long)after.pool_bytes,
			     (unsigned long long)(z->pool_pages * PG));
		cr_assert_eq(after.zspages, z->zspages);
		cr_assert_leq(after.pool_bytes, before.pool_bytes);
	}
	/* Sometimes free it again, and look it up: it is gone. */
	if (tu_rand(&r->st) % 16 == 0) {
		unsigned char buf[PG];
		uint64_t owner;

		cr_assert_eq(uzs_pool_free(r->p, h), -EINVAL, "double free accepted");
		cr_assert_eq(uzs_pool_read(r->p, h, buf, sizeof(buf)), -EINVAL);
		cr_assert_eq(uzs_pool_owner(r->p, h, &owner), -EINVAL);
		cr_assert_eq(uzs_pool_length(r->p, h), -EINVAL);
	}
}

static void read_at(struct run *r, size_t i)
{
	const struct tl_obj *o = &r->m.o[i];
	unsigned char buf[PG];

	r->ops_read++;
	expect_in_place(r, o);
	switch (tu_rand(&r->st) % 8) {
	case 0:
		/* Exactly its size is enough; one byte less is refused. */
		cr_assert_eq(uzs_pool_read(r->p, o->h, buf, o->len), (long)o->len);
		tl_expect_bytes(buf, o->len, o->tag, o->h);
		cr_assert_eq(uzs_pool_read(r->p, o->h, buf, o->len - 1), -EINVAL);
		break;
	default:
		tl_model_expect_at(r->p, &r->m, i);
		break;
	}
	mark_read(r, o);    /* an isolated zspage is not marked */
}

/* Recompute where every object is after compaction moved some. */
static void do_compact(struct run *r)
{
	struct zmodel *z = &r->z;
	struct uzs_pool_stats a = tl_stats(r->p), b;
	uint64_t changed = 0, released_pages = 0;
	size_t released;
	uint32_t *old_cnt;

	r->ops_compact++;
	released = uzs_pool_compact(r->p);
	b = tl_stats(r->p);
	r->m.compacted_pages += released;
	cr_assert_eq(b.pool_bytes, a.pool_bytes - released * PG);
	cr_assert_eq(b.compacted_pages_freed, a.compacted_pages_freed + released);
	cr_assert_eq(b.objects, a.objects);
	cr_assert_eq(b.stored_bytes, a.stored_bytes);
	cr_assert_eq(b.allocs, a.allocs);
	cr_assert_eq(b.frees, a.frees);
	cr_assert_eq(b.evicted_pages_freed, a.evicted_pages_freed);
	if (b.compacted_objects == a.compacted_objects) {
		cr_assert_eq(b.compactions, a.compactions);
		cr_assert_eq(released, 0);
	} else {
		cr_assert_eq(b.compactions, a.compactions + 1);
	}
	old_cnt = malloc((size_t)z->cap * sizeof(*old_cnt));
	cr_assert_not_null(old_cnt);
	memcpy(old_cnt, z->cnt, (size_t)z->cap * sizeof(*old_cnt));
	memset(z->cnt, 0, (size_t)z->cap * sizeof(*z->cnt));
	for (size_t i = 0; i < r->m.n; i++) {
		struct tl_obj *o = &r->m.o[i];
		uint32_t ids[2];
		unsigned nz = zspages_now(r, o->h, ids);

		if (ids[0] != o->zs || ids[1] != o->zs2) {
			changed++;
			cr_assert(!z->iso[o->zs] &&
				  (o->zs2 == ZNIL || !z->iso[o->zs2]),
				  "compaction moved an object out of an isolated "
				  "zspage");
		}
		for (unsigned k = 0; k < nz; k++) {
			cr_assert_lt(ids[k], z->cap);
			cr_assert(old_cnt[ids[k]] > 0, "compaction moved an "
				  "object into zspage %u, which was not live",
				  ids[k]);
			if (ids[k] != o->zs && ids[k] != o->zs2)
				cr_assert(!z->iso[ids[k]], "compaction moved an "
					  "object into an isolated zspage");
			z->cnt[ids[k]]++;
		}
		o->zs = ids[0];
		o->zs2 = ids[1];
	}
	for (uint32_t id = 0; id < z->cap; id++) {
		if (old_cnt[id] && !z->cnt[id]) {
			cr_assert(!z->iso[id]);
			released_pages += z->pages[id];
			zspage_gone(r, id);
		}
	}
	free(old_cnt);
	cr_assert_eq(released_pages, released, "compact returned %zu, model "
		     "saw %llu pages go", released, (unsigned long long)released_pages);
	cr_assert_leq(changed, b.compacted_objects - a.compacted_objects);
	cr_assert_eq(b.pool_bytes, z->pool_pages * PG);
	tl_check(r->p);
}

static void compare_lru(struct run *r)
{
	struct zmodel *z = &r->z;
	size_t n;
	uint32_t id = z->tail;

	if (r->ids_cap < z->lru_len + 16) {
		r->ids_cap = (z->lru_len + 16) * 2;
		r->ids = realloc(r->ids, r->ids_cap * sizeof(*r->ids));
		cr_assert_not_null(r->ids);
	}
	n = uzs_pool_lru_order(r->p, r->ids, r->ids_cap);
	cr_assert_eq(n, z->lru_len, "LRU holds %zu zspages, model %llu", n,
		     (unsigned long long)z->lru_len);
	for (size_t i = 0; i < n; i++, id = z->prev[id])
		cr_assert_eq(r->ids[i], id, "LRU position %zu (coldest first): "
			     "zspage %u, model %u", i, r->ids[i], id);
}

static void random_op(struct run *r, size_t target, bool no_evict);

static void do_evict(struct run *r)
{
	struct zmodel *z = &r->z;
	struct uzs_evict_batch b;
	uint32_t want;
	int rc, mode;
	unsigned pages, interleave;

	r->ops_evict++;
	compare_lru(r);
	memset(&b, 0xa5, sizeof(b));
	rc = uzs_pool_evict_begin(r->p, &b);
	if (r->m.n == 0) {
		cr_assert_eq(rc, -ENOENT, "evict_begin on an empty pool: %d", rc);
		return;
	}
	cr_assert_gt(rc, 0, "evict_begin with %zu objects live: %d", r->m.n, rc);
	r->m.evictions++;
	/* Predict: coldest first, read zspages get one more round. */
	for (uint64_t tries = 0; tries < z->lru_len && z->ref[z->tail]; tries++) {
		uint32_t t = z->tail;

		z->ref[t] = 0;
		zm_unlink(z, t);
		zm_push_mru(z, t);
	}
	want = z->tail;
	cr_assert_eq(b.zspage, want, "evict_begin took zspage %u, model says %u",
		     b.zspage, want);
	zm_unlink(z, want);
	z->ref[want] = 0;
	z->iso[want] = 1;
	pages = z->pages[want];
	/* The batch is exactly the zspage's live objects. */
	cr_assert_eq(b.count, (unsigned)rc);
	cr_assert_eq(b.count, z->cnt[want], "batch of %u, zspage holds %u",
		     b.count, z->cnt[want]);
	for (unsigned j = 0; j < b.count; j++) {
		long i = tl_model_find(&r->m, b.entries[j].handle);

		cr_assert_geq(i, 0, "batch names dead handle %llu",
			      (unsigned long long)b.entries[j].handle);
		cr_assert(r->m.o[i].zs == want || r->m.o[i].zs2 == want,
			  "batch names an object of "
			     "another zspage");
		cr_assert_eq(b.entries[j].owner, r->m.o[i].owner);
		for (unsigned k = 0; k < j; k++)
			cr_assert_neq(b.entries[k].handle, b.entries[j].handle);
		r->ev_tags[j] = r->m.o[i].tag;
	}
	r->evicting = true;
	r->ev_released = false;
	r->ev_z = want;
	r->ev_n = b.count;
	compare_lru(r);
	if (tu_rand(&r->st) % 4 == 0)
		tl_check(r->p);

	/* Others go on meanwhile; sometimes they free a batch object. */
	interleave = (unsigned)(tu_rand(&r->st) % 12);
	for (unsigned k = 0; k < interleave; k++) {
		if (tu_rand(&r->st) % 4 == 0) {
			unsigned j = (unsigned)(tu_rand(&r->st) % b.count);
			long i = tl_model_find(&r->m, b.entries[j].handle);

			if (i >= 0 && r->m.o[i].tag == r->ev_tags[j])
				free_at(r, (size_t)i);
		} else {
			random_op(r, r->m.stored, true);
		}
	}

	/* The evictor: write back all, some or none. */
	mode = (int)(tu_rand(&r->st) % 10);
	for (unsigned j = 0; j < b.count; j++) {
		uzs_handle_t h = b.entries[j].handle;
		long i = tl_model_find(&r->m, h);

		if (i < 0) {
			/* Freed by someone else: the pool refuses it. */
			cr_assert_eq(uzs_pool_free(r->p, h), -EINVAL);
			continue;
		}
		if (r->m.o[i].tag != r->ev_tags[j])
			continue;   /* freed and the handle reused: not ours */
		tl_model_expect_at(r->p, &r->m, (size_t)i);
		if (mode < 5 || (mode < 8 && tu_rand(&r->st) % 2)) {
			uint64_t before = tl_stats(r->p).pool_bytes;
			bool last = z->cnt[want] == 1;

			cr_assert(!r->ev_released);

			free_at(r, (size_t)i);
			if (last) {
				/* Its pages, and those of a zspage that only
				 * held the freed object's other half. */
				uint64_t after = tl_stats(r->p).pool_bytes;

				cr_assert(r->ev_released);
				cr_assert_eq(uzs_pool_zspage_pages(r->p, want), 0);
				cr_assert_eq(after, z->pool_pages * PG);
				cr_assert_leq(after, before - pages * PG,
					      "last free of an evicted zspage did "
					      "not release its %u pages", pages);
			}
		}
	}
	/* A released zspage's ticket is stale: evict_end must leave alone a
	 * new zspage that reuses the id (compare_lru checks that). */
	uzs_pool_evict_end(r->p, &b);
	r->evicting = false;
	if (!r->ev_released) {
		/* What is left goes back as the most recently used. */
		cr_assert(z->iso[want] && z->cnt[want]);
		z->iso[want] = 0;
		zm_push_mru(z, want);
	}
	compare_lru(r);
}

static void random_op(struct run *r, size_t target, bool no_evict)
{
	uint64_t x = tu_rand(&r->st) % 1000;
	bool grow = r->m.stored < target;
	uint64_t p_alloc = grow ? 550 : 200, p_free = grow ? 150 : 450;

	if (x < 2 && !no_evict) {
		do_compact(r);
	} else if (x < 4 && !no_evict) {
		do_evict(r);
	} else if (x < 4 + p_alloc || r->m.n == 0) {
		alloc_len(r, draw_len(&r->st, r->dist));
	} else if (x < 4 + p_alloc + p_free) {
		free_at(r, tu_rand(&r->st) % r->m.n);
	} else {
		read_at(r, tu_rand(&r->st) % r->m.n);
	}
}

/* Read back everything (which marks every zspage read), check, compare. */
static void verify_all(struct run *r)
{
	tl_model_verify_all(r->p, &r->m, r->max_bytes);
	for (uint32_t id = 0; id < r->z.cap; id++)
		if (r->z.cnt[id] &&
		    !(r->evicting && !r->ev_released && id == r->ev_z))
			r->z.ref[id] = 1;
	cr_assert_eq(tl_stats(r->p).pool_bytes, r->z.pool_pages * PG);
	cr_assert_eq(tl_stats(r->p).zspages, r->z.zspages);
	compare_lru(r);
}

struct rparams {
	enum dist dist;
	unsigned zp;
	enum uzs_placement pl;
	size_t max_bytes;
	uint64_t seed;
	unsigned ops;
};

static void run_random(const struct rparams *rp)
{
	struct run r;
	size_t target = 0;

	memset(&r, 0, sizeof(r));
	r.p = tl_pool(rp->max_bytes, rp->zp);
	uzs_pool_set_placement(r.p, rp->pl);
	tl_model_init(&r.m);
	r.z.head = r.z.tail = ZNIL;
	r.st = rp->seed;
	r.tagc = rp->seed << 32;
	r.max_bytes = rp->max_bytes;
	r.zp = rp->zp;
	r.dist = rp->dist;

	for (unsigned op = 0; op < rp->ops; op++) {
		if (op % 20000 == 0) {
			/* A phase: grow towards a target, or drain. */
			static const size_t targets[] = { 0, 64 << 10, 512 << 10,
							  2 << 20, 5 << 20 };

			target = targets[tu_rand(&r.st) % 5];
			if (rp->max_bytes)
				target = rp->max_bytes * 2;
		}
		if (r.max_bytes && r.m.n && tu_rand(&r.st) % 64 == 0 &&
		    r.z.pool_pages * PG + 2 * PG > r.max_bytes)
			do_evict(&r);   /* a full pool makes room */
		else
			random_op(&r, target, false);
		if (op % 1000 == 999) {
			tl_check(r.p);
			tl_model_stats(r.p, &r.m, r.max_bytes);
			cr_assert_eq(tl_stats(r.p).pool_bytes, r.z.pool_pages * PG);
			cr_assert_eq(tl_stats(r.p).zspages, r.z.zspages);
			compare_lru(&r);
		}
		if (op % 10000 == 9999)
			verify_all(&r);
	}
	verify_all(&r);
	cr_assert_gt(r.ops_alloc, rp->ops / 5);
	cr_assert_gt(r.ops_free, rp->ops / 10);
	cr_assert_gt(r.ops_read, rp->ops / 10);
	cr_assert_gt(r.ops_compact, 0);
	cr_assert_gt(r.ops_evict, 0);
	if (rp->max_bytes)
		cr_assert_gt(r.enospc, 0, "the limit was never reached");
	/* Drain: everything goes, and so does all pool memory. */
	while (r.m.n)
		free_at(&r, tu_rand(&r.st) % r.m.n);
	verify_all(&r);
	cr_assert_eq(tl_stats(r.p).pool_bytes, 0);
	cr_assert_eq(r.z.lru_len, 0);
	compare_lru(&r);
	uzs_pool_destroy(r.p);
	tl_model_fini(&r.m);
	zm_free(&r.z);
	free(r.ids);
}

/* ------------------------------------------------------------- the runs */

#define OPS 40000u
#define OPS_LIMITED 14000u

#define RANDOM_TEST(name, d, zpages, place, seed)                            \
	Test(pool_random, name)                                              \
	{                                                                    \
		struct rparams rp = { d, zpages, place, 0, seed, OPS };      \
		run_random(&rp);                                             \
	}

RANDOM_TEST(uniform_sizes_auto_zspages_emptiest, D_UNIFORM, 0, UZS_PLACE_EMPTIEST, 1001)
RANDOM_TEST(uniform_sizes_1page_zspages_emptiest, D_UNIFORM, 1, UZS_PLACE_EMPTIEST, 1002)
RANDOM_TEST(uniform_sizes_2page_zspages_emptiest, D_UNIFORM, 2, UZS_PLACE_EMPTIEST, 1003)
RANDOM_TEST(uniform_sizes_auto_zspages_recent, D_UNIFORM, 0, UZS_PLACE_RECENT, 1004)
RANDOM_TEST(uniform_sizes_1page_zspages_recent, D_UNIFORM, 1, UZS_PLACE_RECENT, 1005)
RANDOM_TEST(uniform_sizes_2page_zspages_recent, D_UNIFORM, 2, UZS_PLACE_RECENT, 1006)

RANDOM_TEST(small_heavy_sizes_auto_zspages_emptiest, D_SMALL, 0, UZS_PLACE_EMPTIEST, 2001)
RANDOM_TEST(small_heavy_sizes_1page_zspages_emptiest, D_SMALL, 1, UZS_PLACE_EMPTIEST, 2002)
RANDOM_TEST(small_heavy_sizes_2page_zspages_emptiest, D_SMALL, 2, UZS_PLACE_EMPTIEST, 2003)
RANDOM_TEST(small_heavy_sizes_auto_zspages_recent, D_SMALL, 0, UZS_PLACE_RECENT, 2004)
RANDOM_TEST(small_heavy_sizes_1page_zspages_recent, D_SMALL, 1, UZS_PLACE_RECENT, 2005)
RANDOM_TEST(small_heavy_sizes_2page_zspages_recent, D_SMALL, 2, UZS_PLACE_RECENT, 2006)

RANDOM_TEST(large_heavy_sizes_auto_zspages_emptiest, D_LARGE, 0, UZS_PLACE_EMPTIEST, 3001)
RANDOM_TEST(large_heavy_sizes_1page_zspages_emptiest, D_LARGE, 1, UZS_PLACE_EMPTIEST, 3002)
RANDOM_TEST(large_heavy_sizes_2page_zspages_emptiest, D_LARGE, 2, UZS_PLACE_EMPTIEST, 3003)
RANDOM_TEST(large_heavy_sizes_auto_zspages_recent, D_LARGE, 0, UZS_PLACE_RECENT, 3004)
RANDOM_TEST(large_heavy_sizes_1page_zspages_recent, D_LARGE, 1, UZS_PLACE_RECENT, 3005)
RANDOM_TEST(large_heavy_sizes_2page_zspages_recent, D_LARGE, 2, UZS_PLACE_RECENT, 3006)

RANDOM_TEST(real_like_sizes_auto_zspages_emptiest, D_REAL, 0, UZS_PLACE_EMPTIEST, 4001)
RANDOM_TEST(real_like_sizes_1page_zspages_emptiest, D_REAL, 1, UZS_PLACE_EMPTIEST, 4002)
RANDOM_TEST(real_like_sizes_2page_zspages_emptiest, D_REAL, 2, UZS_PLACE_EMPTIEST, 4003)
RANDOM_TEST(real_like_sizes_auto_zspages_recent, D_REAL, 0, UZS_PLACE_RECENT, 4004)
RANDOM_TEST(real_like_sizes_1page_zspages_recent, D_REAL, 1, UZS_PLACE_RECENT, 4005)
RANDOM_TEST(real_like_sizes_2page_zspages_recent, D_REAL, 2, UZS_PLACE_RECENT, 4006)

/* Against a small max_bytes: allocations fail, eviction makes room. */
#define LIMITED_TEST(name, d, zpages, place, maxb, seed)                     \
	Test(pool_random, name)                                              \
	{                                                                    \
		struct rparams rp = { d, zpages, place, maxb, seed, OPS_LIMITED }; \
		run_random(&rp);                                             \
	}

LIMITED_TEST(limited_uniform_sizes_auto_zspages, D_UNIFORM, 0, UZS_PLACE_EMPTIEST, 24 * PG, 5001)
LIMITED_TEST(limited_uniform_sizes_2page_zspages_odd_limit, D_UNIFORM, 2, UZS_PLACE_RECENT, 23 * PG + 100, 5002)
LIMITED_TEST(limited_small_heavy_sizes_1page_zspages, D_SMALL, 1, UZS_PLACE_EMPTIEST, 16 * PG, 5003)
LIMITED_TEST(limited_small_heavy_sizes_2page_zspages, D_SMALL, 2, UZS_PLACE_RECENT, 64 * PG, 5004)
LIMITED_TEST(limited_large_heavy_sizes_2page_zspages, D_LARGE, 2, UZS_PLACE_EMPTIEST, 33 * PG, 5005)
LIMITED_TEST(limited_large_heavy_sizes_1page_zspages, D_LARGE, 1, UZS_PLACE_RECENT, 8 * PG, 5006)
LIMITED_TEST(limited_real_like_sizes_auto_zspages, D_REAL, 0, UZS_PLACE_RECENT, 128 * PG, 5007)
LIMITED_TEST(limited_real_like_sizes_2page_zspages, D_REAL, 2, UZS_PLACE_EMPTIEST, 40 * PG, 5008)
