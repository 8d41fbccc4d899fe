/*
 * st_threads.c - eight writer threads, each owning a slice of one shared
 * 16 MiB mapping (and a malloc'd buffer of its own), repeatedly write a new
 * round, wait for the engine to take the slice out, and verify it; two reader
 * threads meanwhile read and verify a shared 4 MiB block nobody writes, and all
 * of them meet at a mutex and condition variable that live in a compressed
 * page (so futex calls land on missing pages too).
 */
#include "shimtest.h"

#include <pthread.h>

#define WRITERS 8
#define READERS 2
#define SLICE (2 * ST_MIB)
#define SLICE_PAGES (SLICE / ST_PAGE)
#define OWN_PAGES (ST_MIB / 2 / ST_PAGE)
#define SHARED (4 * ST_MIB)
#define ROUNDS 3

struct meet {                   /* in managed memory, on its own page */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned arrived, generation;
};

static char *slices, *shared;
static struct meet *meet;
static volatile int writers_done;

/* All writers wait here between rounds; the struct is likely compressed. */
static void barrier(void)
{
	unsigned gen;

	pthread_mutex_lock(&meet->lock);
	gen = meet->generation;
	if (++meet->arrived == WRITERS) {
		meet->arrived = 0;
		meet->generation++;
		pthread_cond_broadcast(&meet->cond);
	} else {
		while (gen == meet->generation)
			pthread_cond_wait(&meet->cond, &meet->lock);
	}
	pthread_mutex_unlock(&meet->lock);
}

static void *writer(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	char *mine = slices + (size_t)id * SLICE;
	char *own = aligned_alloc(ST_PAGE, OWN_PAGES * ST_PAGE);
	char what[32], what_own[32];

	snprintf(what, sizeof(what), "slice %u", id);
	snprintf(what_own, sizeof(what_own), "thread %u malloc", id);
	if (!own)
		st_fail("aligned_alloc: %s", strerror(errno));
	for (uint32_t r = 0; r < ROUNDS; r++) {
		/* Page numbers are global, so a page landing in another
		 * thread's slice is caught too. */
		st_fill(mine, SLICE_PAGES, 10, (uint64_t)id * SLICE_PAGES, r);
		st_fill(own, OWN_PAGES, 20 + id, 0, r);
		st_wait_out(what, mine, SLICE);
		st_verify(what, mine, SLICE_PAGES, 10, (uint64_t)id * SLICE_PAGES, r);
		st_verify(what_own, own, OWN_PAGES, 20 + id, 0, r);
		/* Rewrite a quarter, verify all at once, while others run. */
		for (size_t i = r % 4; i < SLICE_PAGES; i += 4)
			st_fill_page(mine + i * ST_PAGE, 10,
				     (uint64_t)id * SLICE_PAGES + i, r + 100);
		for (size_t i = 0; i < SLICE_PAGES; i++)
			st_verify_page(what, mine + i * ST_PAGE, 10,
				       (uint64_t)id * SLICE_PAGES + i,
				       i % 4 == r % 4 ? r + 100 : r);
		barrier();
	}
	free(own);
	return NULL;
}

static void *reader(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	size_t passes = 0;

	while (!writers_done || passes < 2) {
		/* Readers go in opposite directions over the same pages. */
		for (size_t k = 0; k < SHARED / ST_PAGE; k++) {
			size_t i = id ? SHARED / ST_PAGE - 1 - k : k;

			st_verify_page("shared block", shared + i * ST_PAGE,
				       30, i, 7);
		}
		passes++;
		st_sleep_ms(100);
	}
	return (void *)passes;
}

int main(int argc, char **argv)
{
	pthread_t w[WRITERS], rd[READERS];
	pthread_mutexattr_t ma;
	char *meet_page;
	void *passes;

	st_init(argv[0]);
	(void)argc;
	slices = st_map(WRITERS * SLICE);
	shared = st_map(SHARED);
	meet_page = st_map(64 * 1024);  /* just at UZSWAP_MIN_REGION */
	meet = (struct meet *)meet_page;
	pthread_mutexattr_init(&ma);
	pthread_mutex_init(&meet->lock, &ma);
	pthread_cond_init(&meet->cond, NULL);
	st_fill(shared, SHARED / ST_PAGE, 30, 0, 7);
	st_wait_out("shared block", shared, SHARED);
	st_wait_out("futex page", meet_page, 64 * 1024);

	for (unsigned i = 0; i < READERS; i++)
		ST_CHECK(pthread_create(&rd[i], NULL, reader, (void *)(uintptr_t)i) == 0);
	for (unsigned i = 0; i < WRITERS; i++)
		ST_CHECK(pthread_create(&w[i], NULL, writer, (void *)(uintptr_t)i) == 0);
	for (unsigned i = 0; i < WRITERS; i++)
		ST_CHECK(pthread_join(w[i], NULL) == 0);
	writers_done = 1;
	for (unsigned i = 0; i < READERS; i++) {
		ST_CHECK(pthread_join(rd[i], &passes) == 0);
		st_note("reader %u: %zu passes", i, (size_t)passes);
	}
	/* Everything once more from one thread, after it is compressed. */
	st_wait_out("slices", slices, WRITERS * SLICE);
	for (unsigned id = 0; id < WRITERS; id++)
		for (size_t i = 0; i < SLICE_PAGES; i++)
			st_verify_page("slices at the end",
				       slices + (size_t)id * SLICE + i * ST_PAGE, 10,
				       (uint64_t)id * SLICE_PAGES + i,
				       i % 4 == (ROUNDS - 1) % 4 ? ROUNDS - 1 + 100
								 : ROUNDS - 1);
	st_verify("shared block", shared, SHARED / ST_PAGE, 30, 0, 7);
	st_note("ok");
	return 0;
}
