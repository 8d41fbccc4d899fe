/*
 * st_exec.c - exec under the shim.  The new image inherits LD_PRELOAD, so it
 * starts an engine of its own, which must work (its data is compressed and
 * verified) however the old image left things.
 *   st_exec exec     fill, compress, exec ourselves
 *   st_exec thread   exec while another thread is reading compressed pages
 *   st_exec spawn    posix_spawn and system(3) of ourselves (vfork-style
 *                    children share our memory until they exec) while our
 *                    data is compressed; ours must be intact after
 *   st_exec child    (what the others exec) fill, compress, verify
 */
#include "shimtest.h"

#include <pthread.h>
#include <spawn.h>
#include <sys/wait.h>

#define NPAGES (8 * ST_MIB / ST_PAGE)
#define LEN (NPAGES * ST_PAGE)

extern char **environ;
static const char *self;
static char *buf;

static void child(void)
{
	const char *pre = getenv("LD_PRELOAD");

	if (!pre || !strstr(pre, "uzswap"))
		st_fail("exec'd image: LD_PRELOAD does not name the shim: %s",
			pre ? pre : "(unset)");
	buf = st_map(LEN);
	st_fill(buf, NPAGES, 7, 0, 0);
	st_wait_out("exec'd image", buf, LEN);
	st_verify("exec'd image", buf, NPAGES, 7, 0, 0);
	st_note("child: ok");
}

static void prepare(void)
{
	buf = st_map(LEN);
	st_fill(buf, NPAGES, 1, 0, 0);
	st_wait_out("before exec", buf, LEN);
}

static void exec_child(void)
{
	execl(self, self, "child", (char *)NULL);
	st_fail("execl %s: %s", self, strerror(errno));
}

static void *reader(void *arg)
{
	(void)arg;
	for (;;)
		st_verify("reader thread", buf, NPAGES, 1, 0, 0);
	return NULL;
}

static void check_status(int st, const char *what)
{
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		st_fail("%s failed: %s %d", what,
			WIFEXITED(st) ? "exit status" : "signal",
			WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

static void spawn(void)
{
	char *argv[] = { (char *)self, "child", NULL };
	char cmd[4096];
	pid_t pid;
	int st, rc;

	rc = posix_spawn(&pid, self, NULL, NULL, argv, environ);
	if (rc)
		st_fail("posix_spawn: %s", strerror(rc));
	st_verify("parent while the spawned child runs", buf, NPAGES, 1, 0, 0);
	ST_CHECK(waitpid(pid, &st, 0) == pid);
	check_status(st, "posix_spawn'd child");
	st_wait_out("after posix_spawn", buf, LEN);
	st_verify("after posix_spawn", buf, NPAGES, 1, 0, 0);

	snprintf(cmd, sizeof(cmd), "exec '%s' child", self);
	st = system(cmd);
	if (st == -1)
		st_fail("system: %s", strerror(errno));
	check_status(st, "system(3) child");
	st_wait_out("after system", buf, LEN);
	st_verify("after system", buf, NPAGES, 1, 0, 0);
}

int main(int argc, char **argv)
{
	const char *mode = st_mode(argc, argv, "exec");
	pthread_t t;

	st_init(argv[0]);
	self = argv[0];
	if (!strcmp(mode, "child")) {
		child();
		return 0;
	}
	if (self[0] != '/')
		st_fail("run me by absolute path, not %s", self);
	prepare();
	if (!strcmp(mode, "exec")) {
		st_verify("before exec", buf, NPAGES / 2, 1, 0, 0);
		exec_child();
	} else if (!strcmp(mode, "thread")) {
		ST_CHECK(pthread_create(&t, NULL, reader, NULL) == 0);
		st_sleep_ms(20);
		exec_child();
	} else if (!strcmp(mode, "spawn")) {
		spawn();
	} else {
		st_fail("unknown mode %s", mode);
	}
	st_note("%s: ok", mode);
	return 0;
}
