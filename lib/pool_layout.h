/*
 * pool_layout.h - the pool's data structures, shared by pool.c (which owns
 * every mutation) and pool_check.c (which only reads them, to verify the
 * invariants in tests).  Not installed; see pool.c for the design.
 */
#ifndef UZS_POOL_LAYOUT_H
#define UZS_POOL_LAYOUT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "pool_internal.h"
#include "uzswap.h"

/*
 * Allocation granularity: one byte.  Objects are copied in and out with
 * memcpy, which does not need aligned addresses on the targets we run on,
 * so rounding would only waste memory: at 8 B it costs 3% of the space of
 * 120 B objects, more than the whole density budget.
 */
#define ZSPAGE_MAX_PAGES 2u
#define ZSPAGE_MAX_BYTES (ZSPAGE_MAX_PAGES * UZS_PAGE_SIZE)
/* Fragments per page, at most.  128 lets at least 64 objects of 56 B (the
 * seed's density goal for small objects) share a page, and bounds an
 * eviction batch to UZS_POOL_MAX_ZSPAGE_OBJS for a 2-page zspage. */
#define FRAGS_PER_PAGE 128u
#define ZSPAGE_MAX_FRAGS (FRAGS_PER_PAGE * ZSPAGE_MAX_PAGES)

/* The smallest head fragment an object is split for: a smaller hole is not
 * worth a second copy and a second fragment record. */
#define MIN_SPLIT 16u
/* Unswept free bytes (see struct zspage) that make a zspage worth a sweep.
 * Below this, filling it is not worth walking its fragments. */
#define SWEEP_MIN 128u

/* Free-space buckets, 32 B wide, keyed by a zspage's unswept free bytes. */
#define BUCKET_SHIFT 5u
#define NBUCKETS ((ZSPAGE_MAX_BYTES >> BUCKET_SHIFT) + 1)
#define BITMAP_WORDS ((NBUCKETS + 63) / 64)

#define NIL UINT32_MAX

/*
 * Empty zspages kept mapped, at most.  Giving a zspage's pages back is a
 * madvise(MADV_DONTNEED), and each one flushes the TLB of every CPU the
 * program runs on: 62 us a page on this VM while a program thread ran,
 * paid on the fault path whenever a restore emptied a zspage.  So empty
 * zspages wait here, ready for reuse without page faults, and when one
 * more comes they all go back to the OS in one call with one flush
 * (uzs_region_discard_many).  32 zspages hold 256 KiB at most; 16 left a
 * sequential read-back spending 9% of its CPU time on flushes.
 */
#define EMPTY_KEPT_MAX 32u

/* The handle table: a directory of lazily mapped chunks.  At most 2^31
 * slots, so a fragment reference (slot index * 2 + fragment) fits 32 bits
 * below NIL. */
#define HCHUNK_SHIFT 16u
#define HCHUNK_SLOTS (1u << HCHUNK_SHIFT)
#define HCHUNK_MAX 32767u

/*
 * One piece of an object: len bytes at offset in zspage.  next and prev
 * link the zspage's fragments in offset order; they hold fragment
 * references (see frag_ref), not slot indices.
 */
struct frag {
	uint32_t zspage;
	uint16_t offset;        /* bytes from the start of the zspage */
	uint16_t len;           /* 0: no such fragment */
	uint32_t next, prev;
};

/*
 * A handle's slot.  f[0] is the object's head, f[1] its tail when the
 * object is split (f[1].len == 0 otherwise).  A free slot has f[0].len == 0
 * and links the free list through f[0].next.
 */
struct handle_slot {
	uint64_t owner;
	struct frag f[2];
};

enum zspage_flags {
	ZS_ISOLATED = 1u << 0,  /* being evicted: off the LRU and the buckets */
	ZS_REFERENCED = 1u << 1,/* read since it last came up for eviction */
	ZS_FREE_SLOT = 1u << 2, /* descriptor names a free 1-page arena slot */
	ZS_DRAINING = 1u << 3,  /* compaction is emptying it: not a target */
};

struct zspage {
	uint64_t stamp;         /* allocation clock at last store */
	uint32_t lru_prev, lru_next;
	uint32_t bkt_prev, bkt_next; /* bucket list, or free-slot list */
	uint32_t first, last;   /* fragment references, in offset order */
	uint32_t generation;    /* bumped on release: eviction tickets */
	uint16_t used;          /* bytes of live fragments */
	uint16_t dust;          /* free bytes its last sweep left unused */
	uint16_t nfrags;
	int16_t bucket;         /* -1 when in no bucket */
	uint8_t npages;         /* 0 = no zspage here, else 1 or 2 */
	uint8_t npages_kept;    /* pages of the empty zspage kept here */
	uint8_t flags;
	uint32_t holes;         /* its known holes (struct recent_hole) */
	uint32_t hole_ends;     /* where they may end: see hole_bits */
};

/*
 * Known holes: free extents of zspages other than the cursor's, known
 * exactly, so that allocation can fill them without a sweep.  A free
 * unlinks its fragment between its neighbours, so the hole it leaves
 * (merged with the free space around it) costs nothing to compute then;
 * and when the cursor moves on, the holes it could not use are known too.
 * Allocation fills these before it sweeps another zspage or grows the
 * pool, which is what keeps churn from leaving free space behind.
 *
 * Each hole is on two lists: its size class (16 B wide, oldest first, with
 * a bitmap of the non-empty ones), which finds a fitting hole in O(1), and
 * its zspage's, which finds the holes a change to that zspage invalidates
 * without a scan of the table (and its hole_ends says where in the zspage
 * they may end, see hole_bits).  Holes smaller than MIN_SPLIT are not kept:
 * they are left to the sweeps.  Records live in a table reserved at pool
 * creation and touched as used.
 */
#define HSIZE_SHIFT 4u
#define NHSIZES ((ZSPAGE_MAX_BYTES >> HSIZE_SHIFT) + 1)
#define HSIZE_WORDS ((NHSIZES + 63) / 64)
/*
 * Holes known at most.  When the table is full the smallest hole makes
 * room, so it keeps the largest: the ones whole objects and split heads
 * need.  Small holes are better left to the sweeps, which see them next to
 * the free space around them: on the bench's churn, a table of every hole
 * (tens of thousands) packed real heap sizes worse (0.95) than one of
 * 512..4096 (0.983..0.984); 1024 did well on every trace.
 */
#define HOLES_MAX 1024u
/* Entries of the size class an object falls in looked at for the best
 * fit; past them, the next class up gives a fit at once. */
#define HSIZE_SCAN 8u

struct recent_hole {
	uint32_t zspage;        /* NIL while the record is free */
	uint16_t offset, len;
	uint32_t prev;          /* fragment reference, or NIL at offset 0 */
	uint32_t snext, sprev;  /* size class list; snext links free records */
	uint32_t znext, zprev;  /* the zspage's list */
};

/* A free extent of the cursor's zspage, and the fragment just before it. */
struct hole {
	uint16_t offset, len;
	uint32_t prev;          /* fragment reference, or NIL at offset 0 */
};

/*
 * Where allocations go: the holes of one zspage, found by one walk of its
 * fragments (a sweep) and handed out front to back.
 */
struct cursor {
	uint32_t zspage;        /* NIL: no zspage is being filled */
	uint32_t at, nholes;    /* holes[at] is the next to fill */
	bool reused;            /* the zspage held objects when swept */
	struct hole holes[ZSPAGE_MAX_FRAGS + 1];
};

struct uzs_pool {
	pthread_mutex_t lock;
	unsigned char *arena;
	struct zspage *zs;      /* one descriptor per arena page */
	uint32_t arena_pages;   /* virtual pages reserved */
	uint32_t arena_bump;    /* pages below this have been handed out */
	uint32_t max_pages;     /* cap on pages held by live zspages */
	uint32_t pages_held;
	unsigned zspage_pages;  /* config: 0 auto, 1, 2 */
	enum uzs_placement placement;

	uint32_t free_single;   /* list of free 1-page slots (via bkt_*) */
	uint32_t free_pair;     /* list of free 2-page slots */
	/* Empty zspages kept mapped (EMPTY_KEPT_MAX), by size: 1 or 2 pages,
	 * linked via bkt_next. */
	uint32_t kept[ZSPAGE_MAX_PAGES];
	uint32_t nkept;
	bool compacting;        /* in uzs_pool_compact: see cursor_spill */

	uint32_t lru_head, lru_tail; /* head = most recently used */
	uint64_t clock;
	uint32_t bucket_head[NBUCKETS];
	uint64_t bucket_bits[BITMAP_WORDS];
	struct cursor cur;
	/* Known holes: never in the cursor's zspage (its sweep took them)
	 * nor in one isolated, draining or at its fragment limit; no two
	 * overlap. */
	struct recent_hole *recent;
	uint32_t recent_cap;    /* records reserved */
	uint32_t recent_hwm;    /* records below this have been used */
	uint32_t recent_free;   /* free record list (via snext) */
	uint32_t nrecent;       /* holes known */
	uint32_t hsize_head[NHSIZES], hsize_tail[NHSIZES];
	uint64_t hsize_bits[HSIZE_WORDS];

	struct handle_slot *hchunk[HCHUNK_MAX];
	uint32_t handles_hwm;   /* slots below this exist */
	uint32_t handle_free;   /* free slot list */

	unsigned char bounce[UZS_PAGE_SIZE]; /* compaction's copy of an object */
	struct uzs_pool_stats st;
};

static inline uint32_t zs_capacity(const struct zspage *z)
{
	return z->npages * UZS_PAGE_SIZE;
}

static inline uint32_t zs_max_frags(const struct zspage *z)
{
	return z->npages * FRAGS_PER_PAGE;
}

static inline uint32_t zs_free(const struct zspage *z)
{
	return zs_capacity(z) - z->used;
}

/* Free bytes no sweep has yet found unusable. */
static inline uint32_t zs_unswept(const struct zspage *z)
{
	return zs_free(z) - z->dust;
}

/*
 * The bits of zspage.hole_ends for bytes [lo, hi) of zspage z: one bit per
 * 1/32 of it (128 B of a 1-page zspage, 256 B of a 2-page one).  Each known
 * hole sets the bit of its last byte, which stays put when allocation
 * takes the hole's first bytes.  A bit is cleared only when the zspage's
 * holes are all listed again, so it may stay set for a hole that is gone.
 * A free tests them to skip the walk of the zspage's holes (for those next
 * to the freed fragment) that most frees would make for nothing: in a
 * small pool a zspage can have several known holes (their table has a
 * fixed size), and the walk was a third of a free's time there.
 */
static inline uint32_t hole_bits(const struct zspage *z, uint32_t lo,
				 uint32_t hi)
{
	unsigned shift = 6u + z->npages;

	/* Bits lo >> shift to (hi - 1) >> shift; 2u << 31 wraps to 0. */
	return (2u << ((hi - 1) >> shift)) - (1u << (lo >> shift));
}

/* The bit of zspage.hole_ends for a hole that ends at end. */
static inline uint32_t hole_end_bit(const struct zspage *z, uint32_t end)
{
	return 1u << ((end - 1) >> (6u + z->npages));
}

static inline unsigned char *zs_base(struct uzs_pool *p, uint32_t id)
{
	return p->arena + (size_t)id * UZS_PAGE_SIZE;
}

static inline struct handle_slot *slot_at(struct uzs_pool *p, uint32_t idx)
{
	return &p->hchunk[idx >> HCHUNK_SHIFT][idx & (HCHUNK_SLOTS - 1)];
}

static inline uint32_t frag_ref(uint32_t idx, unsigned n)
{
	return idx * 2 + n;
}

static inline struct frag *frag_at(struct uzs_pool *p, uint32_t ref)
{
	return &slot_at(p, ref >> 1)->f[ref & 1];
}

static inline uint32_t slot_len(const struct handle_slot *s)
{
	return (uint32_t)s->f[0].len + s->f[1].len;
}

#endif
