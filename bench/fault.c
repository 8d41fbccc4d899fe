/*
 * fault.c - fault service latency under uzswap, against its floor, in one run.
 *
 * Run by hand (not part of make check), as root or with userfaultfd access:
 *
 *   UZSWAP_SCAN_INTERVAL=20ms UZSWAP_COLD_AGE=20ms UZSWAP_MIN_REGION=1M \
 *   LD_PRELOAD=build/preload/.libs/libuzswap_preload.so build/bench/fault_bench
 *
 * Each access is timed from the application's side (clock_gettime around
 * one load), which is what a program feels.  Phases:
 *
 *   floor     the best placement for one LZO page resolved through
 *             userfaultfd that this benchmark can build by hand: its own
 *             uffd, one handler thread left to the scheduler (measured the
 *             fastest placement on a 2-vCPU VM), which decompresses the same
 *             real-looking page and resolves with UFFDIO_COPY.  The region is
 *             registered before the shim can adopt it, so the shim leaves it
 *             alone (a range belongs to one userfaultfd).
 *   native    first touch of fresh memory, no userfaultfd (a region smaller
 *             than UZSWAP_MIN_REGION, so the shim ignores it).
 *   first     first touch of fresh memory the shim manages.
 *   stored    pages the shim compressed, touched once each, in a shuffled
 *             order: each access is a fault (the shim's read-ahead serves
 *             a reader in order before it faults, see the next phase).
 *   in-order  the same, touched in address order: most accesses find the
 *             page read ahead; the mean is the cost per page a sequential
 *             reader pays.
 *   zero      zero pages the shim took out, touched once each, shuffled.
 *
 * Without the shim preloaded, only floor and native run.  Ratios are printed
 * against floor (for stored, zero) and native (for first).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <lzo/lzo1x.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"

struct result {
	const char *name;
	double p50, p99, max;
	size_t n;
};

static struct result summarize(const char *name, double *lat, size_t n)
{
	struct result r = { name, 0, 0, 0, n };

	if (!n)
		return r;
	qsort(lat, n, sizeof(*lat), cmp_double);
	r.p50 = lat[n / 2];
	r.p99 = lat[(n * 99) / 100];
	r.max = lat[n - 1];
	return r;
}

/* Touch each page once (a load) in the order given (NULL: address
 * order), timing each access. */
static void touch_pages(volatile unsigned char *base, size_t pages,
			const size_t *order, double *lat)
{
	for (size_t i = 0; i < pages; i++) {
		size_t p = order ? order[i] : i;
		double t0 = now_us();

		(void)base[p * PAGE + 64];
		lat[i] = now_us() - t0;
	}
}

/* A fixed shuffle of 0..n-1 (the same in every run). */
static size_t *shuffled(size_t n)
{
	size_t *o = calloc(n ? n : 1, sizeof(*o));
	uint64_t x = 0x9e3779b97f4a7c15ull;

	if (!o) {
		perror("calloc");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		o[i] = i;
	for (size_t i = n; i > 1; i--) {
		size_t j, t;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		j = (size_t)(x % i);
		t = o[i - 1];
		o[i - 1] = o[j];
		o[j] = t;
	}
	return o;
}

static double mean(const double *v, size_t n)
{
	double s = 0;

	for (size_t i = 0; i < n; i++)
		s += v[i];
	return n ? s / (double)n : 0;
}

static void write_pages(unsigned char *base, size_t pages, double *lat)
{
	for (size_t i = 0; i < pages; i++) {
		double t0 = now_us();

		base[i * PAGE + 64] = 1;
		lat[i] = now_us() - t0;
	}
}

/* ---------------------------------------------------------- the floor */

static struct {
	int uffd;
	unsigned char comp[PAGE * 2];
	lzo_uint clen;
	volatile bool stop;
} floor_ctx;

static void *floor_handler(void *arg)
{
	unsigned char *buf = aligned_alloc(PAGE, PAGE);

	(void)arg;
	while (!floor_ctx.stop) {
		struct pollfd p = { floor_ctx.uffd, POLLIN, 0 };
		struct uffd_msg m;
		lzo_uint len = PAGE;

		if (poll(&p, 1, 100) <= 0)
			continue;
		if (read(floor_ctx.uffd, &m, sizeof(m)) != sizeof(m) ||
		    m.event != UFFD_EVENT_PAGEFAULT)
			continue;
		lzo1x_decompress_safe(floor_ctx.comp, floor_ctx.clen, buf, &len, NULL);
		struct uffdio_copy c = {
			.dst = m.arg.pagefault.address & ~(uint64_t)(PAGE - 1),
			.src = (uintptr_t)buf, .len = PAGE,
		};
		ioctl(floor_ctx.uffd, UFFDIO_COPY, &c);
	}
	free(buf);
	return NULL;
}

static bool measure_floor(size_t pages, double *lat)
{
	static unsigned char work[LZO1X_1_MEM_COMPRESS];
	unsigned char page[PAGE];
	struct uffdio_api api = { .api = UFFD_API };
	unsigned char *r;
	pthread_t t;

	lzo_init();
	heap_page(page, 1);
	lzo1x_1_compress(page, PAGE, floor_ctx.comp, &floor_ctx.clen, work);
	floor_ctx.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (floor_ctx.uffd < 0 || ioctl(floor_ctx.uffd, UFFDIO_API, &api)) {
		perror("floor: userfaultfd");
		return false;
	}
	r = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffdio_register reg = {
		.range = { (uintptr_t)r, pages * PAGE },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (ioctl(floor_ctx.uffd, UFFDIO_REGISTER, &reg)) {
		perror("floor: register");
		return false;
	}
	pthread_create(&t, NULL, floor_handler, NULL);
	usleep(10000);
	touch_pages(r, pages, NULL, lat);
	floor_ctx.stop = true;
	pthread_join(t, NULL);
	munmap(r, pages * PAGE);
	close(floor_ctx.uffd);
	printf("floor page: LZO1X-1 %lu bytes\n", (unsigned long)floor_ctx.clen);
	return true;
}

/* ------------------------------------------------------------- main */

/* Wait until at most a fifth of the region is resident (mincore). */
static bool wait_taken_out(unsigned char *region, size_t pages, double timeout_s)
{
	static unsigned char vec[1 << 20];
	double t0 = now_us();

	while (pages <= sizeof(vec) && now_us() - t0 < timeout_s * 1e6) {
		size_t resident = 0;

		if (mincore(region, pages * PAGE, vec) == 0) {
			for (size_t i = 0; i < pages; i++)
				resident += vec[i] & 1;
			if (resident <= pages / 5)
				return true;
		}
		usleep(20000);
	}
	return false;
}

static void print(struct result r, const struct result *base)
{
	printf("%-8s %7zu  p50 %7.1f us  p99 %7.1f us  max %8.1f us", r.name, r.n,
	       r.p50, r.p99, r.max);
	if (base && base->p50 > 0)
		printf("   p50 %.2fx  p99 %.2fx %s", r.p50 / base->p50,
		       r.p99 / base->p50, base->name);
	printf("\n");
}

int main(int argc, char **argv)
{
	size_t pages = argc > 1 ? strtoul(argv[1], NULL, 0) : 8192;
	bool shim = getenv("LD_PRELOAD") && strstr(getenv("LD_PRELOAD"), "uzswap");
	double *lat = calloc(pages, sizeof(double));
	struct result floor_r, native_r, first_r, stored_r, seq_r, zero_r;
	size_t *order = shuffled(pages);
	double seq_mean;
	size_t small = 64;  /* < UZSWAP_MIN_REGION: the shim leaves it */
	unsigned char *m;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (!measure_floor(pages, lat))
		return 1;
	floor_r = summarize("floor", lat, pages);

	/* native: many small regions, each below UZSWAP_MIN_REGION */
	size_t done = 0;
	while (done < pages) {
		size_t n = pages - done < small ? pages - done : small;

		m = mmap(NULL, small * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		write_pages(m, n, lat + done);
		done += n;
	}
	native_r = summarize("native", lat, pages);
	print(floor_r, NULL);
	print(native_r, NULL);
	if (!shim) {
		printf("(no uzswap shim preloaded: only floor and native)\n");
		return 0;
	}

	/* first touch of managed memory: map, let the shim adopt it */
	m = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	usleep(500000);     /* a few refresh intervals at 20ms scans */
	write_pages(m, pages, lat);
	first_r = summarize("first", lat, pages);

	/* stored: fill with heap-like pages, wait until taken out, touch */
	for (size_t i = 0; i < pages; i++)
		heap_page(m + i * PAGE, i);
	if (!wait_taken_out(m, pages, 20))
		printf("warning: RSS did not fall: is the shim compressing?\n");
	touch_pages(m, pages, order, lat);
	stored_r = summarize("stored", lat, pages);

	/* in-order: the same again, read in address order */
	for (size_t i = 0; i < pages; i++)
		heap_page(m + i * PAGE, i + 1);
	if (!wait_taken_out(m, pages, 20))
		printf("warning: RSS did not fall: is the shim compressing?\n");
	touch_pages(m, pages, NULL, lat);
	seq_mean = mean(lat, pages);
	seq_r = summarize("in-order", lat, pages);

	/* zero: zero the pages (resident, written), wait, touch */
	memset(m, 0, pages * PAGE);
	if (!wait_taken_out(m, pages, 20))
		printf("warning: RSS did not fall for zero pages\n");
	touch_pages(m, pages, order, lat);
	zero_r = summarize("zero", lat, pages);

	print(first_r, &native_r);
	print(stored_r, &floor_r);
	print(seq_r, &floor_r);
	printf("%-8s mean %.1f us per page (%.2fx floor p50)\n", "in-order",
	       seq_mean, seq_mean / floor_r.p50);
	print(zero_r, &floor_r);
	return 0;
}
