/*
 * shim.c - the LD_PRELOAD entry point: read the settings, start the engine,
 * hook fork and fatal signals (core_guard.c), report at exit.  The other
 * guards (fd_guard.c, mlock_guard.c) are interposed symbols; everything
 * else lives in the library.
 *
 * Failure is never fatal to the program: a bad setting or a kernel that
 * cannot support uzswap gets one line on stderr, and the program then runs
 * exactly as it would without the shim.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core_guard.h"
#include "engine.h"
#include "guard.h"
#include "env_config.h"
#include "stats.h"

extern char **environ;

static struct uzs_config config;
static struct uzs_engine *engine;

static void say(const char *line)
{
	size_t n = strlen(line);

	if (write(STDERR_FILENO, line, n) < 0 || write(STDERR_FILENO, "\n", 1) < 0)
		(void)0;    /* stderr closed: nothing to be done */
}

static const char *get_env(const char *name)
{
	return getenv(name);
}

int uzs_guards_on;

static void start_engine(void)
{
	char err[UZS_CONFIG_ERR_MAX];

	if (uzs_engine_start(&config, &engine, err, sizeof(err)) != 0) {
		engine = NULL;
		if (config.log_level >= UZS_LOG_ERROR)
			say(err);
	}
}

static void fork_prepare(void)
{
	if (engine)
		uzs_engine_fork_prepare(engine);
}

static void fork_parent(void)
{
	if (engine)
		uzs_engine_fork_parent(engine);
}

static void fork_child(void)
{
	if (!engine)
		return;
	uzs_engine_fork_child(engine);
	engine = NULL;
	start_engine();
}

__attribute__((constructor)) static void uzswap_init(void)
{
	char err[UZS_CONFIG_ERR_MAX];

	if (uzs_config_load(&config, get_env, err, sizeof(err)) != 0) {
		say(err);
		say("uzswap: running the program uncompressed");
		return;
	}
	if (config.disable)
		return;
	if (uzs_config_unknown((const char *const *)environ, err, sizeof(err)) &&
	    config.log_level >= UZS_LOG_WARN)
		say(err);
	start_engine();
	if (engine) {
		pthread_atfork(fork_prepare, fork_parent, fork_child);
		uzs_core_guard_install(&engine);
		__atomic_store_n(&uzs_guards_on, 1, __ATOMIC_RELEASE);
	}
}

/*
 * At exit the engine keeps running: destructors and atexit handlers that run
 * after this one may still touch compressed pages, and exit_group ends our
 * threads with the rest.  This only reports: a last line in the stats file
 * (a short run would otherwise miss its last interval) and the summary.
 */
__attribute__((destructor)) static void uzswap_fini(void)
{
	struct uzs_engine_stats st;
	char buf[UZS_STATS_SUMMARY_MAX];
	size_t n;

	if (!engine)
		return;
	uzs_engine_stats_file_final(engine);
	if (!config.stats)
		return;
	uzs_engine_stats(engine, &st);
	n = uzs_stats_summary(&st, buf, sizeof(buf));
	if (write(STDERR_FILENO, buf, n) < 0)
		(void)0;
}
