/*
 * threads.c - example (b): a multi-threaded program.  Each thread owns a big,
 * mostly cold array and works on a small hot part of it; all of them read a
 * shared table.  It needs nothing from uzswap; run it as is, then under
 * uzswap, and compare (see examples/README.md):
 *
 *     ./examples/threads --threads 4 --size 512
 *     UZSWAP_LIMIT=320M UZSWAP_STATS=1 \
 *         LD_PRELOAD=preload/.libs/libuzswap_preload.so ./examples/threads
 *
 * Memory:
 *
 *   private  --size MiB split between the --threads threads.  Each thread
 *            allocates its own share itself, in --chunk KiB pieces; pieces
 *            that small come from glibc's per-thread arenas (heaps of 64 MiB
 *            that grow by mprotect), not from mmap of their own.  The share
 *            is an array of 64-byte cells: small numbers, a label made of
 *            words, zero padding.
 *   shared   a table of --shared MiB that the main thread fills before the
 *            workers start.  It is read-mostly: each read checks an entry,
 *            and one read in 64 also bumps the entry's use counter (an
 *            atomic add, so threads may share an entry).
 *
 * Phases, each timed with the process's VmRSS and VmHWM after it:
 *
 *   build   every thread allocates and fills its share.
 *   hot     every thread does --ops operations on its hot part (--hot-percent
 *           of its cells, in runs of 64 neighbours, chosen with --seed): it
 *           reads a cell and the shared entry the cell refers to, and, for
 *           --write-percent of the operations, updates the cell.
 *   verify  every thread checks every byte of its share; the main thread
 *           checks every byte of the shared table.
 *
 * A cell's contents follow from its thread, its index and its update count,
 * and the counts and use counters must add up to the operations done, so
 * every byte can be checked without keeping a second copy.  The checksum
 * depends only on the options (not on scheduling), so it must be the same
 * with and without uzswap.  Exit status: 0 all checks pass, 1 some failed
 * (listed on stderr), 2 bad usage.
 *
 * Plain C11, POSIX threads, no other dependencies.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------- the data */

struct cell {
	uint64_t index;         /* position in its thread's array */
	uint32_t owner;         /* thread number */
	uint32_t count;         /* updates so far */
	uint64_t value;         /* cell_value(index, count) */
	uint16_t kind;
	uint16_t flags;
	uint32_t ref;           /* a shared entry */
	char label[24];         /* two or three words, NUL padded */
	uint64_t reserved;      /* zero */
};

struct entry {
	uint64_t id;
	_Atomic uint64_t uses;  /* bumped by the workers */
	char name[32];          /* words, NUL padded */
	uint32_t weight;
	uint32_t sum;           /* entry_sum() of the fields other than uses */
	uint64_t reserved;      /* zero */
};

_Static_assert(sizeof(struct cell) == 64, "a cell is 64 bytes");
_Static_assert(sizeof(struct entry) == 64, "an entry is 64 bytes");

#define HOT_RUN 64              /* hot cells come in runs of this many */
#define BUMP_EVERY 64           /* one shared read in this many is a write */
#define MAX_REPORTS 10          /* bad cells listed per thread */

static const char *const words[] = {
	"apple", "river", "stone", "cloud", "green", "table", "night", "paper",
	"music", "light", "house", "water", "bread", "glass", "horse", "train",
	"smile", "chair", "dream", "field", "ocean", "plant", "sugar", "tiger",
	"north", "south", "east", "west", "red", "blue", "black", "white",
};
#define NWORDS (sizeof(words) / sizeof(words[0]))

/* ------------------------------------------------------ hashing, random */

/* splitmix64: a good 64-bit mix, and a tiny random generator. */
static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t rand64(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ull;
	return mix64(*state);
}

static uint64_t rand_below(uint64_t *state, uint64_t n)
{
	return rand64(state) % n;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t len)
{
	const unsigned char *b = p;
	size_t off = 0;

	for (; off + 8 <= len; off += 8) {
		uint64_t w;

		memcpy(&w, b + off, 8);
		h = mix64(h ^ w);
	}
	for (; off < len; off++)
		h = mix64(h ^ b[off]);
	return h;
}

/* Two or three words separated by sep, NUL padded to len. */
static void put_words(char *dst, size_t len, uint64_t *rng, char sep)
{
	size_t at = 0;

	memset(dst, 0, len);
	for (unsigned n = 2 + (unsigned)rand_below(rng, 2); n > 0; n--) {
		const char *w = words[rand_below(rng, NWORDS)];
		size_t wl = strlen(w);

		if (at + wl + 1 >= len)
			break;
		if (at)
			dst[at++] = sep;
		memcpy(dst + at, w, wl);
		at += wl;
	}
}

/* ------------------------------------------------------ the shared table */

static uint32_t entry_sum(const struct entry *e)
{
	uint64_t h = hash_bytes(e->id, e->name, sizeof(e->name));

	return (uint32_t)mix64(h ^ e->weight ^ e->reserved);
}

static void make_entry(uint64_t seed, uint64_t id, struct entry *e)
{
	uint64_t rng = mix64(seed ^ mix64(id ^ 0x736861726564ull));

	e->id = id;
	atomic_init(&e->uses, 0);
	put_words(e->name, sizeof(e->name), &rng, '.');
	e->weight = (uint32_t)rand_below(&rng, 1000);
	e->reserved = 0;
	e->sum = entry_sum(e);
}

/* ---------------------------------------------------------------- cells */

static uint64_t cell_value(uint64_t index, uint32_t count)
{
	return index * 3 + (uint64_t)count * (1 + index % 7);
}

/* The cell as the build writes it: everything follows from (seed, owner,
 * index), so it can be made again to check it. */
static void make_cell(uint64_t seed, uint32_t owner, uint64_t index,
		      uint32_t nentries, struct cell *c)
{
	uint64_t rng = mix64(seed ^ mix64(((uint64_t)owner << 48) ^ index));

	memset(c, 0, sizeof(*c));
	c->index = index;
	c->owner = owner;
	c->count = 0;
	c->value = cell_value(index, 0);
	c->kind = (uint16_t)rand_below(&rng, 4);
	c->flags = (uint16_t)(rand_below(&rng, 8) == 0);
	c->ref = (uint32_t)rand_below(&rng, nentries);
	put_words(c->label, sizeof(c->label), &rng, ' ');
}

/* ------------------------------------------------------------- settings */

struct options {
	unsigned threads;
	uint64_t size_mib;      /* private data, all threads together */
	uint64_t shared_mib;
	uint64_t chunk_kib;
	double hot_percent;
	uint64_t ops;           /* per thread */
	unsigned write_percent;
	uint64_t seed;
	unsigned sleep_s;
};

/* ---------------------------------------------------------- the workers */

struct shared {
	const struct options *o;
	struct entry *table;
	uint32_t nentries;
	pthread_barrier_t barrier;
};

struct worker {
	pthread_t tid;
	uint32_t id;
	struct shared *sh;
	struct cell **chunks;
	size_t nchunks, cells_per_chunk;
	uint64_t ncells;
	/* results */
	bool oom;
	uint64_t writes, bumps;     /* what the hot phase did */
	uint64_t bad;               /* failed checks */
	uint64_t bytes_checked;
	uint64_t checksum;
};

static struct cell *cell_at(const struct worker *w, uint64_t i)
{
	return &w->chunks[i / w->cells_per_chunk][i % w->cells_per_chunk];
}

static void report_bad(struct worker *w, const char *what, uint64_t i)
{
	if (w->bad++ < MAX_REPORTS)
		fprintf(stderr, "threads: thread %u: %s %" PRIu64 " (at %p) is "
			"wrong\n", w->id, what, i, (void *)cell_at(w, i));
}

static void build(struct worker *w)
{
	const struct options *o = w->sh->o;

	w->chunks = calloc(w->nchunks, sizeof(*w->chunks));
	if (!w->chunks) {
		w->oom = true;
		return;
	}
	for (size_t k = 0; k < w->nchunks; k++) {
		w->chunks[k] = malloc(w->cells_per_chunk * sizeof(struct cell));
		if (!w->chunks[k]) {
			w->oom = true;
			return;
		}
	}
	for (uint64_t i = 0; i < w->ncells; i++)
		make_cell(o->seed, w->id, i, w->sh->nentries, cell_at(w, i));
}

/* A cell is consistent if its value matches its count (the rest is
 * checked by verify). */
static bool cell_ok(const struct worker *w, const struct cell *c, uint64_t i)
{
	return c->index == i && c->owner == w->id &&
	       c->value == cell_value(i, c->count);
}

static void hot(struct worker *w)
{
	const struct options *o = w->sh->o;
	uint64_t rng = mix64(o->seed ^ mix64(0x686f74ull + w->id));
	uint64_t nruns = (w->ncells + HOT_RUN - 1) / HOT_RUN;
	uint64_t nhot = (uint64_t)((double)nruns * o->hot_percent / 100.0 + 0.5);
	uint64_t first;

	if (nhot < 1)
		nhot = 1;
	if (nhot > nruns)
		nhot = nruns;
	/*
	 * The hot runs: nhot runs spread evenly over the array from a random
	 * start, so each thread's hot part is scattered through its heaps.
	 */
	first = rand_below(&rng, nruns);
	for (uint64_t op = 0; op < o->ops; op++) {
		uint64_t k = rand_below(&rng, nhot);
		uint64_t run = (first + k * (nruns / nhot)) % nruns;
		uint64_t i = run * HOT_RUN + rand_below(&rng, HOT_RUN);
		struct cell *c;
		struct entry *e;

		if (i >= w->ncells)
			i = w->ncells - 1;
		c = cell_at(w, i);
		if (!cell_ok(w, c, i) || c->ref >= w->sh->nentries) {
			report_bad(w, "cell", i);
			continue;
		}
		e = &w->sh->table[c->ref];
		if (e->id != c->ref || e->sum != entry_sum(e)) {
			report_bad(w, "shared entry of cell", i);
			continue;
		}
		if (op % BUMP_EVERY == 0) {
			atomic_fetch_add_explicit(&e->uses, 1, memory_order_relaxed);
			w->bumps++;
		}
		if (rand_below(&rng, 100) < o->write_percent) {
			c->count++;
			c->value = cell_value(i, c->count);
			w->writes++;
		}
	}
}

/* Every byte of the thread's cells: what the build made, plus the updates. */
static void verify(struct worker *w)
{
	const struct options *o = w->sh->o;
	uint64_t h = mix64(w->id), counts = 0;

	for (uint64_t i = 0; i < w->ncells; i++) {
		const struct cell *c = cell_at(w, i);
		struct cell want;

		make_cell(o->seed, w->id, i, w->sh->nentries, &want);
		want.count = c->count;
		want.value = cell_value(i, c->count);
		if (memcmp(c, &want, sizeof(want)) != 0)
			report_bad(w, "cell", i);
		counts += c->count;
		h = hash_bytes(h, c, sizeof(*c));
	}
	if (counts != w->writes) {
		w->bad++;
		fprintf(stderr, "threads: thread %u: cells were updated %" PRIu64
			" times, not %" PRIu64 "\n", w->id, counts, w->writes);
	}
	w->bytes_checked = w->ncells * sizeof(struct cell);
	w->checksum = h;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	build(w);
	pthread_barrier_wait(&w->sh->barrier);     /* build done */
	pthread_barrier_wait(&w->sh->barrier);     /* hot: go */
	if (!w->oom)
		hot(w);
	pthread_barrier_wait(&w->sh->barrier);     /* hot done */
	pthread_barrier_wait(&w->sh->barrier);     /* verify: go */
	if (!w->oom)
		verify(w);
	pthread_barrier_wait(&w->sh->barrier);     /* verify done */
	return NULL;    /* the data stays until exit: see the end of main */
}

/* -------------------------------------------------------- reporting */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A "Name:   123 kB" field of /proc/self/status, in KiB, or -1. */
static long status_kib(const char *name)
{
	FILE *f = fopen("/proc/self/status", "r");
	size_t nlen = strlen(name);
	char line[256];
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, name, nlen) && line[nlen] == ':') {
			v = strtol(line + nlen + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

/* Same format as examples/cache: phase NAME SECONDS s rss MiB MiB peak MiB MiB */
static void report_phase(const char *name, double seconds)
{
	printf("phase %-7s %9.3f s   rss %8.1f MiB   peak %8.1f MiB\n", name,
	       seconds, status_kib("VmRSS") / 1024.0, status_kib("VmHWM") / 1024.0);
	fflush(stdout);
}

/* ------------------------------------------------------------ options */

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
"Usage: %s [OPTIONS]\n"
"\n"
"A multi-threaded program: every thread builds its share of --size MiB of\n"
"64-byte cells, works on a small hot part of it while reading a shared\n"
"table, then checks every byte.  Each phase prints its wall time, the\n"
"current resident memory (VmRSS) and the peak so far (VmHWM).\n"
"\n"
"Options:\n"
"  --threads N          worker threads, 1 to 64 (default 4)\n"
"  --size MIB           private data of all threads together (default 512)\n"
"  --shared MIB         shared read-mostly table (default 16)\n"
"  --chunk KIB          each thread allocates its data in pieces this big,\n"
"                       4 to 65536 (default 64: from glibc's thread arenas)\n"
"  --hot-percent P      share of each thread's cells in its hot part,\n"
"                       0 < P <= 100 (default 5)\n"
"  --ops N              operations per thread in the hot phase\n"
"                       (default 2000000)\n"
"  --write-percent P    share of the operations that update the cell\n"
"                       (default 20)\n"
"  --seed N             seed of the data and of the choices (default 1)\n"
"  --sleep S            sleep S seconds after the build, e.g. to run\n"
"                       `uzswap stat PID` meanwhile (default 0)\n"
"  -h, --help           this help\n"
"\n"
"The checksum depends only on the options (not on --sleep or on thread\n"
"scheduling): it must be the same with and without uzswap.  Exit status: 0\n"
"every byte checks out, 1 some did not (listed on stderr), 2 bad usage.\n",
		prog);
}

static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (!s || !*s || *s == '-')
		return false;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return !errno && !*end;
}

/* The value of option `opt` as a whole number in [min, max], or exit. */
static uint64_t number_arg(const char *prog, const char *opt, const char *v,
			   uint64_t min, uint64_t max)
{
	uint64_t n;

	if (!parse_u64(v, &n) || n < min || n > max) {
		fprintf(stderr, "%s: %s needs a whole number from %" PRIu64
			" to %" PRIu64 "\n(try %s --help)\n", prog, opt, min, max,
			prog);
		exit(2);
	}
	return n;
}

static void parse_options(int argc, char **argv, struct options *o)
{
	const char *prog = argv[0];

	*o = (struct options){
		.threads = 4, .size_mib = 512, .shared_mib = 16, .chunk_kib = 64,
		.hot_percent = 5, .ops = 2000000, .write_percent = 20, .seed = 1,
	};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout, prog);
			exit(0);
		}
		if (!strcmp(a, "--threads")) {
			o->threads = (unsigned)number_arg(prog, a, v, 1, 64);
		} else if (!strcmp(a, "--size")) {
			o->size_mib = number_arg(prog, a, v, 1, (uint64_t)1 << 20);
		} else if (!strcmp(a, "--shared")) {
			o->shared_mib = number_arg(prog, a, v, 1, 4096);
		} else if (!strcmp(a, "--chunk")) {
			o->chunk_kib = number_arg(prog, a, v, 4, 65536);
		} else if (!strcmp(a, "--ops")) {
			o->ops = number_arg(prog, a, v, 0, UINT64_MAX);
		} else if (!strcmp(a, "--write-percent")) {
			o->write_percent = (unsigned)number_arg(prog, a, v, 0, 100);
		} else if (!strcmp(a, "--seed")) {
			o->seed = number_arg(prog, a, v, 0, UINT64_MAX);
		} else if (!strcmp(a, "--sleep")) {
			o->sleep_s = (unsigned)number_arg(prog, a, v, 0, 86400);
		} else if (!strcmp(a, "--hot-percent")) {
			char *end = NULL;

			o->hot_percent = v ? strtod(v, &end) : 0;
			if (!v || !*v || *end ||
			    !(o->hot_percent > 0 && o->hot_percent <= 100)) {
				fprintf(stderr, "%s: %s needs a number above 0 and at "
					"most 100\n(try %s --help)\n", prog, a, prog);
				exit(2);
			}
		} else {
			fprintf(stderr, "%s: unknown option \"%s\"\n(try %s --help)\n",
				prog, a, prog);
			exit(2);
		}
		i++;    /* past the option's value */
	}
}

/* ---------------------------------------------------------------- main */

/* Every byte of the shared table; returns the number of bad entries. */
static uint64_t verify_table(const struct shared *sh, uint64_t bumps,
			     uint64_t *checksum)
{
	uint64_t bad = 0, uses = 0, h = 0x7461626c65ull;

	for (uint32_t i = 0; i < sh->nentries; i++) {
		const struct entry *e = &sh->table[i];
		struct entry want;
		uint64_t u = atomic_load(&e->uses);

		make_entry(sh->o->seed, i, &want);
		if (e->id != want.id || memcmp(e->name, want.name, sizeof(want.name)) ||
		    e->weight != want.weight || e->sum != want.sum ||
		    e->reserved != want.reserved) {
			if (bad++ < MAX_REPORTS)
				fprintf(stderr, "threads: shared entry %u (at %p) is "
					"wrong\n", i, (const void *)e);
		}
		uses += u;
		h = mix64(mix64(h ^ e->id) ^ u);
		h = hash_bytes(h, e->name, sizeof(e->name));
		h = mix64(h ^ e->weight ^ ((uint64_t)e->sum << 32));
		h = mix64(h ^ e->reserved);
	}
	if (uses != bumps) {
		bad++;
		fprintf(stderr, "threads: shared entries were used %" PRIu64
			" times, not %" PRIu64 "\n", uses, bumps);
	}
	*checksum = h;
	return bad;
}

int main(int argc, char **argv)
{
	/* static: the data stays reachable until exit, see the end */
	static struct shared sh;
	static struct worker *workers;
	struct options o;
	uint64_t cells_per_thread, bad = 0, writes = 0, bumps = 0, bytes = 0;
	uint64_t checksum, table_sum;
	bool oom = false;
	double t;
	int rc;

	parse_options(argc, argv, &o);
	memset(&sh, 0, sizeof(sh));
	sh.o = &o;
	sh.nentries = (uint32_t)(o.shared_mib * ((uint64_t)1 << 20) / sizeof(struct entry));
	cells_per_thread = o.size_mib * ((uint64_t)1 << 20) / sizeof(struct cell) / o.threads;
	if (cells_per_thread < HOT_RUN) {
		fprintf(stderr, "threads: --size is too small for %u threads\n",
			o.threads);
		return 2;
	}

	printf("threads: pid %ld, %u threads with %.1f MiB each in %" PRIu64
	       " KiB pieces, %" PRIu64 " MiB shared, hot part %g%%, %" PRIu64
	       " ops per thread (%u%% writes), seed %" PRIu64 "\n",
	       (long)getpid(), o.threads,
	       (double)(cells_per_thread * sizeof(struct cell)) / (1 << 20),
	       o.chunk_kib, o.shared_mib, o.hot_percent, o.ops, o.write_percent,
	       o.seed);
	fflush(stdout);

	workers = calloc(o.threads, sizeof(*workers));
	sh.table = malloc((size_t)sh.nentries * sizeof(struct entry));
	if (!workers || !sh.table) {
		fprintf(stderr, "threads: out of memory\n");
		return 1;
	}
	rc = pthread_barrier_init(&sh.barrier, NULL, o.threads + 1);
	if (rc) {
		fprintf(stderr, "threads: pthread_barrier_init: %s\n", strerror(rc));
		return 1;
	}

	t = now_s();
	for (uint32_t i = 0; i < sh.nentries; i++)
		make_entry(o.seed, i, &sh.table[i]);
	for (unsigned k = 0; k < o.threads; k++) {
		struct worker *w = &workers[k];

		w->id = k;
		w->sh = &sh;
		w->ncells = cells_per_thread;
		w->cells_per_chunk = o.chunk_kib * 1024 / sizeof(struct cell);
		w->nchunks = (w->ncells + w->cells_per_chunk - 1) / w->cells_per_chunk;
		rc = pthread_create(&w->tid, NULL, worker_main, w);
		if (rc) {
			fprintf(stderr, "threads: pthread_create: %s\n", strerror(rc));
			return 1;
		}
	}
	pthread_barrier_wait(&sh.barrier);
	report_phase("build", now_s() - t);
	for (unsigned k = 0; k < o.threads; k++)
		oom |= workers[k].oom;
	if (oom)
		fprintf(stderr, "threads: out of memory building the data\n");
	if (o.sleep_s)
		sleep(o.sleep_s);

	t = now_s();
	pthread_barrier_wait(&sh.barrier);
	pthread_barrier_wait(&sh.barrier);
	report_phase("hot", now_s() - t);

	/* The barrier makes the workers' counts visible here. */
	for (unsigned k = 0; k < o.threads; k++)
		bumps += workers[k].bumps;

	/* The workers check their cells while this thread checks the table. */
	t = now_s();
	pthread_barrier_wait(&sh.barrier);
	bad += verify_table(&sh, bumps, &table_sum);
	pthread_barrier_wait(&sh.barrier);
	report_phase("verify", now_s() - t);
	for (unsigned k = 0; k < o.threads; k++)
		pthread_join(workers[k].tid, NULL);

	checksum = 0x74687265616473ull;
	for (unsigned k = 0; k < o.threads; k++) {
		bad += workers[k].bad;
		writes += workers[k].writes;
		bytes += workers[k].bytes_checked;
		checksum = mix64(checksum ^ workers[k].checksum);
	}
	bytes += (uint64_t)sh.nentries * sizeof(struct entry);
	checksum = mix64(checksum ^ table_sum);

	printf("threads: %" PRIu64 " cell updates, %" PRIu64 " shared-entry uses, "
	       "%" PRIu64 " bytes checked\n", writes, bumps, bytes);
	printf("checksum %016" PRIx64 "\n", checksum);
	if (oom || bad) {
		printf("threads: FAILED: %" PRIu64 " bad checks%s\n", bad,
		       oom ? " (and out of memory)" : "");
		fflush(stdout);
		return 1;
	}
	printf("threads: every byte checks out\n");
	/*
	 * The data is left for exit to free, as many programs do; that way the
	 * UZSWAP_STATS=1 summary, printed during exit, still shows what uzswap
	 * was holding.  Flush first, so the summary comes after our output.
	 */
	fflush(stdout);
	pthread_barrier_destroy(&sh.barrier);
	return 0;
}
