/* SPDX-License-Identifier: MIT */
/*
 * The remote source's connection to upagerd (docs/PROTOCOL.md): dialing,
 * the handshake and its authentication, and the connection thread that
 * owns the socket. Handlers queue fills; the thread batches them into READ
 * frames (up to 64 ranges, 8 MiB), keeps up to UPP_MAX_INFLIGHT frames in
 * flight, checks each reply's CRC32C before a byte reaches a fill buffer,
 * and hands fills back to their handlers. When the connection breaks it
 * reconnects with backoff, opens the object again and re-sends what was
 * not answered; a fill that gets no answer before its deadline fails
 * (ETIMEDOUT: the access gets SIGBUS). Apart from the source because none
 * of this knows what a source is: it moves fills over a stream.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "net.h"
#include "protocol.h"
#include "sha256.h"
#include "remote_conn.h"
#include "upager-int.h"

struct upager__remote_batch { /* one READ frame in flight */
	struct upager__remote_batch *next;
	uint32_t id, n;
	struct upager__fill *fill[UPP_MAX_RANGES];
};

/* ---- connecting ---- */

/*
 * Milliseconds left until until_ns (rounded up), for poll; -1 once it has
 * passed. Every wait of a handshake is bounded by one such deadline, so a
 * server that answers a byte at a time cannot stretch it.
 */
static int ms_until(uint64_t until_ns)
{
	uint64_t now = upager__now_ns(), ms;

	if (now >= until_ns)
		return -1;
	ms = (until_ns - now + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

static uint64_t after_ms(unsigned ms)
{
	return upager__now_ns() + (uint64_t)ms * 1000000ull;
}

/*
 * Waits until fd is ready for events, by until_ns: 0, -ETIMEDOUT, or
 * -errno. A signal does not end the wait (the caller's SIGALRM or SIGCHLD
 * is no timeout), nor moves its deadline; the time left is read once per
 * poll, so a deadline that passes meanwhile is never poll's "for ever".
 */
static int wait_fd(int fd, short events, uint64_t until_ns)
{
	for (;;) {
		struct pollfd pf = { .fd = fd, .events = events };
		int ms = ms_until(until_ns), n;

		if (ms < 0)
			return -ETIMEDOUT;
		n = poll(&pf, 1, ms);
		if (n == 1)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int dial(const char *uri, uint64_t until_ns)
{
	int fd, ret, err = 0;
	socklen_t el = sizeof(err);

	if (!strncmp(uri, "unix:", 5)) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		if (strlen(uri + 5) >= sizeof(sa.sun_path) || !uri[5])
			return -EINVAL;
		strcpy(sa.sun_path, uri + 5);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return -errno;
		ret = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	} else if (!strncmp(uri, "tcp:", 4)) {
		char host[256];
		const char *port;
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
		int one = 1;

		if (upp_split_host_port(uri + 4, host, sizeof(host), &port))
			return -EINVAL;
		if (getaddrinfo(host, port, &hints, &ai))
			return -EHOSTUNREACH;
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			freeaddrinfo(ai);
			return -errno;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		ret = connect(fd, ai->ai_addr, ai->ai_addrlen);
		freeaddrinfo(ai);
	} else {
		return -EINVAL;
	}
	/* Interrupted, a non-blocking connect goes on as if in progress. */
	if (ret < 0 && errno != EINPROGRESS && errno != EINTR) {
		err = errno;
		close(fd);
		return -err;
	}
	if (ret < 0) {
		ret = wait_fd(fd, POLLOUT, until_ns);
		if (ret == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			ret = -errno;
		else if (ret == 0 && err)
			ret = -err;
		if (ret < 0) {
			close(fd);
			return ret;
		}
	}
	return fd;
}

/* Blocking helpers for the handshake: all done by until_ns, or -ETIMEDOUT. */
static int send_all(int fd, const uint8_t *p, size_t len, uint64_t until_ns)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		int ret;

		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			return -errno;
		} else if ((ret = wait_fd(fd, POLLOUT, until_ns)) < 0) {
			return ret;
		}
	}
	return 0;
}

static int recv_frame_sync(int fd, struct upp_hdr *h, uint8_t *buf, size_t cap, uint64_t until_ns)
{
	size_t got = 0, want = UPP_HDR_SIZE;
	uint8_t hb[UPP_HDR_SIZE];

	while (got < want) {
		uint8_t *dst = got < UPP_HDR_SIZE ? hb + got : buf + (got - UPP_HDR_SIZE);
		size_t room = got < UPP_HDR_SIZE ? UPP_HDR_SIZE - got : want - got;
		int ret = wait_fd(fd, POLLIN, until_ns);
		ssize_t n;

		if (ret < 0)
			return ret;
		n = recv(fd, dst, room, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
		if (got == UPP_HDR_SIZE) {
			if (upp_get_hdr(hb, UPP_HDR_SIZE, (uint32_t)cap, h) < 0)
				return -EPROTO;
			want = UPP_HDR_SIZE + h->length;
		}
	}
	return 0;
}

/*
 * Connects, says HELLO and opens the object, all by until_ns: the
 * descriptor, or -errno. With a secret the server must prove it knows it
 * (HELLO asks for the challenge, which a server with the secret then sends
 * over Unix sockets too): one that does not gets -EACCES, and *why says so.
 */
static int handshake(const struct upager__remote_peer *peer, uint64_t until_ns,
		     uint32_t *handle, uint64_t *size, const char **why)
{
	uint8_t buf[UPP_HDR_SIZE + 2 + UPP_MAX_PATH];
	struct upp_hello hello = { UPP_VERSION, UPP_VERSION,
				   peer->secret_len ? UPP_FEAT_AUTH : 0 };
	struct upp_hello_reply hr;
	struct upp_hdr h;
	size_t n;
	int fd = dial(peer->uri, until_ns), ret;

	*why = NULL;
	if (fd < 0)
		return fd;
	n = upp_put_hello(buf + UPP_HDR_SIZE, &hello);
	upp_put_hdr(buf, UPP_HELLO, 0, (uint32_t)n);
	ret = send_all(fd, buf, UPP_HDR_SIZE + n, until_ns);
	if (!ret)
		ret = recv_frame_sync(fd, &h, buf, sizeof(buf), until_ns);
	if (!ret && (h.type != (UPP_HELLO | UPP_REPLY) ||
		     upp_get_hello_reply(buf, h.length, &hr) < 0 || hr.version != UPP_VERSION))
		ret = h.type == UPP_ERROR ? -EPROTONOSUPPORT : -EPROTO;
	if (!ret && peer->image && !(hr.features & UPP_FEAT_IMAGE))
		ret = -EOPNOTSUPP; /* a server too old to decode snapshots */
	if (!ret && peer->secret_len && !(hr.features & UPP_FEAT_AUTH)) {
		/* It never asked: anyone can answer so, it proves nothing. */
		*why = "the server did not prove it knows the secret (it never asked for it)";
		ret = -EACCES;
	}
	if (!ret && (hr.features & UPP_FEAT_AUTH)) {
		/* The server's challenge; then our proof, and its proof back. */
		uint8_t cnonce[UPP_NONCE], mac[UPP_MAC], want[UPP_MAC];

		if (!peer->secret_len || getrandom(cnonce, UPP_NONCE, 0) != UPP_NONCE) {
			ret = -EACCES;
		} else {
			upp_auth_mac(peer->secret, peer->secret_len, 0, hr.nonce, cnonce, mac);
			n = upp_put_auth(buf + UPP_HDR_SIZE, cnonce, mac);
			upp_put_hdr(buf, UPP_AUTH, 2, (uint32_t)n);
			ret = send_all(fd, buf, UPP_HDR_SIZE + n, until_ns);
		}
		if (!ret)
			ret = recv_frame_sync(fd, &h, buf, sizeof(buf), until_ns);
		if (!ret) {
			upp_auth_mac(peer->secret, peer->secret_len, 1, hr.nonce, cnonce, want);
			if (h.type == UPP_ERROR) {
				*why = "the server refused our proof of the secret";
				ret = -EACCES;
			} else if (h.type != (UPP_AUTH | UPP_REPLY) ||
				   upp_get_auth(buf, h.length, NULL, mac) < 0 || !upp_equal32(mac, want)) {
				*why = "the server did not prove it knows the secret (a wrong proof)";
				ret = -EACCES;
			}
		}
	}
	if (!ret) {
		n = upp_put_open(buf + UPP_HDR_SIZE, peer->object, (uint16_t)strlen(peer->object));
		upp_put_hdr(buf, peer->image ? UPP_OPEN_IMAGE : UPP_OPEN, 1, (uint32_t)n);
		ret = send_all(fd, buf, UPP_HDR_SIZE + n, until_ns);
	}
	if (!ret)
		ret = recv_frame_sync(fd, &h, buf, sizeof(buf), until_ns);
	if (!ret) {
		struct upp_error e;

		if (h.type == UPP_ERROR && upp_get_error(buf, h.length, &e) == 0)
			ret = e.code > 0 && e.code < 4096 ? -(int)e.code : -EPROTO;
		else if (h.type != ((peer->image ? UPP_OPEN_IMAGE : UPP_OPEN) | UPP_REPLY) ||
			 upp_get_opened(buf, h.length, handle, size) < 0)
			ret = -EPROTO;
	}
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

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
		ret = send_all(conn->fd, frame, UPP_HDR_SIZE + n, until);
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
			int fd = handshake(&conn->peer, connect_until(conn, now), &conn->handle,
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
	fd = handshake(&conn->peer, connect_until(conn, upager__now_ns()), &conn->handle,
		       &conn->size, &why);
	if (fd < 0) {
		close(conn->kick[0]);
		close(conn->kick[1]);
		free(conn->rbuf);
		return fd;
	}
	conn->fd = fd;
	ret = -pthread_create(&conn->thread, NULL, conn_thread, conn);
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

/*
 * The whole of a small object (at most max bytes, else -EFBIG before any
 * allocation), over a connection of its own, with like's address and
 * credentials: a working set beside a snapshot. All of it, handshake and
 * every READ, within one connect timeout (else -ETIMEDOUT): a server that
 * answers each READ just in time cannot hold the caller once per READ.
 */
int upager__remote_fetch_small(const struct upager__remote_peer *like, const char *object,
			       size_t max, uint8_t **bufp, size_t *lenp)
{
	size_t cap = 12 + UPP_MAX_READ;
	struct upager__remote_peer *peer = malloc(sizeof(*peer));
	uint8_t *rbuf = malloc(cap), *buf = NULL;
	uint64_t size = 0;
	uint32_t handle;
	const char *why;
	uint64_t until = after_ms(like->connect_timeout_ms);
	int fd = -1, ret = peer && rbuf ? 0 : -ENOMEM;

	if (ret == 0) {
		*peer = *like; /* never changed once the source exists: its thread runs */
		peer->image = false;
		snprintf(peer->object, sizeof(peer->object), "%s", object);
		fd = handshake(peer, until, &handle, &size, &why);
		ret = fd < 0 ? fd : size > max ? -EFBIG : (buf = malloc(size + 1)) ? 0 : -ENOMEM;
	}
	for (uint64_t off = 0; ret == 0 && off < size;) {
		struct upp_read rd = { .handle = handle, .n = 1 };
		uint8_t frame[UPP_HDR_SIZE + 8 + 16];
		uint32_t want = size - off < UPP_MAX_READ ? (uint32_t)(size - off) : UPP_MAX_READ, got;
		const uint8_t *data;
		struct upp_hdr h;
		size_t n;

		rd.r[0] = (struct upp_range){ off, want };
		n = upp_put_read(frame + UPP_HDR_SIZE, &rd);
		upp_put_hdr(frame, UPP_READ, 1, (uint32_t)n);
		ret = send_all(fd, frame, UPP_HDR_SIZE + n, until);
		if (ret == 0)
			ret = recv_frame_sync(fd, &h, rbuf, cap, until);
		if (ret == 0 && (h.type != (UPP_READ | UPP_REPLY) ||
				 upp_get_data(rbuf, h.length, 1, &want, &got, &data) < 0 || got != want))
			ret = -EPROTO;
		if (ret == 0) {
			memcpy(buf + off, data, got);
			off += got;
		}
	}
	if (fd >= 0)
		close(fd);
	if (peer)
		explicit_bzero(peer->secret, sizeof(peer->secret));
	free(peer);
	free(rbuf);
	if (ret < 0) {
		free(buf);
		return ret;
	}
	*bufp = buf;
	*lenp = (size_t)size;
	return 0;
}
