/*
 * test_pool.c - the compressed-page pool: argument checking, round trips,
 * layout (density, straddling, release of empty zspages, defrag,
 * placement), stats, the size limit and compaction.
 *
 * Eviction and the LRU are in test_pool_evict.c, long randomized sequences
 * against a reference model in test_pool_random.c, threads in
 * test_pool_threads.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/mman.h>
#include <sys/uio.h>

#include "mmap_region.h"
#include "pool_testlib.h"

/* ------------------------------------------------------- config, create */

Test(pool_config, null_config_gives_an_empty_pool)
{
	struct uzs_pool *p = NULL;
	struct uzs_pool_stats st;

	cr_assert_eq(uzs_pool_create(NULL, &p), 0);
	st = tl_stats(p);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.stored_bytes, 0);
	cr_assert_eq(st.pool_bytes, 0);
	cr_assert_eq(st.zspages, 0);
	for (int g = 0; g < UZS_POOL_FULLNESS_GROUPS; g++)
		cr_assert_eq(st.zspages_by_fullness[g], 0);
	cr_assert_eq(st.allocs, 0);
	cr_assert_eq(st.frees, 0);
	cr_assert_eq(st.alloc_failures, 0);
	cr_assert_eq(st.evictions, 0);
	cr_assert_eq(st.evicted_pages_freed, 0);
	cr_assert_eq(st.compactions, 0);
	cr_assert_eq(st.compacted_objects, 0);
	cr_assert_eq(st.compacted_pages_freed, 0);
	cr_assert_eq(st.defrags, 0);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_config, zspage_pages_above_two_is_rejected)
{
	struct uzs_pool_config cfg = { 0, -1, 3 };
	struct uzs_pool *p = (struct uzs_pool *)&cfg;

	cr_assert_eq(uzs_pool_create(&cfg, &p), -EINVAL);
	cr_assert_eq(p, (struct uzs_pool *)&cfg, "create wrote *out on failure");
	cfg.zspage_pages = 1000;
	cr_assert_eq(uzs_pool_create(&cfg, &p), -EINVAL);
}

Test(pool_config, max_bytes_below_one_page_is_rejected)
{
	struct uzs_pool_config cfg = { 1, -1, 0 };
	struct uzs_pool *p = NULL;

	cr_assert_eq(uzs_pool_create(&cfg, &p), -EINVAL);
	cfg.max_bytes = PG - 1;
	cr_assert_eq(uzs_pool_create(&cfg, &p), -EINVAL);
	cr_assert_null(p);
	cfg.max_bytes = PG;
	cr_assert_eq(uzs_pool_create(&cfg, &p), 0);
	uzs_pool_destroy(p);
}

Test(pool_config, every_valid_zspage_pages_is_accepted)
{
	for (unsigned zp = 0; zp <= 2; zp++) {
		struct uzs_pool *p = tl_pool(0, zp);
		uzs_handle_t h = tl_put(p, 3000, zp + 1);

		tl_expect(p, h, 3000, zp + 1);
		tl_check(p);
		uzs_pool_destroy(p);
	}
}

Test(pool_config, numa_node_that_does_not_exist_is_rejected)
{
	struct uzs_pool_config cfg = { 0, 4000, 0 };
	struct uzs_pool *p = NULL;

	cr_assert_eq(uzs_pool_create(&cfg, &p), -EINVAL);
	cfg.numa_node = 1 << 20;
	cr_assert_eq(uzs_pool_create(&cfg, &p), -EINVAL);
	cr_assert_null(p);
}

Test(pool_config, pool_bound_to_node_zero_works)
{
	struct uzs_pool_config cfg = { 64 * PG, 0, 0 };
	struct uzs_pool *p = NULL;
	uzs_handle_t h[100];

	if (access("/sys/devices/system/node/node0", F_OK) != 0)
		cr_skip_test("no NUMA node 0 here");
	cr_assert_eq(uzs_pool_create(&cfg, &p), 0);
	for (int i = 0; i < 100; i++)
		h[i] = tl_put(p, 1 + (size_t)i * 40, (uint64_t)i);
	for (int i = 0; i < 100; i++)
		tl_expect(p, h[i], 1 + (size_t)i * 40, (uint64_t)i);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_config, destroy_of_null_is_harmless)
{
	uzs_pool_destroy(NULL);
}

Test(pool_config, destroy_with_live_objects_is_clean)
{
	/* ASan/LSan would report what a destroy leaves behind. */
	struct uzs_pool *p = tl_pool(0, 0);

	for (int i = 0; i < 1000; i++)
		tl_put(p, 1 + (size_t)i * 4 % PG, (uint64_t)i);
	uzs_pool_destroy(p);
}

/* ------------------------------------------------------- bad arguments */

static void stats_unchanged_but_failures(const struct uzs_pool_stats *a,
					 const struct uzs_pool_stats *b)
{
	cr_assert_eq(a->objects, b->objects);
	cr_assert_eq(a->stored_bytes, b->stored_bytes);
	cr_assert_eq(a->pool_bytes, b->pool_bytes);
	cr_assert_eq(a->zspages, b->zspages);
	cr_assert_eq(a->allocs, b->allocs);
	cr_assert_eq(a->frees, b->frees);
}

Test(pool_args, alloc_rejects_len_zero_and_above_a_page)
{
	struct uzs_pool *p = tl_pool(0, 0);
	unsigned char buf[PG + 1] = { 0 };
	struct uzs_pool_stats a, b;
	uzs_handle_t h = 12345;
	uzs_handle_t keep = tl_put(p, 100, 1);

	a = tl_stats(p);
	cr_assert_eq(uzs_pool_alloc(p, buf, 0, 1, &h), -EINVAL);
	cr_assert_eq(uzs_pool_alloc(p, buf, PG + 1, 1, &h), -EINVAL);
	cr_assert_eq(uzs_pool_alloc(p, buf, (size_t)-1, 1, &h), -EINVAL);
	cr_assert_eq(uzs_pool_alloc(p, buf, (size_t)1 << 32, 1, &h), -EINVAL);
	cr_assert_eq(h, 12345, "a failed alloc wrote the handle");
	b = tl_stats(p);
	stats_unchanged_but_failures(&a, &b);
	tl_expect(p, keep, 100, 1);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_args, alloc_rejects_null_src_and_null_out)
{
	struct uzs_pool *p = tl_pool(0, 0);
	unsigned char buf[16] = { 0 };
	struct uzs_pool_stats a, b;
	uzs_handle_t h = 777;

	a = tl_stats(p);
	cr_assert_eq(uzs_pool_alloc(p, NULL, 16, 1, &h), -EINVAL);
	cr_assert_eq(h, 777);
	cr_assert_eq(uzs_pool_alloc(p, buf, 16, 1, NULL), -EINVAL);
	b = tl_stats(p);
	stats_unchanged_but_failures(&a, &b);
	cr_assert_eq(b.objects, 0);
	cr_assert_eq(b.pool_bytes, 0);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_args, handle_zero_is_never_valid)
{
	struct uzs_pool *p = tl_pool(0, 0);
	unsigned char buf[PG];
	uint64_t owner = 99;

	tl_put(p, 10, 1);
	cr_assert_eq(uzs_pool_read(p, 0, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(uzs_pool_free(p, 0), -EINVAL);
	cr_assert_eq(uzs_pool_owner(p, 0, &owner), -EINVAL);
	cr_assert_eq(owner, 99);
	cr_assert_eq(uzs_pool_length(p, 0), -EINVAL);
	cr_assert_eq(uzs_pool_zspage_of(p, 0), UINT32_MAX);
	cr_assert_eq(tl_stats(p).frees, 0);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_args, never_issued_handles_are_rejected)
{
	struct uzs_pool *p = tl_pool(0, 0);
	unsigned char buf[PG];
	uint64_t owner;
	uzs_handle_t h = tl_put(p, 10, 1);
	uzs_handle_t bad[] = { h + 1, h + 1000, (uzs_handle_t)1 << 32,
			       ((uzs_handle_t)1 << 32) + h, UINT64_MAX };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(uzs_pool_read(p, bad[i], buf, sizeof(buf)), -EINVAL,
			     "read of bogus handle %llu", (unsigned long long)bad[i]);
		cr_assert_eq(uzs_pool_free(p, bad[i]), -EINVAL);
		cr_assert_eq(uzs_pool_owner(p, bad[i], &owner), -EINVAL);
		cr_assert_eq(uzs_pool_length(p, bad[i]), -EINVAL);
		cr_assert_eq(uzs_pool_zspage_of(p, bad[i]), UINT32_MAX);
	}
	tl_expect(p, h, 10, 1);
	cr_assert_eq(tl_stats(p).objects, 1);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_args, freed_handle_is_rejected_and_double_free_is_einval)
{
	struct uzs_pool *p = tl_pool(0, 0);
	unsigned char buf[PG];
	uint64_t owner;
	uzs_handle_t a = tl_put(p, 500, 1);
	uzs_handle_t b = tl_put(p, 600, 2);
	struct uzs_pool_stats st;

	cr_assert_eq(uzs_pool_free(p, a), 0);
	cr_assert_eq(uzs_pool_free(p, a), -EINVAL);
	cr_assert_eq(uzs_pool_read(p, a, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(uzs_pool_owner(p, a, &owner), -EINVAL);
	cr_assert_eq(uzs_pool_length(p, a), -EINVAL);
	cr_assert_eq(uzs_pool_zspage_of(p, a), UINT32_MAX);
	st = tl_stats(p);
	cr_assert_eq(st.frees, 1, "the double free was counted");
	cr_assert_eq(st.objects, 1);
	cr_assert_eq(st.stored_bytes, 600);
	tl_expect(p, b, 600, 2);
	tl_check(p);
	/* Last object gone: the pool is empty; a second free changes nothing. */
	cr_assert_eq(uzs_pool_free(p, b), 0);
	cr_assert_eq(uzs_pool_free(p, b), -EINVAL);
	st = tl_stats(p);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.frees, 2);
	cr_assert_eq(st.pool_bytes, 0);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_args, read_into_a_too_small_buffer_is_einval_and_writes_nothing)
{
	struct uzs_pool *p = tl_pool(0, 0);
	unsigned char buf[PG + 8];
	uzs_handle_t h = tl_put(p, 1000, 5);

	memset(buf, CANARY, sizeof(buf));
	cr_assert_eq(uzs_pool_read(p, h, buf, 999), -EINVAL);
	cr_assert_eq(uzs_pool_read(p, h, buf, 0), -EINVAL);
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], CANARY, "failed read wrote byte %zu", i);
	/* Exactly the object's size is enough. */
	cr_assert_eq(uzs_pool_read(p, h, buf, 1000), 1000);
	tl_expect_bytes(buf, 1000, 5, h);
	cr_assert_eq(buf[1000], CANARY);
	tl_expect(p, h, 1000, 5);
	uzs_pool_destroy(p);
}

Test(pool_args, read_and_owner_reject_null_output_pointers)
{
	/* As alloc refuses a NULL src or out: bad input is an error code, not
	 * a crash (uzswap.h: nothing here aborts on bad input). */
	struct uzs_pool *p = tl_pool(0, 0);
	uzs_handle_t h = tl_put(p, 100, 1);

	cr_assert_eq(uzs_pool_read(p, h, NULL, PG), -EINVAL);
	cr_assert_eq(uzs_pool_owner(p, h, NULL), -EINVAL);
	tl_expect(p, h, 100, 1);
	uzs_pool_destroy(p);
}

/* The owner tag follows the data (mremap): reads and eviction name the
 * new owner, the bytes do not change, a dead handle is refused. */
Test(pool_args, set_owner_retags_a_live_object)
{
	struct uzs_pool *p = tl_pool(0, 0);
	uzs_handle_t h = tl_put(p, 300, 7);
	struct uzs_evict_batch *b = malloc(sizeof(*b));
	uint64_t owner = 0;

	cr_assert_not_null(b);
	cr_assert_eq(uzs_pool_set_owner(p, h, 0xabc000), 0);
	cr_assert_eq(uzs_pool_owner(p, h, &owner), 0);
	cr_assert_eq(owner, 0xabc000);
	tl_expect_obj(p, h, 300, 7, 0xabc000);  /* same bytes, new owner */
	cr_assert_eq(uzs_pool_evict_begin(p, b), 1);
	cr_assert_eq(b->entries[0].handle, h);
	cr_assert_eq(b->entries[0].owner, 0xabc000);
	uzs_pool_evict_end(p, b);
	cr_assert_eq(uzs_pool_free(p, h), 0);
	cr_assert_eq(uzs_pool_set_owner(p, h, 1), -EINVAL);
	cr_assert_eq(uzs_pool_set_owner(p, 0, 1), -EINVAL);
	free(b);
	uzs_pool_destroy(p);
}

/* ---------------------------------------------------------- round trips */

Test(pool_roundtrip, every_size_from_1_to_4096_round_trips)
{
	for (unsigned zp = 0; zp <= 2; zp++) {
		struct uzs_pool *p = tl_pool(0, zp);
		static uzs_handle_t h[PG + 1];
		struct uzs_pool_stats st;

		for (size_t len = 1; len <= PG; len++)
			h[len] = tl_put(p, len, len * 1000 + zp);
		for (size_t len = 1; len <= PG; len++)
			tl_expect(p, h[len], len, len * 1000 + zp);
		tl_check(p);
		st = tl_stats(p);
		cr_assert_eq(st.objects, PG);
		cr_assert_eq(st.stored_bytes, (uint64_t)PG * (PG + 1) / 2);
		tl_stats_sane(&st, 0);
		/* Free the odd sizes, the even ones stay intact. */
		for (size_t len = 1; len <= PG; len += 2)
			cr_assert_eq(uzs_pool_free(p, h[len]), 0);
		for (size_t len = 2; len <= PG; len += 2)
			tl_expect(p, h[len], len, len * 1000 + zp);
		tl_check(p);
		uzs_pool_destroy(p);
	}
}

Test(pool_roundtrip, owner_and_length_are_kept)
{
	struct uzs_pool *p = tl_pool(0, 0);
	uint64_t owners[] = { 0, 1, UINT64_MAX, 0x8000000000000000ull,
			      0x0123456789abcdefull };
	uzs_handle_t h[5];
	unsigned char buf[64];

	for (int i = 0; i < 5; i++) {
		tu_pattern(buf, (size_t)10 + (size_t)i, (uint64_t)i);
		cr_assert_eq(uzs_pool_alloc(p, buf, 10 + (size_t)i, owners[i], &h[i]), 0);
	}
	for (int i = 0; i < 5; i++)
		tl_expect_obj(p, h[i], 10 + (size_t)i, (uint64_t)i, owners[i]);
	uzs_pool_destroy(p);
}

Test(pool_roundtrip, alloc_copies_the_source_at_call_time)
{
	struct uzs_pool *p = tl_pool(0, 0);
	unsigned char buf[PG];
	uzs_handle_t h;

	tu_pattern(buf, sizeof(buf), 77);
	cr_assert_eq(uzs_pool_alloc(p, buf, sizeof(buf), 77, &h), 0);
	memset(buf, 0, sizeof(buf));
	tl_expect(p, h, PG, 77);
	uzs_pool_destroy(p);
}

Test(pool_roundtrip, live_handles_are_distinct_and_nonzero)
{
	struct uzs_pool *p = tl_pool(0, 0);
	struct tl_model m;
	uint64_t st = 3;

	tl_model_init(&m);
	/* tl_model_add fails on a zero or duplicate live handle. */
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < 2000; i++)
			tl_model_alloc(p, &m, (uint32_t)tu_range(&st, 1, 300),
				       tu_rand(&st), tu_rand(&st), false);
		while (m.n > 1000)
			tl_model_free_at(p, &m, tu_rand(&st) % m.n);
	}
	tl_model_verify_all(p, &m, 0);
	tl_model_fini(&m);
	uzs_pool_destroy(p);
}

Test(pool_roundtrip, handles_beyond_the_first_table_chunk_work)
{
	/* 150000 live objects: handles well past 65536, freed and reused. */
	enum { N = 150000 };
	struct uzs_pool *p = tl_pool(0, 1);
	static uzs_handle_t h[N];
	static uint32_t tag[N];
	uzs_handle_t maxh = 0;
	struct uzs_evict_batch b;
	uint64_t st = 77;

	for (uint32_t i = 0; i < N; i++) {
		tag[i] = i;
		h[i] = tl_put(p, 16 + i % 17, i);
		if (h[i] > maxh)
			maxh = h[i];
	}
	cr_assert_geq(maxh, N);
	for (uint32_t i = 0; i < N; i++)
		if (tu_rand(&st) % 2) {
			cr_assert_eq(uzs_pool_free(p, h[i]), 0);
			tag[i] = N + i;
			h[i] = 0;
		}
	for (uint32_t i = 0; i < N; i++)
		if (!h[i])
			h[i] = tl_put(p, 16 + i % 17, tag[i]);
	for (uint32_t i = 0; i < N; i += 1 + (uint32_t)(tu_rand(&st) % 8))
		tl_expect(p, h[i], 16 + i % 17, tag[i]);
	cr_assert_eq(tl_stats(p).objects, N);
	tl_check(p);
	/* Evict the coldest zspage (handles from the first chunk) and one
	 * more after compaction, then verify everything. */
	cr_assert_gt(uzs_pool_evict_begin(p, &b), 0);
	uzs_pool_evict_end(p, &b);
	uzs_pool_compact(p);
	for (uint32_t i = 0; i < N; i++) {
		unsigned char buf[64];
		long n = uzs_pool_read(p, h[i], buf, sizeof(buf));

		if (n != 16 + (long)(i % 17))
			cr_assert_fail("object %u: read returned %ld", i, n);
		tl_expect_bytes(buf, (size_t)n, tag[i], h[i]);
	}
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_layout, tiny_objects_pack_densely)
{
	struct uzs_pool *p = tl_pool(0, 1);
	uzs_handle_t h[2000];

	for (int i = 0; i < 2000; i++)
		h[i] = tl_put(p, 1 + (size_t)(i % 8), (uint64_t)i);
	/* At least 64 objects per page, the density goal. */
	cr_assert_leq(tl_stats(p).pool_bytes, (2000 / 64 + 1) * PG);
	for (int i = 0; i < 2000; i++)
		tl_expect(p, h[i], 1 + (size_t)(i % 8), (uint64_t)i);
	tl_check(p);
	uzs_pool_destroy(p);
}

/* ------------------------------------------------------ layout: density */

static void density_56(unsigned zspage_pages)
{
	struct uzs_pool *p = tl_pool(0, zspage_pages);
	uzs_handle_t h[64];
	struct uzs_pool_stats st;

	for (int i = 0; i < 64; i++)
		h[i] = tl_put(p, 56, (uint64_t)i);
	st = tl_stats(p);
	cr_assert_eq(st.pool_bytes, PG, "64 objects of 56 B took %llu bytes",
		     (unsigned long long)st.pool_bytes);
	cr_assert_eq(st.zspages, 1);
	for (int i = 0; i < 64; i++) {
		cr_assert_eq(uzs_pool_zspage_of(p, h[i]), uzs_pool_zspage_of(p, h[0]));
		tl_expect(p, h[i], 56, (uint64_t)i);
	}
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_layout, sixty_four_56_byte_objects_fit_in_one_page)
{
	density_56(1);
}

Test(pool_layout, sixty_four_56_byte_objects_fit_in_one_page_auto_zspages)
{
	density_56(0);
}

Test(pool_layout, objects_pack_at_byte_granularity)
{
	/* 73 * 56 = 4088, and 8 more bytes fill the page exactly. */
	struct uzs_pool *p = tl_pool(0, 1);
	size_t used = 0;
	uzs_handle_t h;

	for (int i = 0; i < 73; i++)
		tl_put(p, 56, (uint64_t)i);
	h = tl_put(p, 8, 73);
	cr_assert_eq(tl_stats(p).pool_bytes, PG);
	cr_assert_eq(tl_stats(p).zspages_by_fullness[4], 1, "page not full");
	cr_assert_eq(tl_stats(p).split_objects, 0);
	tl_expect(p, h, 8, 73);
	h = tl_put(p, 1, 74);
	cr_assert_eq(tl_stats(p).pool_bytes, 2 * PG, "a full page took more");
	tl_expect(p, h, 1, 74);
	tl_check(p);
	uzs_pool_destroy(p);

	/* Odd sizes leave no gaps: 56 objects of 57..71 bytes, then one that
	 * fills the page to the byte. */
	p = tl_pool(0, 1);
	for (int i = 0; i < 56; i++) {
		tl_put(p, 57 + (size_t)(i % 15), (uint64_t)i);
		used += 57 + (size_t)(i % 15);
	}
	tl_put(p, PG - used, 99);
	cr_assert_eq(tl_stats(p).pool_bytes, PG);
	cr_assert_eq(tl_stats(p).zspages_by_fullness[4], 1, "page not full");
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_layout, two_page_zspages_hold_two_pages_of_objects)
{
	struct uzs_pool *p = tl_pool(0, 2);
	uzs_handle_t h[146];

	for (int i = 0; i < 146; i++) /* 146 * 56 = 8176 <= 8192 */
		h[i] = tl_put(p, 56, (uint64_t)i);
	cr_assert_eq(tl_stats(p).pool_bytes, 2 * PG);
	cr_assert_eq(tl_stats(p).zspages, 1);
	for (int i = 0; i < 146; i++)
		tl_expect(p, h[i], 56, (uint64_t)i);
	cr_assert_eq(uzs_pool_zspage_pages(p, uzs_pool_zspage_of(p, h[0])), 2);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_layout, zspage_pages_config_sets_the_zspage_size)
{
	for (unsigned zp = 1; zp <= 2; zp++) {
		struct uzs_pool *p = tl_pool(0, zp);
		uint64_t st = zp;

		for (int i = 0; i < 500; i++) {
			size_t len = (size_t)tu_range(&st, 1, PG);
			uzs_handle_t h = tl_put(p, len, (uint64_t)i);

			cr_assert_eq(uzs_pool_zspage_pages(p, uzs_pool_zspage_of(p, h)),
				     zp);
		}
		cr_assert_eq(tl_stats(p).pool_bytes, tl_stats(p).zspages * zp * PG);
		tl_check(p);
		uzs_pool_destroy(p);
	}
}

/* -------------------------------------------------- layout: straddling */

/* Sum of the lengths of live objects in zspage z among h[0..n). */
static uint64_t bytes_in_zspage(struct uzs_pool *p, const uzs_handle_t *h,
				const size_t *len, size_t n, uint32_t z)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < n; i++)
		if (h[i] && uzs_pool_zspage_of(p, h[i]) == z)
			sum += len[i];
	return sum;
}

Test(pool_straddle, objects_cross_the_page_boundary_of_a_two_page_zspage)
{
	struct uzs_pool *p = tl_pool(0, 2);
	size_t len[3] = { 3000, 3000, 2000 };
	uzs_handle_t h[3];
	uint32_t z;

	for (int i = 0; i < 3; i++)
		h[i] = tl_put(p, len[i], 100 + (uint64_t)i);
	z = uzs_pool_zspage_of(p, h[0]);
	cr_assert_neq(z, UINT32_MAX);
	cr_assert_eq(uzs_pool_zspage_pages(p, z), 2);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(uzs_pool_zspage_of(p, h[i]), z);
	/* 8000 bytes in one zspage: something crosses the 4096 mark. */
	cr_assert_gt(bytes_in_zspage(p, h, len, 3, z), PG);
	cr_assert_eq(tl_stats(p).pool_bytes, 2 * PG);
	for (int i = 0; i < 3; i++)
		tl_expect(p, h[i], len[i], 100 + (uint64_t)i);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_straddle, full_page_object_straddles_after_a_small_one)
{
	struct uzs_pool *p = tl_pool(0, 2);
	uzs_handle_t a = tl_put(p, 100, 1), b = tl_put(p, PG, 2);
	size_t len[2] = { 100, PG };
	uzs_handle_t h[2] = { a, b };

	cr_assert_eq(uzs_pool_zspage_of(p, a), uzs_pool_zspage_of(p, b));
	cr_assert_gt(bytes_in_zspage(p, h, len, 2, uzs_pool_zspage_of(p, a)), PG);
	tl_expect(p, a, 100, 1);
	tl_expect(p, b, PG, 2);
	uzs_pool_destroy(p);
}

Test(pool_straddle, random_fill_of_two_page_zspages_keeps_every_byte)
{
	struct uzs_pool *p = tl_pool(0, 2);
	enum { N = 3000 };
	static uzs_handle_t h[N];
	static size_t len[N];
	uint64_t st = 2024;
	unsigned straddled = 0;

	for (int i = 0; i < N; i++) {
		len[i] = (size_t)tu_range(&st, 1, PG);
		h[i] = tl_put(p, len[i], 5000 + (uint64_t)i);
	}
	for (int i = 0; i < N; i++)
		tl_expect(p, h[i], len[i], 5000 + (uint64_t)i);
	/* Zspages holding more than a page of object bytes: straddlers. */
	for (int i = 0; i < N; i += 7)
		if (bytes_in_zspage(p, h, len, N, uzs_pool_zspage_of(p, h[i])) > PG)
			straddled++;
	cr_assert_gt(straddled, 10, "hardly any zspage holds over a page");
	/* Free half and refill: the holes take new objects, split where needed. */
	for (int i = 0; i < N; i += 2) {
		cr_assert_eq(uzs_pool_free(p, h[i]), 0);
		h[i] = 0;
	}
	for (int i = 0; i < N; i += 2) {
		len[i] = (size_t)tu_range(&st, 1, PG);
		h[i] = tl_put(p, len[i], 9000 + (uint64_t)i);
	}
	cr_assert_gt(tl_stats(p).split_objects, 0, "refill never split an object");
	cr_assert_gt(tl_stats(p).hole_fills, 0, "refill never reused a hole");
	cr_assert_eq(tl_stats(p).defrags, 0);
	for (int i = 0; i < N; i++)
		tl_expect(p, h[i], len[i], (i % 2 ? 5000 : 9000) + (uint64_t)i);
	tl_check(p);
	uzs_pool_destroy(p);
}

/* -------------------------------------------------- layout: release */

Test(pool_release, zspage_is_released_when_its_last_object_is_freed)
{
	for (unsigned zp = 1; zp <= 2; zp++) {
		struct uzs_pool *p = tl_pool(0, zp);
		size_t obj = zp * PG / 2;
		uzs_handle_t a0 = tl_put(p, obj, 1), a1 = tl_put(p, obj, 2);
		uzs_handle_t b0 = tl_put(p, obj, 3), b1 = tl_put(p, obj, 4);
		struct uzs_pool_stats st;

		cr_assert_eq(uzs_pool_zspage_of(p, a0), uzs_pool_zspage_of(p, a1));
		cr_assert_eq(uzs_pool_zspage_of(p, b0), uzs_pool_zspage_of(p, b1));
		cr_assert_neq(uzs_pool_zspage_of(p, a0), uzs_pool_zspage_of(p, b0));
		cr_assert_eq(tl_stats(p).pool_bytes, 2 * zp * PG);

		cr_assert_eq(uzs_pool_free(p, a0), 0);
		cr_assert_eq(tl_stats(p).pool_bytes, 2 * zp * PG);
		cr_assert_eq(uzs_pool_free(p, a1), 0);
		st = tl_stats(p);
		cr_assert_eq(st.pool_bytes, zp * PG, "empty zspage not released");
		cr_assert_eq(st.zspages, 1);
		tl_check(p);
		tl_expect(p, b0, obj, 3);
		cr_assert_eq(uzs_pool_free(p, b1), 0);
		cr_assert_eq(uzs_pool_free(p, b0), 0);
		st = tl_stats(p);
		cr_assert_eq(st.pool_bytes, 0);
		cr_assert_eq(st.zspages, 0);
		cr_assert_eq(st.objects, 0);
		cr_assert_eq(st.stored_bytes, 0);
		tl_check(p);
		uzs_pool_destroy(p);
	}
}

Test(pool_release, pool_empties_completely_after_random_churn)
{
	for (unsigned zp = 0; zp <= 2; zp++) {
		struct uzs_pool *p = tl_pool(0, zp);
		struct tl_model m;
		uint64_t st = 11 + zp;

		tl_model_init(&m);
		for (int i = 0; i < 10000; i++) {
			if (m.n == 0 || tu_rand(&st) % 3)
				tl_model_alloc(p, &m, (uint32_t)tu_range(&st, 1, PG),
					       tu_rand(&st), tu_rand(&st), false);
			else
				tl_model_free_at(p, &m, tu_rand(&st) % m.n);
		}
		tl_model_verify_all(p, &m, 0);
		while (m.n)
			tl_model_free_at(p, &m, tu_rand(&st) % m.n);
		cr_assert_eq(tl_stats(p).pool_bytes, 0);
		cr_assert_eq(tl_stats(p).zspages, 0);
		tl_model_verify_all(p, &m, 0);
		tl_model_fini(&m);
		uzs_pool_destroy(p);
	}
}

static long rss_pages(void)
{
	long size = 0, rss = -1;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &size, &rss) != 2)
		rss = -1;
	fclose(f);
	return rss;
}

Test(pool_release, freed_zspages_give_memory_back_to_the_os)
{
	enum { N = 4096 };  /* 16 MiB of full pages */
	static uzs_handle_t h[N];
	long page = sysconf(_SC_PAGESIZE);
	long before, full, after;
	struct uzs_pool *p = tl_pool(0, 1);

	before = rss_pages();
	if (before < 0)
		cr_skip_test("no /proc/self/statm");
	for (int i = 0; i < N; i++)
		h[i] = tl_put(p, PG, (uint64_t)i);
	full = rss_pages();
	cr_assert_eq(tl_stats(p).pool_bytes, (uint64_t)N * PG);
	for (int i = 0; i < N; i++)
		cr_assert_eq(uzs_pool_free(p, h[i]), 0);
	after = rss_pages();
	cr_assert_eq(tl_stats(p).pool_bytes, 0);
	/* Tolerant: at least 3/4 of the 16 MiB shows up and goes away again. */
	cr_assert_geq((full - before) * page, (long)N * PG * 3 / 4,
		      "RSS grew by %ld pages only", full - before);
	cr_assert_geq((full - after) * page, (long)N * PG * 3 / 4,
		      "RSS fell by %ld pages only after freeing everything",
		      full - after);
	uzs_pool_destroy(p);
}

/* Many ranges discarded in one call: each reads as zeros afterwards, and
 * the pages between them keep their bytes. */
Test(pool_release, discard_many_zeroes_exactly_the_ranges_given)
{
	enum { PAGES = 64 };
	unsigned char *a = uzs_region_reserve(PAGES * PG);
	struct iovec v[PAGES / 2];
	unsigned n = 0;

	cr_assert_not_null(a);
	for (unsigned i = 0; i < PAGES; i++)
		memset(a + i * PG, 0x40 + (int)i, PG);
	/* Every other page, then runs of two: one call for all. */
	for (unsigned i = 0; i < PAGES / 2; i += 2)
		v[n++] = (struct iovec){ a + i * PG, PG };
	v[n++] = (struct iovec){ a + 40 * PG, 2 * PG };
	v[n++] = (struct iovec){ a + 50 * PG, 2 * PG };
	uzs_region_discard_many(v, n);
	for (unsigned i = 0; i < PAGES; i++) {
		bool gone = (i < PAGES / 2 && i % 2 == 0) || i == 40 || i == 41 ||
			    i == 50 || i == 51;

		for (unsigned b = 0; b < PG; b += 512)
			cr_assert_eq(a[i * PG + b], gone ? 0 : 0x40 + i,
				     "page %u byte %u: %#x", i, b, a[i * PG + b]);
	}
	uzs_region_unreserve(a, PAGES * PG);
}

/* ---------------------------------------------- layout: holes and splits */

Test(pool_holes, scattered_holes_take_an_object_in_two_fragments)
{
	struct uzs_pool *p = tl_pool(0, 1);
	uzs_handle_t h[8], big;
	uint32_t z, ids[2], offs[2];
	struct uzs_pool_stats st;

	for (int i = 0; i < 8; i++)
		h[i] = tl_put(p, 500, (uint64_t)i);  /* 4000, 96 left */
	z = uzs_pool_zspage_of(p, h[0]);
	for (int i = 0; i < 8; i += 2)
		cr_assert_eq(uzs_pool_free(p, h[i]), 0);
	/* Four holes of 500 and 96 at the end: 1000 B goes in two of them,
	 * nothing slides. */
	big = tl_put(p, 1000, 100);
	st = tl_stats(p);
	cr_assert_eq(uzs_pool_fragments_of(p, big, ids, offs), 2);
	cr_assert(ids[0] == z && ids[1] == z, "did not reuse the holes");
	cr_assert_eq(offs[0], 0);
	cr_assert_eq(offs[1], 1000);
	cr_assert_eq(st.pool_bytes, PG);
	cr_assert_eq(st.split_objects, 1);
	cr_assert_eq(st.hole_fills, 1);
	cr_assert_eq(st.defrags, 0);
	for (int i = 1; i < 8; i += 2) {
		uint32_t o[2];

		cr_assert_eq(uzs_pool_fragments_of(p, h[i], NULL, o), 1);
		cr_assert_eq(o[0], (uint32_t)i * 500, "an object moved");
		tl_expect(p, h[i], 500, (uint64_t)i);
	}
	tl_expect(p, big, 1000, 100);
	cr_assert_eq(st.zspages_by_fullness[2], 1);  /* 3000 of 4096 */
	/* Freeing it frees both fragments. */
	cr_assert_eq(uzs_pool_free(p, big), 0);
	cr_assert_eq(tl_stats(p).split_objects, 0);
	cr_assert_eq(tl_stats(p).stored_bytes, 2000);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_holes, a_freed_hole_is_refilled_in_place)
{
	struct uzs_pool *p = tl_pool(0, 1);
	uzs_handle_t a = tl_put(p, 1000, 1), b = tl_put(p, 3096, 2), c;
	uint32_t offs[2];

	cr_assert_eq(uzs_pool_free(p, a), 0);
	c = tl_put(p, 1000, 3);
	cr_assert_eq(uzs_pool_fragments_of(p, c, NULL, offs), 1);
	cr_assert_eq(offs[0], 0);
	cr_assert_eq(tl_stats(p).pool_bytes, PG);
	cr_assert_eq(tl_stats(p).hole_fills, 1);
	tl_expect(p, b, 3096, 2);
	tl_expect(p, c, 1000, 3);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_straddle, an_object_too_big_for_the_rest_of_a_zspage_splits_into_the_next)
{
	/* Two 3000 B objects in 1-page zspages: the second fills the first
	 * page's last 1096 bytes and 1904 of a fresh one. */
	struct uzs_pool *p = tl_pool(0, 1);
	uzs_handle_t a = tl_put(p, 3000, 1), b = tl_put(p, 3000, 2);
	uint32_t ids[2], offs[2], order[2];

	cr_assert_eq(uzs_pool_fragments_of(p, b, ids, offs), 2);
	cr_assert_eq(ids[0], uzs_pool_zspage_of(p, a));
	cr_assert_neq(ids[1], ids[0]);
	cr_assert_eq(offs[0], 3000);
	cr_assert_eq(offs[1], 0);
	cr_assert_eq(uzs_pool_length(p, b), 3000);
	cr_assert_eq(tl_stats(p).split_objects, 1);
	cr_assert_eq(tl_stats(p).pool_bytes, 2 * PG);
	tl_expect(p, a, 3000, 1);
	tl_expect(p, b, 3000, 2);
	/* The tail's zspage is the most recently used. */
	cr_assert_eq(uzs_pool_lru_order(p, order, 2), 2);
	cr_assert_eq(order[1], ids[1]);
	/* Freeing the first leaves the split one whole; freeing it then
	 * releases both zspages. */
	cr_assert_eq(uzs_pool_free(p, a), 0);
	tl_expect(p, b, 3000, 2);
	cr_assert_eq(uzs_pool_free(p, b), 0);
	cr_assert_eq(tl_stats(p).pool_bytes, 0);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_straddle, a_fill_of_large_objects_wastes_only_the_last_zspage)
{
	for (unsigned zp = 0; zp <= 2; zp++) {
		struct uzs_pool *p = tl_pool(0, zp);
		uint64_t st = 77 + zp, bytes = 0;
		struct uzs_pool_stats s;

		for (int i = 0; i < 2000; i++) {
			size_t len = (size_t)tu_range(&st, 2000, 3072);

			tl_put(p, len, (uint64_t)i);
			bytes += len;
		}
		s = tl_stats(p);
		cr_assert_lt(s.pool_bytes - bytes, 2 * PG, "a fill of 2-3 KiB "
			     "objects left %llu bytes unused",
			     (unsigned long long)(s.pool_bytes - bytes));
		tl_check(p);
		uzs_pool_destroy(p);
	}
}

/* ------------------------------------------------------- placement */

/*
 * Hide the recent holes of the two coldest zspages: an eviction that frees
 * nothing isolates each (which forgets its recent holes) and puts it back,
 * so only a sweep finds their free space, and the placement policy decides.
 */
static void forget_recent_holes_of_two_coldest(struct uzs_pool *p)
{
	struct uzs_evict_batch *b = calloc(1, sizeof(*b));

	cr_assert_not_null(b);
	for (int i = 0; i < 2; i++) {
		cr_assert_gt(uzs_pool_evict_begin(p, b), 0);
		uzs_pool_evict_end(p, b);
	}
	free(b);
}

/*
 * zspages A, B, C full, C most recently used and being filled.  Then 2048
 * bytes are freed in A and 1000 in B (stored into after A), and their
 * recent holes are forgotten.  An object of 900 goes elsewhere than C:
 * EMPTIEST picks A (most free), RECENT picks B.
 */
static void placement_case(enum uzs_placement pl, int want_b)
{
	struct uzs_pool *p = tl_pool(0, 1);
	uzs_handle_t a1, a2, b1, b2, b3, c1, c2, x;

	uzs_pool_set_placement(p, pl);
	a1 = tl_put(p, 2048, 1);
	a2 = tl_put(p, 2048, 2);
	b1 = tl_put(p, 1048, 3);
	b2 = tl_put(p, 1000, 4);
	b3 = tl_put(p, 2048, 5);
	c1 = tl_put(p, 2048, 6);
	c2 = tl_put(p, 2048, 7);
	cr_assert_eq(tl_stats(p).pool_bytes, 3 * PG);
	cr_assert_eq(tl_stats(p).split_objects, 0);
	cr_assert_neq(uzs_pool_zspage_of(p, a1), uzs_pool_zspage_of(p, b1));
	cr_assert_neq(uzs_pool_zspage_of(p, b1), uzs_pool_zspage_of(p, c1));
	cr_assert_eq(uzs_pool_free(p, a1), 0);
	cr_assert_eq(uzs_pool_free(p, b2), 0);
	forget_recent_holes_of_two_coldest(p);
	x = tl_put(p, 900, 8);
	cr_assert_eq(uzs_pool_zspage_of(p, x),
		     uzs_pool_zspage_of(p, want_b ? b1 : a2),
		     "placement %d put the object in the wrong zspage", pl);
	cr_assert_eq(tl_stats(p).zspages, 3);
	tl_expect(p, a2, 2048, 2);
	tl_expect(p, b1, 1048, 3);
	tl_expect(p, b3, 2048, 5);
	tl_expect(p, c1, 2048, 6);
	tl_expect(p, c2, 2048, 7);
	tl_expect(p, x, 900, 8);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_placement, emptiest_takes_the_zspage_with_most_free_space)
{
	placement_case(UZS_PLACE_EMPTIEST, 0);
}

Test(pool_placement, recent_takes_the_most_recently_stored_zspage)
{
	placement_case(UZS_PLACE_RECENT, 1);
}

Test(pool_placement, the_zspage_just_stored_into_is_filled_first)
{
	for (int pl = UZS_PLACE_EMPTIEST; pl <= UZS_PLACE_RECENT; pl++) {
		struct uzs_pool *p = tl_pool(0, 1);
		uzs_handle_t a1, b, x;

		uzs_pool_set_placement(p, (enum uzs_placement)pl);
		a1 = tl_put(p, 2048, 1);
		tl_put(p, 2048, 2);      /* A full */
		b = tl_put(p, 3500, 3);  /* B: 596 free, being filled */
		cr_assert_eq(uzs_pool_free(p, a1), 0); /* A: 2048 free */
		x = tl_put(p, 500, 4);   /* fits both: B, the MRU, wins */
		cr_assert_eq(uzs_pool_zspage_of(p, x), uzs_pool_zspage_of(p, b));
		tl_check(p);
		uzs_pool_destroy(p);
	}
}

/*
 * The same zspages, the recent holes remembered: with the cursor full, the
 * 900 B object goes into the smallest freed hole that holds it (B's 1000 B,
 * at the freed object's offset), whatever the policy, and without a sweep.
 */
Test(pool_placement, a_freed_hole_is_refilled_best_fit_without_a_sweep)
{
	for (int pl = UZS_PLACE_EMPTIEST; pl <= UZS_PLACE_RECENT; pl++) {
		struct uzs_pool *p = tl_pool(0, 1);
		uzs_handle_t a1, b1, b2, x;
		uint32_t zb[2], ob[2], zx[2], ox[2];
		uint64_t sweeps;

		uzs_pool_set_placement(p, (enum uzs_placement)pl);
		a1 = tl_put(p, 2048, 1);
		tl_put(p, 2048, 2);
		b1 = tl_put(p, 1048, 3);
		b2 = tl_put(p, 1000, 4);
		tl_put(p, 2048, 5);
		tl_put(p, 2048, 6);
		tl_put(p, 2048, 7);     /* C full: the cursor has no hole */
		cr_assert_eq(uzs_pool_fragments_of(p, b2, zb, ob), 1);
		cr_assert_eq(uzs_pool_free(p, a1), 0);
		cr_assert_eq(uzs_pool_free(p, b2), 0);
		tl_check(p);
		sweeps = tl_stats(p).sweeps;
		x = tl_put(p, 900, 8);
		cr_assert_eq(uzs_pool_fragments_of(p, x, zx, ox), 1);
		cr_assert_eq(zx[0], zb[0]);
		cr_assert_eq(zx[0], uzs_pool_zspage_of(p, b1));
		cr_assert_eq(ox[0], ob[0], "not at the freed object's place");
		cr_assert_eq(tl_stats(p).sweeps, sweeps, "a sweep was needed");
		/* The 100 B left of B's hole takes a 100 B object exactly. */
		x = tl_put(p, 100, 9);
		cr_assert_eq(uzs_pool_fragments_of(p, x, zx, ox), 1);
		cr_assert_eq(zx[0], zb[0]);
		cr_assert_eq(ox[0], ob[0] + 900);
		cr_assert_eq(tl_stats(p).sweeps, sweeps);
		cr_assert_eq(tl_stats(p).pool_bytes, 3 * PG);
		tl_check(p);
		uzs_pool_destroy(p);
	}
}

/*
 * No recent hole holds it whole: the object's head fills the largest
 * exactly and its tail goes into the smallest other that holds the rest.
 */
Test(pool_placement, an_object_is_split_over_two_freed_holes)
{
	struct uzs_pool *p = tl_pool(0, 1);
	uzs_handle_t h[6], x;
	uint32_t za[2], oa[2], zb[2], ob[2], zx[2], ox[2];
	uint64_t sweeps;

	for (int i = 0; i < 6; i++)
		h[i] = tl_put(p, 2048, (uint64_t)i);   /* 3 full pages */
	cr_assert_eq(uzs_pool_fragments_of(p, h[0], za, oa), 1);
	cr_assert_eq(uzs_pool_fragments_of(p, h[3], zb, ob), 1);
	cr_assert_eq(uzs_pool_free(p, h[0]), 0);     /* 2048 in page 0 */
	tl_put(p, 1248, 10);                          /* leaves 800 there */
	cr_assert_eq(uzs_pool_free(p, h[3]), 0);     /* 2048 in page 1 */
	sweeps = tl_stats(p).sweeps;
	x = tl_put(p, 2500, 11);
	cr_assert_eq(uzs_pool_fragments_of(p, x, zx, ox), 2);
	cr_assert_eq(zx[0], zb[0]);
	cr_assert_eq(ox[0], ob[0]);
	cr_assert_eq(zx[1], za[0]);
	cr_assert_eq(ox[1], oa[0] + 1248);
	cr_assert_eq(tl_stats(p).sweeps, sweeps);
	cr_assert_eq(tl_stats(p).pool_bytes, 3 * PG);
	cr_assert_eq(tl_stats(p).split_objects, 1);
	tl_expect(p, x, 2500, 11);
	for (int i = 0; i < 6; i++)
		if (i != 0 && i != 3)
			tl_expect(p, h[i], 2048, (uint64_t)i);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_placement, freed_space_is_reused_before_growing)
{
	for (int pl = UZS_PLACE_EMPTIEST; pl <= UZS_PLACE_RECENT; pl++) {
		struct uzs_pool *p = tl_pool(0, 1);
		uzs_handle_t h[40];

		uzs_pool_set_placement(p, (enum uzs_placement)pl);
		for (int i = 0; i < 40; i++)
			h[i] = tl_put(p, 2048, (uint64_t)i); /* 20 full pages */
		for (int i = 0; i < 40; i += 4)
			cr_assert_eq(uzs_pool_free(p, h[i]), 0); /* 10 halves */
		for (int i = 0; i < 40; i += 4)
			h[i] = tl_put(p, 2000, 100 + (uint64_t)i);
		cr_assert_eq(tl_stats(p).pool_bytes, 20 * PG,
			     "placement %d grew the pool instead of reusing", pl);
		for (int i = 0; i < 40; i++)
			tl_expect(p, h[i], i % 4 ? 2048 : 2000,
				  (i % 4 ? 0 : 100) + (uint64_t)i);
		tl_check(p);
		uzs_pool_destroy(p);
	}
}

/*
 * Churn: free a random half, refill with sizes of the same spread, ten
 * times.  Holes the cursor could not use stay known, and are filled before
 * the pool grows: the pool stays dense without compaction.  (Before they
 * were kept, this ended at 0.945 for uniform sizes and 0.935 for bimodal.)
 */
static double churn_density(uint64_t seed, bool bimodal)
{
	struct uzs_pool *p = tl_pool(0, 0);
	enum { N = 20000 };
	static uzs_handle_t h[N];
	static uint32_t ids[N];
	struct uzs_pool_stats st;
	uint64_t r = seed;

	for (int i = 0; i < N; i++) {
		size_t len = bimodal ? (r % 2 ? tu_range(&r, 100, 300) :
					tu_range(&r, 2500, 3000)) :
				       tu_range(&r, 32, 3072);

		h[i] = tl_put(p, len, (uint64_t)i);
		ids[i] = (uint32_t)i;
	}
	for (int round = 0; round < 10; round++) {
		for (int j = 0; j < N / 2; j++) {
			uint32_t t = (uint32_t)tu_range(&r, (uint64_t)j, N - 1);
			uint32_t id = ids[t];

			ids[t] = ids[j];
			ids[j] = id;
			cr_assert_eq(uzs_pool_free(p, h[id]), 0);
		}
		for (int j = 0; j < N / 2; j++) {
			size_t len = bimodal ? (r % 2 ? tu_range(&r, 100, 300) :
						tu_range(&r, 2500, 3000)) :
					       tu_range(&r, 32, 3072);

			h[ids[j]] = tl_put(p, len, ids[j]);
		}
	}
	tl_check(p);
	st = tl_stats(p);
	uzs_pool_destroy(p);
	return (double)st.stored_bytes / (double)st.pool_bytes;
}

Test(pool_placement, churn_leaves_the_pool_dense_without_compaction)
{
	double u = churn_density(31, false), b = churn_density(32, true);

	cr_assert_geq(u, 0.97, "uniform sizes: density %.4f after churn", u);
	cr_assert_geq(b, 0.97, "bimodal sizes: density %.4f after churn", b);
}

/* ------------------------------------------------------------- stats */

Test(pool_stats, counters_follow_allocs_frees_and_bytes)
{
	struct uzs_pool *p = tl_pool(0, 1);
	uzs_handle_t a = tl_put(p, 100, 1), b = tl_put(p, 4096, 2);
	struct uzs_pool_stats st = tl_stats(p);

	cr_assert_eq(st.objects, 2);
	cr_assert_eq(st.stored_bytes, 4196);
	cr_assert_eq(st.allocs, 2);
	cr_assert_eq(st.frees, 0);
	cr_assert_eq(st.alloc_failures, 0);
	cr_assert_eq(st.zspages, 2);
	cr_assert_eq(st.pool_bytes, 2 * PG);
	cr_assert_gt(st.metadata_bytes, 0);
	tl_stats_sane(&st, 0);
	/* The page-sized object filled the rest of the first page and spilled
	 * 100 bytes into a second: freeing the small one releases nothing. */
	cr_assert_eq(st.split_objects, 1);
	cr_assert_eq(uzs_pool_free(p, a), 0);
	st = tl_stats(p);
	cr_assert_eq(st.objects, 1);
	cr_assert_eq(st.stored_bytes, 4096);
	cr_assert_eq(st.allocs, 2);
	cr_assert_eq(st.frees, 1);
	cr_assert_eq(st.zspages, 2);
	cr_assert_eq(st.pool_bytes, 2 * PG);
	cr_assert_eq(uzs_pool_free(p, b), 0);
	st = tl_stats(p);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.frees, 2);
	tl_stats_sane(&st, 0);
	uzs_pool_destroy(p);
}

/* The fullness group of a zspage holding one object of `len` bytes. */
static int fullness_group_of(unsigned zspage_pages, size_t len)
{
	struct uzs_pool *p = tl_pool(0, zspage_pages);
	struct uzs_pool_stats st;
	int group = -1;

	tl_put(p, len, 1);
	st = tl_stats(p);
	cr_assert_eq(st.zspages, 1);
	for (int g = 0; g < UZS_POOL_FULLNESS_GROUPS; g++) {
		if (st.zspages_by_fullness[g]) {
			cr_assert_eq(group, -1);
			cr_assert_eq(st.zspages_by_fullness[g], 1);
			group = g;
		}
	}
	uzs_pool_destroy(p);
	return group;
}

Test(pool_stats, fullness_groups_are_quarters_and_full)
{
	static const struct { unsigned zp; size_t len; int group; } c[] = {
		{ 1, 1, 0 }, { 1, 1023, 0 }, { 1, 1024, 1 }, { 1, 2047, 1 },
		{ 1, 2048, 2 }, { 1, 3071, 2 }, { 1, 3072, 3 }, { 1, 4095, 3 },
		{ 1, 4096, 4 },
		{ 2, 2047, 0 }, { 2, 2048, 1 }, { 2, 4096, 2 },
	};

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		cr_assert_eq(fullness_group_of(c[i].zp, c[i].len), c[i].group,
			     "%zu bytes in a %u-page zspage: wrong group",
			     c[i].len, c[i].zp);
}

Test(pool_stats, fullness_groups_sum_to_zspages_under_churn)
{
	struct uzs_pool *p = tl_pool(0, 0);
	struct tl_model m;
	uint64_t st = 5;

	tl_model_init(&m);
	for (int i = 0; i < 30000; i++) {
		if (m.n < 10 || tu_rand(&st) % 5 < 3)
			tl_model_alloc(p, &m, (uint32_t)tu_range(&st, 1, PG),
				       tu_rand(&st), tu_rand(&st), false);
		else
			tl_model_free_at(p, &m, tu_rand(&st) % m.n);
		if (i % 997 == 0)
			tl_model_stats(p, &m, 0);
	}
	tl_model_verify_all(p, &m, 0);
	tl_model_fini(&m);
	uzs_pool_destroy(p);
}

/* --------------------------------------------------------- size limit */

Test(pool_limit, alloc_past_max_bytes_fails_cleanly)
{
	struct uzs_pool *p = tl_pool(4 * PG, 1);
	unsigned char buf[PG];
	uzs_handle_t h[4], x = 4242;
	struct uzs_pool_stats a, b;

	for (int i = 0; i < 4; i++)
		h[i] = tl_put(p, PG, (uint64_t)i);
	a = tl_stats(p);
	cr_assert_eq(a.pool_bytes, 4 * PG);
	tu_pattern(buf, PG, 99);
	cr_assert_eq(uzs_pool_alloc(p, buf, PG, 99, &x), -ENOSPC);
	cr_assert_eq(x, 4242, "failed alloc wrote the handle");
	b = tl_stats(p);
	tl_stats_same_but_failure(&a, &b);
	/* Even one byte has nowhere to go: every page is full. */
	cr_assert_eq(uzs_pool_alloc(p, buf, 1, 99, &x), -ENOSPC);
	a = tl_stats(p);
	tl_stats_same_but_failure(&b, &a);
	cr_assert_eq(a.alloc_failures, 2);
	tl_check(p);
	for (int i = 0; i < 4; i++)
		tl_expect(p, h[i], PG, (uint64_t)i);
	/* Free one, and there is room again. */
	cr_assert_eq(uzs_pool_free(p, h[2]), 0);
	h[2] = tl_put(p, PG, 50);
	cr_assert_eq(tl_stats(p).pool_bytes, 4 * PG);
	tl_expect(p, h[2], PG, 50);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_limit, two_page_zspages_fall_back_to_one_page_at_the_limit)
{
	struct uzs_pool *p = tl_pool(3 * PG, 2);
	unsigned char buf[PG];
	uzs_handle_t h[3], x;
	struct uzs_pool_stats a, b;

	for (int i = 0; i < 3; i++)
		h[i] = tl_put(p, PG, (uint64_t)i);
	a = tl_stats(p);
	cr_assert_eq(a.pool_bytes, 3 * PG);
	cr_assert_eq(a.zspages, 2);
	cr_assert_eq(uzs_pool_zspage_pages(p, uzs_pool_zspage_of(p, h[2])), 1);
	tu_pattern(buf, 8, 1);
	cr_assert_eq(uzs_pool_alloc(p, buf, 8, 1, &x), -ENOSPC);
	b = tl_stats(p);
	tl_stats_same_but_failure(&a, &b);
	for (int i = 0; i < 3; i++)
		tl_expect(p, h[i], PG, (uint64_t)i);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_limit, max_bytes_is_rounded_down_to_whole_pages)
{
	struct uzs_pool *p = tl_pool(2 * PG + PG - 1, 1);
	unsigned char buf[PG];
	uzs_handle_t x;

	tl_put(p, PG, 1);
	tl_put(p, PG, 2);
	tu_pattern(buf, PG, 3);
	cr_assert_eq(uzs_pool_alloc(p, buf, PG, 3, &x), -ENOSPC);
	cr_assert_eq(tl_stats(p).pool_bytes, 2 * PG);
	uzs_pool_destroy(p);
}

Test(pool_limit, one_page_pool_works)
{
	struct uzs_pool *p = tl_pool(PG, 2);
	unsigned char buf[PG];
	uzs_handle_t a, x;

	a = tl_put(p, 3000, 1);
	cr_assert_eq(tl_stats(p).pool_bytes, PG);
	tu_pattern(buf, 2000, 2);
	cr_assert_eq(uzs_pool_alloc(p, buf, 2000, 2, &x), -ENOSPC);
	/* The failed attempt left the last 1096 bytes usable. */
	x = tl_put(p, 1096, 3);
	cr_assert_eq(tl_stats(p).zspages_by_fullness[4], 1);
	tl_expect(p, a, 3000, 1);
	tl_expect(p, x, 1096, 3);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_limit, random_fill_to_the_limit_never_corrupts)
{
	for (unsigned zp = 0; zp <= 2; zp++) {
		size_t max = 8 * PG;
		struct uzs_pool *p = tl_pool(max, zp);
		struct tl_model m;
		uint64_t st = 40 + zp;
		unsigned fails = 0;

		tl_model_init(&m);
		for (int round = 0; round < 50; round++) {
			/* Fill until refused, checking each refusal. */
			for (int i = 0; i < 400; i++) {
				if (tl_model_alloc(p, &m, (uint32_t)tu_range(&st, 1, PG),
						   tu_rand(&st), tu_rand(&st), true))
					fails++;
				cr_assert_leq(tl_stats(p).pool_bytes, max);
			}
			tl_model_verify_all(p, &m, max);
			/* Free a random share, then allocation succeeds again. */
			for (size_t k = m.n / 2; k > 0 && m.n; k--)
				tl_model_free_at(p, &m, tu_rand(&st) % m.n);
			cr_assert_eq(tl_model_alloc(p, &m, 1, tu_rand(&st), 0, true), 0);
		}
		cr_assert_gt(fails, 1000);
		tl_model_verify_all(p, &m, max);
		tl_model_fini(&m);
		uzs_pool_destroy(p);
	}
}

Test(pool_limit, failed_alloc_that_needs_a_new_handle_chunk_changes_nothing)
{
	/*
	 * 512 pages hold 65536 objects of 8 bytes: the handle table's first
	 * chunk is then full, so the alloc that fails for lack of pages is also
	 * the first to need a new chunk of handle slots.  It must not keep one.
	 */
	struct uzs_pool *p = tl_pool(512 * PG, 1);
	unsigned char buf[8];
	struct uzs_pool_stats a, b;
	uzs_handle_t h;
	unsigned n = 0;
	int rc;

	for (;;) {
		tu_pattern(buf, 8, n);
		a = tl_stats(p);
		rc = uzs_pool_alloc(p, buf, 8, n, &h);
		if (rc)
			break;
		n++;
		cr_assert_leq(n, 1u << 20, "the limit never came");
	}
	cr_assert_eq(rc, -ENOSPC);
	cr_assert_eq(a.pool_bytes, 512 * PG);
	cr_assert_eq(n, 65536, "512 pages took %u objects of 8 B", n);
	b = tl_stats(p);
	cr_assert_eq(b.metadata_bytes, a.metadata_bytes,
		     "a failed alloc grew the metadata from %llu to %llu bytes",
		     (unsigned long long)a.metadata_bytes,
		     (unsigned long long)b.metadata_bytes);
	tl_stats_same_but_failure(&a, &b);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_stats, handle_table_does_not_grow_under_churn)
{
	struct uzs_pool *p = tl_pool(0, 0);
	uzs_handle_t h[16];
	uint64_t meta;

	for (int i = 0; i < 16; i++)
		h[i] = tl_put(p, 100, (uint64_t)i);
	meta = tl_stats(p).metadata_bytes;
	/* 200000 alloc/free pairs with 16 live: freed handles are reused. */
	for (int i = 0; i < 200000; i++) {
		unsigned char buf[100];
		int k = i % 16;

		cr_assert_eq(uzs_pool_free(p, h[k]), 0);
		tu_pattern(buf, 100, 1000 + (uint64_t)i);
		if (uzs_pool_alloc(p, buf, 100, 1000 + (uint64_t)i, &h[k]))
			cr_assert_fail("alloc %d failed", i);
	}
	cr_assert_eq(tl_stats(p).metadata_bytes, meta);
	cr_assert_eq(tl_stats(p).pool_bytes, PG);
	for (int k = 0; k < 16; k++)
		tl_expect(p, h[k], 100, 1000 + 199984 + (uint64_t)k);
	tl_check(p);
	uzs_pool_destroy(p);
}

/* --------------------------------------------------------- compaction */

Test(pool_compact, empty_and_dense_pools_have_nothing_to_compact)
{
	struct uzs_pool *p = tl_pool(0, 1);
	struct uzs_pool_stats st;

	cr_assert_eq(uzs_pool_compact(p), 0);
	for (int i = 0; i < 64; i++)
		tl_put(p, 1024, (uint64_t)i);
	cr_assert_eq(uzs_pool_compact(p), 0);
	st = tl_stats(p);
	cr_assert_eq(st.compactions, 0);
	cr_assert_eq(st.compacted_objects, 0);
	cr_assert_eq(st.compacted_pages_freed, 0);
	cr_assert_eq(st.pool_bytes, 16 * PG);
	tl_check(p);
	uzs_pool_destroy(p);
}

Test(pool_compact, a_quarter_full_pool_is_packed_into_a_quarter_of_the_pages)
{
	struct uzs_pool *p = tl_pool(0, 1);
	enum { N = 1000 };
	static uzs_handle_t h[N];
	struct uzs_pool_stats st;
	uint64_t before;
	size_t released;

	/* 10^6 bytes, split where a page ends: 245 pages. */
	for (int i = 0; i < N; i++)
		h[i] = tl_put(p, 1000, (uint64_t)i);
	cr_assert_eq(tl_stats(p).pool_bytes, 245 * PG);
	for (int i = 0; i < N; i++)
		if (i % 4)
			cr_assert_eq(uzs_pool_free(p, h[i]), 0);
	/* A zspage only freed objects touched is gone already. */
	before = tl_stats(p).pool_bytes;
	cr_assert_gt(before, 200 * PG);
	released = uzs_pool_compact(p);
	st = tl_stats(p);
	cr_assert_eq(st.pool_bytes, before - released * PG);
	cr_assert_leq(st.pool_bytes, 64 * PG, "250 objects of 1000 B still "
		      "in %llu pages", (unsigned long long)(st.pool_bytes / PG));
	cr_assert_eq(st.compactions, 1);
	cr_assert_eq(st.compacted_pages_freed, released);
	cr_assert_geq(st.compacted_objects, released);
	cr_assert_leq(st.compacted_objects, 250);
	for (int i = 0; i < N; i += 4)
		tl_expect(p, h[i], 1000, (uint64_t)i);
	tl_check(p);
	uzs_pool_destroy(p);
}

static void compact_keeps_bytes_and_handles(unsigned zp, enum uzs_placement pl,
					    uint64_t seed)
{
	struct uzs_pool *p = tl_pool(0, zp);
	struct tl_model m;
	struct uzs_pool_stats a, b;
	uint64_t st = seed, total = 0, calls = 0, moved_calls = 0;
	size_t r;

	uzs_pool_set_placement(p, pl);
	tl_model_init(&m);
	for (int i = 0; i < 6000; i++)
		tl_model_alloc(p, &m, (uint32_t)tu_range(&st, 1, PG), tu_rand(&st),
			       tu_rand(&st), false);
	/* Free a random 60-70%. */
	for (size_t k = m.n * (60 + tu_rand(&st) % 11) / 100; k > 0; k--)
		tl_model_free_at(p, &m, tu_rand(&st) % m.n);
	tl_model_verify_all(p, &m, 0);
	a = tl_stats(p);
	do {
		struct uzs_pool_stats x = tl_stats(p), y;

		r = uzs_pool_compact(p);
		y = tl_stats(p);
		calls++;
		total += r;
		cr_assert_eq(y.pool_bytes, x.pool_bytes - r * PG);
		cr_assert_eq(y.compacted_pages_freed, x.compacted_pages_freed + r);
		cr_assert_eq(y.objects, x.objects);
		cr_assert_eq(y.stored_bytes, x.stored_bytes);
		if (y.compacted_objects != x.compacted_objects) {
			cr_assert_eq(y.compactions, x.compactions + 1);
			moved_calls++;
		} else {
			cr_assert_eq(y.compactions, x.compactions);
			cr_assert_eq(r, 0, "pages released without moving anything");
		}
		m.compacted_pages += r;
		tl_check(p);
	} while (r && calls < 100);
	b = tl_stats(p);
	cr_assert_gt(total, 0, "nothing released from a 60-70%% free pool");
	cr_assert_lt(b.pool_bytes, a.pool_bytes);
	cr_assert_eq(b.compactions, moved_calls);
	cr_assert_geq(b.compacted_objects, b.compactions);
	cr_assert_gt((double)b.stored_bytes / (double)b.pool_bytes,
		     (double)a.stored_bytes / (double)a.pool_bytes);
	/* Every byte and every handle survived the moves. */
	tl_model_verify_all(p, &m, 0);
	/* And the pool keeps working: churn after compaction. */
	for (int i = 0; i < 3000; i++) {
		if (tu_rand(&st) % 2)
			tl_model_alloc(p, &m, (uint32_t)tu_range(&st, 1, PG),
				       tu_rand(&st), tu_rand(&st), false);
		else if (m.n)
			tl_model_free_at(p, &m, tu_rand(&st) % m.n);
	}
	tl_model_verify_all(p, &m, 0);
	tl_model_fini(&m);
	uzs_pool_destroy(p);
}

Test(pool_compact, keeps_every_byte_and_handle_one_page_zspages)
{
	compact_keeps_bytes_and_handles(1, UZS_PLACE_EMPTIEST, 101);
}

Test(pool_compact, keeps_every_byte_and_handle_two_page_zspages)
{
	compact_keeps_bytes_and_handles(2, UZS_PLACE_EMPTIEST, 102);
}

Test(pool_compact, keeps_every_byte_and_handle_auto_zspages)
{
	compact_keeps_bytes_and_handles(0, UZS_PLACE_EMPTIEST, 103);
}

Test(pool_compact, keeps_every_byte_and_handle_recent_placement)
{
	compact_keeps_bytes_and_handles(1, UZS_PLACE_RECENT, 104);
	compact_keeps_bytes_and_handles(2, UZS_PLACE_RECENT, 105);
}

Test(pool_stats, metadata_counts_what_is_in_use_not_what_is_reserved)
{
	struct uzs_pool *p = tl_pool(0, 1);
	static uzs_handle_t h[1000];
	uint64_t m0, m1;

	tl_put(p, 100, 0);
	m0 = tl_stats(p).metadata_bytes;
	/* One handle and two descriptors, not a whole 64 Ki-slot chunk. */
	cr_assert_lt(m0, 64 << 10, "one object costs %llu bytes of metadata",
		     (unsigned long long)m0);
	for (int i = 0; i < 1000; i++)
		h[i] = tl_put(p, 100, (uint64_t)i + 1);
	m1 = tl_stats(p).metadata_bytes;
	/* Per object: a handle slot (tens of bytes) and a share of the
	 * descriptors of the 25 pages they fill. */
	cr_assert_geq(m1 - m0, 1000 * 24);
	cr_assert_leq(m1 - m0, 1000 * 64 + 64 * 64);
	/* Freed handles are reused: churn does not grow it. */
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(uzs_pool_free(p, h[i]), 0);
	for (int i = 0; i < 1000; i++)
		h[i] = tl_put(p, 100, (uint64_t)i + 1);
	cr_assert_leq(tl_stats(p).metadata_bytes, m1);
	tl_check(p);
	uzs_pool_destroy(p);
}
