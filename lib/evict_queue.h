/* SPDX-License-Identifier: MIT */
/* The pages of a budgeted pager in fill order, for the evictor (evict_queue.c). */
#ifndef UPAGER_EVICT_QUEUE_H
#define UPAGER_EVICT_QUEUE_H

#include "upager-int.h"

struct upager__evq_entry {
	upager_region_t *region; /* checked against the pager's regions before use */
	size_t page;
	bool ref;        /* CLOCK: a second chance is due (a refault) */
	bool dirty_seen; /* CLOCK: found written once, given its second chance */
};

struct upager__evq;

struct upager__evq *upager__evq_new(void);
void upager__evq_free(struct upager__evq *q);
/* A fill claimed page `page` of r: queued at the tail, with a second chance
 * when it was evicted before (its shadow bit, taken here). */
void upager__evq_filled(struct upager__evq *q, upager_region_t *r, size_t page);
/* Puts an entry back at the tail. */
void upager__evq_push(struct upager__evq *q, const struct upager__evq_entry *e);
/* Takes up to max entries from the head; how many. */
size_t upager__evq_pop(struct upager__evq *q, struct upager__evq_entry *out, size_t max);
size_t upager__evq_len(struct upager__evq *q);

#endif
