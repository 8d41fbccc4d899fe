/*
 * st_fork.c - fork with compressed pages.  The engine thaws every page
 * before fork; both sides must then see the data, each side's engine must
 * compress again, and nothing the child writes may reach the parent.
 *
 *   st_fork basic    one child
 *   st_fork twice    two children at once, and a grandchild
 *   st_fork thread   fork from a thread while other threads read compressed
 *                    memory
 */
#include "shimtest.h"

#include <pthread.h>
#include <sys/wait.h>

#define NPAGES (16 * ST_MIB / ST_PAGE)

static char *buf;
/* What this process wrote to each page: private, so each side of a fork
 * has its own view, as it should. */
static uint16_t vtag[NPAGES], vround[NPAGES];

static void write_page(size_t i, uint64_t tag, uint32_t round)
{
	vtag[i] = (uint16_t)tag;
	vround[i] = (uint16_t)round;
	st_fill_page(buf + i * ST_PAGE, tag, i, round);
}

static void verify_view(const char *what)
{
	for (size_t i = 0; i < NPAGES; i++)
		st_verify_page(what, buf + i * ST_PAGE, vtag[i], i, vround[i]);
}

static void wait_child(pid_t pid, const char *what)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		st_fail("waitpid %s: %s", what, strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		st_fail("%s failed: %s %d (its diagnosis is above)", what,
			WIFEXITED(st) ? "exit status" : "signal",
			WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

/*
 * What a child does: see the parent's data as it was at fork, let its own
 * engine compress it, write its own tag over a share of the pages, and check
 * the mixture through another round of compression.
 */
static void child_work(uint64_t tag, unsigned stride)
{
	char what[64];

	snprintf(what, sizeof(what), "child %llu after fork",
		 (unsigned long long)tag);
	verify_view(what);
	snprintf(what, sizeof(what), "child %llu", (unsigned long long)tag);
	st_wait_out(what, buf, NPAGES * ST_PAGE);
	verify_view(what);
	for (size_t i = tag % stride; i < NPAGES; i += stride)
		write_page(i, tag, 0);
	verify_view(what);
	st_wait_out(what, buf, NPAGES * ST_PAGE);
	verify_view(what);
}

/* The parent goes on while children run: rewrite some, verify all. */
static void parent_work(uint32_t round)
{
	for (size_t i = round % 3; i < NPAGES; i += 3)
		write_page(i, 1, round);
	verify_view("parent while the child runs");
}

static void mode_basic(void)
{
	pid_t pid = fork();

	ST_CHECK(pid >= 0);
	if (pid == 0) {
		child_work(2, 2);
		exit(0);
	}
	parent_work(1);
	wait_child(pid, "child");
	st_wait_out("parent after the child", buf, NPAGES * ST_PAGE);
	verify_view("parent after the child exited");
}

static void mode_twice(void)
{
	pid_t a, b;

	a = fork();
	ST_CHECK(a >= 0);
	if (a == 0) {
		pid_t g;

		child_work(2, 4);
		/* The grandchild sees the child's data, not the parent's. */
		g = fork();
		ST_CHECK(g >= 0);
		if (g == 0) {
			child_work(3, 4);
			exit(0);
		}
		wait_child(g, "grandchild");
		verify_view("child after the grandchild exited");
		exit(0);
	}
	parent_work(1);
	b = fork();
	ST_CHECK(b >= 0);
	if (b == 0) {
		child_work(5, 4);
		exit(0);
	}
	parent_work(2);
	wait_child(a, "first child");
	wait_child(b, "second child");
	st_wait_out("parent after the children", buf, NPAGES * ST_PAGE);
	verify_view("parent after the children exited");
}

/* ------------------------------------------------------ fork from a thread */

#define RPAGES (4 * ST_MIB / ST_PAGE)
static char *rbuf[2];
static volatile int stop_readers;

static void *reader(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;

	while (!stop_readers)
		st_verify("reader's block", rbuf[id], RPAGES, 40 + id, 0, 0);
	return NULL;
}

static void *forker(void *arg)
{
	pid_t pid;

	(void)arg;
	st_sleep_ms(50);        /* let the readers get going */
	pid = fork();
	ST_CHECK(pid >= 0);
	if (pid == 0) {
		/* Only this thread exists here: check everything. */
		st_verify("child: reader 0's block", rbuf[0], RPAGES, 40, 0, 0);
		st_verify("child: reader 1's block", rbuf[1], RPAGES, 41, 0, 0);
		child_work(2, 2);
		st_verify("child: reader 0's block", rbuf[0], RPAGES, 40, 0, 0);
		exit(0);
	}
	parent_work(1);
	wait_child(pid, "child forked from a thread");
	return NULL;
}

static void mode_thread(void)
{
	pthread_t r[2], f;

	for (unsigned i = 0; i < 2; i++) {
		rbuf[i] = st_map(RPAGES * ST_PAGE);
		st_fill(rbuf[i], RPAGES, 40 + i, 0, 0);
	}
	st_wait_out("reader's block", rbuf[1], RPAGES * ST_PAGE);
	for (unsigned i = 0; i < 2; i++)
		ST_CHECK(pthread_create(&r[i], NULL, reader, (void *)(uintptr_t)i) == 0);
	ST_CHECK(pthread_create(&f, NULL, forker, NULL) == 0);
	ST_CHECK(pthread_join(f, NULL) == 0);
	stop_readers = 1;
	for (unsigned i = 0; i < 2; i++)
		ST_CHECK(pthread_join(r[i], NULL) == 0);
	st_wait_out("parent after the child", buf, NPAGES * ST_PAGE);
	verify_view("parent after the child exited");
}

int main(int argc, char **argv)
{
	const char *mode = st_mode(argc, argv, "basic");

	st_init(argv[0]);
	buf = st_map(NPAGES * ST_PAGE);
	for (size_t i = 0; i < NPAGES; i++)
		write_page(i, 1, 0);
	st_wait_out("parent before fork", buf, NPAGES * ST_PAGE);
	if (!strcmp(mode, "basic"))
		mode_basic();
	else if (!strcmp(mode, "twice"))
		mode_twice();
	else if (!strcmp(mode, "thread"))
		mode_thread();
	else
		st_fail("unknown mode %s", mode);
	st_note("%s: ok", mode);
	return 0;
}
