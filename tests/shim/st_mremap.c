/*
 * st_mremap.c - mremap of compressed memory carries the data with it:
 *   move        MREMAP_MAYMOVE|MREMAP_FIXED to a chosen address
 *   grow        in place (room above), the new part reads as zeros
 *   growmove    grow where there is no room, so the kernel moves it
 *   shrink      the rest keeps its data; the range given up is fresh after
 *   piece       a middle piece moved away; the hole is fresh after
 *   dontunmap   MREMAP_DONTUNMAP: data at the new address, zeros at the old
 *   doubling    for 3 s, a buffer grown by doubling with MREMAP_MAYMOVE from
 *               128 KiB to 4 MiB, as realloc does for sqlite's sorter: most
 *               moves land right below the old place, while scans adopt
 *               what they find in /proc/self/maps (a mapping of ours moved
 *               there, its event not read yet, must stay registered)
 * Each step starts with the mapping mostly compressed and a part of it
 * resident, and ends with it compressed again at its new place and verified.
 */
#include "shimtest.h"

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

#define NPAGES (8 * ST_MIB / ST_PAGE)
#define LEN (NPAGES * ST_PAGE)

static uint64_t tag = 1;

/*
 * A mapping of len bytes with len_free bytes above it held by a PROT_NONE
 * reservation (so nothing else is mapped there meanwhile: the engine maps
 * memory of its own too); make_room() gives it up right before it is used.
 */
static char *map_with_room(size_t len, size_t len_free)
{
	char *p = st_map(len + len_free);

	if (len_free)
		ST_CHECK(mprotect(p + len, len_free, PROT_NONE) == 0);
	return p;
}

static void make_room(char *p, size_t len_free)
{
	ST_CHECK(munmap(p, len_free) == 0);
}

/* Fill, compress, and touch a quarter so that part is resident. */
static void prepare(const char *what, char *p, size_t npages)
{
	tag++;
	st_fill(p, npages, tag, 0, 0);
	st_wait_out(what, p, npages * ST_PAGE);
	st_verify(what, p + npages / 2 * ST_PAGE, npages / 4, tag, npages / 2, 0);
}

static void *do_mremap(void *old, size_t old_len, size_t new_len, int flags,
		       void *new_addr)
{
	void *q = mremap(old, old_len, new_len, flags, new_addr);

	if (q == MAP_FAILED)
		st_fail("mremap %p %zu -> %zu flags %#x: %s", old, old_len,
			new_len, flags, strerror(errno));
	return q;
}

/* The range is unmapped: mapping it again gives fresh zeros. */
static void check_fresh(const char *what, char *p, size_t len)
{
	void *q = mmap(p, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (q == MAP_FAILED)
		st_fail("%s: mmap at %p: %s (still mapped?)", what, (void *)p,
			strerror(errno));
	st_verify_zero(what, p, len);
	ST_CHECK(munmap(p, len) == 0);
}

static void settle(const char *what, char *p, size_t npages, uint64_t first)
{
	st_wait_out(what, p, npages * ST_PAGE);
	st_verify(what, p, npages, tag, first, 0);
}

static void mode_move(void)
{
	char *p = st_map(LEN), *dst = st_map(LEN), *q;

	prepare("before move", p, NPAGES);
	q = do_mremap(p, LEN, LEN, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	if (q != dst)
		st_fail("mremap to %p returned %p", (void *)dst, (void *)q);
	st_verify("moved", q, NPAGES, tag, 0, 0);
	check_fresh("old address after move", p, LEN);
	settle("moved, compressed again", q, NPAGES, 0);
	/* And back again, after it is all compressed. */
	p = do_mremap(q, LEN, LEN, MREMAP_MAYMOVE | MREMAP_FIXED, p);
	st_verify("moved back", p, NPAGES, tag, 0, 0);
	settle("moved back, compressed again", p, NPAGES, 0);
}

static void mode_grow(void)
{
	char *p = map_with_room(LEN, LEN), *q;

	prepare("before grow", p, NPAGES);
	make_room(p + LEN, LEN);
	q = do_mremap(p, LEN, 2 * LEN, 0, NULL);
	if (q != p)
		st_fail("grow in place moved %p to %p", (void *)p, (void *)q);
	st_verify("grown in place: old part", p, NPAGES, tag, 0, 0);
	st_verify_zero("grown in place: new part", p + LEN, LEN);
	st_fill(p + LEN, NPAGES, tag, NPAGES, 0);
	settle("grown in place, filled", p, 2 * NPAGES, 0);
}

static void mode_growmove(void)
{
	char *p = st_map(LEN + ST_PAGE), *q;

	/* A page above with other permissions: no room to grow in place. */
	ST_CHECK(mprotect(p + LEN, ST_PAGE, PROT_READ) == 0);
	prepare("before grow with move", p, NPAGES);
	q = do_mremap(p, LEN, 2 * LEN, MREMAP_MAYMOVE, NULL);
	if (q == p)
		st_fail("grow with move did not move");
	st_verify("grown by moving: old part", q, NPAGES, tag, 0, 0);
	st_verify_zero("grown by moving: new part", q + LEN, LEN);
	st_fill(q + LEN, NPAGES, tag, NPAGES, 0);
	settle("grown by moving, filled", q, 2 * NPAGES, 0);
	ST_CHECK(munmap(p + LEN, ST_PAGE) == 0);
	check_fresh("old address after grow with move", p, LEN);
}

static void mode_shrink(void)
{
	char *p = st_map(2 * LEN), *q;

	prepare("before shrink", p, 2 * NPAGES);
	q = do_mremap(p, 2 * LEN, LEN, 0, NULL);
	if (q != p)
		st_fail("shrink moved %p to %p", (void *)p, (void *)q);
	st_verify("shrunk", p, NPAGES, tag, 0, 0);
	check_fresh("range given up by shrink", p + LEN, LEN);
	settle("shrunk, compressed again", p, NPAGES, 0);
	/* Grow back in place: the regained part must be zeros, not the old
	 * (compressed) data. */
	q = do_mremap(p, LEN, 2 * LEN, 0, NULL);
	if (q != p)
		st_fail("grow back in place moved %p to %p", (void *)p, (void *)q);
	st_verify_zero("grown back after shrink", p + LEN, LEN);
	st_verify("grown back after shrink: old part", p, NPAGES, tag, 0, 0);
}

static void mode_piece(void)
{
	char *p = st_map(LEN), *dst = st_map(LEN / 4), *q;

	prepare("before moving a piece", p, NPAGES);
	q = do_mremap(p + LEN / 4, LEN / 4, LEN / 4, MREMAP_MAYMOVE | MREMAP_FIXED,
		      dst);
	st_verify("moved piece", q, NPAGES / 4, tag, NPAGES / 4, 0);
	st_verify("below the piece", p, NPAGES / 4, tag, 0, 0);
	st_verify("above the piece", p + LEN / 2, NPAGES / 2, tag, NPAGES / 2, 0);
	check_fresh("hole left by the piece", p + LEN / 4, LEN / 4);
	settle("moved piece, compressed again", q, NPAGES / 4, NPAGES / 4);
	st_wait_out("around the hole", p, LEN / 4);
	st_verify("below the piece", p, NPAGES / 4, tag, 0, 0);
	st_verify("above the piece", p + LEN / 2, NPAGES / 2, tag, NPAGES / 2, 0);
}

static void mode_dontunmap(void)
{
	char *p = st_map(LEN), *q;

	prepare("before MREMAP_DONTUNMAP", p, NPAGES);
	q = do_mremap(p, LEN, LEN, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
	st_verify("moved with MREMAP_DONTUNMAP", q, NPAGES, tag, 0, 0);
	st_verify_zero("old range after MREMAP_DONTUNMAP", p, LEN);
	settle("moved with MREMAP_DONTUNMAP, compressed again", q, NPAGES, 0);
	/* The old range is still a mapping of its own: usable. */
	tag++;
	st_fill(p, NPAGES, tag, 0, 0);
	settle("old range reused", p, NPAGES, 0);
	st_verify("moved with MREMAP_DONTUNMAP, at the end", q, NPAGES, tag - 1,
		  0, 0);
}

static void mode_doubling(void)
{
	double t0 = st_now();
	unsigned rounds = 0;

	while (st_now() - t0 < 3.0) {
		size_t npages = 32;
		char *p = st_map(npages * ST_PAGE);

		tag++;
		st_fill(p, npages, tag, 0, 0);
		for (; npages < 1024; npages *= 2) {
			char what[64];

			p = do_mremap(p, npages * ST_PAGE, 2 * npages * ST_PAGE,
				      MREMAP_MAYMOVE, NULL);
			snprintf(what, sizeof(what), "round %u, doubled to %zu "
				 "pages", rounds, 2 * npages);
			st_verify(what, p, npages, tag, 0, 0);
			st_verify_zero(what, p + npages * ST_PAGE, npages * ST_PAGE);
			st_fill(p + npages * ST_PAGE, npages, tag, npages, 0);
			st_sleep_ms(3);
		}
		st_verify("before munmap", p, npages, tag, 0, 0);
		ST_CHECK(munmap(p, npages * ST_PAGE) == 0);
		rounds++;
	}
	st_note("doubling: %u rounds", rounds);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} modes[] = {
		{ "move", mode_move }, { "grow", mode_grow },
		{ "growmove", mode_growmove }, { "shrink", mode_shrink },
		{ "piece", mode_piece }, { "dontunmap", mode_dontunmap },
		{ "doubling", mode_doubling },
	};
	const char *mode = st_mode(argc, argv, "all");
	bool any = false;

	st_init(argv[0]);
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(mode, "all") && strcmp(mode, modes[i].name))
			continue;
		modes[i].fn();
		st_note("%s: ok", modes[i].name);
		any = true;
	}
	if (!any)
		st_fail("unknown mode %s", mode);
	return 0;
}
