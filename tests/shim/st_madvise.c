/*
 * st_madvise.c - discarding compressed memory.
 *
 *   st_madvise dontneed   MADV_DONTNEED over compressed, resident and
 *                         just-taken-out pages reads back zeros there and the
 *                         data everywhere else; then the range is reused
 *   st_madvise free       MADV_FREE: each page reads back either its old data
 *                         or zeros, never anything else; pages written after
 *                         it keep what was written
 * (MADV_REMOVE is not valid for private anonymous memory: not tested.)
 */
#include "shimtest.h"

#define NPAGES (16 * ST_MIB / ST_PAGE)

static char *buf;
static double t_start;
static uint32_t rounds[NPAGES];
static bool zero[NPAGES];

static char *pg(size_t i)
{
	return buf + i * ST_PAGE;
}

static void verify_all(const char *what)
{
	st_note("%.2f s: %s", st_now() - t_start, what);
	for (size_t i = 0; i < NPAGES; i++)
		if (zero[i])
			st_verify_zero(what, pg(i), ST_PAGE);
		else
			st_verify_page(what, pg(i), 1, i, rounds[i]);
}

static void write_range(size_t from, size_t to, uint32_t round)
{
	for (size_t i = from; i < to; i++) {
		rounds[i] = round;
		zero[i] = false;
		st_fill_page(pg(i), 1, i, round);
	}
}

static void dontneed(size_t from, size_t to)
{
	ST_CHECK(madvise(pg(from), (to - from) * ST_PAGE, MADV_DONTNEED) == 0);
	for (size_t i = from; i < to; i++)
		zero[i] = true;
}

static void mode_dontneed(void)
{
	uint64_t seed = 1;

	/* A range of compressed pages with resident ones in its middle. */
	st_verify("before DONTNEED", pg(1024), 512, 1, 1024, 0);
	dontneed(512, 2048);
	verify_all("after DONTNEED of a compressed range");
	st_wait_out("after DONTNEED", buf, NPAGES * ST_PAGE);
	verify_all("after DONTNEED, compressed again");

	/* The discarded range in use again, compressed again. */
	write_range(512, 2048, 1);
	verify_all("DONTNEED range rewritten");
	st_wait_out("DONTNEED range rewritten", buf, NPAGES * ST_PAGE);
	verify_all("DONTNEED range rewritten, compressed again");

	/* Single pages and odd-sized pieces, some at region edges. */
	dontneed(0, 1);
	dontneed(NPAGES - 1, NPAGES);
	dontneed(3000, 3003);
	verify_all("after small DONTNEEDs");

	/*
	 * Race the reclaimer: write a piece, let it age for 0-30 ms (so it is
	 * resident, being taken out, or compressed), discard it, check zeros.
	 */
	for (unsigned k = 0; k < 40; k++) {
		size_t from, n;

		seed = st_mix(seed + k);
		from = 2048 + seed % (NPAGES - 2048 - 256);
		n = 1 + (seed >> 20) % 256;
		write_range(from, from + n, 2 + k);
		st_sleep_ms((unsigned)((seed >> 40) % 31));
		dontneed(from, from + n);
		st_verify_zero("DONTNEED during reclaim", pg(from), n * ST_PAGE);
	}
	verify_all("after the DONTNEED races");

	/* The whole mapping. */
	dontneed(0, NPAGES);
	verify_all("after DONTNEED of the whole mapping");
	write_range(0, NPAGES, 100);
	st_wait_out("refilled", buf, NPAGES * ST_PAGE);
	verify_all("refilled after DONTNEED of everything");
}

/* Either the page's data or a zero page, nothing else. */
static void verify_old_or_zero(const char *what, size_t i)
{
	const unsigned char *p = (const unsigned char *)pg(i);
	size_t nz = 0;

	for (size_t k = 0; k < ST_PAGE; k++)
		nz += p[k] != 0;
	if (nz)
		st_verify_page(what, p, 1, i, rounds[i]);
}

static void mode_free(void)
{
	size_t kept = 0, zeroed = 0;

	st_verify("before MADV_FREE", pg(1024), 512, 1, 1024, 0);
	ST_CHECK(madvise(pg(512), 1536 * ST_PAGE, MADV_FREE) == 0);
	for (size_t i = 0; i < NPAGES; i++) {
		const unsigned char *p = (const unsigned char *)pg(i);

		if (i >= 512 && i < 2048) {
			verify_old_or_zero("after MADV_FREE", i);
			if (p[0])
				kept++;
			else
				zeroed++;
		} else {
			st_verify_page("outside MADV_FREE", p, 1, i, rounds[i]);
		}
	}
	st_note("MADV_FREE: %zu pages kept their data, %zu read as zeros",
		kept, zeroed);
	/* Whatever each page held, it is now settled: remember it. */
	for (size_t i = 512; i < 2048; i++)
		zero[i] = pg(i)[0] == 0;
	st_wait_out("after MADV_FREE", buf, NPAGES * ST_PAGE);
	verify_all("after MADV_FREE, compressed again");

	/* Free again, then write half: written pages keep what was written. */
	ST_CHECK(madvise(pg(0), NPAGES * ST_PAGE, MADV_FREE) == 0);
	for (size_t i = 0; i < NPAGES; i += 2)
		write_range(i, i + 1, 1);
	st_wait_out("written after MADV_FREE", buf, NPAGES * ST_PAGE);
	for (size_t i = 0; i < NPAGES; i++) {
		if (i % 2 == 0)
			st_verify_page("written after MADV_FREE", pg(i), 1, i, 1);
		else if (zero[i])
			st_verify_zero("zero page after MADV_FREE", pg(i), ST_PAGE);
		else
			verify_old_or_zero("not written after MADV_FREE", i);
	}
}

int main(int argc, char **argv)
{
	const char *mode = st_mode(argc, argv, "dontneed");

	st_init(argv[0]);
	t_start = st_now();
	buf = st_map(NPAGES * ST_PAGE);
	write_range(0, NPAGES, 0);
	st_wait_out("filled", buf, NPAGES * ST_PAGE);
	if (!strcmp(mode, "dontneed"))
		mode_dontneed();
	else if (!strcmp(mode, "free"))
		mode_free();
	else
		st_fail("unknown mode %s", mode);
	st_note("%s: ok", mode);
	return 0;
}
