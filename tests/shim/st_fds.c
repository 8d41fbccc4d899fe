/*
 * st_fds.c - a program that closes or replaces descriptors it did not open,
 * as daemons do, while pages are compressed.  Were uzswap's userfaultfd
 * closed, every page taken out would read as zeros, with no fault.
 *   closefrom    closefrom(3)
 *   close_loop   close() on every number from 3 to 4095
 *   close_range  close_range(3, ~0U, 0)
 *   dup2         dup2() onto each of uzswap's descriptors: refused (EBUSY),
 *                where one of the program's own numbers is not
 *   low          none of uzswap's descriptors sits below 64, where shells
 *                and programs pick fixed numbers (`exec 3>file`)
 * After each, every byte is checked, and a second buffer must be taken out
 * and read back too: the engine still works.
 */
#include "shimtest.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/syscall.h>

#define NPAGES (8 * ST_MIB / ST_PAGE)
#define LEN (NPAGES * ST_PAGE)
#define LOW_NUMBERS 64

static char *data, *later;

/* Is fd one of uzswap's (a userfaultfd, eventfd, its /proc files or its
 * stats memfd)?  The program opened none of these. */
static bool is_uzswap_fd(int fd)
{
	char path[64], target[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = 0;
	return strstr(target, "[userfaultfd]") || strstr(target, "[eventfd]") ||
	       strstr(target, "uzswap-stats") || strstr(target, "/pagemap") ||
	       strstr(target, "/statm") || strstr(target, "/maps");
}

/* uzswap's descriptors, up to max of them; how many. */
static int uzswap_fds(int *out, int max)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!d)
		st_fail("opendir /proc/self/fd: %s", strerror(errno));
	while ((de = readdir(d)) && n < max) {
		int fd = atoi(de->d_name);

		if (de->d_name[0] != '.' && fd != dirfd(d) && is_uzswap_fd(fd))
			out[n++] = fd;
	}
	closedir(d);
	return n;
}

static void t_closefrom(void)
{
	closefrom(3);
}

static void t_close_loop(void)
{
	for (int fd = 3; fd < 4096; fd++)
		close(fd);
}

static void t_close_range(void)
{
	if (close_range(3, ~0u, 0) != 0)
		st_fail("close_range(3, ~0U, 0): %s", strerror(errno));
}

static void t_dup2(void)
{
	int fds[32], n = uzswap_fds(fds, 32), mine = open("/dev/null", O_RDONLY);

	if (mine < 0)
		st_fail("open /dev/null: %s", strerror(errno));
	for (int i = 0; i < n; i++) {
		errno = 0;
		if (dup2(mine, fds[i]) != -1 || errno != EBUSY)
			st_fail("dup2 onto uzswap's descriptor %d: %s, not EBUSY",
				fds[i], errno ? strerror(errno) : "done");
		if (dup3(mine, fds[i], O_CLOEXEC) != -1 || errno != EBUSY)
			st_fail("dup3 onto uzswap's descriptor %d: not EBUSY", fds[i]);
	}
	/* The program's own numbers are its own to replace. */
	if (dup2(mine, 50) != 50 || dup3(mine, 51, O_CLOEXEC) != 51)
		st_fail("dup2/dup3 onto free numbers: %s", strerror(errno));
	close(50);
	close(51);
	close(mine);
	st_note("dup2: %d of uzswap's descriptors kept", n);
}

static void t_low(void)
{
	int fds[32], n = uzswap_fds(fds, 32);

	if (n < 3)
		st_fail("low: only %d uzswap descriptors found: is the shim "
			"preloaded?", n);
	for (int i = 0; i < n; i++)
		if (fds[i] < LOW_NUMBERS)
			st_fail("low: uzswap holds descriptor %d, below %d",
				fds[i], LOW_NUMBERS);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {
		{ "closefrom", t_closefrom }, { "close_loop", t_close_loop },
		{ "close_range", t_close_range }, { "dup2", t_dup2 },
		{ "low", t_low },
	};
	const char *mode = st_mode(argc, argv, "closefrom");
	int before[32], after[32], nbefore, nafter;
	bool any = false;

	st_init(argv[0]);
	data = st_map(LEN);
	later = st_map(LEN);
	st_fill(data, NPAGES, 1, 0, 0);
	st_wait_out("data", data, LEN);
	nbefore = uzswap_fds(before, 32);
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (strcmp(mode, tests[i].name))
			continue;
		tests[i].fn();
		any = true;
	}
	if (!any)
		st_fail("unknown mode %s", mode);
	st_verify("data after the descriptors were closed", data, NPAGES, 1, 0, 0);
	nafter = uzswap_fds(after, 32);
	if (nafter != nbefore || memcmp(before, after, sizeof(int) * (size_t)nafter))
		st_fail("%s: uzswap held %d descriptors before, %d after", mode,
			nbefore, nafter);
	/* Still at work: new data goes out and comes back. */
	st_fill(later, NPAGES, 2, 0, 0);
	st_wait_out("later", later, LEN);
	st_verify("later", later, NPAGES, 2, 0, 0);
	st_note("%s: ok, %d uzswap descriptors", mode, nafter);
	return 0;
}
