/*
 * pool_testlib.h - helpers shared by the pool tests: pool construction,
 * checked store/read of tagged objects, and a reference model (an array of
 * {handle, len, tag, owner}) that the randomized tests compare the pool
 * against byte for byte.
 *
 * Everything here asserts with Criterion, so it must only be called from
 * the test's own thread (the thread tests collect errors themselves).
 */
#ifndef UZS_POOL_TESTLIB_H
#define UZS_POOL_TESTLIB_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"
#include "testutil.h"
#include "uzswap.h"

#define PG UZS_PAGE_SIZE
#define CANARY 0xc5

static inline struct uzs_pool *tl_pool(size_t max_bytes, unsigned zspage_pages)
{
	struct uzs_pool_config cfg = { max_bytes, -1, zspage_pages };
	struct uzs_pool *p = NULL;

	cr_assert_eq(uzs_pool_create(&cfg, &p), 0);
	cr_assert_not_null(p);
	return p;
}

static inline struct uzs_pool_stats tl_stats(struct uzs_pool *p)
{
	struct uzs_pool_stats st;

	memset(&st, 0xee, sizeof(st));
	uzs_pool_stats(p, &st);
	return st;
}

/* Store len bytes of pattern(tag) with owner = tag; must succeed. */
static inline uzs_handle_t tl_put(struct uzs_pool *p, size_t len, uint64_t tag)
{
	unsigned char buf[PG];
	uzs_handle_t h = 0;
	int rc;

	tu_pattern(buf, len, tag);
	rc = uzs_pool_alloc(p, buf, len, tag, &h);
	cr_assert_eq(rc, 0, "alloc of %zu bytes (tag %llu) failed: %d", len,
		     (unsigned long long)tag, rc);
	cr_assert_neq(h, 0);
	return h;
}

/* Compare buf[0..len) with pattern(tag); fail naming the first bad byte. */
static inline void tl_expect_bytes(const unsigned char *buf, size_t len,
				   uint64_t tag, uzs_handle_t h)
{
	unsigned char want[PG];

	tu_pattern(want, len, tag);
	if (memcmp(buf, want, len) != 0) {
		size_t i = 0;

		while (buf[i] == want[i])
			i++;
		cr_assert_fail("handle %llu (len %zu, tag %llu): byte %zu is "
			       "0x%02x, expected 0x%02x",
			       (unsigned long long)h, len, (unsigned long long)tag,
			       i, buf[i], want[i]);
	}
}

/*
 * Read an object back and check it whole: the length returned, every byte,
 * that nothing past the object was written, and its owner and length.
 */
static inline void tl_expect_obj(struct uzs_pool *p, uzs_handle_t h, size_t len,
				 uint64_t tag, uint64_t owner)
{
	unsigned char buf[PG + 64];
	uint64_t got_owner = ~owner;
	long n;

	memset(buf, CANARY, sizeof(buf));
	n = uzs_pool_read(p, h, buf, sizeof(buf));
	cr_assert_eq(n, (long)len, "read of handle %llu returned %ld, expected %zu",
		     (unsigned long long)h, n, len);
	tl_expect_bytes(buf, len, tag, h);
	/* (plain loops: a passing cr_assert per byte costs more than a read) */
	for (size_t i = len; i < sizeof(buf); i++)
		if (buf[i] != CANARY)
			cr_assert_fail("read of handle %llu (len %zu) wrote byte "
				       "%zu past the object", (unsigned long long)h,
				       len, i);
	cr_assert_eq(uzs_pool_owner(p, h, &got_owner), 0);
	cr_assert_eq(got_owner, owner, "owner of handle %llu changed",
		     (unsigned long long)h);
	cr_assert_eq(uzs_pool_length(p, h), (long)len);
}

/* Object with owner == tag, as stored by tl_put. */
static inline void tl_expect(struct uzs_pool *p, uzs_handle_t h, size_t len,
			     uint64_t tag)
{
	tl_expect_obj(p, h, len, tag, tag);
}

static inline void tl_check(struct uzs_pool *p)
{
	cr_assert_eq(uzs_pool_check(p), 0, "uzs_pool_check found a broken invariant");
}

/* Invariants of the stats that hold whatever the pool holds. */
static inline void tl_stats_sane(const struct uzs_pool_stats *st, size_t max_bytes)
{
	uint64_t sum = 0;

	cr_assert_eq(st->pool_bytes % PG, 0, "pool_bytes %llu not whole pages",
		     (unsigned long long)st->pool_bytes);
	cr_assert_leq(st->stored_bytes, st->pool_bytes,
		      "stored %llu > pool %llu", (unsigned long long)st->stored_bytes,
		      (unsigned long long)st->pool_bytes);
	if (max_bytes)
		cr_assert_leq(st->pool_bytes, max_bytes / PG * PG);
	for (int g = 0; g < UZS_POOL_FULLNESS_GROUPS; g++)
		sum += st->zspages_by_fullness[g];
	cr_assert_eq(sum, st->zspages, "fullness groups sum to %llu, zspages %llu",
		     (unsigned long long)sum, (unsigned long long)st->zspages);
	/* Every zspage is 1 or 2 pages and holds at least one fragment (an
	 * object is one fragment, or two when split). */
	cr_assert_leq(st->zspages * PG, st->pool_bytes);
	cr_assert_geq(st->zspages * 2 * PG, st->pool_bytes);
	cr_assert_leq(st->split_objects, st->objects);
	cr_assert_leq(st->zspages, st->objects + st->split_objects);
	cr_assert_leq(st->objects, st->stored_bytes);
	if (st->objects == 0) {
		cr_assert_eq(st->pool_bytes, 0, "empty pool still holds %llu bytes",
			     (unsigned long long)st->pool_bytes);
		cr_assert_eq(st->zspages, 0);
	}
	cr_assert_eq(st->allocs - st->frees, st->objects);
}

/* Stats equal except for alloc_failures, which is one more in b.  The
 * failed search may have swept zspages (sweeps): it stored nothing. */
static inline void tl_stats_same_but_failure(const struct uzs_pool_stats *a,
					     const struct uzs_pool_stats *b)
{
	struct uzs_pool_stats x = *a;

	x.alloc_failures++;
	x.sweeps = b->sweeps;
	cr_assert_eq(memcmp(&x, b, sizeof(x)), 0,
		     "a failed alloc changed the stats (objects %llu->%llu, "
		     "pool_bytes %llu->%llu, failures %llu->%llu)",
		     (unsigned long long)a->objects, (unsigned long long)b->objects,
		     (unsigned long long)a->pool_bytes, (unsigned long long)b->pool_bytes,
		     (unsigned long long)a->alloc_failures,
		     (unsigned long long)b->alloc_failures);
}

/* ------------------------------------------------------ reference model */

struct tl_obj {
	uzs_handle_t h;
	uint32_t len;
	uint32_t zs;            /* zspage of its head, for tests that track it;
				 * else NIL */
	uint32_t zs2;           /* zspage of its tail if split there, else NIL
				 * (a tail in the head's zspage counts once) */
	uint64_t tag;
	uint64_t owner;
};

struct tl_model {
	struct tl_obj *o;
	size_t n, cap;
	uint32_t *pos;          /* handle -> index + 1 in o[], 0 = not live */
	size_t pos_cap;
	uint64_t stored, allocs, frees, failures;
	uint64_t evictions, evicted_pages, compacted_pages;
};

static inline void tl_model_init(struct tl_model *m)
{
	memset(m, 0, sizeof(*m));
}

static inline void tl_model_fini(struct tl_model *m)
{
	free(m->o);
	free(m->pos);
	memset(m, 0, sizeof(*m));
}

/* Index of a live handle in the model, or -1. */
static inline long tl_model_find(const struct tl_model *m, uzs_handle_t h)
{
	if (h == 0 || h >= m->pos_cap || m->pos[h] == 0)
		return -1;
	return (long)m->pos[h] - 1;
}

static inline void tl_model_add(struct tl_model *m, uzs_handle_t h, uint32_t len,
				uint64_t tag, uint64_t owner)
{
	cr_assert_neq(h, 0, "alloc returned handle 0");
	cr_assert_lt(h, (uzs_handle_t)1 << 32, "absurd handle %llu",
		     (unsigned long long)h);
	if (h >= m->pos_cap) {
		size_t nc = m->pos_cap ? m->pos_cap : 1024;

		while (nc <= h)
			nc *= 2;
		m->pos = realloc(m->pos, nc * sizeof(*m->pos));
		cr_assert_not_null(m->pos);
		memset(m->pos + m->pos_cap, 0, (nc - m->pos_cap) * sizeof(*m->pos));
		m->pos_cap = nc;
	}
	cr_assert_eq(m->pos[h], 0, "alloc returned handle %llu, which is live",
		     (unsigned long long)h);
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 1024;
		m->o = realloc(m->o, m->cap * sizeof(*m->o));
		cr_assert_not_null(m->o);
	}
	m->o[m->n] = (struct tl_obj){ h, len, UINT32_MAX, UINT32_MAX, tag, owner };
	m->pos[h] = (uint32_t)++m->n;
	m->stored += len;
	m->allocs++;
}

static inline void tl_model_remove_at(struct tl_model *m, size_t i)
{
	uzs_handle_t h = m->o[i].h;

	m->stored -= m->o[i].len;
	m->frees++;
	m->pos[h] = 0;
	m->o[i] = m->o[--m->n];
	if (i < m->n)
		m->pos[m->o[i].h] = (uint32_t)i + 1;
}

/* Alloc through the model: on success the model gains the object; on failure
 * the return code must be -ENOSPC (or what `allowed` says) and, when
 * check_unchanged, the stats must be the same but for alloc_failures. */
static inline int tl_model_alloc(struct uzs_pool *p, struct tl_model *m,
				 uint32_t len, uint64_t tag, uint64_t owner,
				 bool check_unchanged)
{
	unsigned char buf[PG];
	struct uzs_pool_stats before, after;
	uzs_handle_t h = 0;
	int rc;

	tu_pattern(buf, len, tag);
	if (check_unchanged)
		uzs_pool_stats(p, &before);
	rc = uzs_pool_alloc(p, buf, len, owner, &h);
	if (rc == 0) {
		tl_model_add(m, h, len, tag, owner);
		return 0;
	}
	cr_assert_eq(rc, -ENOSPC, "alloc of %u bytes failed with %d", len, rc);
	m->failures++;
	if (check_unchanged) {
		uzs_pool_stats(p, &after);
		tl_stats_same_but_failure(&before, &after);
	}
	return rc;
}

static inline void tl_model_free_at(struct uzs_pool *p, struct tl_model *m,
				    size_t i)
{
	uzs_handle_t h = m->o[i].h;
	int rc = uzs_pool_free(p, h);

	cr_assert_eq(rc, 0, "free of live handle %llu returned %d",
		     (unsigned long long)h, rc);
	tl_model_remove_at(m, i);
}

static inline void tl_model_expect_at(struct uzs_pool *p, const struct tl_model *m,
				      size_t i)
{
	const struct tl_obj *o = &m->o[i];

	tl_expect_obj(p, o->h, o->len, o->tag, o->owner);
}

/* Counting stats against the model, plus the general invariants. */
static inline void tl_model_stats(struct uzs_pool *p, const struct tl_model *m,
				  size_t max_bytes)
{
	struct uzs_pool_stats st = tl_stats(p);

	cr_assert_eq(st.objects, m->n, "stats.objects %llu, model %zu",
		     (unsigned long long)st.objects, m->n);
	cr_assert_eq(st.stored_bytes, m->stored, "stats.stored_bytes %llu, model %llu",
		     (unsigned long long)st.stored_bytes, (unsigned long long)m->stored);
	cr_assert_eq(st.allocs, m->allocs, "stats.allocs %llu, model %llu",
		     (unsigned long long)st.allocs, (unsigned long long)m->allocs);
	cr_assert_eq(st.frees, m->frees, "stats.frees %llu, model %llu",
		     (unsigned long long)st.frees, (unsigned long long)m->frees);
	cr_assert_eq(st.alloc_failures, m->failures,
		     "stats.alloc_failures %llu, model %llu",
		     (unsigned long long)st.alloc_failures,
		     (unsigned long long)m->failures);
	cr_assert_eq(st.evictions, m->evictions);
	cr_assert_eq(st.evicted_pages_freed, m->evicted_pages);
	cr_assert_eq(st.compacted_pages_freed, m->compacted_pages);
	tl_stats_sane(&st, max_bytes);
}

/* Read back every live object, run the invariant checker, compare stats. */
static inline void tl_model_verify_all(struct uzs_pool *p, const struct tl_model *m,
				       size_t max_bytes)
{
	for (size_t i = 0; i < m->n; i++)
		tl_model_expect_at(p, m, i);
	tl_check(p);
	tl_model_stats(p, m, max_bytes);
}

#endif
