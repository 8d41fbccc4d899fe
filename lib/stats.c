/*
 * stats.c - the latency histogram: quarter-octave log buckets, adding a
 * sample and reading a percentile back.
 *
 * A bucket index is floor(4 * log2(ns)), computed exactly in integers: the
 * octave is the position of the top bit, and the quarter within it comes
 * from comparing the mantissa, shifted up to bit 63, with 2^(1/4), 2^(1/2)
 * and 2^(3/4) in the same fixed point.  Taking the two bits after the top
 * bit instead would be cheaper by two compares but would split each octave
 * linearly (at 1.25, 1.5, 1.75), not at the bounds engine.h promises.
 *
 * The histogram is not locked here: the engine adds samples under its lock
 * and readers work on snapshots.
 */
#include "config.h"

#include "engine.h"
#include "stats.h"

/*
 * ceil(2^(63 + j/4)) for j = 1, 2, 3: the smallest mantissas (top bit at 63)
 * in quarters 1, 2 and 3 of an octave.  2^(j/4) is irrational, so a mantissa
 * is never equal to the exact bound and ">= the ceiling" is exact.  Checked
 * with integer fourth roots: C^4 >= 2^(252 + j) > (C - 1)^4.
 */
static const uint64_t quarter[4] = {
	0x8000000000000000ull,
	0x9837f0518db8a970ull,
	0xb504f333f9de6485ull,
	0xd744fccad69d6af5ull,
};

#define LAST_BUCKET (UZS_LAT_BUCKETS - 1u)

static unsigned top_bit(uint64_t x)
{
	return 63u - (unsigned)__builtin_clzll(x);
}

unsigned uzs_latency_bucket(uint64_t ns)
{
	unsigned octave, i;
	uint64_t mantissa;

	if (ns <= 1)
		return 0;
	octave = top_bit(ns);
	mantissa = ns << (63 - octave);
	i = 4 * octave + (mantissa >= quarter[1]) + (mantissa >= quarter[2]) +
	    (mantissa >= quarter[3]);
	return i < LAST_BUCKET ? i : LAST_BUCKET;
}

/* ceil(2^(i/4)) for i < 256: quarter[] scaled down, rounding up. */
static uint64_t bound(unsigned i)
{
	unsigned shift;
	uint64_t q = quarter[i % 4];

	if (i / 4 >= 64)
		return UINT64_MAX;
	shift = 63 - i / 4;
	return (q >> shift) + ((q & ((1ull << shift) - 1)) != 0);
}

uint64_t uzs_latency_bucket_min(unsigned i)
{
	return i == 0 ? 0 : bound(i);
}

uint64_t uzs_latency_bucket_max(unsigned i)
{
	return i >= LAST_BUCKET ? UINT64_MAX : bound(i + 1) - 1;
}

void uzs_latency_add(struct uzs_latency *lat, uint64_t ns)
{
	lat->bucket[uzs_latency_bucket(ns)]++;
	lat->count++;
	lat->sum_ns += ns;
	if (ns > lat->max_ns)
		lat->max_ns = ns;
}

/*
 * The nearest-rank percentile: the sample at rank ceil(pct% of count), or
 * rather the bucket holding it, reported as the largest value that bucket
 * can hold.  That is an upper bound on the true percentile, and so is
 * max_ns, so the smaller of the two is returned: p100 is then exactly max.
 */
uint64_t uzs_latency_percentile(const struct uzs_latency *lat, double pct)
{
	uint64_t rank, seen = 0;
	double want;

	if (!lat->count)
		return 0;
	if (!(pct > 0))             /* also NaN */
		pct = 0;
	if (pct > 100)
		pct = 100;
	want = pct / 100 * (double)lat->count;
	if (want >= (double)lat->count) {
		rank = lat->count;
	} else {
		rank = (uint64_t)want;      /* then round up: ceil without libm */
		if ((double)rank < want || rank == 0)
			rank++;
	}

	for (unsigned i = 0; i < UZS_LAT_BUCKETS; i++) {
		/* Saturating: a torn snapshot may hold any numbers. */
		seen = lat->bucket[i] > UINT64_MAX - seen ? UINT64_MAX : seen + lat->bucket[i];
		if (seen >= rank) {
			uint64_t top = uzs_latency_bucket_max(i);

			return top < lat->max_ns ? top : lat->max_ns;
		}
	}
	/* The buckets hold fewer samples than count says: a torn snapshot. */
	return lat->max_ns;
}
