/* SPDX-License-Identifier: MIT */
/*
 * Working sets (PATH.ws, docs/SNAPSHOT.md): the pages a recorded run of a
 * snapshot made resident, in the order it needed them. Read by the local
 * and the remote restore and by the reorder. Internal.
 */
#ifndef UPAGER_WORKSET_H
#define UPAGER_WORKSET_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "upager.h"

struct upager__fill;

/* The working set's path beside the snapshot at snap_path (PATH.ws),
 * malloc'd; NULL: out of memory. */
char *upager__ws_path(const char *snap_path);

/* Recording a working set (UPAGER_SNAP_RECORD). */
struct upager__ws_recorder {
	char *path; /* where it is written; NULL: not recording */
	uint64_t npages;
	size_t ps;
	pthread_mutex_t lock; /* several handlers record */
	uint64_t *pages, n, cap;
	uint8_t *seen; /* a bit per page */
};

/* Starts recording the working set of a snapshot of npages pages of ps
 * bytes, to be written to path: 0 (path is rec's now), or -ENOMEM. */
int upager__ws_record_start(struct upager__ws_recorder *rec, char *path, uint64_t npages,
			    size_t ps);
/* Records what fill made resident; nothing unless recording. */
void upager__ws_record_fill(struct upager__ws_recorder *rec, const struct upager__fill *fill);
/* Writes the working set (best effort: it is a hint) and frees what rec
 * holds; nothing unless recording. */
void upager__ws_record_end(struct upager__ws_recorder *rec);

/* The size of the largest working-set file of a snapshot of npages pages
 * (every page in it once): bigger ones are refused unread. */
uint64_t upager__ws_max_size(uint64_t npages);
/* A working-set file's bytes: its page indices, or NULL if damaged. */
uint64_t *upager__ws_parse(const uint8_t *buf, size_t len, uint64_t npages, uint64_t *count);
/* Reads PATH.ws: its page indices, or NULL if there is none, it is damaged,
 * or it is no regular file. */
uint64_t *upager__ws_read(const char *ws_path, uint64_t npages, uint64_t *count);
/* Queues the working set's pages on r as prefetches, in recorded order. */
void upager__ws_prefetch(upager_region_t *r, const uint64_t *ws, uint64_t nws, size_t ps);
/* The restore's last step, for UPAGER_SNAP_COMPLETE: every page queued too,
 * behind the working set. On failure the region is released, *regionp NULL. */
int upager__snap_fill_rest(upager_region_t **regionp, unsigned flags);

#endif
