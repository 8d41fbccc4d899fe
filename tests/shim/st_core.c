/*
 * st_core.c - a core dump of a process whose pages are compressed holds
 * every byte of them, and none of uzswap's own memory.
 *   abort     the child dies of abort() (a signal raised by a call)
 *   segv      the child dies of a write through a null pointer (a fault)
 * The child fills a buffer, waits until it is taken out, and dies with a
 * core in a fresh directory; the parent finds the buffer in the core's
 * PT_LOAD segments and checks it byte for byte, and checks the core's size:
 * uzswap reserves some hundreds of gigabytes of address space, which a
 * dump would otherwise include.  Needs core_pattern "core" (the test
 * skips otherwise).
 */
#include "shimtest.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define NPAGES (8 * ST_MIB / ST_PAGE)
#define LEN (NPAGES * ST_PAGE)
#define CORE_BOUND ((off_t)1 << 30)

static char dir[] = "/tmp/st_core.XXXXXX", path[64] = "core";

static void child(char *data, bool segv)
{
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };

	if (setrlimit(RLIMIT_CORE, &rl) != 0)
		st_fail("setrlimit RLIMIT_CORE: %s", strerror(errno));
	st_fill(data, NPAGES, 1, 0, 0);
	st_wait_out("child's data", data, LEN);
	if (segv)
		*(volatile int *)(uintptr_t)0 = 1;
	abort();
}

static void pread_all(int fd, void *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, off);

		if (n <= 0)
			st_fail("reading the core: %s", n ? strerror(errno) : "short");
		buf = (char *)buf + n;
		len -= (size_t)n;
		off += n;
	}
}

/* Copy [addr, addr+len) of the dumped memory into out. */
static void read_dumped(int fd, uintptr_t addr, char *out, size_t len)
{
	Elf64_Ehdr eh;

	pread_all(fd, &eh, sizeof(eh), 0);
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) || eh.e_type != ET_CORE)
		st_fail("the core is not an ELF core file");
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;

		pread_all(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * eh.e_phentsize));
		if (ph.p_type != PT_LOAD || addr < ph.p_vaddr ||
		    addr + len > ph.p_vaddr + ph.p_memsz)
			continue;
		if (addr + len > ph.p_vaddr + ph.p_filesz)
			st_fail("the buffer is in a segment the core leaves out");
		pread_all(fd, out, len, (off_t)(ph.p_offset + (addr - ph.p_vaddr)));
		return;
	}
	st_fail("no segment of the core holds the buffer at %p", (void *)addr);
}

int main(int argc, char **argv)
{
	const char *mode = st_mode(argc, argv, "abort");
	char *data, *dumped;
	bool segv = !strcmp(mode, "segv");
	struct stat st;
	int status, fd;
	pid_t pid;

	st_init(argv[0]);
	if (!segv && strcmp(mode, "abort"))
		st_fail("unknown mode %s", mode);
	if (!mkdtemp(dir) || chdir(dir) != 0)
		st_fail("a directory for the core: %s", strerror(errno));
	data = st_map(LEN);
	pid = fork();
	if (pid < 0)
		st_fail("fork: %s", strerror(errno));
	if (pid == 0)
		child(data, segv);
	if (waitpid(pid, &status, 0) != pid)
		st_fail("waitpid: %s", strerror(errno));
	/* Opened, then removed at once: a failing run's core may be huge,
	 * and it goes whatever the outcome. */
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		snprintf(path, sizeof(path), "core.%d", (int)pid);      /* core_uses_pid */
		fd = open(path, O_RDONLY);
	}
	unlink(path);
	if (chdir("/") == 0)
		rmdir(dir);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != (segv ? SIGSEGV : SIGABRT) ||
	    !WCOREDUMP(status))
		st_fail("the child did not die of %s with a core (status %#x)",
			segv ? "SIGSEGV" : "SIGABRT", status);
	if (fd < 0 || fstat(fd, &st) != 0)
		st_fail("no core file in %s", dir);
	if (st.st_size > CORE_BOUND)
		st_fail("the core is %lld MiB: uzswap's reservations were dumped",
			(long long)(st.st_size >> 20));
	dumped = st_map(LEN);
	read_dumped(fd, (uintptr_t)data, dumped, LEN);
	close(fd);
	st_verify("the buffer in the core", dumped, NPAGES, 1, 0, 0);
	st_note("%s: ok, core %lld MiB", mode, (long long)(st.st_size >> 20));
	return 0;
}
