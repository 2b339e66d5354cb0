/* SPDX-License-Identifier: MIT */
/* Small file helpers shared by the library and upagerd. Internal. */
#ifndef UPAGER_FILEIO_H
#define UPAGER_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether len bytes at p are all zero (any len, any alignment). */
bool upp_all_zero(const void *p, size_t len);

/*
 * Replaces path with what fill(fd, arg) writes into a temporary file beside
 * it, then fsyncs the file, renames it over path and fsyncs the directory:
 * a crash leaves the old file or the new one, never a mix. Returns 0, fill's
 * error, or -errno; on error path is untouched and the temporary is gone.
 */
int upp_atomic_replace(const char *path, int (*fill)(int fd, void *arg), void *arg);

#endif
