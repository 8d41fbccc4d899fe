/*
 * engine.h - the userfaultfd engine: what the preload shim drives.
 *
 * One engine per process.  It adopts the process's private anonymous memory,
 * takes cold pages out (compressing them into the pool) and serves the faults
 * that bring them back.  See engine.c for the design, threads and locking.
 * Internal to uzswap: not part of libuzswap's public API.
 */
#ifndef UZS_ENGINE_H
#define UZS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

struct uzs_config;
struct uzs_engine;

/* Latency histogram: bucket i counts samples in [2^(i/4)..2^((i+1)/4)) ns,
 * a quarter-octave log scale (19% wide buckets) from 1 ns to ~70 s. */
#define UZS_LAT_BUCKETS 144

struct uzs_latency {
	uint64_t count;
	uint64_t max_ns;
	uint64_t sum_ns;
	uint64_t bucket[UZS_LAT_BUCKETS];
};

enum uzs_fault_kind {
	UZS_FAULT_FIRST_TOUCH,  /* never-compressed memory, zero-filled */
	UZS_FAULT_ZERO,         /* a compressed zero page */
	UZS_FAULT_SAME,         /* a same-filled page */
	UZS_FAULT_STORED,       /* decompressed from the pool */
	UZS_FAULT_STAGED,       /* caught while being taken out: copied back */
	UZS_FAULT_BACKED,       /* read back from the backing file */
	UZS_FAULT_SPURIOUS,     /* already resolved (EEXIST) or range gone */
	UZS_FAULT_KINDS
};

/*
 * Counters, all monotonic except the "current" gauges.  Also laid out in a
 * shared page that `uzswap stat PID` maps, so the layout is versioned.
 */
#define UZS_STATS_MAGIC 0x757a7377617073ull /* "uzswaps" */
#define UZS_STATS_VERSION 5u

/* Pools the stats describe one by one: as many as there can be (one per
 * NUMA node, numa_topology.h), checked in pools.c. */
#define UZS_STATS_MAX_POOLS 64

struct uzs_pool_figures {
	int64_t node;               /* the node whose pages it holds and its
				     * memory is bound to; -1: one pool, all */
	uint64_t pages_stored;      /* gauges, as the totals of the same names */
	uint64_t stored_bytes;
	uint64_t pool_bytes;
};

struct uzs_engine_stats {
	uint64_t magic;
	uint32_t version;
	uint32_t size;              /* sizeof(struct uzs_engine_stats) */
	uint64_t uptime_ns;

	/* gauges */
	uint64_t managed_bytes;     /* registered private anonymous memory */
	uint64_t resident_bytes;    /* of which resident (last scan + faults) */
	uint64_t regions;
	uint64_t pages_zero;        /* pages held as tags, by kind */
	uint64_t pages_same;
	uint64_t pages_stored;
	uint64_t stored_bytes;      /* compressed bytes of stored pages */
	uint64_t pool_bytes;        /* pool memory */
	uint64_t metadata_bytes;    /* page table, handle table, buffers */
	uint64_t unmanaged_bytes;   /* version 5: the process's anonymous memory
				     * outside managed memory, pool and
				     * metadata, as UZSWAP_LIMIT counts it
				     * (watched under a limit only, else 0) */

	/* counters */
	uint64_t compressed[4];     /* by enum uzs_page_kind, pages ever */
	uint64_t faults[UZS_FAULT_KINDS];
	uint64_t refaults;          /* faults on pages uzswap took out */
	uint64_t read_ahead;        /* pages restored ahead of a sequential
				     * reader, before any fault asked */
	uint64_t takeouts;          /* pages moved out for compression */
	uint64_t takeout_busy;      /* pages that could not be moved (shared) */
	uint64_t scans;
	uint64_t events_remove, events_unmap, events_remap, events_fork;
	uint64_t fork_thaws;        /* pages restored before a fork */
	uint64_t throttle_ns;       /* faults held back over the limit */
	uint64_t throttle_restore_ns;/* of which restores (the rest: first
				      * touches) */

	/* pool eviction to the backing file (UZSWAP_POOL_MAX, UZSWAP_LIMIT) */
	uint64_t pages_backed;      /* gauge: pages held in the backing file */
	uint64_t backing_file_bytes;/* gauge: the file's size */
	uint64_t backing_disk_bytes;/* gauge: of which allocated on disk */
	uint64_t evictions;         /* pool pages (zspages) evicted */
	uint64_t backing_writes;    /* pages written to the file */
	uint64_t backing_write_bytes;
	uint64_t backing_reads;     /* pages read back */
	uint64_t backing_errors;    /* failed writes and reads */

	struct uzs_latency fault_latency; /* every fault on a page taken out */

	/* version 3: the pools, one per NUMA node (or one); their figures add
	 * up to pages_stored, stored_bytes and pool_bytes.  Entries from
	 * npools on are zero. */
	uint64_t npools;
	struct uzs_pool_figures pool[UZS_STATS_MAX_POOLS];
};

/* Percentile (0..100) of a latency histogram, in ns (bucket upper bound). */
uint64_t uzs_latency_percentile(const struct uzs_latency *lat, double pct);
void uzs_latency_add(struct uzs_latency *lat, uint64_t ns);

/*
 * Start the engine for this process.  On failure returns -errno and writes
 * one line (no newline) into err saying what is missing and how to enable
 * it; the caller then leaves the program alone.
 */
int uzs_engine_start(const struct uzs_config *cfg, struct uzs_engine **out,
		     char *err, size_t errlen);

/* Snapshot the counters (consistent enough for reporting). */
void uzs_engine_stats(struct uzs_engine *e, struct uzs_engine_stats *out);

/* At exit: one more line in UZSWAP_STATS_FILE, whatever the interval, so
 * the file ends with the counters as the program left them. */
void uzs_engine_stats_file_final(struct uzs_engine *e);

/*
 * Tests only: the NUMA topology the next uzs_engine_start uses instead of
 * the machine's (a fake one, numa_topology.h), or NULL for the machine's.
 * The topology must outlive the engine.
 */
struct uzs_numa_topology;
void uzs_engine_set_topology(const struct uzs_numa_topology *t);

/* pthread_atfork hooks: see engine.c on fork. */
/* Put back every page held, and take none out again: a core dump of the
 * process would otherwise show them as zeros.  For a fatal signal's
 * handler: spends at most 2 s putting pages back, and gives up after 2 s
 * if the engine's lock cannot be had. */
void uzs_engine_thaw_for_dump(struct uzs_engine *e);

void uzs_engine_fork_prepare(struct uzs_engine *e);
void uzs_engine_fork_parent(struct uzs_engine *e);
void uzs_engine_fork_child(struct uzs_engine *e);

#endif
