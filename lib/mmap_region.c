/*
 * mmap_region.c - reserve, discard and unreserve the library's own mappings.
 */
#include "config.h"

#include <sys/mman.h>

#include "mmap_region.h"
#include "uzswap.h"

static size_t page_round(size_t len)
{
	return (len + UZS_PAGE_SIZE - 1) & ~(size_t)(UZS_PAGE_SIZE - 1);
}

void *uzs_region_reserve(size_t len)
{
	void *p = mmap(NULL, page_round(len), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void uzs_region_unreserve(void *addr, size_t len)
{
	if (addr)
		munmap(addr, page_round(len));
}

void uzs_region_discard(void *addr, size_t len)
{
	/* DONTNEED, not FREE: the pool promises RSS falls at once. */
	madvise(addr, page_round(len), MADV_DONTNEED);
}
