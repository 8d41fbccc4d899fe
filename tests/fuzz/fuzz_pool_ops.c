/*
 * fuzz_pool_ops.c - libFuzzer target for the compressed-page pool.
 *
 * What it owns: checking the pool against a reference model under any
 * sequence of operations.  Each input is a small program: a header picks
 * the pool's size (1..16 pages, so -ENOSPC comes quickly), its zspage_pages
 * and placement; every following op byte (with a few argument bytes)
 * allocates, frees, reads, evicts, compacts or inspects.  The model keeps
 * every live object's handle, length, owner and content seed, plus the open
 * eviction batches, and the target aborts on any disagreement:
 *  - every read must return the object's bytes exactly, into a buffer of
 *    exactly its size (ASan sees the pool's memcpy overrun it: fence());
 *  - handles are unique while live; dead handles give -EINVAL everywhere;
 *  - a failed alloc changes nothing, and -ENOSPC means the pool is full;
 *  - a batch is exactly the live, not-yet-isolated objects of one zspage,
 *    with their owners, and -ENOENT means everything is being evicted;
 *    isolated zspages get no new objects and stay off the LRU;
 *  - compaction keeps every object and releases what it says it released;
 *  - the stats agree with the model, and uzs_pool_check() returns 0 every
 *    few ops; when all is freed the pool holds no memory.
 * Batches may stay open across other ops (another thread would do that),
 * so objects of an isolated zspage are also freed, read and compacted
 * around.  The pool is destroyed at the end of every input.
 *
 * Build (out of tree, clang only):
 *   cd /work/main && [ -x configure ] || autoreconf -fi
 *   mkdir -p /work/build-fuzz && cd /work/build-fuzz
 *   /work/main/configure --enable-fuzzers CC=clang && make fuzz
 * Seed and run (a single job):
 *   tests/fuzz/mkcorpus corpus        # corpus/decompress, corpus/pool_ops
 *   tests/fuzz/fuzz_pool_ops -max_len=4096 -rss_limit_mb=2048 \
 *           -max_total_time=600 corpus/pool_ops
 * A failure prints "fuzz_pool_ops:LINE: what" and leaves crash-<sha1>;
 * replay with tests/fuzz/fuzz_pool_ops crash-<sha1>, and set
 * UZS_FUZZ_TRACE=1 in the environment to print each op as it runs.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sanitizer/asan_interface.h>

#include "pool_internal.h"
#include "uzswap.h"

#define PAGE UZS_PAGE_SIZE
#define MAX_POOL_PAGES 16u
#define MAX_OBJS 8192u          /* model capacity, far above what 16 pages hold */
#define HMAP_SIZE 65536u        /* handles are table indices: reused, so small */
#define MAX_BATCHES 4u
#define MAX_ZSPAGES 256u
#define NDEAD 16u
#define CHECK_EVERY 4u

#define FAIL(...)                                                         \
	do {                                                              \
		fprintf(stderr, "fuzz_pool_ops:%d: ", __LINE__);          \
		fprintf(stderr, __VA_ARGS__);                             \
		fputc('\n', stderr);                                      \
		abort();                                                  \
	} while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* -------------------------------------------------------------- input */

struct input {
	const uint8_t *p;
	size_t n;
};

/* Past the end, arguments read as zero: every prefix is a valid program. */
static unsigned get8(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static unsigned get16(struct input *in)
{
	unsigned lo = get8(in);

	return lo | get8(in) << 8;
}

/* -------------------------------------------------------------- model */

struct obj {
	uzs_handle_t h;
	uint64_t seed;          /* content is pattern(seed) */
	uint64_t owner;
	uint32_t len;
	int batch;              /* open batch holding it, or -1 */
};

struct batch {
	bool open;
	unsigned live;          /* its objects not yet freed */
	struct uzs_evict_batch b;
};

struct model {
	struct uzs_pool *pool;
	size_t max_bytes;
	uint64_t salt, serial;
	struct obj obj[MAX_OBJS];
	unsigned nobj;
	uint64_t bytes;
	struct batch batch[MAX_BATCHES];
	uzs_handle_t max_handle;
	uzs_handle_t dead[NDEAD];       /* recently freed handles */
	unsigned dead_next;
	uint32_t hmap[HMAP_SIZE];       /* handle -> obj index + 1, 0 if dead */
};

static struct model M;
static bool trace;

/*
 * Buffers handed to the pool.  fence() makes only their first len bytes
 * addressable, so ASan flags a pool memcpy that reads or writes one byte
 * too many, exactly as with malloc(len) but without an allocation (and
 * ASan's fill of it) per call.
 */
static unsigned char io_buf[PAGE] __attribute__((aligned(8)));
static unsigned char want_buf[PAGE];

static unsigned char *fence(size_t len)
{
	ASAN_UNPOISON_MEMORY_REGION(io_buf, PAGE);
	ASAN_POISON_MEMORY_REGION(io_buf + len, PAGE - len);
	return io_buf;
}

static void unfence(void)
{
	ASAN_UNPOISON_MEMORY_REGION(io_buf, PAGE);
}

#define TRACE(...)                                                        \
	do {                                                              \
		if (trace)                                                \
			fprintf(stderr, __VA_ARGS__);                     \
	} while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	trace = getenv("UZS_FUZZ_TRACE") != NULL;
	return 0;
}

static uint64_t splitmix(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Distinct per object, so a misplaced copy of another object shows. */
static void pattern(unsigned char *b, size_t len, uint64_t seed)
{
	uint64_t st = seed;

	for (size_t i = 0; i < len; i += 8) {
		uint64_t r = splitmix(&st);

		memcpy(b + i, &r, len - i < 8 ? len - i : 8);
	}
}

/* The model index of a live handle, or -1. */
static int lookup(struct model *m, uzs_handle_t h)
{
	if (h == 0 || h >= HMAP_SIZE || !m->hmap[h])
		return -1;
	return (int)m->hmap[h] - 1;
}

static size_t max_pages(const struct model *m)
{
	return m->max_bytes / PAGE;
}

/* Is zspage id isolated by an open batch that still has objects?  (A batch
 * whose objects are all gone released its zspage; the id may be reused.) */
static bool zspage_isolated(const struct model *m, uint32_t id)
{
	for (unsigned k = 0; k < MAX_BATCHES; k++)
		if (m->batch[k].open && m->batch[k].live && m->batch[k].b.zspage == id)
			return true;
	return false;
}

static unsigned isolated_zspages(const struct model *m)
{
	unsigned n = 0;

	for (unsigned k = 0; k < MAX_BATCHES; k++)
		n += m->batch[k].open && m->batch[k].live;
	return n;
}

/* ------------------------------------------------------------- checks */

/* Reading a dead handle must fail everywhere, and not change anything. */
static void check_dead(struct model *m, uzs_handle_t h)
{
	unsigned char b[8];
	uint64_t owner;

	if (uzs_pool_read(m->pool, h, b, sizeof(b)) != -EINVAL ||
	    uzs_pool_length(m->pool, h) != -EINVAL ||
	    uzs_pool_owner(m->pool, h, &owner) != -EINVAL ||
	    uzs_pool_zspage_of(m->pool, h) != UINT32_MAX)
		FAIL("dead handle %llu is still readable", (unsigned long long)h);
	if (uzs_pool_free(m->pool, h) != -EINVAL)
		FAIL("dead handle %llu freed again", (unsigned long long)h);
}

/* Read object i into a buffer of exactly its size and compare. */
static void check_obj(struct model *m, unsigned i)
{
	const struct obj *o = &m->obj[i];
	unsigned char *got = fence(o->len);
	uint64_t owner = 0;
	long rc;

	memset(got, 0xa5, o->len);
	rc = uzs_pool_read(m->pool, o->h, got, o->len);
	if (rc != (long)o->len)
		FAIL("read of handle %llu (len %u) returned %ld",
		     (unsigned long long)o->h, o->len, rc);
	pattern(want_buf, o->len, o->seed);
	if (memcmp(got, want_buf, o->len) != 0)
		FAIL("handle %llu (len %u) reads back wrong bytes",
		     (unsigned long long)o->h, o->len);
	unfence();
	if (uzs_pool_owner(m->pool, o->h, &owner) != 0 || owner != o->owner)
		FAIL("handle %llu lost its owner", (unsigned long long)o->h);
	if (uzs_pool_length(m->pool, o->h) != (long)o->len)
		FAIL("handle %llu lost its length", (unsigned long long)o->h);
}

static void check_stats(struct model *m)
{
	struct uzs_pool_stats s;
	uint64_t by_fullness = 0;

	uzs_pool_stats(m->pool, &s);
	for (unsigned g = 0; g < UZS_POOL_FULLNESS_GROUPS; g++)
		by_fullness += s.zspages_by_fullness[g];
	if (s.objects != m->nobj || s.stored_bytes != m->bytes)
		FAIL("stats: %llu objects of %llu bytes, model %u of %llu",
		     (unsigned long long)s.objects,
		     (unsigned long long)s.stored_bytes, m->nobj,
		     (unsigned long long)m->bytes);
	if (s.allocs - s.frees != s.objects)
		FAIL("stats: %llu allocs - %llu frees != %llu objects",
		     (unsigned long long)s.allocs, (unsigned long long)s.frees,
		     (unsigned long long)s.objects);
	if (s.pool_bytes % PAGE || s.pool_bytes > max_pages(m) * PAGE ||
	    s.stored_bytes > s.pool_bytes)
		FAIL("stats: pool_bytes %llu (max %zu pages, stored %llu)",
		     (unsigned long long)s.pool_bytes, max_pages(m),
		     (unsigned long long)s.stored_bytes);
	if (by_fullness != s.zspages || s.zspages * PAGE > s.pool_bytes ||
	    s.pool_bytes > 2 * s.zspages * PAGE)
		FAIL("stats: %llu zspages (%llu by fullness) for %llu bytes",
		     (unsigned long long)s.zspages,
		     (unsigned long long)by_fullness,
		     (unsigned long long)s.pool_bytes);
	if ((s.objects == 0) != (s.zspages == 0))
		FAIL("stats: %llu objects in %llu zspages",
		     (unsigned long long)s.objects,
		     (unsigned long long)s.zspages);
}

/* The LRU holds each live zspage that is not isolated, once. */
static void check_lru(struct model *m)
{
	uint32_t ids[MAX_ZSPAGES];
	struct uzs_pool_stats s;
	size_t n = uzs_pool_lru_order(m->pool, ids, MAX_ZSPAGES);

	uzs_pool_stats(m->pool, &s);
	if (n != s.zspages - isolated_zspages(m))
		FAIL("LRU has %zu zspages, expected %llu - %u isolated", n,
		     (unsigned long long)s.zspages, isolated_zspages(m));
	for (size_t i = 0; i < n; i++) {
		if (zspage_isolated(m, ids[i]))
			FAIL("isolated zspage %u is on the LRU", ids[i]);
		if (uzs_pool_zspage_pages(m->pool, ids[i]) == 0)
			FAIL("dead zspage %u is on the LRU", ids[i]);
		for (size_t j = 0; j < i; j++)
			if (ids[j] == ids[i])
				FAIL("zspage %u twice on the LRU", ids[i]);
	}
}

static void check_pool(struct model *m)
{
	if (uzs_pool_check(m->pool) != 0)
		FAIL("uzs_pool_check failed");
	check_lru(m);
}

/* Everything: contents, batch membership, structure. */
static void check_all(struct model *m)
{
	for (unsigned i = 0; i < m->nobj; i++) {
		const struct obj *o = &m->obj[i];

		check_obj(m, i);
		if (o->batch >= 0 &&
		    uzs_pool_zspage_of(m->pool, o->h) != m->batch[o->batch].b.zspage)
			FAIL("handle %llu left its isolated zspage",
			     (unsigned long long)o->h);
	}
	check_pool(m);
}

/* ----------------------------------------------------- model updates */

static void model_add(struct model *m, uzs_handle_t h, uint32_t len,
		      uint64_t seed, uint64_t owner)
{
	struct obj *o;

	if (h == 0 || h >= HMAP_SIZE)
		FAIL("handle %llu out of the expected range",
		     (unsigned long long)h);
	if (m->hmap[h])
		FAIL("handle %llu handed out while live", (unsigned long long)h);
	if (m->nobj == MAX_OBJS)
		FAIL("more than %u objects in a %zu-page pool", MAX_OBJS,
		     max_pages(m));
	o = &m->obj[m->nobj];
	*o = (struct obj){ .h = h, .seed = seed, .owner = owner, .len = len,
			   .batch = -1 };
	m->hmap[h] = ++m->nobj;
	m->bytes += len;
	if (h > m->max_handle)
		m->max_handle = h;
}

static void model_remove(struct model *m, unsigned i)
{
	struct obj *o = &m->obj[i];

	if (o->batch >= 0)
		m->batch[o->batch].live--;
	m->bytes -= o->len;
	m->hmap[o->h] = 0;
	m->dead[m->dead_next++ % NDEAD] = o->h;
	*o = m->obj[--m->nobj];
	if (i < m->nobj)
		m->hmap[o->h] = i + 1;
}

/* --------------------------------------------------------------- ops */

static uint32_t pick_len(struct input *in)
{
	unsigned c = get8(in), v = get16(in);

	switch (c % 5) {
	case 0: /* tiny: the per-zspage object limit */
		return 1 + v % 64;
	case 1: /* one-page zspages, when automatic */
		return 1 + v % 1024;
	case 2:
		return 1 + v % PAGE;
	case 3: /* about a page: tail waste, the 2 -> 1 page fallback */
		return PAGE - v % 64;
	default: /* across the automatic 1-/2-page threshold */
		return PAGE / 4 - 32 + v % 64;
	}
}

static void op_alloc(struct model *m, uint32_t len)
{
	struct uzs_pool_stats before, after;
	uint64_t seed = m->salt ^ ++m->serial * 0x9e3779b97f4a7c15ull;
	uint64_t owner = ~seed;
	unsigned char *src = fence(len);
	uzs_handle_t h = 0;
	int rc;

	pattern(src, len, seed);
	uzs_pool_stats(m->pool, &before);
	rc = uzs_pool_alloc(m->pool, src, len, owner, &h);
	/* Scribble: a pool that kept pointing at src would now differ. */
	memset(src, 0x5a, len);
	unfence();
	TRACE("alloc %u -> %d h=%llu\n", len, rc, (unsigned long long)h);
	if (rc == 0) {
		uint32_t id = uzs_pool_zspage_of(m->pool, h);

		model_add(m, h, len, seed, owner);
		if (id == UINT32_MAX || zspage_isolated(m, id))
			FAIL("new handle %llu placed in zspage %u",
			     (unsigned long long)h, id);
		if (uzs_pool_length(m->pool, h) != (long)len)
			FAIL("new handle %llu has the wrong length",
			     (unsigned long long)h);
		return;
	}
	uzs_pool_stats(m->pool, &after);
	if (after.objects != before.objects ||
	    after.stored_bytes != before.stored_bytes ||
	    after.pool_bytes != before.pool_bytes ||
	    after.metadata_bytes != before.metadata_bytes ||
	    after.zspages != before.zspages)
		FAIL("failed alloc (%d) changed the pool", rc);
	if (after.alloc_failures != before.alloc_failures + 1)
		FAIL("failed alloc not counted");
	/* Any object fits a fresh 1-page zspage: -ENOSPC means none is left. */
	if (rc == -ENOSPC && after.pool_bytes / PAGE + 1 > max_pages(m))
		return;
	if (rc == -ENOMEM)
		return;
	FAIL("alloc of %u returned %d with %llu of %zu pages held", len, rc,
	     (unsigned long long)after.pool_bytes / PAGE, max_pages(m));
}

/*
 * Free object i.  Its zspage's pages go back the moment it empties, and
 * only then: pool_bytes drops by exactly those pages (counted as evicted
 * when the zspage was isolated by a batch), or not at all.
 */
static void op_free(struct model *m, unsigned i, bool read_first)
{
	uzs_handle_t h = m->obj[i].h;
	bool batched = m->obj[i].batch >= 0;
	uint32_t id = uzs_pool_zspage_of(m->pool, h);
	uint64_t pages = uzs_pool_zspage_pages(m->pool, id), gone;
	struct uzs_pool_stats before, after;

	TRACE("free h=%llu len=%u\n", (unsigned long long)h, m->obj[i].len);
	if (read_first)
		check_obj(m, i);
	uzs_pool_stats(m->pool, &before);
	if (uzs_pool_free(m->pool, h) != 0)
		FAIL("free of live handle %llu failed", (unsigned long long)h);
	uzs_pool_stats(m->pool, &after);
	model_remove(m, i);
	check_dead(m, h);

	gone = uzs_pool_zspage_pages(m->pool, id) ? 0 : pages;
	if (before.pool_bytes - after.pool_bytes != gone * PAGE ||
	    before.zspages - after.zspages != (gone != 0) ||
	    after.evicted_pages_freed - before.evicted_pages_freed !=
	    (batched ? gone : 0))
		FAIL("free from zspage %u (%llu pages, %s) released %llu bytes,"
		     " %llu as evicted", id, (unsigned long long)pages,
		     gone ? "now empty" : "still live",
		     (unsigned long long)(before.pool_bytes - after.pool_bytes),
		     (unsigned long long)(after.evicted_pages_freed -
					  before.evicted_pages_freed));
}

/* Read object i in one of a few ways, each with its expected result. */
static void op_read(struct model *m, unsigned i, unsigned how)
{
	const struct obj *o = &m->obj[i];
	unsigned char *b;
	long rc;

	TRACE("read h=%llu len=%u how=%u\n", (unsigned long long)o->h,
	      o->len, how % 3);
	switch (how % 3) {
	case 0:
		check_obj(m, i);
		break;
	case 1: /* one byte short: refused, and nothing may be written */
		b = fence(o->len - 1);
		rc = uzs_pool_read(m->pool, o->h, b, o->len - 1);
		if (rc != -EINVAL)
			FAIL("read of %u bytes into %u returned %ld", o->len,
			     o->len - 1, rc);
		unfence();
		break;
	default: /* a page-sized buffer: the length tells where it ends */
		b = fence(PAGE);
		rc = uzs_pool_read(m->pool, o->h, b, PAGE);
		if (rc != (long)o->len)
			FAIL("read into a page returned %ld, not %u", rc, o->len);
		pattern(want_buf, o->len, o->seed);
		if (memcmp(b, want_buf, o->len) != 0)
			FAIL("handle %llu reads back wrong bytes into a page",
			     (unsigned long long)o->h);
		break;
	}
}

/* Handles that name nothing: 0, huge, just past the table, recently freed. */
static void op_bogus(struct model *m, unsigned sel)
{
	uzs_handle_t h;

	switch (sel % 4) {
	case 0:
		h = (sel & 4) ? 0 : UINT64_MAX;
		break;
	case 1:
		h = ((uzs_handle_t)1 << 32) + (sel >> 2);
		break;
	case 2:
		h = m->max_handle + 1 + (sel >> 2);
		break;
	default:
		h = m->dead[(sel >> 2) % NDEAD];
		break;
	}
	if (h < HMAP_SIZE && m->hmap[h])
		return; /* reused meanwhile: it is live again */
	TRACE("bogus h=%llu\n", (unsigned long long)h);
	check_dead(m, h);
}

/* Free every stride-th object: leaves sparse zspages for compaction. */
static void op_free_stride(struct model *m, unsigned stride, unsigned start)
{
	uzs_handle_t hs[MAX_OBJS];
	unsigned n = 0;

	for (unsigned i = start % stride; i < m->nobj; i += stride)
		hs[n++] = m->obj[i].h;
	for (unsigned j = 0; j < n; j++)
		op_free(m, (unsigned)lookup(m, hs[j]), false);
}

static void op_evict_begin(struct model *m)
{
	struct uzs_pool_stats before, after;
	struct batch *bt = NULL;
	int k, rc;

	for (k = 0; k < (int)MAX_BATCHES; k++)
		if (!m->batch[k].open) {
			bt = &m->batch[k];
			break;
		}
	if (!bt)
		return;
	uzs_pool_stats(m->pool, &before);
	rc = uzs_pool_evict_begin(m->pool, &bt->b);
	uzs_pool_stats(m->pool, &after);
	if (after.evictions - before.evictions != (rc > 0))
		FAIL("evict_begin returned %d, evictions %llu -> %llu", rc,
		     (unsigned long long)before.evictions,
		     (unsigned long long)after.evictions);
	TRACE("evict_begin[%d] -> %d zspage %u\n", k, rc, bt->b.zspage);
	if (rc == -ENOENT) {
		for (unsigned i = 0; i < m->nobj; i++)
			if (m->obj[i].batch < 0)
				FAIL("-ENOENT, but handle %llu is evictable",
				     (unsigned long long)m->obj[i].h);
		return;
	}
	if (rc <= 0 || (unsigned)rc != bt->b.count ||
	    bt->b.count > UZS_POOL_MAX_ZSPAGE_OBJS)
		FAIL("evict_begin returned %d, count %u", rc, bt->b.count);
	for (unsigned j = 0; j < bt->b.count; j++) {
		const struct uzs_evict_entry *e = &bt->b.entries[j];
		int i = lookup(m, e->handle);

		if (i < 0)
			FAIL("batch names dead handle %llu",
			     (unsigned long long)e->handle);
		if (m->obj[i].batch >= 0)
			FAIL("handle %llu in batch %d already",
			     (unsigned long long)e->handle, m->obj[i].batch);
		if (m->obj[i].owner != e->owner)
			FAIL("batch has the wrong owner for handle %llu",
			     (unsigned long long)e->handle);
		if (uzs_pool_zspage_of(m->pool, e->handle) != bt->b.zspage)
			FAIL("batch for zspage %u names handle %llu elsewhere",
			     bt->b.zspage, (unsigned long long)e->handle);
		m->obj[i].batch = k;
	}
	/* The whole zspage: nothing in it was left out. */
	for (unsigned i = 0; i < m->nobj; i++)
		if (m->obj[i].batch < 0 &&
		    uzs_pool_zspage_of(m->pool, m->obj[i].h) == bt->b.zspage)
			FAIL("handle %llu of zspage %u missing from its batch",
			     (unsigned long long)m->obj[i].h, bt->b.zspage);
	bt->open = true;
	bt->live = bt->b.count;
}

/*
 * "Write back" some of batch k's objects that are still in it: read each
 * (as the caller would, to write it out) and free it.  mode 0 frees all,
 * so the zspage is released under the batch; 1 follows a bit mask; 2 all
 * but one.
 */
static void op_evict_write(struct model *m, unsigned k, struct input *in)
{
	struct batch *bt = &m->batch[k];
	unsigned mode = get8(in) % 3, keep = get8(in), mask = 0;

	if (!bt->open)
		return;
	TRACE("evict_write[%u] mode %u\n", k, mode);
	for (unsigned j = 0; j < bt->b.count; j++) {
		int i = lookup(m, bt->b.entries[j].handle);
		bool go;

		if (mode == 1 && j % 8 == 0)
			mask = get8(in);
		go = mode == 0 || (mode == 1 && (mask >> (j % 8) & 1)) ||
		     (mode == 2 && j != keep % bt->b.count);
		/* Freed (and maybe reused) since the batch was taken? */
		if (!go || i < 0 || m->obj[i].batch != (int)k)
			continue;
		op_free(m, (unsigned)i, true);
	}
}

static void op_evict_end(struct model *m, unsigned k)
{
	struct batch *bt = &m->batch[k];
	uint32_t ids[MAX_ZSPAGES];
	unsigned live = bt->live;
	size_t n;

	if (!bt->open)
		return;
	TRACE("evict_end[%u] zspage %u live %u\n", k, bt->b.zspage, live);
	uzs_pool_evict_end(m->pool, &bt->b);
	bt->open = false;
	bt->live = 0;
	for (unsigned i = 0; i < m->nobj; i++)
		if (m->obj[i].batch == (int)k)
			m->obj[i].batch = -1;
	/* What was kept is back on the LRU, as most recently used. */
	n = uzs_pool_lru_order(m->pool, ids, MAX_ZSPAGES);
	if (live && (n == 0 || ids[n - 1] != bt->b.zspage))
		FAIL("zspage %u is not the LRU's newest after evict_end",
		     bt->b.zspage);
	check_all(m);
}

static void op_compact(struct model *m)
{
	struct uzs_pool_stats before, after;
	size_t released;

	uzs_pool_stats(m->pool, &before);
	released = uzs_pool_compact(m->pool);
	uzs_pool_stats(m->pool, &after);
	TRACE("compact -> %zu pages\n", released);
	if (before.pool_bytes - after.pool_bytes != released * PAGE ||
	    after.objects != before.objects)
		FAIL("compact released %zu pages, pool_bytes %llu -> %llu",
		     released, (unsigned long long)before.pool_bytes,
		     (unsigned long long)after.pool_bytes);
	check_all(m);
}

/* ------------------------------------------------------------ driver */

enum {
	OP_ALLOC, OP_ALLOC2, OP_ALLOC_BURST, OP_FREE, OP_FREE2, OP_READ,
	OP_EVICT_BEGIN, OP_EVICT_WRITE, OP_EVICT_END, OP_COMPACT,
	OP_PLACEMENT, OP_BOGUS, OP_FREE_STRIDE, OP_CHECK_ALL, NOPS
};

static void run_op(struct model *m, struct input *in)
{
	unsigned op = get8(in) % NOPS;

	switch (op) {
	case OP_ALLOC:
	case OP_ALLOC2:
		op_alloc(m, pick_len(in));
		break;
	case OP_ALLOC_BURST: {
		unsigned count = 1 + get8(in) % 32;
		uint32_t len = pick_len(in);

		while (count--)
			op_alloc(m, len);
		break;
	}
	case OP_FREE:
	case OP_FREE2: {
		unsigned pick = get16(in), read_first = pick & 1;

		if (m->nobj)
			op_free(m, (pick >> 1) % m->nobj, read_first);
		break;
	}
	case OP_READ: {
		unsigned pick = get16(in), how = get8(in);

		if (m->nobj)
			op_read(m, pick % m->nobj, how);
		break;
	}
	case OP_EVICT_BEGIN:
		op_evict_begin(m);
		break;
	case OP_EVICT_WRITE:
		op_evict_write(m, get8(in) % MAX_BATCHES, in);
		break;
	case OP_EVICT_END:
		op_evict_end(m, get8(in) % MAX_BATCHES);
		break;
	case OP_COMPACT:
		op_compact(m);
		break;
	case OP_PLACEMENT: {
		enum uzs_placement p = get8(in) & 1 ? UZS_PLACE_RECENT :
						      UZS_PLACE_EMPTIEST;

		TRACE("placement %d\n", (int)p);
		uzs_pool_set_placement(m->pool, p);
		break;
	}
	case OP_BOGUS:
		op_bogus(m, get8(in));
		break;
	case OP_FREE_STRIDE: {
		unsigned stride = 2 + get8(in) % 4, start = get8(in);

		TRACE("free_stride %u\n", stride);
		op_free_stride(m, stride, start);
		break;
	}
	default:
		check_all(m);
		break;
	}
}

/* Header: pool pages (and a ragged max_bytes), zspage_pages, placement. */
static void setup(struct model *m, struct input *in)
{
	unsigned a = get8(in), b = get8(in);
	struct uzs_pool_config cfg = {
		.max_bytes = (1 + a % MAX_POOL_PAGES) * PAGE + (a & 0x80 ? 123 : 0),
		.numa_node = -1,
		.zspage_pages = b % 3,
	};
	int rc;

	m->max_bytes = cfg.max_bytes;
	m->salt = (uint64_t)a << 8 | b;
	rc = uzs_pool_create(&cfg, &m->pool);
	if (rc)
		FAIL("uzs_pool_create(%zu, %u) = %d", cfg.max_bytes,
		     cfg.zspage_pages, rc);
	TRACE("pool: max_bytes %zu zspage_pages %u\n", cfg.max_bytes,
	      cfg.zspage_pages);
	if (b & 4)
		uzs_pool_set_placement(m->pool, UZS_PLACE_RECENT);
}

/* Close the batches, check and free everything: the pool must be empty. */
static void teardown(struct model *m)
{
	struct uzs_pool_stats s;

	for (unsigned k = 0; k < MAX_BATCHES; k++)
		op_evict_end(m, k);
	check_all(m);
	while (m->nobj)
		op_free(m, m->nobj - 1, false);
	uzs_pool_stats(m->pool, &s);
	if (s.objects || s.stored_bytes || s.pool_bytes || s.zspages)
		FAIL("empty pool holds %llu objects, %llu bytes in %llu zspages",
		     (unsigned long long)s.objects,
		     (unsigned long long)s.pool_bytes,
		     (unsigned long long)s.zspages);
	check_pool(m);
	uzs_pool_destroy(m->pool);
	m->pool = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	struct model *m = &M;
	unsigned ops = 0;

	/* hmap is all zero again after teardown; the rest is reset here. */
	m->nobj = 0;
	m->bytes = 0;
	m->serial = 0;
	m->max_handle = 0;
	m->dead_next = 0;
	memset(m->dead, 0, sizeof(m->dead));
	memset(m->batch, 0, sizeof(m->batch));

	setup(m, &in);
	while (in.n) {
		run_op(m, &in);
		check_stats(m);
		if (++ops % CHECK_EVERY == 0)
			check_pool(m);
	}
	teardown(m);
	return 0;
}
