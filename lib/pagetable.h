/*
 * pagetable.h - uzswap's record of every page it manages, by virtual address.
 *
 * A three-level radix tree over virtual page numbers, shaped like the MMU's
 * own: 12 + 12 + 12 bits of VPN (48-bit addresses), leaves of 4096 entries
 * (64 KiB, covering 16 MiB).  Nodes come from a reserved arena of the
 * engine's own and are never freed, so a pointer to an entry stays valid;
 * every access happens under the engine lock.
 */
#ifndef UZS_PAGETABLE_H
#define UZS_PAGETABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum uzs_pte_state {
	UZS_PTE_NONE = 0,   /* not taken out: resident, or never touched */
	UZS_PTE_ZERO,       /* taken out; reads as zeros */
	UZS_PTE_SAME,       /* taken out; val is the repeated word */
	UZS_PTE_STORED,     /* taken out; val is the pool handle */
	UZS_PTE_STAGED,     /* moved to staging slot val, not yet stored */
	UZS_PTE_BACKED,     /* evicted from the pool; val is the backing
			     * file location (backing.h) */
};

enum uzs_pte_flags {
	UZS_PTE_REFAULTED = 1u << 0,    /* came back by a fault: proven in use */
	UZS_PTE_INCOMPRESSIBLE = 1u << 1, /* not worth compressing until written */
	UZS_PTE_UNMOVABLE = 1u << 2,    /* MOVE refused it (pinned): skip it */
	UZS_PTE_PRESENT = 1u << 3,      /* resident at the last scan */
	UZS_PTE_WRITEBACK = 1u << 4,    /* STORED, its object being written to
					 * the backing file (evict.c) */
	UZS_PTE_REMOVING = 1u << 5,     /* in a DONTNEED range the kernel may
					 * not have zapped yet (fault.c) */
};

struct uzs_pte {
	uint64_t val;
	uint8_t state;
	uint8_t age;        /* scans since last known use, saturating */
	uint8_t flags;
	uint8_t protect;    /* scans of protection left after a refault */
	uint8_t refaults;   /* times it came back by a fault, saturating */
	uint8_t pool;       /* ZERO, SAME, STORED, BACKED: the pool of the NUMA
			     * node the page was on (pools.c), which holds a
			     * STORED page's object and whose node the page is
			     * restored on */
	uint8_t pad[2];
};

struct uzs_pagetable;

int uzs_pt_create(struct uzs_pagetable **out);
void uzs_pt_destroy(struct uzs_pagetable *pt);

/*
 * The entry for addr and the run of entries after it in the same leaf:
 * *run is how many entries (>= 1) may be accessed from the returned pointer.
 * Without alloc, a missing leaf returns NULL with *run set to the number of
 * pages up to the next leaf, so callers can skip empty space quickly.
 */
struct uzs_pte *uzs_pt_run(struct uzs_pagetable *pt, uintptr_t addr,
			   bool alloc, size_t *run);

static inline struct uzs_pte *uzs_pt_lookup(struct uzs_pagetable *pt,
					    uintptr_t addr)
{
	size_t run;

	return uzs_pt_run(pt, addr, false, &run);
}

/*
 * Walk the entries of [start, end) one leaf run at a time:
 *
 *	struct uzs_pt_walk w = uzs_pt_walk_start(start, end);
 *
 *	while (uzs_pt_walk_next(pt, &w, false))
 *		for (size_t k = 0; w.pte && k < w.n; k++)
 *			use(&w.pte[k], w.addr + (k << 12));
 *
 * w.pte is NULL over a leaf that does not exist (without alloc), so empty
 * address space is skipped a leaf (16 MiB) at a time.
 */
struct uzs_pt_walk {
	uintptr_t addr;         /* address of w.pte[0] */
	uintptr_t next, end;
	struct uzs_pte *pte;
	size_t n;               /* entries in this run */
};

static inline struct uzs_pt_walk uzs_pt_walk_start(uintptr_t start,
						   uintptr_t end)
{
	return (struct uzs_pt_walk){ .next = start, .end = end };
}

static inline bool uzs_pt_walk_next(struct uzs_pagetable *pt,
				    struct uzs_pt_walk *w, bool alloc)
{
	size_t left;

	if (w->next >= w->end)
		return false;
	w->addr = w->next;
	w->pte = uzs_pt_run(pt, w->addr, alloc, &w->n);
	left = (w->end - w->addr) >> 12;
	if (w->n > left)
		w->n = left;
	w->next = w->addr + (w->n << 12);
	return true;
}

/* Memory the table itself holds. */
size_t uzs_pt_bytes(const struct uzs_pagetable *pt);

#endif
