/* SPDX-License-Identifier: MIT */
/* Connecting to upagerd, blocking, by a deadline (lib/remote_handshake.c). Internal. */
#ifndef UPAGER_REMOTE_HANDSHAKE_H
#define UPAGER_REMOTE_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

/* Whom to connect to, for what, and how we prove who we are. */
struct upager__remote_peer {
	char uri[512], object[UPP_MAX_PATH + 1];
	bool image; /* UPAGER_REMOTE_SNAPSHOT: OPEN_IMAGE, the memory a snapshot describes */
	uint8_t secret[4096];
	size_t secret_len;
	unsigned connect_timeout_ms;
};

/*
 * Connects, says HELLO and opens the object, all by until_ns: the
 * descriptor, or -errno (-EACCES, with *why saying so, from a server that
 * does not prove it knows the secret).
 */
int upager__remote_handshake(const struct upager__remote_peer *peer, uint64_t until_ns,
			     uint32_t *handle, uint64_t *size, const char **why);
/* Sends len bytes on fd by until_ns: 0, -ETIMEDOUT or -errno. */
int upager__remote_send_all(int fd, const uint8_t *p, size_t len, uint64_t until_ns);
/*
 * The whole of a small object (at most max bytes, else -EFBIG), over a
 * connection of its own with like's address and credentials, all within
 * one connect timeout (else -ETIMEDOUT): *bufp (malloc'd) and *lenp.
 */
int upager__remote_fetch_small(const struct upager__remote_peer *like, const char *object,
			       size_t max, uint8_t **bufp, size_t *lenp);

#endif
