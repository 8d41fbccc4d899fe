/*
 * test_numa.c - the NUMA pool policy on injected topologies (1, 2 and 4
 * nodes, a CPU-only node, NUMA off, bad node numbers, failing queries), the
 * preferred-node cache, and smoke tests of the real backend on this
 * machine.
 *
 * The fake topology places a "page" by its address: page k (at k * 4096)
 * is on node fake_map[k % 16], so a test writes the layout it wants.
 */
#define _GNU_SOURCE 1
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <numaif.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "numa_topology.h"

static int fake_map[16];
static unsigned page_node_calls;

static int page_node(const void *page, void *arg)
{
	page_node_calls++;
	return fake_map[((uintptr_t)page >> 12) % 16];
}

static int cpu_node(int cpu, void *arg)
{
	const unsigned *nnodes = arg;

	return cpu >= 0 && cpu < 64 ? cpu % (int)*nnodes : -EINVAL;
}

static struct uzs_numa_fake fake;
static struct uzs_numa_topology topo;
static struct uzs_numa_policy pol;

/* A fake machine of nnodes nodes, those in mem having memory. */
static void machine(unsigned nnodes, uint64_t mem)
{
	fake = (struct uzs_numa_fake){
		.nnodes = nnodes, .mem_nodes = mem, .page_node = page_node,
		.cpu_node = cpu_node, .arg = &fake.nnodes, .preferred = -99,
	};
	page_node_calls = 0;
	cr_assert_eq(uzs_numa_topology_fake(&topo, &fake), 0);
}

static void *page(unsigned k)
{
	return (void *)((uintptr_t)k << 12);
}

/* The pools of pages 0..n-1 by the policy, checked against want(k). */
static void check_pages(size_t n, int (*want)(unsigned k))
{
	void *pages[1000];
	uint8_t pools[1000];

	cr_assert_leq(n, 1000);
	for (unsigned k = 0; k < n; k++)
		pages[k] = page(k);
	memset(pools, 0xee, sizeof(pools));
	cr_assert_eq(uzs_numa_pools_of_pages(&pol, &topo, pages, n, pools), 0);
	for (unsigned k = 0; k < n; k++) {
		cr_assert_lt(pools[k], pol.npools);
		cr_assert_eq(pools[k], want(k), "page %u: pool %u, wanted %d",
			     k, pools[k], want(k));
	}
}

static int pool_zero(unsigned k)
{
	return 0;
}

/* ---------------------------------------------------------- topologies */

Test(numa, fake_refuses_impossible_node_counts)
{
	struct uzs_numa_fake f = { .nnodes = 0, .mem_nodes = 1 };

	cr_assert_eq(uzs_numa_topology_fake(&topo, &f), -EINVAL);
	f.nnodes = UZS_NUMA_MAX_NODES + 1;
	cr_assert_eq(uzs_numa_topology_fake(&topo, &f), -EINVAL);
	f.nnodes = UZS_NUMA_MAX_NODES;
	f.mem_nodes = ~0ull;
	cr_assert_eq(uzs_numa_topology_fake(&topo, &f), 0);
	cr_assert_eq(topo.mem_nodes, ~0ull);
}

Test(numa, memory_on_nodes_that_do_not_exist_is_ignored)
{
	machine(2, 0xff);
	cr_assert_eq(topo.mem_nodes, 0x3);
	uzs_numa_policy_init(&pol, &topo, true);
	cr_assert_eq(pol.npools, 2);
}

Test(numa, one_node_one_unbound_pool)
{
	machine(1, 1);
	uzs_numa_policy_init(&pol, &topo, true);
	cr_assert_eq(pol.npools, 1);
	cr_assert_eq(pol.pool_node[0], -1, "no binding on one node");
	cr_assert_eq(uzs_numa_pool_of_node(&pol, 0), 0);
	cr_assert_eq(uzs_numa_restore_node(&pol, 0), -1);
	check_pages(100, pool_zero);
	cr_assert_eq(page_node_calls, 0, "one pool: nothing to ask");
}

static int two_nodes_want(unsigned k)
{
	return k % 16 < 8 ? 0 : 1;
}

Test(numa, two_nodes_two_bound_pools)
{
	machine(2, 0x3);
	for (int i = 0; i < 16; i++)
		fake_map[i] = i < 8 ? 0 : 1;
	uzs_numa_policy_init(&pol, &topo, true);
	cr_assert_eq(pol.npools, 2);
	cr_assert_eq(pol.pool_node[0], 0);
	cr_assert_eq(pol.pool_node[1], 1);
	cr_assert_eq(uzs_numa_pool_of_node(&pol, 0), 0);
	cr_assert_eq(uzs_numa_pool_of_node(&pol, 1), 1);
	cr_assert_eq(uzs_numa_restore_node(&pol, 0), 0);
	cr_assert_eq(uzs_numa_restore_node(&pol, 1), 1);
	check_pages(16, two_nodes_want);
	cr_assert_eq(page_node_calls, 16);
}

static int four_nodes_want(unsigned k)
{
	return (int)(k % 16) % 4;
}

Test(numa, four_nodes_four_pools_in_batches_beyond_one_query)
{
	machine(4, 0xf);
	for (int i = 0; i < 16; i++)
		fake_map[i] = i % 4;
	uzs_numa_policy_init(&pol, &topo, true);
	cr_assert_eq(pol.npools, 4);
	for (int n = 0; n < 4; n++) {
		cr_assert_eq(pol.pool_node[n], n);
		cr_assert_eq(uzs_numa_restore_node(&pol, (unsigned)n), n);
	}
	check_pages(1000, four_nodes_want);     /* 16 queries of up to 64 */
	cr_assert_eq(page_node_calls, 1000);
}

static int cpu_only_want(unsigned k)
{
	/* Nodes 0, 1, 3 have pools 0, 1, 2; node 2 has no memory. */
	static const int pool_of[4] = { 0, 1, UZS_NUMA_FALLBACK_POOL, 2 };

	return pool_of[k % 4];
}

Test(numa, a_cpu_only_node_gets_no_pool)
{
	machine(4, 0xb);
	for (int i = 0; i < 16; i++)
		fake_map[i] = i % 4;
	uzs_numa_policy_init(&pol, &topo, true);
	cr_assert_eq(pol.npools, 3);
	cr_assert_eq(pol.pool_node[0], 0);
	cr_assert_eq(pol.pool_node[1], 1);
	cr_assert_eq(pol.pool_node[2], 3);
	cr_assert_eq(pol.node_pool[2], -1);
	cr_assert_eq(uzs_numa_restore_node(&pol, 2), 3);
	check_pages(64, cpu_only_want);
}

Test(numa, two_nodes_but_one_with_memory_is_one_pool)
{
	machine(2, 0x2);
	uzs_numa_policy_init(&pol, &topo, true);
	cr_assert_eq(pol.npools, 1);
	cr_assert_eq(pol.pool_node[0], -1);
}

Test(numa, numa_off_is_one_unbound_pool)
{
	machine(4, 0xf);
	for (int i = 0; i < 16; i++)
		fake_map[i] = i % 4;
	uzs_numa_policy_init(&pol, &topo, false);
	cr_assert_eq(pol.npools, 1);
	cr_assert_eq(pol.pool_node[0], -1);
	for (int n = -1; n < 5; n++)
		cr_assert_eq(uzs_numa_pool_of_node(&pol, n), 0);
	cr_assert_eq(uzs_numa_restore_node(&pol, 0), -1);
	check_pages(100, pool_zero);
	cr_assert_eq(page_node_calls, 0);
}

/* ------------------------------------------------------ bad node numbers */

Test(numa, bad_node_numbers_go_to_the_fallback_pool)
{
	static const int bad[] = {
		-1, -ENOENT, -EFAULT, 4, 63, 64, 65, 1000, INT_MAX, INT_MIN,
	};

	machine(4, 0xf);
	uzs_numa_policy_init(&pol, &topo, true);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(uzs_numa_pool_of_node(&pol, bad[i]),
			     UZS_NUMA_FALLBACK_POOL, "node %d", bad[i]);
	cr_assert_eq(uzs_numa_restore_node(&pol, 4), -1, "bad pool index");
	cr_assert_eq(uzs_numa_restore_node(&pol, UINT_MAX), -1);
}

static int bad_pages_want(unsigned k)
{
	/* Map below: pages 0-3 good (nodes 0-3), the rest bad. */
	return k % 16 < 4 ? (int)(k % 16) : UZS_NUMA_FALLBACK_POOL;
}

Test(numa, pages_the_kernel_cannot_place_go_to_the_fallback_pool)
{
	static const int map[16] = {
		0, 1, 2, 3, -ENOENT, -EFAULT, -EACCES, 4, 99, 64, -1, INT_MAX,
		INT_MIN, 1000, -ENOMEM, 5,
	};

	machine(4, 0xf);
	memcpy(fake_map, map, sizeof(map));
	uzs_numa_policy_init(&pol, &topo, true);
	check_pages(160, bad_pages_want);
}

Test(numa, a_failed_query_puts_every_page_in_the_fallback_pool)
{
	void *pages[100];
	uint8_t pools[100];

	machine(2, 0x3);
	fake.page_nodes_error = -ENOSYS;
	for (unsigned k = 0; k < 100; k++)
		pages[k] = page(k);
	uzs_numa_policy_init(&pol, &topo, true);
	memset(pools, 0xee, sizeof(pools));
	cr_assert_eq(uzs_numa_pools_of_pages(&pol, &topo, pages, 100, pools),
		     -ENOSYS);
	for (unsigned k = 0; k < 100; k++)
		cr_assert_eq(pools[k], UZS_NUMA_FALLBACK_POOL);
	cr_assert_eq(uzs_numa_pools_of_pages(&pol, &topo, pages, 0, pools), 0);
}

/* ----------------------------------------------- CPUs and preferences */

Test(numa, cpu_and_current_node_come_from_the_topology)
{
	machine(4, 0xf);
	cr_assert_eq(topo.ops->cpu_node(&topo, 6), 2);
	cr_assert_eq(topo.ops->cpu_node(&topo, -1), -EINVAL);
	fake.current_cpu = 7;
	cr_assert_eq(topo.ops->current_node(&topo), 3);
}

Test(numa, prefer_asks_the_kernel_only_when_the_node_changes)
{
	struct uzs_numa_pref pref = UZS_NUMA_PREF_INIT;

	machine(4, 0xf);
	cr_assert_eq(uzs_numa_prefer(&topo, &pref, 2), 0);
	cr_assert_eq(uzs_numa_prefer(&topo, &pref, 2), 0);
	cr_assert_eq(uzs_numa_prefer(&topo, &pref, 2), 0);
	cr_assert_eq(fake.prefer_calls, 1);
	cr_assert_eq(fake.preferred, 2);
	cr_assert_eq(uzs_numa_prefer(&topo, &pref, 3), 0);
	cr_assert_eq(uzs_numa_prefer(&topo, &pref, -1), 0);
	cr_assert_eq(uzs_numa_prefer(&topo, &pref, -5), 0, "any negative: default");
	cr_assert_eq(fake.prefer_calls, 3);
	cr_assert_eq(fake.preferred, -1);
	/* A refused node leaves the cache alone, so the next call retries. */
	cr_assert_eq(uzs_numa_prefer(&topo, &pref, 9), -EINVAL);
	cr_assert_eq(pref.node, -1);
	cr_assert_eq(uzs_numa_prefer(&topo, &pref, 1), 0);
	cr_assert_eq(fake.prefer_calls, 4);
}

Test(numa, the_first_preference_is_always_set)
{
	struct uzs_numa_pref pref = UZS_NUMA_PREF_INIT;

	machine(2, 0x3);
	cr_assert_eq(uzs_numa_prefer(&topo, &pref, -1), 0);
	cr_assert_eq(fake.prefer_calls, 1, "the thread's policy was unknown");
}

/* ------------------------------------------------- the real machine */

Test(numa, real_topology_answers_on_this_machine)
{
	static struct uzs_numa_topology real;
	struct uzs_numa_pref pref = UZS_NUMA_PREF_INIT;
	struct uzs_numa_policy p;
	unsigned char *mem;
	void *pages[2];
	int nodes[2] = { -99, -99 }, cur, cpu;

	uzs_numa_topology_real(&real);
	cr_assert_geq(real.nnodes, 1);
	cr_assert_leq(real.nnodes, UZS_NUMA_MAX_NODES);
	cr_assert_neq(real.mem_nodes, 0);

	mem = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	mem[0] = 1;                     /* the first page present, not the second */
	pages[0] = mem;
	pages[1] = mem + 4096;
	cr_assert_eq(real.ops->page_nodes(&real, pages, 2, nodes), 0);
	cr_assert_geq(nodes[0], 0);
	cr_assert_lt(nodes[0], (int)real.nnodes);
	cr_assert(real.mem_nodes & (1ull << nodes[0]));
	cr_assert_lt(nodes[1], 0, "an untouched page is on no node: %d", nodes[1]);
	munmap(mem, 2 * 4096);

	cur = real.ops->current_node(&real);
	cr_assert_geq(cur, 0);
	cpu = sched_getcpu();
	cr_assert_geq(real.ops->cpu_node(&real, cpu), 0);
	cr_assert_eq(real.ops->cpu_node(&real, -1), -EINVAL);
	cr_assert_eq(uzs_numa_prefer(&real, &pref, nodes[0]), 0);
	cr_assert_eq(uzs_numa_prefer(&real, &pref, -1), 0);

	uzs_numa_policy_init(&p, &real, true);
	cr_assert_geq(p.npools, 1);
	cr_assert_eq(p.npools, (unsigned)__builtin_popcountll(real.mem_nodes) > 1
			       ? (unsigned)__builtin_popcountll(real.mem_nodes) : 1u);
	cr_log_info("this machine: %u node(s), memory on %#llx, %u pool(s)",
		    real.nnodes, (unsigned long long)real.mem_nodes, p.npools);
}

/* No preference goes back to the process's own policy (numactl's, say),
 * which the engine's threads inherit, not to the kernel's default. */
Test(numa, real_no_preference_is_the_process_policy)
{
	static struct uzs_numa_topology real;
	struct uzs_numa_pref pref = UZS_NUMA_PREF_INIT;
	unsigned long bind = 1, nodes = 0;
	int mode = -1;

	/* Bound to node 0, which every machine has. */
	cr_assert_eq(syscall(SYS_set_mempolicy, MPOL_BIND, &bind, 65ul), 0);
	uzs_numa_topology_real(&real);
	if (real.ops->prefer_node(&real, 0) != 0)
		cr_skip_test("no NUMA support here");
	cr_assert_eq(syscall(SYS_get_mempolicy, &mode, &nodes, 65ul, NULL, 0ul), 0);
	cr_assert_eq(mode, MPOL_PREFERRED, "preferring a node changes the policy");
	cr_assert_eq(uzs_numa_prefer(&real, &pref, -1), 0);
	cr_assert_eq(syscall(SYS_get_mempolicy, &mode, &nodes, 65ul, NULL, 0ul), 0);
	cr_assert_eq(mode, MPOL_BIND);
	cr_assert_eq(nodes, 1);
}
