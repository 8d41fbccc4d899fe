/*
 * engine_internal.h - the engine's state, shared by its files:
 *
 *   engine.c   lifecycle, threads, stats, fork
 *   regions.c  which mappings are managed (/proc/self/maps, registration)
 *   fault.c    the fault thread: page faults and layout events, in order
 *   reclaim.c  taking pages out: staging, compression, storing
 *   policy.c   what is cold: page ages from write tracking and refaults
 *   evict.c    pool pages out to the backing file, when the pool is capped
 *   pools.c    the pools, one per NUMA node, and where pages are restored
 *
 * Locking: one mutex, e->lock, covers the page table, the region table, the
 * staging slots that an entry names and the gauges.  It is taken only by the
 * engine's own threads and by the fork hooks, never while touching
 * application memory, and nothing that can wait for the fault thread is
 * done while holding it (see reclaim.c for the one careful exception:
 * UFFDIO_MOVE, which cannot).
 *
 * Who waits for whom: a program's thread waits on the fault thread, so the
 * fault thread goes first.  It takes the lock with uzs_lock_fault(), every
 * other engine thread with uzs_lock(), which lets a waiting fault thread in
 * first (the mutex alone is not fair).  Work that needs no entry is done
 * outside the lock: compression, eviction's file writes, emptying staging
 * once no entry names a slot, and the backing-file read of a fault (which
 * re-checks its entry after).  The fault thread drops the lock only at
 * points where it resolves its fault afresh afterwards (-EAGAIN).
 */
#ifndef UZS_ENGINE_INTERNAL_H
#define UZS_ENGINE_INTERNAL_H

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"

struct uzs_stats_shm;
#include "env_config.h"
#include "numa_topology.h"
#include "pagetable.h"
#include "uffd.h"
#include "uzswap.h"

#define UZS_PAGE_SHIFT 12u
#define PAGE_ALIGN_DOWN(a) ((uintptr_t)(a) & ~(uintptr_t)(UZS_PAGE_SIZE - 1))

/* ------------------------------------------------------------ regions */

struct uzs_region {
	uintptr_t start, end;
	bool wp;                /* registered for write tracking too */
};

/* Enough for any real program; past it, new mappings are left alone. */
#define UZS_MAX_REGIONS 16384u

#define UZS_MAPS_BUF (1u << 16)

/* Rescan /proc/self/maps and register new eligible mappings. */
int uzs_regions_refresh(struct uzs_engine *e);
/* The region holding addr, or NULL. */
struct uzs_region *uzs_region_find(struct uzs_engine *e, uintptr_t addr);
/* Forget [start, end) (after UNMAP); split regions as needed. */
void uzs_regions_remove(struct uzs_engine *e, uintptr_t start, uintptr_t end);
/* [from, from+len) moved to to (after REMAP). */
void uzs_regions_move(struct uzs_engine *e, uintptr_t from, uintptr_t to,
		      size_t len);

/* ------------------------------------------------------------ staging */

/*
 * Pages are taken out by UFFDIO_MOVE into the staging area and compressed
 * from there.  The MOVE is issued on the application's userfaultfd (the
 * staging area is registered with it, write-protect mode only, so an empty
 * slot reads as zeros and never waits for us): that way the kernel refuses
 * it with EAGAIN while a layout event is unread, so we can never take a page
 * out of a mapping that replaced one we have not yet seen go.  Staging is
 * emptied by moving its pages on to the trash area, registered with a
 * second userfaultfd that has no events, and discarding them there:
 * MADV_DONTNEED on staging itself would raise an event on the first.
 */
#define UZS_STAGING_PAGES 256u
/* Pages compressed in a row before they are stored (reclaim.c). */
#define UZS_COMPRESS_RUN 32u
#define UZS_MOVE_BATCH 64u

enum slot_state {
	SLOT_FREE = 0,
	SLOT_FILLED,            /* holds the page for staged_addr */
	SLOT_CONSUMED,          /* the fault thread copied it back */
};

struct uzs_staging_slot {
	uintptr_t addr;         /* where the page belongs (follows REMAP) */
	uint8_t state;
};

/* ------------------------------------------------------------- policy */

/* Per PAGEMAP_SCAN call.  The kernel's walk_end is stale when a call
 * returns more than 512 regions, so ask for at most that many. */
#define SCAN_VEC 512u

/* Without PAGEMAP_SCAN (Linux < 6.7) the same answers come from reading
 * /proc/self/pagemap (policy.c), this many pages' entries per pread: one
 * chunk of a scan (16 MiB), 32 KiB of entries. */
#define UZS_PAGEMAP_BATCH 4096u

struct range_list {
	struct page_region v[SCAN_VEC];
	size_t n;
};

/* ------------------------------------------------------------- engine */

#define UZS_FAULT_QUEUE 4096u

struct uzs_engine {
	struct uzs_config cfg;
	pthread_mutex_t lock;
	struct uzs_uffd app;    /* application memory: faults and events */
	struct uzs_uffd stage;  /* the trash area: no events */
	struct uzs_pool *pools[UZS_NUMA_MAX_NODES]; /* numa.npools of them */
	const struct uzs_numa_topology *topo;
	struct uzs_numa_policy numa;
	struct uzs_pagetable *pt;
	uint64_t pool_cap;          /* the pools' total cap (bytes), 0 = none */
	struct uzs_backing *backing; /* NULL: no eviction (evict.c) */
	bool backing_failed;        /* a write failed: evict no more */
	struct uzs_evict_batch *evict_batch; /* reclaim thread's own */
	unsigned char *evict_buf;   /* objects of one eviction, copied out */
	uint64_t next_trim_ns;      /* next time free file blocks are punched */

	struct uzs_region *regions; /* sorted by start, non-overlapping */
	size_t nregions;
	uint64_t managed_pages;

	char *maps_buf;             /* UZS_MAPS_BUF bytes for reading maps */
	unsigned char *staging;
	unsigned char *trash;
	struct uzs_staging_slot slots[UZS_STAGING_PAGES];

	/* fault thread's own buffers */
	unsigned char *fault_page;  /* decompression target */
	unsigned char *fault_obj;   /* compressed object copied from the pool */
	unsigned char *backed_obj;  /* object read from the backing file without
				     * the lock (fault thread only, fault.c) */
	unsigned char *zeros;       /* first-touch source for write faults */
	struct uffd_msg *queue;     /* faults read but not yet resolved */
	size_t qhead, qlen;
	struct uzs_numa_pref fault_pref;

	/* reclaim thread's own */
	struct uzs_codec *codec;
	bool compress_idle;         /* compress at SCHED_IDLE (reclaim.c) */
	unsigned char *compress_buf;/* UZS_COMPRESS_RUN pages' output */
	struct range_list *scan;    /* [0] present, [1] written */
	uint64_t *pagemap_buf;      /* UZS_PAGEMAP_BATCH entries, without
				     * PAGEMAP_SCAN; used under e->lock by
				     * whichever thread scans (policy.c) */
	uintptr_t *victims;         /* addresses chosen by the policy */
	uint64_t rss_mark;          /* anonymous RSS (pages) at the last look */
	uint64_t used_mark;         /* what our accounts explained then */
	uint64_t unmanaged_pages;   /* anonymous RSS they do not explain */
	size_t nvictims, victims_cap;
	struct uzs_numa_pref reclaim_pref;

	pthread_t fault_thread, reclaim_thread;
	void *fault_stack, *reclaim_stack;
	int kick_fd;                /* eventfd: wakes the reclaim thread */
	int stop_fd;                /* eventfd: stops both threads */
	bool have_move, have_wp_async, have_pagemap_scan, have_poison;
	int pagemap_fd;
	/* /proc/self/maps and statm, opened at start and read with pread:
	 * an open on our threads could take the descriptor number a program
	 * thread is about to expect (a shell's close(0); open(file)), and
	 * our close would then close the program's file. */
	int maps_fd, statm_fd;

	uint64_t start_ns;
	uint64_t resident_pages;    /* estimate: last scan + faults since */
	uint64_t staging_held;      /* pages taken out (out of resident_pages)
				     * but still in staging or the trash until
				     * it is emptied; set under the lock,
				     * cleared without it (reclaim.c) */
	uint64_t pool_bytes_seen;   /* pool size at the last scan */
	uint64_t first_touch_window;/* pages per first-touch batch, adaptive */
	uintptr_t last_first_touch_end;
	uintptr_t read_ahead_next;  /* the page after the last run restored */
	unsigned read_ahead_streak; /* restores in a row, each at that page */
	bool forking;
	bool kicked;                /* reclaim asked for since its last round */
	bool takeouts_stopped;      /* staging is unusable: compress no more */
	bool no_procmap_query;      /* regions.c: the kernel lacks it */
	bool said_unregistered;     /* reclaim.c: logged a page left in place
				     * for want of registration */
	bool limit_warned;          /* said once that the limit cannot hold */
	bool limit_stuck;           /* the last scan could not meet the limit */
	unsigned rearm_turn;        /* timed scans so far (policy.c) */
	uint64_t limit_floor_pages; /* nor evicting the pool: how low it goes */
	bool fault_waiting;         /* the fault thread wants the lock */
	bool holding_back;          /* a fault waits for reclaim (atomic) */
	uint64_t throttle_mark_ns;  /* a fault held back since (fault.c) */
	uint64_t throttle_mark_pages; /* resident and pool pages then */
	uint64_t throttle_off_until;/* reclaim stalled: no holding back till */

	struct uzs_engine_stats st;     /* under lock */
	struct uzs_stats_shm *shm;      /* published copy for `uzswap stat` */
	int stats_fd;                   /* UZSWAP_STATS_FILE, or -1 */
	uint64_t next_stats_ns;
};

/* fault.c */
void *uzs_fault_thread_main(void *arg);
/* Why a page is restored: a fault asked for it (in use: not write-tracked),
 * it is read ahead of one, or thawed before a fork (both tracked). */
enum uzs_restore_why { UZS_RESTORE_FAULT, UZS_RESTORE_AHEAD, UZS_RESTORE_THAW };
/* Restore one taken-out page in place (used by fault service and fork).
 * Under e->lock, held throughout. */
int uzs_fault_restore(struct uzs_engine *e, uintptr_t addr,
		      enum uzs_restore_why why);
/* Make a page that cannot be restored raise SIGBUS when touched (never
 * zeros), saying why; aborts if the kernel cannot poison.  Under lock. */
void uzs_poison_page(struct uzs_engine *e, uintptr_t addr, const char *why);
/* Drop what we hold for [start, end): the app discarded or unmapped it. */
void uzs_drop_range(struct uzs_engine *e, uintptr_t start, uintptr_t end);

/* reclaim.c */
/* Do staging slots [slot, slot+n) all hold a page (present or swapped)?
 * From /proc/self/pagemap; true when that cannot be read. */
bool uzs_staging_holds(struct uzs_engine *e, unsigned slot, unsigned n);
void *uzs_reclaim_thread_main(void *arg);
/* Take out the victims chosen by the policy; returns pages taken. */
size_t uzs_reclaim_victims(struct uzs_engine *e);

/* evict.c */
/* Open the backing file if the settings call for one; one warning line and
 * no eviction if it cannot be had. */
void uzs_evict_setup(struct uzs_engine *e);
/* Could the pool shrink by eviction now? */
bool uzs_evict_possible(const struct uzs_engine *e);
/* Evict the coldest pool pages until the pool holds at most target bytes
 * (or nothing more can go).  Takes e->lock as needed; returns pool pages
 * released. */
size_t uzs_evict_pool(struct uzs_engine *e, uint64_t target);
/* After a round: evict what the settings ask for, and tidy the file. */
void uzs_evict_round(struct uzs_engine *e);
/* Forget a backed page's copy (its entry is being cleared).  Under lock. */
void uzs_evict_forget(struct uzs_engine *e, uint64_t loc);

/* policy.c */
/* Write-protect [start, end) again, so that a write seen by a later scan is
 * known to have come after now.  Under e->lock. */
void uzs_policy_rearm(struct uzs_engine *e, uintptr_t start, uintptr_t end);
/* Learn which pages are resident and written, age the others by age_by
 * scan intervals (0 for a scan that only looks), and choose e->victims.
 * Called without the lock. */
void uzs_policy_scan(struct uzs_engine *e, unsigned age_by);

/* limit.c */
/* What UZSWAP_LIMIT counts, in pages, given resident managed pages (see
 * limit.c).  Under e->lock. */
uint64_t uzs_limit_used_pages(struct uzs_engine *e, uint64_t resident);
/* What the limit counts that no take-out or eviction shrinks, in pages. */
uint64_t uzs_limit_fixed_pages(struct uzs_engine *e);
/* How far below the limit a take-out round aims, in pages. */
uint64_t uzs_limit_headroom_pages(const struct uzs_engine *e);
/* With a limit: register mappings the program grew unseen and count the
 * anonymous memory we do not manage; returns the process's anonymous RSS
 * in pages (0 if unknown).  Under e->lock. */
uint64_t uzs_watch_rss(struct uzs_engine *e);
/* After a scan, which recounts resident memory: growth is measured from
 * here.  Takes e->lock. */
void uzs_limit_remark(struct uzs_engine *e);

/* pools.c */
/* Learn the topology, choose the pools (UZSWAP_NUMA) and create them. */
int uzs_pools_setup(struct uzs_engine *e);
/* Pool memory held by all pools. */
uint64_t uzs_pools_held(struct uzs_engine *e);
/* What the pools hold besides their zspages: metadata in use (handle
 * slots, zspage descriptors) and empty zspages kept for reuse. */
uint64_t uzs_pools_overhead(struct uzs_engine *e);
/* uzs_pool_alloc into pool, -ENOSPC past the pools' total cap. */
int uzs_pools_alloc(struct uzs_engine *e, unsigned pool, const void *src,
		    size_t len, uint64_t owner, uzs_handle_t *out);
/* pools[i] = the pool for the page at pages[i], with one question to the
 * topology (pages in staging: MOVE kept them on their node). */
void uzs_pools_of_pages(struct uzs_engine *e, void *const *pages, size_t n,
			uint8_t *pools);
/* Make the calling service thread's next page allocations prefer the node
 * of pool (-1: no preference, the process's policy), so that a page it
 * copies back is restored where it was taken from.  pref is that thread's
 * own. */
void uzs_pools_place(struct uzs_engine *e, struct uzs_numa_pref *pref,
		     int pool);
/* Fill the pools' part of a stats snapshot: the byte figures of each pool
 * and their totals, and metadata_bytes (the pools' part).  Under lock. */
void uzs_pools_snapshot(struct uzs_engine *e, struct uzs_engine_stats *out);

/* The pool of a page-table entry (ZERO, SAME, STORED or BACKED). */
static inline struct uzs_pool *uzs_pte_pool(struct uzs_engine *e,
					    const struct uzs_pte *p)
{
	return e->pools[p->pool];
}

/* A page of pool became STORED (+1) or stopped being (-1): the total and
 * the pool's count move together.  Under lock. */
static inline void uzs_count_stored(struct uzs_engine *e, unsigned pool,
				    int delta)
{
	e->st.pages_stored += (uint64_t)(int64_t)delta;
	e->st.pool[pool].pages_stored += (uint64_t)(int64_t)delta;
}

/* engine.c */
uint64_t uzs_now_ns(void);
void uzs_log(struct uzs_engine *e, enum uzs_log_level level,
	     const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void uzs_kick_reclaim(struct uzs_engine *e);
const char *uzs_strerror(int err);
/* Refresh the copy of the counters that `uzswap stat` reads. */
void uzs_engine_publish(struct uzs_engine *e);

/*
 * The lock is not fair: a thread that unlocks and locks again at once
 * nearly always gets it back before a waiter that was woken has run, so
 * "letting a fault in" between two steps let none in, and a fault waited
 * for a whole batch of take-outs (a stored-page fault p99 of 1.7 ms against
 * a p50 of 22 us).  The fault thread, which a thread of the program is
 * waiting on, says when it wants the lock, and the other threads let it go
 * first.
 */
static inline void uzs_lock_fault(struct uzs_engine *e)
{
	__atomic_store_n(&e->fault_waiting, true, __ATOMIC_RELAXED);
	pthread_mutex_lock(&e->lock);
	__atomic_store_n(&e->fault_waiting, false, __ATOMIC_RELAXED);
}

static inline void uzs_lock(struct uzs_engine *e)
{
	/* Bounded: a fault thread that cannot run must not stop us. */
	for (unsigned i = 0; i < 1000 &&
	     __atomic_load_n(&e->fault_waiting, __ATOMIC_RELAXED); i++)
		sched_yield();
	pthread_mutex_lock(&e->lock);
}

#endif
