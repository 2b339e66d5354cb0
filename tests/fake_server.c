/* SPDX-License-Identifier: MIT */
/*
 * tests/fake_server LISTEN_FD MAP_FD PARENT_PID: the fake page server
 * (fake_server.h), started by upt_fake_start. It serves each connection
 * accepted on LISTEN_FD in a thread of its own, as the script in the
 * struct upt_fake mapped from MAP_FD says, until it is killed; it never
 * forks. When the thread that started it dies first, it removes its
 * socket and directory and exits.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake_server.h"
#include "helpers.h"
#include "protocol.h"

static struct upt_fake *fake;

/* Reads or writes all of len bytes: false on EOF or error. */
static bool io_full(int fd, void *buf, size_t len, bool out)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = out ? send(fd, (char *)buf + done, len - done, MSG_NOSIGNAL)
				: recv(fd, (char *)buf + done, len - done, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		done += (size_t)n;
	}
	return true;
}

/* One frame into buf (header, then a payload of at most cap bytes). */
static bool recv_frame(int fd, struct upp_hdr *h, uint8_t *buf, size_t cap)
{
	return io_full(fd, buf, UPP_HDR_SIZE, false) &&
	       upp_get_hdr(buf, UPP_HDR_SIZE, (uint32_t)cap, h) == 0 &&
	       io_full(fd, buf + UPP_HDR_SIZE, h->length, false);
}

/* Sends the frame whose payload (payload bytes) follows its header at frame. */
static bool reply(int fd, uint8_t type, uint32_t id, uint8_t *frame, size_t payload)
{
	upp_put_hdr(frame, type, id, (uint32_t)payload);
	return io_full(fd, frame, UPP_HDR_SIZE + payload, true);
}

static bool reply_error(int fd, uint32_t id, uint32_t code, const char *msg)
{
	uint8_t out[UPP_HDR_SIZE + 64];

	return reply(fd, UPP_ERROR, id, out,
		     upp_put_error(out + UPP_HDR_SIZE, code, msg, (uint16_t)strlen(msg)));
}

static void sleep_ms(int ms)
{
	if (ms > 0)
		usleep((useconds_t)ms * 1000);
}

/* The step of a script for the n-th connection or READ: the last for all after. */
static int step(int n, int nsteps)
{
	return n < nsteps ? n : nsteps - 1;
}

/*
 * The DATA reply to READ rd of an object of size bytes (nothing past its
 * end), built in buf: the .ws bytes when ws, else the seeded pattern.
 * Returns the frame's length.
 */
static size_t data_frame(uint32_t id, const struct upp_read *rd, uint64_t size, bool ws,
			 uint8_t *buf)
{
	const uint8_t *ws_bytes = (const uint8_t *)(fake + 1);
	size_t len = UPP_HDR_SIZE + 8 + 4 * (size_t)rd->n;
	uint32_t got[UPP_MAX_RANGES];

	for (uint32_t i = 0; i < rd->n; i++) {
		uint64_t off = rd->r[i].offset;

		got[i] = off >= size ? 0 : (uint32_t)(size - off < rd->r[i].length ? size - off
										 : rd->r[i].length);
		if (ws && fake->has_ws_bytes)
			memcpy(buf + len, ws_bytes + off, got[i]);
		else if (ws)
			memset(buf + len, 0, got[i]);
		else
			upt_fill(buf + len, got[i], off, fake->script.seed);
		len += got[i];
	}
	/* The crc covers got[] and the data: write got[] first. */
	upp_put_data_head(buf + UPP_HDR_SIZE, 0, rd->n, got);
	upp_put_data_head(buf + UPP_HDR_SIZE,
			  upp_crc32c(0, buf + UPP_HDR_SIZE + 8, len - UPP_HDR_SIZE - 8), rd->n, got);
	upp_put_hdr(buf, UPP_READ | UPP_REPLY, id, (uint32_t)(len - UPP_HDR_SIZE));
	return len;
}

/* How the read script answers READ rd, the k-th of the object: true for ERROR. */
static bool read_fails(int k, const struct upp_read *rd)
{
	const struct upt_fake_read *how;
	uint64_t total = 0;

	if (!fake->script.nread)
		return false;
	how = &fake->script.read[step(k, fake->script.nread)];
	if (how->hold)
		while (!atomic_load(&fake->released))
			usleep(1000);
	for (uint32_t i = 0; i < rd->n; i++)
		total += rd->r[i].length;
	if (!how->error || total < how->error_from)
		return false;
	sleep_ms(how->delay_ms);
	return true;
}

/* The handshake as mode says: false if the connection ends there. */
static bool handshake(int fd, enum upt_fake_mode mode, int serial, uint8_t *buf, size_t cap)
{
	const struct upt_fake_script *sc = &fake->script;
	bool auth = fake->secret[0] && !(sc->impostor_from && serial >= sc->impostor_from);
	struct upp_hello_reply hr = { UPP_VERSION, UPP_FEAT_IMAGE, UPP_MAX_FRAME, UPP_MAX_READ,
				      UPP_MAX_INFLIGHT, UPP_MAX_HANDLES, { 0 } };
	uint8_t out[UPP_HDR_SIZE + 24 + UPP_NONCE + UPP_MAC];
	struct upp_hdr h;
	size_t n;

	if (mode == UPT_FAKE_CLOSE || !recv_frame(fd, &h, buf, cap) || h.type != UPP_HELLO)
		return false;
	if (auth) {
		hr.features |= UPP_FEAT_AUTH;
		memset(hr.nonce, 0x42 + serial, UPP_NONCE);
	}
	n = upp_put_hello_reply(out + UPP_HDR_SIZE, &hr);
	upp_put_hdr(out, UPP_HELLO | UPP_REPLY, h.id, (uint32_t)n);
	n += UPP_HDR_SIZE;
	sleep_ms(sc->hello_delay_ms);
	if (mode == UPT_FAKE_DIE_HELLO) {
		io_full(fd, out, n / 2, true);
		return false;
	}
	for (size_t i = 0; mode == UPT_FAKE_DRIP && i < n; i++) {
		if (!io_full(fd, out + i, 1, true))
			return false;
		sleep_ms(500);
	}
	if (mode != UPT_FAKE_DRIP && !io_full(fd, out, n, true))
		return false;
	if (auth) {
		uint8_t cnonce[UPP_NONCE], mac[UPP_MAC];

		if (!recv_frame(fd, &h, buf, cap) || h.type != UPP_AUTH ||
		    upp_get_auth(buf + UPP_HDR_SIZE, h.length, cnonce, mac) < 0)
			return false;
		upp_auth_mac(fake->secret, strlen(fake->secret), 1, hr.nonce, cnonce, mac);
		return reply(fd, UPP_AUTH | UPP_REPLY, h.id, out,
			     upp_put_auth(out + UPP_HDR_SIZE, NULL, mac));
	}
	return true;
}

/* One connection, the serial-th, as the script says. */
static void serve(int fd, int serial, uint8_t *buf, size_t cap)
{
	const struct upt_fake_script *sc = &fake->script;
	enum upt_fake_mode mode = sc->nconn ? sc->conn[step(serial, sc->nconn)] : UPT_FAKE_GOOD;
	uint64_t size = sc->size;
	bool ws = false; /* serving OBJECT.ws */
	uint8_t out[UPP_HDR_SIZE + 16];
	struct upp_hdr h;
	int reads = 0;

	if (!handshake(fd, mode, serial, buf, cap) || !recv_frame(fd, &h, buf, cap) ||
	    (h.type != UPP_OPEN && h.type != UPP_OPEN_IMAGE))
		return;
	{
		const char *name;
		uint16_t len;

		if (upp_get_open(buf + UPP_HDR_SIZE, h.length, &name, &len) < 0)
			return;
		if (len > 3 && !memcmp(name + len - 3, ".ws", 3)) {
			if (!sc->ws_size) {
				reply_error(fd, h.id, ENOENT, "no .ws");
				return;
			}
			size = sc->ws_size;
			ws = true;
		}
	}
	if (!reply(fd, h.type | UPP_REPLY, h.id, out, upp_put_opened(out + UPP_HDR_SIZE, 1, size)))
		return;
	if (mode == UPT_FAKE_DEAF)
		for (;;)
			pause(); /* until killed */
	while (recv_frame(fd, &h, buf, cap) && h.type == UPP_READ) {
		struct upp_read rd;
		size_t len;

		if (upp_get_read(buf + UPP_HDR_SIZE, h.length, &rd) < 0)
			return;
		if (ws) {
			atomic_fetch_add(&fake->ws_reads, 1);
			sleep_ms(sc->ws_read_delay_ms);
		} else if (read_fails(atomic_fetch_add(&fake->reads, 1), &rd)) {
			atomic_fetch_add(&fake->errors, 1);
			if (!reply_error(fd, h.id, EIO, "hostile"))
				return;
			continue;
		}
		len = data_frame(h.id, &rd, size, ws, buf);
		if (!io_full(fd, buf, mode == UPT_FAKE_DIE_DATA ? len / 2 : len, true) ||
		    mode == UPT_FAKE_DIE_DATA)
			return;
		if (serial == 0 && ++reads == sc->close_after_reads)
			return;
	}
}

struct conn {
	int fd, serial;
};

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	const size_t cap = 8 + 4 * UPP_MAX_RANGES + UPP_MAX_READ;
	uint8_t *buf = malloc(UPP_HDR_SIZE + cap);

	if (buf)
		serve(c->fd, c->serial, buf, cap);
	close(c->fd);
	free(buf);
	free(c);
	return NULL;
}

static void on_parent_death(int sig)
{
	(void)sig;
	unlink(fake->path);
	rmdir(fake->dir);
	_exit(0);
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_parent_death };
	pthread_attr_t detached;
	struct stat st;
	int lfd, mfd;

	if (argc != 4)
		return 2;
	lfd = atoi(argv[1]);
	mfd = atoi(argv[2]);
	if (fstat(mfd, &st) < 0 ||
	    (fake = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0)) ==
		    MAP_FAILED)
		return 2;
	close(mfd);
	sigaction(SIGTERM, &sa, NULL);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != (pid_t)atoi(argv[3]))
		on_parent_death(SIGTERM); /* it died before prctl */
	pthread_attr_init(&detached);
	pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
	for (;;) {
		struct conn *c;
		pthread_t t;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			continue;
		c = malloc(sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		*c = (struct conn){ fd, atomic_fetch_add(&fake->conns, 1) };
		if (pthread_create(&t, &detached, conn_thread, c))
			conn_thread(c); /* serve it here */
	}
}
