/*
 * uffd.h - opening userfaultfd and the few ioctls the engine issues.
 *
 * All kernel-feature detection happens here, at open time: the engine asks
 * for what it needs, learns what the running kernel has, and never issues an
 * ioctl the kernel did not announce.
 */
#ifndef UZS_UFFD_H
#define UZS_UFFD_H

#include <stddef.h>
#include <stdint.h>

#include "uffd_compat.h"

struct uzs_uffd {
	int fd;
	uint64_t features;      /* granted by UFFDIO_API */
	uint64_t ioctls;
	uintptr_t noaccess;     /* a PROT_NONE page (uzs_uffd_registered) */
};

/* Features without which data could silently go wrong: refuse to run. */
#define UZS_UFFD_REQUIRED (UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP | \
			   UFFD_FEATURE_EVENT_REMAP)

/*
 * Open a userfaultfd that also handles faults raised inside system calls,
 * asking for `want` features (those the kernel lacks are dropped, except
 * `need`, whose absence is an error).  On failure returns -errno and writes
 * one line into err saying what is missing and how to enable it.
 */
int uzs_uffd_open(struct uzs_uffd *u, uint64_t want, uint64_t need,
		  char *err, size_t errlen);
void uzs_uffd_close(struct uzs_uffd *u);

int uzs_uffd_register(struct uzs_uffd *u, uintptr_t start, size_t len,
		      uint64_t mode);
int uzs_uffd_unregister(struct uzs_uffd *u, uintptr_t start, size_t len);

/*
 * Is [start, start+len) inside one mapping registered with u?  1 if so, 0
 * if not (a hole, or a mapping of its own), -EAGAIN while a layout event is
 * unread, another -errno when the kernel will not say.  Changes nothing.
 */
int uzs_uffd_registered(struct uzs_uffd *u, uintptr_t start, size_t len);

/*
 * The resolution ioctls.  Each returns 0 or -errno and reports in *done how
 * many bytes it handled before stopping (a partial batch is normal: EEXIST
 * at a page already present, ENOENT at a hole or a vanished mapping, EAGAIN
 * while a layout event is unread).
 */
int uzs_uffd_copy(struct uzs_uffd *u, uintptr_t dst, const void *src,
		  size_t len, uint64_t mode, size_t *done);
int uzs_uffd_zeropage(struct uzs_uffd *u, uintptr_t dst, size_t len,
		      size_t *done);
int uzs_uffd_move(struct uzs_uffd *u, uintptr_t dst, uintptr_t src,
		  size_t len, uint64_t mode, size_t *done);
int uzs_uffd_wake(struct uzs_uffd *u, uintptr_t start, size_t len);
int uzs_uffd_writeprotect(struct uzs_uffd *u, uintptr_t start, size_t len,
			  int protect);

#endif
