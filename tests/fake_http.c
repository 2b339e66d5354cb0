/* SPDX-License-Identifier: MIT */
/*
 * A misbehaving HTTP server for tests/check_url, for what nginx will not
 * do: serve one object (size bytes of upt_byte(off, seed), ETag "v1") on
 * 127.0.0.1 (an ephemeral port, printed as "port N"), keep-alive, a
 * thread per connection, in one of these modes:
 *   whole     every GET gets 200 and the whole body, Range ignored
 *   stall     a ranged GET gets its 206 headers and half the bytes, then nothing
 *   stallbig  the same for a ranged GET of more than 64 KiB (a chunk), while the
 *             small ones an opener makes (a snapshot's magic) are answered
 *   flaky     every other ranged GET gets 503 (the first too)
 *   redirect  HEAD gets 302 to the same path on 127.0.0.2 (another host)
 * Not a test; killed by the test that started it.
 */
#include "config.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static const char *mode;
static uint8_t *body;
static size_t size;
static atomic_uint gets;

static int send_all(int fd, const void *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return -1;
		p = (const char *)p + w;
		n -= (size_t)w;
	}
	return 0;
}

static int answer(int fd, const char *req)
{
	bool head = !strncmp(req, "HEAD ", 5);
	const char *range = strcasestr(req, "\r\nRange: bytes=");
	uint64_t first = 0, last = size - 1;
	char hdr[512];
	int n;

	if (head && !strcmp(mode, "redirect")) {
		const char *path = req + 5, *sp = strchr(path, ' ');
		struct sockaddr_in a;
		socklen_t al = sizeof(a);

		getsockname(fd, (struct sockaddr *)&a, &al);
		n = snprintf(hdr, sizeof(hdr),
			     "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:%d%.*s\r\n"
			     "Content-Length: 0\r\n\r\n", ntohs(a.sin_port), (int)(sp - path), path);
		return send_all(fd, hdr, (size_t)n);
	}
	if (head || !range || !strcmp(mode, "whole")) {
		n = snprintf(hdr, sizeof(hdr),
			     "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: %zu\r\n\r\n", size);
		if (send_all(fd, hdr, (size_t)n))
			return -1;
		return head ? 0 : send_all(fd, body, size);
	}
	if (sscanf(range + 15, "%" SCNu64 "-%" SCNu64, &first, &last) != 2 || last >= size ||
	    first > last) {
		n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 416 Range Not Satisfiable\r\n"
						 "Content-Length: 0\r\n\r\n");
		return send_all(fd, hdr, (size_t)n);
	}
	if (!strcmp(mode, "flaky") && atomic_fetch_add(&gets, 1) % 2 == 0) {
		n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 503 Slow Down\r\nContent-Length: 4\r\n\r\nbusy");
		return send_all(fd, hdr, (size_t)n);
	}
	n = snprintf(hdr, sizeof(hdr),
		     "HTTP/1.1 206 Partial Content\r\nETag: \"v1\"\r\nContent-Length: %" PRIu64
		     "\r\nContent-Range: bytes %" PRIu64 "-%" PRIu64 "/%zu\r\n\r\n",
		     last - first + 1, first, last, size);
	if (send_all(fd, hdr, (size_t)n))
		return -1;
	if (!strcmp(mode, "stall") || (!strcmp(mode, "stallbig") && last - first >= 64 << 10)) {
		send_all(fd, body + first, (size_t)(last - first + 1) / 2);
		pause();
	}
	return send_all(fd, body + first, (size_t)(last - first + 1));
}

static void *conn_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char req[8192];
	size_t len = 0;

	for (;;) {
		char *end = memmem(req, len, "\r\n\r\n", 4);
		ssize_t r;

		if (end) {
			size_t used = (size_t)(end + 4 - req);

			*end = 0;
			if (answer(fd, req))
				break;
			memmove(req, req + used, len - used);
			len -= used;
			continue;
		}
		if (len == sizeof(req))
			break;
		r = recv(fd, req + len, sizeof(req) - len, 0);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int ls;

	if (argc != 4) {
		fprintf(stderr, "usage: fake_http MODE SIZE SEED\n");
		return 2;
	}
	mode = argv[1];
	size = strtoul(argv[2], NULL, 0);
	body = malloc(size);
	if (!body)
		return 1;
	upt_fill(body, size, 0, (unsigned)strtoul(argv[3], NULL, 0));
	ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 64) ||
	    getsockname(ls, (struct sockaddr *)&a, &al))
		return 1;
	printf("port %d\n", ntohs(a.sin_port));
	fflush(stdout);
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		pthread_t th;

		if (fd < 0)
			continue;
		if (pthread_create(&th, NULL, conn_main, (void *)(intptr_t)fd)) {
			close(fd);
			continue;
		}
		pthread_detach(th);
	}
}
