/*
 * mmap_region.c - reserve, discard and unreserve the library's own mappings.
 */
#include "config.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mmap_region.h"
#include "uzswap.h"

/*
 * Every reservation is also recorded here, because the [anon:uzswap] name
 * needs CONFIG_ANON_VMA_NAME, which not every kernel has.  The table is
 * static (this library's .bss, which the engine never manages) and
 * append-mostly: slots are claimed with a compare-and-swap and cleared on
 * unreserve, so readers need no lock and see at worst a stale entry, which
 * only makes them skip a range they could have managed.
 */
#define OWN_MAX 4096u

static struct own_range {
	uintptr_t start, end;   /* end == 0: free slot */
} own_ranges[OWN_MAX];

/* Slots at or past this were never used: readers stop there.  The table
 * is read for every line of /proc/self/maps at every scan, and holds a
 * few dozen ranges, not 4096.  Raised before a slot is claimed, so a
 * reader that can see the slot scans far enough. */
static unsigned own_used;

static void own_cover(unsigned n)
{
	unsigned cur = __atomic_load_n(&own_used, __ATOMIC_RELAXED);

	while (cur < n && !__atomic_compare_exchange_n(&own_used, &cur, n, false,
						       __ATOMIC_RELEASE,
						       __ATOMIC_RELAXED))
		;
}

static unsigned own_scan_limit(void)
{
	return __atomic_load_n(&own_used, __ATOMIC_ACQUIRE);
}

static void own_add(uintptr_t start, uintptr_t end)
{
	for (unsigned i = 0; i < OWN_MAX; i++) {
		uintptr_t zero = 0;

		if (__atomic_load_n(&own_ranges[i].end, __ATOMIC_RELAXED))
			continue;
		own_cover(i + 1);
		if (__atomic_compare_exchange_n(&own_ranges[i].end, &zero, end,
						false, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED)) {
			__atomic_store_n(&own_ranges[i].start, start,
					 __ATOMIC_RELEASE);
			return;
		}
	}
	/* Full: the [anon:uzswap] name (where supported) still protects it. */
}

static void own_remove(uintptr_t start)
{
	for (unsigned i = 0, n = own_scan_limit(); i < n; i++) {
		if (__atomic_load_n(&own_ranges[i].start, __ATOMIC_ACQUIRE) == start &&
		    __atomic_load_n(&own_ranges[i].end, __ATOMIC_ACQUIRE)) {
			__atomic_store_n(&own_ranges[i].start, 0, __ATOMIC_RELEASE);
			__atomic_store_n(&own_ranges[i].end, 0, __ATOMIC_RELEASE);
			return;
		}
	}
}

uintptr_t uzs_region_own_overlap(uintptr_t start, uintptr_t end,
				 uintptr_t *own_start)
{
	uintptr_t best = 0, best_end = 0;

	/* The lowest own range overlapping [start, end), if any. */
	for (unsigned i = 0, n = own_scan_limit(); i < n; i++) {
		uintptr_t e = __atomic_load_n(&own_ranges[i].end, __ATOMIC_ACQUIRE);
		uintptr_t s = __atomic_load_n(&own_ranges[i].start, __ATOMIC_ACQUIRE);

		if (!e || e <= start || s >= end)
			continue;
		if (!best_end || s < best) {
			best = s;
			best_end = e;
		}
	}
	*own_start = best;
	return best_end;
}

static size_t page_round(size_t len)
{
	return (len + UZS_PAGE_SIZE - 1) & ~(size_t)(UZS_PAGE_SIZE - 1);
}

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

/*
 * Small reservations come from one span of address space reserved (PROT_NONE,
 * no memory) the first time one is asked for.  Without it, the kernel would
 * put a mapping we make while the program runs (a table growing on the
 * fault path) into the first hole it finds: very often the range the
 * program has just unmapped and may be about to map again at the same
 * address with MAP_FIXED_NOREPLACE, or hint at.  Large reservations (the
 * pool's arena) are made at startup and go straight to mmap.  Space is
 * handed out by a lock-free bump pointer; the last reservation given back
 * returns to it, any other is made PROT_NONE again and its addresses are
 * not reused.
 * If the span cannot be had (RLIMIT_AS) or is used up, mmap decides.
 */
#define SPAN_BYTES ((size_t)4 << 30)
#define SPAN_MAX_REQUEST ((size_t)256 << 20)

static pthread_once_t span_once = PTHREAD_ONCE_INIT;
static uintptr_t span_start, span_end;
/* Bump pointer, moved by compare-and-swap: no lock, so a fork that lands
 * while another thread reserves cannot leave the child one held forever. */
static uintptr_t span_next;

static void span_init(void)
{
	void *p = mmap(NULL, SPAN_BYTES, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return;
	madvise(p, SPAN_BYTES, MADV_DONTDUMP);
	span_start = span_next = (uintptr_t)p;
	span_end = span_start + SPAN_BYTES;
	own_add(span_start, span_end);
}

/* An address in the span for len bytes, or 0. */
static uintptr_t span_take(size_t len)
{
	uintptr_t a = 0;

	if (len > SPAN_MAX_REQUEST)
		return 0;
	pthread_once(&span_once, span_init);
	if (!span_start)
		return 0;
	a = __atomic_load_n(&span_next, __ATOMIC_ACQUIRE);
	do {
		if (span_end - a < len)
			return 0;
	} while (!__atomic_compare_exchange_n(&span_next, &a, a + len, false,
					      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
	return a;
}

static bool in_span(uintptr_t a)
{
	return span_start && a >= span_start && a < span_end;
}

/*
 * Our memory is touched a page at a time and given back a page at a time
 * (the pool's pages, the tables): with transparent huge pages "always",
 * the kernel would fault in, or khugepaged collapse, 2 MiB where we use
 * 4 KiB, and the process would hold megabytes it never asked for.  Our
 * mappings also merge into one another (their name needs a kernel option),
 * which makes 2 MiB ranges for it to find.  So every one is opted out.
 */
static void no_huge_pages(void *p, size_t len)
{
	madvise(p, len, MADV_NOHUGEPAGE);
}

/*
 * Not in core dumps: a dump holds the program's memory, and ours is
 * hundreds of gigabytes of reserved address space (a 208 GB sparse core
 * for an 8 MiB program, which tools reading it choke on) and compressed
 * copies no debugger can read.  The pages we hold are put back before a
 * dump instead (preload/core_guard.c).
 */
static void not_dumped(void *p, size_t len)
{
	madvise(p, len, MADV_DONTDUMP);
}

static void name_range(void *p, size_t len)
{
	/* The name shows in /proc/self/maps as [anon:uzswap]: the engine's
	 * scan skips it, and it keeps the kernel from merging our mappings
	 * with the application's.  Kernels before 5.17 refuse; harmless. */
	prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)p, len,
	      (unsigned long)UZS_REGION_NAME);
}

/*
 * After the program's mlockall(MCL_FUTURE), every new mapping is born
 * locked, and a locked read-write mapping is populated whole at mmap: one
 * reservation would cost its full size at once, and could never be
 * discarded (MADV_DONTNEED refuses locked pages).  So while that is on
 * (preload/mlock_guard.c says so), a reservation is made PROT_NONE, which
 * is not populated, unlocked, and only then made read-write.  One made
 * read-write just as the program asked is unlocked and emptied: nothing
 * is in it yet.
 */
static bool locking_future;

void uzs_region_lock_future(bool on)
{
	__atomic_store_n(&locking_future, on, __ATOMIC_SEQ_CST);
}

static bool future_locked(void)
{
	return __atomic_load_n(&locking_future, __ATOMIC_SEQ_CST);
}

/* Map [a, a+rlen) (anywhere if a is 0), read-write and unlocked. */
static void *map_unlocked(uintptr_t a, size_t rlen)
{
	int prot = future_locked() ? PROT_NONE : PROT_READ | PROT_WRITE;
	void *p = mmap((void *)a, rlen, prot, MAP_PRIVATE | MAP_ANONYMOUS |
		       MAP_NORESERVE | (a ? MAP_FIXED : 0), -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	if (prot == PROT_NONE) {
		munlock(p, rlen);
		if (mprotect(p, rlen, PROT_READ | PROT_WRITE) != 0) {
			if (!a)
				munmap(p, rlen);
			return NULL;
		}
	} else if (future_locked()) {
		munlock(p, rlen);
		madvise(p, rlen, MADV_DONTNEED);
	}
	return p;
}

void *uzs_region_reserve(size_t len)
{
	size_t rlen = page_round(len);
	uintptr_t a = span_take(rlen);
	void *p;

	if (a) {
		p = map_unlocked(a, rlen);
		if (p) {
			no_huge_pages(p, rlen);
			not_dumped(p, rlen);
			name_range(p, rlen);
			return p;
		}
	}
	p = map_unlocked(0, rlen);
	if (!p)
		return NULL;
	own_add((uintptr_t)p, (uintptr_t)p + rlen);
	no_huge_pages(p, rlen);
	not_dumped(p, rlen);
	name_range(p, rlen);
	return p;
}

void uzs_region_unreserve(void *addr, size_t len)
{
	size_t rlen = page_round(len);
	uintptr_t a = (uintptr_t)addr;

	if (!addr)
		return;
	if (!in_span(a)) {
		own_remove(a);
		munmap(addr, rlen);
		return;
	}
	/* Back to a reservation: the span stays whole. */
	mmap(addr, rlen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS |
	     MAP_NORESERVE | MAP_FIXED, -1, 0);
	not_dumped(addr, rlen);
	{
		uintptr_t top = a + rlen;

		/* Only the last one handed out goes back to the pointer. */
		__atomic_compare_exchange_n(&span_next, &top, a, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
	}
}

void uzs_region_discard(void *addr, size_t len)
{
	/* DONTNEED, not FREE: the pool promises RSS falls at once. */
	madvise(addr, page_round(len), MADV_DONTNEED);
}

/*
 * Many discards, one TLB flush.  Each madvise(MADV_DONTNEED) flushes the
 * TLB of every CPU running the process, and on this VM the IPIs made one
 * page's discard cost 62 us while another thread of the process ran; a
 * process_madvise() over 64 ranges cost 3.9 us a range (Linux 6.13 lets a
 * process advise itself anything, 6.16 flushes once per call).  The
 * process names itself by PIDFD_SELF (6.15).  Before that, one madvise
 * per range: a pidfd opened for the call would be an open on an engine
 * thread, which can take a descriptor number a program thread is about to
 * expect (engine_internal.h, maps_fd), and one opened at start would name
 * the parent after a fork.
 */
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#define UZS_PIDFD_SELF_PROCESS (-10001)

static int vectored_discard = 1;        /* 0: known not to work here */

static long self_madvise(int pidfd, const struct iovec *v, unsigned n)
{
	return syscall(SYS_process_madvise, pidfd, v, (size_t)n, MADV_DONTNEED, 0u);
}

void uzs_region_discard_many(const struct iovec *v, unsigned n)
{
	size_t total = 0;
	long done = -1;

	for (unsigned i = 0; i < n; i++)
		total += v[i].iov_len;
	if (n > 1 && __atomic_load_n(&vectored_discard, __ATOMIC_RELAXED)) {
		done = self_madvise(UZS_PIDFD_SELF_PROCESS, v, n);
		if (done < 0 && (errno == ENOSYS || errno == EINVAL ||
				 errno == EPERM || errno == EBADF))
			__atomic_store_n(&vectored_discard, 0, __ATOMIC_RELAXED);
	}
	if (done == (long)total)
		return;
	/* Not done, or in part: DONTNEED twice is harmless. */
	for (unsigned i = 0; i < n; i++)
		madvise(v[i].iov_base, v[i].iov_len, MADV_DONTNEED);
}

size_t uzs_region_reserved_bytes(bool writable)
{
	size_t total = 0, unused = 0;

	/* The span is one of the ranges, whole: what it hands out is in it. */
	for (unsigned i = 0, n = own_scan_limit(); i < n; i++) {
		uintptr_t e = __atomic_load_n(&own_ranges[i].end, __ATOMIC_ACQUIRE);
		uintptr_t s = __atomic_load_n(&own_ranges[i].start, __ATOMIC_ACQUIRE);

		if (e > s)
			total += e - s;
	}
	/* Of the span, only what it has handed out is read-write. */
	if (writable && span_start)
		unused = span_end - __atomic_load_n(&span_next, __ATOMIC_ACQUIRE);
	return total > unused ? total - unused : 0;
}
