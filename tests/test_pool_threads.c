/*
 * test_pool_threads.c - one pool used by several threads at once: workers
 * allocating, freeing and reading their own objects and reading shared
 * read-only ones, with an evictor and compactor running alongside.
 *
 * Every object's bytes are pattern(tag) with the tag itself in the first 8
 * bytes, and its owner is the tag, so any thread can verify any object it
 * manages to read, even one that is not its own.  Threads never call
 * Criterion asserts (that is only safe on the test's own thread): they
 * record the first error and stop; the test thread asserts after join.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_testlib.h"

#define NWORKERS 4
#define NSHARED 64
#define SHARED_ID 15u
#define EVICTOR_ID 14u
#define TAG(id, serial) (((uint64_t)(id) << 56) | (serial))
#define TAG_ID(tag) ((unsigned)((tag) >> 56))

static void fill_obj(unsigned char *buf, size_t len, uint64_t tag)
{
	tu_pattern(buf, len, tag);
	if (len >= 8)
		memcpy(buf, &tag, 8);
}

/* 0 if buf[0..len) is what fill_obj(tag) wrote, else the bad byte + 1. */
static size_t obj_mismatch(const unsigned char *buf, size_t len, uint64_t tag)
{
	unsigned char want[PG];

	fill_obj(want, len, tag);
	for (size_t i = 0; i < len; i++)
		if (buf[i] != want[i])
			return i + 1;
	return 0;
}

struct own {
	uzs_handle_t h;
	uint32_t len;
	uint64_t tag;
};

struct thr {
	pthread_t tid;
	struct ctx *c;
	unsigned id;
	uint64_t st;
	unsigned ops;
	struct own *o;
	size_t n, cap;
	uint64_t serial;
	uint64_t allocs, frees, failures, stored;
	uint64_t evictions, evict_writebacks, foreign_reads, compactions;
	char err[512];
};

struct ctx {
	struct uzs_pool *p;
	size_t max_bytes;
	struct own shared[NSHARED];
	atomic_int workers_left;
};

static bool failf(struct thr *t, const char *fmt, ...)
{
	va_list ap;

	if (t->err[0])
		return false;
	va_start(ap, fmt);
	vsnprintf(t->err, sizeof(t->err), fmt, ap);
	va_end(ap);
	return false;
}

static uint32_t thr_len(struct thr *t)
{
	uint64_t r = tu_rand(&t->st) % 100;

	if (r < 5)
		return (uint32_t)tu_range(&t->st, 1, 7);
	if (r < 30)
		return (uint32_t)tu_range(&t->st, 8, 256);
	if (r < 85)
		return (uint32_t)tu_range(&t->st, 257, 3072);
	return (uint32_t)tu_range(&t->st, 3073, PG);
}

/* Read a known object and check it whole, with owner and length. */
static bool check_known(struct thr *t, const struct own *o)
{
	unsigned char buf[PG + 16];
	uint64_t owner = 0;
	long n;
	size_t bad;

	memset(buf, CANARY, sizeof(buf));
	n = uzs_pool_read(t->c->p, o->h, buf, sizeof(buf));
	if (n != (long)o->len)
		return failf(t, "thread %u: read of handle %llu returned %ld, "
			     "expected %u", t->id, (unsigned long long)o->h, n, o->len);
	bad = obj_mismatch(buf, o->len, o->tag);
	if (bad)
		return failf(t, "thread %u: handle %llu (len %u, tag %llx): byte "
			     "%zu is wrong", t->id, (unsigned long long)o->h,
			     o->len, (unsigned long long)o->tag, bad - 1);
	for (size_t i = o->len; i < sizeof(buf); i++)
		if (buf[i] != CANARY)
			return failf(t, "thread %u: read wrote past the object",
				     t->id);
	if (uzs_pool_owner(t->c->p, o->h, &owner) || owner != o->tag)
		return failf(t, "thread %u: owner of handle %llu is %llx",
			     t->id, (unsigned long long)o->h,
			     (unsigned long long)owner);
	if (uzs_pool_length(t->c->p, o->h) != (long)o->len)
		return failf(t, "thread %u: length of handle %llu wrong", t->id,
			     (unsigned long long)o->h);
	return true;
}

/* Returns 0, -ENOSPC (tolerated with a limit) or fails the thread. */
static int own_alloc(struct thr *t, uint32_t len)
{
	unsigned char buf[PG];
	uzs_handle_t h = 0;
	uint64_t tag = TAG(t->id, ++t->serial);
	int rc;

	fill_obj(buf, len, tag);
	rc = uzs_pool_alloc(t->c->p, buf, len, tag, &h);
	if (rc == -ENOSPC && t->c->max_bytes) {
		t->failures++;
		return rc;
	}
	if (rc || h == 0) {
		failf(t, "thread %u: alloc of %u returned %d", t->id, len, rc);
		return -EIO;
	}
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 256;
		t->o = realloc(t->o, t->cap * sizeof(*t->o));
		if (!t->o)
			abort();
	}
	t->o[t->n++] = (struct own){ h, len, tag };
	t->allocs++;
	t->stored += len;
	return 0;
}

static bool own_free(struct thr *t, size_t i)
{
	int rc = uzs_pool_free(t->c->p, t->o[i].h);

	if (rc)
		return failf(t, "thread %u: free of own handle %llu returned %d",
			     t->id, (unsigned long long)t->o[i].h, rc);
	t->frees++;
	t->stored -= t->o[i].len;
	t->o[i] = t->o[--t->n];
	return true;
}

static void *worker(void *arg)
{
	struct thr *t = arg;

	for (unsigned op = 0; op < t->ops && !t->err[0]; op++) {
		uint64_t x = tu_rand(&t->st) % 100;

		if (x < 35 || t->n == 0) {
			if (own_alloc(t, thr_len(t)) == -ENOSPC) {
				/* Full: give some back, as a swap would. */
				for (int k = 0; k < 8 && t->n; k++)
					if (!own_free(t, tu_rand(&t->st) % t->n))
						break;
			}
		} else if (x < 35 + (t->n > 300 ? 40 : 25)) {
			own_free(t, tu_rand(&t->st) % t->n);
		} else if (x < 88) {
			check_known(t, &t->o[tu_rand(&t->st) % t->n]);
		} else {
			check_known(t, &t->c->shared[tu_rand(&t->st) % NSHARED]);
		}
	}
	atomic_fetch_sub(&t->c->workers_left, 1);
	return NULL;
}

/* Read an object the evictor does not own: it may be gone (or its handle
 * reused) by now, but whatever is read must be a whole, valid object. */
static bool check_foreign(struct thr *t, uzs_handle_t h)
{
	unsigned char buf[PG];
	long n = uzs_pool_read(t->c->p, h, buf, sizeof(buf));
	uint64_t tag;

	if (n == -EINVAL)
		return true;
	if (n < 1 || n > (long)PG)
		return failf(t, "evictor: read of handle %llu returned %ld",
			     (unsigned long long)h, n);
	t->foreign_reads++;
	if (n < 8)
		return true;
	memcpy(&tag, buf, 8);
	if (TAG_ID(tag) == 0 || (TAG_ID(tag) > NWORKERS && TAG_ID(tag) != SHARED_ID &&
				 TAG_ID(tag) != EVICTOR_ID))
		return failf(t, "evictor: handle %llu holds garbage (tag %llx)",
			     (unsigned long long)h, (unsigned long long)tag);
	if (obj_mismatch(buf, (size_t)n, tag))
		return failf(t, "evictor: handle %llu (tag %llx, len %ld) is "
			     "corrupt", (unsigned long long)h,
			     (unsigned long long)tag, n);
	return true;
}

static long own_find(const struct thr *t, uzs_handle_t h)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->o[i].h == h)
			return (long)i;
	return -1;
}

/*
 * One eviction: write back (free, maybe store again) our own objects, read
 * the others.  Returns true if the batch is taken: the caller holds the
 * zspage isolated for a moment while others run, then ends it.
 */
static bool evict_once(struct thr *t, struct uzs_evict_batch *b)
{
	int rc = uzs_pool_evict_begin(t->c->p, b);

	if (rc == -ENOENT)
		return false;   /* nothing isolated: nothing to end */
	if (rc <= 0 || (unsigned)rc != b->count ||
	    b->count > UZS_POOL_MAX_ZSPAGE_OBJS)
		return failf(t, "evictor: evict_begin returned %d (count %u)", rc,
			     b->count);
	t->evictions++;
	for (unsigned j = 0; j < b->count; j++) {
		uint64_t owner = b->entries[j].owner;

		if (t->err[0])
			return false;
		if (TAG_ID(owner) == EVICTOR_ID) {
			/* Ours: only we free it, so it must be there. */
			long i = own_find(t, b->entries[j].handle);
			struct own o;

			if (i < 0)
				return failf(t, "evictor: batch names handle %llu "
					     "with our owner %llx, not ours",
					     (unsigned long long)b->entries[j].handle,
					     (unsigned long long)owner);
			o = t->o[i];
			if (o.tag != owner)
				return failf(t, "evictor: wrong owner in batch");
			if (!check_known(t, &o))
				return false;
			if (tu_rand(&t->st) % 4) {
				if (!own_free(t, (size_t)i))
					return false;
				t->evict_writebacks++;
				if (tu_rand(&t->st) % 2)
					own_alloc(t, o.len);
			}
		} else {
			if (!check_foreign(t, b->entries[j].handle))
				return false;
		}
	}
	return true;
}

static void *evictor(void *arg)
{
	struct thr *t = arg;
	struct uzs_evict_batch *b = malloc(2 * sizeof(*b));

	if (!b)
		abort();
	for (int i = 0; i < 200; i++)
		if (own_alloc(t, thr_len(t)) == -EIO)
			break;
	/* At least some rounds even if the workers are done before we start. */
	for (unsigned iter = 0; (iter < 500 || atomic_load(&t->c->workers_left) > 0) &&
	     !t->err[0]; iter++) {
		uint64_t x = tu_rand(&t->st) % 100;

		if (x < 40) {
			if (evict_once(t, &b[0])) {
				sched_yield();
				uzs_pool_evict_end(t->c->p, &b[0]);
			}
		} else if (x < 50) {
			/* Two zspages isolated at once. */
			bool ok0 = evict_once(t, &b[0]), ok1 = ok0 && evict_once(t, &b[1]);

			sched_yield();
			if (ok1)
				uzs_pool_evict_end(t->c->p, &b[1]);
			if (ok0)
				uzs_pool_evict_end(t->c->p, &b[0]);
		} else if (x < 60) {
			uzs_pool_compact(t->c->p);
			t->compactions++;
		} else if (x < 80) {
			if (own_alloc(t, thr_len(t)) == -ENOSPC && t->n)
				own_free(t, tu_rand(&t->st) % t->n);
		} else if (x < 90) {
			if (t->n)
				own_free(t, tu_rand(&t->st) % t->n);
		} else if (t->n) {
			check_known(t, &t->o[tu_rand(&t->st) % t->n]);
		}
	}
	free(b);
	return NULL;
}

static void run_threads(size_t max_bytes, unsigned zp, enum uzs_placement pl,
			bool with_evictor, unsigned ops, uint64_t seed)
{
	struct ctx c;
	struct thr t[NWORKERS + 1];
	unsigned nthr = NWORKERS + (with_evictor ? 1 : 0);
	uint64_t objects = NSHARED, stored = 0, allocs = NSHARED, frees = 0;
	uint64_t failures = 0, evictions = 0;
	struct uzs_pool_stats st;

	memset(&c, 0, sizeof(c));
	memset(t, 0, sizeof(t));
	c.p = tl_pool(max_bytes, zp);
	c.max_bytes = max_bytes;
	uzs_pool_set_placement(c.p, pl);
	for (unsigned i = 0; i < NSHARED; i++) {
		unsigned char buf[PG];
		struct own *o = &c.shared[i];

		o->len = 8 + (uint32_t)(i * 61 % (PG - 7));
		o->tag = TAG(SHARED_ID, i);
		fill_obj(buf, o->len, o->tag);
		cr_assert_eq(uzs_pool_alloc(c.p, buf, o->len, o->tag, &o->h), 0);
		stored += o->len;
	}
	atomic_store(&c.workers_left, NWORKERS);
	for (unsigned i = 0; i < nthr; i++) {
		t[i].c = &c;
		t[i].id = i < NWORKERS ? i + 1 : EVICTOR_ID;
		t[i].st = seed * 1000 + i;
		t[i].ops = ops;
		cr_assert_eq(pthread_create(&t[i].tid, NULL,
					    i < NWORKERS ? worker : evictor, &t[i]), 0);
	}
	for (unsigned i = 0; i < nthr; i++)
		cr_assert_eq(pthread_join(t[i].tid, NULL), 0);
	for (unsigned i = 0; i < nthr; i++)
		cr_assert_str_empty(t[i].err, "%s", t[i].err);

	/* Everything still there, byte for byte. */
	for (unsigned i = 0; i < NSHARED; i++)
		cr_assert(check_known(&t[0], &c.shared[i]), "%s", t[0].err);
	tl_check(c.p);
	for (unsigned i = 0; i < nthr; i++) {
		for (size_t k = 0; k < t[i].n; k++)
			cr_assert(check_known(&t[i], &t[i].o[k]), "%s", t[i].err);
		objects += t[i].n;
		stored += t[i].stored;
		allocs += t[i].allocs;
		frees += t[i].frees;
		failures += t[i].failures;
		evictions += t[i].evictions;
	}
	st = tl_stats(c.p);
	cr_assert_eq(st.objects, objects);
	cr_assert_eq(st.stored_bytes, stored);
	cr_assert_eq(st.allocs, allocs);
	cr_assert_eq(st.frees, frees);
	cr_assert_eq(st.alloc_failures, failures);
	cr_assert_eq(st.evictions, evictions);
	tl_stats_sane(&st, max_bytes);
	if (with_evictor) {
		struct thr *e = &t[NWORKERS];

		cr_assert_gt(e->evictions, 0);
		cr_assert_gt(e->compactions, 0);
		cr_assert_gt(e->foreign_reads, 0);
	}
	if (max_bytes)
		cr_assert_gt(failures, 0, "the limit was never reached");
	/* Free it all: the pool empties completely. */
	for (unsigned i = 0; i < nthr; i++)
		while (t[i].n)
			cr_assert(own_free(&t[i], 0), "%s", t[i].err);
	for (unsigned i = 0; i < NSHARED; i++)
		cr_assert_eq(uzs_pool_free(c.p, c.shared[i].h), 0);
	st = tl_stats(c.p);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.pool_bytes, 0);
	cr_assert_eq(st.zspages, 0);
	tl_check(c.p);
	for (unsigned i = 0; i < nthr; i++)
		free(t[i].o);
	uzs_pool_destroy(c.p);
}

Test(pool_threads, four_threads_alloc_free_and_read_with_shared_objects)
{
	run_threads(0, 0, UZS_PLACE_EMPTIEST, false, 60000, 1);
}

Test(pool_threads, evictor_and_compactor_run_alongside_four_threads)
{
	run_threads(0, 1, UZS_PLACE_EMPTIEST, true, 50000, 2);
}

Test(pool_threads, evictor_alongside_threads_two_page_zspages_recent)
{
	run_threads(0, 2, UZS_PLACE_RECENT, true, 50000, 3);
}

Test(pool_threads, threads_at_the_size_limit_fail_cleanly)
{
	run_threads(200 * PG, 0, UZS_PLACE_EMPTIEST, true, 40000, 4);
}
