/* SPDX-License-Identifier: MIT */
/*
 * Filling (fill.c), for the handler thread that reads faults and completions
 * and the prefetch queue that plans windows of its own. Everything here runs
 * on the handler thread that owns h.
 */
#ifndef UPAGER_FILL_H
#define UPAGER_FILL_H

#include "upager-int.h"

/* A fault message read from the uffd: plan its window (and readahead) and
 * start it. */
void upager__fill_fault(struct upager__handler *h, const struct uffd_msg *msg);
/* The same for an inline fault posted by its thread (inline_queue.c), which
 * waits until the fill it went to ends and is answered then. */
void upager__fill_fault_inline(struct upager__handler *h, struct upager__inline_req *q);
/* The fill's source has answered (result: DATA, ZERO or -errno): place it,
 * ask again for the faulting page alone, or put it on the retry list. */
void upager__fill_finish(struct upager__handler *h, struct upager__fill *f, int result);
/* Places again what got EAGAIN, now that the handler has read the events. */
void upager__fill_retry_all(struct upager__handler *h);

/* For planning windows (prefetch.c), under p->lock: */
/* Is addr in a window one of h's fills is producing? */
bool upager__fill_in_flight(struct upager__handler *h, uintptr_t addr);
/* How many of `want` pages from addr (region offset roff, in mapping m) a
 * new window may cover: up to the end of the mapping and of the committed
 * extent, and to the first page resident or in flight. */
size_t upager__fill_clip_window(struct upager__handler *h, const struct upager__mapping *m,
				upager_region_t *r, uintptr_t addr, size_t roff, size_t want);
/* A free slot made a fill of `pages` pages at addr, holding a reference to
 * r; the caller checked h->nfree. */
struct upager__fill *upager__fill_new(struct upager__handler *h, upager_region_t *r,
				      uintptr_t addr, size_t roff, size_t pages, bool prefetch);
/* Outside p->lock: hands the fills to their sources. */
void upager__fill_start_all(struct upager__handler *h, struct upager__fill **fills, size_t n);
/* Notes a decommit of [off, off+len) of r, under pager->lock held for
 * writing (region.c): fills planned before it place nothing there. */
void upager__fill_decommitted(upager_region_t *r, size_t off, size_t len);

#endif
