/*
 * uzswap.c - the command-line tool.
 *
 *   uzswap run [OPTIONS] [--] PROG [ARGS...]   run PROG under the shim
 *   uzswap stat [--json] PID                   live counters of a process
 *   uzswap help | --help,  uzswap --version
 *
 * `run` only arranges the environment and execs: each option becomes its
 * UZSWAP_* variable, the shim goes in front of LD_PRELOAD, and PROG replaces
 * us, so its exit status is its own.  The shim reads the variables; the
 * checks here exist so that a typo fails now, naming the option, rather
 * than as a warning from inside the program.
 *
 * Exit status: 0 fine, 1 `stat` could not read the process, 2 bad usage,
 * 125 uzswap itself could not set up the run, 126 PROG could not be
 * executed, 127 PROG was not found (the last three as env(1) and shells).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "env_config.h"
#include "stats.h"
#include "stats_shm.h"

#ifndef UZSWAP_PRELOAD_PATH
#error "build with -DUZSWAP_PRELOAD_PATH=\"/installed/path/of/libuzswap_preload.so\""
#endif

#define EXIT_USAGE 2
#define EXIT_SETUP 125
#define EXIT_CANNOT_EXEC 126
#define EXIT_NOT_FOUND 127

extern char **environ;

/* ------------------------------------------------------------- messages */

__attribute__((format(printf, 1, 2), noreturn))
static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("uzswap: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see uzswap --help)\n", stderr);
	exit(EXIT_USAGE);
}

/* A user's value made safe for a one-line message: printable, and short. */
static const char *shown(const char *s)
{
	static char buf[80];
	size_t n = 0;

	for (; *s && n < 64; s++)
		buf[n++] = *s >= 0x20 && *s < 0x7f ? *s : '?';
	if (*s) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

/* ------------------------------------------------------------ run options */

enum kind {
	K_SIZE,             /* uzs_parse_size, within [min, max] */
	K_DURATION,         /* uzs_parse_duration, at least min */
	K_DURATION_OFF,     /* a duration or "off" */
	K_PATH,             /* any non-empty path */
	K_PATH_OFF,         /* a path or "off" */
	K_BOOL,             /* uzs_parse_bool */
	K_LEVEL,            /* uzs_parse_log_level */
	K_FLAG,             /* takes no value: sets the variable to 1 */
};

struct run_option {
	const char *name;           /* without the leading -- */
	const char *arg;            /* metavariable, for help and messages */
	const char *env;
	enum kind kind;
	uint64_t min, max;
	const char *help;
};

#define NO_RANGE 0, UINT64_MAX

/* The UZSWAP_* variables a user would set per run; see env_config.h. */
static const struct run_option options[] = {
	{ "limit", "SIZE", "UZSWAP_LIMIT", K_SIZE, 1, UINT64_MAX,
	  "keep anonymous memory at or under SIZE" },
	{ "cold-age", "T|off", "UZSWAP_COLD_AGE", K_DURATION_OFF, NO_RANGE,
	  "compress pages untouched for T" },
	{ "pool-max", "SIZE", "UZSWAP_POOL_MAX", K_SIZE, 64 << 10, UINT64_MAX,
	  "cap compressed pool memory at SIZE" },
	{ "backing", "PATH|off", "UZSWAP_BACKING", K_PATH_OFF, NO_RANGE,
	  "where evicted pages go, or nowhere" },
	{ "min-region", "SIZE", "UZSWAP_MIN_REGION", K_SIZE, NO_RANGE,
	  "leave smaller mappings alone" },
	{ "scan-interval", "T", "UZSWAP_SCAN_INTERVAL", K_DURATION,
	  UZS_CONFIG_MIN_INTERVAL_NS, UINT64_MAX, "look for cold pages every T" },
	{ "cutoff", "SIZE", "UZSWAP_CUTOFF", K_SIZE,
	  UZS_CONFIG_MIN_CUTOFF, UZS_CONFIG_MAX_CUTOFF,
	  "keep pages that compress to more than SIZE" },
	{ "numa", "on|off", "UZSWAP_NUMA", K_BOOL, NO_RANGE,
	  "a pool per NUMA node; off: one pool" },
	{ "stats", NULL, "UZSWAP_STATS", K_FLAG, NO_RANGE,
	  "print a summary to stderr at exit" },
	{ "stats-file", "PATH", "UZSWAP_STATS_FILE", K_PATH, NO_RANGE,
	  "append a JSON line of stats to PATH every interval" },
	{ "stats-interval", "T", "UZSWAP_STATS_INTERVAL", K_DURATION,
	  UZS_CONFIG_MIN_INTERVAL_NS, UINT64_MAX, "write the stats file every T" },
	{ "log", "LEVEL", "UZSWAP_LOG", K_LEVEL, NO_RANGE,
	  "diagnostics: off, error, warn, info or debug" },
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

#define SIZE_FORM "use a number with an optional K, M, G or T suffix (e.g. 512M)"
#define DURATION_FORM "use a number with an optional unit us, ms, s, m or h " \
	"(e.g. 500ms; a bare number is seconds)"

static bool is_off(const char *v)
{
	return !strcasecmp(v, "off");
}

/* The accepted range of a size option, in words. */
static void size_range_error(const struct run_option *o, const char *v)
{
	if (o->max == UINT64_MAX)
		usage_error("--%s \"%s\" must be greater than 0", o->name, shown(v));
	usage_error("--%s \"%s\" is out of range; use a size from %llu to %llu bytes",
		    o->name, shown(v), (unsigned long long)o->min,
		    (unsigned long long)o->max);
}

/* Exits with a one-line message if v is not what option o accepts. */
static void check_value(const struct run_option *o, const char *v)
{
	uint64_t n;
	bool b;
	enum uzs_log_level level;

	if (!*v)
		usage_error("--%s needs a value: %s", o->name, o->arg);
	switch (o->kind) {
	case K_SIZE:
		if (uzs_parse_size(v, &n))
			usage_error("--%s \"%s\" is not a size; " SIZE_FORM, o->name, shown(v));
		if (n < o->min || n > o->max)
			size_range_error(o, v);
		break;
	case K_DURATION_OFF:
		if (is_off(v))
			break;
		if (uzs_parse_duration(v, &n))
			usage_error("--%s \"%s\" is neither a duration nor \"off\"; "
				    DURATION_FORM, o->name, shown(v));
		break;
	case K_DURATION:
		if (uzs_parse_duration(v, &n))
			usage_error("--%s \"%s\" is not a duration; " DURATION_FORM,
				    o->name, shown(v));
		if (n < o->min)
			usage_error("--%s \"%s\" is too short; use at least %llums",
				    o->name, shown(v),
				    (unsigned long long)(o->min / 1000000));
		break;
	case K_PATH:
	case K_PATH_OFF:
		if (strlen(v) >= PATH_MAX)
			usage_error("--%s: the path is too long", o->name);
		break;
	case K_BOOL:
		if (uzs_parse_bool(v, &b))
			usage_error("--%s \"%s\" is not a boolean; use on or off",
				    o->name, shown(v));
		break;
	case K_LEVEL:
		if (uzs_parse_log_level(v, &level))
			usage_error("--%s \"%s\" is not a log level; use off, error, "
				    "warn, info or debug", o->name, shown(v));
		break;
	case K_FLAG:
		break;
	}
}

static const struct run_option *find_option(const char *name, size_t len)
{
	for (size_t i = 0; i < NOPTIONS; i++)
		if (strlen(options[i].name) == len && !memcmp(options[i].name, name, len))
			return &options[i];
	return NULL;
}

static void set_env(const char *name, const char *value)
{
	if (setenv(name, value, 1) < 0) {
		fprintf(stderr, "uzswap: cannot set %s: %s\n", name, strerror(errno));
		exit(EXIT_SETUP);
	}
}

/*
 * Apply the options at argv[i..] up to the program; returns the index of
 * the program's name.  Accepts --opt VALUE and --opt=VALUE; "--" or the
 * first argument not starting with '-' ends the options.
 */
static int parse_run_options(int argc, char **argv, int i)
{
	for (; i < argc; i++) {
		const char *a = argv[i], *eq, *value;
		const struct run_option *o;

		if (!strcmp(a, "--"))
			return i + 1;
		if (a[0] != '-')
			return i;
		if (a[1] != '-')
			usage_error("unknown option \"%s\" for run", shown(a));
		eq = strchr(a + 2, '=');
		o = find_option(a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
		if (!o)
			usage_error("unknown option \"%s\" for run", shown(a));
		if (o->kind == K_FLAG) {
			if (eq)
				usage_error("--%s takes no value", o->name);
			value = "1";
		} else if (eq) {
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			usage_error("--%s needs a value: %s", o->name, o->arg);
		}
		check_value(o, value);
		set_env(o->env, value);
	}
	return i;
}

static const char *get_env(const char *name)
{
	return getenv(name);
}

/*
 * Warn of a UZSWAP_* name the shim will ignore, likely a typo.  The shim's
 * list leaves out UZSWAP_PRELOAD_PATH, which is ours alone, so it is hidden
 * from the check here.
 */
static void warn_unknown(void)
{
	static const char mine[] = "UZSWAP_PRELOAD_PATH=";
	char err[UZS_CONFIG_ERR_MAX];
	const char **env;
	size_t n = 0;

	for (char **e = environ; *e; e++)
		n++;
	env = calloc(n + 1, sizeof(*env));
	if (!env)
		return;
	n = 0;
	for (char **e = environ; *e; e++)
		if (strncmp(*e, mine, sizeof(mine) - 1))
			env[n++] = *e;
	if (uzs_config_unknown(env, err, sizeof(err)))
		fprintf(stderr, "%s\n", err);
	free(env);
}

/*
 * What the shim will make of the whole environment, options and inherited
 * variables alike: a bad UZSWAP_SCAN_INTERVAL in the environment would only
 * be a warning from the shim, and the program would run uncompressed.
 */
static void check_environment(void)
{
	char err[UZS_CONFIG_ERR_MAX];
	struct uzs_config cfg;

	if (uzs_config_load(&cfg, get_env, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		exit(EXIT_USAGE);
	}
	warn_unknown();
}

/* ------------------------------------------------------------ LD_PRELOAD */

/* The shim as named by the user or the build. */
static const char *shim_given(void)
{
	const char *path = getenv("UZSWAP_PRELOAD_PATH");

	return path && *path ? path : UZSWAP_PRELOAD_PATH;
}

/* The shim to preload, absolute, after checking it is there. */
static const char *shim_path(char resolved[PATH_MAX])
{
	const char *path = shim_given();
	const char *why = NULL;
	struct stat st;

	if (stat(path, &st) < 0 || access(path, R_OK) < 0)
		why = strerror(errno);
	else if (!S_ISREG(st.st_mode))
		why = "not a regular file";
	if (why) {
		fprintf(stderr, "uzswap: cannot use the preload shim %s: %s; set "
			"UZSWAP_PRELOAD_PATH to the libuzswap_preload.so to use\n",
			path, why);
		exit(EXIT_SETUP);
	}
	/* ld.so takes a relative entry relative to the program's directory
	 * of the moment: make it absolute while we know what it means. */
	if (!realpath(path, resolved)) {
		fprintf(stderr, "uzswap: cannot resolve %s: %s\n", path, strerror(errno));
		exit(EXIT_SETUP);
	}
	/* ld.so splits LD_PRELOAD at spaces and colons, with no escape. */
	if (strpbrk(resolved, " :")) {
		fprintf(stderr, "uzswap: the preload shim's path %s contains a space "
			"or colon, which LD_PRELOAD cannot express\n", resolved);
		exit(EXIT_SETUP);
	}
	return resolved;
}

#define SHIM_NAME "libuzswap_preload.so"

/* Is the LD_PRELOAD entry e[0..n) a uzswap shim, this one or another? */
static bool is_a_shim(const char *e, size_t n, const char *shim, const char *given)
{
	size_t base = n;

	while (base > 0 && e[base - 1] != '/')
		base--;
	return (n == strlen(shim) && !memcmp(e, shim, n)) ||
	       (n == strlen(given) && !memcmp(e, given, n)) ||
	       (n - base == strlen(SHIM_NAME) && !memcmp(e + base, SHIM_NAME, n - base));
}

/*
 * Put the shim first in LD_PRELOAD, keeping the other entries in order.  A
 * shim already there (we run inside a program run by uzswap, or the user
 * preloaded one) is dropped: two shims would start two engines, which would
 * fight over the same memory.  given is the shim's path as the user named it.
 */
static void add_preload(const char *shim, const char *given)
{
	const char *old = getenv("LD_PRELOAD");
	size_t len;
	char *list;

	if (!old)
		old = "";
	len = strlen(shim) + strlen(old) + 2;
	list = malloc(len);
	if (!list) {
		fputs("uzswap: out of memory\n", stderr);
		exit(EXIT_SETUP);
	}
	strcpy(list, shim);
	len = strlen(shim);
	/* ld.so splits at spaces and colons alike; we join with colons. */
	for (const char *p = old; *p;) {
		size_t n = strcspn(p, " :");

		if (n && !is_a_shim(p, n, shim, given)) {
			list[len++] = ':';
			memcpy(list + len, p, n);
			len += n;
		}
		p += n;
		p += strspn(p, " :");
	}
	list[len] = '\0';
	set_env("LD_PRELOAD", list);
	free(list);
}

static int cmd_run(int argc, char **argv)
{
	char resolved[PATH_MAX];
	int prog = parse_run_options(argc, argv, 2);
	int e;

	if (prog >= argc)
		usage_error("run needs a program: uzswap run [OPTIONS] -- PROG [ARGS...]");
	check_environment();
	add_preload(shim_path(resolved), shim_given());

	execvp(argv[prog], argv + prog);
	e = errno;
	fprintf(stderr, "uzswap: cannot run %s: %s\n", argv[prog], strerror(e));
	return e == ENOENT || e == ENOTDIR || e == ENAMETOOLONG ? EXIT_NOT_FOUND
								 : EXIT_CANNOT_EXEC;
}

/* ------------------------------------------------------------------ stat */

static pid_t parse_pid(const char *s)
{
	long long v = 0;
	const char *p = s;

	for (; *p >= '0' && *p <= '9' && v <= INT_MAX; p++)
		v = v * 10 + (*p - '0');
	if (p == s || *p || v <= 0 || v > INT_MAX)
		usage_error("stat: \"%s\" is not a process id", shown(s));
	return (pid_t)v;
}

static int cmd_stat(int argc, char **argv)
{
	char err[512], buf[UZS_STATS_JSON_MAX];
	struct uzs_engine_stats st;
	bool json = false;
	const char *pid_arg = NULL;
	pid_t pid;
	size_t n;

	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (argv[i][0] == '-' && argv[i][1])
			usage_error("unknown option \"%s\" for stat", shown(argv[i]));
		else if (pid_arg)
			usage_error("stat takes one process id");
		else
			pid_arg = argv[i];
	}
	if (!pid_arg)
		usage_error("stat needs a process id: uzswap stat [--json] PID");
	pid = parse_pid(pid_arg);

	if (uzs_stats_shm_read(pid, &st, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (json)
		n = uzs_stats_json(&st, (uint64_t)pid, buf, sizeof(buf));
	else
		n = uzs_stats_summary(&st, buf, sizeof(buf));
	fwrite(buf, 1, n, stdout);
	return fflush(stdout) ? 1 : 0;
}

/* ------------------------------------------------------------------ help */

/* Mirrors the table in env_config.h, which is the authority. */
static const char env_help[] =
"Environment (the shim reads these; `uzswap run` options set them):\n"
"  variable               accepts           default       meaning\n"
"  UZSWAP_DISABLE         bool              off           run the program untouched\n"
"  UZSWAP_LIMIT           size > 0          no limit      keep the process's anonymous\n"
"                                                         memory (ours included) at or\n"
"                                                         under SIZE; no huge pages\n"
"  UZSWAP_COLD_AGE        duration or off   120s; off if  compress pages untouched that\n"
"                                           LIMIT is set  long (0 or off: never)\n"
"  UZSWAP_MIN_REGION      size              1M            leave smaller mappings alone\n"
"  UZSWAP_SCAN_INTERVAL   duration >= 10ms  1s            how often to look for cold pages\n"
"  UZSWAP_STATS           bool              off           print a summary to stderr at exit\n"
"  UZSWAP_STATS_FILE      path              none          append one JSON line per interval\n"
"  UZSWAP_STATS_INTERVAL  duration >= 10ms  1s            how often STATS_FILE is written\n"
"  UZSWAP_LOG             level             warn          diagnostics to stderr\n"
"  UZSWAP_CUTOFF          size 64..4096     3072          compressed size above which a\n"
"                                                         page is kept uncompressed\n"
"  UZSWAP_POOL_MAX        size >= 64K       no cap        cap on pool memory; past it the\n"
"                                                         coldest pool pages are evicted\n"
"  UZSWAP_BACKING         dir, new file     a hidden file where evicted pages go; off: a\n"
"                         name, or off      in $TMPDIR    full pool takes no more (./off:\n"
"                                                         a file named off)\n"
"  UZSWAP_NUMA            bool              on            a pool per NUMA node, pages\n"
"                                                         restored on their node; off:\n"
"                                                         one pool\n"
"  UZSWAP_KERNEL_FEATURES -move,-pagemap_  none          testing: run as if the kernel\n"
"                         scan,-wp_async                 lacked the features named\n"
"  UZSWAP_PRELOAD_PATH    path              built in      the shim `uzswap run` preloads\n"
"\n"
"An empty variable counts as unset.  Forms (case-insensitive, no spaces):\n"
"  size      bytes with an optional K, M, G or T suffix, each 1024 times the\n"
"            last; a trailing B or iB changes nothing (4096, 512M, 2GiB)\n"
"  duration  a whole number with an optional unit us, ms, s, m (minutes) or h;\n"
"            a bare number is seconds (500ms, 2m, 120)\n"
"  bool      1/0, on/off, yes/no, true/false\n"
"  level     off, error, warn, info, debug\n";

static void print_help(FILE *f)
{
	fputs("Usage: uzswap run [OPTIONS] [--] PROG [ARGS...]\n"
	      "       uzswap stat [--json] PID\n"
	      "       uzswap help | --help\n"
	      "       uzswap --version\n"
	      "\n"
	      "run   runs PROG with its private anonymous memory transparently\n"
	      "      compressed when cold; PROG's exit status is uzswap's.\n"
	      "stat  prints the live counters of a process started by uzswap run.\n"
	      "\n"
	      "Options of run (each sets the variable named, overriding it):\n", f);
	for (size_t i = 0; i < NOPTIONS; i++) {
		const struct run_option *o = &options[i];
		char left[40];

		snprintf(left, sizeof(left), "--%s%s%s", o->name, o->arg ? " " : "",
			 o->arg ? o->arg : "");
		fprintf(f, "  %-22s %-22s %s\n", left, o->env, o->help);
	}
	fputs("\n", f);
	fputs(env_help, f);
	fprintf(f, "\nThe shim: %s\n"
		"Exit status of run: PROG's own; 2 bad usage, 125 uzswap could not\n"
		"set up, 126 PROG could not be executed, 127 PROG was not found.\n",
		UZSWAP_PRELOAD_PATH);
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	if (!cmd)
		usage_error("missing command: run, stat or help");
	if (!strcmp(cmd, "run"))
		return cmd_run(argc, argv);
	if (!strcmp(cmd, "stat"))
		return cmd_stat(argc, argv);
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		print_help(stdout);
		return fflush(stdout) ? 1 : 0;
	}
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		printf("uzswap %s\n", PACKAGE_VERSION);
		return fflush(stdout) ? 1 : 0;
	}
	if (cmd[0] == '-')
		usage_error("unknown option \"%s\"", shown(cmd));
	usage_error("unknown command \"%s\"", shown(cmd));
}
