/*
 * mmap_region.h - address-space reservations for the library's own memory.
 *
 * Everything libuzswap keeps (pool pages, handle tables, codec buffers) lives
 * in anonymous mappings it reserves itself, never in the C heap: the shim's
 * fault-service threads must not touch memory that an application's allocator
 * owns or that could be missing.  A reservation is PROT_READ|PROT_WRITE and
 * MAP_NORESERVE, so only the pages actually touched cost memory.
 */
#ifndef UZS_MMAP_REGION_H
#define UZS_MMAP_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What /proc/self/maps calls our mappings: "[anon:" UZS_REGION_NAME "]". */
#define UZS_REGION_NAME "uzswap"

/* Reserve len bytes (rounded up to pages); NULL on failure. */
void *uzs_region_reserve(size_t len);
void uzs_region_unreserve(void *addr, size_t len);

/* Give the pages back to the OS; the range stays reserved and reads as zero. */
void uzs_region_discard(void *addr, size_t len);

/* The same for n page-aligned ranges at once, with one TLB flush where the
 * kernel can (process_madvise); ranges are whole pages. */
struct iovec;
void uzs_region_discard_many(const struct iovec *v, unsigned n);

/* Address space our reservations take, in bytes: all of it (what
 * RLIMIT_AS counts), or only the read-write part (what RLIMIT_DATA
 * counts). */
size_t uzs_region_reserved_bytes(bool writable);

/* The program has asked (on) or stopped asking (off) for every new mapping
 * to be locked (mlockall MCL_FUTURE): reservations must unlock themselves. */
void uzs_region_lock_future(bool on);

/*
 * The first of our reservations overlapping [start, end): returns its end
 * and stores its start, or returns 0 if none overlaps.
 */
uintptr_t uzs_region_own_overlap(uintptr_t start, uintptr_t end,
				 uintptr_t *own_start);

#endif
