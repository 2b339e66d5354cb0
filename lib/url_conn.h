/* SPDX-License-Identifier: MIT */
/*
 * The URL source's transfers (lib/url_conn.c): fills go in, chunks of the
 * object come back over kept-alive HTTP connections, and each fill is
 * handed back through upager__fill_complete. Internal; built only with
 * libcurl.
 */
#ifndef UPAGER_URL_CONN_H
#define UPAGER_URL_CONN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "url_http.h"

struct upager__fill;
struct upager__url_chunk;

/* Sequential readers the thread reads ahead for at once (more: some wait
 * for their next fill that misses). */
#define UPAGER__URL_HINTS 16

struct upager__url_conn {
	/* Set before start, never changed after: */
	struct upager__url_target t;
	uint64_t chunk_size;  /* a power of two */
	unsigned max_requests; /* transfers in flight at most */
	unsigned nchunks;     /* chunk buffers at most: the memory bound */
	uint64_t deadline_ns; /* a fill's, and a chunk transfer's, from when it starts */
	/*
	 * Optional (NULL: region offset x is object byte x, zeros past its
	 * end). locate: true with a run of *n of the len bytes at region
	 * offset roff that lie together at object offset *obj, or false with
	 * *n bytes of zeros; check: what is wrong with a full fill (DATA, or
	 * -errno: the access gets SIGBUS). Both called on any thread.
	 */
	bool (*locate)(void *arg, uint64_t roff, size_t len, uint64_t *obj, size_t *n);
	int (*check)(void *arg, struct upager__fill *fill);
	void *locate_arg;
	/* Optional (NULL: none): chunks shared with the host's other processes. */
	struct upager__chunk_cache *cache;
	/*
	 * Optional (NULL: upager__fill_complete, a handler's fill): how a
	 * PENDING fill is handed back, on the thread. A fill without a region
	 * (fill->region NULL: lib/url_object.c's, which a thread waits for)
	 * is logged through the target's log and never taken for a dead one.
	 */
	void (*complete)(struct upager__fill *fill, int result);

	pthread_t thread;
	pthread_mutex_t lock; /* the chunks' state and pins, the queue, stale */
	struct upager__url_chunk *chunks;
	struct upager__fill *queue, *queue_tail; /* waiting for the thread */
	uint64_t clock;       /* LRU */
	int stale;            /* -errno once the object changed or went: every fill fails */
	bool stop;
	CURLM *multi;         /* the thread's */
	unsigned active;      /* transfers in flight (the thread's) */
	unsigned logged;      /* the kinds of trouble already said once (the thread's) */
	uint64_t cache_hits, cache_fetched; /* chunks read from the cache / fetched (the thread's) */
	/* Chunks a sequential reader keeps in flight ahead of it (set at start). */
	unsigned ra_depth;
	/* Chunks sequential readers copied from memory at, whose next chunks
	 * are not all there: the thread reads ahead of them (under lock). */
	uint64_t hints[UPAGER__URL_HINTS];
	unsigned nhints;
};

/*
 * Takes o's chunk size, requests, memory chunks and deadline, opens the
 * chunk cache o (or the environment) names for the object url (as the
 * caller gave it), and starts the transfer thread for the opened target
 * conn->t (locate and check set before):
 * 0 or -errno (the target is the caller's to free then).
 */
int upager__url_conn_start(struct upager__url_conn *conn, const char *url,
			   const upager_url_options_t *o);
/*
 * fill->deadline_ns set: fills it from a chunk in memory (DATA), or queues
 * it for the thread (PENDING: upager__fill_complete follows), or -errno.
 */
int upager__url_conn_fill(struct upager__url_conn *conn, struct upager__fill *fill);
/* Stops the thread (fills still queued fail), frees the chunks, the cache and the target. */
void upager__url_conn_stop(struct upager__url_conn *conn);

#endif
