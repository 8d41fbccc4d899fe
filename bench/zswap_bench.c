/*
 * zswap_bench.c - kernel swap-in latency from zswap (or zram), to be read
 * next to bench/fault's figures for uzswap.  This file owns the measurement;
 * bench/zswap.sh owns the machine set-up (swap file, zswap parameters,
 * page-cluster, cgroup) and its undoing.  Run it through bench/zswap.sh.
 *
 *   zswap_bench [--pages N] [--rounds R] [--expect zswap|swap]
 *
 * Each round, for each placement (same: reclaim and touch on one vCPU;
 * cross: reclaim on one vCPU, touch on the other):
 *
 *   1. fill N pages with bench/fault.c's heap_page() data (same seeds, so
 *      the same bytes uzswap compresses in fault_bench's "stored" phase);
 *   2. push them out with MADV_PAGEOUT (reclaim runs synchronously in this
 *      thread, so we know on which vCPU it ran);
 *   3. check they left memory (mincore: not resident, not in swap cache)
 *      and, from /proc/vmstat, went to zswap (zswpout += N) and not to the
 *      disk (pswpout unchanged); with --expect swap (zram) pswpout += N;
 *   4. touch each page once with a load, timed from the program's side
 *      exactly as fault.c does (clock_gettime around one load), then check
 *      every byte.
 *
 * Baselines in the same run, on the same vCPU: a native first-touch write
 * fault on fresh memory (fault.c's "native") and liblzo2's
 * lzo1x_decompress_safe alone on the same pages (the kernel's "lzo"
 * compressor is the same LZO1X-1 format and decompressor).
 *
 * Exit status: 0 measured; 1 the pages did not go where expected (or came
 * back wrong); 2 something needed is missing (one line says what).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <lzo/lzo1x.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"

#define MAX_ROUNDS 64

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21 /* Linux 5.4; older libc headers lack it */
#endif

struct dist {
	double p50, p99, max;
};

/* Same percentile convention as fault.c's summarize(). */
static struct dist summarize(double *lat, size_t n)
{
	struct dist d = { 0, 0, 0 };

	if (!n)
		return d;
	qsort(lat, n, sizeof(*lat), cmp_double);
	d.p50 = lat[n / 2];
	d.p99 = lat[(n * 99) / 100];
	d.max = lat[n - 1];
	return d;
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ------------------------------------------------------------ the system */

static bool vmstat(const char *key, unsigned long long *out)
{
	FILE *f = fopen("/proc/vmstat", "r");
	char name[64];
	unsigned long long v;
	bool found = false;

	if (!f)
		return false;
	while (fscanf(f, "%63s %llu", name, &v) == 2)
		if (!strcmp(name, key)) {
			*out = v;
			found = true;
			break;
		}
	fclose(f);
	return found;
}

static unsigned long long meminfo_kb(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	size_t kl = strlen(key);
	unsigned long long v = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			v = strtoull(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static void read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");

	snprintf(buf, len, "?");
	if (f) {
		if (fgets(buf, (int)len, f))
			buf[strcspn(buf, "\n")] = 0;
		fclose(f);
	}
}

static bool pin(int cpu)
{
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	return sched_setaffinity(0, sizeof(s), &s) == 0;
}

/* Pages of the region still in memory, counting the swap cache: mincore
 * reports a swapped-out anonymous page as resident while its folio is
 * still in the swap cache, which a fault would find without zswap. */
static size_t resident(unsigned char *r, size_t pages, unsigned char *vec)
{
	size_t n = 0;

	if (mincore(r, pages * PAGE, vec))
		return pages;
	for (size_t i = 0; i < pages; i++)
		n += vec[i] & 1;
	return n;
}

/* ------------------------------------------------------------ the phases */

struct opts {
	size_t pages;
	int rounds;
	bool expect_zswap;  /* false: plain swap device (zram) */
};

/* Native first touch: a write to fresh anonymous memory, as fault.c. */
static void native_touch(size_t pages, double *lat)
{
	unsigned char *m = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	/* No THP, or one fault would map 512 pages: fault.c's small regions
	 * never get THP either. */
	madvise(m, pages * PAGE, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < pages; i++) {
		double t0 = now_us();

		((volatile unsigned char *)m)[i * PAGE + 64] = 1;
		lat[i] = now_us() - t0;
	}
	munmap(m, pages * PAGE);
}

struct codec {
	unsigned char *comp;  /* pages * 2*PAGE: each page's LZO1X-1 output */
	lzo_uint *clen;
	double mean_clen;
};

static void codec_init(struct codec *c, size_t pages)
{
	static unsigned char work[LZO1X_1_MEM_COMPRESS];
	unsigned char page[PAGE];
	double sum = 0;

	c->comp = malloc(pages * 2 * PAGE);
	c->clen = calloc(pages, sizeof(*c->clen));
	if (!c->comp || !c->clen || lzo_init() != LZO_E_OK) {
		fprintf(stderr, "zswap_bench: codec set-up failed\n");
		exit(1);
	}
	for (size_t i = 0; i < pages; i++) {
		heap_page(page, i);
		lzo1x_1_compress(page, PAGE, c->comp + i * 2 * PAGE,
				 &c->clen[i], work);
		sum += (double)c->clen[i];
	}
	c->mean_clen = sum / (double)pages;
}

static void lzo_decompress_all(const struct codec *c, size_t pages, double *lat)
{
	static unsigned char out[PAGE] __attribute__((aligned(4096)));

	for (size_t i = 0; i < pages; i++) {
		lzo_uint len = PAGE;
		double t0 = now_us();

		lzo1x_decompress_safe(c->comp + i * 2 * PAGE, c->clen[i], out,
				      &len, NULL);
		lat[i] = now_us() - t0;
		if (len != PAGE) {
			fprintf(stderr, "zswap_bench: LZO round trip failed\n");
			exit(1);
		}
	}
}

/*
 * One swap-in measurement: fill, page out on reclaim_cpu, verify, touch on
 * touch_cpu.  Returns 0, or 1 when the pages did not go where expected.
 */
static int swapin_round(const struct opts *o, int reclaim_cpu, int touch_cpu,
			double *lat, unsigned char *vec, bool verbose)
{
	size_t pages = o->pages;
	unsigned long long zo0 = 0, zo1 = 0, po0 = 0, po1 = 0, zi0 = 0, zi1 = 0,
			   pi0 = 0, pi1 = 0, pool_kb, stored_kb;
	unsigned char *m, page[PAGE];
	size_t left = pages;
	int rc = 0;

	pin(reclaim_cpu);
	m = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	/* 4 KiB folios only: a THP would be split or swapped as a whole, and
	 * fault_bench's pages are single pages too. */
	madvise(m, pages * PAGE, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < pages; i++)
		heap_page(m + i * PAGE, i);

	vmstat("zswpout", &zo0);
	vmstat("pswpout", &po0);
	/* A folio still under writeback or in the swap cache can survive one
	 * pass; a few more passes catch it (it is then clean and unmapped). */
	for (int pass = 0; pass < 4 && left; pass++) {
		if (madvise(m, pages * PAGE, MADV_PAGEOUT)) {
			printf("MISSING: madvise(MADV_PAGEOUT) failed: %s "
			       "(needs Linux 5.4+)\n", strerror(errno));
			exit(2);
		}
		left = resident(m, pages, vec);
	}
	vmstat("zswpout", &zo1);
	vmstat("pswpout", &po1);
	pool_kb = meminfo_kb("Zswap");
	stored_kb = meminfo_kb("Zswapped");

	if (left) {
		printf("FAIL: %zu of %zu pages still in memory after MADV_PAGEOUT\n",
		       left, pages);
		rc = 1;
	}
	if (o->expect_zswap) {
		if (zo1 - zo0 < pages - left) {
			printf("FAIL: zswpout rose by %llu, expected %zu: pages "
			       "did not go to zswap\n", zo1 - zo0, pages - left);
			rc = 1;
		}
		if (po1 != po0) {
			printf("FAIL: pswpout rose by %llu: pages were written to "
			       "the swap device, not kept in zswap\n", po1 - po0);
			rc = 1;
		}
	} else if (po1 - po0 < pages - left) {
		printf("FAIL: pswpout rose by %llu, expected %zu\n", po1 - po0,
		       pages - left);
		rc = 1;
	}
	if (verbose)
		printf("  pushed out %zu pages: zswpout +%llu, pswpout +%llu; "
		       "zswap pool %llu kB holding %llu kB\n", pages - left,
		       zo1 - zo0, po1 - po0, pool_kb, stored_kb);

	pin(touch_cpu);
	usleep(1000); /* let the migration settle before the first sample */
	vmstat("zswpin", &zi0);
	vmstat("pswpin", &pi0);
	for (size_t i = 0; i < pages; i++) {
		double t0 = now_us();

		(void)((volatile unsigned char *)m)[i * PAGE + 64];
		lat[i] = now_us() - t0;
	}
	vmstat("zswpin", &zi1);
	vmstat("pswpin", &pi1);
	if (verbose)
		printf("  touched %zu pages: zswpin +%llu, pswpin +%llu\n", pages,
		       zi1 - zi0, pi1 - pi0);

	for (size_t i = 0; i < pages; i++) {
		heap_page(page, i);
		if (memcmp(page, m + i * PAGE, PAGE)) {
			printf("FAIL: page %zu came back different\n", i);
			rc = 1;
			break;
		}
	}
	munmap(m, pages * PAGE);
	return rc;
}

/* ------------------------------------------------------------------ main */

enum { R_NATIVE, R_LZO, R_SAME, R_CROSS, R_KINDS };
static const char *const kind_name[R_KINDS] = {
	"native", "lzo", "swapin", "swapin-x",
};
static const char *const kind_what[R_KINDS] = {
	"first-touch write fault on fresh memory (fault_bench's native)",
	"liblzo2 lzo1x_decompress_safe alone, same pages",
	"read fault, reclaimed and touched on the same vCPU",
	"read fault, touched on the other vCPU from the one that reclaimed",
};

static void usage(void)
{
	fprintf(stderr, "usage: zswap_bench [--pages N] [--rounds R] "
		"[--expect zswap|swap]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct opts o = { 8192, 5, true };
	struct dist d[R_KINDS][MAX_ROUNDS];
	bool ran[R_KINDS] = { false };
	char comp[64], enabled[16], cluster[16];
	struct codec codec;
	cpu_set_t allowed;
	int cpus[2], ncpu = 0, rc = 0;
	double *lat;
	unsigned char *vec;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--pages") && i + 1 < argc)
			o.pages = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			o.rounds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--expect") && i + 1 < argc)
			o.expect_zswap = !strcmp(argv[++i], "zswap");
		else
			usage();
	}
	if (!o.pages || o.rounds < 1 || o.rounds > MAX_ROUNDS)
		usage();
	setvbuf(stdout, NULL, _IONBF, 0);

	/* The two vCPUs we may run on: the first two of our affinity mask. */
	if (sched_getaffinity(0, sizeof(allowed), &allowed)) {
		perror("sched_getaffinity");
		return 2;
	}
	for (int c = 0; c < CPU_SETSIZE && ncpu < 2; c++)
		if (CPU_ISSET(c, &allowed))
			cpus[ncpu++] = c;
	if (ncpu < 2)
		printf("note: one CPU allowed: no cross-vCPU measurement\n");

	read_line("/sys/module/zswap/parameters/enabled", enabled, sizeof(enabled));
	read_line("/sys/module/zswap/parameters/compressor", comp, sizeof(comp));
	read_line("/proc/sys/vm/page-cluster", cluster, sizeof(cluster));
	printf("zswap enabled=%s compressor=%s; vm.page-cluster=%s; %zu pages x "
	       "%d rounds; vCPUs %d,%d\n", enabled, comp, cluster, o.pages,
	       o.rounds, cpus[0], ncpu > 1 ? cpus[1] : cpus[0]);

	lat = calloc(o.pages, sizeof(*lat));
	vec = malloc(o.pages);
	if (!lat || !vec)
		return 1;
	codec_init(&codec, o.pages);
	printf("LZO1X-1 (liblzo2) size of these pages: mean %.0f bytes (%.2fx)\n",
	       codec.mean_clen, PAGE / codec.mean_clen);

	for (int r = 0; r < o.rounds; r++) {
		bool v = r == 0;

		/* Alternate the order of placements between rounds, so neither
		 * always runs on a machine warmed by the other. */
		int first = r % 2 ? R_CROSS : R_SAME;

		pin(cpus[0]);
		native_touch(o.pages, lat);
		d[R_NATIVE][r] = summarize(lat, o.pages);
		ran[R_NATIVE] = true;
		lzo_decompress_all(&codec, o.pages, lat);
		d[R_LZO][r] = summarize(lat, o.pages);
		ran[R_LZO] = true;
		for (int k = 0; k < 2; k++) {
			int kind = k == 0 ? first : (first == R_SAME ? R_CROSS : R_SAME);
			int touch = kind == R_SAME ? cpus[0] : cpus[ncpu - 1];

			if (kind == R_CROSS && ncpu < 2)
				continue;
			if (v)
				printf("round 1, %s (reclaim on cpu %d, touch on "
				       "cpu %d):\n", kind_name[kind], cpus[0], touch);
			rc |= swapin_round(&o, cpus[0], touch, lat, vec, v);
			d[kind][r] = summarize(lat, o.pages);
			ran[kind] = true;
		}
		printf("round %d:", r + 1);
		for (int k = 0; k < R_KINDS; k++)
			if (ran[k])
				printf("  %s %.1f/%.1f", kind_name[k], d[k][r].p50,
				       d[k][r].p99);
		printf("  (p50/p99 us)\n");
	}

	printf("\nmedians over %d rounds of %zu pages (us):\n", o.rounds, o.pages);
	for (int k = 0; k < R_KINDS; k++) {
		double p50[MAX_ROUNDS], p99[MAX_ROUNDS], mx[MAX_ROUNDS];

		if (!ran[k])
			continue;
		for (int r = 0; r < o.rounds; r++)
			p50[r] = d[k][r].p50, p99[r] = d[k][r].p99,
			mx[r] = d[k][r].max;
		printf("%-9s p50 %6.1f  p99 %6.1f  max %8.1f   %s\n", kind_name[k],
		       median(p50, (size_t)o.rounds), median(p99, (size_t)o.rounds),
		       median(mx, (size_t)o.rounds), kind_what[k]);
	}
	if (rc)
		printf("\nFAIL: some pages did not go where expected (see above)\n");
	return rc;
}
