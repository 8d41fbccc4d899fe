/*
 * test_config.c - the UZSWAP_* settings: each value parser's accepted and
 * rejected forms, defaults, loading through an injected environment, the
 * one-line error messages, and the unknown-variable check.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "env_config.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MS (1000 * 1000ull)
#define SEC UZS_NSEC_PER_SEC

/* ------------------------------------------------------------ size parser */

struct size_case {
	const char *s;
	uint64_t want;
};

static void sizes_parse(const struct size_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t v = 0xdead;

		cr_assert_eq(uzs_parse_size(c[i].s, &v), 0, "rejected \"%s\"", c[i].s);
		cr_assert_eq(v, c[i].want, "\"%s\" gave %llu, wanted %llu", c[i].s,
			     (unsigned long long)v, (unsigned long long)c[i].want);
	}
}

/* Rejected, and the output left untouched. */
static void sizes_rejected(const char *const *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t v = 0xdead;

		cr_assert_eq(uzs_parse_size(s[i], &v), -EINVAL, "accepted \"%s\"", s[i]);
		cr_assert_eq(v, 0xdead, "\"%s\" changed the output", s[i]);
	}
}

Test(parse_size, plain_bytes)
{
	static const struct size_case c[] = {
		{ "1", 1 }, { "4096", 4096 }, { "007", 7 }, { "123456789", 123456789 },
	};
	sizes_parse(c, N(c));
}

Test(parse_size, zero_allowed)
{
	static const struct size_case c[] = { { "0", 0 }, { "0K", 0 }, { "000", 0 } };
	sizes_parse(c, N(c));
}

Test(parse_size, binary_suffixes)
{
	static const struct size_case c[] = {
		{ "1K", 1024 }, { "512M", 512ull << 20 }, { "2G", 2ull << 30 },
		{ "3T", 3ull << 40 }, { "1536M", 1536ull << 20 },
	};
	sizes_parse(c, N(c));
}

Test(parse_size, lowercase_suffixes)
{
	static const struct size_case c[] = {
		{ "1k", 1024 }, { "1m", 1ull << 20 }, { "1g", 1ull << 30 }, { "1t", 1ull << 40 },
	};
	sizes_parse(c, N(c));
}

Test(parse_size, b_and_ib_endings_are_binary_too)
{
	static const struct size_case c[] = {
		{ "4096B", 4096 }, { "4096b", 4096 }, { "512MB", 512ull << 20 },
		{ "512MiB", 512ull << 20 }, { "512mib", 512ull << 20 },
		{ "2GB", 2ull << 30 }, { "1kB", 1024 }, { "1KIB", 1024 }, { "1TiB", 1ull << 40 },
	};
	sizes_parse(c, N(c));
}

Test(parse_size, largest_values)
{
	static const struct size_case c[] = {
		{ "18446744073709551615", UINT64_MAX },
		{ "16777215T", 16777215ull << 40 },
		{ "18014398509481983K", 18014398509481983ull << 10 },
	};
	sizes_parse(c, N(c));
}

Test(parse_size, overflow_rejected)
{
	static const char *const s[] = {
		"99999999999999999999", "18446744073709551616", "18446744073709551615K",
		"16777216T", "18014398509481984K", "99999999999999999999999999999999G",
	};
	sizes_rejected(s, N(s));
}

Test(parse_size, signs_rejected)
{
	static const char *const s[] = { "-1", "+1", "-0", "+512M", "1-", "1+" };
	sizes_rejected(s, N(s));
}

Test(parse_size, spaces_rejected)
{
	static const char *const s[] = { " 1", "1 ", "1 M", "\t1", "1\n", "1M ", "1 MiB" };
	sizes_rejected(s, N(s));
}

Test(parse_size, empty_and_null_rejected)
{
	uint64_t v = 0xdead;

	cr_assert_eq(uzs_parse_size("", &v), -EINVAL);
	cr_assert_eq(uzs_parse_size(NULL, &v), -EINVAL);
	cr_assert_eq(v, 0xdead);
}

Test(parse_size, unknown_suffixes_rejected)
{
	static const char *const s[] = {
		"12X", "1P", "1E", "1KK", "1MG", "1iB", "1Bi", "1KiBB", "1KBi", "1Ki",
		"M", "K", "B", "KiB", "0x10", "1_000", "1,000", "1e6", "1K\xc3\xa9",
	};
	sizes_rejected(s, N(s));
}

Test(parse_size, fractions_rejected)
{
	static const char *const s[] = { "1.5", "1.5G", ".5G", "1.", "0.0", "1,5G" };
	sizes_rejected(s, N(s));
}

/* -------------------------------------------------------- duration parser */

struct duration_case {
	const char *s;
	uint64_t want;
};

static void durations_parse(const struct duration_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t v = 0xdead;

		cr_assert_eq(uzs_parse_duration(c[i].s, &v), 0, "rejected \"%s\"", c[i].s);
		cr_assert_eq(v, c[i].want, "\"%s\" gave %llu ns, wanted %llu", c[i].s,
			     (unsigned long long)v, (unsigned long long)c[i].want);
	}
}

static void durations_rejected(const char *const *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t v = 0xdead;

		cr_assert_eq(uzs_parse_duration(s[i], &v), -EINVAL, "accepted \"%s\"", s[i]);
		cr_assert_eq(v, 0xdead, "\"%s\" changed the output", s[i]);
	}
}

Test(parse_duration, bare_number_is_seconds)
{
	static const struct duration_case c[] = {
		{ "0", 0 }, { "1", SEC }, { "120", 120 * SEC }, { "007", 7 * SEC },
	};
	durations_parse(c, N(c));
}

Test(parse_duration, units)
{
	static const struct duration_case c[] = {
		{ "5us", 5000 }, { "10ms", 10 * MS }, { "2s", 2 * SEC },
		{ "3m", 180 * SEC }, { "4h", 4 * 3600 * SEC }, { "0ms", 0 },
	};
	durations_parse(c, N(c));
}

Test(parse_duration, units_ignore_case)
{
	static const struct duration_case c[] = {
		{ "5US", 5000 }, { "10MS", 10 * MS }, { "10Ms", 10 * MS },
		{ "2S", 2 * SEC }, { "3M", 180 * SEC }, { "1H", 3600 * SEC },
	};
	durations_parse(c, N(c));
}

Test(parse_duration, largest_values)
{
	static const struct duration_case c[] = {
		{ "18446744073s", 18446744073ull * SEC },
		{ "18446744073", 18446744073ull * SEC },
		{ "5124095h", 5124095ull * 3600 * SEC },
		{ "18446744073709551us", 18446744073709551ull * 1000 },
	};
	durations_parse(c, N(c));
}

Test(parse_duration, overflow_rejected)
{
	static const char *const s[] = {
		"99999999999999999999", "99999999999999999999ms", "18446744073709551616us",
		"18446744074", "18446744074s", "5124096h", "307445735m",
		"18446744073709552us",
	};
	durations_rejected(s, N(s));
}

Test(parse_duration, signs_rejected)
{
	static const char *const s[] = { "-1", "+1", "-1s", "+10ms", "-0" };
	durations_rejected(s, N(s));
}

Test(parse_duration, spaces_rejected)
{
	static const char *const s[] = { " 1", "1 ", "1 s", "10 ms", "\t1s", "1s\n", "1m s" };
	durations_rejected(s, N(s));
}

Test(parse_duration, empty_and_null_rejected)
{
	uint64_t v = 0xdead;

	cr_assert_eq(uzs_parse_duration("", &v), -EINVAL);
	cr_assert_eq(uzs_parse_duration(NULL, &v), -EINVAL);
	cr_assert_eq(v, 0xdead);
}

Test(parse_duration, unit_typos_rejected)
{
	static const char *const s[] = {
		"1sec", "1secs", "1hr", "1min", "1mss", "1msec", "1d", "1ns", "1u",
		"1sm", "1hh", "1µs", "s", "ms", "h", "12X", "1K", "1m30s", "1h30m",
	};
	durations_rejected(s, N(s));
}

Test(parse_duration, fractions_rejected)
{
	static const char *const s[] = { "1.5", "1.5s", ".5s", "0.1ms", "1." };
	durations_rejected(s, N(s));
}

/* ------------------------------------------------------------ bool parser */

static void bools_parse(const char *const *s, size_t n, bool want)
{
	for (size_t i = 0; i < n; i++) {
		bool v = !want;

		cr_assert_eq(uzs_parse_bool(s[i], &v), 0, "rejected \"%s\"", s[i]);
		cr_assert_eq(v, want, "\"%s\" read as %d", s[i], v);
	}
}

Test(parse_bool, true_forms)
{
	static const char *const s[] = {
		"1", "on", "yes", "true", "ON", "On", "YES", "Yes", "TRUE", "tRuE",
	};
	bools_parse(s, N(s), true);
}

Test(parse_bool, false_forms)
{
	static const char *const s[] = {
		"0", "off", "no", "false", "OFF", "Off", "NO", "No", "FALSE", "fAlSe",
	};
	bools_parse(s, N(s), false);
}

Test(parse_bool, other_words_rejected)
{
	static const char *const s[] = {
		"", "2", "-1", "01", "00", "y", "n", "t", "f", "enable", "disabled",
		"truee", "tru", "of", "onn", " on", "on ", "yes\n", "1K",
	};

	for (size_t i = 0; i < N(s); i++) {
		bool v = true;

		cr_assert_eq(uzs_parse_bool(s[i], &v), -EINVAL, "accepted \"%s\"", s[i]);
		cr_assert(v, "\"%s\" changed the output", s[i]);
	}
	cr_assert_eq(uzs_parse_bool(NULL, &(bool){ true }), -EINVAL);
}

/* ------------------------------------------------------- log level parser */

Test(parse_log_level, every_level_in_any_case)
{
	static const struct {
		const char *s;
		enum uzs_log_level want;
	} c[] = {
		{ "off", UZS_LOG_OFF }, { "error", UZS_LOG_ERROR }, { "warn", UZS_LOG_WARN },
		{ "info", UZS_LOG_INFO }, { "debug", UZS_LOG_DEBUG }, { "OFF", UZS_LOG_OFF },
		{ "Error", UZS_LOG_ERROR }, { "WARN", UZS_LOG_WARN }, { "Debug", UZS_LOG_DEBUG },
	};

	for (size_t i = 0; i < N(c); i++) {
		enum uzs_log_level v = UZS_LOG_INFO;

		if (c[i].want == UZS_LOG_INFO)
			v = UZS_LOG_OFF;
		cr_assert_eq(uzs_parse_log_level(c[i].s, &v), 0, "rejected \"%s\"", c[i].s);
		cr_assert_eq(v, c[i].want, "\"%s\" read as %d", c[i].s, v);
	}
}

Test(parse_log_level, levels_are_ordered_by_verbosity)
{
	cr_assert(UZS_LOG_OFF < UZS_LOG_ERROR && UZS_LOG_ERROR < UZS_LOG_WARN &&
		  UZS_LOG_WARN < UZS_LOG_INFO && UZS_LOG_INFO < UZS_LOG_DEBUG);
}

Test(parse_log_level, other_words_rejected)
{
	static const char *const s[] = {
		"", "warning", "err", "verbose", "trace", "none", "3", " warn", "warn ",
		"debug\n", "1",
	};

	for (size_t i = 0; i < N(s); i++) {
		enum uzs_log_level v = UZS_LOG_INFO;

		cr_assert_eq(uzs_parse_log_level(s[i], &v), -EINVAL, "accepted \"%s\"", s[i]);
		cr_assert_eq(v, UZS_LOG_INFO, "\"%s\" changed the output", s[i]);
	}
	cr_assert_eq(uzs_parse_log_level(NULL, &(enum uzs_log_level){ 0 }), -EINVAL);
}

/* ------------------------------------------------------------ the loader */

/* A fake environment; every Criterion test runs in its own process. */
static struct {
	const char *name, *value;
} env[32];
static size_t nenv;
static struct uzs_config cfg;
static char err[UZS_CONFIG_ERR_MAX];

static void set(const char *name, const char *value)
{
	cr_assert_lt(nenv, N(env));
	env[nenv].name = name;
	env[nenv].value = value;
	nenv++;
}

static const char *fake_get(const char *name)
{
	for (size_t i = nenv; i-- > 0;)
		if (!strcmp(env[i].name, name))
			return env[i].value;
	return NULL;
}

static int load(void)
{
	memset(err, 'x', sizeof(err));
	return uzs_config_load(&cfg, fake_get, err, sizeof(err));
}

/* Load a single variable that must be accepted. */
static void load_ok(const char *name, const char *value)
{
	set(name, value);
	cr_assert_eq(load(), 0, "%s=\"%s\" rejected: %s", name, value, err);
	cr_assert_str_empty(err);
}

/* Load a single variable that must be refused with a sane message. */
static void load_bad(const char *name, const char *value)
{
	char prefix[128];

	nenv = 0;
	set(name, value);
	cr_assert_eq(load(), -EINVAL, "%s=\"%s\" accepted", name, value);
	snprintf(prefix, sizeof(prefix), "uzswap: %s=\"", name);
	cr_assert(!strncmp(err, prefix, strlen(prefix)),
		  "message does not start with %s: %s", prefix, err);
	cr_assert_null(strchr(err, '\n'), "multi-line message: %s", err);
	cr_assert_null(strchr(err, '\r'), "message has a CR: %s", err);
	cr_assert_lt(strlen(err), sizeof(err) - 1, "message truncated: %s", err);
	cr_assert_neq(err[strlen(err) - 1], ' ');
}

static void assert_defaults(const struct uzs_config *c)
{
	cr_assert_not(c->disable);
	cr_assert_eq(c->limit, 0);
	cr_assert_eq(c->cold_age_ns, 120 * SEC);
	cr_assert_eq(c->min_region, 1 << 20);
	cr_assert_eq(c->scan_interval_ns, SEC);
	cr_assert_not(c->stats);
	cr_assert_str_empty(c->stats_file);
	cr_assert_eq(c->stats_interval_ns, SEC);
	cr_assert_eq(c->log_level, UZS_LOG_WARN);
	cr_assert_eq(c->cutoff, 3072);
	cr_assert_eq(c->pool_max, 0);
	cr_assert_eq(c->backing, UZS_BACKING_TMPFILE);
	cr_assert_str_empty(c->backing_path);
	cr_assert(c->numa);
}

Test(config, defaults_with_empty_environment)
{
	cr_assert_eq(load(), 0);
	cr_assert_str_empty(err);
	assert_defaults(&cfg);
}

Test(config, defaults_function_matches_empty_environment)
{
	static struct uzs_config d;

	memset(&d, 0x5a, sizeof(d));
	uzs_config_defaults(&d);
	assert_defaults(&d);
}

Test(config, empty_values_count_as_unset)
{
	static const char *const names[] = {
		"UZSWAP_DISABLE", "UZSWAP_LIMIT", "UZSWAP_COLD_AGE", "UZSWAP_MIN_REGION",
		"UZSWAP_SCAN_INTERVAL", "UZSWAP_STATS", "UZSWAP_STATS_FILE",
		"UZSWAP_STATS_INTERVAL", "UZSWAP_LOG", "UZSWAP_CUTOFF", "UZSWAP_POOL_MAX",
		"UZSWAP_BACKING", "UZSWAP_NUMA", "UZSWAP_KERNEL_FEATURES",
	};

	for (size_t i = 0; i < N(names); i++)
		set(names[i], "");
	cr_assert_eq(load(), 0, "%s", err);
	assert_defaults(&cfg);
}

Test(config, reads_disable)
{
	load_ok("UZSWAP_DISABLE", "yes");
	cr_assert(cfg.disable);
}

Test(config, disable_off_reads_the_rest)
{
	set("UZSWAP_DISABLE", "0");
	load_ok("UZSWAP_LIMIT", "1G");
	cr_assert_not(cfg.disable);
	cr_assert_eq(cfg.limit, 1ull << 30);
}

Test(config, disable_skips_every_other_variable)
{
	set("UZSWAP_DISABLE", "1");
	set("UZSWAP_LIMIT", "12X");
	set("UZSWAP_CUTOFF", "1");
	cr_assert_eq(load(), 0, "%s", err);
	cr_assert(cfg.disable);
	cr_assert_eq(cfg.limit, 0);
	cr_assert_eq(cfg.cutoff, 3072);
}

Test(config, reads_limit)
{
	load_ok("UZSWAP_LIMIT", "512MiB");
	cr_assert_eq(cfg.limit, 512ull << 20);
}

Test(config, limit_zero_rejected)
{
	load_bad("UZSWAP_LIMIT", "0");
	cr_assert_str_eq(err, "uzswap: UZSWAP_LIMIT=\"0\" must be greater than 0; "
			      "unset it for no limit");
}

Test(config, reads_cold_age)
{
	load_ok("UZSWAP_COLD_AGE", "30s");
	cr_assert_eq(cfg.cold_age_ns, 30 * SEC);
}

Test(config, cold_age_off_and_zero_disable_it)
{
	static const char *const s[] = { "off", "OFF", "0", "0s" };

	for (size_t i = 0; i < N(s); i++) {
		nenv = 0;
		load_ok("UZSWAP_COLD_AGE", s[i]);
		cr_assert_eq(cfg.cold_age_ns, 0, "\"%s\"", s[i]);
	}
}

Test(config, cold_age_defaults_off_when_limit_set)
{
	load_ok("UZSWAP_LIMIT", "1G");
	cr_assert_eq(cfg.cold_age_ns, 0);
}

Test(config, cold_age_explicit_with_limit_is_kept)
{
	set("UZSWAP_LIMIT", "1G");
	load_ok("UZSWAP_COLD_AGE", "5m");
	cr_assert_eq(cfg.cold_age_ns, 300 * SEC);
}

Test(config, cold_age_empty_with_limit_is_unset)
{
	set("UZSWAP_LIMIT", "1G");
	load_ok("UZSWAP_COLD_AGE", "");
	cr_assert_eq(cfg.cold_age_ns, 0);
}

Test(config, cold_age_bad_value_rejected)
{
	load_bad("UZSWAP_COLD_AGE", "never");
	cr_assert_str_eq(err, "uzswap: UZSWAP_COLD_AGE=\"never\" is neither a duration "
			      "nor \"off\"; use a number with an optional unit us, ms, s, "
			      "m or h (e.g. 500ms; a bare number is seconds)");
}

Test(config, reads_min_region)
{
	load_ok("UZSWAP_MIN_REGION", "64K");
	cr_assert_eq(cfg.min_region, 65536);
}

Test(config, min_region_zero_allowed)
{
	load_ok("UZSWAP_MIN_REGION", "0");
	cr_assert_eq(cfg.min_region, 0);
}

Test(config, reads_scan_interval)
{
	load_ok("UZSWAP_SCAN_INTERVAL", "250ms");
	cr_assert_eq(cfg.scan_interval_ns, 250 * MS);
}

Test(config, scan_interval_of_10ms_allowed)
{
	load_ok("UZSWAP_SCAN_INTERVAL", "10ms");
	cr_assert_eq(cfg.scan_interval_ns, 10 * MS);
}

Test(config, scan_interval_below_10ms_rejected)
{
	static const char *const s[] = { "9ms", "9999us", "0", "0s" };

	for (size_t i = 0; i < N(s); i++)
		load_bad("UZSWAP_SCAN_INTERVAL", s[i]);
	cr_assert_str_eq(err, "uzswap: UZSWAP_SCAN_INTERVAL=\"0s\" is too short; "
			      "use at least 10ms");
}

Test(config, reads_stats)
{
	load_ok("UZSWAP_STATS", "on");
	cr_assert(cfg.stats);
}

Test(config, reads_stats_file)
{
	load_ok("UZSWAP_STATS_FILE", "/tmp/uzswap stats.jsonl");
	cr_assert_str_eq(cfg.stats_file, "/tmp/uzswap stats.jsonl");
}

Test(config, reads_stats_interval)
{
	load_ok("UZSWAP_STATS_INTERVAL", "1m");
	cr_assert_eq(cfg.stats_interval_ns, 60 * SEC);
}

Test(config, stats_interval_below_10ms_rejected)
{
	load_bad("UZSWAP_STATS_INTERVAL", "1ms");
	cr_assert(strstr(err, "at least 10ms"), "%s", err);
}

Test(config, reads_log)
{
	load_ok("UZSWAP_LOG", "debug");
	cr_assert_eq(cfg.log_level, UZS_LOG_DEBUG);
}

Test(config, reads_cutoff)
{
	load_ok("UZSWAP_CUTOFF", "2K");
	cr_assert_eq(cfg.cutoff, 2048);
}

Test(config, cutoff_range_ends_allowed)
{
	load_ok("UZSWAP_CUTOFF", "64");
	cr_assert_eq(cfg.cutoff, 64);
	nenv = 0;
	load_ok("UZSWAP_CUTOFF", "4K");
	cr_assert_eq(cfg.cutoff, 4096);
}

Test(config, cutoff_out_of_range_rejected)
{
	static const char *const s[] = { "0", "63", "4097", "8K", "1G" };

	for (size_t i = 0; i < N(s); i++)
		load_bad("UZSWAP_CUTOFF", s[i]);
	cr_assert_str_eq(err, "uzswap: UZSWAP_CUTOFF=\"1G\" is out of range; use a size "
			      "from 64 to 4096 bytes (e.g. 3072)");
}

Test(config, reads_pool_max)
{
	load_ok("UZSWAP_POOL_MAX", "8G");
	cr_assert_eq(cfg.pool_max, 8ull << 30);
}

Test(config, pool_max_zero_rejected)
{
	load_bad("UZSWAP_POOL_MAX", "0");
	cr_assert(strstr(err, "is too small; use at least 64K, or unset it for "
			 "no cap"), "%s", err);
}

/* A pool smaller than a few zspages cannot hold anything useful. */
Test(config, pool_max_below_64k_rejected)
{
	load_bad("UZSWAP_POOL_MAX", "65535");
	load_ok("UZSWAP_POOL_MAX", "64K");
	cr_assert_eq(cfg.pool_max, 64u << 10);
}

Test(config, reads_backing_path)
{
	load_ok("UZSWAP_BACKING", "/var/tmp/uzswap.swap");
	cr_assert_eq(cfg.backing, UZS_BACKING_PATH);
	cr_assert_str_eq(cfg.backing_path, "/var/tmp/uzswap.swap");
}

Test(config, backing_off)
{
	load_ok("UZSWAP_BACKING", "Off");
	cr_assert_eq(cfg.backing, UZS_BACKING_OFF);
	cr_assert_str_empty(cfg.backing_path);
}

Test(config, backing_dot_slash_off_is_a_path)
{
	load_ok("UZSWAP_BACKING", "./off");
	cr_assert_eq(cfg.backing, UZS_BACKING_PATH);
	cr_assert_str_eq(cfg.backing_path, "./off");
}

Test(config, reads_numa)
{
	load_ok("UZSWAP_NUMA", "false");
	cr_assert_not(cfg.numa);
}

Test(config, every_variable_at_once)
{
	set("UZSWAP_DISABLE", "no");
	set("UZSWAP_LIMIT", "2G");
	set("UZSWAP_COLD_AGE", "90");
	set("UZSWAP_MIN_REGION", "4M");
	set("UZSWAP_SCAN_INTERVAL", "500ms");
	set("UZSWAP_STATS", "true");
	set("UZSWAP_STATS_FILE", "s.jsonl");
	set("UZSWAP_STATS_INTERVAL", "5s");
	set("UZSWAP_LOG", "info");
	set("UZSWAP_CUTOFF", "2048");
	set("UZSWAP_POOL_MAX", "1T");
	set("UZSWAP_BACKING", "/swap");
	set("UZSWAP_NUMA", "off");
	cr_assert_eq(load(), 0, "%s", err);
	cr_assert_not(cfg.disable);
	cr_assert_eq(cfg.limit, 2ull << 30);
	cr_assert_eq(cfg.cold_age_ns, 90 * SEC);
	cr_assert_eq(cfg.min_region, 4ull << 20);
	cr_assert_eq(cfg.scan_interval_ns, 500 * MS);
	cr_assert(cfg.stats);
	cr_assert_str_eq(cfg.stats_file, "s.jsonl");
	cr_assert_eq(cfg.stats_interval_ns, 5 * SEC);
	cr_assert_eq(cfg.log_level, UZS_LOG_INFO);
	cr_assert_eq(cfg.cutoff, 2048);
	cr_assert_eq(cfg.pool_max, 1ull << 40);
	cr_assert_eq(cfg.backing, UZS_BACKING_PATH);
	cr_assert_str_eq(cfg.backing_path, "/swap");
	cr_assert_not(cfg.numa);
}

/* -------------------------------------------------------------- messages */

Test(config_errors, bad_size_message_is_exact)
{
	load_bad("UZSWAP_LIMIT", "12X");
	cr_assert_str_eq(err, "uzswap: UZSWAP_LIMIT=\"12X\" is not a size; use a number "
			      "with an optional K, M, G or T suffix (e.g. 512M)");
}

Test(config_errors, bad_duration_message_is_exact)
{
	load_bad("UZSWAP_SCAN_INTERVAL", "1sec");
	cr_assert_str_eq(err, "uzswap: UZSWAP_SCAN_INTERVAL=\"1sec\" is not a duration; "
			      "use a number with an optional unit us, ms, s, m or h "
			      "(e.g. 500ms; a bare number is seconds)");
}

Test(config_errors, bad_bool_message_is_exact)
{
	load_bad("UZSWAP_NUMA", "maybe");
	cr_assert_str_eq(err, "uzswap: UZSWAP_NUMA=\"maybe\" is not a boolean; "
			      "use 1/0, on/off, yes/no or true/false");
}

Test(config_errors, bad_log_level_message_is_exact)
{
	load_bad("UZSWAP_LOG", "verbose");
	cr_assert_str_eq(err, "uzswap: UZSWAP_LOG=\"verbose\" is not a log level; "
			      "use off, error, warn, info or debug");
}

Test(config, reads_kernel_features)
{
	load_ok("UZSWAP_KERNEL_FEATURES", "-move");
	cr_assert_eq(cfg.kernel_mask, UZS_KF_MOVE);
	load_ok("UZSWAP_KERNEL_FEATURES", "-PAGEMAP_SCAN,-wp_async");
	cr_assert_eq(cfg.kernel_mask, UZS_KF_PAGEMAP_SCAN | UZS_KF_WP_ASYNC);
	load_ok("UZSWAP_KERNEL_FEATURES", "-wp_async,-move,-pagemap_scan");
	cr_assert_eq(cfg.kernel_mask,
		     UZS_KF_MOVE | UZS_KF_PAGEMAP_SCAN | UZS_KF_WP_ASYNC);
}

Test(config_errors, bad_kernel_features)
{
	static const char *const bad[] = {
		"move", "+move", "-", "-moving", "-move,", ",-move", "-move,,-wp_async",
		"-move,-move", "-move -wp_async", "-pagemap_scan_and_more",
	};

	for (size_t i = 0; i < N(bad); i++) {
		load_bad("UZSWAP_KERNEL_FEATURES", bad[i]);
		cr_assert(strstr(err, "UZSWAP_KERNEL_FEATURES=") &&
			  strstr(err, "-move, -pagemap_scan and -wp_async"),
			  "\"%s\": %s", bad[i], err);
	}
}

Test(config_errors, overflow_says_too_large)
{
	load_bad("UZSWAP_LIMIT", "99999999999999999999");
	cr_assert_str_eq(err, "uzswap: UZSWAP_LIMIT=\"99999999999999999999\" is too "
			      "large to be a size");
	load_bad("UZSWAP_COLD_AGE", "5124096h");
	cr_assert(strstr(err, "too large to be a duration"), "%s", err);
	/* Malformed beats too large: the suffix is the mistake to point at. */
	load_bad("UZSWAP_POOL_MAX", "99999999999999999999X");
	cr_assert(strstr(err, "is not a size"), "%s", err);
}

Test(config_errors, every_variable_names_itself_and_its_form)
{
	static const struct {
		const char *name, *value, *form;
	} c[] = {
		{ "UZSWAP_DISABLE", "2", "1/0, on/off" },
		{ "UZSWAP_LIMIT", "-1", "K, M, G or T" },
		{ "UZSWAP_COLD_AGE", "2d", "us, ms, s, m or h" },
		{ "UZSWAP_MIN_REGION", "1.5M", "K, M, G or T" },
		{ "UZSWAP_SCAN_INTERVAL", " 1s", "us, ms, s, m or h" },
		{ "UZSWAP_STATS", "y", "1/0, on/off" },
		{ "UZSWAP_STATS_INTERVAL", "1 s", "us, ms, s, m or h" },
		{ "UZSWAP_LOG", "warning", "off, error, warn" },
		{ "UZSWAP_CUTOFF", "3KB2", "K, M, G or T" },
		{ "UZSWAP_POOL_MAX", "lots", "K, M, G or T" },
		{ "UZSWAP_NUMA", "auto", "1/0, on/off" },
	};

	for (size_t i = 0; i < N(c); i++) {
		load_bad(c[i].name, c[i].value);
		cr_assert(strstr(err, c[i].form), "%s: no \"%s\" in: %s", c[i].name,
			  c[i].form, err);
	}
}

Test(config_errors, control_characters_are_escaped)
{
	load_bad("UZSWAP_LIMIT", "1\nM\t\"\\\x1b[31m");
	cr_assert_str_eq(err, "uzswap: UZSWAP_LIMIT=\"1\\x0aM\\x09\\\"\\\\\\x1b[31m\" "
			      "is not a size; use a number with an optional K, M, G or T "
			      "suffix (e.g. 512M)");
}

Test(config_errors, long_values_are_cut_short)
{
	static char value[PATH_MAX * 2];

	memset(value, '7', sizeof(value) - 2);
	value[sizeof(value) - 2] = 'X';
	load_bad("UZSWAP_LIMIT", value);
	cr_assert(strstr(err, "777...\" is not a size"), "%s", err);
}

Test(config_errors, worst_case_message_fits)
{
	static char value[1000];

	memset(value, '\x01', sizeof(value) - 1);
	load_bad("UZSWAP_STATS_INTERVAL", value);
}

Test(config_errors, first_bad_variable_is_reported)
{
	set("UZSWAP_NUMA", "bogus");
	set("UZSWAP_LIMIT", "12X");
	cr_assert_eq(load(), -EINVAL);
	cr_assert(strstr(err, "UZSWAP_LIMIT"), "%s", err);
	cr_assert_null(strstr(err, "UZSWAP_NUMA"), "%s", err);
}

Test(config_errors, failure_leaves_defaults)
{
	set("UZSWAP_LIMIT", "1G");
	set("UZSWAP_LOG", "debug");
	set("UZSWAP_BACKING", "/swap");
	set("UZSWAP_NUMA", "bogus");
	cr_assert_eq(load(), -EINVAL);
	assert_defaults(&cfg);
}

Test(config_errors, success_clears_err)
{
	load_ok("UZSWAP_LIMIT", "1G");
	cr_assert_str_empty(err);
}

Test(config_errors, no_error_buffer_is_fine)
{
	set("UZSWAP_LIMIT", "12X");
	cr_assert_eq(uzs_config_load(&cfg, fake_get, NULL, 0), -EINVAL);
	cr_assert_eq(uzs_config_load(&cfg, fake_get, err, 0), -EINVAL);
	cr_assert_eq(uzs_config_unknown((const char *const[]){ "UZSWAP_X=1", NULL },
					NULL, 0), -EINVAL);
}

Test(config_errors, small_error_buffer_truncates)
{
	char small[16];

	set("UZSWAP_LIMIT", "12X");
	memset(small, 'x', sizeof(small));
	cr_assert_eq(uzs_config_load(&cfg, fake_get, small, sizeof(small)), -EINVAL);
	cr_assert_str_eq(small, "uzswap: UZSWAP_");
	/* A buffer that ends exactly after the variable and value. */
	char mid[sizeof("uzswap: UZSWAP_LIMIT=\"12X\" ")];
	cr_assert_eq(uzs_config_load(&cfg, fake_get, mid, sizeof(mid)), -EINVAL);
	cr_assert_str_eq(mid, "uzswap: UZSWAP_LIMIT=\"12X\" ");
}

/* ------------------------------------------------------------------ paths */

static char long_path[PATH_MAX + 1];

static void make_path(size_t len)
{
	memset(long_path, 'a', len);
	long_path[0] = '/';
	long_path[len] = '\0';
}

Test(config_paths, longest_path_accepted)
{
	make_path(PATH_MAX - 1);
	set("UZSWAP_STATS_FILE", long_path);
	set("UZSWAP_BACKING", long_path);
	cr_assert_eq(load(), 0, "%s", err);
	cr_assert_str_eq(cfg.stats_file, long_path);
	cr_assert_str_eq(cfg.backing_path, long_path);
}

Test(config_paths, stats_file_too_long_rejected)
{
	make_path(PATH_MAX);
	load_bad("UZSWAP_STATS_FILE", long_path);
	cr_assert(strstr(err, "...\" is too long; a path must be shorter than 4096 bytes"),
		  "%s", err);
}

Test(config_paths, backing_too_long_rejected)
{
	make_path(PATH_MAX);
	load_bad("UZSWAP_BACKING", long_path);
	cr_assert(strstr(err, "is too long"), "%s", err);
	cr_assert_eq(cfg.backing, UZS_BACKING_TMPFILE);
}

/* ------------------------------------------------------- unknown variables */

static int unknown(const char *const *envp)
{
	memset(err, 'x', sizeof(err));
	return uzs_config_unknown(envp, err, sizeof(err));
}

Test(config_unknown, suggests_the_name_meant)
{
	const char *const envp[] = { "HOME=/root", "UZSWAP_LIMT=1G", NULL };

	cr_assert_eq(unknown(envp), -EINVAL);
	cr_assert_str_eq(err, "uzswap: ignoring unknown variable UZSWAP_LIMT; "
			      "did you mean UZSWAP_LIMIT?");
}

Test(config_unknown, known_names_pass)
{
	const char *const envp[] = {
		"PATH=/bin", "UZSWAP_LIMIT=1G", "UZSWAP_COLD_AGE=off", "UZSWAP_NUMA=",
		"UZSWAP_STATS_FILE=/tmp/UZSWAP_LIMT=1", NULL,
	};

	cr_assert_eq(unknown(envp), 0);
	cr_assert_str_empty(err);
}

Test(config_unknown, empty_or_missing_environment_passes)
{
	const char *const envp[] = { NULL };

	cr_assert_eq(unknown(envp), 0);
	cr_assert_eq(unknown(NULL), 0);
}

Test(config_unknown, other_prefixes_ignored)
{
	const char *const envp[] = {
		"UZSWAPLIMIT=1", "UZSWA_LIMIT=1", "MY_UZSWAP_LIMT=1", "UZSWAP=1", NULL,
	};

	cr_assert_eq(unknown(envp), 0, "%s", err);
}

Test(config_unknown, swapped_letters_suggested)
{
	const char *const envp[] = { "UZSWAP_LMIIT=1G", NULL };

	cr_assert_eq(unknown(envp), -EINVAL);
	cr_assert(strstr(err, "did you mean UZSWAP_LIMIT?"), "%s", err);
}

Test(config_unknown, long_names_allow_two_slips)
{
	const char *const envp[] = { "UZSWAP_SCAN_INTERVL=1s", "UZSWAP_COLDAGE=1", NULL };

	cr_assert_eq(unknown(envp), -EINVAL);
	cr_assert(strstr(err, "did you mean UZSWAP_SCAN_INTERVAL?"), "%s", err);
	cr_assert_eq(unknown(envp + 1), -EINVAL);
	cr_assert(strstr(err, "did you mean UZSWAP_COLD_AGE?"), "%s", err);
}

Test(config_unknown, lower_case_suggests_upper_case)
{
	const char *const envp[] = { "uzswap_limit=1G", NULL };

	cr_assert_eq(unknown(envp), -EINVAL);
	cr_assert_str_eq(err, "uzswap: ignoring unknown variable uzswap_limit; "
			      "did you mean UZSWAP_LIMIT?");
}

Test(config_unknown, far_names_list_every_known_name)
{
	const char *const envp[] = { "UZSWAP_FROBNICATE=1", NULL };

	cr_assert_eq(unknown(envp), -EINVAL);
	cr_assert_str_eq(err, "uzswap: ignoring unknown variable UZSWAP_FROBNICATE; "
			      "known variables are UZSWAP_DISABLE, UZSWAP_LIMIT, "
			      "UZSWAP_COLD_AGE, UZSWAP_MIN_REGION, UZSWAP_SCAN_INTERVAL, "
			      "UZSWAP_STATS, UZSWAP_STATS_FILE, UZSWAP_STATS_INTERVAL, "
			      "UZSWAP_LOG, UZSWAP_CUTOFF, UZSWAP_POOL_MAX, "
			      "UZSWAP_BACKING, UZSWAP_NUMA, UZSWAP_KERNEL_FEATURES, "
			      "UZSWAP_PRELOAD_PATH");
}

Test(config_unknown, preload_path_is_known)
{
	/* Set by `uzswap run`'s users, read by the tool: not a typo. */
	const char *const envp[] = { "UZSWAP_PRELOAD_PATH=/x.so", NULL };

	cr_assert_eq(unknown(envp), 0, "%s", err);
}

Test(config_unknown, short_names_are_not_stretched)
{
	/* Two slips from LOG is a different word, not a typo. */
	const char *const envp[] = { "UZSWAP_FOO=1", NULL };

	cr_assert_eq(unknown(envp), -EINVAL);
	cr_assert(strstr(err, "known variables are"), "%s", err);
}

Test(config_unknown, first_unknown_reported)
{
	const char *const envp[] = { "UZSWAP_LIMIT=1", "UZSWAP_STAT=1", "UZSWAP_LOGS=1", NULL };

	cr_assert_eq(unknown(envp), -EINVAL);
	cr_assert(strstr(err, "variable UZSWAP_STAT;"), "%s", err);
	cr_assert(strstr(err, "did you mean UZSWAP_STATS?"), "%s", err);
}

Test(config_unknown, entry_without_equals_sign)
{
	const char *const envp[] = { "UZSWAP_NUMA", "UZSWAP_NUMAA", NULL };

	cr_assert_eq(unknown(envp), -EINVAL);
	cr_assert(strstr(err, "variable UZSWAP_NUMAA;"), "%s", err);
}

Test(config_unknown, odd_names_stay_on_one_line)
{
	static char name[600];
	const char *const envp[] = { name, NULL };

	memcpy(name, "UZSWAP_\n", 8);
	memset(name + 8, '\x7f', sizeof(name) - 11);
	memcpy(name + sizeof(name) - 3, "=1", 3);
	cr_assert_eq(unknown(envp), -EINVAL);
	cr_assert(!strncmp(err, "uzswap: ignoring unknown variable UZSWAP_\\x0a\\x7f", 49),
		  "%s", err);
	cr_assert_null(strchr(err, '\n'), "%s", err);
	cr_assert(strstr(err, "...; known variables are"), "%s", err);
	cr_assert(strstr(err, "UZSWAP_NUMA"), "truncated: %s", err);
}
