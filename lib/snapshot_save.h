/* SPDX-License-Identifier: MIT */
/* What the snapshot writer shares with the reorder and the upager tool's
 * conversion. Internal. */
#ifndef UPAGER_SNAPSHOT_SAVE_H
#define UPAGER_SNAPSHOT_SAVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The page map after nstored pages of data, then the header, into fd. */
int upager__snap_write_tail(int fd, size_t ps, uint64_t npages, uint64_t nstored,
			    const uint8_t *map, const char *parent_name, uint32_t parent_crc);
/* Saves [addr, addr + len) to path, atomically; every_page: a raw image,
 * every page is there to be read (else only the populated ones are). */
int upager__snap_save_atomic(const void *addr, size_t len, const char *path, bool every_page);

#endif
