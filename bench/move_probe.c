/*
 * move_probe.c - does this kernel's UFFDIO_MOVE report every page it moves?
 *
 * Run by hand, as root or with userfaultfd access:
 *
 *   build/bench/move_probe [ITERATIONS]
 *
 * Linux 6.18's UFFDIO_MOVE moves runs of pages in batches.  When one step
 * of the walk fails with EAGAIN (the source page-table entry changed under
 * it, e.g. a write-protected page being written) the walk retries, and a
 * retry that then moves a batch leaves the EAGAIN in place: the walk loops
 * without counting the batch, finds its own pages at the destination, and
 * fails with EEXIST.  The ioctl then says fewer pages moved than did.  A
 * caller that trusts the count loses track of those pages: uzswap counts
 * from /proc/self/pagemap after any short move instead (lib/reclaim.c).
 *
 * This probe builds that race on purpose: a thread writes into a run of
 * write-protected pages while the main thread moves the run away, then
 * compares the count the ioctl returned with the pages the destination
 * holds.  It prints how many moves were short and how many under-reported.
 * Typically a few in 20000 under-report on an affected kernel; none on one
 * that is not.  Exit status: 0 none seen, 1 seen, 2 could not run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Debian 12's headers predate these (Linux 6.7/6.8). */
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 10)
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
struct uffdio_move {
	__u64 dst, src, len, mode;
	__s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, 0x05, struct uffdio_move)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#define PAGE 4096ul
#define RUN 64ul                /* pages per move, as uzswap's batches */
#define RUNS 64ul               /* runs in the source area */

static int uffd, pagemap;
static unsigned char *src;
static volatile size_t hot_run;
static volatile int stop;

static void die(const char *what)
{
	fprintf(stderr, "move_probe: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* Writes into the run being moved: each write to a write-protected page
 * changes its page-table entry (WP_ASYNC), which is what fails a step of
 * the move with EAGAIN. */
static void *writer(void *arg)
{
	unsigned seed = 1;

	(void)arg;
	while (!stop) {
		size_t page = hot_run * RUN + (size_t)rand_r(&seed) % RUN;

		src[page * PAGE + (size_t)rand_r(&seed) % PAGE]++;
	}
	return NULL;
}

/* A page the writer touches after it moved away is missing: fill it. */
static void *fault_handler(void *arg)
{
	struct pollfd p = { .fd = uffd, .events = POLLIN };
	struct uffd_msg m;

	(void)arg;
	while (!stop) {
		if (poll(&p, 1, 100) <= 0 || read(uffd, &m, sizeof(m)) != sizeof(m))
			continue;
		if (m.event != UFFD_EVENT_PAGEFAULT)
			continue;
		struct uffdio_zeropage z = {
			.range = { m.arg.pagefault.address & ~(PAGE - 1), PAGE },
		};
		if (ioctl(uffd, UFFDIO_ZEROPAGE, &z) && errno != EEXIST) {
			struct uffdio_range r = z.range;

			ioctl(uffd, UFFDIO_WAKE, &r);
		}
	}
	return NULL;
}

static size_t pages_held(const unsigned char *p, size_t n)
{
	uint64_t pm[RUN];
	size_t held = 0;

	if (pread(pagemap, pm, n * 8, (off_t)((uintptr_t)p / PAGE) * 8) != (ssize_t)(n * 8))
		die("reading /proc/self/pagemap");
	for (size_t i = 0; i < n; i++)
		held += (pm[i] >> 62) != 0;     /* present or swapped */
	return held;
}

static void *map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

static void register_range(void *p, size_t len, __u64 mode)
{
	struct uffdio_register r = {
		.range = { (uintptr_t)p, len }, .mode = mode,
	};

	if (ioctl(uffd, UFFDIO_REGISTER, &r))
		die("UFFDIO_REGISTER");
}

int main(int argc, char **argv)
{
	long iterations = argc > 1 ? atol(argv[1]) : 20000;
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_MOVE | UFFD_FEATURE_WP_ASYNC,
	};
	long short_moves = 0, under = 0;
	unsigned char *dst;
	pthread_t w, h;

	if (iterations <= 0) {
		fprintf(stderr, "usage: move_probe [ITERATIONS > 0]\n");
		return 2;
	}
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		die("userfaultfd");
	if (ioctl(uffd, UFFDIO_API, &api))
		die("UFFDIO_API (MOVE and WP_ASYNC need Linux 6.8)");
	pagemap = open("/proc/self/pagemap", O_RDONLY);
	if (pagemap < 0)
		die("open /proc/self/pagemap");
	src = map(RUNS * RUN * PAGE);
	dst = map(RUN * PAGE);
	/* Small folios only: a large one takes another path of the move. */
	madvise(src, RUNS * RUN * PAGE, MADV_NOHUGEPAGE);
	memset(src, 1, RUNS * RUN * PAGE);
	register_range(src, RUNS * RUN * PAGE,
		       UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
	register_range(dst, RUN * PAGE, UFFDIO_REGISTER_MODE_WP);
	pthread_create(&h, NULL, fault_handler, NULL);
	pthread_create(&w, NULL, writer, NULL);

	for (long it = 0; it < iterations; it++) {
		size_t run = (size_t)it % RUNS;
		unsigned char *from = src + run * RUN * PAGE;
		struct uffdio_writeprotect wp = {
			.range = { (uintptr_t)from, RUN * PAGE },
			.mode = UFFDIO_WRITEPROTECT_MODE_WP,
		};
		struct uffdio_move m = {
			.dst = (uintptr_t)dst, .src = (uintptr_t)from,
			.len = RUN * PAGE, .mode = UFFDIO_MOVE_MODE_DONTWAKE,
		};
		size_t reported, held;

		hot_run = run;
		for (size_t i = 0; i < RUN; i++)
			from[i * PAGE] = 2;     /* every page present */
		ioctl(uffd, UFFDIO_WRITEPROTECT, &wp);
		if (ioctl(uffd, UFFDIO_MOVE, &m) == 0) {
			reported = RUN;
		} else {
			short_moves++;
			reported = m.move > 0 ? (size_t)m.move / PAGE : 0;
		}
		held = pages_held(dst, RUN);
		if (held != reported && under++ < 5)
			printf("move %ld: reported %zu pages moved (%s), the "
			       "destination holds %zu\n", it, reported,
			       reported == RUN ? "no error" : strerror(errno), held);
		madvise(dst, RUN * PAGE, MADV_DONTNEED);
	}
	stop = 1;
	pthread_join(w, NULL);
	pthread_join(h, NULL);
	printf("%ld moves of %lu pages: %ld short, %ld under-reported\n",
	       iterations, RUN, short_moves, under);
	return under ? 1 : 0;
}
