/*
 * st_plain.c - a plain program for the runs where the shim must stand
 * aside (bad settings, UZSWAP_DISABLE, no privilege) or must work (the
 * control): fill 8 MiB, then
 *   st_plain untouched    after 300 ms (30 scan intervals) every page is
 *                         still resident: no engine touched us
 *   st_plain compressed   the pages are taken out
 *   st_plain settle       whatever the engine can do until it stops taking
 *                         pages out, then the same after a rewrite (for runs
 *                         where it may not compress everything, e.g. a full
 *                         disk)
 *   st_plain grow         then map 32 MiB more, wait until the engine has
 *                         registered it, and fill it in one go, faster than
 *                         pages compress (for runs under a limit, where its
 *                         first touches are held back)
 *   st_plain burst        then map 32 MiB more and fill it at once, before any
 *                         scan could find the mapping (for runs under a
 *                         limit: the RSS watch must register it in time for
 *                         its first touches to be held back)
 *   st_plain readback     as grow, then wait until the engine has taken the
 *                         32 MiB out and read them all back in one go (under
 *                         a limit, the restores are held back)
 *   st_plain unmanaged    (under a 10 MiB limit) fill 6 MiB the engine does
 *                         not manage (executable), then wait until half the
 *                         data is out: the limit counts all anonymous memory,
 *                         not only what the engine manages.  And huge pages
 *                         are off under a limit.
 *   st_plain unmanaged-hot  (under a limit below 6 MiB) the same 6 MiB, then
 *                         half the data out, then its first 1 MiB read over
 *                         and over for a second: a limit that memory nobody
 *                         can take out exceeds must not make the engine
 *                         take out pages in use (the runner counts refaults)
 *   st_plain huge-pages   (with no limit) huge pages are not turned off, and
 *                         the pages are taken out as for compressed
 *   st_plain again        as compressed, then read every page back and wait
 *                         until they are taken out again: pages a fault
 *                         brought back go cold again once left alone
 * then verify, and print exactly the three lines the runner expects.
 */
#include "shimtest.h"

#include <sys/prctl.h>

#define NPAGES (8 * ST_MIB / ST_PAGE)
#define LEN (NPAGES * ST_PAGE)

int main(int argc, char **argv)
{
	const char *mode = st_mode(argc, argv, "compressed");
	char *buf;

	st_init(argv[0]);
	buf = st_map(LEN);
	st_fill(buf, NPAGES, 1, 0, 0);
	if (!strcmp(mode, "untouched"))
		st_expect_untouched("data", buf, LEN, 300);
	else if (!strcmp(mode, "compressed"))
		st_wait_out("data", buf, LEN);
	else if (!strcmp(mode, "settle")) {
		st_settle(buf, LEN);
		st_verify("data", buf, NPAGES, 1, 0, 0);
		st_fill(buf, NPAGES, 1, 0, 1);
		st_settle(buf, LEN);
		st_verify("data", buf, NPAGES, 1, 0, 1);
		st_fill(buf, NPAGES, 1, 0, 0);
	} else if (!strcmp(mode, "burst")) {
		size_t npages = 32 * ST_MIB / ST_PAGE;
		char *more = st_map(npages * ST_PAGE);

		st_fill(more, npages, 2, 0, 0);
		st_verify("grown", more, npages, 2, 0, 0);
	} else if (!strcmp(mode, "grow") || !strcmp(mode, "readback")) {
		size_t npages = 32 * ST_MIB / ST_PAGE;
		char *more = st_map(npages * ST_PAGE);

		/* One page now, so the mapping is found and registered (the
		 * RSS poll and the scans see it); the rest then comes through
		 * the fault thread as first touches. */
		st_fill(more, 1, 2, 0, 0);
		st_sleep_ms(300);
		st_fill(more, npages, 2, 0, 0);
		if (!strcmp(mode, "readback"))
			st_settle(more, npages * ST_PAGE);
		st_verify("grown", more, npages, 2, 0, 0);
	} else if (!strcmp(mode, "unmanaged") ||
		   !strcmp(mode, "unmanaged-hot")) {
		size_t npages = 6 * ST_MIB / ST_PAGE;
		char *exec = mmap(NULL, npages * ST_PAGE,
				  PROT_READ | PROT_WRITE | PROT_EXEC,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (exec == MAP_FAILED)
			st_fail("an executable anonymous mapping: %s",
				strerror(errno));
		ST_CHECK(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1);
		st_fill(exec, npages, 3, 0, 0);
		st_wait_out_to("data", buf, LEN, 0.5);
		if (!strcmp(mode, "unmanaged-hot")) {
			double t0 = st_now();

			while (st_now() - t0 < 1.0)
				st_verify("hot", buf, ST_MIB / ST_PAGE, 1, 0, 0);
		}
		st_verify("unmanaged", exec, npages, 3, 0, 0);
	} else if (!strcmp(mode, "again")) {
		st_wait_out("data", buf, LEN);
		st_verify("data", buf, NPAGES, 1, 0, 0);
		st_wait_out("data read back", buf, LEN);
	} else if (!strcmp(mode, "huge-pages")) {
		ST_CHECK(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 0);
		st_wait_out("data", buf, LEN);
	} else
		st_fail("unknown mode %s", mode);
	st_verify("data", buf, NPAGES, 1, 0, 0);
	printf("line one of the program's own output\n");
	printf("line two: %u pages verified\n", (unsigned)NPAGES);
	printf("line three: the end\n");
	return 0;
}
