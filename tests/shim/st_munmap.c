/*
 * st_munmap.c - unmapping compressed memory and mapping fresh memory at the
 * same address: the new mapping must read as zeros everywhere, however much
 * of the old one was compressed, and must then work like any other.
 *   - munmap of the whole mapping, mmap again at the same address
 *   - munmap of a middle piece, mmap again into the hole
 *   - mmap MAP_FIXED straight over a compressed mapping (no munmap)
 *   - a bigger mapping over the old address range
 */
#include "shimtest.h"

#define NPAGES (8 * ST_MIB / ST_PAGE)
#define LEN (NPAGES * ST_PAGE)

static void *map_at(void *addr, size_t len, int flags)
{
	void *p = mmap(addr, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);

	if (p == MAP_FAILED)
		st_fail("mmap at %p, %zu bytes: %s", addr, len, strerror(errno));
	if (p != addr)
		st_fail("mmap at %p returned %p", addr, p);
	return p;
}

/* A new mapping: zeros, then usable (fill, compress, verify). */
static void check_new(const char *what, char *p, size_t npages, uint64_t tag)
{
	st_verify_zero(what, p, npages * ST_PAGE);
	st_fill(p, npages, tag, 0, 0);
	st_wait_out(what, p, npages * ST_PAGE);
	st_verify(what, p, npages, tag, 0, 0);
}

int main(int argc, char **argv)
{
	char *p, *q;

	st_init(argv[0]);
	(void)argc;

	/* 1. The whole mapping (with room above it kept free for case 4). */
	p = st_map(2 * LEN);
	ST_CHECK(munmap(p + LEN, LEN) == 0);
	st_fill(p, NPAGES, 1, 0, 0);
	st_wait_out("first mapping", p, LEN);
	st_verify("first mapping", p, NPAGES / 4, 1, 0, 0);  /* some resident */
	ST_CHECK(munmap(p, LEN) == 0);
	map_at(p, LEN, MAP_FIXED_NOREPLACE);
	check_new("mmap again after munmap", p, NPAGES, 2);

	/* 2. A piece in the middle. */
	ST_CHECK(munmap(p + LEN / 4, LEN / 2) == 0);
	st_verify("below the hole", p, NPAGES / 4, 2, 0, 0);
	st_verify("above the hole", p + 3 * LEN / 4, NPAGES / 4, 2,
		  3 * NPAGES / 4, 0);
	map_at(p + LEN / 4, LEN / 2, MAP_FIXED_NOREPLACE);
	st_verify_zero("mmap into the hole", p + LEN / 4, LEN / 2);
	st_verify("below the hole", p, NPAGES / 4, 2, 0, 0);
	st_verify("above the hole", p + 3 * LEN / 4, NPAGES / 4, 2,
		  3 * NPAGES / 4, 0);
	st_fill(p + LEN / 4, NPAGES / 2, 3, NPAGES / 4, 0);
	st_wait_out("hole refilled", p, LEN);
	st_verify("below the hole", p, NPAGES / 4, 2, 0, 0);
	st_verify("hole refilled", p + LEN / 4, NPAGES / 2, 3, NPAGES / 4, 0);
	st_verify("above the hole", p + 3 * LEN / 4, NPAGES / 4, 2,
		  3 * NPAGES / 4, 0);

	/* 3. MAP_FIXED over it, no munmap. */
	st_wait_out("before MAP_FIXED", p, LEN);
	map_at(p, LEN, MAP_FIXED);
	check_new("MAP_FIXED over a compressed mapping", p, NPAGES, 4);

	/* 4. A bigger mapping over the old range and past it. */
	st_wait_out("before the bigger mapping", p, LEN);
	ST_CHECK(munmap(p, LEN) == 0);
	q = mmap(p, 2 * LEN, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (q == MAP_FAILED && errno == EEXIST) {
		/* Something else lives above: a hint instead, same start. */
		q = p;
		map_at(p, LEN, MAP_FIXED_NOREPLACE);
		st_note("no room above %p: same size again", (void *)p);
		check_new("mmap over the old range", p, NPAGES, 5);
	} else {
		if (q != p)
			st_fail("mmap at %p returned %p", (void *)p, (void *)q);
		check_new("bigger mapping over the old range", p, 2 * NPAGES, 5);
	}
	st_note("ok");
	return 0;
}
