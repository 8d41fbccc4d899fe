/*
 * stats.h - the latency histogram's bucket arithmetic and the two text forms
 * of struct uzs_engine_stats: a human summary and a JSON line.  Internal to
 * uzswap; the histogram itself and the stats struct are in engine.h.
 *
 * Everything here runs inside the shim (at exit, and in the engine's stats
 * thread), so nothing allocates or prints: text goes into the caller's
 * buffer, and the caller writes it with write(2).
 */
#ifndef UZS_STATS_H
#define UZS_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/*
 * Bucket i holds the ns with floor(4 * log2(ns)) == i, i.e. the integers in
 * [2^(i/4), 2^((i+1)/4)); 0 ns joins bucket 0 and anything at or past
 * 2^(UZS_LAT_BUCKETS/4) ns (~69 s) joins the last one.  Some low buckets hold
 * no integer at all (there is none in [1.19, 2)): their min exceeds their max.
 */
unsigned uzs_latency_bucket(uint64_t ns);
/* Smallest ns that lands in bucket i (0 for bucket 0). */
uint64_t uzs_latency_bucket_min(unsigned i);
/* Largest ns that lands in bucket i (UINT64_MAX for the last bucket). */
uint64_t uzs_latency_bucket_max(unsigned i);

/*
 * Derived figures, shared by the summary, the JSON line and their readers.
 *
 * Held bytes are the bytes uzswap has taken out of residence and now holds
 * instead: every zero, same-filled and stored page, at UZS_PAGE_SIZE each.
 * Incompressible pages are not held (they go back in place).
 *
 * The effective ratio is held bytes / pool bytes: what those pages would
 * cost resident against what they cost now.  Zero and same-filled pages
 * are held as page-table tags and cost no pool memory, so they raise the
 * ratio; pool fragmentation lowers it.  The engine's fixed metadata (page
 * table, buffers) is left out, because it does not grow with what is held;
 * the summary shows it beside the net saving instead.  With nothing in the
 * pool the ratio is undefined: 0 is returned, and shown as "-" or null.
 */
uint64_t uzs_stats_held_bytes(const struct uzs_engine_stats *s);
double uzs_stats_effective_ratio(const struct uzs_engine_stats *s);

/* Buffer sizes that any stats fit in (every counter at UINT64_MAX). */
#define UZS_STATS_SUMMARY_MAX 10240
#define UZS_STATS_JSON_MAX 16384

/*
 * Several lines for stderr, each "uzswap: ...\n".  Returns the bytes written,
 * not counting the terminating NUL that is always written when len > 0.  A
 * line that does not fit is left out whole, and so are those after it.
 */
size_t uzs_stats_summary(const struct uzs_engine_stats *s, char *buf, size_t len);

/*
 * One JSON object and a '\n': bytes as integers, latencies in ns, keys in a
 * fixed order.  Returns the bytes written (NUL-terminated when len > 0), or 0
 * with buf = "" if the line does not fit: half a line in a stats file would
 * spoil the next line too.
 */
size_t uzs_stats_json(const struct uzs_engine_stats *s, uint64_t pid,
		      char *buf, size_t len);

#endif
