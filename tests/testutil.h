/*
 * testutil.h - small helpers shared by the unit tests: a seeded PRNG (so a
 * failing sequence replays exactly) and page generators.
 */
#ifndef UZS_TESTUTIL_H
#define UZS_TESTUTIL_H

#include <stdint.h>
#include <string.h>

/* splitmix64: tiny, seedable, good enough to drive test sequences. */
static inline uint64_t tu_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint64_t tu_range(uint64_t *state, uint64_t lo, uint64_t hi)
{
	return lo + tu_rand(state) % (hi - lo + 1);
}

/* Fill buf with bytes derived from (seed, tag): checkable without storing. */
static inline void tu_pattern(void *buf, size_t len, uint64_t tag)
{
	uint64_t st = tag * 0x2545f4914f6cdd1dull + 1;
	unsigned char *b = buf;

	for (size_t i = 0; i < len; i += 8) {
		uint64_t r = tu_rand(&st);
		size_t n = len - i < 8 ? len - i : 8;

		memcpy(b + i, &r, n);
	}
}

#endif
