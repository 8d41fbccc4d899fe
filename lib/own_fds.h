/*
 * own_fds.h - the descriptors uzswap holds in the program's table (own_fds.c).
 */
#ifndef UZS_OWN_FDS_H
#define UZS_OWN_FDS_H

#include <stdbool.h>

/* Most descriptors one engine holds at once (it holds ten). */
#define UZS_OWN_FDS_MAX 16

/* Take fd as ours: moved out of the numbers programs use (best effort)
 * and remembered.  Returns the descriptor to use from now on, which is fd
 * itself if it could not be moved; a negative fd is returned unchanged. */
int uzs_fd_own(int fd);

/* Forget fd, then close it.  Nothing for a negative fd. */
void uzs_fd_close(int fd);

/* Is fd one of ours?  Async-signal-safe: a few atomic loads. */
bool uzs_fd_is_own(int fd);

/* Ours, in increasing order, into out (UZS_OWN_FDS_MAX entries); how
 * many.  Async-signal-safe. */
unsigned uzs_fds_owned(int *out);

#endif
