/*
 * test_linkage.c - how the built libraries are linked, where that decides
 * whether uzswap's own threads can hang.
 *
 * A lazily bound call runs the dynamic linker's symbol lookup on the
 * calling thread.  The lookup reads link maps the dynamic linker keeps in
 * the program's anonymous memory, which uzswap may have taken out; on the
 * fault thread that fault has nobody to serve it.  So every library whose
 * code runs on our threads must be bound at load (-z now).  (The libraries
 * we call into, liblzo2 and libc, either are bound at load too or are only
 * reached through eagerly resolved entries: see Makefile.am.)
 *
 * Reads the ELF files of this build tree; a library not built (a static
 * only configuration) is skipped, saying so.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef UZS_BUILDDIR
#error "build with -DUZS_BUILDDIR=\"$(abs_top_builddir)\""
#endif

#define SHIM UZS_BUILDDIR "/preload/.libs/libuzswap_preload.so"
#define LIBRARY UZS_BUILDDIR "/lib/.libs/libuzswap.so"

struct dyn_flags {
	bool found;             /* a PT_DYNAMIC segment was read */
	uint64_t flags, flags_1;
	bool textrel;
};

/* The dynamic section's DT_FLAGS and DT_FLAGS_1 of a 64-bit ELF file. */
static struct dyn_flags read_dyn_flags(const char *path)
{
	struct dyn_flags out = { 0 };
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
	cr_assert(fstat(fd, &st) == 0);
	cr_assert((size_t)st.st_size >= sizeof(Elf64_Ehdr), "%s: too short", path);
	const unsigned char *base =
		mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	cr_assert(base != MAP_FAILED);
	close(fd);

	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
	cr_assert(memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0, "%s: not ELF", path);
	cr_assert(eh->e_ident[EI_CLASS] == ELFCLASS64, "%s: not ELF64", path);
	cr_assert(eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) <=
		  (uint64_t)st.st_size, "%s: program headers cut off", path);

	const Elf64_Phdr *ph = (const Elf64_Phdr *)(base + eh->e_phoff);
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_DYNAMIC)
			continue;
		cr_assert(ph[i].p_offset + ph[i].p_filesz <= (uint64_t)st.st_size);
		const Elf64_Dyn *d = (const Elf64_Dyn *)(base + ph[i].p_offset);
		size_t n = ph[i].p_filesz / sizeof(*d);
		out.found = true;
		for (size_t k = 0; k < n && d[k].d_tag != DT_NULL; k++) {
			if (d[k].d_tag == DT_FLAGS)
				out.flags = d[k].d_un.d_val;
			else if (d[k].d_tag == DT_FLAGS_1)
				out.flags_1 = d[k].d_un.d_val;
			else if (d[k].d_tag == DT_TEXTREL)
				out.textrel = true;
		}
	}
	munmap((void *)base, (size_t)st.st_size);
	return out;
}

static void assert_bound_at_load(const char *path)
{
	if (access(path, R_OK) != 0)
		cr_skip_test("%s not built (static-only configuration)", path);

	struct dyn_flags f = read_dyn_flags(path);

	cr_assert(f.found, "%s: no dynamic section", path);
	cr_expect((f.flags & DF_BIND_NOW) || (f.flags_1 & DF_1_NOW),
		  "%s is bound lazily: link it with -z now", path);
	cr_expect(!f.textrel, "%s has text relocations", path);
}

Test(linkage, shim_binds_every_symbol_at_load)
{
	assert_bound_at_load(SHIM);
}

Test(linkage, library_binds_every_symbol_at_load)
{
	assert_bound_at_load(LIBRARY);
}
