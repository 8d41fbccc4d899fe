/*
 * test_cli.c - the uzswap command as a user meets it: the built binary run
 * with arguments and an environment, judged by exit status and output.
 *
 * The tests that really preload something use the shim from this build
 * tree and skip, saying so, while it has not been built.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "stats_shm.h"

#ifndef UZS_BUILDDIR
#error "build with -DUZS_BUILDDIR=\"$(abs_top_builddir)\""
#endif

#define UZSWAP UZS_BUILDDIR "/tools/uzswap"
#define SHIM UZS_BUILDDIR "/preload/.libs/libuzswap_preload.so"

extern char **environ;

struct result {
	int status;                 /* exit status, or 128 + signal */
	char out[16384], err[4096];
};

/*
 * Run uzswap with args (NULL-terminated) in our environment minus every
 * UZSWAP_* and LD_PRELOAD, plus the "NAME=value" strings in env.
 */
static void run(struct result *r, const char *const *env, const char *const *args)
{
	const char *envp[256], *argv[64];
	int out[2], err[2];
	size_t ne = 0, na = 0;
	pid_t pid;

	for (char **e = environ; *e && ne < 200; e++)
		if (strncmp(*e, "UZSWAP_", 7) && strncmp(*e, "LD_PRELOAD=", 11) &&
		    strncmp(*e, "ASAN_OPTIONS=", 13))
			envp[ne++] = *e;
	/*
	 * In a sanitized build the shim carries ASan, which would refuse to
	 * start inside an uninstrumented /bin/true; let it load as a library.
	 */
	envp[ne++] = "ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0";
	for (; env && *env; env++)
		envp[ne++] = *env;
	envp[ne] = NULL;
	argv[na++] = UZSWAP;
	for (; *args; args++)
		argv[na++] = *args;
	argv[na] = NULL;

	cr_assert_eq(pipe(out), 0);
	cr_assert_eq(pipe(err), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		close(out[0]), close(out[1]), close(err[0]), close(err[1]);
		execve(UZSWAP, (char *const *)argv, (char *const *)envp);
		_exit(99);
	}
	close(out[1]);
	close(err[1]);

	/* Both pipes at once, so a chatty stderr cannot block stdout. */
	{
		struct pollfd pf[2] = { { out[0], POLLIN, 0 }, { err[0], POLLIN, 0 } };
		char *dst[2] = { r->out, r->err };
		size_t cap[2] = { sizeof(r->out) - 1, sizeof(r->err) - 1 }, len[2] = { 0, 0 };
		int open_fds = 2;

		while (open_fds) {
			cr_assert_geq(poll(pf, 2, 10000), 1, "uzswap hung");
			for (int i = 0; i < 2; i++) {
				char junk[512];
				ssize_t n;

				if (pf[i].fd < 0 || !pf[i].revents)
					continue;
				if (len[i] < cap[i])
					n = read(pf[i].fd, dst[i] + len[i], cap[i] - len[i]);
				else
					n = read(pf[i].fd, junk, sizeof(junk));
				if (n <= 0) {
					close(pf[i].fd);
					pf[i].fd = -1;
					open_fds--;
				} else if (len[i] < cap[i]) {
					len[i] += (size_t)n;
				}
			}
		}
		r->out[len[0]] = '\0';
		r->err[len[1]] = '\0';
	}
	{
		int st;

		cr_assert_eq(waitpid(pid, &st, 0), pid);
		r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
}

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define ENV(...) ((const char *const[]){ __VA_ARGS__, NULL })

static size_t lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* A usage error: exit 2, one line on stderr naming what, nothing on stdout. */
static void assert_usage_error(const struct result *r, const char *names)
{
	cr_assert_eq(r->status, 2, "status %d, stderr: %s", r->status, r->err);
	cr_assert_eq(lines(r->err), 1, "not one line: %s", r->err);
	cr_assert(!strncmp(r->err, "uzswap: ", 8), "%s", r->err);
	cr_assert(strstr(r->err, names), "no \"%s\" in: %s", names, r->err);
	cr_assert_eq(r->out[0], '\0', "stdout: %s", r->out);
}

static bool have_shim(void)
{
	return access(SHIM, R_OK) == 0;
}

#define NEED_SHIM() do { \
	if (!have_shim()) \
		cr_skip_test("the shim " SHIM " is not built yet"); \
} while (0)

static const char *shim_env(void)
{
	return "UZSWAP_PRELOAD_PATH=" SHIM;
}

/* ------------------------------------------------------------- help etc. */

Test(cli, help)
{
	static const char *const vars[] = {
		"UZSWAP_DISABLE", "UZSWAP_LIMIT", "UZSWAP_COLD_AGE", "UZSWAP_MIN_REGION",
		"UZSWAP_SCAN_INTERVAL", "UZSWAP_STATS", "UZSWAP_STATS_FILE",
		"UZSWAP_STATS_INTERVAL", "UZSWAP_LOG", "UZSWAP_CUTOFF", "UZSWAP_POOL_MAX",
		"UZSWAP_BACKING", "UZSWAP_NUMA", "UZSWAP_PRELOAD_PATH",
		"--limit SIZE", "--cold-age", "--pool-max", "--backing", "--stats-file",
		"--log LEVEL", "uzswap stat",
	};
	static const char *const spellings[] = { "--help", "help", "-h" };
	struct result r;

	for (size_t s = 0; s < sizeof(spellings) / sizeof(spellings[0]); s++) {
		run(&r, NULL, ARGS(spellings[s]));
		cr_assert_eq(r.status, 0, "%s: %d %s", spellings[s], r.status, r.err);
		cr_assert_eq(r.err[0], '\0', "%s", r.err);
		for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
			cr_assert(strstr(r.out, vars[i]), "help lacks %s", vars[i]);
	}
}

Test(cli, version)
{
	struct result r;

	run(&r, NULL, ARGS("--version"));
	cr_assert_eq(r.status, 0);
	cr_assert_str_eq(r.out, "uzswap " PACKAGE_VERSION "\n");
}

Test(cli, usage_errors)
{
	struct result r;

	run(&r, NULL, ARGS("frobnicate"));
	assert_usage_error(&r, "unknown command \"frobnicate\"");
	cr_assert(strstr(r.err, "--help"), "%s", r.err);
	run(&r, NULL, ARGS("--frobnicate"));
	assert_usage_error(&r, "--frobnicate");
	run(&r, NULL, ARGS("--bogus=1"));
	assert_usage_error(&r, "--help");
	run(&r, NULL, (const char *const[]){ NULL });
	assert_usage_error(&r, "missing command");
	run(&r, NULL, ARGS("run", "--frobnicate", "--", "/bin/true"));
	assert_usage_error(&r, "unknown option \"--frobnicate\" for run");
	run(&r, NULL, ARGS("run", "-x", "/bin/true"));
	assert_usage_error(&r, "\"-x\"");
	run(&r, NULL, ARGS("run", "--limit", "64M"));
	assert_usage_error(&r, "run needs a program");
	run(&r, NULL, ARGS("run", "--"));
	assert_usage_error(&r, "run needs a program");
	run(&r, NULL, ARGS("run", "--limit"));
	assert_usage_error(&r, "--limit needs a value");
	run(&r, NULL, ARGS("run", "--stats=yes", "/bin/true"));
	assert_usage_error(&r, "--stats takes no value");
}

/* ----------------------------------------------------- option validation */

Test(cli, bad_limit)
{
	struct result r;

	run(&r, NULL, ARGS("run", "--limit", "12X", "--", "/bin/true"));
	assert_usage_error(&r, "--limit \"12X\" is not a size");
	cr_assert(strstr(r.err, "K, M, G or T"), "no accepted form: %s", r.err);

	run(&r, NULL, ARGS("run", "--limit=lots", "/bin/true"));
	assert_usage_error(&r, "--limit \"lots\"");
	run(&r, NULL, ARGS("run", "--limit", "0", "--", "/bin/true"));
	assert_usage_error(&r, "--limit \"0\" must be greater than 0");
	run(&r, NULL, ARGS("run", "--limit", "-5", "--", "/bin/true"));
	assert_usage_error(&r, "--limit \"-5\"");
	run(&r, NULL, ARGS("run", "--limit", "99999999999999999999T", "/bin/true"));
	assert_usage_error(&r, "--limit");
}

Test(cli, bad_other_options)
{
	struct result r;

	run(&r, NULL, ARGS("run", "--cold-age", "soon", "--", "/bin/true"));
	assert_usage_error(&r, "--cold-age \"soon\" is neither a duration nor \"off\"");
	run(&r, NULL, ARGS("run", "--pool-max", "0", "/bin/true"));
	assert_usage_error(&r, "--pool-max");
	run(&r, NULL, ARGS("run", "--log", "loud", "/bin/true"));
	assert_usage_error(&r, "--log \"loud\" is not a log level; use off, error");
	run(&r, NULL, ARGS("run", "--scan-interval", "1ms", "/bin/true"));
	assert_usage_error(&r, "--scan-interval \"1ms\" is too short; use at least 10ms");
	run(&r, NULL, ARGS("run", "--cutoff", "10", "/bin/true"));
	assert_usage_error(&r, "--cutoff \"10\" is out of range");
	run(&r, NULL, ARGS("run", "--numa", "maybe", "/bin/true"));
	assert_usage_error(&r, "--numa");
	run(&r, NULL, ARGS("run", "--backing=", "/bin/true"));
	assert_usage_error(&r, "--backing needs a value");
	/* A value with a newline still makes one line. */
	run(&r, NULL, ARGS("run", "--limit", "1\n2", "/bin/true"));
	assert_usage_error(&r, "--limit");
}

/* A bad variable in the environment is caught before the program runs. */
Test(cli, bad_environment)
{
	struct result r;

	run(&r, ENV("UZSWAP_SCAN_INTERVAL=often"), ARGS("run", "--", "/bin/true"));
	assert_usage_error(&r, "UZSWAP_SCAN_INTERVAL");
}

/* --------------------------------------------------------------- running */

Test(cli, run_true)
{
	struct result r;

	NEED_SHIM();
	run(&r, ENV(shim_env(), "UZSWAP_DISABLE=1"), ARGS("run", "--", "/bin/true"));
	cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
	cr_assert_eq(r.err[0], '\0', "%s", r.err);
}

Test(cli, run_passes_exit_status)
{
	struct result r;

	NEED_SHIM();
	run(&r, ENV(shim_env(), "UZSWAP_DISABLE=1"),
	    ARGS("run", "--", "/bin/sh", "-c", "exit 7"));
	cr_assert_eq(r.status, 7, "status %d: %s", r.status, r.err);
	/* Without "--", the program's own options stay its own. */
	run(&r, ENV(shim_env(), "UZSWAP_DISABLE=1"),
	    ARGS("run", "--stats", "/bin/sh", "-c", "exit 9", "--limit"));
	cr_assert_eq(r.status, 9, "status %d: %s", r.status, r.err);
}

/* Options land in the environment; LD_PRELOAD keeps what it had. */
Test(cli, run_sets_environment)
{
	struct result r;
	char want[4096];
	char *shim;

	NEED_SHIM();
	run(&r, ENV(shim_env(), "UZSWAP_DISABLE=1", "UZSWAP_LIMIT=1G"),
	    ARGS("run", "--limit", "64M", "--cold-age=30s", "--stats", "--log", "info",
		 "--stats-file", "/tmp/x.jsonl", "--backing", "off", "--pool-max", "1G",
		 "--", "/bin/sh", "-c",
		 "echo $UZSWAP_LIMIT $UZSWAP_COLD_AGE $UZSWAP_STATS $UZSWAP_LOG "
		 "$UZSWAP_STATS_FILE $UZSWAP_BACKING $UZSWAP_POOL_MAX; echo $LD_PRELOAD"));
	shim = realpath(SHIM, NULL);
	snprintf(want, sizeof(want), "64M 30s 1 info /tmp/x.jsonl off 1G\n%s\n", shim);
	cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
	cr_assert_str_eq(r.out, want);

	/* The shim is not doubled. */
	run(&r, ENV(shim_env(), "UZSWAP_DISABLE=1", "LD_PRELOAD=" SHIM),
	    ARGS("run", "/bin/sh", "-c", "echo $LD_PRELOAD"));
	cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
	snprintf(want, sizeof(want), "%s\n", shim);
	free(shim);
	cr_assert_str_eq(r.out, want);
}

Test(cli, run_keeps_existing_preload)
{
	struct result r;
	char want[4096];
	char *shim;

	NEED_SHIM();
	/* libuzswap itself stands in for a preload the user already had. */
	run(&r, ENV(shim_env(), "UZSWAP_DISABLE=1",
		    "LD_PRELOAD=" UZS_BUILDDIR "/lib/.libs/libuzswap.so"),
	    ARGS("run", "/bin/sh", "-c", "echo $LD_PRELOAD"));
	shim = realpath(SHIM, NULL);
	snprintf(want, sizeof(want), "%s:%s\n", shim, UZS_BUILDDIR "/lib/.libs/libuzswap.so");
	cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
	cr_assert_str_eq(r.out, want);

	/* Another uzswap shim is replaced, not added to; spaces become colons. */
	run(&r, ENV(shim_env(), "UZSWAP_DISABLE=1",
		    "LD_PRELOAD=/elsewhere/libuzswap_preload.so "
		    UZS_BUILDDIR "/lib/.libs/libuzswap.so"),
	    ARGS("run", "/bin/sh", "-c", "echo $LD_PRELOAD"));
	cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
	cr_assert_str_eq(r.out, want);
	free(shim);
}

/*
 * Exec failures are judged before any preloading happens, so any readable
 * file serves as the shim: the uzswap binary itself.
 */
Test(cli, run_nonexistent)
{
	struct result r;

	run(&r, ENV("UZSWAP_PRELOAD_PATH=" UZSWAP), ARGS("run", "--", "/nonexistent"));
	cr_assert_eq(r.status, 127, "status %d: %s", r.status, r.err);
	cr_assert_str_eq(r.err, "uzswap: cannot run /nonexistent: No such file or directory\n");
	run(&r, ENV("UZSWAP_PRELOAD_PATH=" UZSWAP),
	    ARGS("run", "no-such-program-for-uzswap"));
	cr_assert_eq(r.status, 127, "status %d: %s", r.status, r.err);
}

Test(cli, run_not_executable)
{
	struct result r;
	char path[] = "/tmp/uzswap-test-XXXXXX";
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	close(fd);
	chmod(path, 0644);
	run(&r, ENV("UZSWAP_PRELOAD_PATH=" UZSWAP), ARGS("run", "--", path));
	unlink(path);
	/* Root may execute anything with an x bit; 0644 has none. */
	cr_assert_eq(r.status, 126, "status %d: %s", r.status, r.err);
	cr_assert(strstr(r.err, "cannot run"), "%s", r.err);
}

Test(cli, run_without_shim)
{
	struct result r;

	run(&r, ENV("UZSWAP_PRELOAD_PATH=/nonexistent/libuzswap_preload.so"),
	    ARGS("run", "--", "/bin/true"));
	cr_assert_eq(r.status, 125, "status %d: %s", r.status, r.err);
	cr_assert_eq(lines(r.err), 1, "%s", r.err);
	cr_assert(strstr(r.err, "preload shim /nonexistent/libuzswap_preload.so"),
		  "%s", r.err);
	cr_assert(strstr(r.err, "UZSWAP_PRELOAD_PATH"), "%s", r.err);

	run(&r, ENV("UZSWAP_PRELOAD_PATH=/tmp"), ARGS("run", "--", "/bin/true"));
	cr_assert_eq(r.status, 125, "status %d: %s", r.status, r.err);
	cr_assert(strstr(r.err, "not a regular file"), "%s", r.err);
}

/* ------------------------------------------------------------------ stat */

Test(cli, stat_errors)
{
	struct result r;
	char pid[32];

	run(&r, NULL, ARGS("stat"));
	assert_usage_error(&r, "stat needs a process id");
	run(&r, NULL, ARGS("stat", "12ab"));
	assert_usage_error(&r, "\"12ab\" is not a process id");
	run(&r, NULL, ARGS("stat", "--yaml", "1"));
	assert_usage_error(&r, "--yaml");

	/* We are not running under uzswap. */
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	run(&r, NULL, ARGS("stat", pid));
	cr_assert_eq(r.status, 1, "status %d: %s", r.status, r.err);
	cr_assert(strstr(r.err, "is not running under uzswap"), "%s", r.err);
	cr_assert_eq(lines(r.err), 1, "%s", r.err);
}

Test(cli, stat_live_process)
{
	struct uzs_stats_shm *shm;
	struct uzs_engine_stats s = { 0 };
	struct result r;
	char pid[32], want[64];

	cr_assert_eq(uzs_stats_shm_create(&shm), 0);
	s.managed_bytes = 3ull << 30;
	s.takeouts = 777;
	uzs_stats_shm_publish(shm, &s);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());

	run(&r, NULL, ARGS("stat", pid));
	cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
	cr_assert(strstr(r.out, "uzswap: managed 3.0 GiB"), "%s", r.out);
	cr_assert(strstr(r.out, "takeouts 777"), "%s", r.out);

	run(&r, NULL, ARGS("stat", "--json", pid));
	cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
	snprintf(want, sizeof(want), "{\"pid\":%s,", pid);
	cr_assert(!strncmp(r.out, want, strlen(want)), "%s", r.out);
	cr_assert(strstr(r.out, "\"takeouts\":777,"), "%s", r.out);
	cr_assert_eq(lines(r.out), 1, "%s", r.out);
	uzs_stats_shm_destroy(shm);
}
