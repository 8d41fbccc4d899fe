/*
 * test_stats.c - the latency histogram (bucket bounds against an exact
 * integer definition, percentiles of known distributions), the summary and
 * JSON forms of the stats (content, validity, truncation), and the shared
 * stats page (round trip, the seqlock under a racing writer, and the errors
 * `uzswap stat` reports).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "stats.h"
#include "stats_shm.h"
#include "testutil.h"
#include "uzswap.h"

#define LAST (UZS_LAT_BUCKETS - 1u)

/* ---------------------------------------------------------------- buckets */

/*
 * floor(4 * log2(x)) is floor(log2(x^4)): the top bit of x^4, exact in
 * 128 bits for any x below 2^32.
 */
static unsigned exact_bucket(uint64_t x)
{
	unsigned __int128 p = (unsigned __int128)x * x;
	unsigned top = 0;

	p *= p;
	while (p >>= 1)
		top++;
	return top < LAST ? top : LAST;
}

Test(latency_bucket, every_value_below_2_20)
{
	for (uint64_t x = 1; x < (1u << 20); x++)
		cr_assert_eq(uzs_latency_bucket(x), exact_bucket(x), "ns %llu",
			     (unsigned long long)x);
}

Test(latency_bucket, random_values_below_2_32)
{
	uint64_t st = 42;

	for (int i = 0; i < 1000000; i++) {
		/* Spread over every octave, not just the top one. */
		uint64_t x = tu_rand(&st) >> (32 + tu_range(&st, 0, 31));

		if (!x)
			continue;
		cr_assert_eq(uzs_latency_bucket(x), exact_bucket(x), "ns %llu",
			     (unsigned long long)x);
	}
}

/* Each bucket's min and max are where the exact definition changes. */
Test(latency_bucket, bounds_are_exact)
{
	for (unsigned i = 1; i < 128; i++) {
		uint64_t lo = uzs_latency_bucket_min(i), hi = uzs_latency_bucket_max(i);

		cr_assert_eq(hi + 1, uzs_latency_bucket_min(i + 1), "bucket %u", i);
		cr_assert_geq(exact_bucket(lo), i, "bucket %u min %llu", i,
			      (unsigned long long)lo);
		cr_assert_lt(exact_bucket(lo - 1), i, "bucket %u min %llu", i,
			     (unsigned long long)lo);
		if (lo > hi)        /* no integer in it: nothing lands there */
			continue;
		cr_assert_eq(uzs_latency_bucket(lo), i);
		cr_assert_eq(uzs_latency_bucket(hi), i);
		cr_assert_gt(uzs_latency_bucket(hi + 1), i);
		if (hi + 1 < (1ull << 32))
			cr_assert_eq(uzs_latency_bucket(hi + 1), exact_bucket(hi + 1));
	}
}

/* Past 2^32, where x^4 overflows 128 bits, against long double. */
Test(latency_bucket, top_buckets)
{
	for (unsigned i = 1; i < UZS_LAT_BUCKETS; i++) {
		long double b = ceill(powl(2.0L, (long double)i / 4));

		cr_assert_eq(uzs_latency_bucket_min(i), (uint64_t)b, "bucket %u", i);
		if (uzs_latency_bucket_min(i) > uzs_latency_bucket_max(i))
			continue;   /* holds no integer */
		cr_assert_eq(uzs_latency_bucket(uzs_latency_bucket_min(i)), i);
		cr_assert_lt(uzs_latency_bucket(uzs_latency_bucket_min(i) - 1), i);
	}
	cr_assert_eq(uzs_latency_bucket(0), 0);
	cr_assert_eq(uzs_latency_bucket(1), 0);
	cr_assert_eq(uzs_latency_bucket(2), 4);
	cr_assert_eq(uzs_latency_bucket(1ull << 35), 140);
	cr_assert_eq(uzs_latency_bucket((1ull << 36) - 1), LAST);
	cr_assert_eq(uzs_latency_bucket(1ull << 36), LAST);
	cr_assert_eq(uzs_latency_bucket(UINT64_MAX), LAST);
	cr_assert_eq(uzs_latency_bucket_max(LAST), UINT64_MAX);
	cr_assert_eq(uzs_latency_bucket_min(0), 0);
}

/* ------------------------------------------------------------ percentiles */

Test(latency_percentile, empty_is_zero)
{
	struct uzs_latency lat = { 0 };

	cr_assert_eq(uzs_latency_percentile(&lat, 0), 0);
	cr_assert_eq(uzs_latency_percentile(&lat, 50), 0);
	cr_assert_eq(uzs_latency_percentile(&lat, 100), 0);
}

Test(latency_percentile, one_sample_is_exact)
{
	struct uzs_latency lat = { 0 };

	uzs_latency_add(&lat, 12345);
	cr_assert_eq(lat.count, 1);
	cr_assert_eq(lat.max_ns, 12345);
	cr_assert_eq(lat.sum_ns, 12345);
	/* The bucket's bound is above the sample; max caps it. */
	cr_assert_gt(uzs_latency_bucket_max(uzs_latency_bucket(12345)), 12345);
	cr_assert_eq(uzs_latency_percentile(&lat, 0), 12345);
	cr_assert_eq(uzs_latency_percentile(&lat, 50), 12345);
	cr_assert_eq(uzs_latency_percentile(&lat, 100), 12345);
}

/* 1..1000 ns once each: the p-th percentile is the sample ceil(p * 10). */
Test(latency_percentile, uniform)
{
	static const double pcts[] = { 0, 1, 10, 25, 50, 75, 90, 99, 99.9, 100 };
	struct uzs_latency lat = { 0 };
	uint64_t sum = 0;

	for (uint64_t ns = 1; ns <= 1000; ns++) {
		uzs_latency_add(&lat, ns);
		sum += ns;
	}
	cr_assert_eq(lat.count, 1000);
	cr_assert_eq(lat.sum_ns, sum);
	cr_assert_eq(lat.max_ns, 1000);
	for (size_t k = 0; k < sizeof(pcts) / sizeof(pcts[0]); k++) {
		uint64_t rank = (uint64_t)ceil(pcts[k] * 10), want, got;

		if (rank == 0)
			rank = 1;
		want = uzs_latency_bucket_max(uzs_latency_bucket(rank));
		if (want > 1000)
			want = 1000;
		got = uzs_latency_percentile(&lat, pcts[k]);
		cr_assert_eq(got, want, "p%g: %llu, want %llu", pcts[k],
			     (unsigned long long)got, (unsigned long long)want);
		/* An upper bound within one bucket (19%) of the truth. */
		cr_assert_geq(got, rank);
		cr_assert_leq(got, rank * 1.19 + 1);
	}
}

Test(latency_percentile, tail)
{
	struct uzs_latency lat = { 0 };

	for (int i = 0; i < 990; i++)
		uzs_latency_add(&lat, 5000);
	for (int i = 0; i < 10; i++)
		uzs_latency_add(&lat, 2000000);
	uzs_latency_add(&lat, 9000000);

	cr_assert_eq(lat.count, 1001);
	cr_assert_eq(lat.sum_ns, 990 * 5000ull + 10 * 2000000ull + 9000000);
	cr_assert_eq(lat.max_ns, 9000000);
	cr_assert_eq(uzs_latency_percentile(&lat, 50),
		     uzs_latency_bucket_max(uzs_latency_bucket(5000)));
	/* rank 990 of 1001 is still 5 us; rank 991 is 2 ms. */
	cr_assert_eq(uzs_latency_percentile(&lat, 98.9),
		     uzs_latency_bucket_max(uzs_latency_bucket(5000)));
	cr_assert_eq(uzs_latency_percentile(&lat, 99),
		     uzs_latency_bucket_max(uzs_latency_bucket(2000000)));
	cr_assert_eq(uzs_latency_percentile(&lat, 100), 9000000);
}

Test(latency_percentile, odd_arguments)
{
	struct uzs_latency lat = { 0 };

	uzs_latency_add(&lat, 100);
	uzs_latency_add(&lat, 100000);
	cr_assert_eq(uzs_latency_percentile(&lat, -5), uzs_latency_percentile(&lat, 0));
	cr_assert_eq(uzs_latency_percentile(&lat, NAN), uzs_latency_percentile(&lat, 0));
	cr_assert_eq(uzs_latency_percentile(&lat, 250), 100000);
	cr_assert_eq(uzs_latency_percentile(&lat, 50),
		     uzs_latency_bucket_max(uzs_latency_bucket(100)));
}

Test(latency_percentile, zero_and_huge_samples)
{
	struct uzs_latency lat = { 0 };

	uzs_latency_add(&lat, 0);
	cr_assert_eq(lat.bucket[0], 1);
	cr_assert_eq(uzs_latency_percentile(&lat, 100), 0);
	uzs_latency_add(&lat, UINT64_MAX / 2);
	cr_assert_eq(lat.bucket[LAST], 1);
	cr_assert_eq(lat.max_ns, UINT64_MAX / 2);
	cr_assert_eq(uzs_latency_percentile(&lat, 100), UINT64_MAX / 2);
	/* Bucket 0 holds 0 and 1 ns: its bound is 1. */
	cr_assert_eq(uzs_latency_percentile(&lat, 50), 1);
}

/* -------------------------------------------------------- sample stats */

static void sample_stats(struct uzs_engine_stats *s)
{
	memset(s, 0, sizeof(*s));
	s->magic = UZS_STATS_MAGIC;
	s->version = UZS_STATS_VERSION;
	s->size = sizeof(*s);
	s->uptime_ns = 12345000000ull;              /* 12.3 s */
	s->managed_bytes = 3ull << 30;              /* 3.0 GiB */
	s->resident_bytes = 1536ull << 20;          /* 1.5 GiB */
	s->regions = 7;
	s->pages_zero = 1000;
	s->pages_same = 24;
	s->pages_stored = 261120;                   /* 262144 pages held: 1 GiB */
	s->stored_bytes = 200ull << 20;
	s->pool_bytes = 256ull << 20;               /* ratio 4.00 */
	s->metadata_bytes = 4ull << 20;
	s->unmanaged_bytes = 3ull << 19;            /* 1.5 MiB */
	s->compressed[UZS_PAGE_ZERO] = 1100;
	s->compressed[UZS_PAGE_SAME] = 30;
	s->compressed[UZS_PAGE_STORED] = 270000;
	s->compressed[UZS_PAGE_INCOMPRESSIBLE] = 77;
	for (unsigned k = 0; k < UZS_FAULT_KINDS; k++)
		s->faults[k] = 100 + k;
	s->refaults = 4321;
	s->takeouts = 271207;
	s->takeout_busy = 5;
	s->scans = 12;
	s->events_remove = 1;
	s->events_unmap = 2;
	s->events_remap = 3;
	s->events_fork = 4;
	s->fork_thaws = 55;
	s->read_ahead = 77;
	s->throttle_ns = 56000;
	s->throttle_restore_ns = 12000;
	s->pages_backed = 300;
	s->backing_file_bytes = 2ull << 20;
	s->backing_disk_bytes = 1536ull << 10;
	s->evictions = 90;
	s->backing_writes = 400;
	s->backing_write_bytes = 600ull << 10;
	s->backing_reads = 100;
	s->backing_errors = 1;
	for (int i = 0; i < 1000; i++)
		uzs_latency_add(&s->fault_latency, 12345);  /* 12.3 us */
	uzs_latency_add(&s->fault_latency, 1500200);    /* 1500.2 us */
	/* Two NUMA nodes' pools, adding up to the totals above. */
	s->npools = 2;
	s->pool[0] = (struct uzs_pool_figures){ 0, 200000, 150ull << 20,
						192ull << 20 };
	s->pool[1] = (struct uzs_pool_figures){ 1, 61120, 50ull << 20,
						64ull << 20 };
}

/* Every counter at its largest, every bucket used: the longest output. */
static void huge_stats(struct uzs_engine_stats *s)
{
	memset(s, 0xff, sizeof(*s));
	s->magic = UZS_STATS_MAGIC;
	s->version = UZS_STATS_VERSION;
	s->size = sizeof(*s);
	for (unsigned i = 0; i < UZS_STATS_MAX_POOLS; i++)
		s->pool[i].node = INT64_MAX;    /* the longest a node prints */
}

static bool contains(const char *hay, const char *needle)
{
	return strstr(hay, needle) != NULL;
}

/* ---------------------------------------------------------------- summary */

/* Whole lines, each "uzswap: ...\n". */
static void assert_lines(const char *buf, size_t n)
{
	cr_assert_eq(strlen(buf), n);
	for (const char *p = buf; *p;) {
		const char *nl = strchr(p, '\n');

		cr_assert(nl, "unterminated line: %s", p);
		cr_assert(!strncmp(p, "uzswap: ", 8), "bad line: %.*s", (int)(nl - p), p);
		p = nl + 1;
	}
}

Test(summary, contents)
{
	struct uzs_engine_stats s;
	char buf[UZS_STATS_SUMMARY_MAX];
	size_t n;

	sample_stats(&s);
	n = uzs_stats_summary(&s, buf, sizeof(buf));
	assert_lines(buf, n);
	cr_assert_geq(n, 200);
	{
		static const char *const want[] = {
			"managed 3.0 GiB in 7 regions", "1.5 GiB resident, "
			"1.5 MiB other anonymous, up 12.3 s",
			"holding 1.0 GiB (1000 zero, 24 same-filled, 261120 stored pages)",
			"in 256.0 MiB of pool", "200.0 MiB of it compressed",
			"effective ratio 4.00x",
			"saving 764.0 MiB net of 4.0 MiB metadata",
			"pages compressed: 1100 zero, 30 same-filled, 270000 stored, "
			"77 incompressible",
			"takeouts 271207 (5 busy), refaults 4321, scans 12, "
			"held back over the limit 56.0 us (restores 12.0 us)",
			"faults: 100 first-touch, 101 zero, 102 same-filled, 103 stored, "
			"104 staged, 105 backed, 106 spurious; 77 pages read ahead",
			"backing file: 300 pages (2.0 MiB file, 1.5 MiB on disk); "
			"400 written (600.0 KiB) in 90 pool page evictions, "
			"100 read back, 1 error",
			"fault service p50 ", "p99 ", "max 1500.2 us (1001 faults)",
			"events: 1 remove, 2 unmap, 3 remap, 4 fork (55 pages thawed)",
			"node 0: 200000 stored pages in 192.0 MiB of pool, "
			"150.0 MiB of it compressed data",
			"node 1: 61120 stored pages in 64.0 MiB of pool, "
			"50.0 MiB of it compressed data",
		};
		for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
			cr_assert(contains(buf, want[i]), "no \"%s\" in:\n%s", want[i], buf);
	}
	/* p50 and p99 are the 12.3 us samples' bucket bound, capped by max. */
	{
		char p50[64];
		uint64_t ns = uzs_latency_percentile(&s.fault_latency, 50);

		snprintf(p50, sizeof(p50), "p50 %llu.%llu us", (unsigned long long)
			 ((ns + 50) / 1000), (unsigned long long)((ns + 50) / 100 % 10));
		cr_assert(contains(buf, p50), "no \"%s\" in:\n%s", p50, buf);
	}
}

Test(summary, empty_stats)
{
	struct uzs_engine_stats s = { 0 };
	char buf[UZS_STATS_SUMMARY_MAX];
	size_t n = uzs_stats_summary(&s, buf, sizeof(buf));

	assert_lines(buf, n);
	cr_assert(contains(buf, "managed 0 B in 0 regions, 0 B resident"), "%s", buf);
	cr_assert(contains(buf, "effective ratio - (held / pool)"), "%s", buf);
	cr_assert(contains(buf, "p50 0.0 us, p99 0.0 us, max 0.0 us (0 faults)"), "%s", buf);
}

Test(summary, units)
{
	static const struct {
		uint64_t bytes;
		const char *text;
	} c[] = {
		{ 0, "managed 0 B " }, { 1023, "managed 1023 B " },
		{ 1024, "managed 1.0 KiB " }, { 1535, "managed 1.5 KiB " },
		{ 1048575, "managed 1.0 MiB " },        /* rounds up a unit */
		{ 1048524, "managed 1023.9 KiB " },
		{ 5ull << 40, "managed 5.0 TiB " }, { UINT64_MAX, "managed 16.0 EiB " },
	};
	char buf[UZS_STATS_SUMMARY_MAX];

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct uzs_engine_stats s = { 0 };

		s.managed_bytes = c[i].bytes;
		uzs_stats_summary(&s, buf, sizeof(buf));
		cr_assert(contains(buf, c[i].text), "%llu: %s", (unsigned long long)c[i].bytes,
			  buf);
	}
}

Test(summary, net_cost_when_nothing_saved)
{
	struct uzs_engine_stats s = { 0 };
	char buf[UZS_STATS_SUMMARY_MAX];

	s.metadata_bytes = 2 << 20;
	uzs_stats_summary(&s, buf, sizeof(buf));
	cr_assert(contains(buf, "costing 2.0 MiB net of 2.0 MiB metadata"), "%s", buf);
}

Test(summary, largest_fits)
{
	struct uzs_engine_stats s;
	char buf[UZS_STATS_SUMMARY_MAX];
	size_t n, lines = 0;

	huge_stats(&s);
	n = uzs_stats_summary(&s, buf, sizeof(buf));
	assert_lines(buf, n);
	for (size_t i = 0; i < n; i++)
		lines += buf[i] == '\n';
	cr_assert_eq(lines, 9 + UZS_STATS_MAX_POOLS, "%s", buf);
}

/* One pool (UZSWAP_NUMA=off, or one node): the totals say it all. */
Test(summary, no_pool_lines_for_one_pool)
{
	struct uzs_engine_stats s;
	char buf[UZS_STATS_SUMMARY_MAX];

	sample_stats(&s);
	s.npools = 1;
	s.pool[0] = (struct uzs_pool_figures){ -1, s.pages_stored, s.stored_bytes,
					       s.pool_bytes };
	uzs_stats_summary(&s, buf, sizeof(buf));
	cr_assert(!contains(buf, "node "), "%s", buf);
	cr_assert(!contains(buf, "pool 0"), "%s", buf);
}

/* No backing line for a process whose pool was never evicted. */
Test(summary, no_backing_line_without_eviction)
{
	struct uzs_engine_stats s;
	char buf[UZS_STATS_SUMMARY_MAX];

	sample_stats(&s);
	s.pages_backed = s.evictions = s.backing_errors = 0;
	uzs_stats_summary(&s, buf, sizeof(buf));
	cr_assert(!contains(buf, "backing"), "%s", buf);
}

/* Nothing said of other anonymous memory when there is none to say (no
 * limit: it is not watched). */
Test(summary, no_other_anonymous_without_it)
{
	struct uzs_engine_stats s;
	char buf[UZS_STATS_SUMMARY_MAX];

	sample_stats(&s);
	s.unmanaged_bytes = 0;
	uzs_stats_summary(&s, buf, sizeof(buf));
	cr_assert(contains(buf, "1.5 GiB resident, up 12.3 s"), "%s", buf);
	cr_assert(!contains(buf, "other anonymous"), "%s", buf);
}

/* Any buffer size: whole lines only, a prefix of the full text, in bounds. */
Test(summary, truncates_at_lines)
{
	struct uzs_engine_stats s;
	char full[UZS_STATS_SUMMARY_MAX], buf[UZS_STATS_SUMMARY_MAX + 16];
	size_t n_full;

	sample_stats(&s);
	n_full = uzs_stats_summary(&s, full, sizeof(full));
	for (size_t len = 0; len <= n_full + 2; len++) {
		size_t n;

		memset(buf, '#', sizeof(buf));
		n = uzs_stats_summary(&s, buf, len);
		if (len == 0) {
			cr_assert_eq(n, 0);
			cr_assert_eq(buf[0], '#');
			continue;
		}
		cr_assert_lt(n, len);
		cr_assert_eq(buf[n], '\0');
		cr_assert_eq(buf[len], '#', "wrote past %zu", len);
		cr_assert(!memcmp(buf, full, n));
		cr_assert(n == 0 || buf[n - 1] == '\n');
		if (len > n_full)
			cr_assert_eq(n, n_full);
		else
			cr_assert_lt(n, n_full);
	}
}

/* ------------------------------------------------------------------- JSON */

/* A small strict JSON checker: enough to tell a well-formed line. */
struct js {
	const char *p;
};

static bool js_value(struct js *j);

static void js_ws(struct js *j)
{
	while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
		j->p++;
}

static bool js_string(struct js *j)
{
	if (*j->p++ != '"')
		return false;
	for (; *j->p != '"'; j->p++) {
		if ((unsigned char)*j->p < 0x20)
			return false;
		if (*j->p == '\\' && !*++j->p)
			return false;
	}
	j->p++;
	return true;
}

static bool js_number(struct js *j)
{
	const char *s = j->p;

	if (*j->p == '-')
		j->p++;
	if (*j->p == '0')
		j->p++;
	else if (*j->p >= '1' && *j->p <= '9')
		while (*j->p >= '0' && *j->p <= '9')
			j->p++;
	else
		return false;
	if (*j->p == '.') {
		j->p++;
		if (*j->p < '0' || *j->p > '9')
			return false;
		while (*j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	return j->p > s;
}

static bool js_seq(struct js *j, char close, bool object)
{
	j->p++;
	js_ws(j);
	if (*j->p == close) {
		j->p++;
		return true;
	}
	for (;;) {
		js_ws(j);
		if (object) {
			if (!js_string(j))
				return false;
			js_ws(j);
			if (*j->p++ != ':')
				return false;
		}
		if (!js_value(j))
			return false;
		js_ws(j);
		if (*j->p == close) {
			j->p++;
			return true;
		}
		if (*j->p++ != ',')
			return false;
	}
}

static bool js_value(struct js *j)
{
	js_ws(j);
	switch (*j->p) {
	case '{': return js_seq(j, '}', true);
	case '[': return js_seq(j, ']', false);
	case '"': return js_string(j);
	case 'n': return !strncmp(j->p, "null", 4) && (j->p += 4);
	case 't': return !strncmp(j->p, "true", 4) && (j->p += 4);
	case 'f': return !strncmp(j->p, "false", 5) && (j->p += 5);
	default: return js_number(j);
	}
}

/* One object, one trailing newline, nothing else. */
static void assert_json_line(const char *buf, size_t n)
{
	struct js j = { buf };

	cr_assert_gt(n, 2);
	cr_assert_eq(strlen(buf), n);
	cr_assert_eq(buf[0], '{');
	cr_assert_eq(buf[n - 1], '\n');
	cr_assert_eq(strchr(buf, '\n'), buf + n - 1, "more than one line");
	cr_assert(js_value(&j), "bad JSON at \"%.20s\": %s", j.p, buf);
	cr_assert_eq(*j.p, '\n');
}

/* The integer value of "key": in buf, which must be there exactly once. */
static uint64_t json_get(const char *buf, const char *key)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof(k), "\"%s\":", key);
	p = strstr(buf, k);
	cr_assert(p, "no %s in %s", key, buf);
	cr_assert_null(strstr(p + 1, k), "%s twice", key);
	return strtoull(p + strlen(k), NULL, 10);
}

Test(json, fields_and_values)
{
	struct uzs_engine_stats s;
	char buf[UZS_STATS_JSON_MAX];
	size_t n;

	sample_stats(&s);
	n = uzs_stats_json(&s, 4242, buf, sizeof(buf));
	assert_json_line(buf, n);

	cr_assert_eq(json_get(buf, "pid"), 4242);
	cr_assert_eq(json_get(buf, "version"), UZS_STATS_VERSION);
	cr_assert_eq(json_get(buf, "uptime_ns"), s.uptime_ns);
	cr_assert_eq(json_get(buf, "managed_bytes"), s.managed_bytes);
	cr_assert_eq(json_get(buf, "resident_bytes"), s.resident_bytes);
	cr_assert_eq(json_get(buf, "regions"), 7);
	cr_assert_eq(json_get(buf, "pages_zero"), 1000);
	cr_assert_eq(json_get(buf, "pages_same"), 24);
	cr_assert_eq(json_get(buf, "pages_stored"), 261120);
	cr_assert_eq(json_get(buf, "stored_bytes"), s.stored_bytes);
	cr_assert_eq(json_get(buf, "pool_bytes"), s.pool_bytes);
	cr_assert_eq(json_get(buf, "metadata_bytes"), s.metadata_bytes);
	cr_assert_eq(json_get(buf, "held_bytes"), 1ull << 30);
	cr_assert(contains(buf, "\"effective_ratio\":4.000,"), "%s", buf);
	cr_assert_eq(json_get(buf, "compressed_zero"), 1100);
	cr_assert_eq(json_get(buf, "compressed_same"), 30);
	cr_assert_eq(json_get(buf, "compressed_stored"), 270000);
	cr_assert_eq(json_get(buf, "compressed_incompressible"), 77);
	cr_assert_eq(json_get(buf, "faults_first_touch"), 100);
	cr_assert_eq(json_get(buf, "faults_zero"), 101);
	cr_assert_eq(json_get(buf, "faults_same"), 102);
	cr_assert_eq(json_get(buf, "faults_stored"), 103);
	cr_assert_eq(json_get(buf, "faults_staged"), 104);
	cr_assert_eq(json_get(buf, "faults_backed"), 105);
	cr_assert_eq(json_get(buf, "faults_spurious"), 106);
	cr_assert_eq(json_get(buf, "pages_backed"), 300);
	cr_assert_eq(json_get(buf, "backing_file_bytes"), 2ull << 20);
	cr_assert_eq(json_get(buf, "backing_disk_bytes"), 1536ull << 10);
	cr_assert_eq(json_get(buf, "evictions"), 90);
	cr_assert_eq(json_get(buf, "backing_writes"), 400);
	cr_assert_eq(json_get(buf, "backing_write_bytes"), 600ull << 10);
	cr_assert_eq(json_get(buf, "backing_reads"), 100);
	cr_assert_eq(json_get(buf, "backing_errors"), 1);
	cr_assert_eq(json_get(buf, "refaults"), 4321);
	cr_assert_eq(json_get(buf, "takeouts"), 271207);
	cr_assert_eq(json_get(buf, "takeout_busy"), 5);
	cr_assert_eq(json_get(buf, "scans"), 12);
	cr_assert_eq(json_get(buf, "events_remove"), 1);
	cr_assert_eq(json_get(buf, "events_unmap"), 2);
	cr_assert_eq(json_get(buf, "events_remap"), 3);
	cr_assert_eq(json_get(buf, "events_fork"), 4);
	cr_assert_eq(json_get(buf, "fork_thaws"), 55);
	cr_assert_eq(json_get(buf, "read_ahead"), 77);
	cr_assert_eq(json_get(buf, "throttle_ns"), 56000);
	cr_assert_eq(json_get(buf, "throttle_restore_ns"), 12000);
	cr_assert_eq(json_get(buf, "unmanaged_bytes"), 3ull << 19);
	cr_assert(contains(buf, "\"pools\":[{\"node\":0,\"pages\":200000,"
			  "\"compressed_bytes\":157286400,\"memory_bytes\":201326592},"
			  "{\"node\":1,\"pages\":61120,\"compressed_bytes\":52428800,"
			  "\"memory_bytes\":67108864}],"), "%s", buf);
	cr_assert_eq(json_get(buf, "fault_count"), 1001);
	cr_assert_eq(json_get(buf, "fault_sum_ns"), 1000 * 12345ull + 1500200);
	cr_assert_eq(json_get(buf, "fault_max_ns"), 1500200);
	cr_assert_eq(json_get(buf, "fault_p50_ns"),
		     uzs_latency_percentile(&s.fault_latency, 50));
	cr_assert_eq(json_get(buf, "fault_p90_ns"),
		     uzs_latency_percentile(&s.fault_latency, 90));
	cr_assert_eq(json_get(buf, "fault_p99_ns"),
		     uzs_latency_percentile(&s.fault_latency, 99));
	/* Rank ceil(99.9% of 1001) = 1000 is still a 12.3 us sample. */
	cr_assert_eq(json_get(buf, "fault_p999_ns"),
		     uzs_latency_bucket_max(uzs_latency_bucket(12345)));
	cr_assert_eq(uzs_latency_percentile(&s.fault_latency, 99.95), 1500200);
	{
		char hist[128];

		snprintf(hist, sizeof(hist), "\"fault_hist\":[[%llu,1000],[%llu,1]]}",
			 (unsigned long long)uzs_latency_bucket_min(uzs_latency_bucket(12345)),
			 (unsigned long long)uzs_latency_bucket_min(uzs_latency_bucket(1500200)));
		cr_assert(contains(buf, hist), "no %s in %s", hist, buf);
	}
}

Test(json, empty_stats)
{
	struct uzs_engine_stats s = { 0 };
	char buf[UZS_STATS_JSON_MAX];
	size_t n = uzs_stats_json(&s, 1, buf, sizeof(buf));

	assert_json_line(buf, n);
	cr_assert(contains(buf, "\"effective_ratio\":null,"), "%s", buf);
	cr_assert(contains(buf, "\"pools\":[],"), "%s", buf);
	cr_assert(contains(buf, "\"fault_hist\":[]}"), "%s", buf);
}

Test(json, an_unbound_pool_has_no_node)
{
	struct uzs_engine_stats s;
	char buf[UZS_STATS_JSON_MAX];
	size_t n;

	sample_stats(&s);
	s.npools = 1;
	s.pool[0] = (struct uzs_pool_figures){ -1, 7, 8, 9 };
	n = uzs_stats_json(&s, 1, buf, sizeof(buf));
	assert_json_line(buf, n);
	cr_assert(contains(buf, "\"pools\":[{\"node\":null,\"pages\":7,"
			  "\"compressed_bytes\":8,\"memory_bytes\":9}],"), "%s", buf);
}

Test(json, largest_fits)
{
	struct uzs_engine_stats s;
	char buf[UZS_STATS_JSON_MAX];
	size_t n;

	huge_stats(&s);
	n = uzs_stats_json(&s, UINT64_MAX, buf, sizeof(buf));
	assert_json_line(buf, n);
	cr_assert_eq(json_get(buf, "managed_bytes"), UINT64_MAX);
}

/* All or nothing, never out of bounds. */
Test(json, truncation_gives_nothing)
{
	struct uzs_engine_stats s;
	char full[UZS_STATS_JSON_MAX], buf[UZS_STATS_JSON_MAX + 16];
	size_t n_full;

	sample_stats(&s);
	n_full = uzs_stats_json(&s, 7, full, sizeof(full));
	for (size_t len = 0; len <= n_full + 2; len++) {
		size_t n;

		memset(buf, '#', sizeof(buf));
		n = uzs_stats_json(&s, 7, buf, len);
		cr_assert_eq(buf[len], '#', "wrote past %zu", len);
		if (len == 0) {
			cr_assert_eq(n, 0);
			cr_assert_eq(buf[0], '#');
		} else if (len <= n_full) {
			cr_assert_eq(n, 0, "len %zu gave %zu bytes", len, n);
			cr_assert_eq(buf[0], '\0');
		} else {
			cr_assert_eq(n, n_full);
			cr_assert_str_eq(buf, full);
		}
	}
}

/* -------------------------------------------------------------- shm page */

Test(shm, round_trip_own_pid)
{
	struct uzs_stats_shm *shm;
	struct uzs_engine_stats s, got;
	char err[256];

	cr_assert_eq(uzs_stats_shm_create(&shm), 0);
	cr_assert_eq(shm->pid, (uint32_t)getpid());

	/* Before any publish: a valid, empty snapshot. */
	memset(&got, 0xaa, sizeof(got));
	cr_assert_eq(uzs_stats_shm_read(getpid(), &got, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(got.magic, UZS_STATS_MAGIC);
	cr_assert_eq(got.version, UZS_STATS_VERSION);
	cr_assert_eq(got.size, sizeof(got));
	cr_assert_eq(got.managed_bytes, 0);
	cr_assert_eq(got.fault_latency.count, 0);

	sample_stats(&s);
	s.magic = 0;    /* stamped by publish */
	s.version = 0;
	s.size = 0;
	uzs_stats_shm_publish(shm, &s);
	cr_assert_eq(shm->seq, 2);
	cr_assert_eq(uzs_stats_shm_read(getpid(), &got, err, sizeof(err)), 0, "%s", err);
	s.magic = UZS_STATS_MAGIC;
	s.version = UZS_STATS_VERSION;
	s.size = sizeof(s);
	cr_assert(!memcmp(&got, &s, sizeof(s)));
	uzs_stats_shm_destroy(shm);

	/* Gone with its fd. */
	cr_assert_eq(uzs_stats_shm_read(getpid(), &got, err, sizeof(err)), -ENOENT);
}

Test(shm, bad_version_is_reported)
{
	struct uzs_stats_shm *shm;
	struct uzs_engine_stats got;
	char err[256];

	cr_assert_eq(uzs_stats_shm_create(&shm), 0);
	shm->stats.version = 99;
	cr_assert_eq(uzs_stats_shm_read(getpid(), &got, err, sizeof(err)), -EPROTO);
	cr_assert(contains(err, "version 99"), "%s", err);
	shm->stats.version = UZS_STATS_VERSION;
	shm->stats.magic = 1;
	cr_assert_eq(uzs_stats_shm_read(getpid(), &got, err, sizeof(err)), -EPROTO);
	cr_assert(contains(err, "magic"), "%s", err);
	uzs_stats_shm_destroy(shm);
}

Test(shm, stuck_writer_is_busy)
{
	struct uzs_stats_shm *shm;
	struct uzs_engine_stats got;
	char err[256];

	cr_assert_eq(uzs_stats_shm_create(&shm), 0);
	shm->seq = 1;       /* as if stopped halfway through a publish */
	cr_assert_eq(uzs_stats_shm_read(getpid(), &got, err, sizeof(err)), -EBUSY);
	cr_assert(contains(err, "try again"), "%s", err);
	uzs_stats_shm_destroy(shm);
}

/*
 * A writer publishing snapshots whose every counter is the same number.  It
 * pauses a little between publishes, as the engine does (for much longer):
 * a writer that never stops could starve a seqlock reader for good.
 */
struct racer {
	struct uzs_stats_shm *shm;
	int stop;
};

static void *race_writer(void *arg)
{
	struct racer *r = arg;
	struct uzs_engine_stats s;

	for (uint64_t k = 1; !__atomic_load_n(&r->stop, __ATOMIC_RELAXED); k++) {
		memset(&s, 0, sizeof(s));
		s.managed_bytes = s.resident_bytes = s.pool_bytes = k;
		s.takeouts = s.scans = s.fork_thaws = k;
		s.fault_latency.count = s.fault_latency.bucket[UZS_LAT_BUCKETS - 1] = k;
		uzs_stats_shm_publish(r->shm, &s);
		if (k % 4 == 0)
			usleep(10);
	}
	return NULL;
}

Test(shm, reader_never_sees_a_torn_snapshot)
{
	struct racer r = { 0 };
	struct uzs_engine_stats got;
	pthread_t t;
	char err[256];
	uint64_t last = 0;

	cr_assert_eq(uzs_stats_shm_create(&r.shm), 0);
	cr_assert_eq(pthread_create(&t, NULL, race_writer, &r), 0);
	for (int i = 0; i < 2000; i++) {
		uint64_t k;

		cr_assert_eq(uzs_stats_shm_read(getpid(), &got, err, sizeof(err)), 0,
			     "%s", err);
		k = got.managed_bytes;
		cr_assert(got.resident_bytes == k && got.pool_bytes == k &&
			  got.takeouts == k && got.scans == k && got.fork_thaws == k &&
			  got.fault_latency.count == k &&
			  got.fault_latency.bucket[UZS_LAT_BUCKETS - 1] == k,
			  "torn snapshot around %llu", (unsigned long long)k);
		cr_assert_geq(k, last, "went backwards");
		last = k;
	}
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	uzs_stats_shm_destroy(r.shm);
}

/* A child that waits on a pipe until we close it. */
static pid_t spawn_waiter(int *fd)
{
	int p[2];
	pid_t pid;
	char c;

	cr_assert_eq(pipe(p), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[1]);
		while (read(p[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(p[0]);
	*fd = p[1];
	return pid;
}

static void reap(pid_t pid, int fd)
{
	close(fd);
	waitpid(pid, NULL, 0);
}

Test(shm, process_without_uzswap)
{
	struct uzs_engine_stats got;
	char err[256];
	int fd;
	pid_t pid = spawn_waiter(&fd);

	cr_assert_eq(uzs_stats_shm_read(pid, &got, err, sizeof(err)), -ENOENT);
	cr_assert(contains(err, "not running under uzswap"), "%s", err);
	reap(pid, fd);
}

Test(shm, no_such_process)
{
	struct uzs_engine_stats got;
	char err[256];
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0);
	/* Its pid is free now (reuse this soon is vanishingly unlikely). */
	cr_assert_eq(uzs_stats_shm_read(pid, &got, err, sizeof(err)), -ESRCH);
	cr_assert(contains(err, "no process"), "%s", err);
	cr_assert_eq(uzs_stats_shm_read(0, &got, err, sizeof(err)), -ESRCH);
	cr_assert_eq(uzs_stats_shm_read(-1, &got, err, sizeof(err)), -ESRCH);
}

/* Someone else's process: refused unless we are root, who may look. */
Test(shm, pid_1)
{
	struct uzs_engine_stats got;
	char err[256];
	int r = uzs_stats_shm_read(1, &got, err, sizeof(err));

	if (geteuid() != 0 && getuid() != 0) {
		cr_assert_eq(r, -EACCES, "%s", err);
		cr_assert(contains(err, "permission denied"), "%s", err);
	} else {
		cr_assert(r == -ENOENT || r == -EACCES || r == 0, "%d: %s", r, err);
	}
	cr_assert_neq(err[0], '\0');
}

/*
 * A forked child shares its parent's page until it makes its own; once it
 * has, its own wins even while it still holds the parent's.
 */
Test(shm, forked_child_prefers_its_own_page)
{
	struct uzs_stats_shm *shm;
	struct uzs_engine_stats s = { 0 }, got;
	char err[256];
	int go[2], ready[2];
	pid_t pid;
	char c = 0;

	cr_assert_eq(uzs_stats_shm_create(&shm), 0);
	s.scans = 1;
	uzs_stats_shm_publish(shm, &s);
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(ready), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct uzs_stats_shm *own;

		close(go[1]);
		close(ready[0]);
		if (read(go[0], &c, 1) != 1 || uzs_stats_shm_create(&own))
			_exit(1);
		s.scans = 2;
		uzs_stats_shm_publish(own, &s);
		if (write(ready[1], &c, 1) != 1)
			_exit(1);
		while (read(go[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	/* Only the inherited page so far: it is read, as the parent's. */
	cr_assert_eq(uzs_stats_shm_read(pid, &got, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(got.scans, 1);

	cr_assert_eq(write(go[1], &c, 1), 1);
	cr_assert_eq(read(ready[0], &c, 1), 1);
	cr_assert_eq(uzs_stats_shm_read(pid, &got, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(got.scans, 2);
	cr_assert_eq(uzs_stats_shm_read(getpid(), &got, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(got.scans, 1);

	close(go[1]);
	waitpid(pid, NULL, 0);
	uzs_stats_shm_destroy(shm);
}
