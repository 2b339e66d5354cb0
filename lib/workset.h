/* SPDX-License-Identifier: MIT */
/*
 * Working sets (PATH.ws, docs/SNAPSHOT.md): the pages a recorded run of a
 * snapshot made resident, in the order it needed them. Read by the local
 * and the remote restore and by the reorder. Internal.
 */
#ifndef UPAGER_WORKSET_H
#define UPAGER_WORKSET_H

#include <stddef.h>
#include <stdint.h>

#include "upager.h"

/*
 * The working set (PATH.ws): a 32-byte header ("UPGWS001", u64 count,
 * u64 npages of the snapshot, u32 CRC32C of the entries, u32 CRC32C of the
 * header's first 28 bytes) and count u64 page indices in first-touch order.
 */
#define WS_MAGIC "UPGWS001"
#define WS_HDR 32

/* A working-set file's bytes: its page indices, or NULL if damaged. */
uint64_t *upager__ws_parse(const uint8_t *buf, size_t len, uint64_t npages, uint64_t *count);
/* Reads PATH.ws: its page indices, or NULL if there is none, it is damaged,
 * or it is no regular file. */
uint64_t *upager__ws_read(const char *ws_path, uint64_t npages, uint64_t *count);
/* Queues the working set's pages on r as prefetches, in recorded order. */
void upager__ws_prefetch(upager_region_t *r, const uint64_t *ws, uint64_t nws, size_t ps);

#endif
