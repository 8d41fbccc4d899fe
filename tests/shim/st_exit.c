/*
 * st_exit.c - leaving with compressed pages.  The engine keeps running while
 * the process exits, so atexit handlers and destructors that read compressed
 * memory still work, and the exit never hangs.
 *   st_exit exit      exit(0); an atexit handler verifies compressed pages
 *   st_exit return    return from main; an atexit handler and a destructor
 *                     verify compressed pages
 *   st_exit threads   exit(0) while four threads are faulting pages back
 *   st_exit _exit     _exit(0), nothing verified: must just not hang
 * Each handler prints a line; the runner checks they all ran.
 */
#include "shimtest.h"

#include <pthread.h>

#define NPAGES (8 * ST_MIB / ST_PAGE)
#define LEN (NPAGES * ST_PAGE)

static char *buf;
static bool check_in_destructor;

static void at_exit_handler(void)
{
	st_verify("atexit handler", buf, NPAGES, 1, 0, 0);
	/* Write some, compress again... the engine may still be at work. */
	st_fill(buf, NPAGES / 2, 1, 0, 1);
	st_verify("atexit handler, rewritten", buf, NPAGES / 2, 1, 0, 1);
	printf("%s: atexit handler verified\n", st_prog);
	fflush(stdout);
}

__attribute__((destructor)) static void destructor(void)
{
	if (!check_in_destructor)
		return;
	st_verify("destructor", buf + LEN / 2, NPAGES / 2, 1, NPAGES / 2, 0);
	st_verify("destructor", buf, NPAGES / 2, 1, 0, 1);
	printf("%s: destructor verified\n", st_prog);
	fflush(stdout);
}

static void *faulter(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;

	for (;;)
		for (size_t i = id; i < NPAGES; i += 4) {
			st_verify_page("thread at exit", buf + i * ST_PAGE, 1, i, 0);
			if (i % 64 == id)
				st_sleep_ms(1);
		}
	return NULL;
}

int main(int argc, char **argv)
{
	const char *mode = st_mode(argc, argv, "exit");
	pthread_t t;

	st_init(argv[0]);
	buf = st_map(LEN);
	st_fill(buf, NPAGES, 1, 0, 0);
	st_wait_out("before exit", buf, LEN);
	if (!strcmp(mode, "exit")) {
		ST_CHECK(atexit(at_exit_handler) == 0);
		st_note("exit(0) with compressed pages");
		exit(0);
	} else if (!strcmp(mode, "return")) {
		ST_CHECK(atexit(at_exit_handler) == 0);
		check_in_destructor = true;
		st_note("return from main with compressed pages");
		return 0;
	} else if (!strcmp(mode, "threads")) {
		for (unsigned i = 0; i < 4; i++)
			ST_CHECK(pthread_create(&t, NULL, faulter,
						(void *)(uintptr_t)i) == 0);
		st_sleep_ms(100);
		st_note("exit(0) with four threads faulting");
		exit(0);
	} else if (!strcmp(mode, "_exit")) {
		st_note("_exit(0) with compressed pages");
		_exit(0);
	}
	st_fail("unknown mode %s", mode);
}
