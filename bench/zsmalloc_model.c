/*
 * zsmalloc_model.c - an accounting model of the kernel's zsmalloc, for
 * bench/pool_bench (run that; this file has no main).
 *
 * It replays zs_malloc/zs_free/zs_compact decisions object by object and
 * slot by slot, without storing bytes, so that the bench can say how many
 * pages the kernel's allocator would hold for the same trace.  The rules are
 * those of mm/zsmalloc.c in Linux 6.x (checked against a 6.7-6.12 source;
 * patches of the later zpdesc, zs_obj_write and memcg work keep every rule
 * below).  On the real traces the model's fill density (0.9754 python_dict,
 * 0.9734 sqlite_mem) matches what zram measured on this machine (0.9745,
 * 0.9734; see data/zsizes/README.md); without the handle header it would
 * be 0.9789 and 0.9766.
 *
 *  - Classes: ZS_MIN_ALLOC_SIZE 32 (on x86-64 the index-bits term of the
 *    MAX() is 0), step ZS_SIZE_CLASS_DELTA 16, sizes 32..4096: 255 classes.
 *  - zs_malloc adds ZS_HANDLE_SIZE (8) to the length before looking up the
 *    class, unconditionally: a non-huge object keeps its handle in an 8-byte
 *    header in the zspage (obj_malloc: link->handle = handle), a huge one in
 *    the page descriptor, but the class lookup has already counted the 8
 *    bytes.  (The handle header was never removed; only huge pages skip
 *    writing it.)  Lengths 4089..4096 overflow the last class index and are
 *    clamped to it, as get_size_class_index() does.
 *  - pages_per_zspage per class: calculate_zspage_chain_size() - 1 for a
 *    power-of-2 size, else the chain 1..CONFIG_ZSMALLOC_CHAIN_SIZE (8) with
 *    the least tail waste, the first one on a tie: 119 classes after
 *    merging; the largest non-huge class is 3632, so objects of 3625 B and
 *    more (with their header) are huge.  (Kernels before 6.3 chose by integer
 *    "used percentage", with at most 4 pages; that rule at chain 8 gives the
 *    123 classes of Documentation/mm/zsmalloc.rst and densities within
 *    0.0005 of this one on the bench's traces.)
 *  - zs_create_pool() walks classes from the largest down and lets a class
 *    share the previous (larger) one when pages_per_zspage and
 *    objs_per_zspage are both equal: objects then use the larger slot.
 *  - A class with objs_per_zspage == 1 and pages_per_zspage == 1 is huge:
 *    one object per page.
 *  - Fullness groups: 0 (empty), 1..10 for a usage ratio in 0-9%, 10-19%,
 *    ... 90-99% (ratio / 10 + 1), 11 for full.  insert_zspage() puts a zspage
 *    at the head of its group's list; it moves only when its group changes.
 *    zs_malloc takes the head of the fullest non-full group (99% first);
 *    a fresh zspage only when every group is empty.  Within a zspage the free
 *    slots form a LIFO list, initially in slot order.  A zspage is freed the
 *    moment its last object goes (deferred free never delays accounting).
 *  - zs_compact(): classes from the largest down; per class, while
 *    zs_can_compact() (at least one zspage's worth of free slots), take the
 *    destination from the fullest group (99% first) and the source from the
 *    emptiest (10% first), move objects in slot order until the destination
 *    is full or the source empty, free an emptied source, and keep the
 *    destination until it is full.
 *
 * Not modelled: per-CPU map areas, migration of single pages (it keeps the
 * page count), and anything about time.  zsmalloc has no LRU; the bench's
 * eviction takes the oldest zspage by creation order (zsm_evict_oldest).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models.h"

#define ZS_CHAIN_SIZE 8u
#define ZS_HANDLE_SIZE 8u
#define ZS_MIN_ALLOC_SIZE 32u
#define ZS_MAX_ALLOC_SIZE MODEL_PAGE_SIZE
#define ZS_SIZE_CLASS_DELTA 16u
#define ZS_SIZE_CLASSES \
	((ZS_MAX_ALLOC_SIZE - ZS_MIN_ALLOC_SIZE + ZS_SIZE_CLASS_DELTA - 1) / \
	 ZS_SIZE_CLASS_DELTA + 1)

#define FG_EMPTY 0
#define FG_FIRST_PARTIAL 1      /* ZS_INUSE_RATIO_10 */
#define FG_LAST_PARTIAL 10      /* ZS_INUSE_RATIO_99 */
#define FG_FULL 11              /* ZS_INUSE_RATIO_100 */
#define NR_FG 12

#define NONE (-1)

struct zs_geom {
	uint32_t size;          /* slot size */
	uint32_t pages;         /* pages_per_zspage */
	uint32_t objs;          /* objs_per_zspage */
	uint32_t rep;           /* index of the class this one merged into */
};

/* The class table depends on nothing but the constants: built once. */
static struct zs_geom geom[ZS_SIZE_CLASSES];
static bool geom_ready;

struct zs_class {
	int32_t head[NR_FG];    /* fullness lists */
	uint64_t allocated;     /* ZS_OBJS_ALLOCATED: zspages * objs */
	uint64_t used;          /* ZS_OBJS_INUSE */
};

struct zs_zspage {
	int32_t cls;            /* NONE while the record is free */
	uint32_t inuse;
	int32_t fg;
	int32_t prev, next;     /* fullness list; next chains free records */
	int32_t older, newer;   /* creation order */
	uint32_t nfree;         /* entries on the free-slot stack */
	int32_t *slot_obj;      /* object id per slot, NONE if free */
	uint32_t *free_stk;     /* free slots, top = last */
};

struct zs_obj {
	int32_t zspage;         /* NONE if not stored */
	uint32_t slot;
	uint32_t len;
};

struct zsm {
	struct zs_class cls[ZS_SIZE_CLASSES];
	struct zs_zspage *zp;
	uint32_t nzp, capzp;
	int32_t zp_free;
	int32_t oldest, newest;
	struct zs_obj *obj;
	uint32_t max_ids;
	struct zsm_stats st;
};

/* ------------------------------------------------------------ geometry */

static uint32_t chain_size(uint32_t size)
{
	uint32_t best = 1, min_waste = UINT32_MAX;

	if ((size & (size - 1)) == 0)
		return 1;
	for (uint32_t i = 1; i <= ZS_CHAIN_SIZE; i++) {
		uint32_t waste = i * MODEL_PAGE_SIZE % size;

		if (waste < min_waste) {
			min_waste = waste;
			best = i;
		}
	}
	return best;
}

static void geom_init(void)
{
	int prev = -1;

	if (geom_ready)
		return;
	for (int i = ZS_SIZE_CLASSES - 1; i >= 0; i--) {
		uint32_t size = ZS_MIN_ALLOC_SIZE + (uint32_t)i * ZS_SIZE_CLASS_DELTA;
		uint32_t pages, objs;

		if (size > ZS_MAX_ALLOC_SIZE)
			size = ZS_MAX_ALLOC_SIZE;
		pages = chain_size(size);
		objs = pages * MODEL_PAGE_SIZE / size;
		if (prev >= 0 && geom[prev].pages == pages && geom[prev].objs == objs) {
			geom[i] = geom[prev];
			continue;
		}
		geom[i] = (struct zs_geom){ size, pages, objs, (uint32_t)i };
		prev = i;
	}
	geom_ready = true;
}

static uint32_t class_index(uint32_t size)
{
	uint32_t idx = 0;

	if (size > ZS_MIN_ALLOC_SIZE)
		idx = (size - ZS_MIN_ALLOC_SIZE + ZS_SIZE_CLASS_DELTA - 1) /
		      ZS_SIZE_CLASS_DELTA;
	if (idx > ZS_SIZE_CLASSES - 1)
		idx = ZS_SIZE_CLASSES - 1;
	return geom[idx].rep;
}

static bool class_huge(uint32_t c)
{
	return geom[c].objs == 1 && geom[c].pages == 1;
}

uint32_t zsm_huge_threshold(void)
{
	geom_init();
	for (uint32_t len = 1; len <= ZS_MAX_ALLOC_SIZE; len++)
		if (class_huge(class_index(len + ZS_HANDLE_SIZE)))
			return len;
	return ZS_MAX_ALLOC_SIZE + 1;
}

uint32_t zsm_nr_classes(void)
{
	uint32_t n = 0;

	geom_init();
	for (uint32_t i = 0; i < ZS_SIZE_CLASSES; i++)
		n += geom[i].rep == i;
	return n;
}

/* ------------------------------------------------------ fullness lists */

static int fullness(uint32_t c, uint32_t inuse)
{
	if (inuse == 0)
		return FG_EMPTY;
	if (inuse == geom[c].objs)
		return FG_FULL;
	return (int)(100 * inuse / geom[c].objs / 10 + 1);
}

static void fg_insert(struct zsm *m, int32_t z, int fg)
{
	struct zs_zspage *p = &m->zp[z];
	struct zs_class *c = &m->cls[p->cls];

	p->fg = fg;
	p->prev = NONE;
	p->next = c->head[fg];
	if (p->next != NONE)
		m->zp[p->next].prev = z;
	c->head[fg] = z;
}

static void fg_remove(struct zsm *m, int32_t z)
{
	struct zs_zspage *p = &m->zp[z];
	struct zs_class *c = &m->cls[p->cls];

	if (p->prev != NONE)
		m->zp[p->prev].next = p->next;
	else
		c->head[p->fg] = p->next;
	if (p->next != NONE)
		m->zp[p->next].prev = p->prev;
	p->prev = p->next = NONE;
}

static int fix_fullness(struct zsm *m, int32_t z)
{
	struct zs_zspage *p = &m->zp[z];
	int fg = fullness((uint32_t)p->cls, p->inuse);

	if (fg != p->fg) {
		fg_remove(m, z);
		fg_insert(m, z, fg);
	}
	return fg;
}

/* ------------------------------------------------------------ zspages */

static int32_t zspage_new(struct zsm *m, uint32_t c)
{
	uint32_t objs = geom[c].objs;
	struct zs_zspage *p;
	int32_t z;

	if (m->zp_free != NONE) {
		z = m->zp_free;
		m->zp_free = m->zp[z].next;
	} else {
		if (m->nzp == m->capzp) {
			uint32_t cap = m->capzp ? m->capzp * 2 : 1024;
			struct zs_zspage *n = realloc(m->zp, cap * sizeof(*n));

			if (!n)
				abort();
			m->zp = n;
			m->capzp = cap;
		}
		z = (int32_t)m->nzp++;
	}
	p = &m->zp[z];
	p->cls = (int32_t)c;
	p->inuse = 0;
	p->fg = FG_EMPTY;
	p->prev = p->next = NONE;
	p->slot_obj = malloc(objs * sizeof(*p->slot_obj));
	p->free_stk = malloc(objs * sizeof(*p->free_stk));
	if (!p->slot_obj || !p->free_stk)
		abort();
	/* init_zspage links the slots in order: pop 0 first. */
	for (uint32_t i = 0; i < objs; i++) {
		p->slot_obj[i] = NONE;
		p->free_stk[i] = objs - 1 - i;
	}
	p->nfree = objs;
	p->older = m->newest;
	p->newer = NONE;
	if (m->newest != NONE)
		m->zp[m->newest].newer = z;
	else
		m->oldest = z;
	m->newest = z;
	m->cls[c].allocated += objs;
	m->st.pages += geom[c].pages;
	m->st.zspages++;
	return z;
}

/* Release an empty zspage that is on no fullness list. */
static void zspage_release(struct zsm *m, int32_t z)
{
	struct zs_zspage *p = &m->zp[z];
	uint32_t c = (uint32_t)p->cls;

	if (p->older != NONE)
		m->zp[p->older].newer = p->newer;
	else
		m->oldest = p->newer;
	if (p->newer != NONE)
		m->zp[p->newer].older = p->older;
	else
		m->newest = p->older;
	free(p->slot_obj);
	free(p->free_stk);
	p->slot_obj = NULL;
	p->free_stk = NULL;
	m->cls[c].allocated -= geom[c].objs;
	m->st.pages -= geom[c].pages;
	m->st.zspages--;
	p->cls = NONE;
	p->next = m->zp_free;
	m->zp_free = z;
}

/* obj_malloc: pop the free-slot list head. */
static void slot_take(struct zsm *m, int32_t z, uint32_t id)
{
	struct zs_zspage *p = &m->zp[z];
	uint32_t slot = p->free_stk[--p->nfree];

	p->slot_obj[slot] = (int32_t)id;
	p->inuse++;
	m->obj[id].zspage = z;
	m->obj[id].slot = slot;
}

/* obj_free: push the slot back on the head. */
static void slot_put(struct zsm *m, uint32_t id)
{
	struct zs_zspage *p = &m->zp[m->obj[id].zspage];
	uint32_t slot = m->obj[id].slot;

	p->slot_obj[slot] = NONE;
	p->free_stk[p->nfree++] = slot;
	p->inuse--;
	m->obj[id].zspage = NONE;
}

/* find_get_zspage: head of the fullest non-full group. */
static int32_t find_get_zspage(struct zsm *m, uint32_t c)
{
	for (int fg = FG_LAST_PARTIAL; fg >= FG_EMPTY; fg--)
		if (m->cls[c].head[fg] != NONE)
			return m->cls[c].head[fg];
	return NONE;
}

/* ------------------------------------------------------------ public */

struct zsm *zsm_create(uint32_t max_ids)
{
	struct zsm *m = calloc(1, sizeof(*m));

	geom_init();
	if (!m)
		return NULL;
	m->obj = malloc((size_t)max_ids * sizeof(*m->obj));
	if (!m->obj) {
		free(m);
		return NULL;
	}
	for (uint32_t i = 0; i < max_ids; i++)
		m->obj[i].zspage = NONE;
	m->max_ids = max_ids;
	for (uint32_t c = 0; c < ZS_SIZE_CLASSES; c++)
		for (int fg = 0; fg < NR_FG; fg++)
			m->cls[c].head[fg] = NONE;
	m->zp_free = m->oldest = m->newest = NONE;
	return m;
}

void zsm_destroy(struct zsm *m)
{
	if (!m)
		return;
	for (uint32_t z = 0; z < m->nzp; z++) {
		free(m->zp[z].slot_obj);
		free(m->zp[z].free_stk);
	}
	free(m->zp);
	free(m->obj);
	free(m);
}

int zsm_alloc(struct zsm *m, uint32_t id, uint32_t len)
{
	uint32_t c;
	int32_t z;

	if (len == 0 || len > ZS_MAX_ALLOC_SIZE || id >= m->max_ids ||
	    m->obj[id].zspage != NONE)
		return -1;
	c = class_index(len + ZS_HANDLE_SIZE);
	z = find_get_zspage(m, c);
	if (z != NONE) {
		slot_take(m, z, id);
		fix_fullness(m, z);
	} else {
		z = zspage_new(m, c);
		slot_take(m, z, id);
		fg_insert(m, z, fullness(c, m->zp[z].inuse));
	}
	m->obj[id].len = len;
	m->cls[c].used++;
	m->st.objects++;
	m->st.stored_bytes += len;
	m->st.huge_objects += class_huge(c);
	return 0;
}

void zsm_free(struct zsm *m, uint32_t id)
{
	int32_t z;
	uint32_t c;

	if (id >= m->max_ids || m->obj[id].zspage == NONE)
		return;
	z = m->obj[id].zspage;
	c = (uint32_t)m->zp[z].cls;
	m->cls[c].used--;
	m->st.objects--;
	m->st.stored_bytes -= m->obj[id].len;
	m->st.huge_objects -= class_huge(c);
	slot_put(m, id);
	if (fix_fullness(m, z) == FG_EMPTY) {
		fg_remove(m, z);
		zspage_release(m, z);
	}
}

/* zs_can_compact: pages that the free slots of the class add up to. */
static uint64_t can_compact(struct zsm *m, uint32_t c)
{
	const struct zs_class *k = &m->cls[c];

	if (k->allocated <= k->used)
		return 0;
	return (k->allocated - k->used) / geom[c].objs * geom[c].pages;
}

static int32_t isolate(struct zsm *m, uint32_t c, bool fullest)
{
	for (int i = 0; i < FG_LAST_PARTIAL; i++) {
		int fg = fullest ? FG_LAST_PARTIAL - i : FG_FIRST_PARTIAL + i;
		int32_t z = m->cls[c].head[fg];

		if (z != NONE) {
			fg_remove(m, z);
			return z;
		}
	}
	return NONE;
}

/* migrate_zspage: objects in slot order until dst is full or src empty. */
static void migrate(struct zsm *m, int32_t src, int32_t dst)
{
	uint32_t c = (uint32_t)m->zp[src].cls;

	for (uint32_t s = 0; s < geom[c].objs; s++) {
		int32_t id = m->zp[src].slot_obj[s];

		if (id == NONE)
			continue;
		slot_put(m, (uint32_t)id);
		slot_take(m, dst, (uint32_t)id);
		if (m->zp[dst].inuse == geom[c].objs || m->zp[src].inuse == 0)
			break;
	}
}

static uint64_t compact_class(struct zsm *m, uint32_t c)
{
	int32_t dst = NONE;
	uint64_t freed = 0;

	while (can_compact(m, c)) {
		int32_t src;

		if (dst == NONE && (dst = isolate(m, c, true)) == NONE)
			break;
		src = isolate(m, c, false);
		if (src == NONE)
			break;
		migrate(m, src, dst);
		if (m->zp[src].inuse == 0) {
			zspage_release(m, src);
			freed += geom[c].pages;
		} else {
			fg_insert(m, src, fullness(c, m->zp[src].inuse));
		}
		if (m->zp[dst].inuse == geom[c].objs) {
			fg_insert(m, dst, FG_FULL);
			dst = NONE;
		}
	}
	if (dst != NONE)
		fg_insert(m, dst, fullness(c, m->zp[dst].inuse));
	return freed;
}

uint64_t zsm_compact(struct zsm *m)
{
	uint64_t freed = 0;

	for (int c = ZS_SIZE_CLASSES - 1; c >= 0; c--)
		if (geom[c].rep == (uint32_t)c)
			freed += compact_class(m, (uint32_t)c);
	return freed;
}

uint32_t zsm_evict_oldest(struct zsm *m, uint32_t *pages)
{
	int32_t z = m->oldest;
	uint32_t c, n = 0;

	*pages = 0;
	if (z == NONE)
		return 0;
	c = (uint32_t)m->zp[z].cls;
	*pages = geom[c].pages;
	/* The last zsm_free releases the zspage (and its slot array). */
	for (uint32_t s = 0, objs = geom[c].objs; s < objs; s++) {
		int32_t id = m->zp[z].slot_obj[s];
		bool last = m->zp[z].inuse == 1;

		if (id == NONE)
			continue;
		zsm_free(m, (uint32_t)id);
		n++;
		if (last)
			break;
	}
	return n;
}

void zsm_get_stats(const struct zsm *m, struct zsm_stats *out)
{
	*out = m->st;
}
