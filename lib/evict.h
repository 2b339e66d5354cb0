/* SPDX-License-Identifier: MIT */
/* The memory budget's evictor and write-back to writable sources (evict.c). */
#ifndef UPAGER_EVICT_H
#define UPAGER_EVICT_H

#include "upager-int.h"

/* upager_create: the budget from opts or UPAGER_MEM_BUDGET, checked (0, or
 * -EINVAL/-ENOTSUP) and its evictor started; nothing without a budget. */
int upager__budget_start(upager_t *p, const upager_options_t *opts);
/* upager_destroy, once every region is released: stops the evictor. */
void upager__budget_stop(upager_t *p);

/* upager_reserve: a budgeted pager's or a writable source's region gets its
 * bitmaps (shadow, write-back) and tracks written pages where it can. */
int upager__budget_region_init(upager_region_t *r);
void upager__budget_region_free(upager_region_t *r);

/* Fills (fill.c): a fill claimed n pages (queued, the evictor woken past
 * the high mark); may a readahead of n pages start; a fault on the page at
 * region offset off waits while it is being written back (and, over the
 * budget, a little for the evictor). */
void upager__budget_filled(upager_t *p, upager_region_t *r, size_t off);
bool upager__budget_room(upager_t *p, size_t n);
void upager__budget_fault_wait(upager_t *p, upager_region_t *r, size_t off);
/* Is the page at region offset off being written back? */
bool upager__budget_in_writeback(const upager_region_t *r, size_t off);

/* Writes back the written pages of [off, off + len) and syncs the source;
 * the first error since the last call. Not under p->lock. */
int upager__writeback(upager_region_t *r, size_t off, size_t len);

#endif
