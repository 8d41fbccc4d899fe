/*
 * pool_internal.h - knobs and checks of the pool that are not public API:
 * used by the unit tests and bench/pool, not by applications.
 */
#ifndef UZS_POOL_INTERNAL_H
#define UZS_POOL_INTERNAL_H

#include "uzswap.h"

/*
 * Which zspage allocations fill next once the one being filled (the most
 * recently used) has no hole left:
 *  EMPTIEST - the one with the most free space no sweep has yet found
 *             unusable (default: one walk of its fragments fills the most);
 *  RECENT   - roughly the most recently stored into among those worth a
 *             sweep (keeps objects stored together closer together).
 * bench/pool measures both.
 */
enum uzs_placement {
	UZS_PLACE_EMPTIEST = 0,
	UZS_PLACE_RECENT,
};
void uzs_pool_set_placement(struct uzs_pool *pool, enum uzs_placement p);

/*
 * Walk every structure of the pool and verify its invariants (object lists
 * in offset order without overlap, byte and object counts, bucket and LRU
 * membership, handle free list).  Returns 0, or -EUCLEAN naming nothing: the
 * tests call it after every batch of operations and fail on non-zero.
 */
int uzs_pool_check(struct uzs_pool *pool);

/* The LRU order of zspages, coldest first; returns how many were written. */
size_t uzs_pool_lru_order(struct uzs_pool *pool, uint32_t *ids, size_t max);

/* Which zspage holds a live object's head (UINT32_MAX for a bad handle). */
uint32_t uzs_pool_zspage_of(struct uzs_pool *pool, uzs_handle_t handle);

/*
 * Where a live object lies: its fragments (1, or 2 for an object split
 * across two holes), head first.  Fills zspage[] and offset[] (either may be
 * NULL) and returns the number of fragments, or 0 for a bad handle.
 */
unsigned uzs_pool_fragments_of(struct uzs_pool *pool, uzs_handle_t handle,
			       uint32_t zspage[2], uint32_t offset[2]);

/* Pool memory held now: cheaper than uzs_pool_stats (no fullness walk). */
uint64_t uzs_pool_held_bytes(struct uzs_pool *pool);

/* Leave the pool's arena and descriptors out of fork children (the engine's
 * pools: a child starts an engine of its own, and would otherwise carry the
 * parent's reserved address space twice over). */
void uzs_pool_not_inherited(struct uzs_pool *pool);

/* Memory the pool holds besides its zspages: its metadata in use
 * (uzs_pool_stats' metadata_bytes) and the empty zspages it keeps mapped
 * for reuse.  Cheap. */
uint64_t uzs_pool_overhead_bytes(struct uzs_pool *pool);

/* Pages of a zspage (0 if the id names no live zspage). */
unsigned uzs_pool_zspage_pages(struct uzs_pool *pool, uint32_t zspage);

#endif
