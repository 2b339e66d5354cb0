/* SPDX-License-Identifier: MIT */
/*
 * Snapshot page maps loaded off the page server's event loop: reading,
 * checking and walking a map of up to 256 MiB takes long enough that, done
 * in the loop, one client's OPEN_IMAGE would stall every other client. One
 * worker thread loads them in turn; the loop learns of finished loads by
 * an eventfd.
 */
#ifndef UPAGERD_SNAPLOAD_H
#define UPAGERD_SNAPLOAD_H

#include <stddef.h>

#include "snapfmt.h"

struct snap_load {
	struct snap_load *next;
	/* In: what upp_snap_open_at() takes. dirfd and fd stay the caller's. */
	int dirfd, fd;
	size_t ps, max_maps;
	/* Out: its result, and sn when 0. */
	int ret;
	struct upp_snap sn;
};

/* Starts the worker: the eventfd that becomes readable when loads are done, or -errno. */
int snapload_start(void);
/* Queues l; it comes back from snapload_done() once loaded. */
void snapload_submit(struct snap_load *l);
/* The loads done since the last call, oldest first; NULL if none. */
struct snap_load *snapload_done(void);

#endif
