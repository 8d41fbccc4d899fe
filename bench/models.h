/*
 * models.h - accounting models of the kernel's zsmalloc and zbud, used by
 * bench/pool_bench to put libuzswap's pool next to its two ancestors.
 *
 * A model holds no object bytes: it tracks which object (a caller-chosen id,
 * 0..max_ids-1) sits in which slot of which zspage or zbud page, and so how
 * many pool pages the real allocator would hold after the same sequence of
 * allocations and frees.  Every placement decision follows the kernel's code
 * (see the top comment of each .c file for the rules and their source).
 *
 * Not thread-safe; one model per replay.
 */
#ifndef UZS_BENCH_MODELS_H
#define UZS_BENCH_MODELS_H

#include <stdint.h>

#define MODEL_PAGE_SIZE 4096u

/* ------------------------------------------------------------- zsmalloc */

struct zsm;

/* A model sized for object ids 0..max_ids-1, NULL if out of memory. */
struct zsm *zsm_create(uint32_t max_ids);
void zsm_destroy(struct zsm *m);

/* 0, or -1 if len is 0 or above a page (zs_malloc's -EINVAL/-ENOSPC). */
int zsm_alloc(struct zsm *m, uint32_t id, uint32_t len);
void zsm_free(struct zsm *m, uint32_t id);

/* zs_compact(): returns the pool pages it released. */
uint64_t zsm_compact(struct zsm *m);

/*
 * Free every object of the oldest zspage (creation order: zsmalloc keeps no
 * LRU) and so the zspage itself.  Returns the objects freed, 0 if the pool
 * is empty; *pages gets the pages released.
 */
uint32_t zsm_evict_oldest(struct zsm *m, uint32_t *pages);

struct zsm_stats {
	uint64_t objects;
	uint64_t stored_bytes;      /* sum of the callers' lengths */
	uint64_t pages;             /* pool pages held */
	uint64_t zspages;
	uint64_t huge_objects;      /* objects alone in a huge-class page */
};
void zsm_get_stats(const struct zsm *m, struct zsm_stats *out);

/* Geometry, for the report: the smallest object length (as passed to
 * zs_malloc) that lands in the huge class, and the number of distinct
 * (merged) classes. */
uint32_t zsm_huge_threshold(void);
uint32_t zsm_nr_classes(void);

/* Bytes of kernel memory outside pool pages: one struct zspage per zspage
 * (from the zspage slab cache), as the model assumes it. */
#define ZSM_ZSPAGE_STRUCT_BYTES 56u
/* zs_handle slab object per object, holding the object's location. */
#define ZSM_HANDLE_BYTES 8u

/* ----------------------------------------------------------------- zbud */

struct zbm;

struct zbm *zbm_create(uint32_t max_ids);
void zbm_destroy(struct zbm *m);

/* 0, or -1 if zbud refuses the size (above PAGE_SIZE - 2 chunks). */
int zbm_alloc(struct zbm *m, uint32_t id, uint32_t len);
void zbm_free(struct zbm *m, uint32_t id);

/* Evict the least recently used zbud page: returns its objects (1 or 2),
 * 0 if the pool is empty.  Always releases one page. */
uint32_t zbm_evict_lru(struct zbm *m);

struct zbm_stats {
	uint64_t objects;
	uint64_t stored_bytes;
	uint64_t pages;
	uint64_t refused;           /* allocations zbud would not take */
};
void zbm_get_stats(const struct zbm *m, struct zbm_stats *out);

#endif
