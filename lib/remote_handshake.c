/* SPDX-License-Identifier: MIT */
/*
 * Talking to upagerd a step at a time (docs/PROTOCOL.md): dialing a unix:
 * or tcp: address, the HELLO, the proof of the shared secret both ways and
 * the OPEN, and one-shot fetches of a small object (a working set beside a
 * remote snapshot). Everything here blocks, and everything is bounded by
 * one absolute deadline, so a server that answers a byte at a time cannot
 * stretch it. Apart from the connection thread (lib/remote_conn.c), which
 * calls it to (re)connect and to send, because none of this needs a
 * connection's queue or thread: it needs only whom to talk to.
 */
#include "config.h"

#include <errno.h>
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
#include "remote_handshake.h"
#include "sha256.h"
#include "upager-int.h"

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
int upager__remote_send_all(int fd, const uint8_t *p, size_t len, uint64_t until_ns)
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
int upager__remote_handshake(const struct upager__remote_peer *peer, uint64_t until_ns,
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
	ret = upager__remote_send_all(fd, buf, UPP_HDR_SIZE + n, until_ns);
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
			ret = upager__remote_send_all(fd, buf, UPP_HDR_SIZE + n, until_ns);
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
		ret = upager__remote_send_all(fd, buf, UPP_HDR_SIZE + n, until_ns);
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
		fd = upager__remote_handshake(peer, until, &handle, &size, &why);
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
		ret = upager__remote_send_all(fd, frame, UPP_HDR_SIZE + n, until);
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
