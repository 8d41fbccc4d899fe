/*
 * backing.c - the backing file: where whole evicted pool pages go, still
 * compressed, and where faults read them back from.
 *
 * File layout
 * -----------
 * The file is an array of 4 KiB blocks.  Each write appends its objects to a
 * *stream*: every object is a 4-byte checksum followed by its bytes, packed
 * back to back with no alignment, and an object that does not fit in the
 * rest of a block runs on into the next block of the same write.  The
 * stream continues from write to write: the block the last write ended in
 * stays *open*, and the next write starts in its tail, so a batch of 3.7 KiB
 * does not waste the rest of a block.  The blocks of one write need not be
 * adjacent in the file; each block's descriptor records (next) the block its
 * stream ran on into, which is all a reader of a straddling object needs.
 * Runs of adjacent blocks, the common case, are written with one pwrite.
 *
 * A block is written only in its unused tail, never where a live object is,
 * so reads of other objects in it need no coordination with the write.
 *
 * Locations and liveness
 * ----------------------
 * An object is named by (block, offset, length, index), packed into 64 bits
 * for the caller's page-table entry (see backing.h).  index numbers the
 * objects that start in a block; the block's descriptor keeps a 64-bit
 * bitmap of which of them are live, so a read or free of a freed location
 * fails instead of returning stale bytes or freeing twice.  At most
 * UZS_BACKING_BLOCK_OBJS objects start in a block: a write that has used up
 * a block's indices moves to a fresh block, wasting the rest, which only
 * happens for objects averaging under 60 bytes (rare: zero and same-filled
 * pages are never stored).
 *
 * Each descriptor also counts the live objects with a byte in its block
 * (live).  When that count drops to zero (and the block is not open) the
 * block is free: it goes on the pending list, still holding its disk space,
 * and later writes take free blocks before growing the file.  Space comes
 * back by punching holes (FALLOC_FL_PUNCH_HOLE): a write punches the free
 * blocks beyond the few it keeps for quick reuse, uzs_backing_trim() punches
 * them all and truncates the free blocks at the end of the file.  Frees are
 * pure bookkeeping, so the fault path never waits for a system call.
 *
 * Checksums
 * ---------
 * The 4 bytes before each object hash its location and its bytes.  A read
 * whose checksum does not match fails with -EBADMSG: a punched or truncated
 * block (zeros), a block the file system lost after a writeback error, or a
 * stale location all come back as errors, never as plausible data.
 *
 * Failure
 * -------
 * A write builds its blocks in a staging buffer, picks its blocks and the
 * objects' locations, writes, and only then records anything.  If pwrite
 * fails (ENOSPC, EFBIG, EIO), the blocks it took go back to the free lists,
 * the file is cut back to its old size if it had grown, and the caller
 * keeps its data: nothing was recorded.
 *
 * Locking
 * -------
 * lock covers every descriptor and counter, and is held only for
 * bookkeeping, never across I/O.  wlock serializes writes and trims, and
 * owns the staging buffer and the write plan; a write holds it across its
 * pwrite, so frees and reads (which take only lock) never wait for I/O.
 * Order: wlock before lock.
 *
 * Memory
 * ------
 * All state is mmap'd (mmap_region.h), never malloc'd.  Block descriptors
 * live in chunks of CHUNK_BLOCKS, mapped as the file grows, under a
 * directory in the main structure: they never move.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backing.h"
#include "mmap_region.h"
#include "own_fds.h"

/* The checksum before each object. */
#define HDR 4u

/* Descriptors per chunk: 64 Ki * 24 B = 1.5 MiB, describing 256 MiB of file. */
#define CHUNK_SHIFT 16u
#define CHUNK_BLOCKS (1u << CHUNK_SHIFT)
#define NCHUNKS ((uint32_t)(UZS_BACKING_MAX_BLOCKS >> CHUNK_SHIFT))

/*
 * Blocks one write can touch: its object bytes and checksums (33 KiB, 9
 * blocks), the open block it starts in, and a block skipped each time 64
 * objects have started in one (4 at most for 256 objects).
 */
#define STAGE_BLOCKS 16u

/* Free blocks a write leaves unpunched for quick reuse (256 KiB): under
 * steady churn, frees and writes balance and no hole is punched at all. */
#define PENDING_KEEP 64u

#define NIL UINT32_MAX

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

enum block_state {
	BS_USED = 1,            /* live objects, or the open block */
	BS_PENDING,             /* free, still holding space: pending list */
	BS_PUNCHED,             /* free, a hole: punched list */
	BS_TAKEN,               /* claimed by a write or trim in progress */
};

struct block {
	uint64_t starts;        /* bit i: the object of index i is live */
	uint32_t next;          /* block the stream ran on into, or NIL */
	uint32_t prev_free, next_free; /* free list links */
	uint16_t live;          /* live objects with a byte in this block */
	uint8_t nstarts;        /* indices handed out */
	uint8_t state;          /* enum block_state */
};

struct block_list {
	uint32_t head, tail, count;
};

/* What a write will do, worked out before any I/O.  Owned by wlock. */
struct plan {
	unsigned nblk;          /* blocks of the stream, in stream order */
	uint32_t blk[STAGE_BLOCKS];
	uint32_t used_end[STAGE_BLOCKS]; /* bytes of each used once written */
	uint16_t live_add[STAGE_BLOCKS];
	uint8_t nstarts[STAGE_BLOCKS];
	uint64_t starts_add[STAGE_BLOCKS];
	bool first_is_open;     /* blk[0] is the open block, from first_off */
	uint32_t first_off;
	uint32_t end_off;       /* end of the stream in blk[nblk - 1] */
	uint32_t old_nblocks;
	uint8_t obj_j[UZS_BACKING_BATCH_MAX_OBJS];  /* stream block of each */
	uint16_t obj_off[UZS_BACKING_BATCH_MAX_OBJS];
	uint8_t obj_idx[UZS_BACKING_BATCH_MAX_OBJS];
	uint64_t locs[UZS_BACKING_BATCH_MAX_OBJS];
};

struct uzs_backing {
	pthread_mutex_t lock;
	pthread_mutex_t wlock;
	int fd;
	uint32_t nblocks;       /* blocks in the file */
	uint32_t max_blocks;
	uint32_t open;          /* block the next write appends to, or NIL */
	uint32_t open_off;      /* where in it */
	struct block_list pending, punched;
	struct uzs_backing_stats st;
	unsigned char *stage;   /* STAGE_BLOCKS blocks; owned by wlock */
	struct plan plan;       /* owned by wlock */
	struct block *chunk[NCHUNKS];
};

/* ------------------------------------------------------------ locations */

#define LOC_VALID (1ull << 63)
#define LOC_RESERVED (3ull << 61)

uint64_t uzs_backing_loc_encode(const struct uzs_backing_loc *l)
{
	if (l->block >= UZS_BACKING_MAX_BLOCKS || l->offset >= UZS_BACKING_BLOCK ||
	    l->len == 0 || l->len > UZS_BACKING_OBJ_MAX ||
	    l->index >= UZS_BACKING_BLOCK_OBJS)
		return 0;
	return LOC_VALID | (uint64_t)l->block << 30 | (uint64_t)l->index << 24 |
	       (uint64_t)l->offset << 12 | (uint64_t)(l->len - 1);
}

int uzs_backing_loc_decode(uint64_t v, struct uzs_backing_loc *l)
{
	if (!(v & LOC_VALID) || (v & LOC_RESERVED))
		return -EINVAL;
	l->block = (uint32_t)(v >> 30) & 0x7fffffff;
	l->index = (uint8_t)((v >> 24) & 0x3f);
	l->offset = (uint16_t)((v >> 12) & 0xfff);
	l->len = (uint16_t)((v & 0xfff) + 1);
	return 0;
}

/* ------------------------------------------------------------ checksums */

static uint64_t rotl64(uint64_t x, unsigned r)
{
	return x << r | x >> (64 - r);
}

/* An xxhash64-style round per 8-byte word, seeded with the location so a
 * misdirected or stale read fails too.  ~0.2 ns/byte: cheap next to I/O. */
static uint32_t obj_checksum(uint64_t loc, const unsigned char *p, size_t len)
{
	const uint64_t k1 = 0x9e3779b185ebca87ull, k2 = 0xc2b2ae3d27d4eb4full;
	uint64_t h = loc * k2 + len, w;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		memcpy(&w, p + i, 8);
		h = rotl64(h ^ (w * k2), 31) * k1;
	}
	if (i < len) {
		w = 0;
		memcpy(&w, p + i, len - i);
		h = rotl64(h ^ (w * k2), 31) * k1;
	}
	h ^= h >> 33;
	h *= k2;
	h ^= h >> 29;
	return (uint32_t)(h ^ h >> 32);
}

/* ---------------------------------------------------- block descriptors */

static struct block *blk(struct uzs_backing *b, uint32_t id)
{
	return &b->chunk[id >> CHUNK_SHIFT][id & (CHUNK_BLOCKS - 1)];
}

static int ensure_chunk(struct uzs_backing *b, uint32_t id)
{
	uint32_t c = id >> CHUNK_SHIFT;

	if (b->chunk[c])
		return 0;
	b->chunk[c] = uzs_region_reserve((size_t)CHUNK_BLOCKS * sizeof(struct block));
	return b->chunk[c] ? 0 : -ENOMEM;
}

static void list_push(struct uzs_backing *b, struct block_list *l, uint32_t id)
{
	struct block *d = blk(b, id);

	d->prev_free = NIL;
	d->next_free = l->head;
	if (l->head != NIL)
		blk(b, l->head)->prev_free = id;
	else
		l->tail = id;
	l->head = id;
	l->count++;
}

static void list_del(struct uzs_backing *b, struct block_list *l, uint32_t id)
{
	struct block *d = blk(b, id);

	if (d->prev_free != NIL)
		blk(b, d->prev_free)->next_free = d->next_free;
	else
		l->head = d->next_free;
	if (d->next_free != NIL)
		blk(b, d->next_free)->prev_free = d->prev_free;
	else
		l->tail = d->prev_free;
	d->prev_free = d->next_free = NIL;
	l->count--;
}

static struct block_list *list_of(struct uzs_backing *b, const struct block *d)
{
	return d->state == BS_PENDING ? &b->pending : &b->punched;
}

/* A block none of whose bytes is live any more: free, space still held. */
static void block_release(struct uzs_backing *b, uint32_t id)
{
	struct block *d = blk(b, id);

	d->starts = 0;
	d->nstarts = 0;
	d->live = 0;
	d->next = NIL;
	d->state = BS_PENDING;
	list_push(b, &b->pending, id);
}

/* Take a free block for a write, preferring one whose page may still be
 * cached and whose space is held, else a hole, else grow the file. */
static int block_take(struct uzs_backing *b, uint32_t *id)
{
	struct block_list *l = b->pending.count ? &b->pending : &b->punched;
	int rc;

	if (l->count) {
		*id = l->head;
		list_del(b, l, *id);
	} else {
		if (b->nblocks >= b->max_blocks)
			return -ENOSPC;
		rc = ensure_chunk(b, b->nblocks);
		if (rc)
			return rc;
		*id = b->nblocks++;
	}
	blk(b, *id)->state = BS_TAKEN;
	return 0;
}

/* Give a taken block back: growth is undone, a reused block goes back as
 * pending (a failed write may have put bytes, and so space, in it). */
static void block_untake(struct uzs_backing *b, uint32_t id, uint32_t old_nblocks)
{
	if (id >= old_nblocks)
		return;         /* the caller resets nblocks */
	block_release(b, id);
}

/*
 * The blocks an object's bytes (checksum included) lie in, following the
 * stream; validates that loc names a live object.  Under lock.
 */
static int object_span(struct uzs_backing *b, const struct uzs_backing_loc *l,
		       uint32_t ids[3], unsigned *n)
{
	struct block *d;
	uint32_t end = l->offset + HDR + l->len;

	if (l->block >= b->nblocks)
		return -EINVAL;
	d = blk(b, l->block);
	if (d->state != BS_USED || l->index >= d->nstarts ||
	    !(d->starts & (1ull << l->index)))
		return -ENOENT;
	*n = (end + UZS_BACKING_BLOCK - 1) / UZS_BACKING_BLOCK;
	ids[0] = l->block;
	for (unsigned k = 1; k < *n; k++) {
		ids[k] = blk(b, ids[k - 1])->next;
		/* Cannot happen unless the descriptors are corrupt. */
		if (ids[k] >= b->nblocks || blk(b, ids[k])->state != BS_USED)
			return -EIO;
	}
	return 0;
}

/* --------------------------------------------------------- write: plan */

static int plan_new_block(struct plan *pl, unsigned *j, uint32_t *pos)
{
	if (pl->nblk == STAGE_BLOCKS)
		return -EINVAL;  /* cannot happen within the batch limits */
	*j = pl->nblk++;
	pl->nstarts[*j] = 0;
	pl->live_add[*j] = 0;
	pl->starts_add[*j] = 0;
	pl->used_end[*j] = 0;
	*pos = 0;
	return 0;
}

/*
 * Lay the objects out on the stream: which stream block (j) and offset
 * each starts at, and what each block gains.  No block is chosen yet.
 * Under lock (reads the open block).
 */
static int plan_layout(struct uzs_backing *b, const struct uzs_backing_obj *objs,
		       unsigned n)
{
	struct plan *pl = &b->plan;
	unsigned j;
	uint32_t pos;

	pl->nblk = 0;
	plan_new_block(pl, &j, &pos);
	pl->first_is_open = b->open != NIL;
	pl->first_off = 0;
	if (pl->first_is_open) {
		pl->first_off = pos = b->open_off;
		pl->nstarts[0] = blk(b, b->open)->nstarts;
		pl->used_end[0] = pos;
	}
	for (unsigned i = 0; i < n; i++) {
		uint32_t left = HDR + (uint32_t)objs[i].len;

		if ((pos == UZS_BACKING_BLOCK ||
		     pl->nstarts[j] == UZS_BACKING_BLOCK_OBJS) &&
		    plan_new_block(pl, &j, &pos))
			return -EINVAL;
		pl->obj_j[i] = (uint8_t)j;
		pl->obj_off[i] = (uint16_t)pos;
		pl->obj_idx[i] = pl->nstarts[j]++;
		pl->starts_add[j] |= 1ull << pl->obj_idx[i];
		for (;;) {
			uint32_t take = UZS_BACKING_BLOCK - pos;

			if (take > left)
				take = left;
			pos += take;
			left -= take;
			pl->live_add[j]++;
			pl->used_end[j] = pos;
			if (!left)
				break;
			if (plan_new_block(pl, &j, &pos))
				return -EINVAL;
		}
	}
	pl->end_off = pos;
	return 0;
}

static void sort_ids(uint32_t *v, unsigned n)
{
	for (unsigned i = 1; i < n; i++) {
		uint32_t x = v[i];
		unsigned k = i;

		for (; k > 0 && v[k - 1] > x; k--)
			v[k] = v[k - 1];
		v[k] = x;
	}
}

/* Undo plan_blocks: give back every block taken so far (blk[first..upto)). */
static void plan_untake(struct uzs_backing *b, unsigned upto)
{
	struct plan *pl = &b->plan;

	for (unsigned j = pl->first_is_open; j < upto; j++)
		block_untake(b, pl->blk[j], pl->old_nblocks);
	b->nblocks = pl->old_nblocks;
}

/*
 * Choose the blocks of the stream: the open block first if the stream starts
 * there, then free or new blocks in ascending order, so that blocks that are
 * adjacent in the file are adjacent in the stream and go out in one pwrite.
 * Then the objects' locations are known.  Under lock.
 */
static int plan_blocks(struct uzs_backing *b, const struct uzs_backing_obj *objs,
		       unsigned n)
{
	struct plan *pl = &b->plan;
	unsigned first = pl->first_is_open;
	int rc;

	pl->old_nblocks = b->nblocks;
	if (first)
		pl->blk[0] = b->open;
	for (unsigned j = first; j < pl->nblk; j++) {
		rc = block_take(b, &pl->blk[j]);
		if (rc) {
			plan_untake(b, j);
			return rc;
		}
	}
	sort_ids(pl->blk + first, pl->nblk - first);
	for (unsigned i = 0; i < n; i++) {
		struct uzs_backing_loc l = {
			.block = pl->blk[pl->obj_j[i]], .offset = pl->obj_off[i],
			.len = (uint16_t)objs[i].len, .index = pl->obj_idx[i],
		};

		pl->locs[i] = uzs_backing_loc_encode(&l);
	}
	return 0;
}

/* ------------------------------------------------------- write: the I/O */

static unsigned char *stage_at(struct uzs_backing *b, unsigned j, uint32_t off)
{
	return b->stage + (size_t)j * UZS_BACKING_BLOCK + off;
}

/* Copy checksums and objects into the staging buffer; zero the rest of
 * every block written, so no stale bytes of the buffer reach the file. */
static void stage_fill(struct uzs_backing *b, const struct uzs_backing_obj *objs,
		       unsigned n)
{
	struct plan *pl = &b->plan;

	for (unsigned i = 0; i < n; i++) {
		unsigned char *p = stage_at(b, pl->obj_j[i], pl->obj_off[i]);
		uint32_t sum = obj_checksum(pl->locs[i], objs[i].data, objs[i].len);

		memcpy(p, &sum, HDR);
		memcpy(p + HDR, objs[i].data, objs[i].len);
	}
	for (unsigned j = 0; j < pl->nblk; j++)
		memset(stage_at(b, j, pl->used_end[j]), 0,
		       UZS_BACKING_BLOCK - pl->used_end[j]);
}

static int pwrite_full(int fd, const unsigned char *p, size_t len, off_t off)
{
	while (len) {
		ssize_t w = pwrite(fd, p, len, off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		p += w;
		off += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Write the stream's blocks, one pwrite per run of adjacent blocks.  Whole
 * blocks (but the open block's used head), so no page needs reading first. */
static int stage_write(struct uzs_backing *b, uint64_t *written)
{
	struct plan *pl = &b->plan;
	unsigned j = 0;

	*written = 0;
	while (j < pl->nblk) {
		uint32_t skip = (j == 0) ? pl->first_off : 0;
		unsigned k = j;
		size_t len;
		int rc;

		while (k + 1 < pl->nblk && pl->blk[k + 1] == pl->blk[k] + 1)
			k++;
		len = (size_t)(k - j + 1) * UZS_BACKING_BLOCK - skip;
		rc = pwrite_full(b->fd, stage_at(b, j, skip), len,
				 (off_t)pl->blk[j] * UZS_BACKING_BLOCK + skip);
		if (rc)
			return rc;
		*written += len;
		j = k + 1;
	}
	return 0;
}

/* ----------------------------------------------------- write: commit */

/* The write is on file: record its objects and move the open block.
 * Under lock. */
static void plan_commit(struct uzs_backing *b, const struct uzs_backing_obj *objs,
			unsigned n, uint64_t *locs)
{
	struct plan *pl = &b->plan;
	uint32_t last = pl->blk[pl->nblk - 1];

	for (unsigned j = 0; j < pl->nblk; j++) {
		struct block *d = blk(b, pl->blk[j]);

		if (d->state == BS_TAKEN) {
			d->state = BS_USED;
			d->live = 0;
			d->starts = 0;
			d->next = NIL;
		}
		d->live = (uint16_t)(d->live + pl->live_add[j]);
		d->starts |= pl->starts_add[j];
		d->nstarts = pl->nstarts[j];
		if (j > 0)
			blk(b, pl->blk[j - 1])->next = pl->blk[j];
	}
	if (pl->end_off < UZS_BACKING_BLOCK &&
	    pl->nstarts[pl->nblk - 1] < UZS_BACKING_BLOCK_OBJS) {
		b->open = last;
		b->open_off = pl->end_off;
	} else {
		b->open = NIL;
	}
	/* An old open block the stream left is not released here: the first
	 * object of this write started in it, so it is live. */
	for (unsigned i = 0; i < n; i++) {
		locs[i] = pl->locs[i];
		b->st.object_bytes += objs[i].len;
	}
	b->st.objects += n;
	b->st.objects_written += n;
}

/* ------------------------------------------------------ giving space back */

static int punch(struct uzs_backing *b, uint32_t first, uint32_t count)
{
	int rc = fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			   (off_t)first * UZS_BACKING_BLOCK,
			   (off_t)count * UZS_BACKING_BLOCK);

	return rc ? -errno : 0;
}

#define PUNCH_BATCH 256u

/*
 * Punch pending blocks, coldest first, until at most keep remain.  Under
 * wlock (not lock): the blocks are taken off the list, punched in runs of
 * adjacent ids, and put on the punched list (or back, if punching failed).
 */
static long punch_pending(struct uzs_backing *b, uint32_t keep)
{
	uint32_t ids[PUNCH_BATCH];
	long done = 0;
	int err = 0;

	for (;;) {
		unsigned n = 0, j = 0;

		pthread_mutex_lock(&b->lock);
		while (b->st.punch_supported && b->pending.count > keep &&
		       n < PUNCH_BATCH) {
			uint32_t id = b->pending.tail;

			list_del(b, &b->pending, id);
			blk(b, id)->state = BS_TAKEN;
			ids[n++] = id;
		}
		pthread_mutex_unlock(&b->lock);
		if (!n)
			break;
		sort_ids(ids, n);
		while (j < n && !err) {
			unsigned k = j;

			while (k + 1 < n && ids[k + 1] == ids[k] + 1)
				k++;
			err = punch(b, ids[j], k - j + 1);
			if (!err)
				j = k + 1;
		}
		pthread_mutex_lock(&b->lock);
		/* Highest first, so the lowest ends up at the head and is reused
		 * first: the end of the file stays free, for truncation. */
		for (unsigned i = n; i-- > 0;) {
			struct block *d = blk(b, ids[i]);

			d->state = i < j ? BS_PUNCHED : BS_PENDING;
			list_push(b, list_of(b, d), ids[i]);
		}
		b->st.blocks_punched += j;
		if (err == -EOPNOTSUPP)
			b->st.punch_supported = false;
		pthread_mutex_unlock(&b->lock);
		done += j;
		if (err)
			break;
	}
	return err && err != -EOPNOTSUPP ? err : done;
}

/* Cut free blocks off the end of the file.  Under wlock. */
static long truncate_tail(struct uzs_backing *b)
{
	uint32_t cut = 0, nblocks;

	pthread_mutex_lock(&b->lock);
	while (b->nblocks) {
		uint32_t id = b->nblocks - 1;
		struct block *d = blk(b, id);

		if (d->state != BS_PENDING && d->state != BS_PUNCHED)
			break;
		list_del(b, list_of(b, d), id);
		b->nblocks--;
		cut++;
	}
	nblocks = b->nblocks;
	b->st.blocks_truncated += cut;
	pthread_mutex_unlock(&b->lock);
	/* If this fails, the blocks past nblocks are merely unused. */
	if (cut && ftruncate(b->fd, (off_t)nblocks * UZS_BACKING_BLOCK))
		return 0;
	return cut;
}

/* ------------------------------------------------------------ public API */

/* A write failed: count it, give back the blocks it took.  Under lock. */
static void write_failed(struct uzs_backing *b, int rc, bool planned)
{
	if (planned)
		plan_untake(b, b->plan.nblk);
	b->st.write_errors++;
	b->st.last_write_error = -rc;
}

int uzs_backing_write_batch(struct uzs_backing *b,
			    const struct uzs_backing_obj *objs, unsigned n,
			    uint64_t *locs)
{
	struct plan *pl = &b->plan;
	uint64_t total = 0, written = 0;
	bool grew = false, punch_more = false;
	int rc;

	if (!objs || !locs || n == 0 || n > UZS_BACKING_BATCH_MAX_OBJS)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		if (!objs[i].data || objs[i].len == 0 ||
		    objs[i].len > UZS_BACKING_OBJ_MAX)
			return -EINVAL;
		total += objs[i].len;
	}
	if (total > UZS_BACKING_BATCH_MAX_BYTES)
		return -EINVAL;

	pthread_mutex_lock(&b->wlock);
	pthread_mutex_lock(&b->lock);
	rc = plan_layout(b, objs, n);
	if (!rc)
		rc = plan_blocks(b, objs, n);
	if (rc)
		write_failed(b, rc, false);
	pthread_mutex_unlock(&b->lock);
	if (rc)
		goto out;

	stage_fill(b, objs, n);
	rc = stage_write(b, &written);

	pthread_mutex_lock(&b->lock);
	if (rc) {
		grew = b->nblocks > pl->old_nblocks;
		write_failed(b, rc, true);
	} else {
		plan_commit(b, objs, n, locs);
		b->st.writes++;
		b->st.bytes_written += total;
		b->st.file_bytes_written += written;
		punch_more = b->pending.count > PENDING_KEEP;
	}
	pthread_mutex_unlock(&b->lock);

	/* A failed write may have grown the file part way: give that back.
	 * Shrinking needs no space and is not limited by RLIMIT_FSIZE. */
	if (grew && ftruncate(b->fd, (off_t)pl->old_nblocks * UZS_BACKING_BLOCK)) {
		/* Then the blocks past nblocks are merely unused. */
	}
	if (punch_more)
		punch_pending(b, PENDING_KEEP);
out:
	pthread_mutex_unlock(&b->wlock);
	return rc;
}

/*
 * Read stream bytes [from, to) of an object (its checksum, then its bytes)
 * from the file at off: the checksum part lands in hdr, the rest in dst.
 */
static int read_stream(int fd, off_t off, unsigned char *hdr, unsigned char *dst,
		       uint32_t from, uint32_t to)
{
	while (from < to) {
		struct iovec iov[2];
		int cnt = 0;
		ssize_t r;

		if (from < HDR) {
			iov[cnt].iov_base = hdr + from;
			iov[cnt++].iov_len = (to < HDR ? to : HDR) - from;
		}
		if (to > HDR) {
			uint32_t s = from > HDR ? from : HDR;

			iov[cnt].iov_base = dst + (s - HDR);
			iov[cnt++].iov_len = to - s;
		}
		r = preadv(fd, iov, cnt, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;    /* past the end of the file */
		from += (uint32_t)r;
		off += r;
	}
	return 0;
}

/* Read an object's span: one preadv per run of adjacent blocks. */
static int read_span(int fd, const struct uzs_backing_loc *l, const uint32_t *ids,
		     unsigned n, unsigned char *hdr, unsigned char *dst)
{
	uint32_t from = 0, end = HDR + l->len;
	unsigned j = 0;

	while (j < n) {
		uint32_t skip = j == 0 ? l->offset : 0, to;
		unsigned k = j;
		int rc;

		while (k + 1 < n && ids[k + 1] == ids[k] + 1)
			k++;
		to = from + (k - j + 1) * UZS_BACKING_BLOCK - skip;
		if (to > end)
			to = end;
		rc = read_stream(fd, (off_t)ids[j] * UZS_BACKING_BLOCK + skip,
				 hdr, dst, from, to);
		if (rc)
			return rc;
		from = to;
		j = k + 1;
	}
	return 0;
}

long uzs_backing_read(struct uzs_backing *b, uint64_t loc, void *dst,
		      size_t dstlen)
{
	struct uzs_backing_loc l;
	unsigned char hdr[HDR];
	uint32_t ids[3], sum;
	unsigned n;
	int rc;

	if (uzs_backing_loc_decode(loc, &l) || !dst || dstlen < l.len)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	rc = object_span(b, &l, ids, &n);
	pthread_mutex_unlock(&b->lock);
	if (rc)
		return rc;

	rc = read_span(b->fd, &l, ids, n, hdr, dst);
	memcpy(&sum, hdr, HDR);
	if (!rc && sum != obj_checksum(loc, dst, l.len))
		rc = -EBADMSG;

	pthread_mutex_lock(&b->lock);
	if (rc == -EBADMSG) {
		b->st.checksum_errors++;
	} else if (rc) {
		b->st.read_errors++;
	} else {
		b->st.reads++;
		b->st.bytes_read += l.len;
	}
	pthread_mutex_unlock(&b->lock);
	return rc ? rc : (long)l.len;
}

int uzs_backing_free(struct uzs_backing *b, uint64_t loc)
{
	struct uzs_backing_loc l;
	uint32_t ids[3];
	unsigned n;
	int rc;

	if (uzs_backing_loc_decode(loc, &l))
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	rc = object_span(b, &l, ids, &n);
	if (!rc) {
		blk(b, ids[0])->starts &= ~(1ull << l.index);
		for (unsigned k = 0; k < n; k++) {
			struct block *d = blk(b, ids[k]);

			if (--d->live == 0 && ids[k] != b->open)
				block_release(b, ids[k]);
		}
		b->st.objects--;
		b->st.object_bytes -= l.len;
		b->st.frees++;
	}
	pthread_mutex_unlock(&b->lock);
	return rc;
}

long uzs_backing_trim(struct uzs_backing *b)
{
	long cut, punched;

	pthread_mutex_lock(&b->wlock);
	/* An open block nothing lives in is just a free block. */
	pthread_mutex_lock(&b->lock);
	if (b->open != NIL && !blk(b, b->open)->live) {
		block_release(b, b->open);
		b->open = NIL;
	}
	pthread_mutex_unlock(&b->lock);
	/* Truncate first: no point punching what is about to be cut off. */
	cut = truncate_tail(b);
	punched = punch_pending(b, 0);
	pthread_mutex_unlock(&b->wlock);
	return punched < 0 ? punched : cut + punched;
}

void uzs_backing_stats(struct uzs_backing *b, struct uzs_backing_stats *out)
{
	pthread_mutex_lock(&b->lock);
	*out = b->st;
	out->blocks_free = (uint64_t)b->pending.count + b->punched.count;
	out->blocks_unpunched = b->pending.count;
	out->blocks_used = b->nblocks - out->blocks_free;
	out->file_bytes = (uint64_t)b->nblocks * UZS_BACKING_BLOCK;
	pthread_mutex_unlock(&b->lock);
}

int uzs_backing_fd(const struct uzs_backing *b)
{
	return b->fd;
}

/* ------------------------------------------------------ opening the file */

/*
 * One line of error text, without stdio:
 *   uzswap: backing file PATH: WHAT: REASON[ (HINT)]
 */
static int fail(char *err, size_t errlen, int e, const char *path,
		const char *what, const char *hint)
{
	const char *reason = strerrordesc_np(e);
	const char *parts[] = {
		"uzswap: backing file ", path, ": ", what, ": ",
		reason ? reason : "unknown error", hint ? " (" : "",
		hint ? hint : "", hint ? ")" : "",
	};
	size_t used = 0;

	if (!err || !errlen)
		return -e;
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		size_t len = strlen(parts[i]);

		if (len > errlen - 1 - used)
			len = errlen - 1 - used;
		memcpy(err + used, parts[i], len);
		used += len;
	}
	err[used] = '\0';
	return -e;
}

/* The file gets no name: O_TMPFILE, else create a unique name and unlink
 * it at once (file systems without O_TMPFILE, kernels before 3.11). */
static int open_in_dir(const char *dir, unsigned flags, char *err, size_t errlen)
{
	static const char name[] = "/.uzswap-backing-XXXXXX";
	char tmpl[PATH_MAX];
	size_t len = strlen(dir);
	int fd;

	if (!(flags & UZS_BACKING_NO_TMPFILE)) {
		fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
		/* EISDIR: a kernel that does not know O_TMPFILE. */
		if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
			return fail(err, errlen, errno, dir, "cannot create a file in it", NULL);
	}
	if (len + sizeof(name) > sizeof(tmpl))
		return fail(err, errlen, ENAMETOOLONG, dir, "cannot create a file in it", NULL);
	memcpy(tmpl, dir, len);
	memcpy(tmpl + len, name, sizeof(name));
	fd = mkostemp(tmpl, O_CLOEXEC);
	if (fd < 0)
		return fail(err, errlen, errno, dir, "cannot create a file in it", NULL);
	if (unlink(tmpl)) {
		int e = errno;

		close(fd);
		return fail(err, errlen, e, tmpl, "cannot unlink it", NULL);
	}
	return fd;
}

/* A new file of that name, unlinked at once.  Never an existing file: it
 * might be the user's.  The name is unlinked only if it is still ours. */
static int create_named(const char *path, char *err, size_t errlen)
{
	struct stat fs, ls;
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		      0600);

	if (fd < 0)
		return fail(err, errlen, errno, path, "cannot create it",
			    errno == EEXIST ? "name a directory or a new file" : NULL);
	if (fstat(fd, &fs) || lstat(path, &ls) || fs.st_dev != ls.st_dev ||
	    fs.st_ino != ls.st_ino) {
		close(fd);
		return fail(err, errlen, EEXIST, path, "replaced while being opened", NULL);
	}
	if (unlink(path)) {
		int e = errno;

		close(fd);
		return fail(err, errlen, e, path, "cannot unlink it", NULL);
	}
	return fd;
}

static int open_file(const struct uzs_backing_config *cfg, char *err,
		     size_t errlen)
{
	const char *path = cfg->path;
	struct stat st;

	if (!path || !*path) {
		path = getenv("TMPDIR");
		if (!path || !*path)
			path = "/tmp";
		return open_in_dir(path, cfg->flags, err, errlen);
	}
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return open_in_dir(path, cfg->flags, err, errlen);
	return create_named(path, err, errlen);
}

int uzs_backing_open(const struct uzs_backing_config *config,
		     struct uzs_backing **out, char *err, size_t errlen)
{
	struct uzs_backing_config def = { 0 };
	struct uzs_backing *b;
	struct statfs sfs;
	const char *name;
	uint64_t max;
	int fd;

	if (err && errlen)
		err[0] = '\0';
	if (!config)
		config = &def;
	name = config->path && *config->path ? config->path : "(in $TMPDIR)";
	max = config->max_bytes ? config->max_bytes : UZS_BACKING_MAX_BYTES;
	if (max < UZS_BACKING_BLOCK || max > UZS_BACKING_MAX_BYTES)
		return fail(err, errlen, EINVAL, name, "size cap out of range",
			    NULL);
	fd = open_file(config, err, errlen);
	if (fd < 0)
		return fd;
	/* Exactly 0600 whatever the umask: private, and ours to write. */
	if (fchmod(fd, 0600)) {
		int e = errno;

		close(fd);
		return fail(err, errlen, e, name, "cannot make it mode 0600", NULL);
	}
	b = uzs_region_reserve(sizeof(*b));
	if (b)
		b->stage = uzs_region_reserve((size_t)STAGE_BLOCKS * UZS_BACKING_BLOCK);
	if (!b || !b->stage) {
		uzs_region_unreserve(b, sizeof(*b));
		close(fd);
		return fail(err, errlen, ENOMEM, name, "no memory for its state",
			    NULL);
	}
	pthread_mutex_init(&b->lock, NULL);
	pthread_mutex_init(&b->wlock, NULL);
	fd = uzs_fd_own(fd);    /* moved: the old number is gone */
	b->fd = fd;
	b->max_blocks = (uint32_t)(max / UZS_BACKING_BLOCK);
	b->open = NIL;
	b->pending = b->punched = (struct block_list){ NIL, NIL, 0 };
	b->st.punch_supported = true;
	b->st.on_tmpfs = fstatfs(fd, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC;
	*out = b;
	return 0;
}

void uzs_backing_close(struct uzs_backing *b)
{
	if (!b)
		return;
	uzs_fd_close(b->fd);
	for (uint32_t c = 0; c < NCHUNKS && b->chunk[c]; c++)
		uzs_region_unreserve(b->chunk[c],
				     (size_t)CHUNK_BLOCKS * sizeof(struct block));
	uzs_region_unreserve(b->stage, (size_t)STAGE_BLOCKS * UZS_BACKING_BLOCK);
	/* No pthread_mutex_destroy: in a fork child a mutex may be locked by a
	 * thread that does not exist there; glibc mutexes hold no resources. */
	uzs_region_unreserve(b, sizeof(*b));
}
