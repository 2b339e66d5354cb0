/* SPDX-License-Identifier: MIT */
/*
 * The page server's clients: accepted, received from, sent to, closed; their
 * frames parsed, HELLO and AUTH first, then each request handed on.
 *
 * Each client has a receive buffer that holds at most one frame (a header
 * and UPP_MAX_FRAME bytes: lengths are checked before anything is buffered),
 * a bounded output queue, and at most UPP_MAX_INFLIGHT READs in flight. When
 * either limit is reached the server stops receiving from that client until
 * it drains: a slow client holds its own memory, not the server's. Every
 * malformed frame gets one ERROR frame and a closed connection; other
 * clients never notice.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics.h"
#include "log.h"
#include "protocol.h"
#include "serve.h"
#include "sha256.h"
#include "uring.h"

static void client_free(struct client *c)
{
	for (int i = 0; i < UPP_MAX_HANDLES; i++)
		if (c->handles[i] >= 0)
			client_close_handle(c, (uint32_t)i);
	while (c->outq) {
		struct out_buf *b = c->outq;
		c->outq = b->next;
		free(b);
	}
	server.queued -= c->out_bytes;
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		server.clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	server.nclients--;
	METRIC_ADD(clients, -1);
	LOG(LOG_INFO, "client %u (%s) gone; %u connected", c->serial, c->peer, server.nclients);
	free(c->rbuf);
	free(c);
}

/* Ends a client. Its SQEs still in flight complete (shutdown ends the
 * socket ones at once); the memory goes with the last. */
void client_close(struct client *c, const char *why)
{
	if (c->closing)
		return;
	c->closing = true;
	LOG(LOG_INFO, "client %u (%s): closing: %s", c->serial, c->peer, why);
	shutdown(c->fd, SHUT_RDWR);
	if (c->ops == 0)
		client_free(c);
}

void client_op_done(struct client *c)
{
	if (--c->ops == 0 && c->closing)
		client_free(c);
}

static void post_send(struct client *c)
{
	struct io_uring_sqe *sqe;

	if (c->send_posted || !c->outq || c->closing)
		return;
	sqe = upp_get_sqe(&server.ring);
	if (!sqe)
		return;
	io_uring_prep_send(sqe, c->fd, c->outq->data + c->outq->off, c->outq->len - c->outq->off,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data(sqe, op_tag(c, OP_SEND));
	c->send_posted = true;
	c->ops++;
}

void queue_out(struct client *c, struct out_buf *b)
{
	b->next = NULL;
	b->off = 0;
	if (!c->outq)
		c->send_progress = now_s();
	if (c->outq_tail)
		c->outq_tail->next = b;
	else
		c->outq = b;
	c->outq_tail = b;
	c->out_bytes += b->len;
	server.queued += b->len;
	post_send(c);
}

void reply_small(struct client *c, uint8_t type, uint32_t id, const uint8_t *payload,
			size_t len)
{
	struct out_buf *b = malloc(sizeof(*b) + UPP_HDR_SIZE + len);

	if (!b) {
		client_close(c, "out of memory");
		return;
	}
	b->len = UPP_HDR_SIZE + len;
	upp_put_hdr(b->data, type, id, (uint32_t)len);
	if (len)
		memcpy(b->data + UPP_HDR_SIZE, payload, len);
	queue_out(c, b);
}

void reply_error(struct client *c, uint32_t id, int err, const char *msg)
{
	uint8_t p[6 + 256];
	size_t n = strlen(msg) > 250 ? 250 : strlen(msg);

	server.errors++;
	METRIC_ADD(errors, 1);
	reply_small(c, UPP_ERROR, id, p, upp_put_error(p, (uint32_t)err, msg, (uint16_t)n));
}

/* A framing error: one ERROR frame, a log line with a sample of the bytes, close. */
void protocol_error(struct client *c, int err, const char *what)
{
	char sample[33];

	server.proto_errors++;
	METRIC_ADD(errors, 1);
	log_sanitize(sample, sizeof(sample), c->rbuf, c->rlen < 32 ? c->rlen : 32);
	LOG(LOG_WARN, "client %u (%s): protocol error: %s (first bytes: \"%s\")", c->serial,
	    c->peer, what, sample);
	reply_error(c, 0, err, what);
	c->close_after_send = true;
}

static bool may_receive(const struct client *c)
{
	return !c->closing && !c->close_after_send && !server.draining &&
	       c->inflight < UPP_MAX_INFLIGHT && c->out_bytes + c->pending_bytes < OUT_LIMIT &&
	       c->rlen < UPP_HDR_SIZE + UPP_MAX_FRAME;
}

void post_recv(struct client *c)
{
	struct io_uring_sqe *sqe;

	if (c->recv_posted || !may_receive(c))
		return;
	sqe = upp_get_sqe(&server.ring);
	if (!sqe)
		return;
	io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rlen, UPP_HDR_SIZE + UPP_MAX_FRAME - c->rlen, 0);
	io_uring_sqe_set_data(sqe, op_tag(c, OP_RECV));
	c->recv_posted = true;
	c->ops++;
}

static void on_stats_frame(struct client *c, uint32_t id)
{
	char line[256];
	int n = server_stats_line(line, sizeof(line));

	reply_small(c, UPP_STATS | UPP_REPLY, id, (const uint8_t *)line, (size_t)n);
}

/* HELLO, the first frame: a version both speak, and a challenge if the
 * client must prove it knows the secret. */
static void on_hello_frame(struct client *c, const struct upp_hdr *h, const uint8_t *p)
{
	struct upp_hello hello;
	struct upp_hello_reply r = { UPP_VERSION, UPP_FEAT_IMAGE, UPP_MAX_FRAME, UPP_MAX_READ,
				     UPP_MAX_INFLIGHT, UPP_MAX_HANDLES, { 0 } };
	uint8_t out[24 + UPP_NONCE];

	if (h->type != UPP_HELLO || upp_get_hello(p, h->length, &hello) < 0) {
		protocol_error(c, EPROTO, "expected HELLO");
		return;
	}
	if (hello.version_min > UPP_VERSION || hello.version_max < UPP_VERSION) {
		reply_error(c, 0, EPROTONOSUPPORT, "no common protocol version");
		c->close_after_send = true;
		return;
	}
	c->hello = true;
	/* TCP clients must prove the secret; so must any client that asks
	 * to be challenged (it has the secret and wants our proof). */
	c->authed = !((c->tcp || (hello.features & UPP_FEAT_AUTH)) && server.secret_len);
	if (!c->authed) {
		if (getrandom(c->nonce, UPP_NONCE, 0) != UPP_NONCE) {
			client_close(c, "no randomness for a challenge");
			return;
		}
		r.features |= UPP_FEAT_AUTH;
		memcpy(r.nonce, c->nonce, UPP_NONCE);
	}
	reply_small(c, UPP_HELLO | UPP_REPLY, h->id, out, upp_put_hello_reply(out, &r));
}

/* AUTH, before anything else when challenged: the client's proof checked,
 * ours sent back. */
static void on_auth_frame(struct client *c, const struct upp_hdr *h, const uint8_t *p)
{
	uint8_t cnonce[UPP_NONCE], mac[UPP_MAC], want[UPP_MAC];

	if (h->type != UPP_AUTH || upp_get_auth(p, h->length, cnonce, mac) < 0) {
		protocol_error(c, EACCES, "expected AUTH");
		return;
	}
	upp_auth_mac(server.secret, server.secret_len, 0, c->nonce, cnonce, want);
	if (!upp_equal32(mac, want)) {
		server.errors++;
		LOG(LOG_WARN, "client %u (%s): authentication failed", c->serial, c->peer);
		reply_error(c, h->id, EACCES, "authentication failed");
		c->close_after_send = true;
		return;
	}
	c->authed = true;
	upp_auth_mac(server.secret, server.secret_len, 1, c->nonce, cnonce, mac);
	reply_small(c, UPP_AUTH | UPP_REPLY, h->id, mac, upp_put_auth(want, NULL, mac));
	LOG(LOG_INFO, "client %u (%s): authenticated", c->serial, c->peer);
}

static void on_frame(struct client *c, const struct upp_hdr *h, const uint8_t *p)
{
	server.requests++;
	METRIC_ADD(requests, 1);
	c->last_request = now_s();
	if (!c->hello) {
		on_hello_frame(c, h, p);
		return;
	}
	if (!c->authed) {
		on_auth_frame(c, h, p);
		return;
	}
	switch (h->type) {
	case UPP_OPEN:
	case UPP_OPEN_IMAGE:
		on_open_frame(c, h->id, p, h->length, h->type == UPP_OPEN_IMAGE);
		break;
	case UPP_READ:
		on_read_frame(c, h->id, p, h->length);
		break;
	case UPP_CLOSE:
		on_close_frame(c, h->id, p, h->length);
		break;
	case UPP_STATS:
		if (h->length)
			protocol_error(c, EPROTO, "malformed STATS");
		else
			on_stats_frame(c, h->id);
		break;
	default:
		protocol_error(c, EPROTO, "unknown frame type");
		break;
	}
}

/*
 * Whether a READ from c may go now. Past --queue-limit in all, a client
 * holding replies waits for them to go; one holding none may go on to a
 * quarter past it. The daemon's replies take at most 1.25 times the limit
 * and one READ, however many clients hold them.
 */
static bool read_may_go(const struct client *c)
{
	return server.queued < server.queue_limit ||
	       (c->out_bytes + c->pending_bytes == 0 &&
		server.queued < server.queue_limit + server.queue_limit / 4);
}

/* Consumes the complete frames in the receive buffer, as far as limits allow. */
void parse_frames(struct client *c)
{
	bool partial = false; /* stopped for bytes still to come, not for our limits */

	while (!c->closing && !c->close_after_send && !c->loading &&
	       c->inflight < UPP_MAX_INFLIGHT && c->out_bytes + c->pending_bytes < OUT_LIMIT) {
		struct upp_hdr h;
		size_t whole;
		int ret = upp_get_hdr(c->rbuf, c->rlen, UPP_MAX_FRAME, &h);

		if (ret == -EAGAIN) {
			partial = c->rlen > 0;
			break;
		}
		if (ret < 0) {
			protocol_error(c, ret == -EMSGSIZE ? EMSGSIZE : EPROTO,
				       ret == -EMSGSIZE ? "frame longer than 64 KiB" : "bad frame header");
			c->rlen = 0;
			break;
		}
		whole = UPP_HDR_SIZE + h.length;
		if (c->rlen < whole) {
			partial = true;
			break;
		}
		if (h.type == UPP_READ && c->authed && !read_may_go(c)) {
			if (!server.read_waits || server.queued < server.queued_at_wait)
				server.queued_at_wait = server.queued;
			server.read_waits = true;
			break;
		}
		on_frame(c, &h, c->rbuf + UPP_HDR_SIZE);
		if (c->closing || c->close_after_send) {
			c->rlen = 0; /* nothing more is read from this client */
			break;
		}
		memmove(c->rbuf, c->rbuf + whole, c->rlen - whole);
		c->rlen -= whole;
	}
	/* Frames waiting while we do not read from it (paused at its limits)
	 * are not late: the read timeout runs only while we wait for bytes. */
	c->frame_since = partial ? (c->frame_since ? c->frame_since : now_s()) : 0;
}

void on_client_accept(struct listener *l, int res)
{
	struct io_uring_sqe *sqe;

	if (res >= 0) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct client *c;

		if (server.nclients >= (unsigned)server.opts->max_clients || server.draining) {
			server.refused++;
			LOG(LOG_WARN, "refusing a client on %s: %s", l->name,
			    server.draining ? "shutting down" : "max-clients reached");
			close(res);
		} else if (!(c = calloc(1, sizeof(*c))) ||
			   !(c->rbuf = malloc(UPP_HDR_SIZE + UPP_MAX_FRAME))) {
			free(c);
			close(res);
			LOG(LOG_ERR, "out of memory accepting a client");
		} else {
			int one = 1;

			c->fd = res;
			c->serial = ++server.serial;
			for (int i = 0; i < UPP_MAX_HANDLES; i++)
				c->handles[i] = -1;
			getpeername(res, (struct sockaddr *)&ss, &sl);
			if (ss.ss_family == AF_UNIX) {
				struct ucred cr;
				socklen_t cl = sizeof(cr);
				if (getsockopt(res, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0)
					snprintf(c->peer, sizeof(c->peer), "unix pid %d uid %u",
						 (int)cr.pid, (unsigned)cr.uid);
				else
					snprintf(c->peer, sizeof(c->peer), "unix");
			} else {
				char host[64] = "?", port[16] = "?";
				getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port,
					    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
				snprintf(c->peer, sizeof(c->peer), "tcp %s:%s", host, port);
				c->tcp = true;
				setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			}
			c->last_request = now_s();
			c->next = server.clients;
			if (server.clients)
				server.clients->prev = c;
			server.clients = c;
			server.nclients++;
			server.accepted++;
			METRIC_ADD(clients, 1);
			METRIC_ADD(clients_total, 1);
			LOG(LOG_INFO, "client %u (%s) connected on %s; %u connected", c->serial,
			    c->peer, l->name, server.nclients);
			post_recv(c);
		}
	} else if (res != -EINTR && res != -ECONNABORTED && res != -EAGAIN && !server.draining) {
		/* (While draining, the listeners were closed under their accepts.) */
		LOG(LOG_ERR, "accept on %s: %s", l->name, strerror(-res));
	}
	if (server.draining || l->fd < 0)
		return;
	sqe = upp_get_sqe(&server.ring);
	if (sqe) {
		io_uring_prep_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
		io_uring_sqe_set_data(sqe, op_tag(l, OP_ACCEPT));
	}
}

void on_client_recv(struct client *c, int res)
{
	c->recv_posted = false;
	if (!c->closing) {
		if (res == 0) {
			client_close(c, c->rlen ? "disconnected in the middle of a frame"
						: "disconnected");
		} else if (res < 0) {
			if (res != -EINTR && res != -EAGAIN)
				client_close(c, strerror(-res));
		} else {
			c->rlen += (size_t)res;
			parse_frames(c);
		}
	}
	if (!c->closing)
		post_recv(c);
	client_op_done(c);
}

void on_client_send(struct client *c, int res)
{
	c->send_posted = false;
	if (!c->closing) {
		if (res < 0 && res != -EINTR && res != -EAGAIN) {
			client_close(c, strerror(-res));
		} else if (res > 0) {
			struct out_buf *b = c->outq;

			c->send_progress = now_s();
			b->off += (size_t)res;
			if (b->off == b->len) {
				c->outq = b->next;
				if (!c->outq)
					c->outq_tail = NULL;
				c->out_bytes -= b->len;
				server.queued -= b->len;
				free(b);
			}
		}
	}
	if (!c->closing) {
		if (!c->outq && c->close_after_send) {
			client_close(c, "after a protocol error");
		} else {
			post_send(c);
			parse_frames(c); /* room again: frames waiting in the buffer may go */
			post_recv(c);
		}
	}
	client_op_done(c);
}
