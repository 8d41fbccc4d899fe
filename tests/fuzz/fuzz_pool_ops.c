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
 *  - an object lies in one zspage, or is split across two; a batch lists
 *    exactly the live objects with a fragment in its zspage, once each,
 *    with their owners, so a split object may be in two open batches (one
 *    per zspage it is in, if both are isolated); -ENOENT means every zspage
 *    is being evicted;
 *  - isolated zspages get no new fragments, stay off the LRU, and every
 *    object listed by an open batch stays where it was (compaction leaves
 *    it alone); a zspage goes the moment its last fragment does, and only
 *    then, and its pages count as evicted if and only if it was isolated;
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
	/*
	 * Bit k: listed by open batch k.  A split object can be listed by
	 * two batches at once (one per isolated zspage it is in), so this
	 * is a set, not an index.
	 */
	unsigned batches;
	/* Where it lay when first listed: it must not move while listed. */
	unsigned nfrag;
	uint32_t frag_zs[2], frag_off[2];
};

struct batch {
	bool open;
	/* Its objects not yet freed.  Each has a fragment in the zspage and
	 * nothing new goes there, so the zspage is live exactly while this is
	 * not 0 (afterwards its id may name a new zspage). */
	unsigned live;
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

/* Does batch k still isolate its zspage?  (A batch whose objects are all
 * gone released its zspage; the id may be reused.) */
static bool batch_isolating(const struct model *m, unsigned k)
{
	return m->batch[k].open && m->batch[k].live;
}

/* The batch isolating zspage id, or -1. */
static int isolating_batch(const struct model *m, uint32_t id)
{
	for (unsigned k = 0; k < MAX_BATCHES; k++)
		if (batch_isolating(m, k) && m->batch[k].b.zspage == id)
			return (int)k;
	return -1;
}

static bool zspage_isolated(const struct model *m, uint32_t id)
{
	return isolating_batch(m, id) >= 0;
}

static unsigned isolated_zspages(const struct model *m)
{
	unsigned n = 0;

	for (unsigned k = 0; k < MAX_BATCHES; k++)
		n += batch_isolating(m, k);
	return n;
}

/* Where live handle h lies: 1 or 2 fragments (zs[], off[]), head first. */
static unsigned frags_of(struct model *m, uzs_handle_t h, uint32_t zs[2],
			 uint32_t off[2])
{
	unsigned n = uzs_pool_fragments_of(m->pool, h, zs, off);

	if (n < 1 || n > 2)
		FAIL("live handle %llu has %u fragments", (unsigned long long)h,
		     n);
	for (unsigned f = 0; f < n; f++)
		if (uzs_pool_zspage_pages(m->pool, zs[f]) == 0)
			FAIL("handle %llu has a fragment in dead zspage %u",
			     (unsigned long long)h, zs[f]);
	if (uzs_pool_zspage_of(m->pool, h) != zs[0])
		FAIL("handle %llu: zspage_of %u, head fragment in %u",
		     (unsigned long long)h, uzs_pool_zspage_of(m->pool, h),
		     zs[0]);
	return n;
}

static bool has_frag(unsigned nfrag, const uint32_t zs[2], uint32_t id)
{
	return zs[0] == id || (nfrag == 2 && zs[1] == id);
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
	    uzs_pool_zspage_of(m->pool, h) != UINT32_MAX ||
	    uzs_pool_fragments_of(m->pool, h, NULL, NULL) != 0)
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

/*
 * Object i, lying in fragments zs[]/off[], is listed by exactly the open
 * batches that isolate a zspage it has a fragment in, and has not moved
 * since it was first listed (an evictor reads it from there).
 */
static void check_listing(const struct model *m, unsigned i, unsigned nfrag,
			  const uint32_t zs[2], const uint32_t off[2])
{
	const struct obj *o = &m->obj[i];

	for (unsigned k = 0; k < MAX_BATCHES; k++) {
		bool listed = o->batches >> k & 1;
		bool in = batch_isolating(m, k) &&
			  has_frag(nfrag, zs, m->batch[k].b.zspage);

		if (listed && !in)
			FAIL("handle %llu left zspage %u, isolated by batch %u",
			     (unsigned long long)o->h, m->batch[k].b.zspage, k);
		if (!listed && in)
			FAIL("handle %llu is in zspage %u, isolated by batch %u"
			     " which does not list it", (unsigned long long)o->h,
			     m->batch[k].b.zspage, k);
	}
	if (!o->batches)
		return;
	if (nfrag != o->nfrag || zs[0] != o->frag_zs[0] ||
	    off[0] != o->frag_off[0] || (nfrag == 2 &&
	    (zs[1] != o->frag_zs[1] || off[1] != o->frag_off[1])))
		FAIL("listed handle %llu moved: head now in zspage %u at %u, "
		     "was %u at %u (%u fragments, was %u)",
		     (unsigned long long)o->h, zs[0], off[0], o->frag_zs[0],
		     o->frag_off[0], nfrag, o->nfrag);
}

/* Everything: contents, batch membership, split count, structure. */
static void check_all(struct model *m)
{
	unsigned listed[MAX_BATCHES] = { 0 };
	uint64_t split = 0;
	struct uzs_pool_stats s;

	for (unsigned i = 0; i < m->nobj; i++) {
		uint32_t zs[2], off[2];
		unsigned nfrag;

		check_obj(m, i);
		nfrag = frags_of(m, m->obj[i].h, zs, off);
		split += nfrag == 2;
		check_listing(m, i, nfrag, zs, off);
		for (unsigned k = 0; k < MAX_BATCHES; k++)
			listed[k] += m->obj[i].batches >> k & 1;
	}
	/* The model's own bookkeeping: live counts what is still listed. */
	for (unsigned k = 0; k < MAX_BATCHES; k++)
		if (listed[k] != (m->batch[k].open ? m->batch[k].live : 0))
			FAIL("model: batch %u lists %u live objects, counts %u",
			     k, listed[k], m->batch[k].live);
	uzs_pool_stats(m->pool, &s);
	if (s.split_objects != split)
		FAIL("stats: %llu split objects, %llu in two fragments",
		     (unsigned long long)s.split_objects,
		     (unsigned long long)split);
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
	*o = (struct obj){ .h = h, .seed = seed, .owner = owner, .len = len };
	m->hmap[h] = ++m->nobj;
	m->bytes += len;
	if (h > m->max_handle)
		m->max_handle = h;
}

static void model_remove(struct model *m, unsigned i)
{
	struct obj *o = &m->obj[i];

	for (unsigned k = 0; k < MAX_BATCHES; k++)
		if (o->batches >> k & 1)
			m->batch[k].live--;
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
		uint32_t zs[2];
		unsigned nfrag;

		model_add(m, h, len, seed, owner);
		nfrag = frags_of(m, h, zs, NULL);
		for (unsigned f = 0; f < nfrag; f++)
			if (zspage_isolated(m, zs[f]))
				FAIL("new handle %llu placed in isolated zspage"
				     " %u", (unsigned long long)h, zs[f]);
		if (uzs_pool_length(m->pool, h) != (long)len)
			FAIL("new handle %llu has the wrong length",
			     (unsigned long long)h);
		return;
	}
	uzs_pool_stats(m->pool, &after);
	/* Not metadata_bytes: a placement that fails may first move the fill
	 * point on, and the holes it leaves behind go to the known-hole table,
	 * whose use can then reach a new page (found by this fuzzer: 4096 B
	 * more).  Placement state may change; what the pool holds may not. */
	if (after.objects != before.objects ||
	    after.stored_bytes != before.stored_bytes ||
	    after.pool_bytes != before.pool_bytes ||
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
 * Free object i.  Each zspage holding a fragment of it (one, or two for a
 * split object) gives its pages back the moment it empties, and only then:
 * pool_bytes drops by exactly those pages, or not at all.  An isolated
 * zspage empties exactly when the last object its batch listed goes, and
 * only its pages count as evicted (pool.c counts a release as evicted when
 * the zspage was isolated, whichever zspage the freed object came from).
 * A free moves nothing on the LRU: a zspage that is not released keeps its
 * place.
 */
static void op_free(struct model *m, unsigned i, bool read_first)
{
	uzs_handle_t h = m->obj[i].h;
	unsigned listed = m->obj[i].batches;
	uint32_t ids[2], lru0[MAX_ZSPAGES], lru1[MAX_ZSPAGES];
	unsigned nzs = frags_of(m, h, ids, NULL);
	uint64_t pages[2] = { 0, 0 }, gone = 0, evicted = 0, zs_gone = 0;
	int iso[2] = { -1, -1 };        /* batch isolating ids[f], or -1 */
	bool released[2] = { false, false };
	struct uzs_pool_stats before, after;
	size_t n0, n1, j = 0;

	if (nzs == 2 && ids[1] == ids[0])
		nzs = 1;        /* both fragments in one zspage */
	for (unsigned f = 0; f < nzs; f++) {
		pages[f] = uzs_pool_zspage_pages(m->pool, ids[f]);
		iso[f] = isolating_batch(m, ids[f]);
		if (iso[f] >= 0 && !(listed >> iso[f] & 1))
			FAIL("handle %llu is in zspage %u, isolated by batch %d"
			     " which does not list it", (unsigned long long)h,
			     ids[f], iso[f]);
	}
	n0 = uzs_pool_lru_order(m->pool, lru0, MAX_ZSPAGES);

	TRACE("free h=%llu len=%u\n", (unsigned long long)h, m->obj[i].len);
	if (read_first)
		check_obj(m, i);
	uzs_pool_stats(m->pool, &before);
	if (uzs_pool_free(m->pool, h) != 0)
		FAIL("free of live handle %llu failed", (unsigned long long)h);
	uzs_pool_stats(m->pool, &after);
	model_remove(m, i);
	check_dead(m, h);

	for (unsigned f = 0; f < nzs; f++) {
		/* A free makes no zspage: 0 pages now means released here. */
		released[f] = uzs_pool_zspage_pages(m->pool, ids[f]) == 0;
		if (released[f]) {
			zs_gone++;
			gone += pages[f];
			if (iso[f] >= 0)
				evicted += pages[f];
		}
		/* Nothing new goes into an isolated zspage, so what its batch
		 * listed is all it holds. */
		if (iso[f] >= 0 && released[f] != !m->batch[iso[f]].live)
			FAIL("zspage %u of batch %d %s with %u listed objects"
			     " left", ids[f], iso[f],
			     released[f] ? "released" : "kept",
			     m->batch[iso[f]].live);
	}
	if (before.pool_bytes - after.pool_bytes != gone * PAGE ||
	    before.zspages - after.zspages != zs_gone ||
	    after.evicted_pages_freed - before.evicted_pages_freed != evicted)
		FAIL("free from zspage %u (%u zspages, %llu pages freed, %llu"
		     " isolated) released %llu bytes, %llu as evicted", ids[0],
		     nzs, (unsigned long long)gone, (unsigned long long)evicted,
		     (unsigned long long)(before.pool_bytes - after.pool_bytes),
		     (unsigned long long)(after.evicted_pages_freed -
					  before.evicted_pages_freed));

	/* The LRU is as it was, less the zspages released. */
	n1 = uzs_pool_lru_order(m->pool, lru1, MAX_ZSPAGES);
	for (size_t k = 0; k < n0; k++) {
		if ((released[0] && lru0[k] == ids[0]) ||
		    (released[1] && lru0[k] == ids[1]))
			continue;
		if (j == n1 || lru1[j] != lru0[k])
			FAIL("free of handle %llu reordered the LRU at zspage %u",
			     (unsigned long long)h, lru0[k]);
		j++;
	}
	if (j != n1)
		FAIL("free of handle %llu added zspage %u to the LRU",
		     (unsigned long long)h, lru1[j]);
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

/*
 * Open batch k on the coldest zspage.  It must list exactly the live
 * objects with a fragment in that zspage, once each, with their owners.
 * An object split into another zspage that an open batch already isolates
 * is listed by both (the caller handles it once); nothing else can be in
 * two batches, as no two open batches isolate the same zspage.
 */
static void op_evict_begin(struct model *m)
{
	struct uzs_pool_stats before, after;
	struct batch *bt = NULL;
	uint32_t id;
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
		/* Every zspage is isolated: each object has all its
		 * fragments in zspages that open batches hold. */
		if (after.zspages != isolated_zspages(m))
			FAIL("-ENOENT with %llu zspages, %u isolated",
			     (unsigned long long)after.zspages,
			     isolated_zspages(m));
		for (unsigned i = 0; i < m->nobj; i++) {
			uint32_t zs[2];
			unsigned nfrag = frags_of(m, m->obj[i].h, zs, NULL);

			for (unsigned f = 0; f < nfrag; f++)
				if (!zspage_isolated(m, zs[f]))
					FAIL("-ENOENT, but handle %llu is "
					     "evictable in zspage %u",
					     (unsigned long long)m->obj[i].h,
					     zs[f]);
		}
		return;
	}
	if (rc <= 0 || (unsigned)rc != bt->b.count ||
	    bt->b.count > UZS_POOL_MAX_ZSPAGE_OBJS)
		FAIL("evict_begin returned %d, count %u", rc, bt->b.count);
	id = bt->b.zspage;
	if (uzs_pool_zspage_pages(m->pool, id) == 0 || zspage_isolated(m, id))
		FAIL("batch %d took zspage %u: dead, or isolated already", k,
		     id);
	for (unsigned j = 0; j < bt->b.count; j++) {
		const struct uzs_evict_entry *e = &bt->b.entries[j];
		int i = lookup(m, e->handle);
		uint32_t zs[2] = { 0, 0 }, off[2] = { 0, 0 };
		unsigned nfrag;
		struct obj *o;

		if (i < 0)
			FAIL("batch names dead handle %llu",
			     (unsigned long long)e->handle);
		o = &m->obj[i];
		if (o->batches >> k & 1)
			FAIL("batch %d lists handle %llu twice", k,
			     (unsigned long long)e->handle);
		if (o->owner != e->owner)
			FAIL("batch has the wrong owner for handle %llu",
			     (unsigned long long)e->handle);
		nfrag = frags_of(m, e->handle, zs, off);
		if (!has_frag(nfrag, zs, id))
			FAIL("batch for zspage %u names handle %llu elsewhere",
			     id, (unsigned long long)e->handle);
		/* Already listed: by the batch of its other zspage, and it
		 * has not moved since (check_listing says which batches). */
		if (o->batches) {
			check_listing(m, (unsigned)i, nfrag, zs, off);
		} else {
			o->nfrag = nfrag;
			memcpy(o->frag_zs, zs, sizeof(zs));
			memcpy(o->frag_off, off, sizeof(off));
		}
		o->batches |= 1u << k;
	}
	/* The whole zspage: nothing with a fragment in it was left out. */
	for (unsigned i = 0; i < m->nobj; i++) {
		uint32_t zs[2];
		unsigned nfrag = frags_of(m, m->obj[i].h, zs, NULL);

		if (!(m->obj[i].batches >> k & 1) && has_frag(nfrag, zs, id))
			FAIL("handle %llu of zspage %u missing from its batch",
			     (unsigned long long)m->obj[i].h, id);
	}
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
		/* Freed since the batch was taken, maybe by another batch
		 * listing it too, and maybe reused since?  (A handle reused
		 * is not listed by k: nothing new goes in its zspage.) */
		if (!go || i < 0 || !(m->obj[i].batches >> k & 1))
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
	/* Its objects stay listed by the batch of their other zspage, if
	 * that one is open. */
	for (unsigned i = 0; i < m->nobj; i++)
		m->obj[i].batches &= ~(1u << k);
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
	/* It leaves isolated zspages alone, so it releases none of them. */
	if (after.evicted_pages_freed != before.evicted_pages_freed)
		FAIL("compact released %llu pages as evicted",
		     (unsigned long long)(after.evicted_pages_freed -
					  before.evicted_pages_freed));
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
