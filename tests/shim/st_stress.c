/*
 * st_stress.c - a randomized mixed workload with a shadow model, for the
 * races no scripted test reaches: several threads make skewed, sub-page
 * reads and writes over one mapping while some pages are discarded
 * (MADV_DONTNEED) and the main thread churns malloc'd buffers (glibc's own
 * mmap, mremap via realloc, munmap), all while the engine takes pages out
 * and brings them back.
 *
 * Usage: st_stress ["SECONDS [THREADS [MIB]]"]   (defaults 3, 4, 32)
 *
 * Pages are owned by thread (page % THREADS), so an owner can check each
 * record against its shadow version with no locking, while neighbouring
 * pages are hit by other threads at once.  Each 64-byte record holds its
 * index, a version and a check of both; version 0 means "all zeros" (never
 * written or discarded).  Every read is verified; at the end every page is.
 * The threads start once the engine has taken most of the data out.
 */
#include "shimtest.h"

#include <pthread.h>

#define REC 64u
#define RECS_PER_PAGE (ST_PAGE / REC)
#define MAX_THREADS 16
#define BUFS 12

struct record {
	uint32_t index;
	uint32_t version;
	uint64_t check;
	uint8_t fill[REC - 16];         /* a byte of the version: compressible */
};

static char *data;
static size_t npages;
static unsigned nthreads;
static uint32_t *shadow;                /* version of each record */
static volatile int stop;

static uint64_t rec_check(uint32_t index, uint32_t version)
{
	return st_mix(((uint64_t)index << 32) | version) | 1;
}

static void rec_write(struct record *r, uint32_t index, uint32_t version)
{
	r->index = index;
	r->version = version;
	r->check = rec_check(index, version);
	memset(r->fill, (int)(version & 0xff), sizeof(r->fill));
}

static void rec_verify(const struct record *r, uint32_t index, uint32_t version)
{
	struct record want;

	if (version == 0)
		memset(&want, 0, sizeof(want));
	else
		rec_write(&want, index, version);
	if (memcmp(r, &want, sizeof(want)) == 0)
		return;
	st_fail("record %u at %p (page %u): expected version %u, found index "
		"%u version %u check %s",
		index, (const void *)r, index / RECS_PER_PAGE, version, r->index,
		r->version, r->check == rec_check(r->index, r->version)
			    ? "valid" : "invalid");
}

static uint64_t rnd(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	return st_mix(*s);
}

/* A page owned by thread t: mostly from a hot twentieth of its pages. */
static size_t pick_page(uint64_t *s, unsigned t)
{
	size_t own = (npages - t + nthreads - 1) / nthreads, k;

	if (rnd(s) % 10 < 9)
		k = rnd(s) % (own / 20 + 1);
	else
		k = rnd(s) % own;
	return t + k * nthreads;
}

static void *worker(void *arg)
{
	unsigned t = (unsigned)(uintptr_t)arg;
	uint64_t s = 1000 + t;

	while (!stop) {
		size_t pg = pick_page(&s, t);
		uint32_t base = (uint32_t)(pg * RECS_PER_PAGE);
		struct record *recs = (struct record *)(data + pg * ST_PAGE);
		unsigned op = (unsigned)(rnd(&s) % 1000);
		uint32_t i = (uint32_t)(rnd(&s) % RECS_PER_PAGE);

		if (op < 700) {
			rec_verify(&recs[i], base + i, shadow[base + i]);
		} else if (op < 950) {
			rec_write(&recs[i], base + i, ++shadow[base + i]);
		} else if (op < 998) {
			for (i = 0; i < RECS_PER_PAGE; i++)
				rec_verify(&recs[i], base + i, shadow[base + i]);
		} else {
			ST_CHECK(madvise(recs, ST_PAGE, MADV_DONTNEED) == 0);
			memset(&shadow[base], 0, RECS_PER_PAGE * sizeof(*shadow));
		}
	}
	return NULL;
}

/* malloc churn: buffers of 64 KiB..4 MiB, filled, grown, verified, freed. */
struct buf {
	char *p;
	size_t pages;
	uint32_t round;
};

static void churn(struct buf *b, unsigned slot, uint64_t *s)
{
	if (b->p) {
		st_verify("malloc", b->p, b->pages, 40 + slot, 0, b->round);
		if (rnd(s) % 2) {
			size_t more = b->pages + 1 + rnd(s) % 256;
			char *q = realloc(b->p, more * ST_PAGE);

			ST_CHECK(q != NULL);
			/* realloc keeps the bytes, not the page alignment. */
			if (((uintptr_t)q & (ST_PAGE - 1)) == 0) {
				b->p = q;
				st_verify("realloc", q, b->pages, 40 + slot, 0, b->round);
				st_fill(q, more, 40 + slot, 0, ++b->round);
				b->pages = more;
				return;
			}
			b->p = q;
		}
		free(b->p);
		b->p = NULL;
		return;
	}
	b->pages = 16 + rnd(s) % 1024;
	ST_CHECK(posix_memalign((void **)&b->p, ST_PAGE, b->pages * ST_PAGE) == 0);
	b->round = (uint32_t)(rnd(s) % 1000);
	st_fill(b->p, b->pages, 40 + slot, 0, b->round);
}

/* "SECONDS THREADS MIB" as one argument (as the test runner passes it)
 * or as up to three. */
static void parse_args(int argc, char **argv, double *seconds, unsigned *mib)
{
	char all[256] = "";
	size_t used = 0;

	for (int i = 1; i < argc; i++) {
		int n = snprintf(all + used, sizeof(all) - used, "%s ", argv[i]);

		if (n < 0 || (size_t)n >= sizeof(all) - used)
			st_fail("arguments too long");
		used += (size_t)n;
	}
	if (argc > 1 && sscanf(all, "%lf %u %u", seconds, &nthreads, mib) < 1)
		st_fail("bad arguments \"%s\"", all);
}

int main(int argc, char **argv)
{
	double seconds = 3.0, t0;
	unsigned mib = 32;
	pthread_t th[MAX_THREADS];
	struct buf bufs[BUFS] = { 0 };
	uint64_t s = 7, ops = 0;
	size_t min_res = SIZE_MAX;

	st_init(argv[0]);
	nthreads = 4;
	parse_args(argc, argv, &seconds, &mib);
	if (nthreads < 1 || nthreads > MAX_THREADS || mib < 1 || seconds <= 0)
		st_fail("usage: st_stress [\"SECONDS [THREADS(1..16) [MIB]]\"]");
	npages = mib * ST_MIB / ST_PAGE;
	data = st_map(npages * ST_PAGE);
	shadow = calloc(npages * RECS_PER_PAGE, sizeof(*shadow));
	ST_CHECK(shadow != NULL);
	/* Start with every record written, so there is something to compress. */
	for (size_t pg = 0; pg < npages; pg++)
		for (uint32_t i = 0; i < RECS_PER_PAGE; i++) {
			uint32_t idx = (uint32_t)(pg * RECS_PER_PAGE + i);

			shadow[idx] = 1;
			rec_write((struct record *)(data + pg * ST_PAGE) + i, idx, 1);
		}
	/* Proof the engine is at work (else the run tests nothing): most of
	 * the data must go out before the threads start bringing it back. */
	st_wait_out("data", data, npages * ST_PAGE);
	for (unsigned t = 0; t < nthreads; t++)
		ST_CHECK(pthread_create(&th[t], NULL, worker,
					(void *)(uintptr_t)t) == 0);
	t0 = st_now();
	while (st_now() - t0 < seconds) {
		unsigned k = (unsigned)(rnd(&s) % BUFS);
		size_t res;

		churn(&bufs[k], k, &s);
		ops++;
		if ((res = st_resident(data, npages * ST_PAGE)) < min_res)
			min_res = res;
		st_sleep_ms(1);
	}
	stop = 1;
	for (unsigned t = 0; t < nthreads; t++)
		pthread_join(th[t], NULL);
	for (size_t idx = 0; idx < npages * RECS_PER_PAGE; idx++)
		rec_verify((struct record *)data + idx, (uint32_t)idx, shadow[idx]);
	for (unsigned k = 0; k < BUFS; k++)
		if (bufs[k].p)
			st_verify("malloc", bufs[k].p, bufs[k].pages, 40 + k, 0,
				  bufs[k].round);
	st_note("ok: %u threads, %u MiB, %.1f s, %llu churn steps, at least "
		"%zu of %zu pages resident", nthreads, mib, st_now() - t0,
		(unsigned long long)ops, min_res, npages);
	return 0;
}
