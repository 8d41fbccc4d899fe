/*
 * numa_topology.h - which NUMA node things are on, and the pool policy that
 * follows from it.  Internal to the library; see numa_topology.c.
 *
 * A topology answers three questions: which node a page is on, which node a
 * CPU (or the calling thread) is on, and (as an action) "make my next page
 * allocations prefer node N".  The real backend asks the kernel (libnuma at
 * setup, then raw system calls); the fake backend answers from functions a
 * unit test gives it, so the policy can be tested with 1, 2 or 4 nodes on a
 * one-node machine.
 *
 * The policy turns a topology and UZSWAP_NUMA into the number of pools to
 * create, the node each pool's memory is bound to, the pool each page goes
 * to, and the node a faulted page is restored on.
 */
#ifndef UZS_NUMA_TOPOLOGY_H
#define UZS_NUMA_TOPOLOGY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Nodes the policy knows, and so pools at most.  64 keeps node sets in one
 * word; a machine with more nodes has its nodes 64 and up treated as
 * unknown (their pages go to the fallback pool).
 */
#define UZS_NUMA_MAX_NODES 64
/* CPUs whose node the real backend caches (the rest: node unknown). */
#define UZS_NUMA_MAX_CPUS 4096

struct uzs_numa_topology;

struct uzs_numa_ops {
	/* nodes[i] = the node of the page at pages[i], or a negative errno
	 * (-ENOENT: not present).  Returns 0, or -errno if nothing was
	 * learned (then nodes[] is untouched). */
	int (*page_nodes)(const struct uzs_numa_topology *t, void *const *pages,
			  size_t n, int *nodes);
	/* The node of a CPU, or -EINVAL. */
	int (*cpu_node)(const struct uzs_numa_topology *t, int cpu);
	/* The node the calling thread runs on now, or -errno. */
	int (*current_node)(const struct uzs_numa_topology *t);
	/* Make the calling thread's next page allocations prefer node (they
	 * fall back to other nodes when it is full); -1: no preference, the
	 * policy the process had when the topology was learned (the real
	 * backend; numactl's, say).  Returns 0 or -errno. */
	int (*prefer_node)(const struct uzs_numa_topology *t, int node);
};

struct uzs_numa_topology {
	unsigned nnodes;            /* node ids are 0..nnodes-1 (1..MAX_NODES) */
	uint64_t mem_nodes;         /* bit n: node n has memory this process may
				     * allocate (pools can be bound there) */
	const struct uzs_numa_ops *ops;
	void *priv;                 /* the fake backend's struct uzs_numa_fake */
	int base_mode;              /* real backend: what prefer_node(-1) sets */
	unsigned long base_nodes;   /* (the process's policy at setup) */
	int16_t cpu_node[UZS_NUMA_MAX_CPUS]; /* real backend: -1 unknown */
};

/*
 * The real topology.  Call at setup (libnuma allocates with malloc while
 * answering), on the thread that starts the service threads, whose memory
 * policy they inherit and prefer_node(-1) restores; afterwards the ops make
 * only system calls (move_pages, getcpu, set_mempolicy) and are safe on the
 * service threads.  Without NUMA support (numa_available() < 0) it is one
 * node holding everything.
 */
void uzs_numa_topology_real(struct uzs_numa_topology *t);

/* What a test says the machine looks like. */
struct uzs_numa_fake {
	unsigned nnodes;
	uint64_t mem_nodes;
	int (*page_node)(const void *page, void *arg);  /* node or -errno */
	int (*cpu_node)(int cpu, void *arg);            /* node or -EINVAL */
	int current_cpu;            /* current_node() answers cpu_node(this) */
	int page_nodes_error;       /* if set, page_nodes() fails with it */
	int preferred;              /* recorded: the last prefer_node() */
	unsigned prefer_calls;      /* recorded: how many prefer_node() */
	void *arg;
};

/* Returns 0, or -EINVAL if nnodes is 0 or above UZS_NUMA_MAX_NODES. */
int uzs_numa_topology_fake(struct uzs_numa_topology *t, struct uzs_numa_fake *f);

/* ------------------------------------------------------------- policy */

struct uzs_numa_policy {
	unsigned npools;            /* pools to create, >= 1 */
	int pool_node[UZS_NUMA_MAX_NODES];    /* node pool i is bound to
					       * (uzs_pool_config.numa_node),
					       * -1: not bound */
	int8_t node_pool[UZS_NUMA_MAX_NODES]; /* pool of node n, -1: none */
};

/* The pool a page of unknown or poolless node goes to. */
#define UZS_NUMA_FALLBACK_POOL 0u

/*
 * One pool per node with memory when numa is on and there are two such
 * nodes or more; else one pool, not bound (binding on a one-node machine
 * buys nothing and fails where NUMA is compiled out).
 */
void uzs_numa_policy_init(struct uzs_numa_policy *p,
			  const struct uzs_numa_topology *t, bool numa);

/* The pool for a page on node (any int: a bad one gives the fallback). */
unsigned uzs_numa_pool_of_node(const struct uzs_numa_policy *p, int node);

/*
 * The pools for n pages about to be compressed: asks the topology once for
 * all of them.  Pages whose node cannot be learned go to the fallback pool.
 * Returns 0, or the topology's -errno (every page then got the fallback).
 */
int uzs_numa_pools_of_pages(const struct uzs_numa_policy *p,
			    const struct uzs_numa_topology *t,
			    void *const *pages, size_t n, uint8_t *pools);

/*
 * The node a page faulted back from pool should be restored on: the node it
 * was compressed from (the pool's node), or -1 for no preference (one
 * pool, or a bad pool index).  See numa_topology.c for why not the faulting
 * thread's node.
 */
int uzs_numa_restore_node(const struct uzs_numa_policy *p, unsigned pool);

/*
 * What a service thread last asked prefer_node() for, so that restoring a
 * run of pages from one node costs one system call, not one per page.
 * Start it with UZS_NUMA_PREF_INIT; one per thread.
 */
struct uzs_numa_pref {
	int node;                   /* -1 default; -2 not known yet */
};
#define UZS_NUMA_PREF_INIT { -2 }

/* Prefer node (-1: default) for the calling thread's next allocations,
 * unless it already does.  Returns 0 or the topology's -errno. */
int uzs_numa_prefer(const struct uzs_numa_topology *t,
		    struct uzs_numa_pref *pref, int node);

#endif
