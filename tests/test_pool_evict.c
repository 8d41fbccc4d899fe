/*
 * test_pool_evict.c - the LRU of zspages and the eviction protocol:
 * coldest first, second chance for read zspages, isolation, release on the
 * last free, evict_end putting back what is left, stale tickets, and the
 * caller-side races the protocol allows (another free of a batch object).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "pool_testlib.h"

#define MAXZ 64

static size_t lru(struct uzs_pool *p, uint32_t *ids)
{
	return uzs_pool_lru_order(p, ids, MAXZ);
}

static void expect_lru(struct uzs_pool *p, const uint32_t *want, size_t n)
{
	uint32_t ids[MAXZ];
	size_t got = lru(p, ids);

	cr_assert_eq(got, n, "LRU holds %zu zspages, expected %zu", got, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(ids[i], want[i], "LRU position %zu (coldest first) "
			     "is zspage %u, expected %u", i, ids[i], want[i]);
}

/*
 * nz one-page zspages, each holding exactly two objects of 2048 bytes:
 * objects 2k and 2k+1 (tag = index + 1) are in zspage z[k].
 */
struct rig {
	struct uzs_pool *p;
	uzs_handle_t h[2 * MAXZ];
	uint32_t z[MAXZ];
	unsigned nz;
};

static void rig_make(struct rig *r, unsigned nz)
{
	memset(r, 0, sizeof(*r));
	r->p = tl_pool(0, 1);
	r->nz = nz;
	for (unsigned i = 0; i < 2 * nz; i++)
		r->h[i] = tl_put(r->p, 2048, i + 1);
	for (unsigned k = 0; k < nz; k++) {
		r->z[k] = uzs_pool_zspage_of(r->p, r->h[2 * k]);
		cr_assert_eq(uzs_pool_zspage_of(r->p, r->h[2 * k + 1]), r->z[k]);
		if (k)
			cr_assert_neq(r->z[k], r->z[k - 1]);
	}
	cr_assert_eq(tl_stats(r->p).pool_bytes, nz * PG);
}

static void rig_expect(struct rig *r, unsigned i)
{
	tl_expect(r->p, r->h[i], 2048, i + 1);
}

/* The batch holds exactly the live objects in `want` (handle, owner = tag). */
static void expect_batch(const struct uzs_evict_batch *b, int rc,
			 const uzs_handle_t *want, const uint64_t *owner, unsigned n)
{
	cr_assert_eq(rc, (int)n, "evict_begin returned %d, expected %u", rc, n);
	cr_assert_eq(b->count, n);
	for (unsigned i = 0; i < n; i++) {
		unsigned hits = 0;

		for (unsigned j = 0; j < b->count; j++) {
			if (b->entries[j].handle == want[i]) {
				hits++;
				cr_assert_eq(b->entries[j].owner, owner[i],
					     "batch names the wrong owner");
			}
		}
		cr_assert_eq(hits, 1, "handle %llu appears %u times in the batch",
			     (unsigned long long)want[i], hits);
	}
}

/* ------------------------------------------------------------- the LRU */

Test(pool_lru, zspages_are_listed_coldest_first_in_store_order)
{
	struct rig r;
	uint32_t ids[MAXZ];

	rig_make(&r, 4);
	expect_lru(r.p, r.z, 4);
	cr_assert_eq(uzs_pool_lru_order(r.p, ids, 2), 2, "max not respected");
	cr_assert_eq(ids[0], r.z[0]);
	cr_assert_eq(ids[1], r.z[1]);
	cr_assert_eq(uzs_pool_lru_order(r.p, ids, 0), 0);
	uzs_pool_destroy(r.p);
}

Test(pool_lru, storing_into_a_zspage_makes_it_most_recently_used)
{
	struct rig r;
	uzs_handle_t x;

	rig_make(&r, 3);
	/* Make room in the coldest, store there: it becomes the MRU. */
	cr_assert_eq(uzs_pool_free(r.p, r.h[0]), 0);
	x = tl_put(r.p, 2048, 100);
	cr_assert_eq(uzs_pool_zspage_of(r.p, x), r.z[0]);
	expect_lru(r.p, (uint32_t[]){ r.z[1], r.z[2], r.z[0] }, 3);
	/* And the middle one. */
	cr_assert_eq(uzs_pool_free(r.p, r.h[3]), 0);
	x = tl_put(r.p, 2000, 101);
	cr_assert_eq(uzs_pool_zspage_of(r.p, x), r.z[1]);
	expect_lru(r.p, (uint32_t[]){ r.z[2], r.z[0], r.z[1] }, 3);
	tl_check(r.p);
	uzs_pool_destroy(r.p);
}

Test(pool_lru, a_fresh_zspage_is_most_recently_used)
{
	struct rig r;
	uzs_handle_t x;
	uint32_t ids[MAXZ];

	rig_make(&r, 3);
	x = tl_put(r.p, 100, 100);
	cr_assert_eq(lru(r.p, ids), 4);
	cr_assert_eq(ids[3], uzs_pool_zspage_of(r.p, x));
	uzs_pool_destroy(r.p);
}

Test(pool_lru, reads_do_not_reorder_the_lru)
{
	struct rig r;

	rig_make(&r, 3);
	for (unsigned i = 0; i < 6; i++)
		rig_expect(&r, i);
	rig_expect(&r, 0);
	expect_lru(r.p, r.z, 3);
	uzs_pool_destroy(r.p);
}

Test(pool_lru, released_zspages_leave_the_lru)
{
	struct rig r;

	rig_make(&r, 3);
	cr_assert_eq(uzs_pool_free(r.p, r.h[2]), 0);
	cr_assert_eq(uzs_pool_free(r.p, r.h[3]), 0);
	expect_lru(r.p, (uint32_t[]){ r.z[0], r.z[2] }, 2);
	tl_check(r.p);
	uzs_pool_destroy(r.p);
}

/* ------------------------------------------------------ evict_begin */

Test(pool_evict, empty_pool_has_nothing_to_evict)
{
	struct uzs_pool *p = tl_pool(0, 0);
	struct uzs_evict_batch b;
	uzs_handle_t h;

	cr_assert_eq(uzs_pool_evict_begin(p, &b), -ENOENT);
	h = tl_put(p, 10, 1);
	cr_assert_eq(uzs_pool_free(p, h), 0);
	cr_assert_eq(uzs_pool_evict_begin(p, &b), -ENOENT);
	cr_assert_eq(tl_stats(p).evictions, 0);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_evict, begin_takes_the_coldest_zspage_with_exactly_its_live_objects)
{
	struct uzs_pool *p = tl_pool(0, 1);
	struct uzs_evict_batch b;
	uzs_handle_t h[20], want[20];
	uint64_t owner[20];
	unsigned n = 0;
	uint32_t z0;
	int rc;

	/* 20 objects of 200 B fill most of one zspage; a second one follows. */
	for (int i = 0; i < 20; i++) {
		unsigned char buf[200];

		tu_pattern(buf, 200, (uint64_t)i);
		cr_assert_eq(uzs_pool_alloc(p, buf, 200, 0xabc000 + (uint64_t)i, &h[i]), 0);
	}
	z0 = uzs_pool_zspage_of(p, h[0]);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(uzs_pool_zspage_of(p, h[i]), z0);
	/* A full page: its head fills the last 96 B of z0, its tail a fresh
	 * zspage.  Split objects are handed out whole: it is in the batch. */
	want[n] = tl_put(p, PG, 1000);
	owner[n++] = 1000;
	cr_assert_eq(uzs_pool_zspage_of(p, want[0]), z0);
	/* Free a few: the batch names only what is live. */
	for (int i = 0; i < 20; i++) {
		if (i % 3 == 1) {
			cr_assert_eq(uzs_pool_free(p, h[i]), 0);
			continue;
		}
		want[n] = h[i];
		owner[n] = 0xabc000 + (uint64_t)i;
		n++;
	}
	memset(&b, 0x5a, sizeof(b));
	rc = uzs_pool_evict_begin(p, &b);
	expect_batch(&b, rc, want, owner, n);
	cr_assert_eq(b.zspage, z0);
	cr_assert_eq(tl_stats(p).evictions, 1);
	tl_check(p);
	/* The evictor reads them while isolated. */
	for (int i = 0; i < 20; i++)
		if (i % 3 != 1)
			tl_expect_obj(p, h[i], 200, (uint64_t)i, 0xabc000 + (uint64_t)i);
	uzs_pool_evict_end(p, &b);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_evict, isolated_zspage_leaves_the_lru_until_evict_end)
{
	struct rig r;
	struct uzs_evict_batch b;

	rig_make(&r, 3);
	expect_batch(&b, uzs_pool_evict_begin(r.p, &b),
		     (uzs_handle_t[]){ r.h[0], r.h[1] }, (uint64_t[]){ 1, 2 }, 2);
	cr_assert_eq(b.zspage, r.z[0]);
	expect_lru(r.p, (uint32_t[]){ r.z[1], r.z[2] }, 2);
	tl_check(r.p);
	uzs_pool_evict_end(r.p, &b);
	/* Nothing freed: back as the most recently used. */
	expect_lru(r.p, (uint32_t[]){ r.z[1], r.z[2], r.z[0] }, 3);
	for (unsigned i = 0; i < 6; i++)
		rig_expect(&r, i);
	tl_check(r.p);
	uzs_pool_destroy(r.p);
}

Test(pool_evict, successive_evictions_follow_lru_order)
{
	struct rig r;
	struct uzs_evict_batch b;
	uint64_t freed = 0;

	rig_make(&r, 8);
	for (unsigned k = 0; k < 8; k++) {
		int rc = uzs_pool_evict_begin(r.p, &b);

		expect_batch(&b, rc, &r.h[2 * k],
			     (uint64_t[]){ 2 * k + 1, 2 * k + 2 }, 2);
		cr_assert_eq(b.zspage, r.z[k], "eviction %u took the wrong zspage", k);
		/* Write back: read each whole, then free it. */
		for (unsigned j = 0; j < b.count; j++) {
			tl_expect(r.p, b.entries[j].handle, 2048, b.entries[j].owner);
			cr_assert_eq(uzs_pool_free(r.p, b.entries[j].handle), 0);
		}
		freed++;
		uzs_pool_evict_end(r.p, &b);
		cr_assert_eq(tl_stats(r.p).evicted_pages_freed, freed);
		cr_assert_eq(tl_stats(r.p).pool_bytes, (8 - freed) * PG);
		tl_check(r.p);
	}
	cr_assert_eq(uzs_pool_evict_begin(r.p, &b), -ENOENT);
	cr_assert_eq(tl_stats(r.p).evictions, 8);
	cr_assert_eq(tl_stats(r.p).zspages, 0);
	uzs_pool_destroy(r.p);
}

/* ------------------------------------------------------ second chance */

Test(pool_evict, a_read_zspage_is_skipped_once)
{
	struct rig r;
	struct uzs_evict_batch b;

	rig_make(&r, 3);
	rig_expect(&r, 1);  /* read in the coldest, z0 */
	cr_assert_eq(uzs_pool_evict_begin(r.p, &b), 2);
	cr_assert_eq(b.zspage, r.z[1], "read zspage was not given a second chance");
	/* The skipped one went to the MRU end. */
	expect_lru(r.p, (uint32_t[]){ r.z[2], r.z[0] }, 2);
	uzs_pool_evict_end(r.p, &b);
	expect_lru(r.p, (uint32_t[]){ r.z[2], r.z[0], r.z[1] }, 3);
	/* z2 was not read: it goes next. */
	cr_assert_eq(uzs_pool_evict_begin(r.p, &b), 2);
	cr_assert_eq(b.zspage, r.z[2]);
	uzs_pool_evict_end(r.p, &b);
	/* z0's chance is used up: it is taken now although it was read. */
	cr_assert_eq(uzs_pool_evict_begin(r.p, &b), 2);
	cr_assert_eq(b.zspage, r.z[0], "second chance given twice");
	uzs_pool_evict_end(r.p, &b);
	tl_check(r.p);
	uzs_pool_destroy(r.p);
}

Test(pool_evict, when_every_zspage_was_read_the_coldest_still_goes)
{
	struct rig r;
	struct uzs_evict_batch b;

	rig_make(&r, 4);
	for (unsigned i = 0; i < 8; i++)
		rig_expect(&r, i);
	cr_assert_eq(uzs_pool_evict_begin(r.p, &b), 2);
	cr_assert_eq(b.zspage, r.z[0]);
	expect_lru(r.p, (uint32_t[]){ r.z[1], r.z[2], r.z[3] }, 3);
	uzs_pool_evict_end(r.p, &b);
	/* Every chance was used by that one pass: LRU order again. */
	cr_assert_eq(uzs_pool_evict_begin(r.p, &b), 2);
	cr_assert_eq(b.zspage, r.z[1]);
	uzs_pool_evict_end(r.p, &b);
	tl_check(r.p);
	uzs_pool_destroy(r.p);
}

Test(pool_evict, an_isolated_zspage_can_be_read_and_still_returns_as_mru)
{
	struct rig r;
	struct uzs_evict_batch b;

	rig_make(&r, 3);
	cr_assert_eq(uzs_pool_evict_begin(r.p, &b), 2);
	cr_assert_eq(b.zspage, r.z[0]);
	rig_expect(&r, 0);  /* the evictor (or anyone) reads it */
	uzs_pool_evict_end(r.p, &b);
	expect_lru(r.p, (uint32_t[]){ r.z[1], r.z[2], r.z[0] }, 3);
	tl_check(r.p);
	uzs_pool_destroy(r.p);
}

/* ------------------------------------------------ release and evict_end */

/*
 * Evict the coldest zspage and free its whole batch: it is released at
 * once.  With 1-page zspages the second 3000 B object is split across the
 * first two zspages, with 2-page ones the full page at the end is: either
 * way the batch holds every object with a fragment in the zspage, and a
 * zspage left with nothing (the full page's tail) goes too.
 */
static void evict_all_releases(unsigned zp)
{
	struct uzs_pool *p = tl_pool(0, zp);
	size_t len[4] = { 3000, 3000, 2000, PG };
	uzs_handle_t h[4];
	struct uzs_evict_batch b;
	struct uzs_pool_stats a, s;
	uint32_t z, ids[2];
	unsigned pages, in_z = 0;

	for (int i = 0; i < 4; i++)
		h[i] = tl_put(p, len[i], (uint64_t)i + 1);
	z = uzs_pool_zspage_of(p, h[0]);
	pages = uzs_pool_zspage_pages(p, z);
	cr_assert_eq(pages, zp);
	for (int i = 0; i < 4; i++) {
		unsigned n = uzs_pool_fragments_of(p, h[i], ids, NULL);

		in_z += ids[0] == z || (n == 2 && ids[1] == z);
	}
	cr_assert_eq(in_z, zp == 2 ? 4 : 2);
	cr_assert_eq(uzs_pool_evict_begin(p, &b), (int)in_z);
	cr_assert_eq(b.zspage, z);
	a = tl_stats(p);
	for (unsigned j = 0; j < b.count; j++) {
		uzs_handle_t e = b.entries[j].handle;
		int i = (int)b.entries[j].owner - 1;

		cr_assert(i >= 0 && i < 4 && h[i] == e);
		tl_expect(p, e, len[i], (uint64_t)i + 1);
		cr_assert_eq(uzs_pool_zspage_pages(p, z), pages,
			     "zspage released before its last object went");
		cr_assert_eq(uzs_pool_free(p, e), 0);
		h[i] = 0;
	}
	s = tl_stats(p);
	cr_assert_eq(uzs_pool_zspage_pages(p, z), 0,
		     "last free did not release the zspage at once");
	cr_assert_leq(s.pool_bytes, a.pool_bytes - pages * PG);
	cr_assert_eq(s.evicted_pages_freed, pages);
	cr_assert_eq(s.objects, 4 - in_z);
	tl_check(p);
	/* evict_end after the release is harmless. */
	uzs_pool_evict_end(p, &b);
	a = tl_stats(p);
	cr_assert_eq(memcmp(&a, &s, sizeof(a)), 0, "evict_end changed the stats");
	cr_assert_eq(lru(p, (uint32_t[MAXZ]){ 0 }), s.zspages);
	tl_check(p);
	/* Pool keeps working. */
	for (int i = 0; i < 4; i++) {
		if (h[i])
			tl_expect(p, h[i], len[i], (uint64_t)i + 1);
		h[i] = tl_put(p, len[i], (uint64_t)i + 10);
		tl_expect(p, h[i], len[i], (uint64_t)i + 10);
	}
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_evict, freeing_the_whole_batch_releases_a_one_page_zspage)
{
	evict_all_releases(1);
}

Test(pool_evict, freeing_the_whole_batch_releases_a_two_page_zspage)
{
	evict_all_releases(2);
}

Test(pool_evict, partial_eviction_puts_the_rest_back_as_mru)
{
	struct uzs_pool *p = tl_pool(0, 1);
	uzs_handle_t h[10], other;
	struct uzs_evict_batch b;
	struct uzs_pool_stats s;
	uint32_t ids[MAXZ], z;
	size_t n;

	/* 4090 B: the 6 B left are too few for a split head, so the next
	 * object goes whole into a fresh zspage. */
	for (int i = 0; i < 10; i++)
		h[i] = tl_put(p, 409, (uint64_t)i + 1);
	other = tl_put(p, PG, 50);
	z = uzs_pool_zspage_of(p, h[0]);
	cr_assert_eq(uzs_pool_evict_begin(p, &b), 10);
	cr_assert_eq(b.zspage, z);
	/* Write back (free) the even ones only: say the odd writes failed. */
	for (unsigned j = 0; j < b.count; j++) {
		uint64_t tag = b.entries[j].owner;

		if (tag % 2 == 1)
			cr_assert_eq(uzs_pool_free(p, b.entries[j].handle), 0);
	}
	uzs_pool_evict_end(p, &b);
	n = lru(p, ids);
	cr_assert_eq(n, 2);
	cr_assert_eq(ids[1], z, "partially evicted zspage is not the MRU");
	cr_assert_eq(ids[0], uzs_pool_zspage_of(p, other));
	for (int i = 1; i < 10; i += 2)
		tl_expect(p, h[i], 409, (uint64_t)i + 1);
	s = tl_stats(p);
	cr_assert_eq(s.objects, 6);
	cr_assert_eq(s.evicted_pages_freed, 0);
	cr_assert_eq(s.pool_bytes, 2 * PG);
	tl_check(p);
	/* The zspage takes objects again after evict_end. */
	h[0] = tl_put(p, 400, 60); /* only z has room */
	cr_assert_eq(uzs_pool_zspage_of(p, h[0]), z);
	tl_expect(p, h[0], 400, 60);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_evict, evict_end_twice_is_harmless)
{
	struct rig r;
	struct uzs_evict_batch b;

	rig_make(&r, 3);
	cr_assert_eq(uzs_pool_evict_begin(r.p, &b), 2);
	uzs_pool_evict_end(r.p, &b);
	uzs_pool_evict_end(r.p, &b);
	expect_lru(r.p, (uint32_t[]){ r.z[1], r.z[2], r.z[0] }, 3);
	tl_check(r.p);
	uzs_pool_destroy(r.p);
}

/* ------------------------------------------------------------ isolation */

Test(pool_evict, no_allocation_lands_in_an_isolated_zspage)
{
	for (unsigned zp = 0; zp <= 2; zp++) {
		struct uzs_pool *p = tl_pool(0, zp);
		struct uzs_evict_batch b;
		uzs_handle_t a = tl_put(p, 16, 1), x[300];
		uint32_t z = uzs_pool_zspage_of(p, a);
		uint64_t st = 8;

		/* The only zspage, the MRU, almost empty: the obvious target. */
		cr_assert_eq(uzs_pool_evict_begin(p, &b), 1);
		cr_assert_eq(b.zspage, z);
		for (int i = 0; i < 300; i++) {
			size_t len = (size_t)tu_range(&st, 1, 600);

			x[i] = tl_put(p, len, 100 + (uint64_t)i);
			cr_assert_neq(uzs_pool_zspage_of(p, x[i]), z,
				      "alloc %d landed in the isolated zspage", i);
			if (i % 3 == 0) {
				cr_assert_eq(uzs_pool_free(p, x[i]), 0);
				x[i] = 0;
			}
		}
		tl_check(p);
		(void)uzs_pool_compact(p);
		cr_assert_eq(uzs_pool_zspage_of(p, a), z);
		for (int i = 0; i < 300; i++)
			if (x[i])
				cr_assert_neq(uzs_pool_zspage_of(p, x[i]), z,
					      "compaction moved an object into the "
					      "isolated zspage");
		tl_expect(p, a, 16, 1);
		uzs_pool_evict_end(p, &b);
		tl_check(p);
		uzs_pool_destroy(p);
	}
}

Test(pool_evict, compaction_leaves_an_isolated_zspage_alone)
{
	struct rig r;
	struct uzs_evict_batch b;
	struct uzs_pool_stats s;
	size_t released;

	rig_make(&r, 4);
	/* Every zspage half full: z0 (isolated) and z1..z3 could all merge. */
	for (unsigned k = 0; k < 4; k++)
		cr_assert_eq(uzs_pool_free(r.p, r.h[2 * k + 1]), 0);
	r.h[1] = r.h[3] = r.h[5] = r.h[7] = 0;
	cr_assert_eq(uzs_pool_evict_begin(r.p, &b), 1);
	cr_assert_eq(b.zspage, r.z[0]);
	released = uzs_pool_compact(r.p);
	s = tl_stats(r.p);
	cr_assert_eq(released, 1, "z1..z3 should merge into two pages");
	cr_assert_eq(s.pool_bytes, 3 * PG);
	cr_assert_eq(uzs_pool_zspage_of(r.p, r.h[0]), r.z[0],
		     "compaction moved an object out of an isolated zspage");
	for (unsigned k = 1; k < 4; k++)
		cr_assert_neq(uzs_pool_zspage_of(r.p, r.h[2 * k]), r.z[0],
			      "compaction moved an object into an isolated zspage");
	for (unsigned k = 0; k < 4; k++)
		rig_expect(&r, 2 * k);
	tl_check(r.p);
	uzs_pool_evict_end(r.p, &b);
	tl_check(r.p);
	/* Once back, it is compactable like any other. */
	released = uzs_pool_compact(r.p);
	cr_assert_eq(released, 1);
	for (unsigned k = 0; k < 4; k++)
		rig_expect(&r, 2 * k);
	tl_check(r.p);
	uzs_pool_destroy(r.p);
}

Test(pool_evict, two_evictions_take_different_zspages_then_enoent)
{
	struct rig r;
	struct uzs_evict_batch b1, b2, b3;

	rig_make(&r, 2);
	cr_assert_eq(uzs_pool_evict_begin(r.p, &b1), 2);
	cr_assert_eq(uzs_pool_evict_begin(r.p, &b2), 2);
	cr_assert_eq(b1.zspage, r.z[0]);
	cr_assert_eq(b2.zspage, r.z[1]);
	cr_assert_eq(uzs_pool_evict_begin(r.p, &b3), -ENOENT,
		     "a zspage was handed out twice");
	cr_assert_eq(tl_stats(r.p).evictions, 2);
	tl_check(r.p);
	uzs_pool_evict_end(r.p, &b2);
	uzs_pool_evict_end(r.p, &b1);
	expect_lru(r.p, (uint32_t[]){ r.z[1], r.z[0] }, 2);
	for (unsigned i = 0; i < 4; i++)
		rig_expect(&r, i);
	tl_check(r.p);
	uzs_pool_destroy(r.p);
}

Test(pool_evict, a_full_isolated_pool_refuses_allocation_cleanly)
{
	struct uzs_pool *p = tl_pool(2 * PG, 1);
	struct uzs_evict_batch b;
	struct uzs_pool_stats a, s;
	unsigned char buf[PG];
	uzs_handle_t h0 = tl_put(p, 2048, 1), h1 = tl_put(p, 2048, 2), x;

	/* Both pages full; isolating one must not let an alloc in once its
	 * objects are freed, and the limit forbids a new one. */
	cr_assert_eq(uzs_pool_zspage_of(p, h0), uzs_pool_zspage_of(p, h1));
	tl_put(p, PG, 3);
	cr_assert_eq(uzs_pool_evict_begin(p, &b), 2);
	a = tl_stats(p);
	tu_pattern(buf, 100, 4);
	cr_assert_eq(uzs_pool_alloc(p, buf, 100, 4, &x), -ENOSPC);
	s = tl_stats(p);
	tl_stats_same_but_failure(&a, &s);
	/* The evictor writes one back: still isolated, still refused. */
	cr_assert_eq(uzs_pool_free(p, h1), 0);
	cr_assert_eq(uzs_pool_alloc(p, buf, 100, 4, &x), -ENOSPC);
	uzs_pool_evict_end(p, &b);
	x = tl_put(p, 100, 4);
	cr_assert_eq(uzs_pool_zspage_of(p, x), uzs_pool_zspage_of(p, h0));
	tl_expect(p, h0, 2048, 1);
	tl_expect(p, x, 100, 4);
	tl_check(p);
	uzs_pool_destroy(p);
}

/* ------------------------------------------------ caller-side races */

Test(pool_evict, batch_object_freed_by_someone_else_is_einval_for_the_evictor)
{
	struct rig r;
	struct uzs_evict_batch b;
	struct uzs_pool_stats s;
	unsigned char buf[PG];

	rig_make(&r, 2);
	cr_assert_eq(uzs_pool_evict_begin(r.p, &b), 2);
	cr_assert_eq(b.zspage, r.z[0]);
	/* Someone else frees h[0] (its owner rewrote the page, say). */
	cr_assert_eq(uzs_pool_free(r.p, r.h[0]), 0);
	tl_check(r.p);
	/* The evictor, working from its snapshot: read fails, free fails. */
	cr_assert_eq(uzs_pool_read(r.p, r.h[0], buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(uzs_pool_free(r.p, r.h[0]), -EINVAL);
	rig_expect(&r, 1);
	cr_assert_eq(uzs_pool_free(r.p, r.h[1]), 0);
	s = tl_stats(r.p);
	cr_assert_eq(s.frees, 2, "the double free was counted");
	cr_assert_eq(s.objects, 2);
	cr_assert_eq(s.pool_bytes, PG);
	cr_assert_eq(s.evicted_pages_freed, 1);
	uzs_pool_evict_end(r.p, &b);
	rig_expect(&r, 2);
	rig_expect(&r, 3);
	tl_check(r.p);
	uzs_pool_destroy(r.p);
}

Test(pool_evict, everything_freed_by_others_releases_the_zspage)
{
	struct rig r;
	struct uzs_evict_batch b;

	rig_make(&r, 2);
	cr_assert_eq(uzs_pool_evict_begin(r.p, &b), 2);
	cr_assert_eq(uzs_pool_free(r.p, r.h[1]), 0);
	cr_assert_eq(uzs_pool_free(r.p, r.h[0]), 0);
	cr_assert_eq(tl_stats(r.p).pool_bytes, PG);
	cr_assert_eq(tl_stats(r.p).evicted_pages_freed, 1);
	uzs_pool_evict_end(r.p, &b);
	expect_lru(r.p, (uint32_t[]){ r.z[1] }, 1);
	tl_check(r.p);
	uzs_pool_destroy(r.p);
}

Test(pool_evict, stale_ticket_does_not_touch_a_reused_zspage)
{
	struct uzs_pool *p = tl_pool(0, 1);
	struct uzs_evict_batch old, cur, probe;
	uzs_handle_t a, b, c, d;
	uint32_t za;

	a = tl_put(p, 3000, 1);
	za = uzs_pool_zspage_of(p, a);
	cr_assert_eq(uzs_pool_evict_begin(p, &old), 1);
	cr_assert_eq(uzs_pool_free(p, a), 0);          /* released */
	cr_assert_eq(tl_stats(p).zspages, 0);
	b = tl_put(p, 3000, 2);                         /* a new zspage */
	cr_assert_eq(uzs_pool_zspage_of(p, b), za,
		     "test needs the freed slot to be reused");
	/* The new zspage is being evicted; the old ticket must not end that. */
	cr_assert_eq(uzs_pool_evict_begin(p, &cur), 1);
	cr_assert_eq(cur.zspage, za);
	uzs_pool_evict_end(p, &old);
	cr_assert_eq(lru(p, (uint32_t[MAXZ]){ 0 }), 0,
		     "stale ticket put an isolated zspage back on the LRU");
	tl_check(p);
	cr_assert_eq(uzs_pool_evict_begin(p, &probe), -ENOENT);
	c = tl_put(p, 500, 3);
	cr_assert_neq(uzs_pool_zspage_of(p, c), za,
		      "stale ticket let an alloc into an isolated zspage");
	uzs_pool_evict_end(p, &cur);
	/* And with the new zspage back on the LRU, the stale ticket is still
	 * a no-op: it must not be put on the LRU twice. */
	uzs_pool_evict_end(p, &old);
	cr_assert_eq(lru(p, (uint32_t[MAXZ]){ 0 }), 2);
	tl_check(p);
	d = tl_put(p, 100, 4);
	tl_expect(p, b, 3000, 2);
	tl_expect(p, c, 500, 3);
	tl_expect(p, d, 100, 4);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_evict, garbage_ticket_is_ignored)
{
	struct rig r;
	struct uzs_evict_batch b;

	rig_make(&r, 2);
	memset(&b, 0, sizeof(b));
	b.zspage = UINT32_MAX;
	uzs_pool_evict_end(r.p, &b);
	b.zspage = 1u << 30;
	uzs_pool_evict_end(r.p, &b);
	b.zspage = r.z[0];        /* live, not isolated */
	b.generation = 0;
	uzs_pool_evict_end(r.p, &b);
	expect_lru(r.p, r.z, 2);
	tl_check(r.p);
	uzs_pool_destroy(r.p);
}

/* ------------------------------------------------------------ big batch */

Test(pool_evict, batch_lists_every_object_of_a_crowded_zspage)
{
	for (unsigned zp = 1; zp <= 2; zp++) {
		struct uzs_pool *p = tl_pool(0, zp);
		enum { N = 600 };
		static uzs_handle_t h[N];
		struct uzs_evict_batch b;
		unsigned in_z = 0;
		int rc;

		for (int i = 0; i < N; i++)
			h[i] = tl_put(p, 1 + (size_t)(i % 8), (uint64_t)i);
		rc = uzs_pool_evict_begin(p, &b);
		cr_assert_gt(rc, 0);
		cr_assert_leq(rc, (int)UZS_POOL_MAX_ZSPAGE_OBJS);
		cr_assert_eq(b.count, (unsigned)rc);
		for (int i = 0; i < N; i++) {
			if (uzs_pool_zspage_of(p, h[i]) != b.zspage)
				continue;
			unsigned hits = 0;

			in_z++;
			for (unsigned j = 0; j < b.count; j++)
				hits += b.entries[j].handle == h[i];
			cr_assert_eq(hits, 1, "object %d of the zspage appears %u "
				     "times in the batch", i, hits);
		}
		cr_assert_eq(in_z, b.count, "batch has %u objects, zspage %u",
			     b.count, in_z);
		for (unsigned j = 0; j < b.count; j++) {
			uint64_t i = b.entries[j].owner;

			cr_assert_lt(i, N);
			cr_assert_eq(b.entries[j].handle, h[i]);
			tl_expect(p, h[i], 1 + (size_t)(i % 8), i);
			cr_assert_eq(uzs_pool_free(p, h[i]), 0);
		}
		cr_assert_eq(tl_stats(p).evicted_pages_freed, zp);
		uzs_pool_evict_end(p, &b);
		tl_check(p);
		uzs_pool_destroy(p);
	}
}
