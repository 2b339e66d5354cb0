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
/* Is the page at region offset off being written back? Being dropped
 * (budgets without UFFDIO_MOVE: no fill places it, its writes wait)? */
bool upager__budget_in_writeback(const upager_region_t *r, size_t off);
bool upager__budget_dropping(const upager_region_t *r, size_t off);
/* upager_decommit: the pages of [off, off + len) are discarded, PROT_NONE
 * meanwhile: not written (their fills will place them protected). */
void upager__budget_clean(upager_region_t *r, size_t off, size_t len);
/* The handlers: a write-protect fault at page addr (wp_sync regions): the
 * page marked written and unprotected, its thread woken (0), or -EAGAIN:
 * it is being dropped, ask again in a moment (the thread waits meanwhile). */
int upager__budget_wp_fault(upager_t *p, uintptr_t addr);

/* Writes back the written pages of [off, off + len) and syncs the source;
 * the first error since the last call. Not under p->lock. */
int upager__writeback(upager_region_t *r, size_t off, size_t len);

#endif
