/*
 * codec.c - classify and (de)compress one 4 KiB page.
 *
 * A page is first checked for being zero or one repeated 8-byte word: such
 * pages (10-20% of swapped pages in production) are stored as a tag, never
 * compressed, which is also faster than LZO on them.  Other pages go through
 * LZO1X-1; output above the codec's cutoff is reported incompressible, since
 * storing ~4 KiB to save a few hundred bytes costs a fault's decompression for
 * almost nothing.
 *
 * Decompression uses lzo1x_decompress_safe, which bounds every read and
 * write, so corrupt input is an error and never an overrun.
 *
 * Each codec owns its LZO work memory (128 KiB) and output buffer, mmap'd at
 * creation: no allocation per call, nothing from the C heap.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <lzo/lzo1x.h>

#include "mmap_region.h"
#include "uzswap.h"

/* LZO's documented worst case for n input bytes: n + n/16 + 64 + 3. */
#define LZO_OUT_BOUND (UZS_PAGE_SIZE + UZS_PAGE_SIZE / 16 + 64 + 3)

struct uzs_codec {
	size_t cutoff;
	unsigned char out[LZO_OUT_BOUND];
	/* lzo_align_t alignment is what LZO asks of work memory. */
	lzo_align_t work[LZO1X_1_MEM_COMPRESS / sizeof(lzo_align_t) + 1];
};

int uzs_codec_create(size_t cutoff, struct uzs_codec **out)
{
	static int lzo_ready;   /* lzo_init is idempotent and thread-safe */
	struct uzs_codec *codec;

	if (cutoff == 0)
		cutoff = UZS_CODEC_DEFAULT_CUTOFF;
	if (cutoff > UZS_PAGE_SIZE)
		return -EINVAL;
	if (!__atomic_load_n(&lzo_ready, __ATOMIC_ACQUIRE)) {
		if (lzo_init() != LZO_E_OK)
			return -ENOSYS;
		__atomic_store_n(&lzo_ready, 1, __ATOMIC_RELEASE);
	}
	codec = uzs_region_reserve(sizeof(*codec));
	if (!codec)
		return -ENOMEM;
	codec->cutoff = cutoff;
	*out = codec;
	return 0;
}

void uzs_codec_destroy(struct uzs_codec *codec)
{
	uzs_region_unreserve(codec, sizeof(*codec));
}

/* True if the page is one 8-byte word repeated; *word gets it. */
static int page_is_same_filled(const void *page, uint64_t *word)
{
	const uint64_t *w = page;
	uint64_t first = w[0];
	size_t i;

	/* Compare in four lanes so the compiler can vectorise the loop. */
	for (i = 0; i < UZS_PAGE_SIZE / 8; i += 4) {
		if ((w[i] ^ first) | (w[i + 1] ^ first) |
		    (w[i + 2] ^ first) | (w[i + 3] ^ first))
			return 0;
	}
	*word = first;
	return 1;
}

void uzs_codec_compress(struct uzs_codec *codec, const void *page,
			struct uzs_compressed *out)
{
	lzo_uint len = 0;
	uint64_t word;

	out->data = NULL;
	out->len = 0;
	out->word = 0;
	if (page_is_same_filled(page, &word)) {
		out->kind = word ? UZS_PAGE_SAME : UZS_PAGE_ZERO;
		out->word = word;
		return;
	}
	/* lzo1x_1_compress cannot fail on valid arguments. */
	lzo1x_1_compress(page, UZS_PAGE_SIZE, codec->out, &len, codec->work);
	if (len == 0 || len > codec->cutoff) {
		out->kind = UZS_PAGE_INCOMPRESSIBLE;
		return;
	}
	out->kind = UZS_PAGE_STORED;
	out->data = codec->out;
	out->len = len;
}

int uzs_codec_decompress(const void *src, size_t len, void *dst)
{
	lzo_uint out_len = UZS_PAGE_SIZE;
	int rc;

	if (!src || len == 0 || len > UZS_PAGE_SIZE)
		return -EINVAL;
	rc = lzo1x_decompress_safe(src, len, dst, &out_len, NULL);
	if (rc != LZO_E_OK || out_len != UZS_PAGE_SIZE)
		return -EINVAL;
	return 0;
}

void uzs_page_fill(void *dst, uint64_t word)
{
	uint64_t *w = dst;
	size_t i;

	if (word == 0) {
		memset(dst, 0, UZS_PAGE_SIZE);
		return;
	}
	for (i = 0; i < UZS_PAGE_SIZE / 8; i++)
		w[i] = word;
}
