/*
 * numa_topology.c - NUMA topology backends (real and fake) and the pool
 * policy built on them.
 *
 * Pools
 * -----
 * With UZSWAP_NUMA on and two or more nodes with memory, there is one pool
 * per such node, its memory bound to the node, and a page is compressed
 * into the pool of the node it is on (asked with move_pages(2) for a whole
 * batch of pages at once, just before they are taken out).  CPU-only nodes
 * get no pool: no page lives there.  Otherwise there is one unbound pool.
 *
 * Restoring
 * ---------
 * A faulted page is restored on the node it was compressed from (its pool's
 * node), not on the faulting thread's node:
 *  - The page's node is what the program (or the kernel, by first touch,
 *    or an explicit mbind/interleave) chose for it; restoring it there
 *    keeps that choice.  Restoring to the faulting node would, for one,
 *    collapse an interleaved array onto whichever node touched it first
 *    after compression.
 *  - The faulting thread's node is not cheaply known where the page is
 *    restored: the fault is served by the engine's own thread, which learns
 *    only the faulting thread's id from userfaultfd (its CPU would take a
 *    read of /proc/self/task/TID/stat per fault).
 *  - A page that is hot from another node is the kernel's NUMA balancing's
 *    business, which migrates it later as it would any other page.
 * The page is placed by making the fault thread prefer that node
 * (set_mempolicy MPOL_PREFERRED, changed only when the node changes): the
 * kernel allocates the restored page (UFFDIO_COPY's destination, or the
 * staging page that UFFDIO_MOVE moves in) on the service thread's behalf,
 * following that thread's policy unless the mapping has a policy of its
 * own, which then wins, as it should.  "Preferred", not "bind": a full node
 * falls back to another rather than failing the fault.  No preference (-1)
 * is the policy the process ran under when the topology was learned, which
 * the service threads inherited (numactl --membind, say), not the kernel's
 * default: a first touch after a restore must land where it did before.
 *
 * Real backend
 * ------------
 * libnuma is used only at setup (numa_available, numa_max_node, the set of
 * nodes we may allocate on, and the CPU-to-node map, which libnuma builds
 * with malloc on every call, so it is cached here).  The ops that run on
 * service threads are raw system calls: move_pages with no target nodes
 * (which only reports), getcpu, set_mempolicy.
 */
#include "config.h"

#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "numa_topology.h"

/* ------------------------------------------------------- real backend */

static int real_page_nodes(const struct uzs_numa_topology *t, void *const *pages,
			   size_t n, int *nodes)
{
	/* nodes == NULL: move nothing, report where each page is. */
	if (syscall(SYS_move_pages, 0, (unsigned long)n, pages, NULL, nodes, 0))
		return -errno;
	return 0;
}

static int real_cpu_node(const struct uzs_numa_topology *t, int cpu)
{
	if (cpu < 0 || cpu >= UZS_NUMA_MAX_CPUS || t->cpu_node[cpu] < 0)
		return -EINVAL;
	return t->cpu_node[cpu];
}

static int real_current_node(const struct uzs_numa_topology *t)
{
	unsigned cpu, node;

	if (getcpu(&cpu, &node))
		return -errno;
	return (int)node;
}

/* maxnode for a one-word node mask: one past the bits the kernel reads (a
 * historical off-by-one that libnuma also follows). */
#define MASK_MAXNODE ((unsigned long)(8 * sizeof(unsigned long) + 1))

static int real_prefer_node(const struct uzs_numa_topology *t, int node)
{
	unsigned long mask = 0;

	if (node < 0)
		return syscall(SYS_set_mempolicy, t->base_mode, &t->base_nodes,
			       MASK_MAXNODE) ? -errno : 0;
	if ((unsigned)node >= t->nnodes)
		return -EINVAL;
	mask = 1ul << node;
	if (syscall(SYS_set_mempolicy, MPOL_PREFERRED, &mask, MASK_MAXNODE))
		return -errno;
	return 0;
}

static const struct uzs_numa_ops real_ops = {
	real_page_nodes, real_cpu_node, real_current_node, real_prefer_node,
};

/* ------------------------------------------- without NUMA: one node */

static int one_page_nodes(const struct uzs_numa_topology *t, void *const *pages,
			  size_t n, int *nodes)
{
	for (size_t i = 0; i < n; i++)
		nodes[i] = 0;
	return 0;
}

static int one_cpu_node(const struct uzs_numa_topology *t, int cpu)
{
	return cpu >= 0 ? 0 : -EINVAL;
}

static int one_current_node(const struct uzs_numa_topology *t)
{
	return 0;
}

static int one_prefer_node(const struct uzs_numa_topology *t, int node)
{
	return 0;
}

static const struct uzs_numa_ops one_node_ops = {
	one_page_nodes, one_cpu_node, one_current_node, one_prefer_node,
};

void uzs_numa_topology_real(struct uzs_numa_topology *t)
{
	int max, ncpus;

	memset(t, 0, sizeof(*t));
	t->nnodes = 1;
	t->mem_nodes = 1;
	for (int c = 0; c < UZS_NUMA_MAX_CPUS; c++)
		t->cpu_node[c] = -1;
	if (numa_available() < 0) {
		t->ops = &one_node_ops;
		return;
	}
	t->ops = &real_ops;
	/* The policy with no preference: this thread's, which the service
	 * threads inherit.  Nodes past the first word: the default instead. */
	if (syscall(SYS_get_mempolicy, &t->base_mode, &t->base_nodes,
		    MASK_MAXNODE, NULL, 0ul)) {
		t->base_mode = MPOL_DEFAULT;
		t->base_nodes = 0;
	}
	max = numa_max_node();
	t->nnodes = max < 0 ? 1 : max + 1 > UZS_NUMA_MAX_NODES
				 ? UZS_NUMA_MAX_NODES : (unsigned)max + 1;
	t->mem_nodes = 0;
	for (unsigned n = 0; n < t->nnodes; n++)
		if (numa_bitmask_isbitset(numa_all_nodes_ptr, n))
			t->mem_nodes |= 1ull << n;
	if (!t->mem_nodes)
		t->mem_nodes = 1;       /* cannot happen: we run, so we have memory */
	ncpus = numa_num_configured_cpus();
	for (int c = 0; c < ncpus && c < UZS_NUMA_MAX_CPUS; c++) {
		int node = numa_node_of_cpu(c);

		if (node >= 0 && (unsigned)node < t->nnodes)
			t->cpu_node[c] = (int16_t)node;
	}
}

/* ------------------------------------------------------- fake backend */

static struct uzs_numa_fake *fake_of(const struct uzs_numa_topology *t)
{
	return t->priv;
}

static int fake_page_nodes(const struct uzs_numa_topology *t, void *const *pages,
			   size_t n, int *nodes)
{
	struct uzs_numa_fake *f = fake_of(t);

	if (f->page_nodes_error)
		return f->page_nodes_error;
	for (size_t i = 0; i < n; i++)
		nodes[i] = f->page_node ? f->page_node(pages[i], f->arg) : 0;
	return 0;
}

static int fake_cpu_node(const struct uzs_numa_topology *t, int cpu)
{
	struct uzs_numa_fake *f = fake_of(t);

	return f->cpu_node ? f->cpu_node(cpu, f->arg) : -EINVAL;
}

static int fake_current_node(const struct uzs_numa_topology *t)
{
	return fake_cpu_node(t, fake_of(t)->current_cpu);
}

static int fake_prefer_node(const struct uzs_numa_topology *t, int node)
{
	struct uzs_numa_fake *f = fake_of(t);

	if (node >= (int)t->nnodes)
		return -EINVAL;
	f->preferred = node;
	f->prefer_calls++;
	return 0;
}

static const struct uzs_numa_ops fake_ops = {
	fake_page_nodes, fake_cpu_node, fake_current_node, fake_prefer_node,
};

int uzs_numa_topology_fake(struct uzs_numa_topology *t, struct uzs_numa_fake *f)
{
	if (f->nnodes == 0 || f->nnodes > UZS_NUMA_MAX_NODES)
		return -EINVAL;
	memset(t, 0, sizeof(*t));
	t->nnodes = f->nnodes;
	/* A test may name nodes that do not exist: they are not ours. */
	t->mem_nodes = f->mem_nodes &
		       (f->nnodes == 64 ? ~0ull : (1ull << f->nnodes) - 1);
	t->ops = &fake_ops;
	t->priv = f;
	for (int c = 0; c < UZS_NUMA_MAX_CPUS; c++)
		t->cpu_node[c] = -1;
	return 0;
}

/* ------------------------------------------------------------- policy */

void uzs_numa_policy_init(struct uzs_numa_policy *p,
			  const struct uzs_numa_topology *t, bool numa)
{
	unsigned nmem = (unsigned)__builtin_popcountll(t->mem_nodes);

	memset(p->node_pool, -1, sizeof(p->node_pool));
	for (unsigned i = 0; i < UZS_NUMA_MAX_NODES; i++)
		p->pool_node[i] = -1;
	if (!numa || nmem < 2) {
		p->npools = 1;
		return;         /* every node maps to the fallback, pool 0 */
	}
	p->npools = 0;
	for (unsigned n = 0; n < t->nnodes && n < UZS_NUMA_MAX_NODES; n++) {
		if (!(t->mem_nodes & (1ull << n)))
			continue;
		p->pool_node[p->npools] = (int)n;
		p->node_pool[n] = (int8_t)p->npools++;
	}
}

unsigned uzs_numa_pool_of_node(const struct uzs_numa_policy *p, int node)
{
	int pool;

	if (node < 0 || node >= UZS_NUMA_MAX_NODES)
		return UZS_NUMA_FALLBACK_POOL;
	pool = p->node_pool[node];
	if (pool < 0 || (unsigned)pool >= p->npools)
		return UZS_NUMA_FALLBACK_POOL;
	return (unsigned)pool;
}

/* Pages asked about per system call: bounds the stack array. */
#define NODES_CHUNK 64u

int uzs_numa_pools_of_pages(const struct uzs_numa_policy *p,
			    const struct uzs_numa_topology *t,
			    void *const *pages, size_t n, uint8_t *pools)
{
	int nodes[NODES_CHUNK];
	int err = 0;

	if (p->npools == 1) {   /* nothing to ask */
		memset(pools, UZS_NUMA_FALLBACK_POOL, n);
		return 0;
	}
	for (size_t i = 0; i < n; i += NODES_CHUNK) {
		size_t k = n - i < NODES_CHUNK ? n - i : NODES_CHUNK;
		int rc = t->ops->page_nodes(t, pages + i, k, nodes);

		for (size_t j = 0; j < k; j++)
			pools[i + j] = (uint8_t)(rc ? UZS_NUMA_FALLBACK_POOL
						 : uzs_numa_pool_of_node(p, nodes[j]));
		if (rc && !err)
			err = rc;
	}
	return err;
}

int uzs_numa_restore_node(const struct uzs_numa_policy *p, unsigned pool)
{
	return pool < p->npools ? p->pool_node[pool] : -1;
}

int uzs_numa_prefer(const struct uzs_numa_topology *t,
		    struct uzs_numa_pref *pref, int node)
{
	int rc;

	if (node < -1)
		node = -1;
	if (pref->node == node)
		return 0;
	rc = t->ops->prefer_node(t, node);
	if (!rc)
		pref->node = node;
	return rc;
}
