/*
 * backing.h - the backing file that evicted pool pages go to.  Internal to
 * the library (not installed); see backing.c for the design.
 *
 * The engine evicts a pool page (zspage) whole: it reads the page's objects
 * out of the pool, hands them to uzs_backing_write_batch() in one call, keeps
 * the 64-bit location it gets back for each object in the page-table entry,
 * and frees the objects from the pool.  A fault on such a page reads the
 * object back with uzs_backing_read() and then uzs_backing_free()s it.
 *
 * Threads: every call except open and close may run concurrently with every
 * other, from any thread.  Writes (and trim) are serialized among themselves;
 * reads and frees never wait for a write's I/O.  The caller must not free a
 * location while it, or another thread, still reads it.  Nothing here calls
 * malloc or stdio, or takes a lock other than the backing's own two mutexes,
 * so it is safe on the shim's service threads.
 *
 * Signals: a write that meets RLIMIT_FSIZE makes the kernel send SIGXFSZ to
 * the writing thread, whose default action kills the process.  Call
 * uzs_backing_write_batch() only from a thread that blocks SIGXFSZ (the
 * engine's threads block every signal) or with SIGXFSZ ignored; the write
 * then fails with -EFBIG and nothing is lost.
 */
#ifndef UZS_BACKING_H
#define UZS_BACKING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The file is an array of blocks of this size: the unit of reuse and of
 * giving space back (hole punching). */
#define UZS_BACKING_BLOCK 4096u

/* Objects are 1..UZS_BACKING_OBJ_MAX bytes (one compressed page at most). */
#define UZS_BACKING_OBJ_MAX 4096u

/* One write: at most this many objects of at most this many bytes in all.
 * An evicted zspage (UZS_POOL_MAX_ZSPAGE_OBJS objects, 8 KiB) always fits. */
#define UZS_BACKING_BATCH_MAX_OBJS 256u
#define UZS_BACKING_BATCH_MAX_BYTES (32u << 10)

/* The location format addresses 2^31 blocks: the file is at most 8 TiB. */
#define UZS_BACKING_MAX_BLOCKS (1ull << 31)
#define UZS_BACKING_MAX_BYTES (UZS_BACKING_MAX_BLOCKS * UZS_BACKING_BLOCK)

/* Objects that start in one block, at most (index is 6 bits wide). */
#define UZS_BACKING_BLOCK_OBJS 64u

/*
 * Where one object lives.  It starts at byte offset of block, preceded there
 * by a 4-byte checksum, and runs on (if it does not fit) into the next blocks
 * of its write; index numbers the objects that start in that block, so that
 * each can be known live or freed.
 *
 * The 64-bit encoding, for a page-table entry:
 *
 *   63   62..61  60..30   29..24  23..12   11..0
 *   1    0 0     block    index   offset   len - 1
 *
 * Bit 63 is always set, so 0 (and any small integer) is never a location;
 * decoding refuses a word whose bit 63 is clear or whose bits 62..61 are set.
 */
struct uzs_backing_loc {
	uint32_t block;             /* < UZS_BACKING_MAX_BLOCKS */
	uint16_t offset;            /* < UZS_BACKING_BLOCK */
	uint16_t len;               /* 1..UZS_BACKING_OBJ_MAX */
	uint8_t index;              /* < UZS_BACKING_BLOCK_OBJS */
};

/* 0 if a field is out of range (0 is never a valid location). */
uint64_t uzs_backing_loc_encode(const struct uzs_backing_loc *loc);
/* 0, or -EINVAL if v is not a well-formed location (loc is then untouched). */
int uzs_backing_loc_decode(uint64_t v, struct uzs_backing_loc *loc);

/* The object length a well-formed location records (no I/O, no lock). */
static inline uint32_t uzs_backing_loc_len(uint64_t v)
{
	return (uint32_t)(v & 0xfff) + 1;
}

struct uzs_backing;

enum uzs_backing_flags {
	/* Tests only: skip O_TMPFILE and take the create-then-unlink path. */
	UZS_BACKING_NO_TMPFILE = 1u << 0,
};

struct uzs_backing_config {
	/*
	 * NULL or "": an unlinked file in $TMPDIR, else /tmp.
	 * An existing directory: an unlinked file in it.
	 * Anything else: a new file of that name, created (O_EXCL, so an
	 * existing file is never touched: -EEXIST) and unlinked at once.
	 * In every case the file has mode 0600 and no name while it is used,
	 * so it is private to the process and gone when the process exits.
	 */
	const char *path;
	uint64_t max_bytes;         /* cap on the file's size: past it writes
				     * fail with -ENOSPC; 0 = UZS_BACKING_MAX_BYTES */
	unsigned flags;             /* enum uzs_backing_flags */
};

/*
 * Create the file and the (mmap'd) state.  Returns 0, or -errno with one
 * line in err (no newline) naming the file and the reason.  config may be
 * NULL for the defaults.  Reads $TMPDIR; call it at setup, not on a
 * service thread's hot path.
 */
int uzs_backing_open(const struct uzs_backing_config *config,
		     struct uzs_backing **out, char *err, size_t errlen);

/*
 * Close the file and unmap the state.  Takes no lock and punches nothing:
 * the caller makes sure no other call is running.  Safe in a fork child
 * (whose copy of the state may have been taken with a mutex held), where it
 * drops the inherited descriptor without touching the parent's data.
 */
void uzs_backing_close(struct uzs_backing *b);

struct uzs_backing_obj {
	const void *data;
	size_t len;                 /* 1..UZS_BACKING_OBJ_MAX */
};

/*
 * Write n objects (1..UZS_BACKING_BATCH_MAX_OBJS, at most
 * UZS_BACKING_BATCH_MAX_BYTES together) and store the location of objs[i]
 * in locs[i].  Returns 0, or -errno with nothing recorded and locs untouched:
 *   -EINVAL  a bad count, length or pointer;
 *   -ENOSPC  the file system is full, or the file reached max_bytes;
 *   -EFBIG   RLIMIT_FSIZE (see the note on SIGXFSZ above);
 *   -EIO     and any other error of pwrite;
 *   -ENOMEM  no memory for the block table.
 * Usually one pwrite; never more than one per run of consecutive blocks.
 */
int uzs_backing_write_batch(struct uzs_backing *b,
			    const struct uzs_backing_obj *objs, unsigned n,
			    uint64_t *locs);

/*
 * Read the object at loc into dst.  Returns its length, or -errno:
 *   -EINVAL   loc is malformed or names no block of the file, or dstlen is
 *             smaller than the object;
 *   -ENOENT   loc is well formed but its object is not live (freed);
 *   -EIO      the read failed or came back short;
 *   -EBADMSG  the bytes read do not match the object's checksum (a
 *             corrupted, punched or misdirected block).
 * dst may have been written even on failure: never use it then.
 */
long uzs_backing_read(struct uzs_backing *b, uint64_t loc, void *dst,
		      size_t dstlen);

/*
 * Free an object.  Returns 0, -EINVAL (malformed) or -ENOENT (not live: a
 * double free is caught, not counted twice).  A freed location stays dead
 * until its block is reused: a later write may then hand out the very same
 * location for a new object, so the caller must forget it once freed.  Bookkeeping only, no system
 * call: a block whose objects are all freed is reused by later writes, and
 * its space is given back (punched) by a later write once more than a few
 * blocks are free, or by uzs_backing_trim().
 */
int uzs_backing_free(struct uzs_backing *b, uint64_t loc);

/*
 * Give back the space of every free block (hole punching) and truncate the
 * free blocks at the end of the file.  Returns the number of blocks given
 * back, or -errno from fallocate (-EOPNOTSUPP is not an error: a file
 * system that cannot punch holes only reuses blocks).  Waits for a write in
 * progress; meant for the reclaim thread's idle ticks.
 */
long uzs_backing_trim(struct uzs_backing *b);

struct uzs_backing_stats {
	uint64_t objects;           /* live objects */
	uint64_t object_bytes;      /* sum of their lengths */
	uint64_t blocks_used;       /* blocks holding a live object (or open
				     * for the next write) */
	uint64_t blocks_free;       /* free blocks inside the file */
	uint64_t blocks_unpunched;  /* free blocks still holding disk space */
	uint64_t file_bytes;        /* the file's size */
	uint64_t writes;            /* successful write_batch calls */
	uint64_t objects_written;
	uint64_t bytes_written;     /* object bytes */
	uint64_t file_bytes_written;/* including checksums and padding */
	uint64_t reads;             /* successful reads */
	uint64_t bytes_read;
	uint64_t frees;
	uint64_t blocks_punched;    /* blocks whose space was given back */
	uint64_t blocks_truncated;  /* blocks cut off the end of the file */
	uint64_t write_errors;      /* failed write_batch calls (I/O) */
	uint64_t read_errors;       /* -EIO reads */
	uint64_t checksum_errors;   /* -EBADMSG reads */
	int last_write_error;       /* errno of the last failed write, or 0 */
	bool punch_supported;       /* false once fallocate said EOPNOTSUPP */
	bool on_tmpfs;              /* the file is in memory (tmpfs): evicting
				     * to it frees no RAM unless there is swap */
};

void uzs_backing_stats(struct uzs_backing *b, struct uzs_backing_stats *out);

/* The file descriptor, for tests and diagnostics (fstat); do not do I/O. */
int uzs_backing_fd(const struct uzs_backing *b);

#endif
