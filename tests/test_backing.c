/*
 * test_backing.c - the backing file: round trips, space reuse and hole
 * punching, clean failures (bad locations, corruption, disk full, file size
 * limit), privacy of the file, threads, and a fork child's close.
 *
 * Every object's bytes are tu_pattern(tag) with the tag in its first bytes,
 * so any object can be checked from (tag, len) alone.  Worker threads never
 * call Criterion asserts: they record the first error for the test thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1           /* fallocate, FALLOC_FL_* */
#endif
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backing.h"
#include "testutil.h"

#define OBJ_MAX UZS_BACKING_OBJ_MAX
#define BLK UZS_BACKING_BLOCK

static char dir[64];
static struct uzs_backing *bk;
static bool mounted;

struct rec {
	uint64_t loc, tag;
	uint32_t len;
};

/* ------------------------------------------------------------ helpers */

static void fill_obj(unsigned char *buf, size_t len, uint64_t tag)
{
	tu_pattern(buf, len, tag);
	memcpy(buf, &tag, len < 8 ? len : 8);
}

/* 0 if buf[0..len) is fill_obj(tag), else the first bad byte + 1. */
static size_t obj_mismatch(const unsigned char *buf, size_t len, uint64_t tag)
{
	unsigned char want[OBJ_MAX];

	fill_obj(want, len, tag);
	for (size_t i = 0; i < len; i++)
		if (buf[i] != want[i])
			return i + 1;
	return 0;
}

static void make_dir(void)
{
	strcpy(dir, "/tmp/uzs-backing-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

/* Remove the test directory and anything a test left in it. */
static void remove_dir(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[PATH_MAX];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static size_t dir_entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	size_t n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static void open_cfg(const struct uzs_backing_config *c)
{
	char err[256];
	int rc = uzs_backing_open(c, &bk, err, sizeof(err));

	cr_assert_eq(rc, 0, "open: %d %s", rc, err);
}

static void open_in_dir(void)
{
	struct uzs_backing_config c = { .path = dir };

	open_cfg(&c);
}

static void setup(void)
{
	make_dir();
	open_in_dir();
}

static void teardown(void)
{
	uzs_backing_close(bk);
	bk = NULL;
	if (mounted)
		umount2(dir, MNT_DETACH);
	mounted = false;
	remove_dir();
}

static void setup_dir_only(void)
{
	make_dir();
}

TestSuite(backing, .init = setup, .fini = teardown);
TestSuite(backing_open, .init = setup_dir_only, .fini = teardown);
TestSuite(backing_limits, .init = setup_dir_only, .fini = teardown);

static struct uzs_backing_stats stats(void)
{
	struct uzs_backing_stats s;

	uzs_backing_stats(bk, &s);
	return s;
}

static struct stat file_stat(void)
{
	struct stat st;

	cr_assert_eq(fstat(uzs_backing_fd(bk), &st), 0);
	return st;
}

/* Object contents for one batch, packed in one buffer (the batch limit). */
static unsigned char batch_buf[UZS_BACKING_BATCH_MAX_BYTES];

/*
 * Write one batch of n objects with the given lengths and tags (tag0,
 * tag0 + 1, ...).  Returns write_batch's result; on success appends the
 * records to recs.
 */
static int write_objs(const uint32_t *lens, unsigned n, uint64_t tag0,
		      struct rec *recs, size_t *nrec)
{
	struct uzs_backing_obj objs[UZS_BACKING_BATCH_MAX_OBJS] = { { 0 } };
	uint64_t locs[UZS_BACKING_BATCH_MAX_OBJS];
	size_t off = 0;
	int rc;

	for (unsigned i = 0; i < n; i++) {
		fill_obj(batch_buf + off, lens[i], tag0 + i);
		objs[i] = (struct uzs_backing_obj){ batch_buf + off, lens[i] };
		off += lens[i];
	}
	rc = uzs_backing_write_batch(bk, objs, n, locs);
	if (rc == 0 && recs) {
		for (unsigned i = 0; i < n; i++)
			recs[(*nrec)++] = (struct rec){ locs[i], tag0 + i, lens[i] };
	}
	return rc;
}

/* Random lengths for one batch: 1..max_objs objects, within the limits. */
static unsigned random_lens(uint64_t *st, uint32_t *lens, unsigned max_objs,
			    uint32_t lo, uint32_t hi)
{
	unsigned n = (unsigned)tu_range(st, 1, max_objs);
	size_t total = 0;

	for (unsigned i = 0; i < n; i++) {
		lens[i] = (uint32_t)tu_range(st, lo, hi);
		if (total + lens[i] > UZS_BACKING_BATCH_MAX_BYTES)
			return i ? i : 1;
		total += lens[i];
	}
	return n;
}

static unsigned char rbuf[OBJ_MAX];

static void check_rec(const struct rec *r)
{
	long got = uzs_backing_read(bk, r->loc, rbuf, sizeof(rbuf));
	size_t bad;

	cr_assert_eq(got, (long)r->len, "read of tag %llu: %ld, wanted %u",
		     (unsigned long long)r->tag, got, r->len);
	bad = obj_mismatch(rbuf, r->len, r->tag);
	cr_assert_eq(bad, 0, "tag %llu differs at byte %zu",
		     (unsigned long long)r->tag, bad - 1);
}

static void check_all(const struct rec *recs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		check_rec(&recs[i]);
}

static struct uzs_backing_loc decode(uint64_t v)
{
	struct uzs_backing_loc l;

	cr_assert_eq(uzs_backing_loc_decode(v, &l), 0);
	return l;
}

/* ---------------------------------------------------------- locations */

Test(backing_open, location_encode_decode_round_trip)
{
	static const uint32_t blocks[] = { 0, 1, 4095, 65536, 0x7fffffffu };
	static const uint16_t offsets[] = { 0, 1, 4, 4091, 4095 };
	static const uint16_t lens[] = { 1, 2, 3000, 4095, 4096 };
	static const uint8_t indexes[] = { 0, 1, 31, 63 };
	uint64_t st = 1;

	for (size_t a = 0; a < 5; a++)
		for (size_t b = 0; b < 5; b++)
			for (size_t c = 0; c < 5; c++)
				for (size_t d = 0; d < 4; d++) {
					struct uzs_backing_loc l = {
						blocks[a], offsets[b], lens[c], indexes[d],
					}, m;
					uint64_t v = uzs_backing_loc_encode(&l);

					cr_assert(v >> 63, "bit 63 must be set");
					cr_assert_eq(uzs_backing_loc_decode(v, &m), 0);
					cr_assert(m.block == l.block && m.offset == l.offset &&
						  m.len == l.len && m.index == l.index);
					cr_assert_eq(uzs_backing_loc_len(v), l.len);
				}
	for (int i = 0; i < 100000; i++) {
		struct uzs_backing_loc l = {
			(uint32_t)tu_range(&st, 0, 0x7fffffff),
			(uint16_t)tu_range(&st, 0, 4095),
			(uint16_t)tu_range(&st, 1, 4096),
			(uint8_t)tu_range(&st, 0, 63),
		}, m;
		uint64_t v = uzs_backing_loc_encode(&l);

		cr_assert_eq(uzs_backing_loc_decode(v, &m), 0);
		cr_assert(m.block == l.block && m.offset == l.offset &&
			  m.len == l.len && m.index == l.index);
	}
}

Test(backing_open, location_out_of_range_fields_do_not_encode)
{
	struct uzs_backing_loc ok = { 5, 10, 100, 3 }, l;

	l = ok; l.block = 0x80000000u;
	cr_assert_eq(uzs_backing_loc_encode(&l), 0);
	l = ok; l.offset = 4096;
	cr_assert_eq(uzs_backing_loc_encode(&l), 0);
	l = ok; l.len = 0;
	cr_assert_eq(uzs_backing_loc_encode(&l), 0);
	l = ok; l.len = 4097;
	cr_assert_eq(uzs_backing_loc_encode(&l), 0);
	l = ok; l.index = 64;
	cr_assert_eq(uzs_backing_loc_encode(&l), 0);
	cr_assert_neq(uzs_backing_loc_encode(&ok), 0);
}

Test(backing_open, malformed_words_do_not_decode)
{
	struct uzs_backing_loc ok = { 5, 10, 100, 3 }, l = { 1, 2, 3, 4 };
	uint64_t v = uzs_backing_loc_encode(&ok);

	cr_assert_eq(uzs_backing_loc_decode(0, &l), -EINVAL);
	cr_assert_eq(uzs_backing_loc_decode(12345, &l), -EINVAL);
	cr_assert_eq(uzs_backing_loc_decode(v & ~(1ull << 63), &l), -EINVAL);
	cr_assert_eq(uzs_backing_loc_decode(v | 1ull << 62, &l), -EINVAL);
	cr_assert_eq(uzs_backing_loc_decode(v | 1ull << 61, &l), -EINVAL);
	cr_assert(l.block == 1 && l.offset == 2 && l.len == 3 && l.index == 4,
		  "a failed decode leaves loc alone");
}

/* --------------------------------------------------------- round trips */

#define RT_BATCHES 3000

Test(backing, round_trip_many_random_batches)
{
	static struct rec recs[RT_BATCHES * 24];
	uint32_t lens[UZS_BACKING_BATCH_MAX_OBJS];
	size_t nrec = 0;
	uint64_t st = 42, bytes = 0;
	struct uzs_backing_stats s;

	for (unsigned b = 0; b < RT_BATCHES; b++) {
		unsigned n = random_lens(&st, lens, 24, 1, OBJ_MAX);

		if (b == 0)
			lens[0] = 1;            /* the extremes, early */
		if (b == 1)
			lens[0] = OBJ_MAX;
		cr_assert_eq(write_objs(lens, n, nrec + 1, recs, &nrec), 0);
	}
	for (size_t i = 0; i < nrec; i++) {
		struct uzs_backing_loc l = decode(recs[i].loc);

		cr_assert_eq(l.len, recs[i].len);
		cr_assert_lt(l.offset, BLK);
		bytes += recs[i].len;
	}
	check_all(recs, nrec);
	/* Again in reverse order: nothing depends on reading in order. */
	for (size_t i = nrec; i-- > 0;)
		check_rec(&recs[i]);
	s = stats();
	cr_assert_eq(s.objects, nrec);
	cr_assert_eq(s.object_bytes, bytes);
	cr_assert_eq(s.writes, RT_BATCHES);
	cr_assert_eq(s.reads, 2 * nrec);
	cr_assert_eq(s.write_errors + s.read_errors + s.checksum_errors, 0);
	/* Packed: the file is the bytes plus checksums, plus at most the
	 * open block's tail. */
	cr_assert_leq(s.file_bytes, bytes + 4 * nrec + 2 * BLK,
		      "file %llu for %llu bytes", (unsigned long long)s.file_bytes,
		      (unsigned long long)bytes);
	cr_assert_eq(s.blocks_used * BLK, s.file_bytes);
}

Test(backing, consecutive_writes_share_the_open_block)
{
	uint32_t lens[2] = { 100, 200 };
	struct rec recs[4];
	size_t n = 0;

	cr_assert_eq(write_objs(lens, 2, 1, recs, &n), 0);
	cr_assert_eq(write_objs(lens, 2, 3, recs, &n), 0);
	for (size_t i = 1; i < 4; i++)
		cr_assert_eq(decode(recs[i].loc).block, decode(recs[0].loc).block);
	cr_assert_eq(decode(recs[2].loc).offset, 4 + 100 + 4 + 200);
	cr_assert_eq(stats().file_bytes, BLK);
	check_all(recs, n);
}

Test(backing, objects_straddle_blocks)
{
	uint32_t lens[8] = { 4096, 4096, 4096, 4095, 1, 4096, 3000, 4096 };
	struct rec recs[8];
	size_t n = 0;
	unsigned spanning = 0;

	cr_assert_eq(write_objs(lens, 8, 7, recs, &n), 0);
	for (size_t i = 0; i < n; i++) {
		struct uzs_backing_loc l = decode(recs[i].loc);

		spanning += (unsigned)l.offset + 4 + l.len > BLK;
	}
	cr_assert_geq(spanning, 6);
	check_all(recs, n);
}

Test(backing, many_tiny_objects_use_fresh_blocks_past_64)
{
	uint32_t lens[256];
	struct rec recs[256];
	size_t n = 0;

	for (unsigned i = 0; i < 256; i++)
		lens[i] = 1 + i % 3;
	cr_assert_eq(write_objs(lens, 256, 1000, recs, &n), 0);
	for (size_t i = 0; i < n; i++) {
		cr_assert_lt(decode(recs[i].loc).index, UZS_BACKING_BLOCK_OBJS);
		if (i % 64 == 0 && i)
			cr_assert_neq(decode(recs[i].loc).block,
				      decode(recs[i - 1].loc).block);
	}
	check_all(recs, n);
}

Test(backing, bad_batches_are_refused_and_record_nothing)
{
	static unsigned char big[UZS_BACKING_BATCH_MAX_BYTES + 1];
	struct uzs_backing_obj objs[UZS_BACKING_BATCH_MAX_OBJS + 1];
	uint64_t locs[UZS_BACKING_BATCH_MAX_OBJS + 1] = { 0 };
	struct uzs_backing_stats s;

	for (unsigned i = 0; i <= UZS_BACKING_BATCH_MAX_OBJS; i++)
		objs[i] = (struct uzs_backing_obj){ big, 8 };
	cr_assert_eq(uzs_backing_write_batch(bk, objs, 0, locs), -EINVAL);
	cr_assert_eq(uzs_backing_write_batch(bk, objs,
					     UZS_BACKING_BATCH_MAX_OBJS + 1, locs),
		     -EINVAL);
	cr_assert_eq(uzs_backing_write_batch(bk, NULL, 1, locs), -EINVAL);
	cr_assert_eq(uzs_backing_write_batch(bk, objs, 1, NULL), -EINVAL);
	objs[1].len = 0;
	cr_assert_eq(uzs_backing_write_batch(bk, objs, 2, locs), -EINVAL);
	objs[1].len = OBJ_MAX + 1;
	cr_assert_eq(uzs_backing_write_batch(bk, objs, 2, locs), -EINVAL);
	objs[1] = (struct uzs_backing_obj){ NULL, 8 };
	cr_assert_eq(uzs_backing_write_batch(bk, objs, 2, locs), -EINVAL);
	for (unsigned i = 0; i < 9; i++)
		objs[i] = (struct uzs_backing_obj){ big, 4096 };  /* 36 KiB */
	cr_assert_eq(uzs_backing_write_batch(bk, objs, 9, locs), -EINVAL);
	for (unsigned i = 0; i <= UZS_BACKING_BATCH_MAX_OBJS; i++)
		cr_assert_eq(locs[i], 0, "locs untouched");
	s = stats();
	cr_assert_eq(s.objects + s.writes + s.write_errors + s.file_bytes, 0);
	/* The largest legal batches do go through. */
	for (unsigned i = 0; i < 8; i++)
		objs[i] = (struct uzs_backing_obj){ big, 4096 };
	cr_assert_eq(uzs_backing_write_batch(bk, objs, 8, locs), 0);
	for (unsigned i = 0; i < UZS_BACKING_BATCH_MAX_OBJS; i++)
		objs[i] = (struct uzs_backing_obj){ big, 128 };
	cr_assert_eq(uzs_backing_write_batch(bk, objs, UZS_BACKING_BATCH_MAX_OBJS,
					     locs), 0);
}

/* --------------------------------------------- freed and bogus locations */

Test(backing, freed_and_bogus_locations_fail_cleanly)
{
	uint32_t lens[3] = { 500, 600, 700 };
	struct rec recs[3];
	struct uzs_backing_loc l;
	size_t n = 0;
	uint64_t v;

	cr_assert_eq(write_objs(lens, 3, 1, recs, &n), 0);
	cr_assert_eq(uzs_backing_free(bk, recs[1].loc), 0);
	cr_assert_eq(uzs_backing_read(bk, recs[1].loc, rbuf, sizeof(rbuf)), -ENOENT);
	cr_assert_eq(uzs_backing_free(bk, recs[1].loc), -ENOENT, "double free");
	/* Neighbours in the same block are unharmed. */
	check_rec(&recs[0]);
	check_rec(&recs[2]);

	cr_assert_eq(uzs_backing_read(bk, 0, rbuf, sizeof(rbuf)), -EINVAL);
	cr_assert_eq(uzs_backing_free(bk, 0), -EINVAL);
	cr_assert_eq(uzs_backing_read(bk, 0xdeadbeef, rbuf, sizeof(rbuf)), -EINVAL);
	cr_assert_eq(uzs_backing_read(bk, recs[0].loc | 1ull << 62, rbuf,
				      sizeof(rbuf)), -EINVAL);
	/* Well formed, but past the end of the file. */
	l = decode(recs[0].loc);
	l.block = 1000;
	v = uzs_backing_loc_encode(&l);
	cr_assert_eq(uzs_backing_read(bk, v, rbuf, sizeof(rbuf)), -EINVAL);
	cr_assert_eq(uzs_backing_free(bk, v), -EINVAL);
	/* An index that was never handed out in a live block. */
	l = decode(recs[0].loc);
	l.index = 40;
	v = uzs_backing_loc_encode(&l);
	cr_assert_eq(uzs_backing_read(bk, v, rbuf, sizeof(rbuf)), -ENOENT);
	cr_assert_eq(uzs_backing_free(bk, v), -ENOENT);
	/* A live index with the wrong offset or length: the checksum says no. */
	l = decode(recs[0].loc);
	l.offset += 4;
	v = uzs_backing_loc_encode(&l);
	cr_assert_eq(uzs_backing_read(bk, v, rbuf, sizeof(rbuf)), -EBADMSG);
	l = decode(recs[0].loc);
	l.len -= 1;
	v = uzs_backing_loc_encode(&l);
	cr_assert_eq(uzs_backing_read(bk, v, rbuf, sizeof(rbuf)), -EBADMSG);
	/* A buffer too small. */
	cr_assert_eq(uzs_backing_read(bk, recs[0].loc, rbuf, 499), -EINVAL);
	cr_assert_eq(uzs_backing_read(bk, recs[0].loc, NULL, 4096), -EINVAL);
	check_all(&recs[2], 1);
	cr_assert_eq(stats().objects, 2);
}

Test(backing, a_freed_location_stays_dead_when_its_block_goes)
{
	uint32_t lens[1] = { 3000 };
	struct rec a[1], b[1];
	size_t n = 0, m = 0;

	cr_assert_eq(write_objs(lens, 1, 1, a, &n), 0);
	lens[0] = 2000;         /* straddles into a second block */
	cr_assert_eq(write_objs(lens, 1, 2, b, &m), 0);
	cr_assert_eq(uzs_backing_free(bk, a[0].loc), 0);
	cr_assert_eq(uzs_backing_read(bk, a[0].loc, rbuf, sizeof(rbuf)), -ENOENT,
		     "freed, though its block is still live");
	check_rec(&b[0]);
	cr_assert_eq(uzs_backing_free(bk, b[0].loc), 0);
	cr_assert_eq(uzs_backing_read(bk, b[0].loc, rbuf, sizeof(rbuf)), -ENOENT);
	cr_assert_eq(uzs_backing_trim(bk), 2);
	/* Both blocks were cut off the file: not even well placed now. */
	cr_assert_eq(uzs_backing_read(bk, a[0].loc, rbuf, sizeof(rbuf)), -EINVAL);
	cr_assert_eq(uzs_backing_read(bk, b[0].loc, rbuf, sizeof(rbuf)), -EINVAL);
	cr_assert_eq(uzs_backing_free(bk, b[0].loc), -EINVAL);
}

/* -------------------------------------------------- reuse and punching */

static off_t disk_bytes(void)
{
	return file_stat().st_blocks * 512;
}

#define CHURN_LIVE 2000
#define CHURN_ROUNDS 20000

Test(backing, file_stays_bounded_under_churn)
{
	static struct rec live[CHURN_LIVE + UZS_BACKING_BATCH_MAX_OBJS];
	uint32_t lens[UZS_BACKING_BATCH_MAX_OBJS];
	size_t nlive = 0;
	uint64_t st = 7, tag = 1, live_bytes = 0, max_file = 0;
	off_t max_disk = 0;
	double worst = 0;

	for (unsigned r = 0; r < CHURN_ROUNDS; r++) {
		unsigned n = random_lens(&st, lens, 8, 200, 3200);
		size_t before = nlive;

		cr_assert_eq(write_objs(lens, n, tag, live, &nlive), 0);
		tag += n;
		for (size_t i = before; i < nlive; i++)
			live_bytes += live[i].len;
		while (nlive > CHURN_LIVE) {
			size_t k = tu_range(&st, 0, nlive - 1);

			cr_assert_eq(uzs_backing_free(bk, live[k].loc), 0);
			live_bytes -= live[k].len;
			live[k] = live[--nlive];
		}
		if (r % 500 == 499) {
			struct uzs_backing_stats s = stats();
			off_t disk = disk_bytes();
			/* Random frees leave blocks partly live; with ~3
			 * objects a block the expected overhead is ~2x. */
			uint64_t bound = 3 * (live_bytes + 4 * nlive) + (1u << 20);

			cr_assert_leq(s.file_bytes, bound, "round %u: file %llu > %llu",
				      r, (unsigned long long)s.file_bytes,
				      (unsigned long long)bound);
			cr_assert_leq((uint64_t)disk, bound);
			if (s.file_bytes > max_file)
				max_file = s.file_bytes;
			if (disk > max_disk)
				max_disk = disk;
			if ((double)s.file_bytes / live_bytes > worst)
				worst = (double)s.file_bytes / live_bytes;
		}
	}
	cr_log_info("churn: %d live objects, file at most %llu bytes, disk %lld, "
		    "worst file/live %.2f", CHURN_LIVE,
		    (unsigned long long)max_file, (long long)max_disk, worst);
	check_all(live, nlive);
	/* Free blocks beyond the few kept for reuse are punched by writes. */
	cr_assert_leq(stats().blocks_unpunched, 64 + 16);
}

Test(backing, freed_blocks_are_reused_before_the_file_grows)
{
	static struct rec recs[2000];
	uint32_t lens[8];
	size_t n = 0;
	uint64_t size;

	for (unsigned i = 0; i < 8; i++)
		lens[i] = 1000;
	for (unsigned b = 0; b < 200; b++)
		cr_assert_eq(write_objs(lens, 8, 1 + b * 8, recs, &n), 0);
	size = stats().file_bytes;
	for (unsigned round = 0; round < 20; round++) {
		for (size_t i = 0; i < n; i++)
			cr_assert_eq(uzs_backing_free(bk, recs[i].loc), 0);
		n = 0;
		for (unsigned b = 0; b < 200; b++)
			cr_assert_eq(write_objs(lens, 8, 1 + b * 8, recs, &n), 0);
		cr_assert_leq(stats().file_bytes, size + BLK, "round %u", round);
	}
	check_all(recs, n);
}

Test(backing, trim_punches_holes_and_truncates)
{
	static struct rec recs[3000];
	uint32_t lens[8];
	size_t n = 0;
	struct uzs_backing_stats s;
	off_t full;
	long given;

	for (unsigned i = 0; i < 8; i++)
		lens[i] = 2000;
	for (unsigned b = 0; b < 300; b++)      /* ~4.7 MiB */
		cr_assert_eq(write_objs(lens, 8, 1 + b * 8, recs, &n), 0);
	full = disk_bytes();
	cr_assert_geq(full, 4 << 20, "the file holds its data: %lld",
		      (long long)full);

	/* Keep the last batch: the tail stays, so space can come back only by
	 * punching holes, not by truncating. */
	for (size_t i = 0; i + 8 < n; i++)
		cr_assert_eq(uzs_backing_free(bk, recs[i].loc), 0);
	given = uzs_backing_trim(bk);
	cr_assert_gt(given, 1000);
	s = stats();
	cr_assert_gt(s.blocks_punched, 1000);
	cr_assert_eq(s.blocks_unpunched, 0);
	cr_assert_eq(file_stat().st_size, (off_t)s.file_bytes);
	cr_assert_geq(file_stat().st_size, 4 << 20, "not truncated");
	cr_assert_leq(disk_bytes(), 64 << 10, "holes punched: %lld on disk",
		      (long long)disk_bytes());
	check_all(recs + n - 8, 8);

	/* Free the rest: now the whole file is free and is cut to nothing. */
	for (size_t i = n - 8; i < n; i++)
		cr_assert_eq(uzs_backing_free(bk, recs[i].loc), 0);
	cr_assert_geq(uzs_backing_trim(bk), 1);
	s = stats();
	cr_assert_eq(s.file_bytes, 0);
	cr_assert_eq(file_stat().st_size, 0);
	cr_assert_eq(disk_bytes(), 0);
	cr_assert_eq(s.objects + s.object_bytes + s.blocks_used + s.blocks_free, 0);

	/* And the file works as new. */
	n = 0;
	cr_assert_eq(write_objs(lens, 8, 5000, recs, &n), 0);
	check_all(recs, n);
}

Test(backing, writes_punch_what_they_do_not_reuse)
{
	static struct rec recs[3000];
	uint32_t lens[8];
	size_t n = 0;

	for (unsigned i = 0; i < 8; i++)
		lens[i] = 2000;
	for (unsigned b = 0; b < 300; b++)
		cr_assert_eq(write_objs(lens, 8, 1 + b * 8, recs, &n), 0);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(uzs_backing_free(bk, recs[i].loc), 0);
	cr_assert_gt(stats().blocks_unpunched, 1000, "frees make no system call");
	n = 0;
	cr_assert_eq(write_objs(lens, 1, 9999, recs, &n), 0);
	cr_assert_leq(stats().blocks_unpunched, 64);
	cr_assert_leq(disk_bytes(), (64 + 8) * BLK);
	check_all(recs, n);
}

/* ------------------------------------------------------- corruption */

Test(backing, corruption_is_an_error_never_data)
{
	uint32_t lens[4] = { 1500, 1500, 1500, 1500 };
	struct rec recs[4];
	struct uzs_backing_loc l;
	size_t n = 0;
	int fd = uzs_backing_fd(bk);
	unsigned char junk[16];
	struct uzs_backing_stats s;

	cr_assert_eq(write_objs(lens, 4, 1, recs, &n), 0);
	/* One flipped byte in the middle of object 0. */
	l = decode(recs[0].loc);
	memset(junk, 0x5a, sizeof(junk));
	cr_assert_eq(pwrite(fd, junk, 1, (off_t)l.block * BLK + l.offset + 700), 1);
	cr_assert_eq(uzs_backing_read(bk, recs[0].loc, rbuf, sizeof(rbuf)), -EBADMSG);
	/* A hole punched behind our back reads as zeros: still an error. */
	l = decode(recs[3].loc);
	cr_assert_eq(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       (off_t)l.block * BLK, BLK), 0);
	cr_assert_eq(uzs_backing_read(bk, recs[3].loc, rbuf, sizeof(rbuf)), -EBADMSG);
	/* A file cut short: a short read, an error. */
	cr_assert_eq(ftruncate(fd, 0), 0);
	cr_assert_eq(uzs_backing_read(bk, recs[1].loc, rbuf, sizeof(rbuf)), -EIO);
	s = stats();
	cr_assert_eq(s.checksum_errors, 2);
	cr_assert_eq(s.read_errors, 1);
	cr_assert_eq(s.reads, 0);
}

/* ------------------------------------------------ the file is private */

static void assert_private(void)
{
	struct stat st = file_stat();
	int fdflags = fcntl(uzs_backing_fd(bk), F_GETFD);

	cr_assert_eq(st.st_nlink, 0, "the file has no name");
	cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert(fdflags & FD_CLOEXEC, "close-on-exec");
}

Test(backing_open, in_a_directory_unlinked_0600)
{
	mode_t old = umask(0);          /* fchmod, not the umask, sets 0600 */

	open_in_dir();
	umask(old);
	assert_private();
	cr_assert_eq(dir_entries(dir), 0);
}

Test(backing_open, without_o_tmpfile_unlinked_0600)
{
	struct uzs_backing_config c = { .path = dir, .flags = UZS_BACKING_NO_TMPFILE };
	mode_t old = umask(0077);

	open_cfg(&c);
	umask(old);
	assert_private();
	cr_assert_eq(dir_entries(dir), 0);
}

Test(backing_open, default_is_tmpdir)
{
	cr_assert_eq(setenv("TMPDIR", dir, 1), 0);
	open_cfg(NULL);
	assert_private();
	cr_assert_eq(dir_entries(dir), 0);
	/* It is in $TMPDIR: the same file system as the directory. */
	struct stat d;
	cr_assert_eq(stat(dir, &d), 0);
	cr_assert_eq(d.st_dev, file_stat().st_dev);
}

Test(backing_open, a_new_file_name_is_created_and_unlinked)
{
	char path[PATH_MAX];
	struct uzs_backing_config c = { .path = path };

	snprintf(path, sizeof(path), "%s/evicted.bin", dir);
	open_cfg(&c);
	assert_private();
	cr_assert_eq(access(path, F_OK), -1, "the name is gone");
	cr_assert_eq(dir_entries(dir), 0);
}

Test(backing_open, an_existing_file_is_refused_and_left_alone)
{
	char path[PATH_MAX], err[256];
	struct uzs_backing_config c = { .path = path };
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/precious", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "keep", 4), 4);
	close(fd);
	cr_assert_eq(uzs_backing_open(&c, &bk, err, sizeof(err)), -EEXIST);
	bk = NULL;
	cr_assert_not_null(strstr(err, path), "%s", err);
	cr_assert_not_null(strstr(err, "name a directory or a new file"), "%s", err);
	cr_assert_eq(strchr(err, '\n'), NULL);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 4);
}

Test(backing_open, a_missing_directory_says_so)
{
	char path[PATH_MAX], err[256];
	struct uzs_backing_config c = { .path = path };

	snprintf(path, sizeof(path), "%s/no/such/dir/file", dir);
	cr_assert_eq(uzs_backing_open(&c, &bk, err, sizeof(err)), -ENOENT);
	bk = NULL;
	cr_assert_not_null(strstr(err, path), "%s", err);
	cr_assert_not_null(strstr(err, "No such file"), "%s", err);
	/* A short buffer gets a truncated line, not an overflow. */
	cr_assert_eq(uzs_backing_open(&c, &bk, err, 10), -ENOENT);
	bk = NULL;
	cr_assert_eq(strlen(err), 9);
	cr_assert_eq(uzs_backing_open(&c, &bk, NULL, 0), -ENOENT);
	bk = NULL;
}

/* --------------------------------------------------- full and limited */

/* Write 3000-byte objects until the first failure; returns it. */
static int fill_until_failure(struct rec *recs, size_t *n, size_t cap)
{
	uint32_t lens[2] = { 3000, 3000 };
	int rc;

	do {
		rc = write_objs(lens, 2, 100 + *n, recs, n);
	} while (rc == 0 && *n + 2 <= cap);
	return rc;
}

static void assert_failure_lost_nothing(int rc, int want, struct rec *recs,
					size_t n)
{
	struct uzs_backing_stats s = stats();

	cr_assert_eq(rc, want, "write failed with %d, wanted %d", rc, want);
	cr_assert_gt(n, 4, "some writes succeeded first");
	cr_assert_eq(s.objects, n, "nothing recorded by the failed write");
	cr_assert_eq(s.write_errors, 1);
	cr_assert_eq(s.last_write_error, -want);
	check_all(recs, n);
}

Test(backing_limits, disk_full_fails_with_enospc_and_loses_nothing)
{
	static struct rec recs[256];
	size_t n = 0;
	int rc;

	if (mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0700")) {
		cr_skip_test("cannot mount a tmpfs (%s): needs root", strerror(errno));
		return;
	}
	mounted = true;
	open_in_dir();
	cr_assert(stats().on_tmpfs);
	rc = fill_until_failure(recs, &n, 256);
	assert_failure_lost_nothing(rc, -ENOSPC, recs, n);
	/* The same write keeps failing, and still records nothing. */
	rc = fill_until_failure(recs, &n, 256);
	cr_assert_eq(rc, -ENOSPC);
	cr_assert_eq(stats().objects, n);

	/* Freeing gives space back (holes in tmpfs), and writes work again. */
	for (size_t i = 0; i < n / 2; i++)
		cr_assert_eq(uzs_backing_free(bk, recs[i].loc), 0);
	cr_assert_gt(uzs_backing_trim(bk), 0);
	memmove(recs, recs + n / 2, (n - n / 2) * sizeof(recs[0]));
	n -= n / 2;
	{
		uint32_t lens[1] = { 3000 };

		cr_assert_eq(write_objs(lens, 1, 77777, recs, &n), 0);
	}
	check_all(recs, n);
}

Test(backing_limits, file_size_limit_fails_with_efbig_and_loses_nothing)
{
	static struct rec recs[256];
	struct rlimit rl, saved;
	sigset_t xfsz;
	size_t n = 0;
	int rc;

	/* As on the engine's threads: SIGXFSZ blocked, so EFBIG, not death. */
	sigemptyset(&xfsz);
	sigaddset(&xfsz, SIGXFSZ);
	cr_assert_eq(pthread_sigmask(SIG_BLOCK, &xfsz, NULL), 0);
	open_in_dir();
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
	rl = saved;
	rl.rlim_cur = 64 << 10;         /* the soft limit only: restorable */
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	rc = fill_until_failure(recs, &n, 256);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);
	assert_failure_lost_nothing(rc, -EFBIG, recs, n);
	cr_assert_leq(file_stat().st_size, 64 << 10);
	cr_assert_eq(stats().file_bytes % BLK, 0);
	cr_assert_leq(stats().file_bytes, 64 << 10);
}

Test(backing_limits, size_cap_fails_with_enospc_and_loses_nothing)
{
	static struct rec recs[256];
	struct uzs_backing_config c = { .path = dir, .max_bytes = 64 << 10 };
	size_t n = 0;
	int rc;

	open_cfg(&c);
	rc = fill_until_failure(recs, &n, 256);
	assert_failure_lost_nothing(rc, -ENOSPC, recs, n);
	cr_assert_leq(stats().file_bytes, 64 << 10);
}

Test(backing_limits, size_cap_out_of_range_is_refused)
{
	struct uzs_backing_config c = { .path = dir, .max_bytes = 100 };
	char err[256];

	cr_assert_eq(uzs_backing_open(&c, &bk, err, sizeof(err)), -EINVAL);
	c.max_bytes = UZS_BACKING_MAX_BYTES + BLK;
	cr_assert_eq(uzs_backing_open(&c, &bk, err, sizeof(err)), -EINVAL);
	bk = NULL;
}

/* ------------------------------------------------------------ threads */

#define QCAP 1024u
#define FIXED 200

struct tctx {
	struct rec fixed[FIXED];
	struct rec q[QCAP];
	_Atomic unsigned qhead, qtail;  /* writer pushes at tail */
	atomic_bool done;
	atomic_ulong reads, frees, writes, trims;
	char err[256];
	atomic_bool failed;
};

static void tfail(struct tctx *c, const char *what, const struct rec *r, long rc)
{
	bool no = false;

	if (atomic_compare_exchange_strong(&c->failed, &no, true))
		snprintf(c->err, sizeof(c->err), "%s: tag %llu len %u: %ld", what,
			 (unsigned long long)(r ? r->tag : 0), r ? r->len : 0, rc);
}

static bool tcheck(struct tctx *c, const struct rec *r, unsigned char *buf)
{
	long got = uzs_backing_read(bk, r->loc, buf, OBJ_MAX);

	if (got != (long)r->len) {
		tfail(c, "read", r, got);
		return false;
	}
	if (obj_mismatch(buf, r->len, r->tag)) {
		tfail(c, "content", r, 0);
		return false;
	}
	atomic_fetch_add(&c->reads, 1);
	return true;
}

static void *writer(void *arg)
{
	static struct rec mine[600];
	static unsigned char buf[OBJ_MAX];
	struct tctx *c = arg;
	struct uzs_backing_obj objs[16];
	static unsigned char data[UZS_BACKING_BATCH_MAX_BYTES];
	uint64_t locs[16], st = 99, tag = 1000000;
	size_t nmine = 0;

	for (unsigned b = 0; b < 4000 && !atomic_load(&c->failed); b++) {
		unsigned n = (unsigned)tu_range(&st, 1, 16);
		uint32_t lens[16];
		size_t off = 0;
		int rc;

		for (unsigned i = 0; i < n; i++) {
			lens[i] = (uint32_t)tu_range(&st, 1, 2048);
			fill_obj(data + off, lens[i], tag + i);
			objs[i] = (struct uzs_backing_obj){ data + off, lens[i] };
			off += lens[i];
		}
		rc = uzs_backing_write_batch(bk, objs, n, locs);
		if (rc) {
			tfail(c, "write", NULL, rc);
			break;
		}
		atomic_fetch_add(&c->writes, 1);
		for (unsigned i = 0; i < n; i++) {
			struct rec r = { locs[i], tag + i, lens[i] };
			unsigned t = atomic_load(&c->qtail);

			if (tu_rand(&st) & 1 && t - atomic_load(&c->qhead) < QCAP) {
				c->q[t % QCAP] = r;
				atomic_store(&c->qtail, t + 1);
				continue;
			}
			mine[nmine++] = r;
		}
		tag += n;
		while (nmine > 500) {
			size_t k = tu_range(&st, 0, nmine - 1);

			if (!tcheck(c, &mine[k], buf))
				break;
			uzs_backing_free(bk, mine[k].loc);
			atomic_fetch_add(&c->frees, 1);
			mine[k] = mine[--nmine];
		}
	}
	for (size_t k = 0; k < nmine && !atomic_load(&c->failed); k++)
		if (tcheck(c, &mine[k], buf))
			uzs_backing_free(bk, mine[k].loc);
	atomic_store(&c->done, true);
	return NULL;
}

/* Takes objects the writer hands over, checks them and frees them. */
static void *consumer(void *arg)
{
	struct tctx *c = arg;
	unsigned char buf[OBJ_MAX];

	for (;;) {
		unsigned h = atomic_load(&c->qhead);
		struct rec r;

		if (h == atomic_load(&c->qtail)) {
			if (atomic_load(&c->done) && h == atomic_load(&c->qtail))
				break;
			sched_yield();
			continue;
		}
		r = c->q[h % QCAP];
		atomic_store(&c->qhead, h + 1);
		if (!tcheck(c, &r, buf))
			break;
		if (uzs_backing_free(bk, r.loc)) {
			tfail(c, "free", &r, -1);
			break;
		}
		atomic_fetch_add(&c->frees, 1);
	}
	return NULL;
}

/* Reads a fixed set of objects over and over while everything changes. */
static void *fixed_reader(void *arg)
{
	struct tctx *c = arg;
	unsigned char buf[OBJ_MAX];

	while (!atomic_load(&c->done) && !atomic_load(&c->failed))
		for (int i = 0; i < FIXED; i++)
			if (!tcheck(c, &c->fixed[i], buf))
				return NULL;
	return NULL;
}

static void *trimmer(void *arg)
{
	struct tctx *c = arg;

	while (!atomic_load(&c->done)) {
		long rc = uzs_backing_trim(bk);

		if (rc < 0) {
			tfail(c, "trim", NULL, rc);
			break;
		}
		atomic_fetch_add(&c->trims, 1);
		usleep(500);
	}
	return NULL;
}

Test(backing, concurrent_writer_readers_and_trim)
{
	static struct tctx c;
	pthread_t tw, tc, tf, tt;
	uint32_t lens[1];
	size_t n = 0;

	for (int i = 0; i < FIXED; i++) {
		lens[0] = 1 + (uint32_t)(i * 37 % 4096);
		cr_assert_eq(write_objs(lens, 1, 1 + i, c.fixed, &n), 0);
	}
	pthread_create(&tf, NULL, fixed_reader, &c);
	pthread_create(&tc, NULL, consumer, &c);
	pthread_create(&tt, NULL, trimmer, &c);
	pthread_create(&tw, NULL, writer, &c);
	pthread_join(tw, NULL);
	pthread_join(tc, NULL);
	pthread_join(tf, NULL);
	pthread_join(tt, NULL);
	cr_assert(!atomic_load(&c.failed), "%s", c.err);
	cr_log_info("threads: %lu writes, %lu reads, %lu frees, %lu trims",
		    atomic_load(&c.writes), atomic_load(&c.reads),
		    atomic_load(&c.frees), atomic_load(&c.trims));
	cr_assert_eq(atomic_load(&c.writes), 4000);
	check_all(c.fixed, FIXED);
	cr_assert_eq(stats().objects, FIXED, "every other object was freed");
}

/* ---------------------------------------------------------------- fork */

static void *busy_writer(void *arg)
{
	struct tctx *c = arg;
	uint32_t lens[4] = { 3000, 3000, 3000, 3000 };
	static struct rec recs[4];

	while (!atomic_load(&c->done)) {
		size_t n = 0;

		if (write_objs(lens, 4, 1, recs, &n)) {
			tfail(c, "write", NULL, -1);
			break;
		}
		for (size_t i = 0; i < n; i++)
			uzs_backing_free(bk, recs[i].loc);
	}
	return NULL;
}

Test(backing, a_fork_child_closes_without_harming_the_parent)
{
	static struct tctx c;
	uint32_t lens[4] = { 1000, 2000, 3000, 4000 };
	static struct rec recs[400];
	size_t n = 0;
	pthread_t t;
	int status;
	pid_t pid;

	for (unsigned b = 0; b < 100; b++)
		cr_assert_eq(write_objs(lens, 4, 1 + 4 * b, recs, &n), 0);
	pthread_create(&t, NULL, busy_writer, &c);
	for (int k = 0; k < 20; k++) {
		pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			/* The writer thread may hold the backing's locks here. */
			alarm(10);
			uzs_backing_close(bk);
			_exit(0);
		}
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	atomic_store(&c.done, true);
	pthread_join(t, NULL);
	cr_assert(!atomic_load(&c.failed), "%s", c.err);
	check_all(recs, n);
}
