/*
 * stats_shm.h - the live counters of a process under uzswap, published in a
 * page of shared memory that `uzswap stat PID` maps read-only.
 *
 * The page is a memfd named UZS_STATS_SHM_NAME, which the process keeps
 * open: a reader finds it among /proc/PID/fd, which the kernel lets only the
 * same user (or root) look at, so the counters are as private as the
 * process's memory is.
 *
 * Publication is a seqlock.  The one writer makes seq odd, copies a whole
 * snapshot in, and makes seq even again; a reader copies the snapshot out
 * between two reads of seq and keeps it only if both were the same even
 * value.  The writer never waits for readers and readers never write, so a
 * slow or stopped reader cannot hold up the engine.
 */
#ifndef UZS_STATS_SHM_H
#define UZS_STATS_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine.h"

/* As readlink(/proc/PID/fd/N) shows it: "/memfd:uzswap-stats (deleted)". */
#define UZS_STATS_SHM_NAME "uzswap-stats"

/*
 * The shared page.  The header is fixed for good; what follows it is
 * described by stats.magic, .version and .size, which a reader checks.
 */
struct uzs_stats_shm {
	uint64_t seq;               /* odd while the writer is copying */
	uint32_t pid;               /* the writer's getpid() when created */
	int32_t fd;                 /* the writer's memfd (its own fd number) */
	struct uzs_engine_stats stats;
};

/*
 * Make a zeroed page (a valid all-zero snapshot) and return it mapped
 * read-write.  Returns 0 or -errno.  The memfd stays open, close-on-exec,
 * for readers to find.  A forked child shares the page and the fd with its
 * parent: it must uzs_stats_shm_destroy its copy and create its own before
 * publishing anything.
 */
int uzs_stats_shm_create(struct uzs_stats_shm **out);

/* Unmap the page and close its memfd (in this process only). */
void uzs_stats_shm_destroy(struct uzs_stats_shm *shm);

/*
 * Copy a snapshot into the page (magic, version and size are stamped in).
 * Calls must not overlap: the engine publishes from one thread at a time.
 * Takes a few microseconds, and never blocks or allocates.
 */
void uzs_stats_shm_publish(struct uzs_stats_shm *shm,
			   const struct uzs_engine_stats *s);

/*
 * Read the live counters of process pid (which may be our own).  Returns 0,
 * or -errno with one line (no newline, starting "uzswap: ") in err:
 * -ESRCH no such process, -ENOENT not running under uzswap, -EACCES not
 * ours to look at, -EPROTO a stats page of another version, -EBUSY the
 * writer stayed mid-update (stopped?) for the whole time we tried.
 */
int uzs_stats_shm_read(pid_t pid, struct uzs_engine_stats *out,
		       char *err, size_t errlen);

#endif
