/* SPDX-License-Identifier: MIT */
/* The prefetch queue (prefetch.c): producer, consumer, lifetime. */
#ifndef UPAGER_PREFETCH_H
#define UPAGER_PREFETCH_H

#include "upager-int.h"

void upager__prefetch_init(upager_t *p);
void upager__prefetch_free(upager_t *p);
/* On a handler thread: starts the queue's windows while slots allow. */
void upager__prefetch_run(struct upager__handler *h);

#endif
