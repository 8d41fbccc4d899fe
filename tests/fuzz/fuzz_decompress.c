/*
 * fuzz_decompress.c - libFuzzer target for the page codec.
 *
 * What it owns: the codec's promises about untrusted bytes.
 *  - uzs_codec_decompress() of any input returns 0 or -EINVAL, and never
 *    reads outside src[0..len) nor touches memory outside the 4 KiB page;
 *  - a page it accepts survives uzs_codec_compress() -> decompress unchanged,
 *    is classified right (ZERO / SAME with its word / STORED within the
 *    cutoff / INCOMPRESSIBLE), and a STORED stream cut short is rejected;
 *  - the same holds for a page tiled from the raw input, so compress also
 *    sees fuzzer-chosen pages, not only ones LZO happened to produce.
 * Any violation calls abort(), which libFuzzer reports as a crash.
 *
 * liblzo2 is not instrumented, so ASan cannot see its memory accesses.
 * Instead the input is copied to the very end of a page followed by a
 * PROT_NONE guard page, and each output page sits between guard pages: a
 * stray read or write by the decoder faults at once.
 *
 * liblzo2 has no coverage instrumentation either, so libFuzzer alone would
 * see no progress inside the decoder.  The target therefore also decodes
 * each input with lzo1x_decompress_safe directly and feeds (LZO result,
 * bytes produced before it stopped) to libFuzzer as extra counters: inputs
 * that decode further, or fail differently, are kept.  uzs_codec_decompress
 * must agree with that decode: 0 exactly when LZO says OK for a full page.
 *
 * Build (out of tree, clang only):
 *   cd /work/main && [ -x configure ] || autoreconf -fi
 *   mkdir -p /work/build-fuzz && cd /work/build-fuzz
 *   /work/main/configure --enable-fuzzers CC=clang && make fuzz
 * Seed and run (a single job; -max_len covers inputs just over a page,
 * which must be rejected without being read):
 *   tests/fuzz/mkcorpus corpus        # corpus/decompress, corpus/pool_ops
 *   tests/fuzz/fuzz_decompress -max_len=4200 -rss_limit_mb=2048 \
 *           -max_total_time=600 corpus/decompress
 * A failure leaves crash-<sha1> in the current directory; replay it with
 *   tests/fuzz/fuzz_decompress crash-<sha1>
 * and shrink it with -minimize_crash=1 -runs=10000.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <lzo/lzo1x.h>

#include "uzswap.h"

#define PAGE UZS_PAGE_SIZE

#define FAIL(...)                                                         \
	do {                                                              \
		fprintf(stderr, "fuzz_decompress:%d: ", __LINE__);        \
		fprintf(stderr, __VA_ARGS__);                             \
		fputc('\n', stderr);                                      \
		abort();                                                  \
	} while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Guarded buffers: G IN G OUT G CHECK G TILE G SHADOW G, each one page,
 * G PROT_NONE.  IN holds compressed bytes flush against its guard; OUT
 * receives the fuzzed input's page, CHECK the round trip's, TILE the page
 * built from the raw input, SHADOW the direct LZO decode.
 */
enum { BUF_IN, BUF_OUT, BUF_CHECK, BUF_TILE, BUF_SHADOW, NBUFS };
static unsigned char *guarded;

/* Two cutoffs: the default, and the largest, under which almost every page
 * is STORED and so gets the full round trip. */
static const size_t cutoffs[] = { UZS_CODEC_DEFAULT_CUTOFF, PAGE };
#define NCODECS (sizeof(cutoffs) / sizeof(cutoffs[0]))
static struct uzs_codec *codecs[NCODECS];

/*
 * Progress signal for libFuzzer: one counter per (LZO result, output length
 * in 128-byte steps).  libFuzzer finds this section by name and clears it
 * before each input.
 */
#define LEN_STEPS (PAGE / 128 + 1)
#define LZO_RESULTS 10          /* LZO_E_OK, and -1 .. -9 */
static uint8_t progress[LZO_RESULTS * LEN_STEPS]
	__attribute__((section("__libfuzzer_extra_counters"), used));

static unsigned char *buf(unsigned which)
{
	return guarded + (2 * (size_t)which + 1) * PAGE;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	size_t len = (2 * NBUFS + 1) * (size_t)PAGE;

	guarded = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (guarded == MAP_FAILED)
		FAIL("mmap guard region");
	for (unsigned i = 0; i < NBUFS; i++)
		if (mprotect(buf(i), PAGE, PROT_READ | PROT_WRITE))
			FAIL("mprotect");
	for (unsigned i = 0; i < NCODECS; i++)
		if (uzs_codec_create(cutoffs[i], &codecs[i]))
			FAIL("uzs_codec_create(%zu)", cutoffs[i]);
	return 0;
}

/* Copy len (<= PAGE) bytes so that they end exactly at the guard page. */
static const unsigned char *stage_input(const void *src, size_t len)
{
	unsigned char *dst = buf(BUF_IN) + PAGE - len;

	memcpy(dst, src, len);
	return dst;
}

/* Is the page one 8-byte word repeated?  Written independently of codec.c. */
static int same_filled(const unsigned char *page, uint64_t *word)
{
	uint64_t first, w;

	memcpy(&first, page, 8);
	for (size_t i = 8; i < PAGE; i += 8) {
		memcpy(&w, page + i, 8);
		if (w != first)
			return 0;
	}
	*word = first;
	return 1;
}

/* A STORED stream must decode back to the page, and not when truncated. */
static void check_stored(const unsigned char *page,
			 const struct uzs_compressed *z, size_t cutoff)
{
	const unsigned char *in;
	int rc;

	if (!z->data || z->len == 0 || z->len > cutoff)
		FAIL("STORED with len %zu, cutoff %zu", z->len, cutoff);
	/* z->data lives in the codec: stage a copy against the guard. */
	in = stage_input(z->data, z->len);
	rc = uzs_codec_decompress(in, z->len, buf(BUF_CHECK));
	if (rc != 0)
		FAIL("own stream of %zu bytes rejected: %d", z->len, rc);
	if (memcmp(buf(BUF_CHECK), page, PAGE) != 0)
		FAIL("round trip through %zu bytes changed the page", z->len);
	/* Dropping the last byte loses the end-of-stream marker. */
	in = stage_input(z->data, z->len - 1);
	rc = uzs_codec_decompress(in, z->len - 1, buf(BUF_CHECK));
	if (rc != -EINVAL)
		FAIL("stream cut to %zu bytes gave %d", z->len - 1, rc);
}

/* Compress the page with every codec and check what comes back. */
static void round_trip(const unsigned char *page)
{
	struct uzs_compressed z[NCODECS];
	uint64_t word = 0;
	int same = same_filled(page, &word);

	for (unsigned i = 0; i < NCODECS; i++) {
		uzs_codec_compress(codecs[i], page, &z[i]);
		switch (z[i].kind) {
		case UZS_PAGE_ZERO:
			if (!same || word != 0 || z[i].word != 0)
				FAIL("ZERO for a page that is not zero");
			break;
		case UZS_PAGE_SAME:
			if (!same || word == 0 || z[i].word != word)
				FAIL("SAME %#llx for page word %#llx (same=%d)",
				     (unsigned long long)z[i].word,
				     (unsigned long long)word, same);
			break;
		case UZS_PAGE_STORED:
			if (same)
				FAIL("same-filled page was STORED");
			check_stored(page, &z[i], cutoffs[i]);
			break;
		case UZS_PAGE_INCOMPRESSIBLE:
			if (same)
				FAIL("same-filled page was INCOMPRESSIBLE");
			break;
		default:
			FAIL("unknown page kind %d", (int)z[i].kind);
		}
	}
	/* LZO is deterministic: the codecs may differ only by the cutoff
	 * (cutoffs[] ascends), i.e. where the larger one stored above the
	 * smaller one's cutoff. */
	for (unsigned i = 1; i < NCODECS; i++) {
		if (z[i].kind == z[0].kind &&
		    (z[i].kind != UZS_PAGE_STORED || z[i].len == z[0].len))
			continue;
		if (z[0].kind == UZS_PAGE_INCOMPRESSIBLE &&
		    z[i].kind == UZS_PAGE_STORED && z[i].len > cutoffs[0])
			continue;
		FAIL("cutoff %zu gave kind %d len %zu, cutoff %zu kind %d len %zu",
		     cutoffs[0], (int)z[0].kind, z[0].len,
		     cutoffs[i], (int)z[i].kind, z[i].len);
	}
}

/* A page made by repeating the input: compress sees fuzzer-chosen data. */
static void tile_page(unsigned char *page, const uint8_t *data, size_t size)
{
	for (size_t off = 0; off < PAGE; off += size)
		memcpy(page + off, data, PAGE - off < size ? PAGE - off : size);
}

/*
 * Decode src with LZO directly, record how far it got, and return whether
 * it produced exactly one page: what uzs_codec_decompress must report.
 */
static int shadow_decode(const unsigned char *src, size_t len)
{
	lzo_uint out_len = PAGE;
	int rc = lzo1x_decompress_safe(src, len, buf(BUF_SHADOW), &out_len, NULL);
	unsigned r = rc <= 0 && rc > -LZO_RESULTS ? (unsigned)-rc : LZO_RESULTS - 1;

	if (out_len > PAGE)
		FAIL("LZO claims %lu bytes out of a %u-byte page",
		     (unsigned long)out_len, PAGE);
	progress[r * LEN_STEPS + out_len / 128]++;
	return rc == LZO_E_OK && out_len == PAGE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *src = data;
	int rc;

	/* Longer inputs must be rejected before any byte is read; they stay
	 * in libFuzzer's buffer (which ASan guards for instrumented code). */
	if (size <= PAGE)
		src = stage_input(data, size);
	rc = uzs_codec_decompress(src, size, buf(BUF_OUT));
	if (rc != 0 && rc != -EINVAL)
		FAIL("decompress of %zu bytes returned %d", size, rc);
	if (size && size <= PAGE && shadow_decode(src, size) != (rc == 0))
		FAIL("decompress of %zu bytes returned %d, LZO disagrees",
		     size, rc);
	if (rc == 0) {
		if (memcmp(buf(BUF_OUT), buf(BUF_SHADOW), PAGE) != 0)
			FAIL("decompress and LZO decoded different pages");
		round_trip(buf(BUF_OUT));
	}

	if (size) {
		tile_page(buf(BUF_TILE), data, size);
		round_trip(buf(BUF_TILE));
	}
	return 0;
}
