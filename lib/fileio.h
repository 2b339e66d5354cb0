/* SPDX-License-Identifier: MIT */
/* Small file helpers shared by the library and upagerd. Internal. */
#ifndef UPAGER_FILEIO_H
#define UPAGER_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* len bytes at off, in as many reads as it takes: 0, -errno, or -EIO at
 * the end of the file. */
int upp_pread_full(int fd, void *buf, size_t len, uint64_t off);
/* len bytes at off, in as many writes as it takes: 0 or -errno (-EIO if
 * nothing could be written). */
int upp_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* Whether len bytes at p are all zero (any len, any alignment). */
bool upp_all_zero(const void *p, size_t len);

/*
 * Replaces path with what fill(fd, arg) writes into a temporary file beside
 * it, then fsyncs the file, renames it over path and fsyncs the directory:
 * a crash leaves the old file or the new one, never a mix. Returns 0, fill's
 * error, or -errno; on error path is untouched and the temporary is gone.
 */
int upp_atomic_replace(const char *path, int (*fill)(int fd, void *arg), void *arg);

/*
 * Reads a shared secret from path into buf (cap bytes), without its
 * trailing newlines; *len gets its length and, if mode is not NULL, *mode the
 * file's mode. Returns 0, -errno if it cannot be opened, or -EINVAL if it
 * cannot be read or does not hold 1 to cap - 1 bytes.
 */
int upp_read_secret(const char *path, uint8_t *buf, size_t cap, size_t *len, mode_t *mode);

#endif
