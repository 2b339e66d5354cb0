/* SPDX-License-Identifier: MIT */
/*
 * A TCP proxy on loopback that adds latency (this kernel has no netem):
 * every byte is forwarded delay_ms after it arrived, in each direction, so
 * a request/response round trip costs 2 * delay_ms more; bandwidth is not
 * limited (a reader and a writer thread per direction, a queue between).
 * For tests and benches of the URL source against a "far" server.
 */
#ifndef UPAGER_TEST_DELAY_PROXY_H
#define UPAGER_TEST_DELAY_PROXY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct upt_proxy {
	int port;          /* where it listens (127.0.0.1) */
	int upstream_port; /* where it forwards */
	unsigned delay_ms; /* each way */
	int listen_fd;
	pthread_t acceptor;
	atomic_uint_fast64_t bytes_down; /* server to client, forwarded */
	atomic_uint_fast64_t connections;
};

/* Listens on a free loopback port: 0 or -errno. */
int upt_proxy_start(struct upt_proxy *px, int upstream_port, unsigned delay_ms);
/* Stops accepting (connections already open run on until their peers close). */
void upt_proxy_stop(struct upt_proxy *px);

#endif
