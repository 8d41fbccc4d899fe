/*
 * stats_report.c - struct uzs_engine_stats as text: the human summary that
 * UZSWAP_STATS=1 prints at exit and `uzswap stat` shows, and the JSON line
 * that UZSWAP_STATS_FILE collects.
 *
 * This runs in the shim at exit and in the engine's stats thread, where the
 * program's allocator and locale cannot be trusted, so it formats by hand
 * into the caller's buffer: no malloc, no stdio, no floating point printf.
 */
#include "config.h"

#include <stdbool.h>
#include <string.h>

#include "engine.h"
#include "stats.h"
#include "uzswap.h"

/* ------------------------------------------------------------ the output */

/* Text being appended to a fixed buffer; once something did not fit, the
 * buffer is full and everything after is dropped. */
struct out {
	char *buf;
	size_t size, len;
	bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->full || n >= o->size - o->len) {   /* keep room for the NUL */
		o->full = true;
		return;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void put_str(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_u64(struct out *o, uint64_t v)
{
	char digits[20];
	size_t n = sizeof(digits);

	do
		digits[--n] = (char)('0' + v % 10);
	while (v /= 10);
	put(o, digits + n, sizeof(digits) - n);
}

/* whole.frac with a fixed number of decimals, from a value in units of
 * 10^-decimals: put_fixed(1234, 2) is "12.34". */
static void put_fixed(struct out *o, uint64_t scaled, unsigned decimals)
{
	uint64_t div = 1;
	char frac[20];

	for (unsigned i = 0; i < decimals; i++)
		div *= 10;
	put_u64(o, scaled / div);
	if (!decimals)
		return;
	scaled %= div;
	for (unsigned i = decimals; i-- > 0; scaled /= 10)
		frac[i] = (char)('0' + scaled % 10);
	put(o, ".", 1);
	put(o, frac, decimals);
}

/* value / unit in tenths, rounded, without overflowing for any value. */
static uint64_t tenths(uint64_t value, uint64_t unit)
{
	return value / unit * 10 + ((value % unit) * 10 + unit / 2) / unit;
}

/* "512 B", "1.5 KiB" ... "16.0 EiB". */
static void put_bytes(struct out *o, uint64_t bytes)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	unsigned u = 0;

	if (bytes < 1024) {
		put_u64(o, bytes);
		put_str(o, " B");
		return;
	}
	/* Move up while the value would round to 1024.0 or more. */
	while (u + 1 < sizeof(units) / sizeof(units[0]) &&
	       tenths(bytes, 1ull << (10 * (u + 1))) >= 10240)
		u++;
	put_fixed(o, tenths(bytes, 1ull << (10 * (u + 1))), 1);
	put(o, " ", 1);
	put_str(o, units[u]);
}

/* ns as microseconds with one decimal: "12.3 us". */
static void put_us(struct out *o, uint64_t ns)
{
	put_fixed(o, tenths(ns, 1000), 1);
	put_str(o, " us");
}

/* A non-negative ratio with `decimals` decimals. */
static void put_ratio(struct out *o, double r, unsigned decimals)
{
	double scale = 1;

	for (unsigned i = 0; i < decimals; i++)
		scale *= 10;
	r = r * scale + 0.5;
	/* Past 2^63 the conversion would be undefined; no real ratio gets there. */
	put_fixed(o, (uint64_t)(r < 9e18 ? r : 9e18), decimals);
}

static void put_nul(struct out *o)
{
	if (o->size)
		o->buf[o->len] = '\0';
}

/* ------------------------------------------------------- derived figures */

uint64_t uzs_stats_held_bytes(const struct uzs_engine_stats *s)
{
	return (s->pages_zero + s->pages_same + s->pages_stored) * UZS_PAGE_SIZE;
}

double uzs_stats_effective_ratio(const struct uzs_engine_stats *s)
{
	return s->pool_bytes ? (double)uzs_stats_held_bytes(s) / (double)s->pool_bytes : 0;
}

/* The pools a snapshot describes, whatever a torn one says. */
static unsigned pools_of(const struct uzs_engine_stats *s)
{
	return s->npools < UZS_STATS_MAX_POOLS ? (unsigned)s->npools
					       : UZS_STATS_MAX_POOLS;
}

/* ---------------------------------------------------------------- summary */

/* Summary lines go in whole or not at all: line_end takes back a line that
 * did not fit, from where line_begin started it. */
static size_t line_begin(struct out *o)
{
	size_t begin = o->len;

	put_str(o, "uzswap: ");
	return begin;
}

static void line_end(struct out *o, size_t begin)
{
	put(o, "\n", 1);
	if (o->full)
		o->len = begin;
}

static void summary_memory(struct out *o, const struct uzs_engine_stats *s)
{
	size_t l = line_begin(o);

	put_str(o, "managed ");
	put_bytes(o, s->managed_bytes);
	put_str(o, " in ");
	put_u64(o, s->regions);
	put_str(o, s->regions == 1 ? " region, " : " regions, ");
	put_bytes(o, s->resident_bytes);
	put_str(o, " resident, ");
	if (s->unmanaged_bytes) {
		/* What a limit counts beside managed memory and ours. */
		put_bytes(o, s->unmanaged_bytes);
		put_str(o, " other anonymous, ");
	}
	put_str(o, "up ");
	put_fixed(o, tenths(s->uptime_ns, 1000000000), 1);
	put_str(o, " s");
	line_end(o, l);
}

/* " in P of pool, C of it compressed data": a pool's memory and use. */
static void put_pool_use(struct out *o, uint64_t pool_bytes,
			 uint64_t stored_bytes)
{
	put_str(o, " in ");
	put_bytes(o, pool_bytes);
	put_str(o, " of pool, ");
	put_bytes(o, stored_bytes);
	put_str(o, " of it compressed data");
}

static void summary_held(struct out *o, const struct uzs_engine_stats *s)
{
	size_t l = line_begin(o);

	put_str(o, "holding ");
	put_bytes(o, uzs_stats_held_bytes(s));
	put_str(o, " (");
	put_u64(o, s->pages_zero);
	put_str(o, " zero, ");
	put_u64(o, s->pages_same);
	put_str(o, " same-filled, ");
	put_u64(o, s->pages_stored);
	put_str(o, " stored pages)");
	put_pool_use(o, s->pool_bytes, s->stored_bytes);
	line_end(o, l);
}

/* A line per pool, when there are several (one per NUMA node). */
static void summary_pools(struct out *o, const struct uzs_engine_stats *s)
{
	unsigned n = pools_of(s);

	for (unsigned i = 0; n > 1 && i < n; i++) {
		const struct uzs_pool_figures *f = &s->pool[i];
		size_t l = line_begin(o);

		put_str(o, f->node >= 0 ? "node " : "pool ");
		put_u64(o, f->node >= 0 ? (uint64_t)f->node : i);
		put_str(o, ": ");
		put_u64(o, f->pages_stored);
		put_str(o, " stored pages");
		put_pool_use(o, f->pool_bytes, f->stored_bytes);
		line_end(o, l);
	}
}

static void summary_ratio(struct out *o, const struct uzs_engine_stats *s)
{
	uint64_t held = uzs_stats_held_bytes(s);
	uint64_t cost = s->pool_bytes > UINT64_MAX - s->metadata_bytes ? UINT64_MAX
		      : s->pool_bytes + s->metadata_bytes;
	size_t l = line_begin(o);

	put_str(o, "effective ratio ");
	if (s->pool_bytes) {
		put_ratio(o, uzs_stats_effective_ratio(s), 2);
		put_str(o, "x");
	} else {
		put_str(o, "-");
	}
	put_str(o, " (held / pool), ");
	put_str(o, held >= cost ? "saving " : "costing ");
	put_bytes(o, held >= cost ? held - cost : cost - held);
	put_str(o, " net of ");
	put_bytes(o, s->metadata_bytes);
	put_str(o, " metadata");
	line_end(o, l);
}

static void summary_compressed(struct out *o, const struct uzs_engine_stats *s)
{
	size_t l = line_begin(o);

	put_str(o, "pages compressed: ");
	put_u64(o, s->compressed[UZS_PAGE_ZERO]);
	put_str(o, " zero, ");
	put_u64(o, s->compressed[UZS_PAGE_SAME]);
	put_str(o, " same-filled, ");
	put_u64(o, s->compressed[UZS_PAGE_STORED]);
	put_str(o, " stored, ");
	put_u64(o, s->compressed[UZS_PAGE_INCOMPRESSIBLE]);
	put_str(o, " incompressible");
	line_end(o, l);
}

static void summary_takeouts(struct out *o, const struct uzs_engine_stats *s)
{
	size_t l = line_begin(o);

	put_str(o, "takeouts ");
	put_u64(o, s->takeouts);
	put_str(o, " (");
	put_u64(o, s->takeout_busy);
	put_str(o, " busy), refaults ");
	put_u64(o, s->refaults);
	put_str(o, ", scans ");
	put_u64(o, s->scans);
	if (s->throttle_ns) {
		/* Growth held back for the limit: the price of keeping it. */
		put_str(o, ", held back over the limit ");
		put_us(o, s->throttle_ns);
		put_str(o, " (restores ");
		put_us(o, s->throttle_restore_ns);
		put_str(o, ")");
	}
	line_end(o, l);
}

static const char *const fault_names[UZS_FAULT_KINDS] = {
	[UZS_FAULT_FIRST_TOUCH] = "first-touch",
	[UZS_FAULT_ZERO] = "zero",
	[UZS_FAULT_SAME] = "same-filled",
	[UZS_FAULT_STORED] = "stored",
	[UZS_FAULT_STAGED] = "staged",
	[UZS_FAULT_BACKED] = "backed",
	[UZS_FAULT_SPURIOUS] = "spurious",
};

static void summary_faults(struct out *o, const struct uzs_engine_stats *s)
{
	size_t l = line_begin(o);

	put_str(o, "faults:");
	for (unsigned k = 0; k < UZS_FAULT_KINDS; k++) {
		put_str(o, k ? ", " : " ");
		put_u64(o, s->faults[k]);
		put(o, " ", 1);
		put_str(o, fault_names[k]);
	}
	if (s->read_ahead) {
		put_str(o, "; ");
		put_u64(o, s->read_ahead);
		put_str(o, " pages read ahead");
	}
	line_end(o, l);
}

static void summary_latency(struct out *o, const struct uzs_engine_stats *s)
{
	const struct uzs_latency *lat = &s->fault_latency;
	size_t l = line_begin(o);

	put_str(o, "fault service p50 ");
	put_us(o, uzs_latency_percentile(lat, 50));
	put_str(o, ", p99 ");
	put_us(o, uzs_latency_percentile(lat, 99));
	put_str(o, ", max ");
	put_us(o, lat->max_ns);
	put_str(o, " (");
	put_u64(o, lat->count);
	put_str(o, lat->count == 1 ? " fault)" : " faults)");
	line_end(o, l);
}

static void summary_events(struct out *o, const struct uzs_engine_stats *s)
{
	size_t l = line_begin(o);

	put_str(o, "events: ");
	put_u64(o, s->events_remove);
	put_str(o, " remove, ");
	put_u64(o, s->events_unmap);
	put_str(o, " unmap, ");
	put_u64(o, s->events_remap);
	put_str(o, " remap, ");
	put_u64(o, s->events_fork);
	put_str(o, " fork (");
	put_u64(o, s->fork_thaws);
	put_str(o, " pages thawed)");
	line_end(o, l);
}

/* Only when the pool was ever evicted (UZSWAP_POOL_MAX or a limit). */
static void summary_backing(struct out *o, const struct uzs_engine_stats *s)
{
	size_t l;

	if (!s->evictions && !s->pages_backed && !s->backing_errors)
		return;
	l = line_begin(o);
	put_str(o, "backing file: ");
	put_u64(o, s->pages_backed);
	put_str(o, " pages (");
	put_bytes(o, s->backing_file_bytes);
	put_str(o, " file, ");
	put_bytes(o, s->backing_disk_bytes);
	put_str(o, " on disk); ");
	put_u64(o, s->backing_writes);
	put_str(o, " written (");
	put_bytes(o, s->backing_write_bytes);
	put_str(o, ") in ");
	put_u64(o, s->evictions);
	put_str(o, " pool page evictions, ");
	put_u64(o, s->backing_reads);
	put_str(o, " read back, ");
	put_u64(o, s->backing_errors);
	put_str(o, s->backing_errors == 1 ? " error" : " errors");
	line_end(o, l);
}

size_t uzs_stats_summary(const struct uzs_engine_stats *s, char *buf, size_t len)
{
	struct out o = { buf, len, 0, len == 0 };

	summary_memory(&o, s);
	summary_held(&o, s);
	summary_pools(&o, s);
	summary_ratio(&o, s);
	summary_compressed(&o, s);
	summary_takeouts(&o, s);
	summary_backing(&o, s);
	summary_faults(&o, s);
	summary_latency(&o, s);
	summary_events(&o, s);
	put_nul(&o);
	return o.len;
}

/* ------------------------------------------------------------------- JSON */

static void json_key(struct out *o, const char *key)
{
	put_str(o, o->len > 1 ? ",\"" : "\"");
	put_str(o, key);
	put_str(o, "\":");
}

static void json_u64(struct out *o, const char *key, uint64_t v)
{
	json_key(o, key);
	put_u64(o, v);
}

static const char *const json_fault_keys[UZS_FAULT_KINDS] = {
	[UZS_FAULT_FIRST_TOUCH] = "faults_first_touch",
	[UZS_FAULT_ZERO] = "faults_zero",
	[UZS_FAULT_SAME] = "faults_same",
	[UZS_FAULT_STORED] = "faults_stored",
	[UZS_FAULT_STAGED] = "faults_staged",
	[UZS_FAULT_BACKED] = "faults_backed",
	[UZS_FAULT_SPURIOUS] = "faults_spurious",
};

/* Non-empty buckets as [lowest ns, count]; a bucket reaches up to the next
 * bucket's lowest ns (see uzs_latency_bucket). */
static void json_hist(struct out *o, const struct uzs_latency *lat)
{
	bool first = true;

	json_key(o, "fault_hist");
	put(o, "[", 1);
	for (unsigned i = 0; i < UZS_LAT_BUCKETS; i++) {
		if (!lat->bucket[i])
			continue;
		put_str(o, first ? "[" : ",[");
		put_u64(o, uzs_latency_bucket_min(i));
		put(o, ",", 1);
		put_u64(o, lat->bucket[i]);
		put(o, "]", 1);
		first = false;
	}
	put(o, "]", 1);
}

/*
 * The pools as [{"node":N,"pages":P,"compressed_bytes":C,"memory_bytes":M}]
 * (node null for an unbound pool): pages_stored, stored_bytes and
 * pool_bytes of each, under names of their own so that a key names one
 * figure in the line.
 */
static void json_pools(struct out *o, const struct uzs_engine_stats *s)
{
	unsigned n = pools_of(s);

	json_key(o, "pools");
	put(o, "[", 1);
	for (unsigned i = 0; i < n; i++) {
		const struct uzs_pool_figures *f = &s->pool[i];

		put_str(o, i ? ",{\"node\":" : "{\"node\":");
		if (f->node >= 0)
			put_u64(o, (uint64_t)f->node);
		else
			put_str(o, "null");
		put_str(o, ",\"pages\":");
		put_u64(o, f->pages_stored);
		put_str(o, ",\"compressed_bytes\":");
		put_u64(o, f->stored_bytes);
		put_str(o, ",\"memory_bytes\":");
		put_u64(o, f->pool_bytes);
		put(o, "}", 1);
	}
	put(o, "]", 1);
}

size_t uzs_stats_json(const struct uzs_engine_stats *s, uint64_t pid,
		      char *buf, size_t len)
{
	const struct uzs_latency *lat = &s->fault_latency;
	struct out o = { buf, len, 0, len == 0 };

	put(&o, "{", 1);
	json_u64(&o, "pid", pid);
	json_u64(&o, "version", UZS_STATS_VERSION);     /* of this line's keys */
	json_u64(&o, "uptime_ns", s->uptime_ns);
	json_u64(&o, "managed_bytes", s->managed_bytes);
	json_u64(&o, "resident_bytes", s->resident_bytes);
	json_u64(&o, "regions", s->regions);
	json_u64(&o, "pages_zero", s->pages_zero);
	json_u64(&o, "pages_same", s->pages_same);
	json_u64(&o, "pages_stored", s->pages_stored);
	json_u64(&o, "stored_bytes", s->stored_bytes);
	json_u64(&o, "pool_bytes", s->pool_bytes);
	json_u64(&o, "metadata_bytes", s->metadata_bytes);
	json_u64(&o, "unmanaged_bytes", s->unmanaged_bytes);
	json_u64(&o, "held_bytes", uzs_stats_held_bytes(s));
	json_key(&o, "effective_ratio");
	if (s->pool_bytes)
		put_ratio(&o, uzs_stats_effective_ratio(s), 3);
	else
		put_str(&o, "null");
	json_pools(&o, s);
	json_u64(&o, "compressed_zero", s->compressed[UZS_PAGE_ZERO]);
	json_u64(&o, "compressed_same", s->compressed[UZS_PAGE_SAME]);
	json_u64(&o, "compressed_stored", s->compressed[UZS_PAGE_STORED]);
	json_u64(&o, "compressed_incompressible", s->compressed[UZS_PAGE_INCOMPRESSIBLE]);
	for (unsigned k = 0; k < UZS_FAULT_KINDS; k++)
		json_u64(&o, json_fault_keys[k], s->faults[k]);
	json_u64(&o, "refaults", s->refaults);
	json_u64(&o, "takeouts", s->takeouts);
	json_u64(&o, "takeout_busy", s->takeout_busy);
	json_u64(&o, "scans", s->scans);
	json_u64(&o, "events_remove", s->events_remove);
	json_u64(&o, "events_unmap", s->events_unmap);
	json_u64(&o, "events_remap", s->events_remap);
	json_u64(&o, "events_fork", s->events_fork);
	json_u64(&o, "fork_thaws", s->fork_thaws);
	json_u64(&o, "read_ahead", s->read_ahead);
	json_u64(&o, "throttle_ns", s->throttle_ns);
	json_u64(&o, "throttle_restore_ns", s->throttle_restore_ns);
	json_u64(&o, "pages_backed", s->pages_backed);
	json_u64(&o, "backing_file_bytes", s->backing_file_bytes);
	json_u64(&o, "backing_disk_bytes", s->backing_disk_bytes);
	json_u64(&o, "evictions", s->evictions);
	json_u64(&o, "backing_writes", s->backing_writes);
	json_u64(&o, "backing_write_bytes", s->backing_write_bytes);
	json_u64(&o, "backing_reads", s->backing_reads);
	json_u64(&o, "backing_errors", s->backing_errors);
	json_u64(&o, "fault_count", lat->count);
	json_u64(&o, "fault_sum_ns", lat->sum_ns);
	json_u64(&o, "fault_max_ns", lat->max_ns);
	json_u64(&o, "fault_p50_ns", uzs_latency_percentile(lat, 50));
	json_u64(&o, "fault_p90_ns", uzs_latency_percentile(lat, 90));
	json_u64(&o, "fault_p99_ns", uzs_latency_percentile(lat, 99));
	json_u64(&o, "fault_p999_ns", uzs_latency_percentile(lat, 99.9));
	json_hist(&o, lat);
	put(&o, "}\n", 2);
	if (o.full)
		o.len = 0;
	put_nul(&o);
	return o.len;
}
