/*
 * st_brk.c - the brk heap moved up and down by hand while the engine adopts
 * it.  Each round grows the heap, fills the new pages, and then shrinks and
 * regrows its top again and again before filling that too; every page is
 * checked a round later (by then taken out) and all of them at the end.
 *
 * What it is for: a mapping the engine finds in /proc/self/maps may be
 * gone by the time it registers the range (a brk trim of a top nobody has
 * registered raises no event), and the kernel registers what is left
 * without a word about the hole.  A regrown top in that hole is a new,
 * unregistered mapping inside a range the engine manages: a page taken out
 * of it never faults back to the engine, and reads as zeros.  This program
 * makes that window as wide as it can.
 *
 * No malloc while it runs (malloc grows the same heap): its buffers are
 * static.  Usage: st_brk [SECONDS]   (default 2)
 */
#include "shimtest.h"

#define GROW (512u << 10)       /* heap growth a round */
#define WOBBLE (256u << 10)     /* the top shrunk and regrown */
#define WOBBLES 2000u
#define MAX_ROUNDS 200u

static char *round_start[MAX_ROUNDS];

static void *sbrk_or_fail(intptr_t delta)
{
	void *p = sbrk(delta);

	if (p == (void *)-1)
		st_fail("sbrk(%ld): %s", (long)delta, strerror(errno));
	return p;
}

static void verify_round(unsigned r, const char *when)
{
	char what[64];

	snprintf(what, sizeof(what), "round %u, %s", r, when);
	st_verify(what, round_start[r], GROW / ST_PAGE, 0xb4c, (uint64_t)r << 20, r);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2.0, t0;
	unsigned rounds = 0;

	st_init(argv[0]);
	/* The first brk of the heap on a page boundary, so rounds are too. */
	sbrk_or_fail((intptr_t)(-(uintptr_t)sbrk_or_fail(0) & (ST_PAGE - 1)));
	t0 = st_now();
	while (st_now() - t0 < seconds && rounds < MAX_ROUNDS) {
		unsigned r = rounds++;
		char *top;

		round_start[r] = sbrk_or_fail(GROW);
		top = round_start[r] + GROW - WOBBLE;
		st_fill(round_start[r], (GROW - WOBBLE) / ST_PAGE, 0xb4c,
			(uint64_t)r << 20, r);
		for (unsigned k = 0; k < WOBBLES; k++) {
			sbrk_or_fail(-(intptr_t)WOBBLE);
			sbrk_or_fail(WOBBLE);
		}
		st_fill(top, WOBBLE / ST_PAGE, 0xb4c,
			((uint64_t)r << 20) + (GROW - WOBBLE) / ST_PAGE, r);
		if (r > 0)
			verify_round(r - 1, "a round later");
		st_sleep_ms(15);
	}
	for (unsigned r = 0; r < rounds; r++)
		verify_round(r, "at the end");
	st_note("%u rounds", rounds);
	return 0;
}
