/* SPDX-License-Identifier: MIT */
/* The program's address-space events, and those read but not yet handled
 * (events.c). */
#ifndef UPAGER_EVENTS_H
#define UPAGER_EVENTS_H

#include "upager-int.h"

/* The longest a wait for events read but not yet handled lasts. */
#define UPAGER__EV_WAIT_NS (2 * 1000000000ull)

/* Under p->ev_lock, with the batch h just read: notes its events (false:
 * none in it). */
bool upager__events_note(struct upager__handler *h, const struct uffd_msg *msgs, size_t n);
/* Applies an event h read to the registry and the resident bitmaps. */
void upager__events_apply(struct upager__handler *h, const struct uffd_msg *msg);
/* h has applied the batch it noted: whoever waits for it goes on. */
void upager__events_handled(struct upager__handler *h);
/* Async-signal-safe; see events.c. */
bool upager__events_unmapped(const upager_t *p, uintptr_t start, uintptr_t end);
/*
 * Waits until no handler but self has a batch of events numbered up to
 * bound (all read so far, if now) not yet handled; at most
 * UPAGER__EV_WAIT_NS.
 */
void upager__events_wait(upager_t *p, const struct upager__handler *self, uint64_t bound,
			 bool now);
/* Does an unhandled event another handler read concern [start, start +
 * len)? See events.c for *bound. */
bool upager__events_concern(struct upager__handler *h, uintptr_t start, size_t len,
			    uint64_t *bound);

/* The probe page (see upager.ev_probe): set up at create, freed at destroy. */
void upager__events_probe_init(upager_t *p);
void upager__events_probe_free(upager_t *p);
/* Is an event on its way (see upager.ev_probe)? */
bool upager__events_in_kernel(const upager_t *p);

#endif
