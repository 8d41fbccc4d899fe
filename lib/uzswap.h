/*
 * uzswap.h - public interface of libuzswap.
 *
 * libuzswap is the library under the uzswap preload shim: a page codec (LZO
 * plus zero/same-filled detection) and a compressed-page pool, a hybrid of
 * the kernel's zsmalloc (dense, handle-addressed, movable objects) and zbud
 * (an LRU of pool pages and whole-pool-page eviction).  It is usable on its
 * own by any program that wants to keep compressed 4 KiB pages in memory.
 *
 * Conventions: functions that can fail return 0 or a negative errno value;
 * nothing here prints, aborts on bad input, or calls malloc on a hot path.
 */
#ifndef UZSWAP_H
#define UZSWAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UZS_PAGE_SIZE 4096u

/* ------------------------------------------------------------------ codec */

/*
 * What a page turned out to be.  Only UZS_PAGE_STORED pages carry compressed
 * bytes; the caller keeps the kind (and, for SAME, the word) itself and never
 * puts ZERO, SAME or INCOMPRESSIBLE pages in a pool.
 */
enum uzs_page_kind {
	UZS_PAGE_ZERO = 0,          /* all bytes zero */
	UZS_PAGE_SAME,              /* one 8-byte word repeated over the page */
	UZS_PAGE_STORED,            /* LZO output of at most the cutoff */
	UZS_PAGE_INCOMPRESSIBLE,    /* LZO output above the cutoff: keep the page */
};

struct uzs_compressed {
	enum uzs_page_kind kind;
	uint64_t word;              /* SAME: the repeated word (host order) */
	const void *data;           /* STORED: compressed bytes, in the codec */
	size_t len;                 /* STORED: their length, 1..cutoff */
};

/*
 * A codec owns the LZO work memory and output buffer of one thread: it is not
 * shared between threads.  Its memory is mmap'd, never malloc'd, so a codec is
 * usable from threads that must not touch the C heap.
 */
struct uzs_codec;

#define UZS_CODEC_DEFAULT_CUTOFF 3072u

/* cutoff: largest compressed size worth storing, 1..UZS_PAGE_SIZE (0 = default). */
int uzs_codec_create(size_t cutoff, struct uzs_codec **out);
void uzs_codec_destroy(struct uzs_codec *codec);

/*
 * Classify and compress one page.  For STORED, out->data points into the
 * codec and stays valid until the next call on the same codec.
 */
void uzs_codec_compress(struct uzs_codec *codec, const void *page,
			struct uzs_compressed *out);

/*
 * Decompress exactly one page.  Returns 0, or -EINVAL if src is not a valid
 * LZO stream that decodes to exactly UZS_PAGE_SIZE bytes (dst may then hold
 * garbage, but nothing outside dst[0..UZS_PAGE_SIZE) is written or read
 * outside src[0..len)).
 */
int uzs_codec_decompress(const void *src, size_t len, void *dst);

/* Fill a page with an 8-byte word (0 for a zero page). */
void uzs_page_fill(void *dst, uint64_t word);

/* ------------------------------------------------------------------- pool */

/*
 * A handle names one object for its whole life, even while compaction moves
 * it.  0 is never a valid handle.
 */
typedef uint64_t uzs_handle_t;

struct uzs_pool;

struct uzs_pool_config {
	size_t max_bytes;           /* cap on pool memory; 0 = UZS_POOL_DEFAULT_MAX */
	int numa_node;              /* bind pool memory to this node; -1 = no binding */
	unsigned zspage_pages;      /* 1 or 2: pages per fresh zspage; 0 = automatic */
};

#define UZS_POOL_DEFAULT_MAX ((size_t)64 << 30)

/* Objects with a fragment in one zspage, at most: bounds an eviction batch. */
#define UZS_POOL_MAX_ZSPAGE_OBJS 256u

int uzs_pool_create(const struct uzs_pool_config *config, struct uzs_pool **out);
/* Frees every object and all pool memory; handles become invalid. */
void uzs_pool_destroy(struct uzs_pool *pool);

/*
 * Store len (1..UZS_PAGE_SIZE) bytes under a new handle, tagged with owner
 * (any value the caller chooses, returned by eviction).  Returns 0, -EINVAL
 * for a bad size, -ENOSPC if the pool would grow past max_bytes, -ENOMEM if
 * the system refuses memory.  On failure nothing changed.
 */
int uzs_pool_alloc(struct uzs_pool *pool, const void *src, size_t len,
		   uint64_t owner, uzs_handle_t *out);

/* Copy an object out; returns its length, or -EINVAL for a bad handle or a
 * dst smaller than the object. */
long uzs_pool_read(struct uzs_pool *pool, uzs_handle_t handle, void *dst,
		   size_t dst_len);

/* Free an object; -EINVAL for a handle that is not live. */
int uzs_pool_free(struct uzs_pool *pool, uzs_handle_t handle);

/* The owner tag and length of a live object; -EINVAL for a bad handle. */
int uzs_pool_owner(struct uzs_pool *pool, uzs_handle_t handle, uint64_t *owner);
/* Change a live object's owner tag (its data moved, e.g. by mremap), so
 * that eviction names it rightly; -EINVAL for a bad handle. */
int uzs_pool_set_owner(struct uzs_pool *pool, uzs_handle_t handle,
		       uint64_t owner);
long uzs_pool_length(struct uzs_pool *pool, uzs_handle_t handle);

/*
 * Eviction protocol (see pool.c for the full story):
 *
 *   uzs_pool_evict_begin() picks the least recently used zspage, skipping
 *   (once) a zspage whose objects were read since it last came up, isolates
 *   it so nothing new is placed in it and compaction leaves it alone, and
 *   fills the batch with the (handle, owner) of each live object.  It returns
 *   with the pool lock dropped: the caller writes the objects wherever it
 *   wants (reading them with uzs_pool_read) and frees each one it has
 *   written back.  The zspage's memory is released the moment its last object
 *   is freed.  uzs_pool_evict_end() must follow; a zspage that still has
 *   objects (a write failed, or the caller chose to keep some) goes back to
 *   the LRU as most recently used.
 *
 * An object may be split in two fragments, in two zspages.  The batch
 * lists every object with a fragment in the evicted zspage, once each, and
 * reading it returns the whole object; freeing it frees both fragments, so
 * the other zspage gets a hole (and is released at once if that was its
 * last fragment) but keeps its place on the LRU.  If the other zspage is
 * being evicted too, the object is listed by both open batches: the caller
 * must write back and free each object once and skip it in the other batch
 * (the engine keeps a per-page flag for that).
 *
 * The batch is a snapshot: another thread may free one of its objects
 * meanwhile.  The caller must know, under its own locking, which handles it
 * still owns; the pool never calls back into the caller.
 */
struct uzs_evict_entry {
	uzs_handle_t handle;
	uint64_t owner;
};

struct uzs_evict_batch {
	uint32_t zspage;            /* ticket for uzs_pool_evict_end ... */
	uint32_t generation;        /* ... which must name the same zspage */
	unsigned count;
	struct uzs_evict_entry entries[UZS_POOL_MAX_ZSPAGE_OBJS];
};

/* Returns the number of objects in the batch, or -ENOENT if no zspage is
 * evictable (the pool is empty or every zspage is being evicted). */
int uzs_pool_evict_begin(struct uzs_pool *pool, struct uzs_evict_batch *batch);
void uzs_pool_evict_end(struct uzs_pool *pool, struct uzs_evict_batch *batch);

/*
 * Move objects out of sparse zspages into fuller ones and release the
 * zspages this empties.  Handles stay valid.  Returns the number of pool
 * pages released.
 */
size_t uzs_pool_compact(struct uzs_pool *pool);

#define UZS_POOL_FULLNESS_GROUPS 5  /* used <25%, <50%, <75%, <100%, full */

struct uzs_pool_stats {
	uint64_t objects;           /* live objects */
	uint64_t stored_bytes;      /* sum of their lengths */
	uint64_t pool_bytes;        /* pool memory held (pages of live zspages) */
	uint64_t metadata_bytes;    /* memory outside pool pages in use: handle
				     * slots and zspage descriptors below their
				     * high-water marks, the pool structure */
	uint64_t zspages;
	uint64_t zspages_by_fullness[UZS_POOL_FULLNESS_GROUPS];
	uint64_t allocs, frees, alloc_failures;
	uint64_t evictions;         /* zspages handed out by evict_begin */
	uint64_t evicted_pages_freed; /* pool pages released by eviction */
	uint64_t compactions;       /* compact() calls that moved anything */
	uint64_t compacted_objects;
	uint64_t compacted_pages_freed;
	uint64_t defrags;           /* always 0: objects are split across holes
				     * instead of slid together (kept for
				     * source compatibility) */
	uint64_t hole_fills;        /* objects placed (head first) in a zspage
				     * that already held objects when the
				     * allocator turned to it */
	uint64_t sweeps;            /* walks of a zspage to list its holes */
	uint64_t split_objects;     /* live objects stored as two fragments */
};

void uzs_pool_stats(struct uzs_pool *pool, struct uzs_pool_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* UZSWAP_H */
