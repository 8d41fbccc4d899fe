/*
 * pools.c - the engine's compressed pools, one per NUMA node, and where
 * restored pages are placed.  The policy itself (how many pools, which node
 * each serves, where a page goes back) is numa_topology.c's; this is where
 * the engine meets it.
 *
 * Pools
 * -----
 * With UZSWAP_NUMA on and two or more nodes with memory there is one pool
 * per such node, its memory bound to the node; otherwise one unbound pool,
 * and everything here reduces to what a single pool did.  A page is stored
 * in the pool of the node it is on, learned for a whole batch at once as it
 * sits in staging (UFFDIO_MOVE moves the physical page, so it is still on
 * its node).  Its entry records the pool (uzs_pte.pool): its object's
 * handle means nothing in another pool.  Zero and same-filled pages record
 * theirs too, though they hold nothing there, so that every page knows its
 * node.
 *
 * UZSWAP_POOL_MAX caps the pools' total, not each: a program's cold memory
 * may all be on one node (a single thread first-touches everything on its
 * own), and a per-node share would then cap it at a fraction.  Each pool may
 * grow to the whole cap; a store that takes the total past it is undone
 * here, and eviction takes from the fullest pool (evict.c).
 *
 * Restoring
 * ---------
 * A page goes back on the node it was taken from (numa_topology.c says
 * why): the kernel allocates the page that UFFDIO_COPY fills under the
 * policy of the thread that copies, so before copying a page back the
 * fault thread (any restore) or the reclaim thread (a page put back)
 * prefers the page's node for its own allocations.  First touches get the
 * default policy again.  Left to the default policy: a page caught in
 * staging (its node is learned only as it is compressed) and pages thawed
 * before a fork, which the forking application thread restores (its memory
 * policy is the program's, not ours to change).  With one pool the service
 * threads' policy is never touched.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "engine_internal.h"
#include "mmap_region.h"
#include "pool_internal.h"

_Static_assert(UZS_STATS_MAX_POOLS >= UZS_NUMA_MAX_NODES,
	       "the stats describe every pool");
_Static_assert(UZS_NUMA_MAX_NODES <= 256, "a pool index fits uzs_pte.pool");

static const struct uzs_numa_topology *topology_override;

void uzs_engine_set_topology(const struct uzs_numa_topology *t)
{
	topology_override = t;
}

/*
 * The machine's topology, learned once per process: libnuma allocates and
 * reads sysfs while answering, which a forked child's engine need not
 * repeat (the child runs on the same machine).
 */
static const struct uzs_numa_topology *machine_topology(void)
{
	static struct uzs_numa_topology *machine;

	if (!machine) {
		struct uzs_numa_topology *t = uzs_region_reserve(sizeof(*t));

		if (!t)
			return NULL;
		uzs_numa_topology_real(t);
		machine = t;
	}
	return machine;
}

/*
 * Pool i, its memory bound to its node.  A node the kernel will not bind
 * to (outside our cpuset after all) still gets its pool, unbound: binding
 * only places pool memory, while a missing pool would stop the engine.
 */
static int create_pool(struct uzs_engine *e, unsigned i)
{
	struct uzs_pool_config pc = {
		.max_bytes = e->pool_cap, .numa_node = e->numa.pool_node[i],
	};
	int rc = uzs_pool_create(&pc, &e->pools[i]);

	if (rc == -EINVAL && pc.numa_node >= 0) {
		uzs_log(e, UZS_LOG_WARN, "the pool of NUMA node %d cannot be "
			"bound to it: its memory comes from any node",
			pc.numa_node);
		pc.numa_node = -1;
		rc = uzs_pool_create(&pc, &e->pools[i]);
	}
	if (!rc)
		uzs_pool_not_inherited(e->pools[i]);
	e->st.pool[i].node = e->numa.pool_node[i];
	return rc;
}

int uzs_pools_setup(struct uzs_engine *e)
{
	e->topo = topology_override ? topology_override : machine_topology();
	if (!e->topo)
		return -ENOMEM;
	uzs_numa_policy_init(&e->numa, e->topo, e->cfg.numa);
	e->fault_pref = e->reclaim_pref = (struct uzs_numa_pref)UZS_NUMA_PREF_INIT;
	e->st.npools = e->numa.npools;
	for (unsigned i = 0; i < e->numa.npools; i++) {
		int rc = create_pool(e, i);

		if (rc)
			return rc;
	}
	return 0;
}

uint64_t uzs_pools_held(struct uzs_engine *e)
{
	uint64_t held = 0;

	for (unsigned i = 0; i < e->numa.npools; i++)
		held += uzs_pool_held_bytes(e->pools[i]);
	return held;
}

uint64_t uzs_pools_overhead(struct uzs_engine *e)
{
	uint64_t bytes = 0;

	for (unsigned i = 0; i < e->numa.npools; i++)
		bytes += uzs_pool_overhead_bytes(e->pools[i]);
	return bytes;
}

/* A single pool's own cap is the whole cap, so it alone enforces it. */
int uzs_pools_alloc(struct uzs_engine *e, unsigned pool, const void *src,
		    size_t len, uint64_t owner, uzs_handle_t *out)
{
	int rc = uzs_pool_alloc(e->pools[pool], src, len, owner, out);

	if (rc == 0 && e->numa.npools > 1 && e->pool_cap &&
	    uzs_pools_held(e) > e->pool_cap) {
		uzs_pool_free(e->pools[pool], *out);
		*out = 0;
		rc = -ENOSPC;
	}
	return rc;
}

void uzs_pools_of_pages(struct uzs_engine *e, void *const *pages, size_t n,
			uint8_t *pools)
{
	int rc = uzs_numa_pools_of_pages(&e->numa, e->topo, pages, n, pools);

	if (rc)
		uzs_log(e, UZS_LOG_DEBUG, "the NUMA nodes of %zu pages are not "
			"known (%s): they go to pool %u", n, uzs_strerror(-rc),
			UZS_NUMA_FALLBACK_POOL);
}

void uzs_pools_place(struct uzs_engine *e, struct uzs_numa_pref *pref,
		     int pool)
{
	int node, rc;

	if (e->numa.npools < 2)
		return;
	node = pool < 0 ? -1 : uzs_numa_restore_node(&e->numa, (unsigned)pool);
	rc = uzs_numa_prefer(e->topo, pref, node);
	if (rc)
		uzs_log(e, UZS_LOG_DEBUG, "cannot prefer NUMA node %d: %s", node,
			uzs_strerror(-rc));
}

void uzs_pools_snapshot(struct uzs_engine *e, struct uzs_engine_stats *out)
{
	out->stored_bytes = out->pool_bytes = out->metadata_bytes = 0;
	for (unsigned i = 0; i < e->numa.npools; i++) {
		struct uzs_pool_stats ps;

		uzs_pool_stats(e->pools[i], &ps);
		out->pool[i].stored_bytes = ps.stored_bytes;
		out->pool[i].pool_bytes = ps.pool_bytes;
		out->stored_bytes += ps.stored_bytes;
		out->pool_bytes += ps.pool_bytes;
		out->metadata_bytes += ps.metadata_bytes;
	}
}
