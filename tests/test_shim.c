/*
 * test_shim.c - the preload shim on real programs: each case runs one of the
 * programs in tests/shim (built from this tree) with LD_PRELOAD pointing at
 * the shim built here, and settings aggressive enough that nearly every page
 * is compressed and faulted back many times.  The programs check every byte
 * themselves and say what was wrong; this runner judges exit status,
 * stdout and stderr, and kills a program that hangs (after printing its
 * threads' backtraces, if gdb is installed).
 *
 * Needs a usable userfaultfd (root, CAP_SYS_PTRACE, access to
 * /dev/userfaultfd or vm.unprivileged_userfaultfd=1) and a kernel with
 * UFFDIO_MOVE; otherwise every case skips, saying why.  Older kernels are
 * tried by masking features (UZSWAP_KERNEL_FEATURES): the shim_no_* suites
 * run the cases of FALLBACK_CASES so.  The no-privilege
 * case needs root to become nobody.
 *
 * Settings:
 *   age     UZSWAP_SCAN_INTERVAL=10ms UZSWAP_COLD_AGE=10ms: a page untouched
 *           for about one scan is compressed
 *   limit   UZSWAP_SCAN_INTERVAL=10ms UZSWAP_LIMIT=512K: everything over 512 KiB
 *           resident is compressed
 * both with UZSWAP_MIN_REGION=64K.  UZS_SHIM_TIMEOUT (seconds, default 60)
 * changes how long a program may run.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#ifndef SHIM_PATH
#error "build with -DSHIM_PATH=\"$(abs_top_builddir)/preload/.libs/libuzswap_preload.so\""
#endif
#ifndef SHIM_TESTS_DIR
#error "build with -DSHIM_TESTS_DIR=\"$(abs_top_builddir)/tests/shim\""
#endif

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif

extern char **environ;

#define OUT_MAX (64 * 1024)

struct result {
	int status;                 /* exit status, or 128 + signal */
	bool hung;
	double seconds;
	char out[OUT_MAX], err[OUT_MAX];
};

#define ENV(...) ((const char *const[]){ __VA_ARGS__, NULL })

static const char *const AGE[] = {
	"UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_COLD_AGE=10ms",
	"UZSWAP_MIN_REGION=64K", NULL,
};
/* A pool of 256 KiB: nearly every compressed page goes on to the file. */
static const char *const POOLMAX[] = {
	"UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_COLD_AGE=10ms",
	"UZSWAP_MIN_REGION=64K", "UZSWAP_POOL_MAX=256K", NULL,
};
static const char *const LIMIT[] = {
	"UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_LIMIT=512K",
	"UZSWAP_MIN_REGION=64K", NULL,
};

/* ------------------------------------------------------------ probing */

/* NULL if this process can have a full userfaultfd with MOVE, else why. */
static const char *uffd_unusable(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int fd = -1, dev, err_dev = 0, err_sys;

	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
		err_dev = fd < 0 ? errno : 0;
		close(dev);
	} else {
		err_dev = errno;
	}
	if (fd < 0) {
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
		err_sys = fd < 0 ? errno : 0;
		if (fd < 0 && err_sys == ENOSYS)
			return "this kernel has no userfaultfd";
		if (fd < 0 && (err_sys == EPERM || err_sys == EACCES) &&
		    (err_dev == EPERM || err_dev == EACCES || err_dev == ENOENT))
			return "needs root, CAP_SYS_PTRACE or access to "
			       "/dev/userfaultfd";
		if (fd < 0)
			return "cannot open a userfaultfd";
	}
	if (ioctl(fd, UFFDIO_API, &api) != 0) {
		close(fd);
		return "UFFDIO_API fails";
	}
	close(fd);
	if (!(api.features & UFFD_FEATURE_MOVE))
		return "this kernel lacks UFFDIO_MOVE (Linux 6.8 or later)";
	return NULL;
}

static void need_shim(const char *prog)
{
	static char path[4096];
	const char *why;

	if (access(SHIM_PATH, R_OK) != 0)
		cr_skip_test("the shim %s is not built", SHIM_PATH);
	snprintf(path, sizeof(path), SHIM_TESTS_DIR "/%s", prog);
	if (access(path, X_OK) != 0)
		cr_skip_test("the test program %s is not built", path);
	why = uffd_unusable();
	if (why)
		cr_skip_test("%s", why);
}

/* ------------------------------------------------------------- running */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double timeout_s(void)
{
	const char *t = getenv("UZS_SHIM_TIMEOUT");
	double v = t ? atof(t) : 0;

	return v > 0 ? v : 60;
}

/* Print every thread's backtrace of pid to our stderr, if gdb is here. */
static void dump_backtraces(pid_t pid)
{
	char p[32];
	pid_t g;

	if (access("/usr/bin/gdb", X_OK) != 0) {
		fprintf(stderr, "(no /usr/bin/gdb: no backtraces)\n");
		return;
	}
	snprintf(p, sizeof(p), "%d", (int)pid);
	fprintf(stderr, "---- backtraces of the hung process %d ----\n", (int)pid);
	fflush(stderr);
	g = fork();
	if (g == 0) {
		int null = open("/dev/null", O_RDONLY);

		dup2(null, 0);
		dup2(2, 1);
		alarm(60);
		execl("/usr/bin/gdb", "gdb", "-nx", "-batch", "-p", p,
		      "-ex", "thread apply all bt", (char *)NULL);
		_exit(127);
	}
	if (g > 0)
		waitpid(g, NULL, 0);
	fprintf(stderr, "---- end of backtraces ----\n");
}

struct opts {
	const char *const *env;     /* "NAME=value" settings */
	bool no_preload;            /* don't set LD_PRELOAD */
	const char *prog_path;      /* instead of SHIM_TESTS_DIR/prog */
	const char *shim_path;      /* instead of SHIM_PATH */
	uid_t uid;                  /* 0: stay as we are */
	rlim_t fsize;               /* RLIMIT_FSIZE in bytes; 0: unchanged */
};

/*
 * Run prog [arg] with our environment minus UZSWAP_*, LD_PRELOAD and
 * ASAN_OPTIONS, plus LD_PRELOAD and o->env; collect stdout and stderr.
 */
static void run(struct result *r, const char *prog, const char *arg,
		const struct opts *o)
{
	char path[4096], preload[4200];
	const char *envp[512], *argv[4];
	int out[2], err[2];
	size_t ne = 0;
	double deadline;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	if (o->prog_path)
		snprintf(path, sizeof(path), "%s", o->prog_path);
	else
		snprintf(path, sizeof(path), SHIM_TESTS_DIR "/%s", prog);
	snprintf(preload, sizeof(preload), "LD_PRELOAD=%s",
		 o->shim_path ? o->shim_path : SHIM_PATH);
	for (char **e = environ; *e && ne < 400; e++)
		if (strncmp(*e, "UZSWAP_", 7) && strncmp(*e, "LD_PRELOAD=", 11) &&
		    strncmp(*e, "ASAN_OPTIONS=", 13))
			envp[ne++] = *e;
	if (!o->no_preload)
		envp[ne++] = preload;
	for (const char *const *s = o->env; s && *s; s++)
		envp[ne++] = *s;
	envp[ne] = NULL;
	argv[0] = path;
	argv[1] = arg;
	argv[2] = NULL;

	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
	r->seconds = now();
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		setpgid(0, 0);          /* so a hang takes its children too */
		dup2(out[1], 1);
		dup2(err[1], 2);
		if (o->fsize) {
			struct rlimit rl = { o->fsize, o->fsize };

			if (setrlimit(RLIMIT_FSIZE, &rl)) {
				perror("setrlimit");
				_exit(98);
			}
		}
		if (o->uid) {
			if (setgroups(0, NULL) || setgid(o->uid) || setuid(o->uid)) {
				perror("becoming unprivileged");
				_exit(98);
			}
		}
		execve(path, (char *const *)argv, (char *const *)envp);
		perror(path);
		_exit(99);
	}
	setpgid(pid, pid);
	close(out[1]);
	close(err[1]);
	deadline = now() + timeout_s();

	/* Both pipes at once, so a chatty stderr cannot block stdout. */
	{
		struct pollfd pf[2] = { { out[0], POLLIN, 0 }, { err[0], POLLIN, 0 } };
		char *dst[2] = { r->out, r->err };
		size_t len[2] = { 0, 0 };
		int open_fds = 2;

		while (open_fds && !r->hung) {
			double left = deadline - now();
			int n;

			if (left <= 0) {
				r->hung = true;
				break;
			}
			n = poll(pf, 2, (int)(left * 1000) + 1);
			if (n < 0 && errno == EINTR)
				continue;
			cr_assert_geq(n, 0, "poll: %s", strerror(errno));
			for (int i = 0; i < 2; i++) {
				char junk[512];
				ssize_t k;

				if (pf[i].fd < 0 || !pf[i].revents)
					continue;
				if (len[i] < OUT_MAX - 1)
					k = read(pf[i].fd, dst[i] + len[i], OUT_MAX - 1 - len[i]);
				else
					k = read(pf[i].fd, junk, sizeof(junk));
				if (k <= 0) {
					close(pf[i].fd);
					pf[i].fd = -1;
					open_fds--;
				} else if (len[i] < OUT_MAX - 1) {
					len[i] += (size_t)k;
				}
			}
		}
		for (int i = 0; i < 2; i++)
			if (pf[i].fd >= 0)
				close(pf[i].fd);
		r->out[len[0]] = '\0';
		r->err[len[1]] = '\0';
	}
	/* Output closed: the process should be gone or going. */
	for (;;) {
		int st;
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid) {
			r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			break;
		}
		if (r->hung || now() > deadline) {
			r->hung = true;
			dump_backtraces(pid);
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			r->status = -1;
			break;
		}
		usleep(10000);
	}
	r->seconds = now() - r->seconds;
}

static size_t lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* The n-th line (from 0) of s, without its newline, into buf. */
static const char *line(const char *s, size_t n, char *buf, size_t len)
{
	for (; n && *s; s++)
		if (*s == '\n')
			n--;
	snprintf(buf, len, "%.*s", (int)strcspn(s, "\n"), s);
	return buf;
}

static void assert_not_hung(const struct result *r, const char *what)
{
	cr_assert(!r->hung, "%s hung: killed after %.0f s (backtraces on "
		  "stderr).\nstdout:\n%s\nstderr:\n%s", what, timeout_s(),
		  r->out, r->err);
}

/* Exit 0, nothing on stderr: not a word from the shim on a healthy run. */
static void assert_clean(const struct result *r, const char *what)
{
	assert_not_hung(r, what);
	cr_assert_eq(r->status, 0, "%s: exit status %d\nstdout:\n%s\nstderr:\n%s",
		     what, r->status, r->out, r->err);
	cr_assert_eq(r->err[0], '\0', "%s exited 0 but wrote to stderr:\n%s",
		     what, r->err);
}

/*
 * The limit setting is below what the test programs' data needs even
 * compressed, on purpose (so nearly every page goes out), and the shim says
 * so, once per process.  Take those lines out of r->err; a process saying it
 * twice is a failure.
 */
#define LIMIT_WARNING "UZSWAP_LIMIT cannot be met"

static void drop_limit_warnings(struct result *r)
{
	long pids[64];
	size_t npids = 0;
	char *line;

	while ((line = strstr(r->err, LIMIT_WARNING)) != NULL) {
		char *end;
		long pid = -1;

		while (line > r->err && line[-1] != '\n')
			line--;
		sscanf(line, "uzswap[%ld]", &pid);
		for (size_t i = 0; i < npids; i++)
			cr_assert_neq(pids[i], pid, "process %ld gave the limit "
				      "warning twice:\n%s", pid, r->err);
		if (npids < sizeof(pids) / sizeof(pids[0]))
			pids[npids++] = pid;
		end = strchr(line, '\n');
		end = end ? end + 1 : line + strlen(line);
		memmove(line, end, strlen(end) + 1);
	}
}

static void expect_ok(const char *prog, const char *arg,
		      const char *const *settings)
{
	struct opts o = { .env = settings };
	struct result *r = malloc(sizeof(*r));
	char what[256];

	cr_assert_not_null(r);
	need_shim(prog);
	snprintf(what, sizeof(what), "%s %s", prog, arg ? arg : "");
	run(r, prog, arg, &o);
	cr_log_info("%s: %.1f s", what, r->seconds);
	if (settings == LIMIT)
		drop_limit_warnings(r);
	assert_clean(r, what);
	free(r);
}

#define SHIM_TEST(name, prog, arg, settings) \
	Test(shim, name) { expect_ok(prog, arg, settings); }

static void stats_file(const char *name, char *path, size_t pathlen,
		       char *env, size_t envlen);
static long long max_json_value(const char *path, const char *key);

/*
 * The same programs on a kernel lacking features (UZSWAP_KERNEL_FEATURES
 * masks them, as if the kernel did not have them): every byte right, and
 * pages really were taken out and faulted back (the JSON stats, every
 * process's lines: a fork's child writes its own).
 */
static void expect_ok_masked(const char *name, const char *prog,
			     const char *arg, const char *const *settings,
			     const char *mask)
{
	const char *env[16];
	char stats[128], path[96], masked[96], what[256];
	struct opts o = { .env = env };
	struct result *r = malloc(sizeof(*r));
	size_t n = 0;

	cr_assert_not_null(r);
	need_shim(prog);
	stats_file(name, path, sizeof(path), stats, sizeof(stats));
	snprintf(masked, sizeof(masked), "UZSWAP_KERNEL_FEATURES=%s", mask);
	for (; settings[n]; n++)
		env[n] = settings[n];
	env[n++] = masked;
	env[n++] = stats;
	env[n++] = "UZSWAP_STATS_INTERVAL=20ms";
	env[n] = NULL;
	snprintf(what, sizeof(what), "%s %s with %s", prog, arg ? arg : "",
		 masked);
	unlink(path);
	run(r, prog, arg, &o);
	cr_log_info("%s: %.1f s", what, r->seconds);
	if (settings == LIMIT)
		drop_limit_warnings(r);
	assert_clean(r, what);
	cr_assert_gt(max_json_value(path, "takeouts"), 0, "%s: nothing was "
		     "taken out", what);
	cr_assert_gt(max_json_value(path, "refaults"), 0, "%s: nothing came "
		     "back by a fault", what);
	unlink(path);
	free(r);
}

/* The cases that exercise taking pages out and every layout change. */
#define FALLBACK_CASES(X, suite, mask) \
	X(suite, mask, single_thread, "st_basic", NULL, AGE) \
	X(suite, mask, single_thread_limit, "st_basic", NULL, LIMIT) \
	X(suite, mask, eight_threads, "st_threads", NULL, AGE) \
	X(suite, mask, fork, "st_fork", "basic", AGE) \
	X(suite, mask, fork_from_thread, "st_fork", "thread", AGE) \
	X(suite, mask, madv_dontneed, "st_madvise", "dontneed", AGE) \
	X(suite, mask, madv_free, "st_madvise", "free", AGE) \
	X(suite, mask, munmap_then_mmap, "st_munmap", NULL, AGE) \
	X(suite, mask, mremap_all_limit, "st_mremap", "all", LIMIT) \
	X(suite, mask, mremap_dontunmap, "st_mremap", "dontunmap", AGE) \
	X(suite, mask, mprotect_cycles, "st_mprotect", NULL, AGE) \
	X(suite, mask, syscall_pipe, "st_syscalls", "pipe", AGE) \
	X(suite, mask, syscall_o_direct, "st_syscalls", "direct", AGE) \
	X(suite, mask, signal_handler, "st_signal", NULL, AGE) \
	X(suite, mask, random_mix_four_threads_limit, "st_stress", "3 4 32", LIMIT)

#define MASKED_TEST(suite, mask, name, prog, arg, settings) \
	Test(suite, name) { \
		expect_ok_masked(#suite "-" #name, prog, arg, settings, mask); \
	}

/* ------------------------------------------------------------ programs */

SHIM_TEST(single_thread, "st_basic", NULL, AGE)
SHIM_TEST(single_thread_limit, "st_basic", NULL, LIMIT)
SHIM_TEST(eight_threads, "st_threads", NULL, AGE)
SHIM_TEST(eight_threads_limit, "st_threads", NULL, LIMIT)
SHIM_TEST(fork, "st_fork", "basic", AGE)
SHIM_TEST(fork_limit, "st_fork", "basic", LIMIT)
SHIM_TEST(fork_twice_and_grandchild, "st_fork", "twice", AGE)
SHIM_TEST(fork_from_thread, "st_fork", "thread", AGE)
SHIM_TEST(madv_dontneed, "st_madvise", "dontneed", AGE)
SHIM_TEST(madv_dontneed_limit, "st_madvise", "dontneed", LIMIT)
SHIM_TEST(madv_free, "st_madvise", "free", AGE)
SHIM_TEST(munmap_then_mmap, "st_munmap", NULL, AGE)
SHIM_TEST(mremap_move, "st_mremap", "move", AGE)
SHIM_TEST(mremap_grow_in_place, "st_mremap", "grow", AGE)
SHIM_TEST(mremap_grow_with_move, "st_mremap", "growmove", AGE)
SHIM_TEST(mremap_shrink, "st_mremap", "shrink", AGE)
SHIM_TEST(mremap_piece, "st_mremap", "piece", AGE)
SHIM_TEST(mremap_dontunmap, "st_mremap", "dontunmap", AGE)
SHIM_TEST(mremap_doubling, "st_mremap", "doubling", AGE)
SHIM_TEST(mremap_all_limit, "st_mremap", "all", LIMIT)
SHIM_TEST(mprotect_cycles, "st_mprotect", NULL, AGE)
SHIM_TEST(syscall_pipe, "st_syscalls", "pipe", AGE)
SHIM_TEST(syscall_file, "st_syscalls", "file", AGE)
SHIM_TEST(syscall_devzero, "st_syscalls", "devzero", AGE)
SHIM_TEST(syscall_process_vm, "st_syscalls", "vm", AGE)
SHIM_TEST(syscall_o_direct, "st_syscalls", "direct", AGE)
SHIM_TEST(syscall_lowest_fd, "st_syscalls", "lowest_fd", LIMIT)
SHIM_TEST(fds_closefrom, "st_fds", "closefrom", AGE)
SHIM_TEST(fds_close_loop, "st_fds", "close_loop", AGE)
SHIM_TEST(fds_close_range, "st_fds", "close_range", AGE)
SHIM_TEST(fds_kept_high, "st_fds", "low", AGE)
SHIM_TEST(mlockall_current_future, "st_mlock", "all", AGE)
SHIM_TEST(mlockall_onfault, "st_mlock", "onfault", AGE)
SHIM_TEST(rlimit_as_own_room, "st_rlimit", "as", AGE)
SHIM_TEST(rlimit_data_own_room, "st_rlimit", "data", AGE)
SHIM_TEST(signal_handler, "st_signal", NULL, AGE)
SHIM_TEST(exec_self, "st_exec", "exec", AGE)
SHIM_TEST(exec_from_thread, "st_exec", "thread", AGE)
SHIM_TEST(posix_spawn_and_system, "st_exec", "spawn", AGE)
SHIM_TEST(exit_with_compressed_pages, "st_exit", "_exit", AGE)
SHIM_TEST(exit_while_threads_fault, "st_exit", "threads", AGE)
SHIM_TEST(control_plain_compressed, "st_plain", "compressed", AGE)
SHIM_TEST(pool_max_single_thread, "st_basic", NULL, POOLMAX)
SHIM_TEST(pool_max_eight_threads, "st_threads", NULL, POOLMAX)
SHIM_TEST(pool_max_fork, "st_fork", "basic", POOLMAX)
SHIM_TEST(pool_max_mremap, "st_mremap", "all", POOLMAX)
SHIM_TEST(pool_max_madv_dontneed, "st_madvise", "dontneed", POOLMAX)
SHIM_TEST(pool_max_random_mix, "st_stress", "3 4 24", POOLMAX)
SHIM_TEST(random_mix_four_threads, "st_stress", "3 4 32", AGE)
SHIM_TEST(random_mix_four_threads_limit, "st_stress", "3 4 32", LIMIT)
SHIM_TEST(random_mix_eight_threads_limit, "st_stress", "3 8 16", LIMIT)

/* A core dump holds the pages that were compressed; st_core reads it from
 * its own directory, so core_pattern must name a plain file there. */
static void expect_core(const char *mode)
{
	char pattern[256] = "";
	FILE *f = fopen("/proc/sys/kernel/core_pattern", "r");

	if (f) {
		if (!fgets(pattern, sizeof(pattern), f))
			pattern[0] = 0;
		fclose(f);
	}
	pattern[strcspn(pattern, "\n")] = 0;
	if (strcmp(pattern, "core")) {
		cr_skip_test("kernel.core_pattern is \"%s\", not \"core\"", pattern);
		return;
	}
	expect_ok("st_core", mode, AGE);
}

Test(shim, core_dump_after_abort) { expect_core("abort"); }
Test(shim, core_dump_after_segv) { expect_core("segv"); }

/* dup2 onto one of uzswap's descriptors is refused, and said exactly once
 * however many times it is tried. */
Test(shim, fds_dup2_refused)
{
	static const char said[] = "uzswap: dup2/dup3 onto a descriptor uzswap "
				   "holds: refused (EBUSY)\n";
	struct opts o = { .env = AGE };
	struct result *r = malloc(sizeof(*r));

	cr_assert_not_null(r);
	need_shim("st_fds");
	run(r, "st_fds", "dup2", &o);
	assert_not_hung(r, "st_fds dup2");
	cr_assert_eq(r->status, 0, "st_fds dup2: exit status %d\nstdout:\n%s\n"
		     "stderr:\n%s", r->status, r->out, r->err);
	cr_assert_str_eq(r->err, said, "st_fds dup2: stderr should be the one "
			 "refusal line:\n%s", r->err);
	free(r);
}

/* malloc churn in the brk heap under a limit; the stats must show heap
 * pages taken out and faulted back, or the run proved nothing. */
Test(shim, heap_churn_limit)
{
	expect_ok_masked("heap_churn_limit", "st_heap", "2", LIMIT, "");
}

/* The heap's top trimmed and regrown while the engine registers it: a
 * mapping regrown in a hole of a registered range is not registered, and
 * a page taken out of it would come back as zeros. */
Test(shim, brk_trim_while_adopting)
{
	expect_ok_masked("brk_trim_while_adopting", "st_brk", "3", AGE, "");
}

/* Linux 6.7's missing ioctl, and WP_ASYNC (6.7) with it. */
FALLBACK_CASES(MASKED_TEST, shim_no_pagemap_scan, "-pagemap_scan")
FALLBACK_CASES(MASKED_TEST, shim_no_wp_async, "-pagemap_scan,-wp_async")

/* Handlers that run at exit see their data; their lines come out. */
static void expect_exit_lines(const char *arg, const char *const *want)
{
	struct opts o = { .env = AGE };
	struct result *r = malloc(sizeof(*r));

	cr_assert_not_null(r);
	need_shim("st_exit");
	run(r, "st_exit", arg, &o);
	assert_clean(r, arg);
	for (; *want; want++)
		cr_assert(strstr(r->out, *want), "st_exit %s: no \"%s\" in "
			  "stdout:\n%s", arg, *want, r->out);
	free(r);
}

Test(shim, exit_with_atexit_handler)
{
	expect_exit_lines("exit", ENV("st_exit: atexit handler verified\n"));
}

Test(shim, return_from_main_with_handlers)
{
	expect_exit_lines("return", ENV("st_exit: atexit handler verified\n",
					"st_exit: destructor verified\n"));
}

/* ------------------------------------------------- the shim stands aside */

static const char PLAIN_OUT[] =
	"line one of the program's own output\n"
	"line two: 2048 pages verified\n"
	"line three: the end\n";

/* st_plain untouched under env: status 0, its own output exactly. */
static void run_untouched(struct result *r, const struct opts *o)
{
	run(r, "st_plain", "untouched", o);
	assert_not_hung(r, "st_plain");
	cr_assert_eq(r->status, 0, "st_plain: exit status %d\nstdout:\n%s\n"
		     "stderr:\n%s", r->status, r->out, r->err);
	cr_assert_str_eq(r->out, PLAIN_OUT, "the program's output changed:\n%s",
			 r->out);
}

/* A bad value: exactly "uzswap: NAME="value" <why>" and the fallback line. */
static void expect_bad_value(const char *setting, const char *shown)
{
	struct opts o = { .env = (const char *const[]){ setting,
		"UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_COLD_AGE=10ms",
		"UZSWAP_MIN_REGION=64K", NULL } };
	struct result *r = malloc(sizeof(*r));
	char l0[1024], l1[1024], want[512];

	cr_assert_not_null(r);
	need_shim("st_plain");
	run_untouched(r, &o);
	cr_assert_eq(lines(r->err), 2, "%s: want 2 lines on stderr, got:\n%s",
		     setting, r->err);
	snprintf(want, sizeof(want), "uzswap: %s ", shown);
	line(r->err, 0, l0, sizeof(l0));
	line(r->err, 1, l1, sizeof(l1));
	cr_assert(!strncmp(l0, want, strlen(want)), "%s: first line should "
		  "start with '%s':\n%s", setting, want, r->err);
	cr_assert_str_eq(l1, "uzswap: running the program uncompressed",
			 "%s: second line:\n%s", setting, r->err);
	free(r);
}

Test(shim, bad_limit)
{
	expect_bad_value("UZSWAP_LIMIT=12X", "UZSWAP_LIMIT=\"12X\"");
}

Test(shim, bad_scan_interval)
{
	expect_bad_value("UZSWAP_SCAN_INTERVAL=1ms", "UZSWAP_SCAN_INTERVAL=\"1ms\"");
}

Test(shim, bad_value_with_newline_stays_one_line)
{
	expect_bad_value("UZSWAP_COLD_AGE=1\nsecond line",
			 "UZSWAP_COLD_AGE=\"1\\x0asecond line\"");
}

/* st_plain compressed under o ran to its end with its own output; its
 * stderr is the caller's to check. */
static void run_plain_compressed(struct result *r, const struct opts *o)
{
	need_shim("st_plain");
	run(r, "st_plain", "compressed", o);
	assert_not_hung(r, "st_plain");
	cr_assert_eq(r->status, 0, "exit status %d\nstdout:\n%s\nstderr:\n%s",
		     r->status, r->out, r->err);
	cr_assert_str_eq(r->out, PLAIN_OUT, "output changed:\n%s", r->out);
}

Test(shim, unknown_variable_warns_and_runs)
{
	struct opts o = { .env = (const char *const[]){ "UZSWAP_LIMT=1M",
		"UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_COLD_AGE=10ms",
		"UZSWAP_MIN_REGION=64K", NULL } };
	struct result *r = malloc(sizeof(*r));

	cr_assert_not_null(r);
	run_plain_compressed(r, &o);
	cr_assert_eq(lines(r->err), 1, "want one line:\n%s", r->err);
	cr_assert(strstr(r->err, "UZSWAP_LIMT") && strstr(r->err, "UZSWAP_LIMIT"),
		  "%s", r->err);
	free(r);
}

Test(shim, disable)
{
	struct opts o = { .env = ENV("UZSWAP_DISABLE=1",
				     "UZSWAP_SCAN_INTERVAL=10ms",
				     "UZSWAP_COLD_AGE=10ms", "UZSWAP_MIN_REGION=64K") };
	struct result *r = malloc(sizeof(*r));

	cr_assert_not_null(r);
	need_shim("st_plain");
	run_untouched(r, &o);
	cr_assert_eq(r->err[0], '\0', "stderr:\n%s", r->err);
	free(r);
}

Test(shim, disable_ignores_bad_values)
{
	struct opts o = { .env = ENV("UZSWAP_DISABLE=1", "UZSWAP_LIMIT=12X",
				     "UZSWAP_SCAN_INTERVAL=10ms") };
	struct result *r = malloc(sizeof(*r));

	cr_assert_not_null(r);
	need_shim("st_plain");
	run_untouched(r, &o);
	cr_assert_eq(r->err[0], '\0', "stderr:\n%s", r->err);
	free(r);
}

/*
 * Without UFFDIO_MOVE there is no way yet to take a page out atomically
 * (README, Kernels): one line says so, and the program runs untouched.
 * Linux 6.1 (Debian 12) lacks all three features.
 */
static void expect_no_move(const char *mask)
{
	char masked[96];
	struct opts o = { .env = (const char *const[]){ masked,
		"UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_COLD_AGE=10ms",
		"UZSWAP_MIN_REGION=64K", NULL } };
	struct result *r = malloc(sizeof(*r));

	cr_assert_not_null(r);
	need_shim("st_plain");
	snprintf(masked, sizeof(masked), "UZSWAP_KERNEL_FEATURES=%s", mask);
	run_untouched(r, &o);
	cr_assert_str_eq(r->err, "uzswap: no UFFDIO_MOVE (masked by "
			 "UZSWAP_KERNEL_FEATURES); running the program "
			 "uncompressed\n", "%s: stderr:\n%s", mask, r->err);
	free(r);
}

Test(shim, no_move_runs_uncompressed)
{
	expect_no_move("-move");
}

Test(shim, linux_6_1_runs_uncompressed)
{
	expect_no_move("-move,-pagemap_scan,-wp_async");
}

/* Each fallback in use is one line at UZSWAP_LOG=info, and the program
 * is compressed all the same. */
Test(shim, fallbacks_say_so_at_info_level)
{
	static const char *const want[] = {
		"no PAGEMAP_SCAN (masked by UZSWAP_KERNEL_FEATURES): reading "
		"page states from /proc/self/pagemap instead\n",
		"no UFFD_FEATURE_WP_ASYNC (masked by UZSWAP_KERNEL_FEATURES): "
		"writes are not tracked, only refaults show a page in use\n",
	};
	struct opts o = { .env = ENV("UZSWAP_KERNEL_FEATURES=-wp_async,-pagemap_scan",
				     "UZSWAP_LOG=info", "UZSWAP_SCAN_INTERVAL=10ms",
				     "UZSWAP_COLD_AGE=10ms", "UZSWAP_MIN_REGION=64K") };
	struct result *r = malloc(sizeof(*r));

	cr_assert_not_null(r);
	run_plain_compressed(r, &o);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const char *hit = strstr(r->err, want[i]);

		cr_assert_not_null(hit, "no \"%s\" on stderr:\n%s", want[i], r->err);
		cr_assert_null(strstr(hit + 1, want[i]), "said twice:\n%s", r->err);
	}
	free(r);
}

/* Copy src to dir/name, mode 0755. */
static void copy_file(const char *src, const char *dir, const char *name,
		      char *dst, size_t dstlen)
{
	char buf[65536];
	int in, out;
	ssize_t n;

	snprintf(dst, dstlen, "%s/%s", dir, name);
	in = open(src, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(in, 0, "open %s: %s", src, strerror(errno));
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	cr_assert_geq(out, 0, "create %s: %s", dst, strerror(errno));
	while ((n = read(in, buf, sizeof(buf))) > 0)
		cr_assert_eq(write(out, buf, (size_t)n), n);
	close(in);
	close(out);
	chmod(dst, 0755);
}

Test(shim, no_privilege)
{
	struct opts o = { .env = AGE, .uid = 65534 };
	struct result *r = malloc(sizeof(*r));
	char dir[] = "/tmp/uzswap-shimtest-XXXXXX", prog[256], shim[256];
	char prog_src[4096];
	FILE *f;
	int v = -1;
	struct stat st;

	cr_assert_not_null(r);
	need_shim("st_plain");
	if (geteuid() != 0)
		cr_skip_test("needs root to run a program as nobody");
	f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = -1;
		fclose(f);
	}
	if (v != 0)
		cr_skip_test("vm.unprivileged_userfaultfd is %d, not 0: an "
			     "unprivileged user may use userfaultfd here", v);
	if (stat("/dev/userfaultfd", &st) == 0 && (st.st_mode & 006))
		cr_skip_test("/dev/userfaultfd is open to every user here");

	/* Copies nobody can surely reach, whatever the build dir allows. */
	cr_assert_not_null(mkdtemp(dir));
	chmod(dir, 0755);
	snprintf(prog_src, sizeof(prog_src), SHIM_TESTS_DIR "/st_plain");
	copy_file(prog_src, dir, "st_plain", prog, sizeof(prog));
	copy_file(SHIM_PATH, dir, "libuzswap_preload.so", shim, sizeof(shim));
	o.prog_path = prog;
	o.shim_path = shim;
	run_untouched(r, &o);
	unlink(prog);
	unlink(shim);
	rmdir(dir);

	cr_assert_eq(lines(r->err), 1, "want exactly one line on stderr:\n%s",
		     r->err);
	cr_assert(!strncmp(r->err, "uzswap: userfaultfd is ", 23), "%s", r->err);
	cr_assert(strstr(r->err, "/dev/userfaultfd") &&
		  strstr(r->err, "vm.unprivileged_userfaultfd=1") &&
		  strstr(r->err, "CAP_SYS_PTRACE"),
		  "the line should say how to enable userfaultfd:\n%s", r->err);
	free(r);
}

/* ------------------------------------------------------- pool eviction */

/* The whole of a stats file, in a buffer of this file's (NULL: none). */
static char *stats_text(const char *path)
{
	static char buf[1 << 20];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* The value of "key" in the last JSON line of a stats file (-1: none). */
static long long last_json_value(const char *path, const char *key)
{
	char pat[64], *buf = stats_text(path), *line, *v;
	size_t n;

	if (!buf)
		return -1;
	n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	line = strrchr(buf, '\n');
	line = line ? line + 1 : buf;
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	v = strstr(line, pat);
	return v ? strtoll(v + strlen(pat), NULL, 10) : -1;
}

/* The largest value of "key" over every JSON line of a stats file (-1:
 * none): the counters are per process and only grow. */
static long long max_json_value(const char *path, const char *key)
{
	const char *buf = stats_text(path), *v;
	char pat[64];
	long long best = -1;

	if (!buf)
		return -1;
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	for (v = strstr(buf, pat); v; v = strstr(v + 1, pat)) {
		long long x = strtoll(v + strlen(pat), NULL, 10);

		if (x > best)
			best = x;
	}
	return best;
}

static bool dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	bool empty = true;

	cr_assert_not_null(d, "opendir %s: %s", path, strerror(errno));
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			empty = false;
	closedir(d);
	return empty;
}

/*
 * With a tiny pool, pages go on to the backing file and come back from it
 * (st_basic checks every byte); the file lives in the directory given and
 * is gone (it never had a name there) once the program exits.
 */
Test(shim, pool_max_writes_to_the_file_and_reads_back)
{
	char dir[] = "/var/tmp/uzs-backing-XXXXXX", stats[128], backing[128];
	struct opts o = { 0 };
	struct result *r = malloc(sizeof(*r));

	cr_assert_not_null(r);
	need_shim("st_basic");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(backing, sizeof(backing), "UZSWAP_BACKING=%s", dir);
	snprintf(stats, sizeof(stats), "UZSWAP_STATS_FILE=%s.json", dir);
	o.env = ENV("UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_COLD_AGE=10ms",
		    "UZSWAP_MIN_REGION=64K", "UZSWAP_POOL_MAX=256K",
		    "UZSWAP_STATS_INTERVAL=50ms", backing, stats);
	run(r, "st_basic", NULL, &o);
	assert_clean(r, "st_basic with UZSWAP_POOL_MAX=256K");
	cr_assert(dir_is_empty(dir), "the backing file is still in %s", dir);
	{
		char path[128];

		snprintf(path, sizeof(path), "%s.json", dir);
		cr_assert_gt(last_json_value(path, "evictions"), 0);
		cr_assert_gt(last_json_value(path, "backing_writes"), 1000);
		cr_assert_gt(last_json_value(path, "faults_backed"), 1000);
		cr_assert_eq(last_json_value(path, "backing_errors"), 0);
		cr_assert_leq(last_json_value(path, "pool_bytes"), 256 << 10);
		unlink(path);
	}
	rmdir(dir);
	free(r);
}

/* A JSON stats file of this test's own, in path, and the setting that
 * names it, in env. */
static void stats_file(const char *name, char *path, size_t pathlen,
		       char *env, size_t envlen)
{
	snprintf(path, pathlen, "/var/tmp/uzs-%s-%d.json", name, (int)getpid());
	snprintf(env, envlen, "UZSWAP_STATS_FILE=%s", path);
}

/*
 * A run of prog arg with scans every `scan`, one more setting (`knob`: the
 * limit or the cold age), and a JSON stats file of the test's own written
 * every 20 ms; the run must be clean.  The caller reads the file (path),
 * then calls stats_run_end.
 */
struct stats_run {
	struct result *r;
	char path[64];
};

/* Run prog arg with settings, a 64 KiB UZSWAP_MIN_REGION and a stats file
 * written every 20 ms (unless settings give another interval); it must
 * exit cleanly.  The file stays for the caller until stats_run_end. */
static void stats_run(struct stats_run *s, const char *name, const char *prog,
		      const char *arg, const char *const *settings)
{
	char stats[128], what[160];
	const char *env[16];
	struct opts o = { .env = env };
	bool interval = false;
	size_t n = 0;

	s->r = malloc(sizeof(*s->r));
	cr_assert_not_null(s->r);
	need_shim(prog);
	stats_file(name, s->path, sizeof(s->path), stats, sizeof(stats));
	for (; settings[n]; n++) {
		env[n] = settings[n];
		interval |= !strncmp(settings[n], "UZSWAP_STATS_INTERVAL=", 22);
	}
	cr_assert(n >= 1 && n <= 12);
	snprintf(what, sizeof(what), "%s %s with %s", prog, arg,
		 settings[n - 1]);
	env[n++] = "UZSWAP_MIN_REGION=64K";
	if (!interval)
		env[n++] = "UZSWAP_STATS_INTERVAL=20ms";
	env[n++] = stats;
	env[n] = NULL;
	run(s->r, prog, arg, &o);
	drop_limit_warnings(s->r);
	assert_clean(s->r, what);
}

static void stats_run_end(struct stats_run *s)
{
	unlink(s->path);
	free(s->r);
}

/* The stats file ends with the counters at exit, however long the interval:
 * a short run's last interval is not lost. */
Test(shim, stats_file_ends_with_the_counters_at_exit)
{
	struct stats_run s;

	stats_run(&s, "final", "st_plain", "compressed",
		  ENV("UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_COLD_AGE=20ms",
		      "UZSWAP_STATS_INTERVAL=1h"));
	cr_assert_gt(last_json_value(s.path, "refaults"), 0, "the last line of "
		     "the stats file does not show the pages that came back");
	stats_run_end(&s);
}

/* A program that fills fresh memory faster than pages compress, under a
 * limit: its first touches are held back while reclaim catches up (the
 * time is counted), and every byte is right. */
Test(shim, fast_growth_is_held_back_under_a_limit)
{
	struct stats_run s;

	stats_run(&s, "grow", "st_plain", "grow",
		  ENV("UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_LIMIT=8M"));
	cr_assert_gt(last_json_value(s.path, "throttle_ns"), 0,
		     "32 MiB filled at once under an 8 MiB limit, and no first "
		     "touch was held back");
	stats_run_end(&s);
}

/* Compressed memory read back in order is restored ahead of the reader
 * (fewer faults, each bringing a run), and every byte is right. */
Test(shim, sequential_readback_reads_ahead)
{
	struct stats_run s;
	long long ahead, faults;

	stats_run(&s, "ahead", "st_plain", "compressed",
		  ENV("UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_COLD_AGE=20ms"));
	ahead = last_json_value(s.path, "read_ahead");
	faults = last_json_value(s.path, "faults_stored") +
		 last_json_value(s.path, "faults_zero") +
		 last_json_value(s.path, "faults_same");
	cr_assert_gt(ahead, faults, "8 MiB read back in order: %lld pages "
		     "read ahead, against %lld faults on taken-out pages",
		     ahead, faults);
	stats_run_end(&s);
}

/* Read back in order from the backing file (a pool of 64 KiB sends most
 * pages there): read ahead too, each object read with the lock
 * dropped, and every byte right. */
Test(shim, sequential_readback_reads_ahead_from_the_file)
{
	struct stats_run s;
	long long ahead, faults;

	stats_run(&s, "ahead-file", "st_plain", "compressed",
		  ENV("UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_COLD_AGE=20ms",
		      "UZSWAP_POOL_MAX=64K"));
	ahead = last_json_value(s.path, "read_ahead");
	faults = last_json_value(s.path, "faults_backed");
	cr_assert_gt(last_json_value(s.path, "backing_reads"), 1024,
		     "8 MiB through a 64 KiB pool, and under 1024 pages read "
		     "back from the file: the test tests nothing");
	cr_assert_gt(ahead, faults, "8 MiB read back in order from the file: "
		     "%lld pages read ahead, against %lld faults on pages in "
		     "the file", ahead, faults);
	stats_run_end(&s);
}

/* The limit counts anonymous memory the engine does not manage: 8 MiB of
 * data fits under 10 MiB, but not beside 6 MiB of executable memory, so
 * half of it must go out (and huge pages are off under a limit).  The
 * stats say how much was counted. */
Test(shim, limit_counts_unmanaged_memory)
{
	struct stats_run s;

	stats_run(&s, "unmanaged", "st_plain", "unmanaged",
		  ENV("UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_LIMIT=10M"));
	cr_assert_geq(last_json_value(s.path, "unmanaged_bytes"), 6ll << 20,
		      "6 MiB of executable memory filled, and the stats count "
		      "less anonymous memory outside managed memory");
	stats_run_end(&s);
}

/* A mapping filled at once, with scans a second apart: the fault thread's
 * RSS watch sees memory grow that our accounts do not explain, registers
 * the mapping, and the rest of its first touches are held back. */
Test(shim, unseen_growth_is_found_and_held_back)
{
	struct stats_run s;

	stats_run(&s, "burst", "st_plain", "burst",
		  ENV("UZSWAP_SCAN_INTERVAL=1s", "UZSWAP_LIMIT=16M"));
	cr_assert_gt(last_json_value(s.path, "throttle_ns"), 0,
		     "32 MiB mapped and filled at once under a 16 MiB limit, "
		     "and no first touch was held back: the mapping was not "
		     "found while it filled");
	stats_run_end(&s);
}


/* A limit that the memory nobody can take out exceeds (6 MiB of it under
 * a 4 MiB limit) cannot be met: pages in use are left alone rather than
 * taken out again and again.  The final read-back of the 8 MiB brings
 * each of its 2048 pages back once; a 1 MiB hot set read for a second
 * would add tens of thousands if it were taken out at every scan. */
Test(shim, unreachable_limit_leaves_pages_in_use)
{
	struct stats_run s;
	long long refaults;

	stats_run(&s, "unmanaged-hot", "st_plain", "unmanaged-hot",
		  ENV("UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_LIMIT=4M"));
	refaults = last_json_value(s.path, "refaults");
	cr_assert_lt(refaults, 2048 + 4 * 256, "%lld refaults: pages in use "
		     "were taken out again and again", refaults);
	stats_run_end(&s);
}

/* Pages a fault brought back come in untracked (no write-protect fault at
 * their first write); a scan arms them again in turn, so once left alone
 * they go cold and out again.  A cold age of 400 ms makes scans arm one
 * chunk in four. */
SHIM_TEST(read_back_pages_go_cold_again, "st_plain", "again",
	  ENV("UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_COLD_AGE=400ms",
	      "UZSWAP_MIN_REGION=64K"))

/* Without a limit, huge pages stay as the system has them. */
SHIM_TEST(huge_pages_stay_without_a_limit, "st_plain", "huge-pages", AGE)

/* Reading back much more than the limit, at once: restores are held back
 * as first touches are (or the process would run as far past the limit as
 * it reads faster than pages compress), and every byte is right. */
Test(shim, fast_readback_is_held_back_under_a_limit)
{
	struct stats_run s;

	stats_run(&s, "readback", "st_plain", "readback",
		  ENV("UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_LIMIT=8M"));
	cr_assert_gt(last_json_value(s.path, "throttle_restore_ns"), 0,
		     "32 MiB read back at once under an 8 MiB limit, and no "
		     "restore was held back");
	stats_run_end(&s);
}

/* Nothing to take out: scans back off (each re-arms write tracking, which
 * costs the program a fault per page it writes next).  At 10 ms a scan,
 * without backoff a run of T ms has about T/10 scans; with it (doubling to
 * 16 intervals) about 5 + T/160.  T/40 + 6 lies between, however long a
 * loaded machine makes the run. */
Test(shim, idle_scans_back_off)
{
	struct stats_run s;
	long long scans, ms;

	stats_run(&s, "idle", "st_plain", "untouched",
		  ENV("UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_COLD_AGE=1h",
		      "UZSWAP_STATS_INTERVAL=10ms"));
	scans = last_json_value(s.path, "scans");
	ms = last_json_value(s.path, "uptime_ns") / 1000000;
	stats_run_end(&s);
	cr_assert_gt(scans, 0);
	cr_assert_leq(scans, ms / 40 + 6, "%lld scans in %lld ms of nothing to "
		      "do", scans, ms);
}

/* Under churn, the file reuses its space: it stays smaller than the data
 * although many times that much goes through it. */
Test(shim, backing_file_stays_bounded_under_churn)
{
	struct stats_run s;
	long long written, file;

	stats_run(&s, "churn", "st_stress", "4 4 16",
		  ENV("UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_COLD_AGE=10ms",
		      "UZSWAP_BACKING=/var/tmp", "UZSWAP_STATS_INTERVAL=50ms",
		      "UZSWAP_POOL_MAX=256K"));
	written = last_json_value(s.path, "backing_write_bytes");
	file = max_json_value(s.path, "backing_file_bytes");
	stats_run_end(&s);
	cr_log_info("%lld bytes written through a file of at most %lld",
		    written, file);
	cr_assert_gt(written, 0);
	cr_assert_leq(file, 16 << 20, "the file grew to %lld bytes for 16 MiB "
		      "of data", file);
	/* Without reuse the file grows by every write, so it is never smaller
	 * than what was written.  (How much more goes through depends on the
	 * machine's speed: an end-of-run file against a ratio of 1.25 failed
	 * on a loaded machine.) */
	cr_assert_gt(written, file, "%lld bytes went through a file of at most "
		     "%lld bytes: is space reused?", written, file);
}

/* A warning on stderr, once, and nothing else: the run goes on. */
static void assert_one_warning(const struct result *r, const char *what,
			       const char *want)
{
	const char *hit = strstr(r->err, want);

	assert_not_hung(r, what);
	cr_assert_eq(r->status, 0, "%s: exit status %d\nstdout:\n%s\nstderr:\n%s",
		     what, r->status, r->out, r->err);
	cr_assert_not_null(hit, "%s: no \"%s\" on stderr:\n%s", what, want, r->err);
	cr_assert_null(strstr(hit + 1, want), "%s: said twice:\n%s", what, r->err);
}

/* The file may not grow (RLIMIT_FSIZE): nothing is lost, one warning, the
 * program is fine (SIGXFSZ must not kill it). */
Test(shim, file_size_limit_loses_nothing)
{
	struct opts o = { .env = POOLMAX, .fsize = 64 << 10 };
	struct result *r = malloc(sizeof(*r));

	cr_assert_not_null(r);
	need_shim("st_plain");
	run(r, "st_plain", "settle", &o);
	assert_one_warning(r, "st_plain with RLIMIT_FSIZE 64K",
			   "writing to the backing file failed (File too large)");
	free(r);
}

/* The disk is full (a 64 KiB tmpfs): likewise. */
Test(shim, disk_full_loses_nothing)
{
	char dir[] = "/tmp/uzs-full-XXXXXX", backing[128];
	struct opts o = { 0 };
	struct result *r = malloc(sizeof(*r));

	cr_assert_not_null(r);
	need_shim("st_plain");
	cr_assert_not_null(mkdtemp(dir));
	if (mount("uzs-full", dir, "tmpfs", 0, "size=64k") != 0) {
		rmdir(dir);
		cr_skip_test("cannot mount a tmpfs (%s): needs root", strerror(errno));
	}
	snprintf(backing, sizeof(backing), "UZSWAP_BACKING=%s", dir);
	o.env = ENV("UZSWAP_SCAN_INTERVAL=10ms", "UZSWAP_COLD_AGE=10ms",
		    "UZSWAP_MIN_REGION=64K", "UZSWAP_POOL_MAX=256K", backing);
	run(r, "st_plain", "settle", &o);
	umount(dir);
	rmdir(dir);
	assert_one_warning(r, "st_plain with the backing file on a full disk",
			   "writing to the backing file failed (No space left "
			   "on device)");
	free(r);
}
