/*
 * st_signal.c - signal handlers touching compressed memory.  A SIGALRM
 * handler (every 2 ms) reads and checks a compressed page and writes
 * another; it runs on an alternate signal stack that is itself in a managed
 * mapping, compressed between signals, so the kernel's own write of the
 * signal frame faults too.  A thread sends SIGUSR1 to the main thread, whose
 * handler does the same, while main sleeps or verifies.
 */
#include "shimtest.h"

#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

#define NPAGES (8 * ST_MIB / ST_PAGE)
#define OUTP (4 * ST_MIB / ST_PAGE)
#define ALTSTACK (256 * 1024)

static char *data, *out, *altstack;
static volatile sig_atomic_t hits, bad_page = -1, bad_off, stop, paused;
static volatile uint64_t sum_all;

static void handler(int sig)
{
	int saved = errno;
	unsigned n = (unsigned)hits;
	size_t k = (size_t)(n * 2654435761u) % NPAGES;
	const char *pg = data + k * ST_PAGE;
	long off = st_check_page(pg, 1, k, 0);

	(void)sig;
	if (off >= 0 && bad_page < 0) {
		bad_off = (sig_atomic_t)off;
		bad_page = (sig_atomic_t)k;
	}
	sum_all += st_sum(pg, ST_PAGE);
	st_fill_page(out + (n % OUTP) * ST_PAGE, 2, n % OUTP, n / OUTP + 1);
	hits = (sig_atomic_t)(n + 1);
	errno = saved;
}

static void *usr1_sender(void *arg)
{
	pthread_t main_thread = *(pthread_t *)arg;

	while (!stop) {
		if (!paused)
			pthread_kill(main_thread, SIGUSR1);
		st_sleep_ms(3);
	}
	return NULL;
}

static void check_handler(void)
{
	if (bad_page >= 0)
		st_verify_page("data read by the signal handler",
			       data + (size_t)bad_page * ST_PAGE, 1,
			       (uint64_t)bad_page, 0);
	if (bad_page >= 0)      /* now right: it was wrong in the handler */
		st_fail("the signal handler saw a wrong byte at %p + %#lx, "
			"which reads right now", (void *)(data + (size_t)bad_page *
			ST_PAGE), (unsigned long)bad_off);
}

static void verify_out(const char *what)
{
	unsigned n = (unsigned)hits;

	for (size_t j = 0; j < OUTP; j++) {
		uint32_t round = j < n ? (uint32_t)((n - 1 - j) / OUTP + 1) : 0;

		st_verify_page(what, out + j * ST_PAGE, 2, j, round);
	}
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	stack_t ss;
	struct itimerval it = { { 0, 2000 }, { 0, 2000 } }, stop_it = { { 0, 0 }, { 0, 0 } };
	pthread_t self = pthread_self(), sender;
	sigset_t block;
	double t0;

	st_init(argv[0]);
	(void)argc;
	data = st_map(NPAGES * ST_PAGE);
	out = st_map(OUTP * ST_PAGE);
	altstack = st_map(ALTSTACK);
	st_fill(data, NPAGES, 1, 0, 0);
	st_fill(out, OUTP, 2, 0, 0);
	memset(altstack, 0x5a, ALTSTACK);      /* compressible, resident */
	st_wait_out("data", data, NPAGES * ST_PAGE);
	st_wait_out("output", out, OUTP * ST_PAGE);
	st_wait_out("alternate signal stack", altstack, ALTSTACK);

	ss = (stack_t){ .ss_sp = altstack, .ss_size = ALTSTACK, .ss_flags = 0 };
	ST_CHECK(sigaltstack(&ss, NULL) == 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = SA_ONSTACK | SA_RESTART;
	sigfillset(&sa.sa_mask);
	ST_CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
	ST_CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);

	/* Only main takes the signals. */
	sigemptyset(&block);
	sigaddset(&block, SIGALRM);
	sigaddset(&block, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	ST_CHECK(pthread_create(&sender, NULL, usr1_sender, &self) == 0);
	pthread_sigmask(SIG_UNBLOCK, &block, NULL);
	ST_CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);

	t0 = st_now();
	for (unsigned round = 0; st_now() - t0 < 3.0; round++) {
		/* Mostly sleep, so the pages are compressed when the handler
		 * comes; sometimes verify, so signals land mid-fault too. */
		st_sleep_ms(150);
		check_handler();
		if (round % 3 == 2)
			st_verify("data, with signals arriving", data, NPAGES, 1, 0, 0);
		if (round % 2 == 1) {
			/* A quiet spell: the signal stack's frame pages go
			 * cold and are taken out before the next signal. */
			paused = 1;
			ST_CHECK(setitimer(ITIMER_REAL, &stop_it, NULL) == 0);
			st_wait_out("alternate signal stack", altstack, ALTSTACK);
			paused = 0;
			ST_CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
		}
	}
	ST_CHECK(setitimer(ITIMER_REAL, &stop_it, NULL) == 0);
	stop = 1;
	ST_CHECK(pthread_join(sender, NULL) == 0);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	check_handler();
	if (hits < 100)
		st_fail("only %d signals handled in 3 s", (int)hits);
	st_note("%d signals handled, checksum %016llx", (int)hits,
		(unsigned long long)sum_all);
	verify_out("pages written by the signal handler");
	st_wait_out("output", out, OUTP * ST_PAGE);
	verify_out("pages written by the signal handler, compressed");
	st_verify("data at the end", data, NPAGES, 1, 0, 0);
	st_note("ok");
	return 0;
}
