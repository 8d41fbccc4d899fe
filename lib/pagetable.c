/*
 * pagetable.c - the radix tree behind pagetable.h.
 */
#include "config.h"

#include <errno.h>
#include <sys/mman.h>

#include "mmap_region.h"
#include "pagetable.h"
#include "uzswap.h"

#define LEVEL_BITS 12u
#define LEVEL_SIZE (1u << LEVEL_BITS)
#define LEVEL_MASK (LEVEL_SIZE - 1)
#define PAGE_SHIFT 12u
/* Node arena: enough for the leaves of 1 TiB of managed memory (64 GiB of
 * address space reserved NORESERVE; only touched pages cost anything). */
#define ARENA_BYTES ((size_t)1 << 36)

struct pt_leaf {
	struct uzs_pte e[LEVEL_SIZE];
};

struct pt_mid {
	struct pt_leaf *leaf[LEVEL_SIZE];
};

struct uzs_pagetable {
	struct pt_mid *mid[LEVEL_SIZE];
	unsigned char *arena;
	size_t arena_used;
};

int uzs_pt_create(struct uzs_pagetable **out)
{
	struct uzs_pagetable *pt = uzs_region_reserve(sizeof(*pt));

	if (!pt)
		return -ENOMEM;
	pt->arena = uzs_region_reserve(ARENA_BYTES);
	if (!pt->arena) {
		uzs_region_unreserve(pt, sizeof(*pt));
		return -ENOMEM;
	}
	/* A fork child starts an engine, and a table, of its own: without
	 * this it would carry 64 GiB more of address space than it uses. */
	madvise(pt->arena, ARENA_BYTES, MADV_DONTFORK);
	*out = pt;
	return 0;
}

void uzs_pt_destroy(struct uzs_pagetable *pt)
{
	if (!pt)
		return;
	uzs_region_unreserve(pt->arena, ARENA_BYTES);
	uzs_region_unreserve(pt, sizeof(*pt));
}

/* Nodes are zero-filled fresh pages of the arena: all entries NONE. */
static void *node_alloc(struct uzs_pagetable *pt, size_t size)
{
	void *p;

	if (pt->arena_used + size > ARENA_BYTES)
		return NULL;
	p = pt->arena + pt->arena_used;
	pt->arena_used += size;
	return p;
}

struct uzs_pte *uzs_pt_run(struct uzs_pagetable *pt, uintptr_t addr,
			   bool alloc, size_t *run)
{
	uint64_t vpn = (uint64_t)addr >> PAGE_SHIFT;
	unsigned top = (unsigned)(vpn >> (2 * LEVEL_BITS)) & LEVEL_MASK;
	unsigned mid = (unsigned)(vpn >> LEVEL_BITS) & LEVEL_MASK;
	unsigned idx = (unsigned)vpn & LEVEL_MASK;
	struct pt_mid *m = pt->mid[top];
	struct pt_leaf *l;

	*run = LEVEL_SIZE - idx;
	if (!m) {
		if (!alloc)
			return NULL;
		m = pt->mid[top] = node_alloc(pt, sizeof(*m));
		if (!m)
			return NULL;
	}
	l = m->leaf[mid];
	if (!l) {
		if (!alloc)
			return NULL;
		l = m->leaf[mid] = node_alloc(pt, sizeof(*l));
		if (!l)
			return NULL;
	}
	return &l->e[idx];
}

size_t uzs_pt_bytes(const struct uzs_pagetable *pt)
{
	return sizeof(*pt) + pt->arena_used;
}
