/* SPDX-License-Identifier: MIT */
/* The handler threads (handler.c), for the public calls and the pager. */
#ifndef UPAGER_HANDLER_H
#define UPAGER_HANDLER_H

#include "upager-int.h"

/* True on one of p's handler threads, where blocking on p deadlocks. */
bool upager__on_handler(const upager_t *p);
/* Starts p->nthreads handler threads (p->handlers), or none: -errno. */
int upager__handlers_start(upager_t *p);
/* Stops (see upager.stopping), joins and frees them. */
void upager__handlers_stop(upager_t *p);
/*
 * Waits until every event read before the call has been handled, so that the
 * registry is as the program's munmap/mremap left it; with in_kernel, first
 * until the kernel has no event on its way to us (not on a handler thread:
 * the caller may be the only one to read it). Bounded: it waits at most
 * UPAGER__EV_WAIT_NS (then logs and goes on); never for the calling handler
 * itself, which handles its events before it runs callbacks.
 */
void upager__events_settle(upager_t *p, bool in_kernel);
/* Waits (at most UPAGER__EV_WAIT_NS) until no inline pager has an event
 * on its way or read and not applied, whose fills in flight could land in
 * a range registered now (see inline_table.h). Before any UFFDIO_REGISTER
 * of a range the program may have freed. */
void upager__events_settle_inline(void);
/* Makes every handler look at p->stopping and at its fills of dead regions. */
void upager__kick_handlers(upager_t *p);

#endif
