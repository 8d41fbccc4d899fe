/*
 * st_rlimit.c - a program that caps its own address space (RLIMIT_AS, mode
 * "as") or data (RLIMIT_DATA, mode "data") keeps the room it asked for,
 * though uzswap reserves hundreds of GiB of address space, and the cap
 * still holds.
 * With compressed data in memory, the program sets the limit to CAP; then:
 *  - getrlimit and prlimit read back exactly CAP, and setting a lower soft
 *    limit under the same hard one reads back as set;
 *  - mmap of BIG, and brk growth, succeed;
 *  - mmap of more than CAP fails with ENOMEM;
 *  - every byte of the data is intact, and new data is still taken out.
 */
#include "shimtest.h"

#include <sys/resource.h>

#define NPAGES (8 * ST_MIB / ST_PAGE)
#define LEN (NPAGES * ST_PAGE)
#define CAP ((rlim_t)1 << 30)
#define BIG (256 * ST_MIB)

int main(int argc, char **argv)
{
	struct rlimit rl = { CAP, CAP }, back;
	char *data, *big, *later, *brk0;
	const char *mode = st_mode(argc, argv, "as");
	int res = !strcmp(mode, "data") ? RLIMIT_DATA : RLIMIT_AS;

	st_init(argv[0]);
	if (strcmp(mode, "as") && strcmp(mode, "data"))
		st_fail("unknown mode %s", mode);
	data = st_map(LEN);
	st_fill(data, NPAGES, 1, 0, 0);
	st_wait_out("data", data, LEN);
	if (setrlimit(res, &rl) != 0)
		st_fail("setrlimit(%s, 1 GiB): %s", mode, strerror(errno));
	if (getrlimit(res, &back) != 0 || back.rlim_cur != CAP ||
	    back.rlim_max != CAP)
		st_fail("getrlimit(%s) reads %llu/%llu, not the %llu set", mode,
			(unsigned long long)back.rlim_cur,
			(unsigned long long)back.rlim_max, (unsigned long long)CAP);
	if (prlimit(0, res, NULL, &back) != 0 || back.rlim_cur != CAP)
		st_fail("prlimit(0, %s) reads %llu, not %llu", mode,
			(unsigned long long)back.rlim_cur, (unsigned long long)CAP);
	/* Setting the hard limit read back changes nothing (and must not
	 * fail: raising a hard limit needs privilege). */
	rl.rlim_cur = CAP / 2;
	if (setrlimit(res, &rl) != 0)
		st_fail("setrlimit(%s, 512 MiB, the hard 1 GiB): %s", mode,
			strerror(errno));
	if (getrlimit(res, &back) != 0 || back.rlim_cur != CAP / 2 ||
	    back.rlim_max != CAP)
		st_fail("getrlimit(%s) reads %llu/%llu after setting %llu/%llu", mode,
			(unsigned long long)back.rlim_cur,
			(unsigned long long)back.rlim_max,
			(unsigned long long)CAP / 2, (unsigned long long)CAP);
	big = mmap(NULL, BIG, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (big == MAP_FAILED)
		st_fail("mmap of 256 MiB under a 1 GiB %s limit: %s", mode, strerror(errno));
	munmap(big, BIG);
	brk0 = sbrk(0);
	if (sbrk(64 * ST_MIB) == (void *)-1)
		st_fail("brk growth of 64 MiB under a 1 GiB %s limit: %s", mode,
			strerror(errno));
	if (brk(brk0) != 0)
		st_fail("brk back: %s", strerror(errno));
	big = mmap(NULL, 2 * CAP, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (big != MAP_FAILED)
		st_fail("mmap of 2 GiB succeeded under a 1 GiB %s limit", mode);
	st_verify("data", data, NPAGES, 1, 0, 0);
	later = st_map(LEN);
	st_fill(later, NPAGES, 2, 0, 0);
	st_wait_out("later", later, LEN);
	st_verify("later", later, NPAGES, 2, 0, 0);
	st_note("ok");
	return 0;
}
