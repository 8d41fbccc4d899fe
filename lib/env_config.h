/*
 * env_config.h - uzswap's settings: the UZSWAP_* environment variables, their
 * defaults, and the parsers for their values.  Internal to the library.
 *
 * (Not named config.h: that name is autoconf's header, which each file in lib/
 * includes as "config.h" and would then find this file instead.)
 *
 * This code runs in the preload shim's constructor, before the program's
 * allocator can be trusted, so nothing here calls malloc or prints: paths are
 * copied into fixed arrays, and a bad value comes back as one line of text
 * for the caller to show.
 *
 *   Variable               Type      Default       Meaning
 *   ---------------------  --------  ------------  ---------------------------
 *   UZSWAP_DISABLE         bool      off           run the program untouched
 *   UZSWAP_LIMIT           size > 0  unset         keep the process's anonymous
 *                                    (no limit)    memory at or under SIZE
 *   UZSWAP_COLD_AGE        duration  120s, or off  compress pages untouched
 *                          or "off"  if LIMIT set  that long; "off" or 0
 *                                                  disables
 *   UZSWAP_MIN_REGION      size      1M            smaller mappings are left
 *                                                  alone
 *   UZSWAP_SCAN_INTERVAL   duration  1s            how often cold pages are
 *                          >= 10ms                 looked for
 *   UZSWAP_STATS           bool      off           print a summary to stderr at
 *                                                  exit
 *   UZSWAP_STATS_FILE      path      unset         append one JSON line per
 *                                                  interval
 *   UZSWAP_STATS_INTERVAL  duration  1s            how often STATS_FILE is
 *                          >= 10ms                 written
 *   UZSWAP_LOG             level     warn          diagnostics to stderr: off,
 *                                                  error, warn, info, debug
 *   UZSWAP_CUTOFF          size      3072          compressed size above which
 *                          64..4096                a page is kept uncompressed
 *   UZSWAP_POOL_MAX        size > 0  unset         cap on compressed pool
 *                                    (no cap)      memory
 *   UZSWAP_BACKING         path      unset         where evicted pages go;
 *                          or "off"  (unlinked     "off" for nowhere (name a
 *                                    file in       file called off as ./off)
 *                                    $TMPDIR)
 *   UZSWAP_NUMA            bool      on            a pool per NUMA node (see
 *                                                  pools.c); off: one pool
 *   UZSWAP_KERNEL_FEATURES features  unset         testing and diagnosis: run
 *                                                  as if the kernel lacked
 *                                                  the features named (below)
 *
 * An empty value is the same as an unset variable.  When UZSWAP_DISABLE is
 * on, the other variables are not read at all.
 *
 * Value forms (all case-insensitive; no spaces, signs or fractions):
 *   size      whole number of bytes with an optional K, M, G or T suffix,
 *             each 1024 times the last; a trailing B or iB is allowed and
 *             changes nothing (4096, 4096B, 512M, 512MB, 512MiB, 2g).  There
 *             is no 1000-based form.
 *   duration  whole number with an optional unit us, ms, s, m (minutes) or
 *             h; a bare number is seconds (500ms, 2m, 120).
 *   bool      1/0, on/off, yes/no, true/false.
 *   level     off, error, warn, info, debug.
 *   features  a comma-separated list of -move, -pagemap_scan and -wp_async
 *             (-move,-pagemap_scan); each masks that kernel feature, as if
 *             the running kernel did not have it.
 *
 * Every parser returns 0 or -EINVAL (malformed or too large to represent) and
 * leaves its output alone on failure.
 */
#ifndef UZS_ENV_CONFIG_H
#define UZS_ENV_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UZS_NSEC_PER_SEC 1000000000ull

/* Ordered so that "log if level >= UZS_LOG_INFO" reads naturally. */
enum uzs_log_level {
	UZS_LOG_OFF = 0,
	UZS_LOG_ERROR,
	UZS_LOG_WARN,
	UZS_LOG_INFO,
	UZS_LOG_DEBUG,
};

enum uzs_backing_kind {
	UZS_BACKING_TMPFILE = 0,    /* unset: an unlinked file in $TMPDIR */
	UZS_BACKING_PATH,           /* backing_path names it */
	UZS_BACKING_OFF,            /* "off": no backing store */
};

/* Kernel features UZSWAP_KERNEL_FEATURES can mask (engine.c). */
enum uzs_kernel_feature {
	UZS_KF_MOVE = 1u << 0,          /* UFFDIO_MOVE, Linux 6.8 */
	UZS_KF_PAGEMAP_SCAN = 1u << 1,  /* the PAGEMAP_SCAN ioctl, Linux 6.7 */
	UZS_KF_WP_ASYNC = 1u << 2,      /* UFFD_FEATURE_WP_ASYNC, Linux 6.7 */
};

/* Defaults, for the places (tests, README) that want to name them. */
#define UZS_CONFIG_DEFAULT_COLD_AGE_NS   (120 * UZS_NSEC_PER_SEC)
#define UZS_CONFIG_DEFAULT_MIN_REGION    ((uint64_t)1 << 20)
#define UZS_CONFIG_DEFAULT_SCAN_NS       UZS_NSEC_PER_SEC
#define UZS_CONFIG_DEFAULT_STATS_NS      UZS_NSEC_PER_SEC
#define UZS_CONFIG_MIN_INTERVAL_NS       (10 * 1000000ull)
#define UZS_CONFIG_MIN_CUTOFF            64u
#define UZS_CONFIG_MAX_CUTOFF            4096u

/* Big enough for any message uzs_config_load or uzs_config_unknown writes. */
#define UZS_CONFIG_ERR_MAX 1024

struct uzs_config {
	bool disable;
	uint64_t limit;             /* bytes; 0 = no limit */
	uint64_t cold_age_ns;       /* 0 = no proactive compression */
	uint64_t min_region;        /* bytes */
	uint64_t scan_interval_ns;
	bool stats;
	char stats_file[PATH_MAX];  /* "" = none */
	uint64_t stats_interval_ns;
	enum uzs_log_level log_level;
	uint64_t cutoff;            /* bytes, 64..4096 */
	uint64_t pool_max;          /* bytes; 0 = no cap */
	enum uzs_backing_kind backing;
	char backing_path[PATH_MAX]; /* UZS_BACKING_PATH only; else "" */
	bool numa;
	unsigned kernel_mask;       /* enum uzs_kernel_feature bits to act as
				     * if the kernel lacked */
};

int uzs_parse_size(const char *s, uint64_t *bytes);
int uzs_parse_duration(const char *s, uint64_t *ns);
int uzs_parse_bool(const char *s, bool *v);
int uzs_parse_log_level(const char *s, enum uzs_log_level *level);
/* "-move,-wp_async": the enum uzs_kernel_feature bits named, or -EINVAL. */
int uzs_parse_kernel_mask(const char *s, unsigned *mask);

/* Fill cfg with the defaults of an empty environment. */
void uzs_config_defaults(struct uzs_config *cfg);

/*
 * Read every UZSWAP_* variable through get (getenv, or a test's fake), which
 * returns NULL for an unset variable.  Returns 0, or -EINVAL for the first bad
 * value: err then holds one line (no newline) naming the variable, its value
 * and the accepted form, and cfg holds the defaults.  err may be NULL or
 * errlen 0; longer messages are truncated (UZS_CONFIG_ERR_MAX always fits).
 */
int uzs_config_load(struct uzs_config *cfg, const char *(*get)(const char *name),
		    char *err, size_t errlen);

/*
 * Look through envp ("NAME=value" strings, NULL-terminated) for a variable
 * that looks like ours (UZSWAP_ in any case) but is not a known name.
 * Returns 0 if there is none, else -EINVAL with one line in err suggesting
 * the nearest known name, or listing them all if none is near.  Meant as a
 * warning: the unknown variable is simply ignored.
 */
int uzs_config_unknown(const char *const *envp, char *err, size_t errlen);

#endif
