/*
 * test_engine_numa.c - the engine, running in this process, on fake NUMA
 * topologies of 2 and 4 nodes: pages of each node are stored in that node's
 * pool and come back byte for byte, a fault prefers the page's node before
 * copying it back, UZSWAP_NUMA=off gives one pool, the per-pool figures add
 * up to the totals, and eviction under a cap on the pools' total works
 * across pools.
 *
 * The fake learns a page's node from the page itself: every page of the
 * test buffer begins with a tag naming the node the test wants it on, which
 * the page keeps in staging (where the engine asks), just as a real page
 * keeps its node.  Pages of other memory the engine adopts have no tag and
 * are on node 0.
 *
 * Each test starts an engine of its own (Criterion runs every test in a
 * process of its own), adopting only mappings of at least the buffer's size,
 * which are found and compressed within a few 10 ms scans.  Needs a usable
 * userfaultfd and UFFDIO_MOVE, as the shim does; otherwise the tests skip.
 * Not built with sanitizers: their shadow memory would be adopted too.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "env_config.h"
#include "numa_topology.h"
#include "testutil.h"

#define TAG 0x21616d756e737a75ull       /* "uzsnuma!" */
#define PAGE 4096u
#define NPAGES 2048u                    /* 8 MiB */
#define BUF_BYTES ((size_t)NPAGES * PAGE)

static struct uzs_numa_fake fake;
static struct uzs_numa_topology topo;
static unsigned nnodes;
static unsigned char *buf;

static int page_node(const void *page, void *arg)
{
	const uint64_t *w = page;

	return w[0] == TAG ? (int)w[1] : 0;
}

static unsigned node_of_page(unsigned k)
{
	return k % nnodes;
}

/* Page k: its tag, then text that compresses (random bytes too, if noisy,
 * so that it compresses less and fills a pool sooner). */
static void fill_page(unsigned char *p, unsigned k, bool noisy)
{
	uint64_t head[3] = { TAG, node_of_page(k), k };
	char line[32];
	size_t n = (size_t)snprintf(line, sizeof(line), "page %06u of %u; ", k,
				    nnodes);

	for (size_t off = sizeof(head); off < PAGE; off += n)
		memcpy(p + off, line, off + n <= PAGE ? n : PAGE - off);
	if (noisy)
		tu_pattern(p + PAGE / 2, PAGE / 4, k);
	memcpy(p, head, sizeof(head));
}

/*
 * The buffer goes where nothing is next to it: anywhere else it may land
 * right after a library's mapping, and then passes for that library's .bss,
 * which the engine leaves alone (regions.c).
 */
static void fill(bool noisy)
{
	void *at = (void *)(16ull << 40);

	buf = mmap(at, BUF_BYTES, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	cr_assert_eq(buf, at, "16 TiB is taken: %s", strerror(errno));
	for (unsigned k = 0; k < NPAGES; k++)
		fill_page(buf + (size_t)k * PAGE, k, noisy);
}

/* Every byte as written: reading each page faults it back in. */
static void check_all(bool noisy)
{
	static unsigned char want[PAGE];

	for (unsigned k = 0; k < NPAGES; k++) {
		fill_page(want, k, noisy);
		cr_assert(!memcmp(buf + (size_t)k * PAGE, want, PAGE),
			  "page %u came back changed", k);
	}
}

/* A fake machine of n nodes, all with memory. */
static void machine(unsigned n)
{
	nnodes = n;
	fake = (struct uzs_numa_fake){
		.nnodes = n, .mem_nodes = (1ull << n) - 1,
		.page_node = page_node, .preferred = -99,
	};
	cr_assert_eq(uzs_numa_topology_fake(&topo, &fake), 0);
	uzs_engine_set_topology(&topo);
}

static struct uzs_engine *start(bool numa, uint64_t pool_max)
{
	struct uzs_config cfg;
	struct uzs_engine *e;
	char err[512];
	int rc;

	uzs_config_defaults(&cfg);
	cfg.scan_interval_ns = cfg.cold_age_ns = 10 * 1000000ull;
	cfg.min_region = BUF_BYTES;
	cfg.numa = numa;
	cfg.pool_max = pool_max;
	cfg.log_level = UZS_LOG_ERROR;  /* no tmpfs or binding warnings */
	rc = uzs_engine_start(&cfg, &e, err, sizeof(err));
	if (rc == -EPERM || rc == -EACCES || rc == -ENOSYS || rc == -EOPNOTSUPP ||
	    rc == -EINVAL)
		cr_skip_test("%s", err);
	cr_assert_eq(rc, 0, "%s", err);
	return e;
}

static uint64_t elapsed_ms(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)(((int64_t)t.tv_sec - t0->tv_sec) * 1000 +
			  ((int64_t)t.tv_nsec - t0->tv_nsec) / 1000000);
}

/* Pages of the buffer still resident. */
static unsigned resident(void)
{
	static unsigned char vec[NPAGES];
	unsigned n = 0;

	cr_assert_eq(mincore(buf, BUF_BYTES, vec), 0);
	for (unsigned k = 0; k < NPAGES; k++)
		n += vec[k] & 1;
	return n;
}

/*
 * Wait (up to 60 s: the machine may be busy) until no page of the buffer
 * is resident and every one is held: with `backed`, in the pools or the
 * backing file; else each pool n > 0 holding its share exactly and pool 0
 * at least its share (untagged memory goes there too).
 */
static void wait_taken_out(struct uzs_engine *e, struct uzs_engine_stats *st,
			   bool backed)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		uint64_t held = 0, per_node;
		bool done = resident() == 0;

		uzs_engine_stats(e, st);
		per_node = NPAGES / (st->npools ? st->npools : 1);
		for (unsigned i = 0; i < st->npools; i++) {
			uint64_t n = st->pool[i].pages_stored;

			held += n;
			if (!backed && (i ? n != per_node : n < per_node))
				done = false;
		}
		if (backed && held + st->pages_backed < NPAGES)
			done = false;
		if (done)
			return;
		cr_assert_lt(elapsed_ms(&t0), 60000, "pages not taken out: %llu "
			     "stored, %llu backed", (unsigned long long)held,
			     (unsigned long long)st->pages_backed);
		usleep(10000);
	}
}

static void assert_sums(const struct uzs_engine_stats *st)
{
	uint64_t pages = 0, stored = 0, pool = 0;

	cr_assert_geq(st->npools, 1);
	cr_assert_leq(st->npools, UZS_STATS_MAX_POOLS);
	for (unsigned i = 0; i < st->npools; i++) {
		pages += st->pool[i].pages_stored;
		stored += st->pool[i].stored_bytes;
		pool += st->pool[i].pool_bytes;
	}
	cr_assert_eq(pages, st->pages_stored);
	cr_assert_eq(stored, st->stored_bytes);
	cr_assert_eq(pool, st->pool_bytes);
	for (unsigned i = st->npools; i < UZS_STATS_MAX_POOLS; i++)
		cr_assert_eq(st->pool[i].pages_stored + st->pool[i].pool_bytes, 0);
}

Test(engine_numa, pages_go_to_their_nodes_pools_and_come_back)
{
	struct uzs_engine_stats st;
	struct uzs_engine *e;

	machine(2);
	fill(false);
	e = start(true, 0);
	wait_taken_out(e, &st, false);
	cr_assert_eq(st.npools, 2);
	cr_assert_eq(st.pool[0].node, 0);
	cr_assert_eq(st.pool[1].node, 1);
	cr_assert_gt(st.pool[1].stored_bytes, 0);
	cr_assert_gt(st.pool[1].pool_bytes, 0);
	assert_sums(&st);
	check_all(false);
	cr_assert_gt(fake.prefer_calls, 0);
}

/* Touch page k (a read: it faults back in) and say what was preferred. */
static int touch(unsigned k)
{
	volatile unsigned char *p = buf + (size_t)k * PAGE;

	cr_assert_eq(p[8], node_of_page(k));
	return fake.preferred;
}

Test(engine_numa, a_fault_prefers_the_pages_node)
{
	struct uzs_engine_stats st;
	struct uzs_engine *e;
	unsigned calls;

	machine(2);
	fill(false);
	e = start(true, 0);
	wait_taken_out(e, &st, false);
	cr_assert_eq(touch(1), 1);
	cr_assert_eq(touch(0), 0);
	calls = fake.prefer_calls;
	cr_assert_eq(touch(2), 0);
	cr_assert_eq(fake.prefer_calls, calls, "the same node is asked for once");
	cr_assert_eq(touch(3), 1);
	cr_assert_eq(fake.prefer_calls, calls + 1);
}

Test(engine_numa, numa_off_is_one_pool)
{
	struct uzs_engine_stats st;
	struct uzs_engine *e;

	machine(2);
	fill(false);
	e = start(false, 0);
	uzs_engine_stats(e, &st);
	cr_assert_eq(st.npools, 1);
	cr_assert_eq(st.pool[0].node, -1);
	wait_taken_out(e, &st, false);
	assert_sums(&st);
	check_all(false);
	cr_assert_eq(fake.prefer_calls, 0, "one pool: the thread policy is left alone");
}

Test(engine_numa, four_nodes_figures_add_up)
{
	struct uzs_engine_stats st;
	struct uzs_engine *e;

	machine(4);
	fill(false);
	e = start(true, 0);
	wait_taken_out(e, &st, false);
	cr_assert_eq(st.npools, 4);
	for (unsigned i = 0; i < 4; i++) {
		cr_assert_eq(st.pool[i].node, (int64_t)i);
		cr_assert_gt(st.pool[i].pool_bytes, 0);
	}
	assert_sums(&st);
	check_all(false);
}

/* A cap on the total well below what the pages need: pool pages of every
 * node go to the backing file, the total stays under the cap, and every
 * byte comes back (from the pools and from the file). */
Test(engine_numa, a_capped_total_evicts_from_every_pool)
{
	const uint64_t cap = 512 << 10;
	struct uzs_engine_stats st;
	struct uzs_engine *e;

	machine(2);
	fill(true);
	e = start(true, cap);
	wait_taken_out(e, &st, true);
	cr_assert_gt(st.pages_backed, 0);
	cr_assert_gt(st.evictions, 0);
	cr_assert_leq(st.pool_bytes, cap);
	for (unsigned i = 0; i < 2; i++)
		cr_assert_lt(st.pool[i].pages_stored, NPAGES / 2,
			     "nothing of pool %u was evicted", i);
	assert_sums(&st);
	check_all(true);
	uzs_engine_stats(e, &st);
	cr_assert_eq(st.backing_errors, 0);
	cr_assert_gt(st.faults[UZS_FAULT_BACKED], 0);
}
