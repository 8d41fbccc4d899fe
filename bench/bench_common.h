/*
 * bench_common.h - what bench/fault.c and bench/zswap_bench.c share: the
 * clock, sorting latencies, and the page contents both fault in, so that
 * uzswap's and zswap's figures are for the same bytes (and the same
 * compressed sizes).
 */
#ifndef UZS_BENCH_COMMON_H
#define UZS_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define PAGE 4096u

static inline double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* qsort comparator for latencies. */
static inline int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* A page that looks like a heap page (pointers, small counters, a little
 * noise): LZO compresses it about 3x, like the real heap pages of
 * ../shared/data/zsizes. */
static inline void heap_page(unsigned char *p, uint64_t seed)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;

	for (size_t i = 0; i < PAGE; i += 32) {
		uint64_t rec[4];

		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		rec[0] = 0x7f3a00000000ull + (s & 0xffff0);
		rec[1] = s % 1000;
		rec[2] = (i % 256 == 0) ? s : 0;
		rec[3] = 0x31;
		memcpy(p + i, rec, sizeof(rec));
	}
}

#endif
