/*
 * st_heap.c - malloc churn in glibc's main arena, the brk heap: thousands
 * of small and medium chunks allocated, freed, grown and shrunk by realloc,
 * with the heap trimmed (brk down) and grown again all the time, while the
 * engine takes heap pages out and brings them back.  Every chunk's bytes
 * are a function of (chunk, version) and are checked on each free,
 * realloc and read, and all of them at the end.
 *
 * What it covers that no other program here does: the [heap] mapping,
 * whose growth by brk is a new, unregistered mapping the engine must
 * adopt, and whose trims are unmap events, interleaved with take-outs of
 * the malloc metadata that sits between chunks (a wrong byte there shows
 * as glibc aborting, "corrupted size vs. prev_size").
 *
 * Usage: st_heap [SECONDS]   (default 2)
 */
#include "shimtest.h"

#include <malloc.h>

#define CHUNKS 3000u
#define OPS_PER_ROUND 20000u

static unsigned char *chunk[CHUNKS];
static size_t chunk_len[CHUNKS];
static uint32_t chunk_version[CHUNKS];
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Byte k of chunk i at its current version. */
static unsigned char expected(unsigned i, size_t k)
{
	uint64_t word = st_mix(((uint64_t)i << 32 | chunk_version[i]) ^
			       (uint64_t)(k / 8) << 1);

	return (unsigned char)(word >> (8 * (k % 8)));
}

static void fill(unsigned i)
{
	for (size_t k = 0; k < chunk_len[i]; k++)
		chunk[i][k] = expected(i, k);
}

static void check(unsigned i, const char *when)
{
	for (size_t k = 0; k < chunk_len[i]; k++)
		if (chunk[i][k] != expected(i, k))
			st_fail("%s: chunk %u (%zu bytes at %p, version %u): byte "
				"%zu is %#x, expected %#x", when, i, chunk_len[i],
				(void *)chunk[i], chunk_version[i], k,
				chunk[i][k], expected(i, k));
}

static size_t random_len(void)
{
	return rng() % 4 == 0 ? 4096 + rng() % 40000 : 16 + rng() % 2000;
}

static void one_op(unsigned i)
{
	unsigned op = (unsigned)(rng() % 10);

	if (!chunk[i]) {
		chunk_len[i] = random_len();
		chunk[i] = malloc(chunk_len[i]);
		if (!chunk[i])
			st_fail("malloc(%zu) failed", chunk_len[i]);
		chunk_version[i]++;
		fill(i);
	} else if (op < 3) {
		check(i, "before free");
		free(chunk[i]);
		chunk[i] = NULL;
	} else if (op < 5) {
		size_t len = random_len();
		unsigned char *p;

		check(i, "before realloc");
		p = realloc(chunk[i], len);
		if (!p)
			st_fail("realloc(%zu) failed", len);
		chunk[i] = p;
		if (len < chunk_len[i])
			chunk_len[i] = len;
		check(i, "after realloc");
		chunk_len[i] = len;
		chunk_version[i]++;
		fill(i);
	} else {
		check(i, "read");
	}
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2.0, t0;
	unsigned long ops = 0, rounds = 0;

	st_init(argv[0]);
	/* Everything from brk, and trimmed as soon as 64 KiB is free at the
	 * top: the heap goes up and down all the time. */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 10);
	mallopt(M_TOP_PAD, 0);
	t0 = st_now();
	while (st_now() - t0 < seconds) {
		for (unsigned r = 0; r < OPS_PER_ROUND; r++, ops++)
			one_op((unsigned)(rng() % CHUNKS));
		/* Free the upper half now and then: a big trim. */
		if (rng() % 3 == 0)
			for (unsigned i = CHUNKS / 2; i < CHUNKS; i++)
				if (chunk[i]) {
					check(i, "before a mass free");
					free(chunk[i]);
					chunk[i] = NULL;
				}
		rounds++;
		/* Let a scan or two find pages left alone. */
		st_sleep_ms(20);
	}
	for (unsigned i = 0; i < CHUNKS; i++)
		if (chunk[i])
			check(i, "at the end");
	st_note("%lu operations in %lu rounds", ops, rounds);
	return 0;
}
