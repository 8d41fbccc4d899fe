/*
 * engine.c - the engine's lifecycle: setup, threads, stats, fork.
 *
 * Threads
 * -------
 * Two, both with stacks and state of their own (mmap'd, named [anon:uzswap],
 * never managed), all signals blocked, so they never touch memory that could
 * be missing and never run an application's signal handler:
 *  - the fault thread (fault.c) serves the application's userfaultfd;
 *  - the reclaim thread (reclaim.c) finds new mappings, ages pages
 *    (policy.c) and takes cold ones out.
 * Neither ever needs a lock an application thread can hold: the only lock is
 * the engine's, which application threads take only in the fork hooks below.
 *
 * Fork
 * ----
 * The child of a fork gets a copy of the address space without our
 * userfaultfd registration, so a page we had taken out would read as zeros
 * there.  Before the fork (pthread_atfork prepare) every taken-out page is
 * therefore put back, and the engine lock is held across the fork so nothing
 * is taken out again until both sides have returned.  The child then starts
 * an engine of its own; the parent goes on, and takes the pages out again
 * (MADV_POPULATE_WRITE breaks the fork's sharing first, see reclaim.c).
 * This costs a burst of decompression at fork; handing the child its
 * registration (UFFD_EVENT_FORK) instead is future work.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "backing.h"
#include "engine_internal.h"
#include "mmap_region.h"
#include "own_fds.h"
#include "stats.h"
#include "stats_shm.h"

#define THREAD_STACK (256u << 10)
#define VICTIMS_CAP (64u << 10)     /* 256 MiB taken out per round at most */

uint64_t uzs_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void uzs_log(struct uzs_engine *e, enum uzs_log_level level,
	     const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	if (e && level > e->cfg.log_level)
		return;
	n = snprintf(buf, sizeof(buf), "uzswap[%d]: ", (int)getpid());
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, (size_t)n) < 0)
		(void)0;    /* nowhere else to say it */
}

/*
 * The text of an errno value, for messages written from any thread.  Not
 * strerror(): it translates through gettext, which takes a lock an
 * application thread may hold and reads locale names setlocale() keeps in
 * the program's heap, memory our threads must never touch (it may be taken
 * out, and the fault thread would wait on itself).
 */
const char *uzs_strerror(int err)
{
	const char *s = strerrordesc_np(err);

	return s ? s : "unknown error";
}

void uzs_kick_reclaim(struct uzs_engine *e)
{
	uint64_t one = 1;

	if (write(e->kick_fd, &one, sizeof(one)) < 0)
		(void)0;    /* counter saturated: already kicked */
}

/* ------------------------------------------------------------- setup */

static bool pagemap_scan_works(int fd)
{
	struct page_region r;
	static char probe[UZS_PAGE_SIZE] __attribute__((aligned(UZS_PAGE_SIZE)));
	struct pm_scan_arg a = {
		.size = sizeof(a), .start = (uintptr_t)probe,
		.end = (uintptr_t)probe + sizeof(probe), .vec = (uintptr_t)&r,
		.vec_len = 1, .category_mask = PAGE_IS_PRESENT,
		.return_mask = PAGE_IS_PRESENT,
	};

	return ioctl(fd, PAGEMAP_SCAN, &a) >= 0;
}

static void *own(size_t len)
{
	return uzs_region_reserve(len);
}

static int start_thread(pthread_t *t, void **stack, void *(*fn)(void *),
			struct uzs_engine *e)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int rc;

	/* A guard page below: an overflow faults instead of writing into
	 * whatever of ours lies below (staging, with pages in flight). */
	*stack = own(THREAD_STACK + UZS_PAGE_SIZE);
	if (!*stack)
		return -ENOMEM;
	mprotect(*stack, UZS_PAGE_SIZE, PROT_NONE);
	pthread_attr_init(&attr);
	pthread_attr_setstack(&attr, (char *)*stack + UZS_PAGE_SIZE, THREAD_STACK);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(t, &attr, fn, e);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return -rc;
}

/* Why a feature is missing, for the lines that say so. */
static const char *lacks(const struct uzs_engine *e, unsigned feature,
			 const char *linux_version)
{
	return e->cfg.kernel_mask & feature ? "masked by UZSWAP_KERNEL_FEATURES"
					    : linux_version;
}

/* One info line per fallback in use: nothing by default, since the
 * program is served either way, only at a higher cost (README). */
static void report_fallbacks(struct uzs_engine *e)
{
	if (!e->have_pagemap_scan)
		uzs_log(e, UZS_LOG_INFO, "no PAGEMAP_SCAN (%s): reading page "
			"states from /proc/self/pagemap instead",
			lacks(e, UZS_KF_PAGEMAP_SCAN, "Linux 6.7 or later"));
	if (!e->have_wp_async)
		uzs_log(e, UZS_LOG_INFO, "no UFFD_FEATURE_WP_ASYNC (%s): writes "
			"are not tracked, only refaults show a page in use",
			lacks(e, UZS_KF_WP_ASYNC, "Linux 6.7 or later"));
}

/*
 * The features wanted, less those UZSWAP_KERNEL_FEATURES masks: a masked
 * feature is not even asked for in UFFDIO_API, so the engine runs exactly
 * as on a kernel without it.
 */
static int setup_uffds(struct uzs_engine *e, char *err, size_t errlen)
{
	unsigned mask = e->cfg.kernel_mask;
	uint64_t want = UFFD_FEATURE_POISON | UFFD_FEATURE_THREAD_ID;
	int rc;

	if (!(mask & UZS_KF_WP_ASYNC))
		want |= UFFD_FEATURE_WP_ASYNC;
	if (!(mask & UZS_KF_MOVE))
		want |= UFFD_FEATURE_MOVE;
	rc = uzs_uffd_open(&e->app, want, UZS_UFFD_REQUIRED, err, errlen);
	if (rc)
		return rc;
	e->have_move = e->app.features & UFFD_FEATURE_MOVE;
	e->have_poison = e->app.features & UFFD_FEATURE_POISON;
	e->have_wp_async = e->app.features & UFFD_FEATURE_WP_ASYNC;
	if (!e->have_move) {
		snprintf(err, errlen, "uzswap: no UFFDIO_MOVE (%s); running the "
			 "program uncompressed",
			 lacks(e, UZS_KF_MOVE, "Linux 6.8 or later"));
		return -EOPNOTSUPP;
	}
	rc = uzs_uffd_open(&e->stage, UFFD_FEATURE_MOVE, UFFD_FEATURE_MOVE,
			   err, errlen);
	if (rc)
		return rc;
	/* Read (pread) whether or not the ioctl is there: the fallback for
	 * PAGEMAP_SCAN, and staging's checks (reclaim.c). */
	e->pagemap_fd = uzs_fd_own(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
	if (e->pagemap_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "uzswap: cannot read /proc/self/pagemap "
			 "(%s); running the program uncompressed", uzs_strerror(-rc));
		return rc;
	}
	e->maps_fd = uzs_fd_own(open("/proc/self/maps", O_RDONLY | O_CLOEXEC));
	e->statm_fd = uzs_fd_own(open("/proc/self/statm", O_RDONLY | O_CLOEXEC));
	if (e->maps_fd < 0 || e->statm_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "uzswap: cannot read /proc/self/%s (%s); "
			 "running the program uncompressed",
			 e->maps_fd < 0 ? "maps" : "statm", uzs_strerror(-rc));
		return rc;
	}
	e->have_pagemap_scan = !(mask & UZS_KF_PAGEMAP_SCAN) &&
			       pagemap_scan_works(e->pagemap_fd);
	report_fallbacks(e);
	return 0;
}

static int setup_memory(struct uzs_engine *e)
{
	int rc;

	uzs_evict_setup(e);
	/* UZSWAP_POOL_MAX is the pools' hard cap: a store that meets it
	 * evicts first (reclaim.c), or fails if nothing can be evicted. */
	e->pool_cap = e->cfg.pool_max;
	rc = uzs_pools_setup(e);
	if (!rc)
		rc = uzs_pt_create(&e->pt);
	if (!rc)
		rc = uzs_codec_create(e->cfg.cutoff, &e->codec);
	if (rc)
		return rc;
	e->regions = own(UZS_MAX_REGIONS * sizeof(e->regions[0]));
	e->maps_buf = own(UZS_MAPS_BUF);
	e->staging = own((size_t)UZS_STAGING_PAGES << UZS_PAGE_SHIFT);
	e->trash = own((size_t)UZS_STAGING_PAGES << UZS_PAGE_SHIFT);
	e->fault_page = own(UZS_PAGE_SIZE);
	e->fault_obj = own(UZS_PAGE_SIZE);
	e->backed_obj = own(UZS_PAGE_SIZE);
	e->compress_buf = own((size_t)UZS_COMPRESS_RUN * UZS_PAGE_SIZE);
	e->zeros = own((size_t)256 << UZS_PAGE_SHIFT);
	e->queue = own(UZS_FAULT_QUEUE * sizeof(e->queue[0]));
	e->victims_cap = VICTIMS_CAP;
	e->victims = own(VICTIMS_CAP * sizeof(e->victims[0]));
	e->scan = own(2 * sizeof(e->scan[0]));
	if (!e->have_pagemap_scan) {
		e->pagemap_buf = own(UZS_PAGEMAP_BATCH * sizeof(uint64_t));
		if (!e->pagemap_buf)
			return -ENOMEM;
	}
	if (!e->regions || !e->maps_buf || !e->staging || !e->trash ||
	    !e->fault_page ||
	    !e->fault_obj || !e->backed_obj || !e->compress_buf || !e->zeros || !e->queue || !e->victims || !e->scan)
		return -ENOMEM;
	/* A forked child must not share these pages: the parent could then
	 * not move them (EBUSY) and staging would never empty again. */
	madvise(e->staging, (size_t)UZS_STAGING_PAGES << UZS_PAGE_SHIFT,
		MADV_WIPEONFORK);
	madvise(e->trash, (size_t)UZS_STAGING_PAGES << UZS_PAGE_SHIFT,
		MADV_WIPEONFORK);
	/* Write-protect mode only: neither area ever raises a missing fault,
	 * so reading an empty slot reads zeros instead of waiting for us. */
	rc = uzs_uffd_register(&e->app, (uintptr_t)e->staging,
			       (size_t)UZS_STAGING_PAGES << UZS_PAGE_SHIFT,
			       UFFDIO_REGISTER_MODE_WP);
	if (!rc)
		rc = uzs_uffd_register(&e->stage, (uintptr_t)e->trash,
				       (size_t)UZS_STAGING_PAGES << UZS_PAGE_SHIFT,
				       UFFDIO_REGISTER_MODE_WP);
	return rc;
}

/*
 * Under a limit, no transparent huge pages for the process.  Memory that
 * fills before we have registered its mapping (a new glibc slab, say)
 * would grow 2 MiB a fault, faster than any watch can see: at a 64 MiB
 * limit, examples/cache's RSS rose 3-9 MiB over its steady state when a
 * slab began, 1-2 MiB without huge pages.  Managed memory has none
 * anyway (faults on a registered range are served a page at a time, and a
 * take-out splits a huge page).  The setting outlives exec, like the
 * LD_PRELOAD that brings the shim back; a program exec'd without it runs
 * without huge pages too (README, What is managed).
 */
static void no_huge_pages_under_limit(struct uzs_engine *e)
{
	if (e->cfg.limit && prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0)
		uzs_log(e, UZS_LOG_INFO, "cannot turn huge pages off: %s",
			uzs_strerror(errno));
}

static void close_proc_files(struct uzs_engine *e)
{
	int *fds[] = { &e->pagemap_fd, &e->maps_fd, &e->statm_fd };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		uzs_fd_close(*fds[i]);
		*fds[i] = -1;
	}
}

/*
 * Why setting up failed, in one line.  Its tables and pool are reserved as
 * address space up front (hundreds of GiB, MAP_NORESERVE: no memory), so
 * ENOMEM there almost always means a cap on address space, not a lack of
 * memory: say which.
 */
static void setup_failed(char *err, size_t errlen, int rc)
{
	static const struct { int resource; const char *name; } caps[] = {
		{ RLIMIT_AS, "RLIMIT_AS (ulimit -v)" },
		{ RLIMIT_DATA, "RLIMIT_DATA (ulimit -d)" },
	};
	struct rlimit rl;
	char mode = 0;
	int fd;

	for (size_t i = 0; rc == -ENOMEM && i < sizeof(caps) / sizeof(caps[0]); i++) {
		if (getrlimit(caps[i].resource, &rl) != 0 ||
		    rl.rlim_cur == RLIM_INFINITY)
			continue;
		snprintf(err, errlen, "uzswap: cannot reserve address space for "
			 "its tables: %s is %llu MiB; uzswap needs it unlimited; "
			 "running the program uncompressed", caps[i].name,
			 (unsigned long long)(rl.rlim_cur >> 20));
		return;
	}
	fd = open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, &mode, 1) != 1)
			mode = 0;
		close(fd);
	}
	if (rc == -ENOMEM && mode == '2')
		snprintf(err, errlen, "uzswap: cannot reserve address space for "
			 "its tables: vm.overcommit_memory is 2 (strict), which "
			 "uzswap does not support; running the program uncompressed");
	else
		snprintf(err, errlen, "uzswap: cannot set up: %s; running the "
			 "program uncompressed", uzs_strerror(-rc));
}

int uzs_engine_start(const struct uzs_config *cfg, struct uzs_engine **out,
		     char *err, size_t errlen)
{
	struct uzs_engine *e = own(sizeof(*e));
	int rc;

	if (!e) {
		snprintf(err, errlen, "uzswap: out of memory at startup");
		return -ENOMEM;
	}
	e->cfg = *cfg;
	e->app.fd = e->stage.fd = e->pagemap_fd = e->maps_fd = e->statm_fd = -1;
	e->kick_fd = e->stop_fd = e->stats_fd = -1;
	e->first_touch_window = 16;
	e->start_ns = uzs_now_ns();
	e->st.magic = UZS_STATS_MAGIC;
	e->st.version = UZS_STATS_VERSION;
	e->st.size = sizeof(e->st);
	pthread_mutex_init(&e->lock, NULL);
	rc = setup_uffds(e, err, errlen);
	if (rc)
		goto fail;
	rc = setup_memory(e);
	if (rc) {
		setup_failed(err, errlen, rc);
		goto fail;
	}
	if (e->cfg.stats_file[0]) {
		e->stats_fd = uzs_fd_own(open(e->cfg.stats_file, O_WRONLY |
					      O_APPEND | O_CREAT | O_CLOEXEC, 0644));
		if (e->stats_fd < 0)
			uzs_log(e, UZS_LOG_WARN, "UZSWAP_STATS_FILE=%s: %s",
				e->cfg.stats_file, uzs_strerror(errno));
	}
	/* For `uzswap stat PID`; without it only that command is lost. */
	if (uzs_stats_shm_create(&e->shm) != 0)
		e->shm = NULL;
	e->kick_fd = uzs_fd_own(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	e->stop_fd = uzs_fd_own(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	if (e->kick_fd < 0 || e->stop_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "uzswap: eventfd: %s", uzs_strerror(errno));
		goto fail;
	}
	no_huge_pages_under_limit(e);
	/* The fault thread first: registration makes faults ours to serve. */
	rc = start_thread(&e->fault_thread, &e->fault_stack,
			  uzs_fault_thread_main, e);
	if (!rc)
		rc = start_thread(&e->reclaim_thread, &e->reclaim_stack,
				  uzs_reclaim_thread_main, e);
	if (rc) {
		snprintf(err, errlen, "uzswap: cannot start threads: %s",
			 uzs_strerror(-rc));
		goto fail;
	}
	*out = e;
	return 0;
fail:
	/* Nothing is registered yet; the program runs untouched. */
	uzs_uffd_close(&e->app);
	uzs_uffd_close(&e->stage);
	close_proc_files(e);
	uzs_fd_close(e->kick_fd);
	uzs_fd_close(e->stop_fd);
	uzs_fd_close(e->stats_fd);
	uzs_backing_close(e->backing);
	return rc;
}

/* ------------------------------------------------------------- stats */

static void snapshot_locked(struct uzs_engine *e, struct uzs_engine_stats *out)
{
	*out = e->st;
	out->uptime_ns = uzs_now_ns() - e->start_ns;
	out->managed_bytes = e->managed_pages << UZS_PAGE_SHIFT;
	/* The estimate runs ahead between scans (it counts every fault in). */
	out->resident_bytes = (e->resident_pages < e->managed_pages ?
			       e->resident_pages : e->managed_pages) << UZS_PAGE_SHIFT;
	out->regions = e->nregions;
	out->unmanaged_bytes = e->unmanaged_pages << UZS_PAGE_SHIFT;
	uzs_pools_snapshot(e, out);
	out->metadata_bytes += uzs_pt_bytes(e->pt);
	if (e->backing) {
		struct uzs_backing_stats bs;

		uzs_backing_stats(e->backing, &bs);
		out->backing_file_bytes = bs.file_bytes;
		out->backing_disk_bytes = (bs.blocks_used + bs.blocks_unpunched) *
					  UZS_BACKING_BLOCK;
	}
}

void uzs_engine_stats(struct uzs_engine *e, struct uzs_engine_stats *out)
{
	uzs_lock(e);
	snapshot_locked(e, out);
	pthread_mutex_unlock(&e->lock);
}

/* One JSON line of snap to the stats file (O_APPEND: a line written from
 * two threads at once stays whole). */
static void stats_file_line(struct uzs_engine *e,
			    const struct uzs_engine_stats *snap)
{
	char line[UZS_STATS_JSON_MAX];
	size_t n = uzs_stats_json(snap, (uint64_t)getpid(), line, sizeof(line));

	if (n && write(e->stats_fd, line, n) != (ssize_t)n)
		uzs_log(e, UZS_LOG_WARN, "writing %s failed", e->cfg.stats_file);
}

void uzs_engine_publish(struct uzs_engine *e)
{
	struct uzs_engine_stats snap;
	uint64_t now = uzs_now_ns();

	if (!e->shm && e->stats_fd < 0)
		return;
	uzs_engine_stats(e, &snap);
	if (e->shm)
		uzs_stats_shm_publish(e->shm, &snap);
	if (e->stats_fd < 0 || now < e->next_stats_ns)
		return;
	e->next_stats_ns = now + e->cfg.stats_interval_ns;
	stats_file_line(e, &snap);
}

void uzs_engine_stats_file_final(struct uzs_engine *e)
{
	struct uzs_engine_stats snap;

	if (e->stats_fd < 0)
		return;
	uzs_engine_stats(e, &snap);
	stats_file_line(e, &snap);
}

/* -------------------------------------------------------------- fork */

/* Put back every page we hold, or as many as fit before deadline (ns,
 * 0 for none).  Under e->lock, dropped while the fault thread reads an
 * event our ioctl was waiting on; the walk keeps an address, not a region
 * index, because regions may change meanwhile. */
static void thaw_all(struct uzs_engine *e, uint64_t deadline)
{
	uintptr_t cursor = 0;
	unsigned since_look = 0;

	for (;;) {
		struct uzs_region *r = NULL;
		struct uzs_pt_walk w;

		for (size_t i = 0; i < e->nregions && !r; i++)
			if (e->regions[i].end > cursor)
				r = &e->regions[i];
		if (!r)
			return;
		w = uzs_pt_walk_start(r->start > cursor ? r->start : cursor, r->end);
		cursor = r->end;
		while (uzs_pt_walk_next(e->pt, &w, false)) {
			for (size_t k = 0; w.pte && k < w.n; k++) {
				struct uzs_pte *p = &w.pte[k];
				int rc;

				if (p->state == UZS_PTE_NONE)
					continue;
				if (deadline && ++since_look == 64) {
					since_look = 0;
					if (uzs_now_ns() > deadline)
						return;
				}
				/* Write-tracked, so it still looks as cold as
				 * it is. */
				while ((rc = uzs_fault_restore(e, w.addr +
						(k << UZS_PAGE_SHIFT),
						UZS_RESTORE_THAW)) == -EAGAIN) {
					pthread_mutex_unlock(&e->lock);
					usleep(20);
					pthread_mutex_lock(&e->lock);
					/* Nodes are never freed: p stays valid. */
				}
				if (rc == 0) {
					p->flags &= (uint8_t)~UZS_PTE_REFAULTED;
					p->protect = 0;
					p->age = 255;
					e->st.fork_thaws++;
				}
			}
		}
	}
}

/*
 * Before a core dump: the kernel dumps a page that is not there as zeros
 * (it does not fault pages in for a dump), so every page we hold is put
 * back first, and none is taken out again.  Called from a fatal signal's
 * handler, on the thread that took it, while the program's other threads
 * still run: so for at most DUMP_THAW_NS, after which the dump goes ahead
 * with what is back (in 2 s, 102k pages of 131k here: 400 MiB).  A thread that died
 * holding the lock (in a fork hook) must not stop the dump either: after
 * two seconds without it, the same.
 */
#define DUMP_THAW_NS (2000u * 1000000u)

void uzs_engine_thaw_for_dump(struct uzs_engine *e)
{
	struct timespec ms = { 0, 1000000 };
	uint64_t deadline = uzs_now_ns() + DUMP_THAW_NS;
	unsigned tries = 0;

	while (pthread_mutex_trylock(&e->lock) != 0) {
		if (++tries > 2000)
			return;
		nanosleep(&ms, NULL);
	}
	e->takeouts_stopped = true;
	thaw_all(e, deadline);
	pthread_mutex_unlock(&e->lock);
}

void uzs_engine_fork_prepare(struct uzs_engine *e)
{
	pthread_mutex_lock(&e->lock);
	e->forking = true;
	thaw_all(e, 0);
}

void uzs_engine_fork_parent(struct uzs_engine *e)
{
	e->forking = false;
	pthread_mutex_unlock(&e->lock);
}

void uzs_engine_fork_child(struct uzs_engine *e)
{
	/* The child has no engine threads, and its registration is gone.
	 * Drop the parent's descriptors; the shim starts a new engine. */
	uzs_uffd_close(&e->app);
	uzs_uffd_close(&e->stage);
	close_proc_files(e);
	uzs_fd_close(e->kick_fd);
	uzs_fd_close(e->stop_fd);
	uzs_fd_close(e->stats_fd);
	if (e->shm)
		uzs_stats_shm_destroy(e->shm);
	/* Nothing is in the file now (thawed); the parent keeps using it. */
	if (e->backing)
		uzs_backing_close(e->backing);
	e->forking = false;
	pthread_mutex_unlock(&e->lock);
}
