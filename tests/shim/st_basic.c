/*
 * st_basic.c - one thread: fill 32 MiB, let the engine compress it (RSS must
 * fall), verify every byte, rewrite half, and again, for several rounds.
 * Also a malloc'd buffer, so glibc's own mmap is covered.
 */
#include "shimtest.h"

#define NPAGES (32 * ST_MIB / ST_PAGE)
#define ROUNDS 3

static uint32_t rounds[NPAGES];

int main(int argc, char **argv)
{
	char *buf, *heap;
	size_t heap_pages = 4 * ST_MIB / ST_PAGE;
	double t0 = st_now();

	st_init(argv[0]);
	(void)argc;
	buf = st_map(NPAGES * ST_PAGE);
	/* malloc of this size is an mmap of its own, one page header. */
	heap = malloc(heap_pages * ST_PAGE + ST_PAGE);
	ST_CHECK(heap != NULL);
	heap = (char *)(((uintptr_t)heap + ST_PAGE - 1) & ~(uintptr_t)(ST_PAGE - 1));
	heap_pages--;   /* the last page may run past the allocation */

	st_fill(buf, NPAGES, 1, 0, 0);
	st_fill(heap, heap_pages, 2, 0, 0);
	for (uint32_t r = 0; r < ROUNDS; r++) {
		double w = st_wait_out("data", buf, NPAGES * ST_PAGE);

		st_wait_out("malloc", heap, heap_pages * ST_PAGE);
		if (r == 0) {
			/* Nearly all out: the process must have shrunk. */
			st_wait_out_to("data", buf, NPAGES * ST_PAGE, 0.05);
			st_assert_rss_below("data", NPAGES * ST_PAGE / 3);
		}
		st_note("round %u: compressed in %.2f s, RSS %zu KiB", r, w,
			st_rss() >> 10);
		for (size_t i = 0; i < NPAGES; i++)
			st_verify_page("data", buf + i * ST_PAGE, 1, i, rounds[i]);
		st_verify("malloc", heap, heap_pages, 2, 0, r);
		/* Rewrite every other page (r odd) or the first half (r even). */
		for (size_t i = 0; i < NPAGES; i++) {
			bool w2 = r & 1 ? i % 2 == 0 : i < NPAGES / 2;

			if (w2) {
				rounds[i] = r + 1;
				st_fill_page(buf + i * ST_PAGE, 1, i, r + 1);
			}
		}
		st_fill(heap, heap_pages, 2, 0, r + 1);
	}
	st_wait_out("data", buf, NPAGES * ST_PAGE);
	for (size_t i = 0; i < NPAGES; i++)
		st_verify_page("data", buf + i * ST_PAGE, 1, i, rounds[i]);
	st_verify("malloc", heap, heap_pages, 2, 0, ROUNDS);
	st_note("ok in %.2f s", st_now() - t0);
	return 0;
}
