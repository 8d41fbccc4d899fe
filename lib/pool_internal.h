/*
 * pool_internal.h - knobs and checks of the pool that are not public API:
 * used by the unit tests and bench/pool, not by applications.
 */
#ifndef UZS_POOL_INTERNAL_H
#define UZS_POOL_INTERNAL_H

#include "uzswap.h"

/*
 * Where an object goes when the most recently used zspage has no room:
 *  BEST_FIT - the zspage with the least free space that fits (default);
 *  RECENT   - among zspages that fit, roughly the most recently used one.
 * bench/pool measures both; BEST_FIT packs denser.
 */
enum uzs_placement {
	UZS_PLACE_BEST_FIT = 0,
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

/* Which zspage holds a live object (UINT32_MAX for a bad handle). */
uint32_t uzs_pool_zspage_of(struct uzs_pool *pool, uzs_handle_t handle);

/* Pool memory held now: cheaper than uzs_pool_stats (no fullness walk). */
uint64_t uzs_pool_held_bytes(struct uzs_pool *pool);

/* Pages of a zspage (0 if the id names no live zspage). */
unsigned uzs_pool_zspage_pages(struct uzs_pool *pool, uint32_t zspage);

#endif
