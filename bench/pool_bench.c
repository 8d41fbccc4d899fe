/*
 * pool_bench.c - how dense, how evictable and how fast libuzswap's pool is,
 * next to models of the kernel's zsmalloc and zbud fed the same operations.
 *
 * Run by hand (not part of make check), from an optimised build:
 *
 *   cd BUILDDIR && make bench && bench/pool_bench [options]
 *   bench/pool_bench --help
 *
 * Owns: the traces (real LZO sizes from data/zsizes, and seeded synthetic
 * ones), the replay that drives every allocator in lock step, the eviction
 * and timing loops, the light data check of our pool, and the report.  The
 * models live in zsmalloc_model.c and zbud_model.c (see models.h); they hold
 * no bytes, only the kernel's placement decisions.
 *
 * Per trace:
 *  1. fill: allocate every size of the trace, in order;
 *  2. churn: R rounds (default 10) of "free a random half of the live
 *     objects, then allocate as many again with sizes drawn from the trace";
 *  3. eviction: each allocator alone evicts its least recently used unit
 *     (our zspage through uzs_pool_evict_begin/end, zsmalloc's oldest
 *     zspage, zbud's LRU page) until its pool is at most half of what it was.
 * Density is stored bytes (the callers' lengths) / pool bytes (whole pages
 * held).  The "+compact" rows are separate instances that compact at each
 * measuring point (after fill and after churn), so their churn starts from a
 * compacted fill, as a pool with a periodic compactor would.  A second,
 * smaller table replays the trace through our pool alone for each placement
 * policy and zspage size (fewer churn rounds by default: see --help).  All
 * random choices come from one seeded generator, so every allocator sees
 * exactly the same operations and every run is reproducible.
 *
 * --hot runs only the timing, on every trace cut to a size that stays in
 * cache (HOT_BYTES_DEFAULT): the pool's own cost, without its DRAM misses.
 *
 * Metadata per object counts memory outside pool pages: ours is what
 * uzs_pool_stats() reports (handle-table chunks as reserved, one descriptor
 * per arena page); zsmalloc's is assumed to be its 8-byte zs_handle slab
 * object per object plus a 56-byte struct zspage per zspage; zbud has none
 * (its handle is an address, its 64-byte header lives in the page).  The
 * struct page of every pool page is left out for all three.
 *
 * The bench pins itself to one CPU by default.  Our pool gives an emptied
 * zspage back at once (MADV_DONTNEED); once a process has run on two CPUs,
 * each such call may also flush the other CPU's TLB by IPI, which on a small
 * VM costs tens of microseconds and makes the timings depend on where the
 * scheduler happened to run the bench.  --cpu -1 measures that case.
 *
 * Real traces are read from --data-dir, by default ../shared/data/zsizes
 * beside the source tree (found from this file's path as compiled).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models.h"
#include "pool_internal.h"
#include "uzswap.h"

#define PAT_BYTES (2 * UZS_PAGE_SIZE)
#define TIMING_BATCH 1000u

/* The maintainers' targets (informative: the bench never fails on them). */
#define TARGET_FILL 0.985
#define TARGET_CHURN 0.95
#define TARGET_VS_ZBUD 1.6
#define TARGET_NS 150.0

/*
 * --hot: the stored bytes each trace is cut to, so that the pool and its
 * metadata stay in cache (1 MiB of L2 per core on the 2-vCPU VM this was
 * tuned on).  A pair then costs what the pool's code costs, not its DRAM
 * misses.  Here the figure is flat from 512 KiB to 1 MiB of objects and
 * grows by half at 2 MiB.  Smaller is not better: in a pool of a few dozen
 * zspages the large-object traces empty a zspage every 500-1000 pairs, and
 * the discard and fresh page faults that follow (tens of microseconds on a
 * VM) weigh more the smaller the pool.
 */
#define HOT_BYTES_DEFAULT (512u << 10)

struct opts {
	const char *data_dir;
	const char *traces;
	uint32_t limit;         /* real traces: first N lines, 0 = all */
	uint32_t synth_n;       /* objects in a synthetic trace */
	uint32_t cutoff;        /* drop sizes above this */
	unsigned rounds;
	unsigned variant_rounds; /* churn rounds of the variant table */
	uint64_t seed;
	unsigned verify_every;  /* check 1 object in N */
	unsigned timing_batches;
	unsigned repeat;        /* timing runs, each on a fresh pool */
	int cpu;                /* pin to this CPU; -1 = do not pin */
	uint64_t hot_bytes;     /* --hot: cut each trace to this; 0 = no */
	bool variants, timing, density;
};

/* --------------------------------------------------------------- misc */

static void die(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "pool_bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);

	if (!p)
		die("out of memory (%zu bytes)", n * size);
	return p;
}

static double clock_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

/* splitmix64: tiny, seedable, good enough to pick victims and sizes. */
struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, n) without a division (Lemire). */
static uint32_t rng_below(struct rng *r, uint32_t n)
{
	return (uint32_t)(((unsigned __int128)(rng_next(r) >> 32) * n) >> 32);
}

static uint32_t rng_range(struct rng *r, uint32_t lo, uint32_t hi)
{
	return lo + rng_below(r, hi - lo + 1);
}

/* ------------------------------------------------------------- traces */

struct trace {
	const char *name;
	bool real;
	uint32_t *len;
	uint32_t n;
	uint32_t dropped;       /* lines above the cutoff or unparsable */
	uint64_t bytes;
};

static const char *const trace_names[] = {
	"python_dict", "sqlite_mem", "uniform", "small", "large", "bimodal",
};
#define NTRACES (sizeof(trace_names) / sizeof(trace_names[0]))

static void trace_push(struct trace *t, uint32_t *cap, uint32_t len)
{
	if (t->n == *cap) {
		*cap = *cap ? *cap * 2 : 4096;
		t->len = realloc(t->len, *cap * sizeof(*t->len));
		if (!t->len)
			die("out of memory (trace of %u sizes)", *cap);
	}
	t->len[t->n++] = len;
	t->bytes += len;
}

static int trace_load_file(struct trace *t, const struct opts *o)
{
	char path[4096], line[64];
	uint32_t cap = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.txt", o->data_dir, t->name);
	f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "pool_bench: %s: %s (see --data-dir)\n", path,
			strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) && (!o->limit || t->n < o->limit)) {
		char *end;
		unsigned long v = strtoul(line, &end, 10);

		if (end == line)
			continue;       /* blank or comment */
		if (v == 0 || v > o->cutoff) {
			t->dropped++;
			continue;
		}
		trace_push(t, &cap, (uint32_t)v);
	}
	fclose(f);
	return 0;
}

static void trace_synth(struct trace *t, const struct opts *o, uint64_t salt)
{
	struct rng r = { o->seed ^ (salt * 0x100000001b3ull) };
	uint32_t cap = 0;

	for (uint32_t i = 0; i < o->synth_n; i++) {
		uint32_t len;

		if (!strcmp(t->name, "uniform"))
			len = rng_range(&r, 32, 3072);
		else if (!strcmp(t->name, "small"))
			len = rng_range(&r, 40, 200);
		else if (!strcmp(t->name, "large"))
			len = rng_range(&r, 2000, 3072);
		else    /* bimodal: half small objects, half nearly-incompressible */
			len = rng_below(&r, 2) ? rng_range(&r, 100, 300)
					       : rng_range(&r, 2500, 3000);
		if (len > o->cutoff) {
			t->dropped++;
			continue;
		}
		trace_push(t, &cap, len);
	}
}

/* --hot: keep the first sizes of the trace that add up to at most bytes.
 * A synthetic trace cut this way is the one synthesized that much shorter
 * (the same seeded sequence); a real one keeps its file order. */
static void trace_cut(struct trace *t, uint64_t bytes)
{
	uint64_t sum = 0;
	uint32_t n = 0;

	while (n < t->n && sum + t->len[n] <= bytes)
		sum += t->len[n++];
	t->n = n;
	t->bytes = sum;
}

/* ------------------------------------------------------------ subjects */

enum kind { K_OURS, K_ZSM, K_ZBM };

struct result {
	double fill, fill_c, churn, churn_c;    /* densities */
	double meta_per_obj;                    /* after churn */
	uint64_t ev_objs, ev_pages;
	uint64_t compact_pages;                 /* released by compaction */
	uint64_t refused;
};

/* One allocator under test, driven by the replay. */
struct subject {
	const char *label;
	enum kind kind;
	bool compact_fill, compact_churn;
	/* ours */
	struct uzs_pool_config cfg;
	enum uzs_placement place;
	struct uzs_pool *pool;
	uzs_handle_t *h;
	/* models */
	struct zsm *zs;
	struct zbm *zb;
	struct result r;
};

struct space {
	uint64_t objects, stored, pool_bytes, meta;
};

/* State shared by all subjects of one replay: the live objects. */
struct replay {
	const struct opts *o;
	const struct trace *t;
	uint32_t nids;
	uint32_t *len;          /* per id: current object length */
	uint32_t *gen;          /* per id: bumped on every allocation */
	uint32_t *live;         /* ids of live objects */
	uint32_t nlive;
	struct rng rng;
};

static unsigned char pat[PAT_BYTES];

/* The bytes of object id: a window of the pattern that moves with each
 * reuse of the id, so a stale or misplaced object does not compare equal. */
static const unsigned char *obj_bytes(const struct replay *rp, uint32_t id)
{
	return pat + ((id * 2654435761u + rp->gen[id] * 40503u) &
		      (UZS_PAGE_SIZE - 1));
}

static void subject_open(struct subject *s, uint32_t nids)
{
	int rc;

	memset(&s->r, 0, sizeof(s->r));
	switch (s->kind) {
	case K_OURS:
		rc = uzs_pool_create(&s->cfg, &s->pool);
		if (rc)
			die("uzs_pool_create(%s): %s", s->label, strerror(-rc));
		uzs_pool_set_placement(s->pool, s->place);
		s->h = xcalloc(nids, sizeof(*s->h));
		break;
	case K_ZSM:
		s->zs = zsm_create(nids);
		if (!s->zs)
			die("out of memory (%s)", s->label);
		break;
	case K_ZBM:
		s->zb = zbm_create(nids);
		if (!s->zb)
			die("out of memory (%s)", s->label);
		break;
	}
}

static void subject_close(struct subject *s)
{
	uzs_pool_destroy(s->pool);
	free(s->h);
	zsm_destroy(s->zs);
	zbm_destroy(s->zb);
	s->pool = NULL;
	s->h = NULL;
	s->zs = NULL;
	s->zb = NULL;
}

static void subject_alloc(struct subject *s, const struct replay *rp,
			  uint32_t id)
{
	uint32_t len = rp->len[id];
	int rc;

	switch (s->kind) {
	case K_OURS:
		rc = uzs_pool_alloc(s->pool, obj_bytes(rp, id), len, id, &s->h[id]);
		if (rc)
			die("uzs_pool_alloc(%s, %u B): %s", s->label, len, strerror(-rc));
		break;
	case K_ZSM:
		if (zsm_alloc(s->zs, id, len))
			die("%s: model refused %u B", s->label, len);
		break;
	case K_ZBM:
		zbm_alloc(s->zb, id, len);  /* may refuse: counted by the model */
		break;
	}
}

static void subject_free(struct subject *s, uint32_t id)
{
	switch (s->kind) {
	case K_OURS:
		if (uzs_pool_free(s->pool, s->h[id]))
			die("uzs_pool_free(%s) of a live object failed (id %u)",
			    s->label, id);
		s->h[id] = 0;
		break;
	case K_ZSM:
		zsm_free(s->zs, id);
		break;
	case K_ZBM:
		zbm_free(s->zb, id);
		break;
	}
}

static void subject_space(struct subject *s, struct space *sp)
{
	struct uzs_pool_stats st;
	struct zsm_stats zs;
	struct zbm_stats zb;

	switch (s->kind) {
	case K_OURS:
		uzs_pool_stats(s->pool, &st);
		*sp = (struct space){ st.objects, st.stored_bytes, st.pool_bytes,
				      st.metadata_bytes };
		break;
	case K_ZSM:
		zsm_get_stats(s->zs, &zs);
		*sp = (struct space){ zs.objects, zs.stored_bytes,
				      zs.pages * MODEL_PAGE_SIZE,
				      zs.objects * ZSM_HANDLE_BYTES +
				      zs.zspages * ZSM_ZSPAGE_STRUCT_BYTES };
		break;
	case K_ZBM:
		zbm_get_stats(s->zb, &zb);
		/* The handle encodes the address; the header is in the page. */
		*sp = (struct space){ zb.objects, zb.stored_bytes,
				      zb.pages * MODEL_PAGE_SIZE, 0 };
		s->r.refused = zb.refused;
		break;
	}
}

static double subject_density(struct subject *s)
{
	struct space sp;

	subject_space(s, &sp);
	return sp.pool_bytes ? (double)sp.stored / (double)sp.pool_bytes : 0;
}

static uint64_t subject_compact(struct subject *s)
{
	if (s->kind == K_OURS)
		return uzs_pool_compact(s->pool);
	if (s->kind == K_ZSM)
		return zsm_compact(s->zs);
	return 0;
}

/* ------------------------------------------------------- verification */

/* Read back one object of our pool and compare it with what was stored. */
static void verify_one(struct subject *s, const struct replay *rp, uint32_t id)
{
	static unsigned char buf[UZS_PAGE_SIZE];
	long n = uzs_pool_read(s->pool, s->h[id], buf, sizeof(buf));

	if (n != (long)rp->len[id])
		die("%s: object %u read back with length %ld, not %u",
		    s->label, id, n, rp->len[id]);
	if (memcmp(buf, obj_bytes(rp, id), (size_t)n))
		die("%s: object %u read back with the wrong bytes",
		    s->label, id);
}

/* A sample of the live objects, the pool's own invariants, and the totals. */
static void verify_ours(struct subject *s, const struct replay *rp)
{
	struct uzs_pool_stats st;
	uint64_t bytes = 0;

	if (s->kind != K_OURS)
		return;
	for (uint32_t i = 0; i < rp->nlive; i++) {
		uint32_t id = rp->live[i];

		bytes += rp->len[id];
		if (i % rp->o->verify_every == 0)
			verify_one(s, rp, id);
	}
	if (uzs_pool_check(s->pool))
		die("%s: uzs_pool_check failed", s->label);
	uzs_pool_stats(s->pool, &st);
	if (st.objects != rp->nlive || st.stored_bytes != bytes)
		die("%s: pool holds %llu objects, %llu B; the bench %u, %llu B",
		    s->label, (unsigned long long)st.objects,
		    (unsigned long long)st.stored_bytes, rp->nlive,
		    (unsigned long long)bytes);
}

/* ------------------------------------------------------------ phases */

static void phase_fill(struct replay *rp, struct subject *subj, size_t ns)
{
	for (uint32_t id = 0; id < rp->t->n; id++) {
		rp->len[id] = rp->t->len[id];
		rp->gen[id]++;
		rp->live[rp->nlive++] = id;
		for (size_t k = 0; k < ns; k++)
			subject_alloc(&subj[k], rp, id);
	}
}

/*
 * One round: a partial Fisher-Yates shuffle moves a random half of the live
 * ids to the front; those are freed everywhere, then reused for as many new
 * objects with sizes drawn from the trace.
 */
static void churn_round(struct replay *rp, struct subject *subj, size_t ns)
{
	uint32_t half = rp->nlive / 2;

	for (uint32_t j = 0; j < half; j++) {
		uint32_t t = j + rng_below(&rp->rng, rp->nlive - j);
		uint32_t id = rp->live[t];

		rp->live[t] = rp->live[j];
		rp->live[j] = id;
		for (size_t k = 0; k < ns; k++)
			subject_free(&subj[k], id);
	}
	for (uint32_t j = 0; j < half; j++) {
		uint32_t id = rp->live[j];

		rp->len[id] = rp->t->len[rng_below(&rp->rng, rp->t->n)];
		rp->gen[id]++;
		for (size_t k = 0; k < ns; k++)
			subject_alloc(&subj[k], rp, id);
	}
}

/*
 * Our pool: whole zspages through the eviction protocol, as the shim does.
 * Writing back a batch frees its objects whole, so a zspage that only held
 * the other fragments of split objects may be released too: pages freed
 * count every pool page the eviction gave back.  The evicted zspage itself
 * must be gone the moment its batch is freed.
 */
static void evict_ours(struct subject *s, const struct replay *rp)
{
	struct uzs_evict_batch *b = xcalloc(1, sizeof(*b));
	uint64_t held0, held, target;

	held0 = held = uzs_pool_held_bytes(s->pool);
	target = held / 2;
	while (held > target) {
		int n = uzs_pool_evict_begin(s->pool, b);

		if (n <= 0) {
			if (n == 0)
				uzs_pool_evict_end(s->pool, b);
			break;
		}
		for (unsigned k = 0; k < b->count; k++) {
			uint64_t id = b->entries[k].owner;

			if (id >= rp->nids || s->h[id] != b->entries[k].handle)
				die("%s: eviction batch names an unknown object "
				    "(owner %llu)", s->label,
				    (unsigned long long)id);
			if (k % rp->o->verify_every == 0)
				verify_one(s, rp, (uint32_t)id);
			subject_free(s, (uint32_t)id);
		}
		if (uzs_pool_zspage_pages(s->pool, b->zspage))
			die("%s: evicted zspage %u still held after its batch "
			    "was freed", s->label, b->zspage);
		uzs_pool_evict_end(s->pool, b);
		s->r.ev_objs += b->count;
		held = uzs_pool_held_bytes(s->pool);
	}
	s->r.ev_pages = (held0 - held) / UZS_PAGE_SIZE;
	if (uzs_pool_check(s->pool))
		die("%s: pool inconsistent after eviction", s->label);
	free(b);
}

static void phase_evict(struct subject *s, const struct replay *rp)
{
	struct space sp;
	uint64_t target;
	uint32_t pages, n;

	if (s->kind == K_OURS) {
		evict_ours(s, rp);
		return;
	}
	subject_space(s, &sp);
	target = sp.pool_bytes / 2;
	while (sp.pool_bytes > target) {
		if (s->kind == K_ZSM) {
			n = zsm_evict_oldest(s->zs, &pages);
		} else {
			n = zbm_evict_lru(s->zb);
			pages = 1;
		}
		if (!n)
			break;
		s->r.ev_objs += n;
		s->r.ev_pages += pages;
		subject_space(s, &sp);
	}
}

static void measure(struct subject *subj, size_t ns, bool churned)
{
	for (size_t k = 0; k < ns; k++) {
		struct subject *s = &subj[k];
		double d = subject_density(s);
		bool compact = churned ? s->compact_churn : s->compact_fill;
		double dc = d;

		if (compact) {
			s->r.compact_pages += subject_compact(s);
			dc = subject_density(s);
		}
		if (churned) {
			s->r.churn = d;
			s->r.churn_c = dc;
		} else {
			s->r.fill = d;
			s->r.fill_c = dc;
		}
	}
}

/* Fill, churn, evict: every subject sees the same operations. */
static void replay_run(const struct trace *t, const struct opts *o,
		       unsigned rounds, struct subject *subj, size_t ns)
{
	struct replay rp = {
		.o = o, .t = t, .nids = t->n,
		.rng = { o->seed ^ 0x5eed5eed5eed5eedull },
	};
	struct space sp;

	rp.len = xcalloc(t->n, sizeof(*rp.len));
	rp.gen = xcalloc(t->n, sizeof(*rp.gen));
	rp.live = xcalloc(t->n, sizeof(*rp.live));
	for (size_t k = 0; k < ns; k++)
		subject_open(&subj[k], t->n);

	phase_fill(&rp, subj, ns);
	measure(subj, ns, false);
	for (size_t k = 0; k < ns; k++)
		verify_ours(&subj[k], &rp);

	for (unsigned r = 0; r < rounds; r++)
		churn_round(&rp, subj, ns);
	measure(subj, ns, true);
	for (size_t k = 0; k < ns; k++) {
		verify_ours(&subj[k], &rp);
		subject_space(&subj[k], &sp);
		subj[k].r.meta_per_obj = sp.objects ?
			(double)sp.meta / (double)sp.objects : 0;
	}

	for (size_t k = 0; k < ns; k++) {
		phase_evict(&subj[k], &rp);
		subject_close(&subj[k]);
	}
	free(rp.len);
	free(rp.gen);
	free(rp.live);
}

/* ------------------------------------------------------------- timing */

struct timing {
	double median, p10, p90;        /* ns per alloc+free pair */
	double cpu_median;              /* the same in thread CPU time */
	double floor_median;            /* ns per memcpy of the same bytes */
	double runs_min, runs_max;      /* medians of single repetitions */
	double sweeps_per_alloc;        /* hole listings in the timed part */
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median_of(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[n / 2];
}

/* What a batch of the timed loop does, drawn before its clock starts. */
struct batch_plan {
	uint32_t lens[TIMING_BATCH];
	uint32_t vict[TIMING_BATCH];
	size_t dst[TIMING_BATCH];       /* floor: where the memcpy goes */
};

static void plan_batch(struct rng *r, const struct trace *t, size_t span,
		       struct batch_plan *bp)
{
	for (unsigned j = 0; j < TIMING_BATCH; j++) {
		bp->lens[j] = t->len[rng_below(r, t->n)];
		bp->vict[j] = rng_below(r, t->n);
		bp->dst[j] = (size_t)(rng_next(r) % (span - UZS_PAGE_SIZE));
	}
}

/*
 * The floor the pool cannot beat: the same lengths memcpy'd from the same
 * source to random places in a buffer as large as the pool, so the
 * destination is as cold as a pool page.  The buffer is touched once
 * first: no page faults are timed.
 */
static double time_floor(const struct batch_plan *bp, unsigned char *buf)
{
	double t0 = now_ns();

	for (unsigned j = 0; j < TIMING_BATCH; j++) {
		memcpy(buf + bp->dst[j], pat + j, bp->lens[j]);
		__asm__ volatile("" : : "r"(buf) : "memory");
	}
	return (now_ns() - t0) / TIMING_BATCH;
}

/*
 * ns per alloc+free pair in steady state, single-threaded: a default pool
 * filled with the trace, then batches of TIMING_BATCH pairs (store a new
 * object of a size drawn from the trace, free a random live one), each batch
 * timed as a whole.  Only pool calls are inside the clock: sizes and victims
 * of a batch are drawn before it starts.  The first n / TIMING_BATCH
 * batches (one turnover of the pool) are not recorded: they only bring it
 * to steady state.  Each timed batch is followed by the floor (time_floor)
 * on the same plan, so both see the same load on the machine.  The whole
 * thing is repeated `repeat` times on fresh pools; the median is over the
 * batches of all repetitions.
 */
static void time_ours(const struct trace *t, const struct opts *o,
		      struct timing *tm)
{
	struct rng r = { o->seed ^ 0x7133ull };
	unsigned warm = t->n / TIMING_BATCH + 1, nb = o->timing_batches;
	unsigned total = nb * o->repeat;
	double *ns = xcalloc(total, sizeof(*ns));
	double *cpu = xcalloc(total, sizeof(*cpu));
	double *fl = xcalloc(total, sizeof(*fl));
	double *runs = xcalloc(o->repeat, sizeof(*runs));
	double *one = xcalloc(nb, sizeof(*one));
	uzs_handle_t *h = xcalloc(t->n, sizeof(*h));
	struct batch_plan *bp = xcalloc(1, sizeof(*bp));
	uint64_t sweeps = 0;
	unsigned char *buf;
	size_t span;
	int rc;

	span = (size_t)t->bytes + 2 * UZS_PAGE_SIZE;
	buf = xcalloc(span, 1);
	memset(buf, 1, span);
	for (unsigned rep = 0; rep < o->repeat; rep++) {
		struct uzs_pool_stats st0, st1;
		struct uzs_pool *pool;

		rc = uzs_pool_create(NULL, &pool);
		if (rc)
			die("uzs_pool_create(timing): %s", strerror(-rc));
		for (uint32_t i = 0; i < t->n; i++)
			if ((rc = uzs_pool_alloc(pool, pat + (i & (UZS_PAGE_SIZE - 1)),
						 t->len[i], i, &h[i])))
				die("uzs_pool_alloc(timing): %s", strerror(-rc));
		for (unsigned b = 0; b < warm + nb; b++) {
			double t0, t1, c0, c1;

			if (b == warm)
				uzs_pool_stats(pool, &st0);
			plan_batch(&r, t, span, bp);
			c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
			t0 = now_ns();
			for (unsigned j = 0; j < TIMING_BATCH; j++) {
				uzs_handle_t nh;

				rc = uzs_pool_alloc(pool, pat + j, bp->lens[j],
						    j, &nh);
				rc |= uzs_pool_free(pool, h[bp->vict[j]]);
				if (rc)
					die("alloc/free failed in the timed "
					    "loop (%d)", rc);
				h[bp->vict[j]] = nh;
			}
			t1 = now_ns();
			c1 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
			if (b >= warm) {
				unsigned k = rep * nb + b - warm;

				ns[k] = (t1 - t0) / TIMING_BATCH;
				cpu[k] = (c1 - c0) / TIMING_BATCH;
				fl[k] = time_floor(bp, buf);
			}
		}
		uzs_pool_stats(pool, &st1);
		sweeps += st1.sweeps - st0.sweeps;
		memcpy(one, ns + rep * nb, nb * sizeof(*one));
		runs[rep] = median_of(one, nb);
		uzs_pool_destroy(pool);
	}
	tm->median = median_of(ns, total);
	tm->p10 = ns[total / 10];
	tm->p90 = ns[total * 9 / 10];
	tm->cpu_median = median_of(cpu, total);
	tm->floor_median = median_of(fl, total);
	qsort(runs, o->repeat, sizeof(*runs), cmp_double);
	tm->runs_min = runs[0];
	tm->runs_max = runs[o->repeat - 1];
	tm->sweeps_per_alloc = (double)sweeps / ((double)total * TIMING_BATCH);
	free(buf);
	free(bp);
	free(h);
	free(ns);
	free(cpu);
	free(fl);
	free(runs);
	free(one);
}

/* ------------------------------------------------------------- report */

struct tally {
	unsigned pass, fail;
};

/* One line per trace for the closing summary. */
struct summary {
	const char *name;
	double us_fill, us_churn, zs_fill, zs_churn, zb_fill, zb_churn;
	double ns, floor;
};

static const char *mark(struct tally *ty, bool ok)
{
	ok ? ty->pass++ : ty->fail++;
	return ok ? "PASS" : "FAIL";
}

static double evict_ratio(const struct result *r)
{
	return r->ev_objs ? (double)r->ev_pages / (double)r->ev_objs : 0;
}

static void print_row(const char *label, const struct result *r, bool compacted,
		      const char *note)
{
	printf("  %-18s %7.4f %7.4f %9.4f %9.1f  %s\n", label,
	       compacted ? r->fill_c : r->fill, compacted ? r->churn_c : r->churn,
	       evict_ratio(r), r->meta_per_obj, note);
}

static void print_variants(const struct trace *t, const struct opts *o)
{
	static const struct {
		enum uzs_placement place;
		const char *name;
	} pl[] = { { UZS_PLACE_EMPTIEST, "emptiest" },
		   { UZS_PLACE_RECENT, "recent" } };
	static const struct {
		unsigned pages;
		const char *name;
	} zp[] = { { 0, "auto" }, { 1, "1 page" }, { 2, "2 pages" } };

	printf("  variants of ours (churn: after %u rounds; churn+c: then "
	       "uzs_pool_compact once):\n", o->variant_rounds);
	printf("    %-9s %-8s %7s %7s %8s %9s\n", "placement", "zspage",
	       "fill", "churn", "churn+c", "pg/obj");
	for (size_t i = 0; i < sizeof(pl) / sizeof(pl[0]); i++) {
		for (size_t j = 0; j < sizeof(zp) / sizeof(zp[0]); j++) {
			struct subject v = {
				.label = "variant", .kind = K_OURS,
				.cfg = { 0, -1, zp[j].pages },
				.place = pl[i].place, .compact_churn = true,
			};

			replay_run(t, o, o->variant_rounds, &v, 1);
			printf("    %-9s %-8s %7.4f %7.4f %8.4f %9.4f%s\n",
			       pl[i].name, zp[j].name, v.r.fill, v.r.churn,
			       v.r.churn_c, evict_ratio(&v.r),
			       i == 0 && j == 0 ? "  (default)" : "");
		}
	}
}

enum { S_OURS, S_OURS_C, S_ZS, S_ZS_C, S_ZBUD, NSUBJ };

/* The density table and its targets: the replay of every allocator. */
static void bench_density(const struct trace *t, const struct opts *o,
			  struct tally *ty, struct summary *sum)
{
	struct subject s[NSUBJ] = {
		[S_OURS] = { .label = "ours", .kind = K_OURS,
			     .cfg = { 0, -1, 0 } },
		[S_OURS_C] = { .label = "ours +compact", .kind = K_OURS,
			       .cfg = { 0, -1, 0 }, .compact_fill = true,
			       .compact_churn = true },
		[S_ZS] = { .label = "zsmalloc", .kind = K_ZSM },
		[S_ZS_C] = { .label = "zsmalloc +compact", .kind = K_ZSM,
			     .compact_fill = true, .compact_churn = true },
		[S_ZBUD] = { .label = "zbud", .kind = K_ZBM },
	};
	const struct result *us = &s[S_OURS].r, *zs = &s[S_ZS].r;
	const struct result *zb = &s[S_ZBUD].r;
	char note[3][96];

	replay_run(t, o, o->rounds, s, NSUBJ);

	printf("  %-18s %7s %7s %9s %9s\n", "density", "fill", "churn",
	       "pg/obj", "meta B/obj");
	snprintf(note[0], sizeof(note[0]), "(compaction released %llu pages)",
		 (unsigned long long)s[S_OURS_C].r.compact_pages);
	snprintf(note[1], sizeof(note[1]), "(compaction released %llu pages)",
		 (unsigned long long)s[S_ZS_C].r.compact_pages);
	snprintf(note[2], sizeof(note[2]), "(refused %llu objects > 3968 B)",
		 (unsigned long long)zb->refused);
	print_row("ours", us, false, "");
	print_row("ours +compact", &s[S_OURS_C].r, true, note[0]);
	print_row("zsmalloc", zs, false, "");
	print_row("zsmalloc +compact", &s[S_ZS_C].r, true, note[1]);
	print_row("zbud", zb, false, zb->refused ? note[2] : "");
	printf("  %-18s %7.3f %7.3f %9.3f\n", "ours / zsmalloc",
	       us->fill / zs->fill, us->churn / zs->churn,
	       evict_ratio(us) / evict_ratio(zs));
	printf("  %-18s %7.3f %7.3f\n", "ours / zsmalloc+c",
	       us->fill / s[S_ZS_C].r.fill_c, us->churn / s[S_ZS_C].r.churn_c);
	printf("  %-18s %7.3f %7.3f %9.3f\n", "ours / zbud",
	       us->fill / zb->fill, us->churn / zb->churn,
	       evict_ratio(us) / evict_ratio(zb));

	printf("  targets (informative):\n");
	printf("    [%s] ours >= zsmalloc after fill   (%.4f vs %.4f)\n",
	       mark(ty, us->fill >= zs->fill), us->fill, zs->fill);
	printf("    [%s] ours >= zsmalloc after churn  (%.4f vs %.4f)\n",
	       mark(ty, us->churn >= zs->churn), us->churn, zs->churn);
	printf("    [%s] ours >= %.3f after fill       (%.4f)\n",
	       mark(ty, us->fill >= TARGET_FILL), TARGET_FILL, us->fill);
	printf("    [%s] ours >= %.2f after churn       (%.4f, no compaction)\n",
	       mark(ty, us->churn >= TARGET_CHURN), TARGET_CHURN, us->churn);
	if (t->real) {
		printf("    [%s] ours >= %.1fx zbud after fill  (%.3fx)\n",
		       mark(ty, us->fill >= TARGET_VS_ZBUD * zb->fill),
		       TARGET_VS_ZBUD, us->fill / zb->fill);
		printf("    [%s] ours >= %.1fx zbud after churn (%.3fx)\n",
		       mark(ty, us->churn >= TARGET_VS_ZBUD * zb->churn),
		       TARGET_VS_ZBUD, us->churn / zb->churn);
	}
	sum->us_fill = us->fill;
	sum->us_churn = us->churn;
	sum->zs_fill = zs->fill;
	sum->zs_churn = zs->churn;
	sum->zb_fill = zb->fill;
	sum->zb_churn = zb->churn;
}

static void bench_timing(const struct trace *t, const struct opts *o,
			 struct tally *ty, struct summary *sum)
{
	struct timing tm = { 0 };

	time_ours(t, o, &tm);
	printf("  ours alloc+free%s: median %.1f ns per pair (p10 %.1f, p90 %.1f; "
	       "thread CPU time %.1f;\n  %u x %u batches of %u; medians of "
	       "single runs %.1f..%.1f);\n  floor (memcpy of the same bytes to "
	       "a %s buffer) %.1f ns; %.3f sweeps per alloc\n",
	       o->hot_bytes ? " (hot)" : "", tm.median, tm.p10, tm.p90,
	       tm.cpu_median, o->repeat, o->timing_batches, TIMING_BATCH,
	       tm.runs_min, tm.runs_max, o->hot_bytes ? "cache-resident" : "cold",
	       tm.floor_median, tm.sweeps_per_alloc);
	printf("    [%s] alloc+free median <= %.0f ns   (%.1f ns)\n",
	       mark(ty, tm.median <= TARGET_NS), TARGET_NS, tm.median);
	sum->ns = tm.median;
	sum->floor = tm.floor_median;
}

static void bench_trace(const struct trace *t, const struct opts *o,
			struct tally *ty, struct summary *sum)
{
	double t0 = now_ns();

	printf("\n== %s: %u objects (%s), mean %.0f B, %.1f MiB stored",
	       t->name, t->n, t->real ? "real, file order" : "synthetic",
	       (double)t->bytes / t->n, (double)t->bytes / (1 << 20));
	if (t->dropped)
		printf(", %u dropped (> %u B)", t->dropped, o->cutoff);
	if (o->hot_bytes)
		printf(", hot: cut to <= %llu KiB", (unsigned long long)
		       (o->hot_bytes >> 10));
	printf(" ==\n");
	*sum = (struct summary){ .name = t->name };
	if (o->density)
		bench_density(t, o, ty, sum);
	if (o->timing)
		bench_timing(t, o, ty, sum);
	if (o->variants)
		print_variants(t, o);
	printf("  (%.1f s)\n", (now_ns() - t0) / 1e9);
}

static void print_summary(const struct summary *sum, size_t n,
			  const struct tally *ty, const struct opts *o)
{
	printf("\n== summary: density fill/churn (no compaction); ns per "
	       "alloc+free pair and its memcpy floor%s ==\n",
	       o->hot_bytes ? " (hot: cache-resident pools)" : "");
	printf("  %-12s %15s %15s %15s %9s %7s\n", "trace", "ours", "zsmalloc",
	       "zbud", "ns/pair", "floor");
	for (size_t i = 0; i < n; i++) {
		printf("  %-12s", sum[i].name);
		if (o->density)
			printf(" %7.4f/%.4f %7.4f/%.4f %7.4f/%.4f",
			       sum[i].us_fill, sum[i].us_churn, sum[i].zs_fill,
			       sum[i].zs_churn, sum[i].zb_fill, sum[i].zb_churn);
		else
			printf(" %15s %15s %15s", "-", "-", "-");
		if (o->timing)
			printf(" %9.1f %7.1f", sum[i].ns, sum[i].floor);
		printf("\n");
	}
	printf("targets met: %u of %u (informative)\n", ty->pass,
	       ty->pass + ty->fail);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
	fprintf(f,
"usage: pool_bench [options]\n"
"Replay compressed-size traces through libuzswap's pool and through models of\n"
"the kernel's zsmalloc (chain 8, with and without compaction) and zbud; report\n"
"density after fill and after churn, pool pages freed per object evicted,\n"
"metadata per object, alloc+free time, and the pool's placement variants.\n"
"\n"
"  -d, --data-dir DIR     real traces (NAME.txt, one size a line); default:\n"
"                         ../shared/data/zsizes next to the source tree\n"
"  -t, --traces LIST      comma list of python_dict,sqlite_mem,uniform,small,\n"
"                         large,bimodal (default: all)\n"
"  -l, --limit N          use the first N lines of a real trace (0 = all)\n"
"  -n, --synth N          objects per synthetic trace (default 50000)\n"
"  -c, --cutoff N         drop sizes above N bytes (default 4096, the pool's\n"
"                         maximum; the codec's default cutoff is 3072)\n"
"  -r, --rounds N         churn rounds (default 10)\n"
"  -R, --variant-rounds N churn rounds in the variant table (default 3: each\n"
"                         variant is a full replay of its own)\n"
"  -s, --seed N           seed of every random choice (default 1)\n"
"  -v, --verify-every N   read back 1 object in N (default 16)\n"
"  -b, --batches N        timed batches of %u alloc+free pairs (default 200)\n"
"  -k, --repeat N         timing runs, each on a fresh pool (default 3); the\n"
"                         median is over the batches of all of them\n"
"  -p, --cpu N            pin to CPU N (default: the CPU it starts on; -1 = no\n"
"                         pinning: see the top of pool_bench.c for why)\n"
"      --no-variants      skip the placement / zspage-size table\n"
"      --no-timing        skip the alloc+free timing\n"
"      --timing-only      only the alloc+free timing (no density replay, no\n"
"                         variants)\n"
"      --hot[=KIB]        timing only, on every trace cut to its first sizes\n"
"                         that add up to KIB KiB (default %u): a pool that\n"
"                         stays in cache, so the figure is the pool's own\n"
"                         code, not its DRAM misses (see bench/README.md)\n"
"  -h, --help             this text\n"
"\n"
"Quick run: pool_bench -t python_dict,small -l 50000 -n 20000 --no-variants\n",
		TIMING_BATCH, HOT_BYTES_DEFAULT >> 10);
}

/* ../shared/data/zsizes beside the source tree, found from this file's
 * path as the compiler saw it (absolute in an out-of-tree build). */
static const char *default_data_dir(void)
{
	static char dir[4096];
	static const char *const fallback[] = {
		"../shared/data/zsizes", "../../shared/data/zsizes",
		"/work/shared/data/zsizes",
	};
	const char *slash = strrchr(__FILE__, '/');
	FILE *f;

	if (slash) {
		/* __FILE__ is SRC/bench/pool_bench.c: go up to SRC/.. */
		snprintf(dir, sizeof(dir), "%.*s/../../shared/data/zsizes",
			 (int)(slash - __FILE__), __FILE__);
		snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "%s",
			 "/python_dict.txt");
		f = fopen(dir, "r");
		dir[strlen(dir) - strlen("/python_dict.txt")] = '\0';
		if (f) {
			fclose(f);
			return dir;
		}
	}
	for (size_t i = 0; i < sizeof(fallback) / sizeof(fallback[0]); i++) {
		snprintf(dir, sizeof(dir), "%s/python_dict.txt", fallback[i]);
		f = fopen(dir, "r");
		if (f) {
			fclose(f);
			return fallback[i];
		}
	}
	return fallback[0];
}

static uint64_t parse_num(const char *s, const char *what)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 0);

	if (end == s || *end)
		die("bad number for %s: %s", what, s);
	return v;
}

static bool trace_wanted(const struct opts *o, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = o->traces; p && *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		if (len == n && !strncmp(p, name, n))
			return true;
		p = e ? e + 1 : NULL;
	}
	return !o->traces;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "data-dir", required_argument, NULL, 'd' },
		{ "traces", required_argument, NULL, 't' },
		{ "limit", required_argument, NULL, 'l' },
		{ "synth", required_argument, NULL, 'n' },
		{ "cutoff", required_argument, NULL, 'c' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "variant-rounds", required_argument, NULL, 'R' },
		{ "seed", required_argument, NULL, 's' },
		{ "verify-every", required_argument, NULL, 'v' },
		{ "batches", required_argument, NULL, 'b' },
		{ "cpu", required_argument, NULL, 'p' },
		{ "no-variants", no_argument, NULL, 'V' },
		{ "no-timing", no_argument, NULL, 'T' },
		{ "timing-only", no_argument, NULL, 'O' },
		{ "hot", optional_argument, NULL, 'H' },
		{ "repeat", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = {
		.synth_n = 50000, .cutoff = UZS_PAGE_SIZE, .rounds = 10, .variant_rounds = 3,
		.seed = 1, .verify_every = 16, .timing_batches = 200,
		.repeat = 3, .cpu = sched_getcpu(), .variants = true,
		.timing = true, .density = true,
	};
	struct summary sum[NTRACES];
	struct tally ty = { 0, 0 };
	size_t nsum = 0;
	struct rng r;
	int c;

	while ((c = getopt_long(argc, argv, "d:t:l:n:c:r:R:s:v:b:k:p:h", lo, NULL)) != -1) {
		switch (c) {
		case 'd': o.data_dir = optarg; break;
		case 't': o.traces = optarg; break;
		case 'l': o.limit = (uint32_t)parse_num(optarg, "--limit"); break;
		case 'n': o.synth_n = (uint32_t)parse_num(optarg, "--synth"); break;
		case 'c': o.cutoff = (uint32_t)parse_num(optarg, "--cutoff"); break;
		case 'r': o.rounds = (unsigned)parse_num(optarg, "--rounds"); break;
		case 'R': o.variant_rounds = (unsigned)parse_num(optarg, "--variant-rounds"); break;
		case 's': o.seed = parse_num(optarg, "--seed"); break;
		case 'v': o.verify_every = (unsigned)parse_num(optarg, "--verify-every"); break;
		case 'b': o.timing_batches = (unsigned)parse_num(optarg, "--batches"); break;
		case 'p': o.cpu = strcmp(optarg, "-1") ?
				  (int)parse_num(optarg, "--cpu") : -1; break;
		case 'V': o.variants = false; break;
		case 'T': o.timing = false; break;
		case 'O': o.density = o.variants = false; break;
		case 'H':
			o.hot_bytes = optarg ? parse_num(optarg, "--hot") << 10 :
					       HOT_BYTES_DEFAULT;
			if (!o.hot_bytes)
				die("--hot: the size must be at least 1 KiB");
			o.density = o.variants = false;
			o.timing = true;
			break;
		case 'k': o.repeat = (unsigned)parse_num(optarg, "--repeat"); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || !o.verify_every || !o.timing_batches || !o.repeat ||
	    o.cutoff == 0 || o.cutoff > UZS_PAGE_SIZE) {
		usage(stderr);
		return 2;
	}
	if (!o.data_dir)
		o.data_dir = default_data_dir();
	if (o.cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(o.cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			die("cannot pin to CPU %d: %s", o.cpu, strerror(errno));
	}

	r.s = o.seed;
	for (size_t i = 0; i < PAT_BYTES; i += 8) {
		uint64_t v = rng_next(&r);

		memcpy(pat + i, &v, 8);
	}

	printf("pool_bench: seed %llu, %u churn rounds, data %s, ",
	       (unsigned long long)o.seed, o.rounds, o.data_dir);
	if (o.cpu >= 0)
		printf("pinned to CPU %d\n", o.cpu);
	else
		printf("not pinned\n");
	printf("zsmalloc model: chain 8, %u classes after merging, objects of "
	       ">= %u B (+8 B handle) take a whole page; zbud model: 64 B chunks, "
	       "max 3968 B\n", zsm_nr_classes(), zsm_huge_threshold());
	printf("columns: density = stored / pool bytes; pg/obj = pool pages freed "
	       "per object evicted\n(LRU eviction down to half the pool); meta = "
	       "bytes outside pool pages per live object\n(zsmalloc: %u B handle "
	       "+ %u B struct zspage per zspage; zbud: none, its 64 B header\nis "
	       "inside the page)\n", ZSM_HANDLE_BYTES, ZSM_ZSPAGE_STRUCT_BYTES);

	for (size_t i = 0; i < NTRACES; i++) {
		struct trace t = { .name = trace_names[i], .real = i < 2 };

		if (!trace_wanted(&o, t.name))
			continue;
		if (t.real ? trace_load_file(&t, &o) : (trace_synth(&t, &o, i), 0))
			return 1;
		if (o.hot_bytes)
			trace_cut(&t, o.hot_bytes);
		if (t.n < 2) {
			fprintf(stderr, "pool_bench: %s: too few sizes\n", t.name);
			free(t.len);
			continue;
		}
		bench_trace(&t, &o, &ty, &sum[nsum++]);
		free(t.len);
	}
	print_summary(sum, nsum, &ty, &o);
	return 0;
}
