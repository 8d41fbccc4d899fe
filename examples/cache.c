/*
 * cache.c - example (a): a cache-like program with a big, mostly cold data
 * set and a small hot working set.  It needs nothing from uzswap; run it as
 * is, then under uzswap, and compare (see examples/README.md):
 *
 *     ./examples/cache --size 512
 *     UZSWAP_LIMIT=128M UZSWAP_STATS=1 \
 *         LD_PRELOAD=preload/.libs/libuzswap_preload.so ./examples/cache --size 512
 *
 * (The limit covers the compressed pool too: at about 3x, 128M is below
 * what the cold data needs, and uzswap has to squeeze the hot set as well;
 * 240M is comfortable.  examples/README.md says more.)
 *
 * The data is an array of 128-byte records, kept in 32 MiB slabs the way a
 * cache or an in-memory store keeps them.  A record holds what such records
 * usually hold: an id, small integers, a timestamp, a pointer-like link to
 * another record, a key such as "user:00001234", a small JSON value and zero
 * padding.  That makes the data compressible, about 3x with LZO.
 *
 * The program runs in phases and times each one:
 *
 *   build   creates every record.
 *   hot     does --ops operations on the hot set: --hot-percent of the
 *           records, in runs of 64 neighbours (records created together tend
 *           to be used together), chosen with --seed.  Each operation reads a
 *           record and checks it; --write-percent of them also update it.
 *   scan    (with --scan) reads every record once, like a report or a backup
 *           would: the cold data comes back.
 *   verify  checks every record against what the build wrote plus the
 *           updates, and computes a checksum of all the data.
 *
 * Each phase line gives its wall time, the process's resident memory
 * (VmRSS) and peak resident memory (VmHWM, from /proc/self/status), and the
 * CPU time the whole process used in it (all threads, user and system: on a
 * busy machine a steadier measure than wall time).  The
 * checksum depends only on --size, --hot-percent, --ops, --write-percent and
 * --seed, so it must be the same with and without uzswap; a record that
 * does not check out is reported and makes the exit status 1.
 *
 * Plain C11 and POSIX, no dependencies.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------- the data */

struct record {
	uint64_t id;
	uint64_t next;          /* looks like a pointer to another record */
	uint64_t created_ns;    /* a timestamp */
	uint32_t hits;          /* updated by the hot phase */
	uint16_t kind;
	uint16_t flags;
	int32_t score;          /* updated by the hot phase */
	uint32_t version;       /* updated by the hot phase */
	char key[24];           /* "user:00001234", NUL padded */
	char value[48];         /* a small JSON object, NUL padded */
	uint8_t reserved[12];   /* zero */
	uint32_t sum;           /* hash of all the bytes above */
};

_Static_assert(sizeof(struct record) == 128, "a record is 128 bytes");

#define RECORD_SIZE sizeof(struct record)
#define SLAB_BYTES ((size_t)32 << 20)
#define SLAB_RECORDS (SLAB_BYTES / RECORD_SIZE)
#define HOT_RUN 64              /* hot records come in runs of this many */

static const char *const words[] = {
	"apple", "river", "stone", "cloud", "green", "table", "night", "paper",
	"music", "light", "house", "water", "bread", "glass", "horse", "train",
	"smile", "chair", "dream", "field", "ocean", "plant", "sugar", "tiger",
	"north", "south", "east", "west", "red", "blue", "black", "white",
	"small", "large", "quick", "slow", "happy", "quiet", "loud", "sharp",
	"city", "road", "bridge", "tower", "garden", "forest", "winter", "summer",
	"order", "user", "item", "price", "stock", "cart", "ship", "pay",
	"alpha", "beta", "gamma", "delta", "node", "edge", "key", "value",
};
#define NWORDS (sizeof(words) / sizeof(words[0]))

struct store {
	struct record **slabs;
	size_t nslabs;
	uint64_t nrecords;
};

static struct record *rec(const struct store *s, uint64_t id)
{
	return &s->slabs[id / SLAB_RECORDS][id % SLAB_RECORDS];
}

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

/* Uniform in [0, n), n > 0 (the bias of a modulo is irrelevant here). */
static uint64_t rand_below(uint64_t *state, uint64_t n)
{
	return rand64(state) % n;
}

/* Hash of a record's bytes, its sum field excluded. */
static uint64_t record_hash64(const struct record *r)
{
	const unsigned char *p = (const unsigned char *)r;
	uint64_t h = 0x2545f4914f6cdd1dull;
	size_t off = 0;

	for (; off + 8 <= offsetof(struct record, sum); off += 8) {
		uint64_t w;

		memcpy(&w, p + off, 8);
		h = mix64(h ^ w);
	}
	for (; off < offsetof(struct record, sum); off++)
		h = mix64(h ^ p[off]);
	return h;
}

/* What a record's sum field holds. */
static uint32_t record_hash(const struct record *r)
{
	return (uint32_t)record_hash64(r);
}

/* ------------------------------------------------------------ the build */

/* Append str to the string dst[*len], if it fits with its NUL. */
static void append(char *dst, size_t size, size_t *len, const char *str)
{
	size_t n = strlen(str);

	if (*len + n < size) {
		memcpy(dst + *len, str, n + 1);
		*len += n;
	}
}

/* A word, the first ones of the list more often, as in real text. */
static const char *pick_word(uint64_t *rng)
{
	uint64_t a = rand_below(rng, NWORDS), b = rand_below(rng, NWORDS);
	uint64_t c = rand_below(rng, NWORDS);

	a = a < b ? a : b;
	return words[a < c ? a : c];
}

/* The key: "user:00001234", the kind's name and the id.  snprintf would do,
 * but this runs for every record, twice. */
static const char *const key_kinds[4] = { "sess", "user", "item", "cart" };

static void put_key(char key[24], const char *kind, uint64_t id)
{
	size_t n = strlen(kind);

	memcpy(key, kind, n);
	key[n++] = ':';
	for (uint64_t div = 10000000; div; div /= 10)
		key[n++] = (char)('0' + id / div % 10);
}

/*
 * The record with this id as the build phase writes it.  Everything comes
 * from a generator seeded by (seed, id), so the verify phase can make the
 * same record again and compare.
 */
static void make_record(uint64_t seed, uint64_t nrecords, uint64_t id,
			struct record *r)
{
	uint64_t rng = mix64(seed ^ mix64(id));
	size_t len = 0;

	memset(r, 0, sizeof(*r));
	r->id = id;
	/* Mostly a link to a record nearby (a hash chain, a list of recent
	 * entries), sometimes to anywhere, sometimes to nothing. */
	switch (rand_below(&rng, 4)) {
	case 0:
		r->next = 0;
		break;
	case 1:
		r->next = 0x00007f5a3c000000ull + rand_below(&rng, nrecords) * RECORD_SIZE;
		break;
	default:
		r->next = 0x00007f5a3c000000ull +
			((id + 1 + rand_below(&rng, 16)) % nrecords) * RECORD_SIZE;
		break;
	}
	/* About 20 records a millisecond. */
	r->created_ns = 1700000000000000000ull + id * 50000ull + rand_below(&rng, 50000);
	/* Most entries of a cache are never hit and keep their defaults. */
	if (rand_below(&rng, 4) == 0) {
		r->hits = 1 + (uint32_t)rand_below(&rng, 15);
		r->score = (int32_t)rand_below(&rng, 100);
	}
	r->kind = (uint16_t)(rand_below(&rng, 3) ? 1 : rand_below(&rng, 8));
	r->flags = (uint16_t)(rand_below(&rng, 4) == 0 ? 0x1 : 0x0);
	r->version = 0;
	put_key(r->key, key_kinds[r->kind % 4], id);
	/* The cached value: {"tag":"word","state":"ok","n":1}, or shorter. */
	append(r->value, sizeof(r->value), &len, "{\"tag\":\"");
	append(r->value, sizeof(r->value), &len, pick_word(&rng));
	append(r->value, sizeof(r->value), &len, rand_below(&rng, 8)
	       ? "\",\"state\":\"ok\"" : "\",\"state\":\"stale\"");
	if (rand_below(&rng, 4) == 0) {
		char n[8] = ",\"n\":0";

		n[5] = (char)('1' + rand_below(&rng, 9));
		append(r->value, sizeof(r->value), &len, n);
	}
	append(r->value, sizeof(r->value), &len, "}");
	r->sum = record_hash(r);
}

static int store_build(struct store *s, uint64_t seed)
{
	s->nslabs = (size_t)((s->nrecords + SLAB_RECORDS - 1) / SLAB_RECORDS);
	s->slabs = calloc(s->nslabs, sizeof(*s->slabs));
	if (!s->slabs)
		return -1;
	for (size_t i = 0; i < s->nslabs; i++) {
		uint64_t first = (uint64_t)i * SLAB_RECORDS;
		uint64_t n = s->nrecords - first < SLAB_RECORDS
			? s->nrecords - first : SLAB_RECORDS;

		s->slabs[i] = malloc(n * RECORD_SIZE);
		if (!s->slabs[i])
			return -1;
		for (uint64_t k = 0; k < n; k++)
			make_record(seed, s->nrecords, first + k, &s->slabs[i][k]);
	}
	return 0;
}

/* ------------------------------------------------------- the hot phase */

/*
 * Pick the hot runs: a partial Fisher-Yates shuffle of all run numbers.
 * Returns how many there are (at least 1), or 0 if out of memory.
 */
static uint64_t pick_hot_runs(uint64_t nrecords, double hot_percent,
			      uint64_t seed, uint32_t **runs_out)
{
	uint64_t nruns = (nrecords + HOT_RUN - 1) / HOT_RUN;
	uint64_t nhot = (uint64_t)((double)nruns * hot_percent / 100.0 + 0.5);
	uint64_t rng = mix64(seed ^ 0x686f74ull);
	uint32_t *runs = malloc(nruns * sizeof(*runs));

	if (!runs)
		return 0;
	if (nhot < 1)
		nhot = 1;
	if (nhot > nruns)
		nhot = nruns;
	for (uint64_t i = 0; i < nruns; i++)
		runs[i] = (uint32_t)i;
	for (uint64_t i = 0; i < nhot; i++) {
		uint64_t j = i + rand_below(&rng, nruns - i);
		uint32_t t = runs[i];

		runs[i] = runs[j];
		runs[j] = t;
	}
	*runs_out = runs;
	return nhot;
}

/* Where reads leave a trace, so that the compiler keeps them. */
static volatile uint64_t sink;

/* Returns the number of records that did not check out. */
static uint64_t hot_phase(struct store *s, const uint32_t *runs, uint64_t nhot,
			  uint64_t ops, unsigned write_percent, uint64_t seed)
{
	uint64_t rng = mix64(seed ^ 0x6f7073ull), bad = 0, seen = 0;

	for (uint64_t i = 0; i < ops; i++) {
		uint64_t run = runs[rand_below(&rng, nhot)];
		uint64_t id = run * HOT_RUN + rand_below(&rng, HOT_RUN);
		uint64_t dice = rand_below(&rng, 100);
		struct record *r;

		if (id >= s->nrecords)      /* the last run may be short */
			id = s->nrecords - 1;
		r = rec(s, id);
		if (r->sum != record_hash(r) || r->id != id) {
			if (bad++ < 10)
				fprintf(stderr, "cache: record %" PRIu64
					" is corrupt in the hot phase\n", id);
			continue;
		}
		if (dice < write_percent) {
			r->hits++;
			r->score += (int32_t)rand_below(&rng, 21) - 10;
			r->version++;
			r->flags |= 0x2;
			r->sum = record_hash(r);
		} else {
			seen += (uint64_t)r->score + r->key[0];    /* a read */
		}
	}
	sink = seen;
	return bad;
}

/* ---------------------------------------------------- scan and verify */

struct scan_result {
	uint64_t per_kind[8];
	uint64_t hits, updated;
	int64_t score;
	uint64_t bad;
};

/* The report a cold scan might produce: read every record once. */
static void scan_phase(const struct store *s, struct scan_result *res)
{
	memset(res, 0, sizeof(*res));
	for (uint64_t id = 0; id < s->nrecords; id++) {
		const struct record *r = rec(s, id);

		if (r->sum != record_hash(r)) {
			res->bad++;
			continue;
		}
		res->per_kind[r->kind & 7]++;
		res->hits += r->hits;
		res->score += r->score;
		res->updated += r->version != 0;
	}
}

/*
 * Every record must be what the build made, except for the fields the hot
 * phase updates, and its sum must match its bytes.  Returns the number of
 * bad records; *checksum gets a hash of all the data.
 */
static uint64_t verify_phase(const struct store *s, uint64_t seed,
			     uint64_t *checksum)
{
	uint64_t bad = 0, sum = 0x636865636b73756dull;

	for (uint64_t id = 0; id < s->nrecords; id++) {
		const struct record *r = rec(s, id);
		struct record want;
		uint64_t h = record_hash64(r);

		make_record(seed, s->nrecords, id, &want);
		want.hits = r->hits;
		want.score = r->score;
		want.version = r->version;
		want.flags = (uint16_t)(want.flags | (r->flags & 0x2));
		want.sum = record_hash(&want);
		if ((uint32_t)h != r->sum || memcmp(r, &want, sizeof(want)) != 0) {
			/* What is there instead says a lot: zeros, or another
			 * record (a page put back at the wrong place)? */
			if (bad++ < 10)
				fprintf(stderr, "cache: record %" PRIu64 " (at %p) "
					"does not check out: it holds id %" PRIu64
					", key \"%.*s\", version %" PRIu32 ", its sum %s\n",
					id, (const void *)r, r->id, (int)sizeof(r->key),
					r->key, r->version,
					(uint32_t)h == r->sum ? "matches" : "does not match");
		}
		sum = mix64(mix64(sum ^ h) ^ r->sum);
	}
	*checksum = sum;
	return bad;
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

/* CPU seconds of the whole process so far. */
static double cpu_s(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct phase_start {
	double wall, cpu;
};

static struct phase_start phase_begin(void)
{
	return (struct phase_start){ now_s(), cpu_s() };
}

/* One line per phase, easy to read and to pick apart with awk:
 *   phase NAME SECONDS s rss MiB MiB peak MiB MiB cpu SECONDS s */
static void report_phase(const char *name, struct phase_start t)
{
	double wall = now_s() - t.wall, cpu = cpu_s() - t.cpu;

	printf("phase %-7s %9.3f s   rss %8.1f MiB   peak %8.1f MiB   cpu %8.3f s\n",
	       name, wall, status_kib("VmRSS") / 1024.0,
	       status_kib("VmHWM") / 1024.0, cpu);
	fflush(stdout);
}

/* ------------------------------------------------------------ options */

struct options {
	uint64_t size_mib;
	double hot_percent;
	uint64_t ops;
	unsigned write_percent;
	uint64_t seed;
	bool scan;
	unsigned sleep_s;
};

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
"Usage: %s [OPTIONS]\n"
"\n"
"A cache-like program: builds --size MiB of 128-byte records, works on a\n"
"small hot set of them, optionally scans them all, then verifies every\n"
"record and prints a checksum of the data.  Each phase prints its wall time,\n"
"the current resident memory (VmRSS) and the peak so far (VmHWM).\n"
"\n"
"Options:\n"
"  --size MIB           size of the data set in MiB (default 512)\n"
"  --hot-percent P      share of the records in the hot set, 0 < P <= 100\n"
"                       (default 5)\n"
"  --ops N              operations in the hot phase (default 10000000)\n"
"  --write-percent P    share of the operations that update the record, the\n"
"                       rest only read it (default 20)\n"
"  --seed N             seed of the data and of the choices (default 1)\n"
"  --scan               read every record once after the hot phase\n"
"  --sleep S            sleep S seconds after the build, e.g. to run\n"
"                       `uzswap stat PID` meanwhile (default 0)\n"
"  -h, --help           this help\n"
"\n"
"The checksum depends only on the options above (not on --scan or --sleep):\n"
"it must be the same with and without uzswap.  Exit status: 0 all records\n"
"check out, 1 some did not (they are listed on stderr), 2 bad usage.\n",
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
		.size_mib = 512, .hot_percent = 5, .ops = 10000000,
		.write_percent = 20, .seed = 1,
	};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout, prog);
			exit(0);
		}
		if (!strcmp(a, "--scan")) {
			o->scan = true;
			continue;
		}
		if (!strcmp(a, "--size")) {
			o->size_mib = number_arg(prog, a, v, 1, (uint64_t)1 << 20);
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

int main(int argc, char **argv)
{
	static struct store s;  /* static: reachable until exit, see below */
	struct options o;
	struct scan_result sr;
	uint32_t *runs = NULL;
	uint64_t nhot, bad, checksum;
	struct phase_start t;

	parse_options(argc, argv, &o);
	s.nrecords = o.size_mib * ((uint64_t)1 << 20) / RECORD_SIZE;

	printf("cache: pid %ld, %" PRIu64 " MiB in %" PRIu64 " records of %zu bytes,"
	       " hot set %g%%, %" PRIu64 " ops (%u%% writes), seed %" PRIu64 "\n",
	       (long)getpid(), o.size_mib, s.nrecords, RECORD_SIZE, o.hot_percent,
	       o.ops, o.write_percent, o.seed);
	fflush(stdout);

	t = phase_begin();
	if (store_build(&s, o.seed) != 0) {
		fprintf(stderr, "cache: out of memory building %" PRIu64 " MiB\n",
			o.size_mib);
		return 1;
	}
	report_phase("build", t);
	if (o.sleep_s)
		sleep(o.sleep_s);

	nhot = pick_hot_runs(s.nrecords, o.hot_percent, o.seed, &runs);
	if (!nhot) {
		fprintf(stderr, "cache: out of memory\n");
		return 1;
	}
	t = phase_begin();
	bad = hot_phase(&s, runs, nhot, o.ops, o.write_percent, o.seed);
	report_phase("hot", t);

	if (o.scan) {
		t = phase_begin();
		scan_phase(&s, &sr);
		report_phase("scan", t);
		printf("scan: %" PRIu64 " hits, %" PRIu64 " records updated, "
		       "score total %" PRId64 "\n", sr.hits, sr.updated, sr.score);
		bad += sr.bad;
	}

	t = phase_begin();
	bad += verify_phase(&s, o.seed, &checksum);
	report_phase("verify", t);

	printf("hot set: %" PRIu64 " runs of %d records (%.1f MiB)\n", nhot,
	       HOT_RUN, (double)(nhot * HOT_RUN * RECORD_SIZE) / (1 << 20));
	printf("checksum %016" PRIx64 "\n", checksum);
	if (bad) {
		printf("cache: FAILED: %" PRIu64 " bad record checks\n", bad);
		fflush(stdout);
		return 1;
	}
	printf("cache: all %" PRIu64 " records check out\n", s.nrecords);
	/*
	 * The data is left for exit to free, as many programs do; that way the
	 * UZSWAP_STATS=1 summary, printed during exit, still shows what uzswap
	 * was holding.  Flush first, so the summary comes after our output.
	 */
	fflush(stdout);
	free(runs);
	return 0;
}
