/*
 * st_mlock.c - mlockall while pages are compressed.
 *   all       mlockall(MCL_CURRENT | MCL_FUTURE): returns 0; every byte is
 *             back; the program's memory is locked and uzswap's is not
 *             (its reservations are gigabytes of address space: locked,
 *             they would be populated whole); a mapping made afterwards
 *             is locked and never taken out; after munlockall, pages are
 *             taken out again
 *   onfault   mlockall(MCL_CURRENT | MCL_ONFAULT): every byte is back, and
 *             nothing touched since is taken out
 * CAP_IPC_LOCK is dropped first, and RLIMIT_MEMLOCK raised to its hard
 * value (at most MEMLOCK_LIMIT), so that a shim that let mlockall lock its
 * own reservations fails here with ENOMEM instead of filling the machine.
 */
#include "shimtest.h"

#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>

/* Small: without CAP_SYS_RESOURCE (containers) the lock limit cannot be
 * raised above its hard value, 8 MiB by default, and the program's own
 * libraries, stack and heap take about 3.5 MiB of it. */
#define NPAGES (2 * ST_MIB / ST_PAGE)
#define LEN (NPAGES * ST_PAGE)
#define FRESH_PAGES (ST_MIB / ST_PAGE)
#define FRESH_LEN (FRESH_PAGES * ST_PAGE)
#define MEMLOCK_LIMIT (256 * ST_MIB)
#define RSS_BOUND (128 * ST_MIB)

/* A line of /proc/self/status, "Name:   N kB", in bytes. */
static size_t status_bytes(const char *name)
{
	char line[256];
	size_t kb = 0, n = strlen(name);
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		st_fail("fopen /proc/self/status: %s", strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, n) && line[n] == ':')
			kb = strtoull(line + n + 1, NULL, 10);
	fclose(f);
	return kb * 1024;
}

static void limit_locking(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
		st_fail("getrlimit RLIMIT_MEMLOCK: %s", strerror(errno));
	rl.rlim_cur = rl.rlim_max < MEMLOCK_LIMIT ? rl.rlim_max : MEMLOCK_LIMIT;
	if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
		st_fail("setrlimit RLIMIT_MEMLOCK: %s", strerror(errno));
	if (syscall(SYS_capget, &h, d) != 0)
		st_fail("capget: %s", strerror(errno));
	d[0].effective &= ~(1u << CAP_IPC_LOCK);
	if (syscall(SYS_capset, &h, d) != 0)
		st_fail("capset: %s", strerror(errno));
}

/* Everything in [p, p+len) stays resident for a while: never taken out. */
static void stays_resident(const char *what, const void *p, size_t len)
{
	for (int i = 0; i < 20; i++) {
		size_t res = st_resident(p, len);

		if (res != len / ST_PAGE)
			st_fail("%s: locked, yet %zu of %zu pages were taken out",
				what, len / ST_PAGE - res, len / ST_PAGE);
		st_sleep_ms(100);
	}
}

static void t_all(char *data)
{
	char *fresh;

	if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0)
		st_fail("mlockall(MCL_CURRENT | MCL_FUTURE): %s", strerror(errno));
	if (st_rss() > RSS_BOUND)
		st_fail("RSS %zu MiB after mlockall: uzswap's reservations were "
			"populated", st_rss() / ST_MIB);
	if (status_bytes("VmLck") < LEN)
		st_fail("VmLck %zu KiB: the program's memory is not locked",
			status_bytes("VmLck") / 1024);
	st_verify("data after mlockall", data, NPAGES, 1, 0, 0);
	stays_resident("data", data, LEN);
	fresh = st_map(FRESH_LEN);
	st_fill(fresh, FRESH_PAGES, 2, 0, 0);
	stays_resident("a mapping made after MCL_FUTURE", fresh, FRESH_LEN);
	st_verify("fresh", fresh, FRESH_PAGES, 2, 0, 0);
	if (st_rss() > RSS_BOUND)
		st_fail("RSS %zu MiB: uzswap's later reservations were populated",
			st_rss() / ST_MIB);
	if (munlockall() != 0)
		st_fail("munlockall: %s", strerror(errno));
	st_wait_out("fresh after munlockall", fresh, FRESH_LEN);
	st_verify("fresh after munlockall", fresh, FRESH_PAGES, 2, 0, 0);
}

static void t_onfault(char *data)
{
	if (mlockall(MCL_CURRENT | MCL_ONFAULT) != 0)
		st_fail("mlockall(MCL_CURRENT | MCL_ONFAULT): %s", strerror(errno));
	st_verify("data after mlockall", data, NPAGES, 1, 0, 0);
	stays_resident("data", data, LEN);
	if (st_rss() > RSS_BOUND)
		st_fail("RSS %zu MiB after mlockall", st_rss() / ST_MIB);
}

int main(int argc, char **argv)
{
	const char *mode = st_mode(argc, argv, "all");
	char *data;

	st_init(argv[0]);
	limit_locking();
	data = st_map(LEN);
	st_fill(data, NPAGES, 1, 0, 0);
	st_wait_out("data", data, LEN);
	if (!strcmp(mode, "all"))
		t_all(data);
	else if (!strcmp(mode, "onfault"))
		t_onfault(data);
	else
		st_fail("unknown mode %s", mode);
	st_note("%s: ok, VmLck %zu KiB, RSS %zu MiB", mode,
		status_bytes("VmLck") / 1024, st_rss() / ST_MIB);
	return 0;
}
