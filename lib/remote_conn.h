/* SPDX-License-Identifier: MIT */
/*
 * The remote source's connection to upagerd (lib/remote_conn.c): fills go
 * in, a thread sends them, and each comes back through
 * upager__fill_complete. Internal.
 */
#ifndef UPAGER_REMOTE_CONN_H
#define UPAGER_REMOTE_CONN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "remote_handshake.h"

struct upager__fill;
struct upager__remote_batch;

struct upager__remote_conn {
	struct upager__remote_peer peer; /* set before start, never changed after */
	uint64_t size; /* the object's, as the first handshake found it */

	pthread_t thread;
	pthread_mutex_t lock;
	struct upager__fill *queue, *queue_tail; /* waiting to be sent */
	bool stop;
	int kick[2]; /* pipe: wakes the thread when fills are queued */

	/* The connection thread's own: */
	int fd;
	uint32_t handle, next_id;
	struct upager__remote_batch *inflight;
	unsigned ninflight;
	uint8_t *rbuf;
	size_t rlen, rcap;
	uint64_t retry_at_ns, backoff_ns;
	bool said_untrusted; /* logged why the server is not trusted, until it is again */
};

/*
 * Connects, says HELLO (proving the secret, if any) and opens the object,
 * within connect_timeout_ms, then starts the connection thread: 0, or
 * -errno with nothing left to undo (a wrong address or object is an error
 * here, not a SIGBUS later).
 */
int upager__remote_conn_start(struct upager__remote_conn *conn);
/* Queues fill (its deadline_ns set) for the thread, which hands it back
 * with upager__fill_complete: DATA, ZERO or -errno. */
void upager__remote_conn_send(struct upager__remote_conn *conn, struct upager__fill *fill);
/* Stops the thread (fills still queued fail), closes the connection and
 * forgets the secret. */
void upager__remote_conn_stop(struct upager__remote_conn *conn);

#endif
