/* SPDX-License-Identifier: MIT */
/* The latency-adding TCP proxy (tests/delay_proxy.h). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "delay_proxy.h"

#define SLICE (256u << 10)

struct parcel {
	struct parcel *next;
	uint64_t due_ns;
	size_t len; /* 0: the sender closed */
	char data[];
};

/* One direction of one connection: from -> to, delayed. */
struct pump {
	struct upt_proxy *px;
	int from, to;
	bool down; /* server to client: counted */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct parcel *head, *tail;
	struct pump *other;
	atomic_int refs; /* the two pumps' four threads; the last frees both */
};

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void push(struct pump *p, struct parcel *pc)
{
	pc->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->tail)
		p->tail->next = pc;
	else
		p->head = pc;
	p->tail = pc;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static void release(struct pump *p)
{
	struct pump *pair = p->down ? p->other : p; /* the up pump is the allocation */

	if (atomic_fetch_sub(&pair->refs, 1) == 1) {
		close(pair[0].from);
		close(pair[0].to);
		close(pair[1].from);
		close(pair[1].to);
		free(pair);
	}
}

static void *reader(void *arg)
{
	struct pump *p = arg;

	for (;;) {
		struct parcel *pc = malloc(sizeof(*pc) + SLICE);
		ssize_t n;

		if (!pc)
			break;
		n = read(p->from, pc->data, SLICE);
		if (n < 0 && errno == EINTR) {
			free(pc);
			continue;
		}
		pc->due_ns = now_ns() + p->px->delay_ms * 1000000ull;
		pc->len = n > 0 ? (size_t)n : 0;
		push(p, pc);
		if (n <= 0)
			break;
	}
	release(p);
	return NULL;
}

static void *writer(void *arg)
{
	struct pump *p = arg;
	bool open = true;

	for (;;) {
		struct parcel *pc;

		pthread_mutex_lock(&p->lock);
		while (!p->head)
			pthread_cond_wait(&p->cond, &p->lock);
		pc = p->head;
		p->head = pc->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		for (uint64_t t; (t = now_ns()) < pc->due_ns;) {
			struct timespec ts = { 0, (long)(pc->due_ns - t) };

			nanosleep(&ts, NULL);
		}
		if (!pc->len) {
			free(pc);
			shutdown(p->to, SHUT_WR);
			break;
		}
		for (size_t off = 0; open && off < pc->len;) {
			/* MSG_NOSIGNAL: a receiver gone mid-body (a transfer cut at
			 * the client's exit) is EPIPE here, not SIGPIPE, which
			 * ended the bench that holds this proxy (exit 141). */
			ssize_t n = send(p->to, pc->data + off, pc->len - off, MSG_NOSIGNAL);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				open = false; /* the receiver went: drain until the sender does */
				shutdown(p->from, SHUT_RD);
				break;
			}
			off += (size_t)n;
			if (p->down)
				atomic_fetch_add(&p->px->bytes_down, (uint64_t)n);
		}
		free(pc);
	}
	release(p);
	return NULL;
}

static int connect_upstream(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void start_pump(struct pump *p)
{
	pthread_attr_t attr;
	pthread_t t;

	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_create(&t, &attr, reader, p);
	pthread_create(&t, &attr, writer, p);
	pthread_attr_destroy(&attr);
}

static void *acceptor(void *arg)
{
	struct upt_proxy *px = arg;

	for (;;) {
		int c = accept4(px->listen_fd, NULL, NULL, SOCK_CLOEXEC), s, one = 1;
		struct pump *pair;

		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break; /* stopped */
		}
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		s = connect_upstream(px->upstream_port);
		pair = s >= 0 ? calloc(2, sizeof(*pair)) : NULL;
		if (!pair) {
			close(c);
			if (s >= 0)
				close(s);
			continue;
		}
		/* pair[0] client -> server owns both descriptors; each fd is read by one pump */
		pair[0] = (struct pump){ .px = px, .from = dup(c), .to = dup(s), .other = &pair[1] };
		pair[1] = (struct pump){ .px = px, .from = s, .to = c, .down = true, .other = &pair[0] };
		atomic_init(&pair[0].refs, 4);
		atomic_fetch_add(&px->connections, 1);
		start_pump(&pair[0]);
		start_pump(&pair[1]);
	}
	return NULL;
}

int upt_proxy_start(struct upt_proxy *px, int upstream_port, unsigned delay_ms)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);

	memset(px, 0, sizeof(*px));
	px->upstream_port = upstream_port;
	px->delay_ms = delay_ms;
	px->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (px->listen_fd < 0)
		return -errno;
	if (bind(px->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(px->listen_fd, 128) < 0 ||
	    getsockname(px->listen_fd, (struct sockaddr *)&a, &alen) < 0) {
		int err = -errno;

		close(px->listen_fd);
		return err;
	}
	px->port = ntohs(a.sin_port);
	if (pthread_create(&px->acceptor, NULL, acceptor, px)) {
		close(px->listen_fd);
		return -EAGAIN;
	}
	return 0;
}

void upt_proxy_stop(struct upt_proxy *px)
{
	shutdown(px->listen_fd, SHUT_RDWR); /* accept() returns */
	pthread_join(px->acceptor, NULL);
	close(px->listen_fd);
}
