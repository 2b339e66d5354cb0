/* SPDX-License-Identifier: MIT */
/* The remote source's connection to upagerd (lib/remote_conn.c). Internal. */
#ifndef UPAGER_REMOTE_CONN_H
#define UPAGER_REMOTE_CONN_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "protocol.h"
#include "upager-int.h"

struct batch;

struct remote_source {
	upager_source_t base;
	char uri[512], object[UPP_MAX_PATH + 1];
	bool image; /* UPAGER_REMOTE_SNAPSHOT: OPEN_IMAGE, the memory a snapshot describes */
	uint64_t size;
	uint8_t secret[4096];
	size_t secret_len;
	unsigned connect_timeout_ms;
	uint64_t deadline_ns;

	pthread_t thread;
	pthread_mutex_t lock;
	struct upager__fill *queue, *queue_tail; /* waiting to be sent */
	bool stop;
	int kick[2]; /* pipe: wakes the thread when fills are queued */

	/* The connection thread's own: */
	int fd;
	uint32_t handle, next_id;
	struct batch *inflight;
	unsigned ninflight;
	uint8_t *rbuf;
	size_t rlen, rcap;
	uint64_t retry_at_ns, backoff_ns;
	bool said_untrusted; /* logged why the server is not trusted, until it is again */
};

uint64_t upager__remote_after_ms(unsigned ms);
int upager__remote_handshake(struct remote_source *rs, uint64_t until_ns, uint32_t *handle,
			     uint64_t *size, const char **why);
void *upager__remote_thread(void *arg);
int upager__remote_fetch_small(const struct remote_source *like, const char *object, size_t max,
			       uint8_t **bufp, size_t *lenp);

#endif
