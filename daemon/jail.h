/* SPDX-License-Identifier: MIT */
/* Opening client-named paths below the served root, never outside it. */
#ifndef UPAGERD_JAIL_H
#define UPAGERD_JAIL_H

#include <stdbool.h>
#include <stdint.h>

/* Opens root as the jail and probes openat2 once, on it: 0 or -errno. */
int jail_init(const char *root);
/* Whether symlinks within the root are followed (openat2 works). */
bool jail_has_openat2(void);
/* Opens path (len bytes) below the root for reading: only a regular file.
 * 0 with *fdp and its size in *sizep, or -errno: -EACCES: it tried to leave
 * the root; -ELOOP: a symlink loop, a magic link, or without openat2 any
 * symlink; -EINVAL: not a regular file. */
int jail_open(const char *path, uint16_t len, int *fdp, uint64_t *sizep);
/* The directory of the file path (len bytes) names, its final symlinks
 * followed within the root, opened O_PATH: a descriptor or -errno. */
int jail_dir_of(const char *path, uint16_t len);

#endif
