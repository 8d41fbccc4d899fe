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

/* Allocation granularity.  8 keeps rounding waste under 0.4% of a typical
 * 1-2 KiB object while keeping every object 8-byte aligned for memcpy. */
#define OBJ_ALIGN 8u
#define ZSPAGE_MAX_PAGES 2u
#define ZSPAGE_MAX_BYTES (ZSPAGE_MAX_PAGES * UZS_PAGE_SIZE)
/* Objects per page, at most.  128 lets at least 64 objects of 56 B (the
 * seed's density goal for small objects) share a page, and bounds an eviction
 * batch to UZS_POOL_MAX_ZSPAGE_OBJS for a 2-page zspage. */
#define OBJS_PER_PAGE 128u

/* Free-space buckets.  32 B wide: a zspage in bucket k has at least 32k free
 * bytes, so every zspage of the bucket ceil(len/32) fits an object of len. */
#define BUCKET_SHIFT 5u
#define NBUCKETS ((ZSPAGE_MAX_BYTES >> BUCKET_SHIFT) + 1)
#define BITMAP_WORDS ((NBUCKETS + 63) / 64)

#define NIL UINT32_MAX

#define HCHUNK_SHIFT 16u
#define HCHUNK_SLOTS (1u << HCHUNK_SHIFT)
#define HCHUNK_MAX 65535u  /* handle indices stay below NIL */

struct handle_slot {
	uint64_t owner;
	uint32_t zspage;        /* NIL while the slot is free */
	uint16_t offset;        /* bytes from the start of the zspage */
	uint16_t len;           /* 1..UZS_PAGE_SIZE; 0 while free */
	uint32_t next, prev;    /* zspage's objects in offset order; next links
				 * the free list while the slot is free */
};

enum zspage_flags {
	ZS_ISOLATED = 1u << 0,  /* being evicted: off the LRU and the buckets */
	ZS_REFERENCED = 1u << 1,/* read since it last came up for eviction */
	ZS_FREE_SLOT = 1u << 2, /* descriptor names a free 1-page arena slot */
};

struct zspage {
	uint64_t stamp;         /* allocation clock at last store */
	uint32_t lru_prev, lru_next;
	uint32_t bkt_prev, bkt_next; /* bucket list, or free-slot list */
	uint32_t first_obj, last_obj;
	uint32_t generation;    /* bumped on release: eviction tickets */
	uint16_t used;          /* sum of aligned object sizes */
	uint16_t tail;          /* end of the last object */
	uint16_t nobjs;
	int16_t bucket;         /* -1 when in no bucket */
	uint8_t npages;         /* 0 = no zspage here, else 1 or 2 */
	uint8_t npages_cached;  /* pages of the cached empty zspage here */
	uint8_t flags;
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
	uint32_t cached;        /* one empty zspage kept mapped, or NIL */

	uint32_t lru_head, lru_tail; /* head = most recently used */
	uint32_t mru;           /* last zspage stored into, or NIL */
	uint64_t clock;
	uint32_t bucket_head[NBUCKETS];
	uint64_t bucket_bits[BITMAP_WORDS];

	struct handle_slot *hchunk[HCHUNK_MAX];
	uint32_t handles_hwm;   /* slots below this exist */
	uint32_t handle_free;   /* free slot list */

	struct uzs_pool_stats st;
};

static inline uint32_t obj_size(uint32_t len)
{
	return (len + OBJ_ALIGN - 1) & ~(OBJ_ALIGN - 1);
}

static inline uint32_t zs_capacity(const struct zspage *z)
{
	return z->npages * UZS_PAGE_SIZE;
}

static inline uint32_t zs_max_objs(const struct zspage *z)
{
	return z->npages * OBJS_PER_PAGE;
}

static inline uint32_t zs_free(const struct zspage *z)
{
	return zs_capacity(z) - z->used;
}

static inline unsigned char *zs_base(struct uzs_pool *p, uint32_t id)
{
	return p->arena + (size_t)id * UZS_PAGE_SIZE;
}

static inline struct handle_slot *slot_at(struct uzs_pool *p, uint32_t idx)
{
	return &p->hchunk[idx >> HCHUNK_SHIFT][idx & (HCHUNK_SLOTS - 1)];
}

#endif
