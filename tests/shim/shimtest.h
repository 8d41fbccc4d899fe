/*
 * shimtest.h - helpers for the programs in tests/shim, which run under the
 * preload shim (tests/test_shim.c starts them) and check every byte.
 *
 * Data pattern
 * ------------
 * Every 256-byte line of a page says whose it is - (tag, page number, round,
 * line) - with a magic number and a 16-bit check of those, then 240 zeros:
 *
 *   [0, 4)  magic "UZST"   [8, 10)   tag      [12, 14)  line    [16, 256) 0
 *   [4, 8)  page number    [10, 12)  round    [14, 16)  check
 *
 * so it compresses well (about 15x, so the RSS visibly falls) yet no two
 * pages, rounds or tags have
 * the same contents: a page restored to the wrong address, from a stale
 * round, or from another process's data is caught, and the diagnosis says
 * whose data was found instead (st_describe_page).
 *
 * Waiting for compression
 * -----------------------
 * The shim exports nothing, so the programs cannot ask the engine.  They
 * watch the kernel instead: a page the engine took out (UFFDIO_MOVE) has no
 * page-table entry, which mincore(2) reports as not resident.  Waiting until
 * mincore shows most of a buffer gone proves the engine compressed it (and
 * st_assert_rss_below double-checks with the process RSS); a test that never
 * saw its pages go would prove nothing, so that is a failure, not a pass.
 *
 * Failure is one line on stderr, "PROG: FAIL: ...", then exit status 1.
 */
#ifndef UZS_SHIMTEST_H
#define UZS_SHIMTEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define ST_PAGE 4096u
#define ST_LINE 256u
#define ST_LINES (ST_PAGE / ST_LINE)
#define ST_MIB ((size_t)1 << 20)

/* How long to wait for the engine to take pages out before failing. */
#define ST_WAIT_TIMEOUT_S 20.0
/* "Compressed" means at most this fraction of the buffer still resident. */
#define ST_MAX_RESIDENT 0.25

static const char *st_prog = "shimtest";

static inline void st_init(const char *argv0)
{
	const char *s = strrchr(argv0, '/');

	st_prog = s ? s + 1 : argv0;
	/* Output goes to pipes: make sure nothing is lost or reordered. */
	setvbuf(stdout, NULL, _IOLBF, 0);
}

__attribute__((format(printf, 1, 2), noreturn))
static inline void st_fail(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	n = snprintf(buf, sizeof(buf), "%s[%d]: FAIL: ", st_prog, (int)getpid());
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, (size_t)n) < 0)
		(void)0;
	_exit(1);
}

/* A one-line progress note on stdout (the runner shows it on failure). */
__attribute__((format(printf, 1, 2)))
static inline void st_note(const char *fmt, ...)
{
	va_list ap;

	printf("%s[%d]: ", st_prog, (int)getpid());
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

#define ST_CHECK(cond) do { \
	if (!(cond)) \
		st_fail("%s:%d: %s (errno %d: %s)", __FILE__, __LINE__, #cond, \
			errno, strerror(errno)); \
} while (0)

static inline double st_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void st_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static inline void *st_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		st_fail("mmap %zu bytes: %s", len, strerror(errno));
	return p;
}

/* ------------------------------------------------------------ pattern */

static inline uint64_t st_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

#define ST_MAGIC 0x54535a55u    /* "UZST" */

struct st_line {
	uint32_t magic;
	uint32_t page;
	uint16_t tag;
	uint16_t round;
	uint16_t line;
	uint16_t check;         /* hash of the four above */
	uint8_t zero[ST_LINE - 16];
};

static inline uint16_t st_check16(uint32_t page, uint16_t tag, uint16_t round,
				  uint16_t line)
{
	return (uint16_t)st_mix(((uint64_t)page << 32) ^ ((uint64_t)tag << 16) ^
				((uint64_t)round << 40) ^ line ^ ST_MAGIC);
}

static inline void st_make_line(struct st_line *l, uint64_t tag, uint64_t page,
				uint32_t round, uint32_t line)
{
	memset(l, 0, sizeof(*l));
	l->magic = ST_MAGIC;
	l->page = (uint32_t)page;
	l->tag = (uint16_t)tag;
	l->round = (uint16_t)round;
	l->line = (uint16_t)line;
	l->check = st_check16(l->page, l->tag, l->round, l->line);
}

/* Write the pattern of (tag, page, round) into one page. */
static inline void st_fill_page(void *pg, uint64_t tag, uint64_t page,
				uint32_t round)
{
	struct st_line *l = pg;

	for (uint32_t i = 0; i < ST_LINES; i++)
		st_make_line(&l[i], tag, page, round, i);
}

/* Pages [0, npages) of base get page numbers first, first+1, ... */
static inline void st_fill(void *base, size_t npages, uint64_t tag,
			   uint64_t first, uint32_t round)
{
	for (size_t i = 0; i < npages; i++)
		st_fill_page((char *)base + i * ST_PAGE, tag, first + i, round);
}

/* Whose data a page holds, in words, for a diagnosis. */
static inline void st_describe_page(const void *pg, char *out, size_t len)
{
	const unsigned char *b = pg;
	const struct st_line *l = pg;
	size_t nz = 0;

	for (size_t i = 0; i < ST_PAGE; i++)
		nz += b[i] != 0;
	if (nz == 0) {
		snprintf(out, len, "the whole page is zeros");
		return;
	}
	for (uint32_t i = 0; i < ST_LINES; i++) {
		if (l[i].magic == ST_MAGIC &&
		    l[i].check == st_check16(l[i].page, l[i].tag, l[i].round,
					     l[i].line)) {
			snprintf(out, len, "line %u holds the data of tag %llu "
				 "page %llu round %u line %u; %zu nonzero bytes",
				 i, (unsigned long long)l[i].tag,
				 (unsigned long long)l[i].page, (unsigned)l[i].round,
				 (unsigned)l[i].line, nz);
			return;
		}
	}
	snprintf(out, len, "no line of it is a valid pattern line; %zu nonzero "
		 "bytes", nz);
}

/* Offset of the first byte of pg that differs from (tag, page, round), or
 * -1 when the page is right. */
static inline long st_check_page(const void *pg, uint64_t tag, uint64_t page,
				 uint32_t round)
{
	const unsigned char *b = pg;

	for (uint32_t i = 0; i < ST_LINES; i++) {
		struct st_line want;

		st_make_line(&want, tag, page, round, i);
		if (memcmp(b + i * ST_LINE, &want, ST_LINE) != 0) {
			const unsigned char *w = (const unsigned char *)&want;

			for (uint32_t k = 0; k < ST_LINE; k++)
				if (b[i * ST_LINE + k] != w[k])
					return (long)(i * ST_LINE + k);
		}
	}
	return -1;
}

/* Expected byte at offset off of (tag, page, round). */
static inline unsigned char st_expected_byte(uint64_t tag, uint64_t page,
					     uint32_t round, long off)
{
	struct st_line want;

	st_make_line(&want, tag, page, round, (uint32_t)(off / ST_LINE));
	return ((const unsigned char *)&want)[off % ST_LINE];
}

__attribute__((noreturn))
static inline void st_fail_byte(const char *what, const void *pg, long off,
				unsigned expected, const char *want_desc)
{
	const unsigned char *b = pg;
	char desc[200];

	st_describe_page(pg, desc, sizeof(desc));
	st_fail("%s: wrong byte at %p (page %p + %#lx): expected %#04x, got %#04x; "
		"expected %s; %s", what, (const void *)(b + off), pg,
		(unsigned long)off, expected, b[off], want_desc, desc);
}

/* Verify one page; fail with a diagnosis on the first wrong byte. */
static inline void st_verify_page(const char *what, const void *pg,
				  uint64_t tag, uint64_t page, uint32_t round)
{
	long off = st_check_page(pg, tag, page, round);
	char want[100];

	if (off < 0)
		return;
	snprintf(want, sizeof(want), "tag %llu page %llu round %u",
		 (unsigned long long)tag, (unsigned long long)page, round);
	st_fail_byte(what, pg, off, st_expected_byte(tag, page, round, off), want);
}

static inline void st_verify(const char *what, const void *base, size_t npages,
			     uint64_t tag, uint64_t first, uint32_t round)
{
	for (size_t i = 0; i < npages; i++)
		st_verify_page(what, (const char *)base + i * ST_PAGE, tag,
			       first + i, round);
}

/* Every byte of [base, base+len) must be zero. */
static inline void st_verify_zero(const char *what, const void *base, size_t len)
{
	const unsigned char *b = base;
	static const unsigned char zero[ST_LINE];

	for (size_t i = 0; i < len; i += ST_LINE) {
		size_t n = len - i < ST_LINE ? len - i : ST_LINE;

		if (memcmp(b + i, zero, n) == 0)
			continue;
		for (size_t k = 0; k < n; k++)
			if (b[i + k]) {
				const void *pg = b + ((i + k) & ~(size_t)(ST_PAGE - 1));

				if (((uintptr_t)base & (ST_PAGE - 1)) == 0)
					st_fail_byte(what, pg, (long)((i + k) & (ST_PAGE - 1)),
						     0, "zeros");
				st_fail("%s: wrong byte at %p: expected 0, got %#04x",
					what, (const void *)(b + i + k), b[i + k]);
			}
	}
}

/* A simple checksum, for code (signal handlers) that cannot fail loudly. */
static inline uint64_t st_sum(const void *p, size_t len)
{
	const uint64_t *w = p;
	uint64_t s = 0;

	for (size_t i = 0; i < len / 8; i++)
		s = st_mix(s + w[i]);
	return s;
}

/* ------------------------------------------------------ compression */

/* Pages of [base, base+len) that have a page-table entry (mincore). */
static inline size_t st_resident(const void *base, size_t len)
{
	size_t n = (len + ST_PAGE - 1) / ST_PAGE, res = 0;
	unsigned char vec[4096];

	for (size_t i = 0; i < n; i += sizeof(vec)) {
		size_t k = n - i < sizeof(vec) ? n - i : sizeof(vec);

		if (mincore((char *)base + i * ST_PAGE, k * ST_PAGE, vec) != 0)
			st_fail("mincore %p: %s", (const void *)((const char *)base +
				i * ST_PAGE), strerror(errno));
		for (size_t j = 0; j < k; j++)
			res += vec[j] & 1;
	}
	return res;
}

/*
 * Wait until at most max_resident (st_wait_out: ST_MAX_RESIDENT) of
 * [base, base+len) is resident: the engine has taken the rest out.  Returns the seconds it took; fails after
 * ST_WAIT_TIMEOUT_S.  Nothing in the buffer may be touched meanwhile.
 */
static inline double st_wait_out_to(const char *what, const void *base,
				    size_t len, double max_resident)
{
	size_t total = len / ST_PAGE, res = total;
	double t0 = st_now(), t;

	while ((t = st_now() - t0) < ST_WAIT_TIMEOUT_S) {
		res = st_resident(base, len);
		if ((double)res <= max_resident * (double)total) {
			if (t > 2.0)
				st_note("%s: slow: compression took %.1f s", what, t);
			return t;
		}
		st_sleep_ms(5);
	}
	st_fail("%s: pages never compressed: %zu of %zu pages still resident "
		"after %.0f s (is the shim preloaded, with UZSWAP_SCAN_INTERVAL, "
		"UZSWAP_COLD_AGE or UZSWAP_LIMIT set?)", what, res, total,
		ST_WAIT_TIMEOUT_S);
}

static inline double st_wait_out(const char *what, const void *base, size_t len)
{
	return st_wait_out_to(what, base, len, ST_MAX_RESIDENT);
}

/*
 * Wait until the engine has done what it can with [base, base+len): some
 * of it taken out, then nothing more for 300 ms (or ST_WAIT_TIMEOUT_S in
 * all).  For runs where it may not take everything out (a full disk), where
 * a fixed sleep would be too short on a loaded machine.
 */
static inline void st_settle(const void *base, size_t len)
{
	size_t total = len / ST_PAGE, last = total, res;
	double t0 = st_now(), quiet_since = t0, now;

	while ((now = st_now()) - t0 < ST_WAIT_TIMEOUT_S) {
		res = st_resident(base, len);
		if (res != last) {
			last = res;
			quiet_since = now;
		} else if (res < total && now - quiet_since > 0.3) {
			return;
		}
		st_sleep_ms(5);
	}
}

/*
 * The opposite, for runs where the shim must leave the program alone: after
 * ms milliseconds (many scan intervals) every page is still resident.
 */
static inline void st_expect_untouched(const char *what, const void *base,
				       size_t len, unsigned ms)
{
	size_t total = len / ST_PAGE, res;

	st_sleep_ms(ms);
	res = st_resident(base, len);
	if (res != total)
		st_fail("%s: expected the program to run untouched, but %zu of "
			"%zu pages were taken out", what, total - res, total);
}

/* Resident set size of this process in bytes (/proc/self/statm). */
static inline size_t st_rss(void)
{
	char buf[128];
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, res = 0;

	if (!f)
		st_fail("open /proc/self/statm: %s", strerror(errno));
	if (!fgets(buf, sizeof(buf), f) || sscanf(buf, "%lu %lu", &size, &res) != 2)
		st_fail("cannot parse /proc/self/statm");
	fclose(f);
	return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

/* The process RSS must be below limit: the data really left memory. */
static inline void st_assert_rss_below(const char *what, size_t limit)
{
	size_t rss = st_rss();

	if (rss >= limit)
		st_fail("%s: RSS is %zu KiB after compression, expected under "
			"%zu KiB", what, rss >> 10, limit >> 10);
}

/* A mode argument: argv[1], or def. */
static inline const char *st_mode(int argc, char **argv, const char *def)
{
	return argc > 1 ? argv[1] : def;
}

#endif
