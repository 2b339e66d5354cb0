/* SPDX-License-Identifier: MIT */
/*
 * The remote source's connection to upagerd (docs/PROTOCOL.md): the thread
 * that owns the socket. Handlers queue fills; the thread batches them into
 * READ frames (up to 64 ranges, 8 MiB), keeps up to UPP_MAX_INFLIGHT frames
 * in flight, checks each reply's CRC32C before a byte reaches a fill
 * buffer, and hands fills back to their handlers. When the connection
 * breaks it reconnects with backoff (lib/remote_handshake.c), opens the
 * object again and re-sends what was not answered; a fill that gets no
 * answer before its deadline fails (ETIMEDOUT: the access gets SIGBUS).
 * Apart from the source because none of this knows what a source is: it
 * moves fills over a stream.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "thread.h"
#include "protocol.h"
#include "remote_conn.h"
#include "remote_handshake.h"
#include "upager-int.h"

struct upager__remote_batch { /* one READ frame in flight */
	struct upager__remote_batch *next;
	uint32_t id, n;
	struct upager__fill *fill[UPP_MAX_RANGES];
};

/* ---- the connection thread ---- */

static void disconnect(struct upager__remote_conn *conn)
{
	struct upager__fill *requeue = NULL, *tail = NULL;

	if (conn->fd >= 0)
		close(conn->fd);
	conn->fd = -1;
	conn->rlen = 0;
	/* What was sent and not answered goes out again on the next connection. */
	while (conn->inflight) {
		struct upager__remote_batch *b = conn->inflight;

		conn->inflight = b->next;
		for (uint32_t i = 0; i < b->n; i++) {
			b->fill[i]->src_next = NULL;
			if (tail)
				tail->src_next = b->fill[i];
			else
				requeue = b->fill[i];
			tail = b->fill[i];
		}
		free(b);
	}
	conn->ninflight = 0;
	if (requeue) {
		pthread_mutex_lock(&conn->lock);
		tail->src_next = conn->queue;
		conn->queue = requeue;
		if (!conn->queue_tail)
			conn->queue_tail = tail;
		pthread_mutex_unlock(&conn->lock);
	}
}

static void requeue_front(struct upager__remote_conn *conn, struct upager__remote_batch *b)
{
	pthread_mutex_lock(&conn->lock);
	for (uint32_t i = b->n; i-- > 0;) {
		b->fill[i]->src_next = conn->queue;
		conn->queue = b->fill[i];
		if (!conn->queue_tail)
			conn->queue_tail = b->fill[i];
	}
	pthread_mutex_unlock(&conn->lock);
}

/*
 * Fails fills whose deadline passed or whose region is gone. Those already
 * sent cannot be taken back from the stream: if any such is in flight, the
 * connection is dropped, everything in flight is queued again, and the
 * queue is sorted out here. A server that hangs without closing therefore
 * costs a fault its deadline, not forever.
 */
static void expire_fills(struct upager__remote_conn *conn, uint64_t now)
{
	struct upager__fill **pp, *f, *dead = NULL;

	for (struct upager__remote_batch *b = conn->inflight; b; b = b->next) {
		bool stale = false;

		for (uint32_t i = 0; i < b->n && !stale; i++)
			stale = atomic_load(&b->fill[i]->region->dead) ||
				now >= b->fill[i]->deadline_ns;
		if (stale) {
			disconnect(conn); /* a request outlived its deadline or its region */
			break;
		}
	}
	pthread_mutex_lock(&conn->lock);
	conn->queue_tail = NULL;
	for (pp = &conn->queue; (f = *pp);) {
		if (atomic_load(&f->region->dead) || now >= f->deadline_ns) {
			*pp = f->src_next;
			f->src_next = dead;
			dead = f;
		} else {
			conn->queue_tail = f;
			pp = &f->src_next;
		}
	}
	pthread_mutex_unlock(&conn->lock);
	while (dead) {
		f = dead;
		dead = f->src_next;
		upager__fill_complete(f, atomic_load(&f->region->dead) ? -ECANCELED : -ETIMEDOUT);
	}
}

/*
 * When a reconnection must give up: after connect_timeout_ms, or when the
 * first fill waiting for it passes its deadline, whichever comes first.
 */
static uint64_t connect_until(struct upager__remote_conn *conn, uint64_t now)
{
	uint64_t until = now + (uint64_t)conn->peer.connect_timeout_ms * 1000000ull;

	pthread_mutex_lock(&conn->lock);
	for (struct upager__fill *f = conn->queue; f; f = f->src_next)
		if (f->deadline_ns < until)
			until = f->deadline_ns;
	pthread_mutex_unlock(&conn->lock);
	return until;
}

/*
 * When sending requests must give up: as a reconnection does, or when the
 * first fill already in flight passes its deadline. A server that stops
 * reading so holds no fault past its deadline.
 */
static uint64_t send_until(struct upager__remote_conn *conn)
{
	uint64_t until = connect_until(conn, upager__now_ns());

	for (struct upager__remote_batch *b = conn->inflight; b; b = b->next)
		for (uint32_t i = 0; i < b->n; i++)
			if (b->fill[i]->deadline_ns < until)
				until = b->fill[i]->deadline_ns;
	return until;
}

static int send_batches(struct upager__remote_conn *conn)
{
	/* This call's fills are queued now: they count. */
	const uint64_t until = send_until(conn);

	while (conn->ninflight < UPP_MAX_INFLIGHT) {
		uint8_t frame[UPP_HDR_SIZE + 8 + 16 * UPP_MAX_RANGES];
		struct upp_read rd = { .handle = conn->handle };
		struct upager__remote_batch *b;
		uint64_t bytes = 0;
		size_t n;
		int ret;

		pthread_mutex_lock(&conn->lock);
		if (!conn->queue) {
			pthread_mutex_unlock(&conn->lock);
			return 0;
		}
		b = calloc(1, sizeof(*b));
		if (!b) {
			pthread_mutex_unlock(&conn->lock);
			return -ENOMEM;
		}
		while (conn->queue && b->n < UPP_MAX_RANGES && bytes + conn->queue->len <= UPP_MAX_READ &&
		       !(b->n && (conn->queue->src_solo || b->fill[0]->src_solo))) {
			struct upager__fill *f = conn->queue;

			conn->queue = f->src_next;
			f->src_next = NULL;
			rd.r[b->n] = (struct upp_range){ f->roff, (uint32_t)f->len };
			b->fill[b->n++] = f;
			bytes += f->len;
		}
		if (!conn->queue)
			conn->queue_tail = NULL;
		pthread_mutex_unlock(&conn->lock);
		rd.n = b->n;
		b->id = ++conn->next_id;
		n = upp_put_read(frame + UPP_HDR_SIZE, &rd);
		upp_put_hdr(frame, UPP_READ, b->id, (uint32_t)n);
		b->next = conn->inflight;
		conn->inflight = b;
		conn->ninflight++;
		/* Small frames: a blocking send with the socket's buffer is fine. */
		ret = upager__remote_send_all(conn->fd, frame, UPP_HDR_SIZE + n, until);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static struct upager__remote_batch *take_batch(struct upager__remote_conn *conn, uint32_t id)
{
	for (struct upager__remote_batch **pp = &conn->inflight; *pp; pp = &(*pp)->next)
		if ((*pp)->id == id) {
			struct upager__remote_batch *b = *pp;
			*pp = b->next;
			conn->ninflight--;
			return b;
		}
	return NULL;
}

/* One whole frame from the server: complete its fills. -errno: reconnect. */
static int on_frame(struct upager__remote_conn *conn, const struct upp_hdr *h, const uint8_t *p)
{
	uint32_t wanted[UPP_MAX_RANGES], got[UPP_MAX_RANGES];
	struct upager__remote_batch *b = take_batch(conn, h->id);
	const uint8_t *data;
	int ret;

	if (!b)
		return -EPROTO; /* an answer to nothing we asked */
	if (h->type == UPP_ERROR) {
		struct upp_error e;
		int err = upp_get_error(p, h->length, &e) == 0 && e.code && e.code < 4096
				  ? -(int)e.code : -EIO;

		if (err == -EBADMSG && b->n > 1) {
			/* A damaged snapshot page in one of them: ask for each alone,
			 * so that only the fill holding it fails. */
			for (uint32_t i = 0; i < b->n; i++)
				b->fill[i]->src_solo = true;
			requeue_front(conn, b);
			free(b);
			return 0;
		}
		for (uint32_t i = 0; i < b->n; i++)
			upager__fill_complete(b->fill[i], err);
		free(b);
		return 0;
	}
	for (uint32_t i = 0; i < b->n; i++)
		wanted[i] = (uint32_t)b->fill[i]->len;
	ret = h->type == (UPP_READ | UPP_REPLY) ? upp_get_data(p, h->length, b->n, wanted, got, &data)
						: -EPROTO;
	if (ret == -EBADMSG) {
		/* Damaged on the way (the frame itself was whole): never map it, ask
		 * again. The fills' deadline bounds how often. */
		requeue_front(conn, b);
		free(b);
		return 0;
	}
	if (ret < 0) {
		b->next = conn->inflight;
		conn->inflight = b;
		conn->ninflight++;
		return ret;
	}
	for (uint32_t i = 0; i < b->n; i++) {
		struct upager__fill *f = b->fill[i];

		memcpy(f->buf, data, got[i]);
		/* Past the end of the object reads as zero, as for files. */
		memset((char *)f->buf + got[i], 0, f->len - got[i]);
		data += got[i];
		f->done = f->len;
		upager__fill_complete(f, got[i] ? UPAGER__FILL_DATA : UPAGER__FILL_ZERO);
	}
	free(b);
	return 0;
}

static int receive_replies(struct upager__remote_conn *conn)
{
	for (;;) {
		struct upp_hdr h;
		ssize_t n;
		int ret;

		if (conn->rlen >= UPP_HDR_SIZE) {
			ret = upp_get_hdr(conn->rbuf, conn->rlen, conn->rcap - UPP_HDR_SIZE, &h);
			if (ret < 0 && ret != -EAGAIN)
				return -EPROTO;
			if (ret == 0 && conn->rlen >= UPP_HDR_SIZE + h.length) {
				size_t whole = UPP_HDR_SIZE + h.length;

				ret = on_frame(conn, &h, conn->rbuf + UPP_HDR_SIZE);
				memmove(conn->rbuf, conn->rbuf + whole, conn->rlen - whole);
				conn->rlen -= whole;
				if (ret < 0)
					return ret;
				continue;
			}
		}
		n = recv(conn->fd, conn->rbuf + conn->rlen, conn->rcap - conn->rlen, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -errno;
		conn->rlen += (size_t)n;
	}
}

/* Says through the log of the pager waiting on us (a queued fill's) why a
 * server is not trusted: its faults then fail at their deadline. */
static void log_untrusted(struct upager__remote_conn *conn, const char *why)
{
	const upager_t *p = NULL;

	pthread_mutex_lock(&conn->lock);
	if (conn->queue)
		p = conn->queue->region->pager;
	pthread_mutex_unlock(&conn->lock);
	if (p)
		upager__log(p, UPAGER_LOG_ERROR,
			    "remote %s: %s: not trusted; faults waiting on it fail at their deadline",
			    conn->peer.uri, why);
}

static void *conn_thread(void *arg)
{
	struct upager__remote_conn *conn = arg;

	for (;;) {
		struct pollfd pf[2] = { { .fd = conn->kick[0], .events = POLLIN } };
		uint64_t now = upager__now_ns();
		char drain[64];
		int ret = 0;

		bool waited_on;

		pthread_mutex_lock(&conn->lock);
		if (conn->stop) {
			pthread_mutex_unlock(&conn->lock);
			break;
		}
		pthread_mutex_unlock(&conn->lock);
		expire_fills(conn, now);
		/* Fills are queued by handler threads under the lock. */
		pthread_mutex_lock(&conn->lock);
		waited_on = conn->queue != NULL;
		pthread_mutex_unlock(&conn->lock);
		if (conn->fd < 0 && waited_on && now >= conn->retry_at_ns) {
			const char *why;
			uint64_t size;
			int fd = upager__remote_handshake(&conn->peer, connect_until(conn, now), &conn->handle,
				   &size, &why);

			if (fd < 0 && why && !conn->said_untrusted)
				log_untrusted(conn, why);
			conn->said_untrusted = fd < 0 && why;
			if (fd < 0) {
				conn->backoff_ns = conn->backoff_ns ? conn->backoff_ns * 2 : 10000000ull;
				if (conn->backoff_ns > 1000000000ull)
					conn->backoff_ns = 1000000000ull;
				conn->retry_at_ns = now + conn->backoff_ns;
			} else {
				conn->fd = fd;
				conn->backoff_ns = 0;
			}
		}
		if (conn->fd >= 0)
			ret = send_batches(conn);
		pf[1] = (struct pollfd){ .fd = conn->fd, .events = POLLIN };
		/* 100 ms at most: deadlines and released regions are checked each time. */
		if (poll(pf, conn->fd >= 0 ? 2 : 1, 100) > 0) {
			if (pf[0].revents & POLLIN)
				while (read(conn->kick[0], drain, sizeof(drain)) > 0)
					;
			if (conn->fd >= 0 && ret == 0 && (pf[1].revents & (POLLIN | POLLHUP | POLLERR)))
				ret = receive_replies(conn);
		}
		if (ret < 0)
			disconnect(conn); /* broken, or a reply we cannot trust: start afresh */
	}
	/* Stopping: nothing waits any more (every region using us is gone). */
	disconnect(conn); /* the source is being released */
	expire_fills(conn, UINT64_MAX);
	return NULL;
}

/* ---- what the source calls ---- */

int upager__remote_conn_start(struct upager__remote_conn *conn)
{
	const char *why;
	int fd, ret;

	conn->rcap = UPP_HDR_SIZE + 8 + 4 * UPP_MAX_RANGES + UPP_MAX_READ;
	conn->rbuf = malloc(conn->rcap);
	conn->fd = -1;
	pthread_mutex_init(&conn->lock, NULL);
	if (!conn->rbuf || pipe2(conn->kick, O_CLOEXEC | O_NONBLOCK) < 0) {
		ret = conn->rbuf ? -errno : -ENOMEM;
		free(conn->rbuf);
		return ret;
	}
	/* Connect now: a wrong address or object is an error here, not a SIGBUS
	 * later. No fill is queued yet: connect_until is the connect timeout. */
	fd = upager__remote_handshake(&conn->peer, connect_until(conn, upager__now_ns()), &conn->handle,
		       &conn->size, &why);
	if (fd < 0) {
		close(conn->kick[0]);
		close(conn->kick[1]);
		free(conn->rbuf);
		return fd;
	}
	conn->fd = fd;
	ret = upager__thread_start(&conn->thread, conn_thread, conn);
	if (ret < 0) {
		close(fd);
		close(conn->kick[0]);
		close(conn->kick[1]);
		free(conn->rbuf);
		return ret;
	}
	return 0;
}

void upager__remote_conn_send(struct upager__remote_conn *conn, struct upager__fill *fill)
{
	char one = 1;

	fill->src_next = NULL;
	fill->src_solo = false;
	pthread_mutex_lock(&conn->lock);
	if (conn->queue_tail)
		conn->queue_tail->src_next = fill;
	else
		conn->queue = fill;
	conn->queue_tail = fill;
	pthread_mutex_unlock(&conn->lock);
	if (write(conn->kick[1], &one, 1) < 0) {
		/* The pipe is full: the thread is awake anyway. */
	}
}

void upager__remote_conn_stop(struct upager__remote_conn *conn)
{
	char one = 1;

	pthread_mutex_lock(&conn->lock);
	conn->stop = true;
	pthread_mutex_unlock(&conn->lock);
	if (write(conn->kick[1], &one, 1) < 0) {
		/* awake anyway */
	}
	pthread_join(conn->thread, NULL);
	close(conn->kick[0]);
	close(conn->kick[1]);
	free(conn->rbuf);
	pthread_mutex_destroy(&conn->lock);
	explicit_bzero(conn->peer.secret, sizeof(conn->peer.secret));
}
