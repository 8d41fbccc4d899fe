/*
 * stats_shm.c - the shared stats page: creating and publishing it (in the
 * shim), and finding and reading it in another process (in `uzswap stat`).
 * stats_shm.h describes the page and the seqlock.
 *
 * The memory-ordering recipe is the usual one for seqlocks in the C11
 * model (Boehm, "Can seqlocks get along with programming language memory
 * models?", 2012): the payload is copied with relaxed atomic word accesses,
 * so that a racing copy is a stale value rather than undefined behaviour;
 * the writer puts a release fence between making seq odd and the payload,
 * and the reader an acquire fence between the payload and the second seq.
 * The page is MAP_SHARED between processes, where the same atomics hold.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "own_fds.h"
#include "stats_shm.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008u     /* Linux 6.3 */
#endif

/* "/proc/PID/fd/NAME" for any pid and directory entry name. */
#define FD_PATH_MAX (sizeof("/proc//fd/") + 12 + NAME_MAX)

#define STATS_WORDS (sizeof(struct uzs_engine_stats) / sizeof(uint64_t))
#define SHM_LEN 4096u

_Static_assert(sizeof(struct uzs_stats_shm) <= SHM_LEN, "stats outgrew their page");
_Static_assert(sizeof(struct uzs_engine_stats) % sizeof(uint64_t) == 0,
	       "stats are copied as whole words");
_Static_assert(offsetof(struct uzs_stats_shm, stats) % sizeof(uint64_t) == 0,
	       "stats are copied as whole words");

static uint64_t *payload(const struct uzs_stats_shm *shm)
{
	return (uint64_t *)(uintptr_t)&shm->stats;
}

/* ------------------------------------------------------------ the writer */

/*
 * Linux 6.3 and later log a warning for a memfd that says nothing about
 * exec, and may be set (vm.memfd_noexec=2) to refuse one; older kernels
 * refuse the flag itself.  So ask for a non-executable memfd, and fall back.
 */
static int stats_memfd(void)
{
	int fd = memfd_create(UZS_STATS_SHM_NAME,
			      MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);

	if (fd < 0 && errno == EINVAL)
		fd = memfd_create(UZS_STATS_SHM_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	return fd;
}

int uzs_stats_shm_create(struct uzs_stats_shm **out)
{
	struct uzs_stats_shm *shm;
	int fd = stats_memfd(), r;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, SHM_LEN) < 0)
		goto fail;
	/*
	 * A reader's mapping would take SIGBUS if the file shrank under it:
	 * fix the size for good.  Best effort; only we hold a writable fd.
	 */
	(void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	shm = mmap(NULL, SHM_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (shm == MAP_FAILED)
		goto fail;
	/* A fresh memfd reads as zeros: an even seq over an empty snapshot. */
	shm->pid = (uint32_t)getpid();
	shm->fd = uzs_fd_own(fd);
	shm->stats.magic = UZS_STATS_MAGIC;
	shm->stats.version = UZS_STATS_VERSION;
	shm->stats.size = sizeof(struct uzs_engine_stats);
	*out = shm;
	return 0;
fail:
	r = -errno;
	close(fd);
	return r;
}

void uzs_stats_shm_destroy(struct uzs_stats_shm *shm)
{
	int fd;

	if (!shm)
		return;
	fd = shm->fd;
	munmap(shm, SHM_LEN);
	uzs_fd_close(fd);
}

void uzs_stats_shm_publish(struct uzs_stats_shm *shm,
			   const struct uzs_engine_stats *s)
{
	uint64_t words[STATS_WORDS], *dst = payload(shm);
	struct uzs_engine_stats stamped = *s;
	uint64_t seq = __atomic_load_n(&shm->seq, __ATOMIC_RELAXED);

	stamped.magic = UZS_STATS_MAGIC;
	stamped.version = UZS_STATS_VERSION;
	stamped.size = sizeof(stamped);
	memcpy(words, &stamped, sizeof(words));

	__atomic_store_n(&shm->seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (size_t i = 0; i < STATS_WORDS; i++)
		__atomic_store_n(&dst[i], words[i], __ATOMIC_RELAXED);
	__atomic_store_n(&shm->seq, seq + 2, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------ the reader */

/* A publish takes microseconds: spin briefly, then sleep, then give up. */
#define READ_SPINS 100
#define READ_SLEEPS 200
#define READ_SLEEP_NS 1000000L

/* One consistent copy of the snapshot, or -EBUSY. */
static int read_snapshot(const struct uzs_stats_shm *shm, struct uzs_engine_stats *out)
{
	const uint64_t *src = payload(shm);
	uint64_t words[STATS_WORDS];

	for (int attempt = 0; attempt < READ_SPINS + READ_SLEEPS; attempt++) {
		uint64_t seq = __atomic_load_n(&shm->seq, __ATOMIC_ACQUIRE);

		if (!(seq & 1)) {
			for (size_t i = 0; i < STATS_WORDS; i++)
				words[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (__atomic_load_n(&shm->seq, __ATOMIC_RELAXED) == seq) {
				memcpy(out, words, sizeof(*out));
				return 0;
			}
		}
		if (attempt < READ_SPINS) {
			sched_yield();
		} else {
			struct timespec ts = { 0, READ_SLEEP_NS };

			nanosleep(&ts, NULL);
		}
	}
	return -EBUSY;
}

__attribute__((format(printf, 4, 5)))
static int fail(char *err, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return r;
}

#define DENIED "permission denied (it must run as your user, or you as root)"

/* Why /proc/PID/fd could not be opened, as the caller should hear it. */
static int no_fd_dir(pid_t pid, int e, char *err, size_t errlen)
{
	if (e == ENOENT || e == ESRCH)
		return fail(err, errlen, -ESRCH, "uzswap: no process %d", (int)pid);
	if (e == EACCES || e == EPERM)
		return fail(err, errlen, -EACCES, "uzswap: cannot look at process %d: "
			    DENIED, (int)pid);
	return fail(err, errlen, -e, "uzswap: cannot list /proc/%d/fd: %s",
		    (int)pid, strerror(e));
}

static int check_snapshot(pid_t pid, const struct uzs_engine_stats *s,
			  char *err, size_t errlen)
{
	if (s->magic != UZS_STATS_MAGIC)
		return fail(err, errlen, -EPROTO, "uzswap: process %d has a uzswap "
			    "stats page with a bad magic number", (int)pid);
	if (s->version != UZS_STATS_VERSION || s->size != sizeof(*s))
		return fail(err, errlen, -EPROTO, "uzswap: process %d runs a uzswap "
			    "with stats version %u (%u bytes); this uzswap reads "
			    "version %u (%zu bytes)", (int)pid, s->version, s->size,
			    UZS_STATS_VERSION, sizeof(*s));
	return 0;
}

/*
 * Map and read the memfd behind /proc/PID/fd/NAME.  *writer gets the pid
 * that created the page, to tell our own page from one a forked child still
 * shares with its parent.
 */
static int read_fd(pid_t pid, const char *name, struct uzs_engine_stats *out,
		   uint32_t *writer, char *err, size_t errlen)
{
	struct uzs_stats_shm *shm;
	char path[FD_PATH_MAX];
	struct stat st;
	int fd, r;

	snprintf(path, sizeof(path), "/proc/%d/fd/%s", (int)pid, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = errno;
		if (r == EACCES || r == EPERM)
			return fail(err, errlen, -EACCES, "uzswap: cannot open the "
				    "stats of process %d: " DENIED, (int)pid);
		return fail(err, errlen, r == ENOENT ? -ENOENT : -r, "uzswap: cannot "
			    "open %s: %s", path, strerror(r));
	}
	if (fstat(fd, &st) < 0 || st.st_size < (off_t)sizeof(*shm)) {
		close(fd);
		return fail(err, errlen, -EPROTO, "uzswap: process %d has a uzswap "
			    "stats page too small for this uzswap", (int)pid);
	}
	shm = mmap(NULL, sizeof(*shm), PROT_READ, MAP_SHARED, fd, 0);
	r = errno;
	close(fd);
	if (shm == MAP_FAILED)
		return fail(err, errlen, -r, "uzswap: cannot map the stats of "
			    "process %d: %s", (int)pid, strerror(r));
	*writer = __atomic_load_n(&shm->pid, __ATOMIC_RELAXED);
	r = read_snapshot(shm, out);
	munmap(shm, sizeof(*shm));
	if (r)
		return fail(err, errlen, r, "uzswap: the stats of process %d stayed "
			    "mid-update (is it stopped?); try again", (int)pid);
	return check_snapshot(pid, out, err, errlen);
}

static int is_stats_memfd(pid_t pid, const char *name)
{
	static const char want[] = "/memfd:" UZS_STATS_SHM_NAME " (deleted)";
	char path[FD_PATH_MAX], target[sizeof(want) + 1];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/fd/%s", (int)pid, name);
	n = readlink(path, target, sizeof(target));
	return n == (ssize_t)sizeof(want) - 1 && !memcmp(target, want, (size_t)n);
}

/*
 * A process normally holds one stats memfd.  A forked child that has not
 * made its own yet holds its parent's, and one that has may still hold both:
 * the page the process created itself wins, else the first readable one.
 * (The creator's pid is from its own pid namespace, so a reader in another
 * namespace never sees a match and takes the first.)
 */
int uzs_stats_shm_read(pid_t pid, struct uzs_engine_stats *out,
		       char *err, size_t errlen)
{
	struct uzs_engine_stats snap;
	char path[64], first_err[256] = "";
	int found = 0, r = -ENOENT;
	struct dirent *de;
	DIR *dir;

	if (err && errlen)
		err[0] = '\0';
	if (pid <= 0)
		return fail(err, errlen, -ESRCH, "uzswap: %d is not a process id", (int)pid);
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return no_fd_dir(pid, errno, err, errlen);

	while ((de = readdir(dir))) {
		uint32_t writer = 0;
		int rr;

		if (de->d_name[0] == '.' || !is_stats_memfd(pid, de->d_name))
			continue;
		rr = read_fd(pid, de->d_name, &snap, &writer,
			     found || r != -ENOENT ? NULL : first_err, sizeof(first_err));
		if (rr) {
			if (r == -ENOENT)
				r = rr;
			continue;
		}
		if (!found || writer == (uint32_t)pid)
			*out = snap;
		found = 1;
		if (writer == (uint32_t)pid)
			break;
	}
	closedir(dir);

	if (found)
		return 0;
	if (r != -ENOENT)
		return fail(err, errlen, r, "%s", first_err);
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return fail(err, errlen, -ESRCH, "uzswap: no process %d", (int)pid);
	return fail(err, errlen, -ENOENT, "uzswap: process %d is not running under "
		    "uzswap (or uzswap is disabled in it)", (int)pid);
}
