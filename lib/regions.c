/*
 * regions.c - which of the process's mappings uzswap manages.
 *
 * The truth is /proc/self/maps: it shows every mapping, including those glibc
 * makes with its internal mmap (arenas, large chunks) that no mmap wrapper
 * sees.  A mapping is managed when it is private, anonymous, read-write and
 * not executable, at least UZSWAP_MIN_REGION long, and none of:
 *  - the main stack ([stack]) or a thread stack (a read-write mapping right
 *    above a PROT_NONE guard mapping: how glibc lays out pthread stacks);
 *  - uzswap's own memory (named [anon:uzswap] by mmap_region.c);
 *  - the .bss of a loaded object (an anonymous mapping right after a file
 *    mapping): static data of libraries, the shim's own included, which the
 *    engine threads may read and so must never find missing;
 *  - the vDSO/vvar family, shared or file-backed mappings.
 * PROT_NONE reservations are skipped until they become writable; the next
 * refresh picks them up.
 *
 * The table of managed regions is sorted and kept in the engine's own memory;
 * the fault thread updates it on UNMAP and REMAP events, and refresh adds
 * what is new.  A range is registered exactly when it enters the table, so a
 * range that is not in the table holds nothing of ours: entering it, its
 * page-table entries are cleared (they can only be stale leftovers).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "engine_internal.h"
#include "maps_line.h"
#include "mmap_region.h"

static bool name_is(const struct maps_line *l, const char *s)
{
	size_t n = strlen(s);

	return l->name_len >= n && memcmp(l->name, s, n) == 0;
}

/* Is this mapping one uzswap should manage?  prev is the line before. */
static bool eligible(struct uzs_engine *e, const struct maps_line *l,
		     const struct maps_line *prev)
{
	if (strcmp(l->perms, "rw-p") != 0 || !l->anonymous)
		return false;
	if (l->end - l->start < e->cfg.min_region)
		return false;
	if (l->name_len && !name_is(l, "[heap]") && !name_is(l, "[anon:"))
		return false;
	if (name_is(l, "[anon:" UZS_REGION_NAME "]"))
		return false;
	if (name_is(l, "[heap]") || !prev || prev->end != l->start)
		return true;
	if (prev->anonymous && strcmp(prev->perms, "---p") == 0)
		return false;   /* a guarded stack */
	if (!prev->anonymous)
		return false;   /* the .bss of a loaded object (ours among them) */
	return true;
}

static size_t region_index(struct uzs_engine *e, uintptr_t addr)
{
	size_t lo = 0, hi = e->nregions;

	/* First region whose end is above addr. */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (e->regions[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct uzs_region *uzs_region_find(struct uzs_engine *e, uintptr_t addr)
{
	size_t i = region_index(e, addr);

	if (i < e->nregions && e->regions[i].start <= addr)
		return &e->regions[i];
	return NULL;
}

static bool region_insert(struct uzs_engine *e, uintptr_t start, uintptr_t end,
			  bool wp)
{
	size_t i = region_index(e, start);

	if (e->nregions >= UZS_MAX_REGIONS)
		return false;
	memmove(&e->regions[i + 1], &e->regions[i],
		(e->nregions - i) * sizeof(e->regions[0]));
	e->regions[i] = (struct uzs_region){ start, end, wp };
	e->nregions++;
	e->managed_pages += (end - start) >> UZS_PAGE_SHIFT;
	return true;
}

void uzs_regions_remove(struct uzs_engine *e, uintptr_t start, uintptr_t end)
{
	size_t i = region_index(e, start);

	while (i < e->nregions && e->regions[i].start < end) {
		struct uzs_region *r = &e->regions[i];
		uintptr_t cut_lo = r->start > start ? r->start : start;
		uintptr_t cut_hi = r->end < end ? r->end : end;

		e->managed_pages -= (cut_hi - cut_lo) >> UZS_PAGE_SHIFT;
		if (r->start < start && r->end > end) {
			/* Hole in the middle: split in two. */
			struct uzs_region tail = { end, r->end, r->wp };

			r->end = start;
			if (e->nregions < UZS_MAX_REGIONS) {
				memmove(&e->regions[i + 2], &e->regions[i + 1],
					(e->nregions - i - 1) * sizeof(*r));
				e->regions[i + 1] = tail;
				e->nregions++;
			} else {
				/* No room: forget the tail; its pages stay
				 * registered but we no longer take them out. */
				e->managed_pages -= (tail.end - tail.start) >>
						    UZS_PAGE_SHIFT;
			}
			return;
		}
		if (r->start < start) {
			r->end = start;
			i++;
		} else if (r->end > end) {
			r->start = end;
			i++;
		} else {
			memmove(r, r + 1, (e->nregions - i - 1) * sizeof(*r));
			e->nregions--;
		}
	}
}

/*
 * What of [from, from+len) was ours moves to the same offsets from `to`:
 * all of it usually, but a range may be ours only in part (the end of a
 * mapping grown in place and not adopted yet), and that part, entries and
 * all (fault.c, move_range), must stay in the table at its new address.
 */
void uzs_regions_move(struct uzs_engine *e, uintptr_t from, uintptr_t to,
		      size_t len)
{
	size_t i;

	/* mremap's two ranges never overlap. */
	uzs_regions_remove(e, to, to + len);
	while ((i = region_index(e, from)) < e->nregions &&
	       e->regions[i].start < from + len) {
		const struct uzs_region *r = &e->regions[i];
		uintptr_t lo = r->start > from ? r->start : from;
		uintptr_t hi = r->end < from + len ? r->end : from + len;
		bool wp = r->wp;

		uzs_regions_remove(e, lo, hi);
		region_insert(e, to + (lo - from), to + (hi - from), wp);
	}
}

/*
 * Is [start, end), as maps said a moment ago, still exactly one mapping?
 * 1 if so, 0 if not, -1 where PROCMAP_QUERY (Linux 6.11) cannot say.
 * Registering part of a mapping splits it in two, and a program's mremap
 * of the whole then fails with EFAULT: a mapping the program made since
 * the maps were read, where one of its mappings was (st_mremap doubling),
 * must not be registered by halves.  The answer is as fresh as an ioctl,
 * where maps may be as old as the read of every line before it.
 */
static int still_one_mapping(struct uzs_engine *e, uintptr_t start,
			     uintptr_t end)
{
	struct procmap_query q = {
		.size = sizeof(q), .query_addr = start,
	};

	if (e->no_procmap_query)
		return -1;
	if (ioctl(e->maps_fd, PROCMAP_QUERY, &q) != 0) {
		if (errno == ENOENT)
			return 0;       /* nothing mapped there now */
		if (errno == ENOTTY || errno == EINVAL)
			e->no_procmap_query = true;
		return -1;
	}
	return q.vma_start == start && q.vma_end == end;
}

/*
 * Register [start, end), which holds nothing of ours, and start tracking it.
 *
 * The range was read from maps a moment ago, and the program runs on, so
 * it is checked on both sides of registering.  Before: a range already
 * registered as one mapping (the end of one of ours, grown in place or
 * moved with growth) needs nothing registered; while an event is unread
 * nothing is done; otherwise it must still be exactly the mapping maps
 * showed (still_one_mapping).  After: if part of it was unmapped since,
 * the kernel registered the rest without a word, and a mapping made later
 * in the hole would be ours by the table but not registered (st_brk.c).
 * From then on every change to what is registered raises an event, so one
 * look is enough: all of it, one registered mapping, or try again at the
 * next refresh.
 *
 * What was registered stays registered: it may by then be part of a
 * mapping of ours, moved there by an mremap whose event is still unread
 * (the look says -EAGAIN), and unregistering it would hand our pages to
 * the kernel.  A registered range outside the table holds nothing of
 * ours; its faults are first touches.
 */
static void adopt(struct uzs_engine *e, uintptr_t start, uintptr_t end)
{
	uint64_t mode = UFFDIO_REGISTER_MODE_MISSING;
	int rc = uzs_uffd_registered(&e->app, start, end - start);

	if (rc == -EAGAIN)
		return;
	if (rc != 1) {
		if (still_one_mapping(e, start, end) == 0) {
			uzs_log(e, UZS_LOG_DEBUG, "not managing %#lx-%#lx yet: "
				"it changed since maps were read",
				(unsigned long)start, (unsigned long)end);
			return;
		}
		if (e->have_wp_async)
			mode |= UFFDIO_REGISTER_MODE_WP;
		rc = uzs_uffd_register(&e->app, start, end - start, mode);
		if (rc) {
			uzs_log(e, UZS_LOG_DEBUG, "not managing %#lx-%#lx: "
				"register: %s", (unsigned long)start,
				(unsigned long)end, uzs_strerror(-rc));
			return;
		}
		if (uzs_uffd_registered(&e->app, start, end - start) != 1) {
			uzs_log(e, UZS_LOG_DEBUG, "not managing %#lx-%#lx yet: "
				"it changed while being registered",
				(unsigned long)start, (unsigned long)end);
			return;
		}
	}
	uzs_drop_range(e, start, end);
	if (!region_insert(e, start, end, e->have_wp_async))
		return;
	/* Start write tracking from a clean slate: everything protected. */
	if (e->have_wp_async)
		uzs_uffd_writeprotect(&e->app, start, end - start, 1);
}

/* Adopt the parts of [start, end) not already in the table. */
static void adopt_unknown(struct uzs_engine *e, uintptr_t start, uintptr_t end)
{
	size_t i = region_index(e, start);
	uintptr_t cur = start;

	while (cur < end) {
		uintptr_t next_start = end;

		if (i < e->nregions && e->regions[i].start <= cur) {
			cur = e->regions[i].end;
			i++;
			continue;
		}
		if (i < e->nregions && e->regions[i].start < end)
			next_start = e->regions[i].start;
		adopt(e, cur, next_start);
		i = region_index(e, next_start);
		cur = next_start;
	}
}

/* Adopt [start, end) less any of our own reservations inside it (a mapping
 * the kernel merged with one of ours, where naming it is not supported). */
static void adopt_not_own(struct uzs_engine *e, uintptr_t start, uintptr_t end)
{
	while (start < end) {
		uintptr_t own_start, own_end = uzs_region_own_overlap(start, end,
								      &own_start);

		if (!own_end) {
			adopt_unknown(e, start, end);
			return;
		}
		if (own_start > start &&
		    own_start - start >= e->cfg.min_region)
			adopt_unknown(e, start, own_start);
		start = own_end;
	}
}

/*
 * Read /proc/self/maps in chunks into a buffer of our own (no stdio: this
 * runs in an engine thread and must not allocate) and adopt what is eligible.
 * Called with e->lock held.
 */
int uzs_regions_refresh(struct uzs_engine *e)
{
	char *buf = e->maps_buf;
	struct maps_line prev = { 0 }, cur;
	bool have_prev = false;
	size_t fill = 0;
	off_t off = 0;

	for (;;) {
		ssize_t n = pread(e->maps_fd, buf + fill, UZS_MAPS_BUF - fill, off);
		size_t used = 0;
		char *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && off == 0)
			return -errno;
		if (n <= 0)
			break;
		fill += (size_t)n;
		off += n;
		while ((nl = memchr(buf + used, '\n', fill - used))) {
			if (uzs_maps_line_parse(buf + used, nl, &cur)) {
				if (eligible(e, &cur, have_prev ? &prev : NULL))
					adopt_not_own(e, cur.start, cur.end);
				prev = cur;
				prev.name = "";
				prev.name_len = 0;
				have_prev = true;
			}
			used = (size_t)(nl - buf) + 1;
		}
		memmove(buf, buf + used, fill - used);
		fill -= used;
		if (fill == UZS_MAPS_BUF)
			fill = 0;       /* absurd line: drop it */
	}
	return 0;
}
