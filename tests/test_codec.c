/*
 * test_codec.c - the page codec: classification, round trips, and refusal
 * of corrupt or truncated input.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "uzswap.h"

static struct uzs_codec *codec;
static unsigned char page[UZS_PAGE_SIZE], out[UZS_PAGE_SIZE];

static void setup(void)
{
	cr_assert_eq(uzs_codec_create(0, &codec), 0);
}

static void teardown(void)
{
	uzs_codec_destroy(codec);
}

TestSuite(codec, .init = setup, .fini = teardown);

/* Compress page[], check the kind, and (for stored) round-trip it. */
static struct uzs_compressed round_trip(enum uzs_page_kind want)
{
	struct uzs_compressed c;

	uzs_codec_compress(codec, page, &c);
	cr_assert_eq(c.kind, want, "kind %d, wanted %d", c.kind, want);
	memset(out, 0xa5, sizeof(out));
	if (c.kind == UZS_PAGE_STORED) {
		cr_assert(c.len > 0 && c.len <= UZS_CODEC_DEFAULT_CUTOFF);
		cr_assert_eq(uzs_codec_decompress(c.data, c.len, out), 0);
	} else {
		uzs_page_fill(out, c.word);
	}
	if (want != UZS_PAGE_INCOMPRESSIBLE)
		cr_assert_arr_eq(out, page, UZS_PAGE_SIZE);
	return c;
}

Test(codec, zero_page_is_tagged_not_stored)
{
	memset(page, 0, sizeof(page));
	struct uzs_compressed c = round_trip(UZS_PAGE_ZERO);
	cr_assert_eq(c.word, 0);
	cr_assert_null(c.data);
}

Test(codec, same_filled_page_keeps_its_word)
{
	uint64_t w = 0x0123456789abcdefull;

	for (size_t i = 0; i < sizeof(page); i += 8)
		memcpy(page + i, &w, 8);
	struct uzs_compressed c = round_trip(UZS_PAGE_SAME);
	cr_assert_eq(c.word, w);
}

Test(codec, one_differing_byte_is_not_same_filled)
{
	/* Every position, including the last word's last byte. */
	for (size_t pos = 0; pos < sizeof(page); pos += 509) {
		memset(page, 0x11, sizeof(page));
		page[pos] ^= 1;
		round_trip(UZS_PAGE_STORED);
	}
	memset(page, 0, sizeof(page));
	page[UZS_PAGE_SIZE - 1] = 1;
	round_trip(UZS_PAGE_STORED);
}

Test(codec, random_page_is_incompressible)
{
	tu_pattern(page, sizeof(page), 42);
	round_trip(UZS_PAGE_INCOMPRESSIBLE);
}

Test(codec, text_page_round_trips)
{
	size_t n = 0;

	for (int i = 0; n + 80 < sizeof(page); i++)
		n += (size_t)snprintf((char *)page + n, sizeof(page) - n,
				      "line %d: the quick brown fox %x\n", i, i * 7919);
	memset(page + n, ' ', sizeof(page) - n);
	round_trip(UZS_PAGE_STORED);
}

Test(codec, heap_like_page_round_trips)
{
	/* Pointers, small integers and zero padding, like a malloc heap. */
	uint64_t st = 7;

	for (size_t i = 0; i < sizeof(page); i += 32) {
		uint64_t rec[4] = { 0x7f0000000000ull + (tu_rand(&st) & 0xfff0),
				    tu_rand(&st) % 100, 0, 0x21 };
		memcpy(page + i, rec, sizeof(rec));
	}
	round_trip(UZS_PAGE_STORED);
}

Test(codec, cutoff_decides_incompressible)
{
	struct uzs_codec *tight;
	struct uzs_compressed c;

	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (unsigned char)(i * i / 7);
	uzs_codec_compress(codec, page, &c);
	cr_assert_eq(c.kind, UZS_PAGE_STORED);
	cr_assert_eq(uzs_codec_create(c.len - 1, &tight), 0);
	uzs_codec_compress(tight, page, &c);
	cr_assert_eq(c.kind, UZS_PAGE_INCOMPRESSIBLE);
	uzs_codec_destroy(tight);
}

Test(codec, bad_cutoff_rejected)
{
	struct uzs_codec *c;

	cr_assert_eq(uzs_codec_create(UZS_PAGE_SIZE + 1, &c), -EINVAL);
}

Test(codec, truncated_input_rejected)
{
	struct uzs_compressed c;
	unsigned char copy[UZS_PAGE_SIZE];

	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (unsigned char)(i % 251 < 120 ? i % 13 : 'x');
	uzs_codec_compress(codec, page, &c);
	cr_assert_eq(c.kind, UZS_PAGE_STORED);
	memcpy(copy, c.data, c.len);
	for (size_t cut = 0; cut < c.len; cut++)
		cr_assert_eq(uzs_codec_decompress(copy, cut, out), -EINVAL,
			     "accepted a stream cut to %zu of %zu", cut, c.len);
}

Test(codec, corrupt_input_never_escapes_the_buffers)
{
	struct uzs_compressed c;
	unsigned char copy[UZS_PAGE_SIZE];
	uint64_t st = 99;
	int rejected = 0;

	tu_pattern(page, 2048, 5);
	memset(page + 2048, 0, 2048);
	uzs_codec_compress(codec, page, &c);
	cr_assert_eq(c.kind, UZS_PAGE_STORED);
	for (int trial = 0; trial < 20000; trial++) {
		memcpy(copy, c.data, c.len);
		for (int k = 0; k < 1 + trial % 4; k++)
			copy[tu_rand(&st) % c.len] ^= (unsigned char)(1 + tu_rand(&st) % 255);
		/* Either an error or a full page: ASan catches any overrun. */
		if (uzs_codec_decompress(copy, c.len, out) != 0)
			rejected++;
	}
	cr_assert_gt(rejected, 0);
	cr_assert_eq(uzs_codec_decompress(NULL, 10, out), -EINVAL);
	cr_assert_eq(uzs_codec_decompress(copy, 0, out), -EINVAL);
	cr_assert_eq(uzs_codec_decompress(copy, UZS_PAGE_SIZE + 1, out), -EINVAL);
}

Test(codec, stream_of_wrong_length_rejected)
{
	/* A valid LZO stream for 2 KiB is not a page. */
	struct uzs_compressed c;

	memset(page, 0, sizeof(page));
	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (unsigned char)(i % 7);
	uzs_codec_compress(codec, page, &c);
	cr_assert_eq(c.kind, UZS_PAGE_STORED);
	/* Feed it to a decoder that would need more output: OK. Then check
	 * that trailing garbage after a valid stream is rejected too. */
	unsigned char copy[UZS_PAGE_SIZE];
	memcpy(copy, c.data, c.len);
	copy[c.len] = 0x11;
	cr_assert_eq(uzs_codec_decompress(copy, c.len + 1, out), -EINVAL);
}
