/*
 * test_uffd.c - what the engine relies on the kernel's userfaultfd to do,
 * checked on the running kernel, with uffd.c's wrappers.
 *
 * uzs_uffd_registered() answers "is this range inside one registered
 * mapping?" by a UFFDIO_COPY from an unreadable page, relying on the kernel
 * to check the destination before it reads the source.  These tests hold
 * the kernel to that, and to never mapping anything while answering.  They
 * also pin down the kernel behaviour that makes the question necessary:
 * UFFDIO_REGISTER succeeds over a hole.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testutil.h"
#include "uffd.h"

#define PG 4096u

static struct uzs_uffd u = { .fd = -1 };

static void open_uffd(uint64_t want)
{
	char err[256];

	if (uzs_uffd_open(&u, want, 0, err, sizeof(err)) != 0)
		cr_skip_test("%s", err);
}

static void close_uffd(void)
{
	uzs_uffd_close(&u);
}

static char *map_pages(size_t n)
{
	char *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(p, MAP_FAILED, "mmap: %s", strerror(errno));
	return p;
}

static void register_pages(char *p, size_t n)
{
	int rc = uzs_uffd_register(&u, (uintptr_t)p, n * PG,
				   UFFDIO_REGISTER_MODE_MISSING);

	cr_assert_eq(rc, 0, "UFFDIO_REGISTER: %s", strerror(-rc));
}

static int registered(const char *p, size_t n)
{
	return uzs_uffd_registered(&u, (uintptr_t)p, n * PG);
}

static size_t resident(const char *p, size_t n)
{
	unsigned char vec[64];
	size_t k = 0;

	cr_assert_leq(n, sizeof(vec));
	cr_assert_eq(mincore((void *)p, n * PG, vec), 0, "mincore: %s",
		     strerror(errno));
	for (size_t i = 0; i < n; i++)
		k += vec[i] & 1;
	return k;
}

TestSuite(uffd, .init = NULL, .fini = close_uffd);

/* Present and missing pages alike; the answer maps nothing and changes no
 * byte. */
Test(uffd, registered_mapping_is_registered)
{
	char *p = map_pages(8);
	unsigned char want[4 * PG];

	open_uffd(0);
	tu_pattern(want, sizeof(want), 7);
	memcpy(p, want, sizeof(want));          /* pages 0-3 present */
	register_pages(p, 8);
	cr_expect_eq(registered(p, 8), 1);
	cr_expect_eq(registered(p, 4), 1);
	cr_expect_eq(registered(p + 4 * PG, 4), 1);
	cr_expect_eq(registered(p + 7 * PG, 1), 1);
	cr_expect_eq(resident(p, 8), 4, "the question mapped a page");
	cr_expect_eq(memcmp(p, want, sizeof(want)), 0, "the question changed "
		     "a byte");
	munmap(p, 8 * PG);
}

Test(uffd, unregistered_mapping_is_not)
{
	char *p = map_pages(4);

	open_uffd(0);
	memset(p, 1, PG);
	cr_expect_eq(registered(p, 4), 0);
	cr_expect_eq(registered(p, 1), 0);
	cr_expect_eq(resident(p, 4), 1);
	munmap(p, 4 * PG);
}

/*
 * The kernel registers a range with a hole in it, and the mapping later
 * made in the hole is not registered: the case of a brk trim between
 * reading /proc/self/maps and registering (tests/shim/st_brk.c).
 */
Test(uffd, hole_is_registered_around_not_in)
{
	char *p = map_pages(8), *q;

	open_uffd(0);
	cr_assert_eq(munmap(p + 5 * PG, PG), 0);
	register_pages(p, 8);                   /* succeeds over the hole */
	cr_expect_eq(registered(p, 5), 1);
	cr_expect_eq(registered(p + 6 * PG, 2), 1);
	cr_expect_eq(registered(p, 8), 0, "a range over a hole");
	cr_expect_eq(registered(p + 5 * PG, 1), 0, "the hole itself");
	q = mmap(p + 5 * PG, PG, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	cr_assert_eq(q, p + 5 * PG, "mmap in the hole: %s", strerror(errno));
	cr_expect_eq(registered(q, 1), 0, "a mapping made in the hole");
	cr_expect_eq(registered(p, 8), 0);
	munmap(p, 8 * PG);
}

/* Two registered mappings side by side are not one: callers split runs. */
Test(uffd, two_registered_mappings_are_not_one)
{
	char *p = map_pages(8);

	open_uffd(0);
	register_pages(p, 8);
	cr_assert_eq(mprotect(p + 4 * PG, 4 * PG, PROT_READ), 0);
	cr_expect_eq(registered(p, 4), 1);
	cr_expect_eq(registered(p + 4 * PG, 4), 1);
	cr_expect_eq(registered(p, 8), 0);
	munmap(p, 8 * PG);
}

static void *unmap_thread(void *arg)
{
	munmap(arg, 4 * PG);
	return NULL;
}

/* While a layout event is unread the kernel will not say: -EAGAIN, never a
 * guess. */
Test(uffd, unread_event_gives_eagain)
{
	char *p = map_pages(4);
	struct pollfd pfd;
	struct uffd_msg msg;
	pthread_t t;

	open_uffd(UFFD_FEATURE_EVENT_UNMAP);
	if (!(u.features & UFFD_FEATURE_EVENT_UNMAP))
		cr_skip_test("no UFFD_FEATURE_EVENT_UNMAP here");
	register_pages(p, 4);
	cr_assert_eq(pthread_create(&t, NULL, unmap_thread, p), 0);
	pfd = (struct pollfd){ .fd = u.fd, .events = POLLIN };
	cr_assert_eq(poll(&pfd, 1, 10000), 1, "no UNMAP event");
	/* The munmap is done and waits for us to read its event. */
	cr_expect_eq(registered(p, 4), -EAGAIN);
	cr_assert_eq(read(u.fd, &msg, sizeof(msg)), (ssize_t)sizeof(msg));
	cr_expect_eq(msg.event, UFFD_EVENT_UNMAP);
	pthread_join(t, NULL);
	cr_expect_eq(registered(p, 4), 0, "unmapped");
}
