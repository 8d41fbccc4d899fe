/*
 * env_config.c - parse the UZSWAP_* environment into a struct uzs_config.
 *
 * One table lists every variable with its loader and accepted range; the
 * loader, the defaults and the unknown-name check all work from it, so a new
 * setting is one table row plus one struct field.
 *
 * Parsing is done by hand rather than with strtoull: strtoull skips leading
 * spaces, accepts signs ("-1" wraps to 2^64-1) and depends on the locale,
 * all of which would let a malformed value through as something surprising.
 * Letters are compared as ASCII for the same locale reason.
 *
 * Runs in the shim's constructor: no malloc, no output.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "env_config.h"
#include "uzswap.h"

/* ---------------------------------------------------------------- parsing */

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* s equals word (lower case) ignoring ASCII case. */
static bool same_word(const char *s, const char *word)
{
	while (*s && ascii_lower(*s) == *word)
		s++, word++;
	return !*s && !*word;
}

/*
 * Leading decimal digits of *sp into *v, advancing *sp past them.  Returns
 * 0, -EINVAL for no digits, or -ERANGE if they overflow; all digits are
 * consumed either way, so the caller can still tell "12345...X" is malformed
 * rather than merely too large.
 */
static int parse_digits(const char **sp, uint64_t *v)
{
	const char *s = *sp;
	bool overflow = false;
	uint64_t n = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (n > (UINT64_MAX - d) / 10)
			overflow = true;
		else
			n = n * 10 + d;
	}
	*sp = s;
	*v = n;
	return overflow ? -ERANGE : 0;
}

/* Power of two a size suffix stands for: "", B, K, KB, KiB, ... TiB. */
static int size_shift(const char *s, unsigned *shift)
{
	static const char mult[] = "kmgt";
	const char *m = *s ? strchr(mult, ascii_lower(*s)) : NULL;

	*shift = m ? 10 * (unsigned)(m - mult + 1) : 0;
	if (m)
		s++;
	if (!*s || same_word(s, "b") || (m && same_word(s, "ib")))
		return 0;
	return -EINVAL;
}

/* Like uzs_parse_size, but says -ERANGE for a well-formed value too large. */
static int size_value(const char *s, uint64_t *bytes)
{
	unsigned shift;
	uint64_t n;
	int r;

	if (!s)
		return -EINVAL;
	r = parse_digits(&s, &n);
	if (r == -EINVAL || size_shift(s, &shift))
		return -EINVAL;
	if (r || n > UINT64_MAX >> shift)
		return -ERANGE;
	*bytes = n << shift;
	return 0;
}

int uzs_parse_size(const char *s, uint64_t *bytes)
{
	return size_value(s, bytes) ? -EINVAL : 0;
}

static const struct {
	const char *name;
	uint64_t ns;
} duration_units[] = {
	{ "", UZS_NSEC_PER_SEC },   /* a bare number is seconds */
	{ "us", 1000 },
	{ "ms", 1000 * 1000 },
	{ "s", UZS_NSEC_PER_SEC },
	{ "m", 60 * UZS_NSEC_PER_SEC },
	{ "h", 3600 * UZS_NSEC_PER_SEC },
};

static int duration_value(const char *s, uint64_t *ns)
{
	uint64_t n;
	int r;

	if (!s)
		return -EINVAL;
	r = parse_digits(&s, &n);
	if (r == -EINVAL)
		return r;
	for (size_t i = 0; i < sizeof(duration_units) / sizeof(duration_units[0]); i++) {
		uint64_t unit = duration_units[i].ns;

		if (!same_word(s, duration_units[i].name))
			continue;
		if (r || n > UINT64_MAX / unit)
			return -ERANGE;
		*ns = n * unit;
		return 0;
	}
	return -EINVAL;
}

int uzs_parse_duration(const char *s, uint64_t *ns)
{
	return duration_value(s, ns) ? -EINVAL : 0;
}

int uzs_parse_bool(const char *s, bool *v)
{
	static const char *const yes[] = { "1", "on", "yes", "true" };
	static const char *const no[] = { "0", "off", "no", "false" };

	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (same_word(s, yes[i])) {
			*v = true;
			return 0;
		}
		if (same_word(s, no[i])) {
			*v = false;
			return 0;
		}
	}
	return -EINVAL;
}

int uzs_parse_log_level(const char *s, enum uzs_log_level *level)
{
	static const char *const names[] = {
		[UZS_LOG_OFF] = "off", [UZS_LOG_ERROR] = "error",
		[UZS_LOG_WARN] = "warn", [UZS_LOG_INFO] = "info",
		[UZS_LOG_DEBUG] = "debug",
	};

	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (same_word(s, names[i])) {
			*level = (enum uzs_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

/*
 * The masked kernel features: "-name" items separated by commas, each
 * naming a feature once.  Only masking is offered (a "+name" could not make
 * a kernel have what it lacks), and the minus says so in the variable.
 */
int uzs_parse_kernel_mask(const char *s, unsigned *mask)
{
	static const struct {
		const char *name;
		unsigned bit;
	} features[] = {
		{ "move", UZS_KF_MOVE },
		{ "pagemap_scan", UZS_KF_PAGEMAP_SCAN },
		{ "wp_async", UZS_KF_WP_ASYNC },
	};
	unsigned m = 0;

	if (!s)
		return -EINVAL;
	for (;;) {
		size_t len = strcspn(s, ",");
		unsigned bit = 0;
		char word[16];

		if (*s != '-' || len < 2 || len - 1 >= sizeof(word))
			return -EINVAL;
		memcpy(word, s + 1, len - 1);
		word[len - 1] = '\0';
		for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++)
			if (same_word(word, features[i].name))
				bit = features[i].bit;
		if (!bit || (m & bit))
			return -EINVAL;
		m |= bit;
		if (!s[len])
			break;
		s += len + 1;
	}
	*mask = m;
	return 0;
}

/* --------------------------------------------------------------- messages */

/* A message under construction in the caller's buffer, which may be absent. */
struct msg {
	char *buf;
	size_t size, len;
};

__attribute__((format(printf, 2, 3)))
static void msg_add(struct msg *m, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!m->buf || m->len + 1 >= m->size)
		return;
	va_start(ap, fmt);
	n = vsnprintf(m->buf + m->len, m->size - m->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		m->len += (size_t)n < m->size - m->len ? (size_t)n : m->size - m->len - 1;
}

/* Bytes of a value or name shown in a message; the rest becomes "...". */
#define SHOW_MAX 64
#define SHOWN_MAX (SHOW_MAX * 4 + sizeof("..."))

/*
 * Make s[0..len) safe to show inside a one-line message: a value may hold a
 * newline, escape sequences or a megabyte of text.
 */
static void show(const char *s, size_t len, char out[SHOWN_MAX])
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0, i;

	for (i = 0; i < len && i < SHOW_MAX; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c >= 0x20 && c < 0x7f) {
			out[n++] = (char)c;
		} else {
			out[n++] = '\\';
			out[n++] = 'x';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	if (i < len) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
}

/* Write `uzswap: NAME="value" <why>` into err; always returns -EINVAL. */
__attribute__((format(printf, 5, 6)))
static int complain(char *err, size_t errlen, const char *name,
		    const char *value, const char *fmt, ...)
{
	struct msg m = { err, errlen, 0 };
	char shown[SHOWN_MAX];
	va_list ap;

	if (!err || !errlen)
		return -EINVAL;
	show(value, strlen(value), shown);
	msg_add(&m, "uzswap: %s=\"%s\" ", name, shown);
	if (m.len + 1 < m.size) {
		va_start(ap, fmt);
		vsnprintf(err + m.len, m.size - m.len, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

#define SIZE_FORM "use a number with an optional K, M, G or T suffix (e.g. 512M)"
#define DURATION_FORM "use a number with an optional unit us, ms, s, m or h " \
	"(e.g. 500ms; a bare number is seconds)"

/* ------------------------------------------------------------- the table */

struct var;
typedef int load_fn(const struct var *v, const char *value,
		    struct uzs_config *cfg, char *err, size_t errlen);

struct var {
	const char *name;
	load_fn *load;
	size_t field;               /* offsetof the setting, for generic loaders */
	uint64_t min, max;          /* accepted range of a size or duration */
	const char *range;          /* what to say outside it */
};

static void *field(struct uzs_config *cfg, const struct var *v)
{
	return (char *)cfg + v->field;
}

static int load_bool(const struct var *v, const char *value,
		     struct uzs_config *cfg, char *err, size_t errlen)
{
	if (uzs_parse_bool(value, field(cfg, v)))
		return complain(err, errlen, v->name, value,
				"is not a boolean; use 1/0, on/off, yes/no or true/false");
	return 0;
}

static int in_range(const struct var *v, const char *value, uint64_t n,
		    char *err, size_t errlen)
{
	if (n < v->min || n > v->max)
		return complain(err, errlen, v->name, value, "%s", v->range);
	return 0;
}

static int load_size(const struct var *v, const char *value,
		     struct uzs_config *cfg, char *err, size_t errlen)
{
	uint64_t n;
	int r = size_value(value, &n);

	if (r == -ERANGE)
		return complain(err, errlen, v->name, value, "is too large to be a size");
	if (r)
		return complain(err, errlen, v->name, value, "is not a size; " SIZE_FORM);
	if (in_range(v, value, n, err, errlen))
		return -EINVAL;
	*(uint64_t *)field(cfg, v) = n;
	return 0;
}

static int load_duration(const struct var *v, const char *value,
			 struct uzs_config *cfg, char *err, size_t errlen)
{
	uint64_t ns;
	int r = duration_value(value, &ns);

	if (r == -ERANGE)
		return complain(err, errlen, v->name, value, "is too large to be a duration");
	if (r)
		return complain(err, errlen, v->name, value,
				"is not a duration; " DURATION_FORM);
	if (in_range(v, value, ns, err, errlen))
		return -EINVAL;
	*(uint64_t *)field(cfg, v) = ns;
	return 0;
}

static int load_cold_age(const struct var *v, const char *value,
			 struct uzs_config *cfg, char *err, size_t errlen)
{
	int r;

	if (same_word(value, "off")) {
		cfg->cold_age_ns = 0;
		return 0;
	}
	r = duration_value(value, &cfg->cold_age_ns);
	if (r == -ERANGE)
		return complain(err, errlen, v->name, value, "is too large to be a duration");
	if (r)
		return complain(err, errlen, v->name, value,
				"is neither a duration nor \"off\"; " DURATION_FORM);
	return 0;
}

static int load_log_level(const struct var *v, const char *value,
			  struct uzs_config *cfg, char *err, size_t errlen)
{
	if (uzs_parse_log_level(value, &cfg->log_level))
		return complain(err, errlen, v->name, value,
				"is not a log level; use off, error, warn, info or debug");
	return 0;
}

static int copy_path(const struct var *v, const char *value, char *dst,
		     char *err, size_t errlen)
{
	size_t len = strnlen(value, PATH_MAX);

	if (len == PATH_MAX)
		return complain(err, errlen, v->name, value,
				"is too long; a path must be shorter than %d bytes",
				PATH_MAX);
	memcpy(dst, value, len + 1);
	return 0;
}

static int load_path(const struct var *v, const char *value,
		     struct uzs_config *cfg, char *err, size_t errlen)
{
	return copy_path(v, value, field(cfg, v), err, errlen);
}

static int load_backing(const struct var *v, const char *value,
			struct uzs_config *cfg, char *err, size_t errlen)
{
	if (same_word(value, "off")) {
		cfg->backing = UZS_BACKING_OFF;
		return 0;
	}
	if (copy_path(v, value, cfg->backing_path, err, errlen))
		return -EINVAL;
	cfg->backing = UZS_BACKING_PATH;
	return 0;
}

static int load_kernel_mask(const struct var *v, const char *value,
			    struct uzs_config *cfg, char *err, size_t errlen)
{
	if (uzs_parse_kernel_mask(value, &cfg->kernel_mask))
		return complain(err, errlen, v->name, value,
				"is not a list of features to mask; use any of "
				"-move, -pagemap_scan and -wp_async, separated "
				"by commas (e.g. -move,-pagemap_scan)");
	return 0;
}

/* Read by the uzswap command, not the shim: known, so never "unknown". */
static int load_ignored(const struct var *v, const char *value,
			struct uzs_config *cfg, char *err, size_t errlen)
{
	(void)v, (void)value, (void)cfg, (void)err, (void)errlen;
	return 0;
}

#define AT(f) offsetof(struct uzs_config, f)
#define ANY 0, UINT64_MAX, NULL

/* In the order they are checked; the first bad one is reported. */
static const struct var vars[] = {
	/* First, so that a disabled run reads nothing else. */
	{ "UZSWAP_DISABLE", load_bool, AT(disable), ANY },
	{ "UZSWAP_LIMIT", load_size, AT(limit), 1, UINT64_MAX,
	  "must be greater than 0; unset it for no limit" },
	{ "UZSWAP_COLD_AGE", load_cold_age, 0, ANY },
	{ "UZSWAP_MIN_REGION", load_size, AT(min_region), ANY },
	{ "UZSWAP_SCAN_INTERVAL", load_duration, AT(scan_interval_ns),
	  UZS_CONFIG_MIN_INTERVAL_NS, UINT64_MAX, "is too short; use at least 10ms" },
	{ "UZSWAP_STATS", load_bool, AT(stats), ANY },
	{ "UZSWAP_STATS_FILE", load_path, AT(stats_file), ANY },
	{ "UZSWAP_STATS_INTERVAL", load_duration, AT(stats_interval_ns),
	  UZS_CONFIG_MIN_INTERVAL_NS, UINT64_MAX, "is too short; use at least 10ms" },
	{ "UZSWAP_LOG", load_log_level, 0, ANY },
	{ "UZSWAP_CUTOFF", load_size, AT(cutoff),
	  UZS_CONFIG_MIN_CUTOFF, UZS_CONFIG_MAX_CUTOFF,
	  "is out of range; use a size from 64 to 4096 bytes (e.g. 3072)" },
	{ "UZSWAP_POOL_MAX", load_size, AT(pool_max), 64 << 10, UINT64_MAX,
	  "is too small; use at least 64K, or unset it for no cap" },
	{ "UZSWAP_BACKING", load_backing, 0, ANY },
	{ "UZSWAP_NUMA", load_bool, AT(numa), ANY },
	{ "UZSWAP_KERNEL_FEATURES", load_kernel_mask, 0, ANY },
	{ "UZSWAP_PRELOAD_PATH", load_ignored, 0, ANY },
};

#define NVARS (sizeof(vars) / sizeof(vars[0]))

/* ---------------------------------------------------------------- loading */

void uzs_config_defaults(struct uzs_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->cold_age_ns = UZS_CONFIG_DEFAULT_COLD_AGE_NS;
	cfg->min_region = UZS_CONFIG_DEFAULT_MIN_REGION;
	cfg->scan_interval_ns = UZS_CONFIG_DEFAULT_SCAN_NS;
	cfg->stats_interval_ns = UZS_CONFIG_DEFAULT_STATS_NS;
	cfg->log_level = UZS_LOG_WARN;
	cfg->cutoff = UZS_CODEC_DEFAULT_CUTOFF;
	cfg->backing = UZS_BACKING_TMPFILE;
	cfg->numa = true;
}

/* An empty value counts as unset: `UZSWAP_LIMIT= prog` is a common way to
 * clear a variable for one run. */
static const char *lookup(const char *(*get)(const char *name), const char *name)
{
	const char *value = get(name);

	return value && *value ? value : NULL;
}

int uzs_config_load(struct uzs_config *cfg, const char *(*get)(const char *name),
		    char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	uzs_config_defaults(cfg);
	for (size_t i = 0; i < NVARS; i++) {
		const char *value = lookup(get, vars[i].name);

		if (!value)
			continue;
		if (vars[i].load(&vars[i], value, cfg, err, errlen)) {
			uzs_config_defaults(cfg);
			return -EINVAL;
		}
		if (cfg->disable)
			return 0;
	}
	/*
	 * With a limit, pressure decides what to compress; compressing by age
	 * as well would spend CPU on pages that may never need to leave.
	 */
	if (cfg->limit && !lookup(get, "UZSWAP_COLD_AGE"))
		cfg->cold_age_ns = 0;
	return 0;
}

/* ---------------------------------------------------------- unknown names */

#define PREFIX "UZSWAP_"
#define PREFIX_LEN (sizeof(PREFIX) - 1)
#define DIST_MAX_LEN 32     /* longer names are too far from any of ours */

/*
 * Optimal string alignment distance between a[0..la) and b[0..lb), ignoring
 * ASCII case: edits, plus swapping two neighbours (LMIIT for LIMIT) as one.
 */
static unsigned distance(const char *a, size_t la, const char *b, size_t lb)
{
	unsigned d[3][DIST_MAX_LEN + 1];    /* rows i-2, i-1 and i, cycled */

	if (la > DIST_MAX_LEN || lb > DIST_MAX_LEN)
		return DIST_MAX_LEN;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		unsigned *cur = d[i % 3], *prev = d[(i + 2) % 3], *prev2 = d[(i + 1) % 3];

		cur[0] = (unsigned)i;
		for (size_t j = 1; j <= lb; j++) {
			char ca = ascii_lower(a[i - 1]), cb = ascii_lower(b[j - 1]);
			unsigned best = prev[j - 1] + (ca != cb);

			if (prev[j] + 1 < best)
				best = prev[j] + 1;
			if (cur[j - 1] + 1 < best)
				best = cur[j - 1] + 1;
			if (i > 1 && j > 1 && ca == ascii_lower(b[j - 2]) &&
			    ascii_lower(a[i - 2]) == cb && prev2[j - 2] + 1 < best)
				best = prev2[j - 2] + 1;
			cur[j] = best;
		}
	}
	return d[la % 3][lb];
}

/* The known name close enough to name[0..len) to be what was meant, or NULL. */
static const char *nearest(const char *name, size_t len)
{
	const char *best = NULL;
	unsigned best_dist = DIST_MAX_LEN;

	for (size_t i = 0; i < NVARS; i++) {
		const char *known = vars[i].name + PREFIX_LEN;
		size_t klen = strlen(known);
		/* One slip in a short name, two in a long one. */
		unsigned allowed = klen >= 8 ? 2 : 1;
		unsigned dist = distance(name + PREFIX_LEN, len - PREFIX_LEN, known, klen);

		if (dist <= allowed && dist < best_dist) {
			best = vars[i].name;
			best_dist = dist;
		}
	}
	return best;
}

static bool is_known(const char *name, size_t len)
{
	for (size_t i = 0; i < NVARS; i++)
		if (strlen(vars[i].name) == len && !memcmp(vars[i].name, name, len))
			return true;
	return false;
}

static bool looks_like_ours(const char *name, size_t len)
{
	if (len < PREFIX_LEN)
		return false;
	for (size_t i = 0; i < PREFIX_LEN; i++)
		if (ascii_lower(name[i]) != ascii_lower(PREFIX[i]))
			return false;
	return true;
}

static int report_unknown(const char *name, size_t len, char *err, size_t errlen)
{
	struct msg m = { err, errlen, 0 };
	char shown[SHOWN_MAX];
	const char *near = nearest(name, len);

	show(name, len, shown);
	msg_add(&m, "uzswap: ignoring unknown variable %s; ", shown);
	if (near) {
		msg_add(&m, "did you mean %s?", near);
		return -EINVAL;
	}
	msg_add(&m, "known variables are");
	for (size_t i = 0; i < NVARS; i++)
		msg_add(&m, "%s %s", i ? "," : "", vars[i].name);
	return -EINVAL;
}

int uzs_config_unknown(const char *const *envp, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	for (; envp && *envp; envp++) {
		const char *eq = strchr(*envp, '=');
		size_t len = eq ? (size_t)(eq - *envp) : strlen(*envp);

		if (looks_like_ours(*envp, len) && !is_known(*envp, len))
			return report_unknown(*envp, len, err, errlen);
	}
	return 0;
}
