/*
 * zbud_model.c - an accounting model of the kernel's zbud, for
 * bench/pool_bench (run that; this file has no main).
 *
 * Rules, from mm/zbud.c as it was with its own LRU (Linux 3.11-6.4; zbud
 * was removed in 6.15):
 *
 *  - A zbud page holds at most two objects ("buddies"): FIRST, stored from
 *    the start of the page after the header, and LAST, stored at its end.
 *  - Space is counted in chunks of 64 B (NCHUNKS_ORDER 6); the header takes
 *    one chunk (ZHDR_SIZE_ALIGNED), leaving NCHUNKS = 63 chunks per page, and
 *    an object takes ceil(len / 64) chunks.
 *  - zbud_alloc refuses (-ENOSPC) a length above PAGE_SIZE - ZHDR_SIZE_ALIGNED
 *    - CHUNK_SIZE = 3968: the caller (zswap) then keeps the page itself.
 *  - Pages with one buddy sit on unbuddied[free chunks]; allocation takes the
 *    head of the first non-empty list from unbuddied[chunks needed] upward,
 *    and puts the page in the FIRST slot if that is free, else LAST.  With no
 *    such page it allocates a fresh one (FIRST).  A page is put back at the
 *    head of unbuddied[free chunks] (one buddy) or on the buddied list.
 *  - Every allocation moves its page to the head of the pool LRU; a free does
 *    not.  A page is freed when both buddies are gone.  Reclaim takes the LRU
 *    tail and evicts both buddies.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "models.h"

#define CHUNK_SHIFT 6u
#define CHUNK_SIZE (1u << CHUNK_SHIFT)
#define ZHDR_SIZE_ALIGNED CHUNK_SIZE
#define NCHUNKS ((MODEL_PAGE_SIZE - ZHDR_SIZE_ALIGNED) >> CHUNK_SHIFT)
#define ZBUD_MAX_LEN (MODEL_PAGE_SIZE - ZHDR_SIZE_ALIGNED - CHUNK_SIZE)

#define NONE (-1)
#define ON_BUDDIED (-2)         /* zb_page.list when on the buddied list */

enum { FIRST = 0, LAST = 1 };

struct zb_page {
	uint8_t chunks[2];      /* first_chunks, last_chunks */
	int32_t obj[2];         /* object ids, NONE if the buddy is free */
	int32_t list;           /* unbuddied index, ON_BUDDIED, or NONE */
	int32_t prev, next;     /* unbuddied list; next chains free records */
	int32_t lru_prev, lru_next;
};

struct zb_obj {
	int32_t page;           /* NONE if not stored */
	uint8_t bud;
	uint32_t len;
};

struct zbm {
	int32_t unbuddied[NCHUNKS];
	int32_t lru_head, lru_tail;     /* head = most recently allocated into */
	struct zb_page *pg;
	uint32_t npg, cappg;
	int32_t pg_free;
	struct zb_obj *obj;
	uint32_t max_ids;
	struct zbm_stats st;
};

static uint32_t size_to_chunks(uint32_t len)
{
	return (len + CHUNK_SIZE - 1) >> CHUNK_SHIFT;
}

static uint32_t num_free_chunks(const struct zb_page *p)
{
	return NCHUNKS - p->chunks[FIRST] - p->chunks[LAST];
}

/* ------------------------------------------------------------- lists */

static void unbuddied_add(struct zbm *m, int32_t i)
{
	struct zb_page *p = &m->pg[i];
	int32_t l = (int32_t)num_free_chunks(p);

	p->list = l;
	p->prev = NONE;
	p->next = m->unbuddied[l];
	if (p->next != NONE)
		m->pg[p->next].prev = i;
	m->unbuddied[l] = i;
}

/* list_del(&zhdr->buddy): off the unbuddied or the buddied list. */
static void buddy_del(struct zbm *m, int32_t i)
{
	struct zb_page *p = &m->pg[i];

	if (p->list >= 0) {
		if (p->prev != NONE)
			m->pg[p->prev].next = p->next;
		else
			m->unbuddied[p->list] = p->next;
		if (p->next != NONE)
			m->pg[p->next].prev = p->prev;
	}
	p->list = NONE;
	p->prev = p->next = NONE;
}

static void lru_del(struct zbm *m, int32_t i)
{
	struct zb_page *p = &m->pg[i];

	if (p->lru_prev != NONE)
		m->pg[p->lru_prev].lru_next = p->lru_next;
	else
		m->lru_head = p->lru_next;
	if (p->lru_next != NONE)
		m->pg[p->lru_next].lru_prev = p->lru_prev;
	else
		m->lru_tail = p->lru_prev;
	p->lru_prev = p->lru_next = NONE;
}

static void lru_add_head(struct zbm *m, int32_t i)
{
	struct zb_page *p = &m->pg[i];

	p->lru_prev = NONE;
	p->lru_next = m->lru_head;
	if (m->lru_head != NONE)
		m->pg[m->lru_head].lru_prev = i;
	else
		m->lru_tail = i;
	m->lru_head = i;
}

/* ------------------------------------------------------------- pages */

static int32_t page_new(struct zbm *m)
{
	struct zb_page *p;
	int32_t i;

	if (m->pg_free != NONE) {
		i = m->pg_free;
		m->pg_free = m->pg[i].next;
	} else {
		if (m->npg == m->cappg) {
			uint32_t cap = m->cappg ? m->cappg * 2 : 1024;
			struct zb_page *n = realloc(m->pg, cap * sizeof(*n));

			if (!n)
				abort();
			m->pg = n;
			m->cappg = cap;
		}
		i = (int32_t)m->npg++;
	}
	p = &m->pg[i];
	p->chunks[FIRST] = p->chunks[LAST] = 0;
	p->obj[FIRST] = p->obj[LAST] = NONE;
	p->list = NONE;
	p->prev = p->next = NONE;
	p->lru_prev = p->lru_next = NONE;
	m->st.pages++;
	return i;
}

static void page_release(struct zbm *m, int32_t i)
{
	lru_del(m, i);
	m->pg[i].next = m->pg_free;
	m->pg_free = i;
	m->st.pages--;
}

/* ------------------------------------------------------------ public */

struct zbm *zbm_create(uint32_t max_ids)
{
	struct zbm *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->obj = malloc((size_t)max_ids * sizeof(*m->obj));
	if (!m->obj) {
		free(m);
		return NULL;
	}
	for (uint32_t i = 0; i < max_ids; i++)
		m->obj[i].page = NONE;
	m->max_ids = max_ids;
	for (uint32_t i = 0; i < NCHUNKS; i++)
		m->unbuddied[i] = NONE;
	m->lru_head = m->lru_tail = m->pg_free = NONE;
	return m;
}

void zbm_destroy(struct zbm *m)
{
	if (!m)
		return;
	free(m->pg);
	free(m->obj);
	free(m);
}

int zbm_alloc(struct zbm *m, uint32_t id, uint32_t len)
{
	uint32_t chunks;
	int32_t i = NONE;
	struct zb_page *p;
	int bud = FIRST;

	if (id >= m->max_ids || m->obj[id].page != NONE)
		return -1;
	if (len == 0 || len > ZBUD_MAX_LEN) {
		m->st.refused++;
		return -1;
	}
	chunks = size_to_chunks(len);
	for (uint32_t l = chunks; l < NCHUNKS; l++) {
		if (m->unbuddied[l] != NONE) {
			i = m->unbuddied[l];
			buddy_del(m, i);
			bud = m->pg[i].chunks[FIRST] == 0 ? FIRST : LAST;
			break;
		}
	}
	if (i == NONE)
		i = page_new(m);
	p = &m->pg[i];
	p->chunks[bud] = (uint8_t)chunks;
	p->obj[bud] = (int32_t)id;
	if (p->chunks[FIRST] == 0 || p->chunks[LAST] == 0)
		unbuddied_add(m, i);
	else
		p->list = ON_BUDDIED;
	if (p->lru_prev != NONE || m->lru_head == i)
		lru_del(m, i);
	lru_add_head(m, i);

	m->obj[id].page = i;
	m->obj[id].bud = (uint8_t)bud;
	m->obj[id].len = len;
	m->st.objects++;
	m->st.stored_bytes += len;
	return 0;
}

void zbm_free(struct zbm *m, uint32_t id)
{
	struct zb_page *p;
	int32_t i;

	if (id >= m->max_ids || m->obj[id].page == NONE)
		return;
	i = m->obj[id].page;
	p = &m->pg[i];
	p->chunks[m->obj[id].bud] = 0;
	p->obj[m->obj[id].bud] = NONE;
	m->obj[id].page = NONE;
	m->st.objects--;
	m->st.stored_bytes -= m->obj[id].len;

	buddy_del(m, i);
	if (p->chunks[FIRST] == 0 && p->chunks[LAST] == 0)
		page_release(m, i);
	else
		unbuddied_add(m, i);
}

uint32_t zbm_evict_lru(struct zbm *m)
{
	int32_t i = m->lru_tail, ids[2];
	uint32_t n = 0;

	if (i == NONE)
		return 0;
	/* Read both first: the page record is recycled by the last free. */
	ids[FIRST] = m->pg[i].obj[FIRST];
	ids[LAST] = m->pg[i].obj[LAST];
	for (int bud = FIRST; bud <= LAST; bud++) {
		if (ids[bud] != NONE) {
			zbm_free(m, (uint32_t)ids[bud]);
			n++;
		}
	}
	return n;
}

void zbm_get_stats(const struct zbm *m, struct zbm_stats *out)
{
	*out = m->st;
}
