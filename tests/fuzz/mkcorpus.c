/*
 * mkcorpus.c - write the seed corpora of the fuzz targets.
 *
 *   tests/fuzz/mkcorpus DIR
 *
 * creates DIR/decompress (LZO1X streams of a few kinds of page, so the
 * decompress target starts from inputs that decode, including the zero and
 * same-filled pages the codec itself never compresses) and DIR/pool_ops
 * (short op programs: fill to -ENOSPC, evict, compact, tiny objects).  The
 * files are small and regenerated on demand instead of kept in git; libFuzzer
 * adds what it finds to the same directories.
 *
 * The op bytes follow the enum in fuzz_pool_ops.c.  If that changes these
 * seeds stay valid inputs, they just stop meaning what their names say.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lzo/lzo1x.h>

#include "uzswap.h"

#define PAGE UZS_PAGE_SIZE

static const char *outdir;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void write_seed(const char *sub, const char *name, const void *buf,
		       size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/%s", outdir, sub, name);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f))
		die(path);
}

static void make_dir(const char *sub)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s%s%s", outdir, sub ? "/" : "",
		 sub ? sub : "");
	if (mkdir(path, 0777) && errno != EEXIST)
		die(path);
}

/* ---------------------------------------------------------- decompress */

static void seed_page(const char *name, const unsigned char *page)
{
	static lzo_align_t work[LZO1X_1_MEM_COMPRESS / sizeof(lzo_align_t) + 1];
	static unsigned char out[PAGE + PAGE / 16 + 64 + 3];
	lzo_uint len = 0;

	if (lzo1x_1_compress(page, PAGE, out, &len, work) != LZO_E_OK)
		die("lzo1x_1_compress");
	write_seed("decompress", name, out, len);
}

static void decompress_seeds(void)
{
	static const char text[] =
		"The quick brown fox jumps over the lazy dog; 0123456789. ";
	unsigned char page[PAGE];
	uint64_t w = 0x0123456789abcdefull;

	memset(page, 0, PAGE);
	seed_page("zero", page);
	for (size_t i = 0; i < PAGE; i += 8)
		memcpy(page + i, &w, 8);
	seed_page("same", page);
	for (size_t i = 0; i < PAGE; i++)
		page[i] = (unsigned char)text[i % (sizeof(text) - 1)];
	seed_page("text", page);
	/* Mostly zero with a few live words: a typical sparse heap page. */
	memset(page, 0, PAGE);
	for (size_t i = 0; i < PAGE; i += 136)
		page[i] = (unsigned char)(i * 7 + 1);
	seed_page("sparse", page);
	/* Small integers: counters, lengths, indices. */
	for (size_t i = 0; i < PAGE / 4; i++) {
		uint32_t v = (uint32_t)(i * 3 % 251);

		memcpy(page + 4 * i, &v, 4);
	}
	seed_page("ints", page);
}

/* ----------------------------------------------------------- pool ops */

/* Op numbers of fuzz_pool_ops.c, and length classes of its pick_len(). */
enum {
	ALLOC = 0, BURST = 2, FREE = 3, READ = 5, EV_BEGIN = 6, EV_WRITE = 7,
	EV_END = 8, COMPACT = 9, PLACEMENT = 10, BOGUS = 11, STRIDE = 12,
	CHECK = 13,
};
enum { TINY = 0, SMALL = 1, ANY = 2, NEAR_PAGE = 3, THRESHOLD = 4 };

#define LEN(class, v) (class), (v) & 0xff, (v) >> 8

static void pool_seeds(void)
{
	/* 8 pages, automatic zspages: fill past full, punch holes, compact. */
	static const unsigned char fill[] = {
		7, 0,
		BURST, 31, LEN(ANY, 1800), BURST, 31, LEN(SMALL, 300),
		STRIDE, 0, 1, COMPACT, BURST, 20, LEN(NEAR_PAGE, 5),
		STRIDE, 1, 0, COMPACT, CHECK,
	};
	/* 16 pages of 2-page zspages: evict whole, partly, and keep open
	 * batches across allocation and compaction. */
	static const unsigned char evict[] = {
		15, 2,
		BURST, 31, LEN(SMALL, 700), BURST, 15, LEN(THRESHOLD, 40),
		READ, 3, 0, 0, EV_BEGIN, EV_WRITE, 0, 0, 0,
		EV_BEGIN, EV_WRITE, 1, 1, 0, 0x55, 0x55,
		BURST, 10, LEN(ANY, 2500), COMPACT,
		EV_END, 0, EV_END, 1, EV_BEGIN, EV_WRITE, 0, 2, 3, EV_END, 0,
		CHECK,
	};
	/* 1-page zspages of tiny objects: the per-page object limit. */
	static const unsigned char tiny[] = {
		3, 1,
		BURST, 31, LEN(TINY, 0), BURST, 31, LEN(TINY, 0),
		BURST, 31, LEN(TINY, 0), BURST, 31, LEN(TINY, 0),
		BURST, 31, LEN(TINY, 0), FREE, 8, 0, BOGUS, 3, BOGUS, 6,
		STRIDE, 2, 0, COMPACT, CHECK,
	};
	/* Most-recent placement, frees and reads interleaved. */
	static const unsigned char recent[] = {
		0x85, 4,
		PLACEMENT, 1, ALLOC, LEN(ANY, 1000), ALLOC, LEN(ANY, 3000),
		ALLOC, LEN(SMALL, 100), FREE, 2, 0, ALLOC, LEN(SMALL, 900),
		READ, 1, 0, 2, COMPACT, EV_BEGIN, EV_END, 0, CHECK,
	};

	write_seed("pool_ops", "fill", fill, sizeof(fill));
	write_seed("pool_ops", "evict", evict, sizeof(evict));
	write_seed("pool_ops", "tiny", tiny, sizeof(tiny));
	write_seed("pool_ops", "recent", recent, sizeof(recent));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	if (lzo_init() != LZO_E_OK) {
		fprintf(stderr, "lzo_init failed\n");
		return 1;
	}
	outdir = argv[1];
	make_dir(NULL);
	make_dir("decompress");
	make_dir("pool_ops");
	decompress_seeds();
	pool_seeds();
	return 0;
}
