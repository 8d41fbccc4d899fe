/*
 * st_mprotect.c - permission changes on compressed memory:
 *   - read-only: compressed pages read back right, and still after a while
 *     read-only (the engine may or may not take read-only pages out: that
 *     is noted, not required)
 *   - PROT_NONE and back to read-write: data intact, writable, compressible
 *   - every other chunk read-only (many small VMAs), then all read-write
 *   - a PROT_NONE reservation made read-write piece by piece, as a JIT or
 *     a garbage-collected heap does: the engine must pick the pieces up
 */
#include "shimtest.h"

#define NPAGES (8 * ST_MIB / ST_PAGE)
#define LEN (NPAGES * ST_PAGE)
#define CHUNK 64

static void mprot(void *p, size_t len, int prot)
{
	if (mprotect(p, len, prot) != 0)
		st_fail("mprotect %p %zu %d: %s", p, len, prot, strerror(errno));
}

int main(int argc, char **argv)
{
	char *p, *res;
	size_t left;

	st_init(argv[0]);
	(void)argc;
	p = st_map(LEN);
	st_fill(p, NPAGES, 1, 0, 0);
	st_wait_out("filled", p, LEN);

	for (uint32_t cycle = 0; cycle < 3; cycle++) {
		mprot(p, LEN, PROT_READ);
		st_verify("read-only", p, NPAGES, 1, 0, cycle);
		st_sleep_ms(150);
		left = NPAGES - st_resident(p, LEN);
		st_note("cycle %u: %zu of %zu pages taken out while read-only",
			cycle, left, (size_t)NPAGES);
		st_verify("read-only, after a while", p, NPAGES, 1, 0, cycle);
		mprot(p, LEN, PROT_NONE);
		st_sleep_ms(50);
		mprot(p, LEN, PROT_READ | PROT_WRITE);
		st_verify("read-write after PROT_NONE", p, NPAGES, 1, 0, cycle);
		st_wait_out("read-write after PROT_NONE", p, LEN);
		st_verify("read-write after PROT_NONE, compressed", p, NPAGES, 1, 0,
			  cycle);
		st_fill(p, NPAGES, 1, 0, cycle + 1);
		st_verify("rewritten", p, NPAGES, 1, 0, cycle + 1);
		st_wait_out("rewritten", p, LEN);
	}

	/* Every other chunk read-only. */
	for (size_t i = 0; i < NPAGES; i += 2 * CHUNK)
		mprot(p + i * ST_PAGE, CHUNK * ST_PAGE, PROT_READ);
	st_verify("chunks read-only", p, NPAGES, 1, 0, 3);
	for (size_t i = CHUNK; i < NPAGES; i += 2 * CHUNK)
		st_fill(p + i * ST_PAGE, CHUNK, 1, i, 4);
	st_sleep_ms(150);
	for (size_t i = 0; i < NPAGES; i++)
		st_verify_page("chunks read-only, others rewritten", p + i * ST_PAGE,
			       1, i, (i / CHUNK) % 2 ? 4 : 3);
	mprot(p, LEN, PROT_READ | PROT_WRITE);
	st_wait_out("all read-write again", p, LEN);
	for (size_t i = 0; i < NPAGES; i++)
		st_verify_page("all read-write again", p + i * ST_PAGE, 1, i,
			       (i / CHUNK) % 2 ? 4 : 3);

	/* A reservation made usable piece by piece. */
	res = mmap(NULL, 2 * LEN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS |
		   MAP_NORESERVE, -1, 0);
	ST_CHECK(res != MAP_FAILED);
	mprot(res, LEN, PROT_READ | PROT_WRITE);
	st_fill(res, NPAGES, 2, 0, 0);
	st_wait_out("first half of a reservation", res, LEN);
	st_verify("first half of a reservation", res, NPAGES, 2, 0, 0);
	mprot(res + LEN, LEN, PROT_READ | PROT_WRITE);
	st_verify_zero("second half of a reservation", res + LEN, LEN);
	st_fill(res + LEN, NPAGES, 2, NPAGES, 0);
	st_wait_out("whole reservation", res, 2 * LEN);
	st_verify("whole reservation", res, 2 * NPAGES, 2, 0, 0);
	st_verify("first mapping at the end", p, NPAGES / CHUNK / 2, 1, 0, 3);
	st_note("ok");
	return 0;
}
