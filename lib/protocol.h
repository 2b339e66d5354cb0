/* SPDX-License-Identifier: MIT */
/*
 * The page protocol (docs/PROTOCOL.md): frames and messages. Shared by
 * upagerd and the remote source; not part of the public API. Every decoder
 * treats its input as hostile: it checks each length against what is there
 * before reading, and a payload must parse to its last byte.
 */
#ifndef UPAGER_PROTOCOL_H
#define UPAGER_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "crc32c.h" /* frames carry a CRC32C */

#define UPP_MAGIC 0x31475055u /* "UPG1" little-endian */
#define UPP_VERSION 1
#define UPP_HDR_SIZE 16

#define UPP_MAX_FRAME (64u << 10)  /* request payload */
#define UPP_MAX_READ (8u << 20)    /* bytes per READ */
#define UPP_MAX_RANGES 64
#define UPP_MAX_INFLIGHT 64
#define UPP_MAX_HANDLES 256
#define UPP_MAX_PATH 4095

#define UPP_FEAT_AUTH 1u /* HELLO reply: the server wants AUTH (a nonce follows) */
#define UPP_FEAT_IMAGE 2u /* HELLO reply: the server takes OPEN_IMAGE */
#define UPP_NONCE 32
#define UPP_MAC 32

enum upp_type {
	UPP_HELLO = 0x01,
	UPP_AUTH = 0x02,
	UPP_OPEN = 0x03,
	UPP_READ = 0x04,
	UPP_CLOSE = 0x05,
	UPP_STATS = 0x06,
	UPP_OPEN_IMAGE = 0x07, /* OPEN of the memory a upager snapshot describes */
	UPP_REPLY = 0x80, /* bit set in every reply */
	UPP_ERROR = 0xFF,
};

struct upp_hdr {
	uint8_t type;
	uint32_t id;
	uint32_t length;
};

struct upp_range {
	uint64_t offset;
	uint32_t length;
};

struct upp_hello {
	uint16_t version_min, version_max;
	uint32_t features;
};

struct upp_hello_reply {
	uint16_t version;
	uint32_t features, max_frame, max_read, max_inflight, max_handles;
	uint8_t nonce[UPP_NONCE]; /* with UPP_FEAT_AUTH */
};

struct upp_read {
	uint32_t handle;
	uint32_t n;
	struct upp_range r[UPP_MAX_RANGES];
};

struct upp_error {
	uint32_t code;
	uint16_t msg_len;
	const char *msg; /* points into the payload; not NUL-terminated */
};

/* Writes a header; returns UPP_HDR_SIZE. */
size_t upp_put_hdr(uint8_t *out, uint8_t type, uint32_t id, uint32_t length);
/*
 * Parses a header from len bytes at in. 0 and *hdr set; -EAGAIN if fewer
 * than UPP_HDR_SIZE bytes are there; -EPROTO for a bad magic, flags or
 * reserved bits; -EMSGSIZE for a payload over max_payload.
 */
int upp_get_hdr(const uint8_t *in, size_t len, uint32_t max_payload, struct upp_hdr *hdr);

/* Payload encoders write to out (room for what they say) and return bytes written. */
size_t upp_put_hello(uint8_t *out, const struct upp_hello *h);
size_t upp_put_hello_reply(uint8_t *out, const struct upp_hello_reply *h);
/* AUTH: client nonce + MAC; the reply: the server's MAC. */
size_t upp_put_auth(uint8_t *out, const uint8_t nonce[UPP_NONCE], const uint8_t mac[UPP_MAC]);
size_t upp_put_open(uint8_t *out, const char *path, uint16_t len);
size_t upp_put_opened(uint8_t *out, uint32_t handle, uint64_t size);
size_t upp_put_read(uint8_t *out, const struct upp_read *rd);
size_t upp_put_handle(uint8_t *out, uint32_t handle);
size_t upp_put_error(uint8_t *out, uint32_t code, const char *msg, uint16_t len);
/* DATA: the part before the data (crc, n, got[]); the crc covers got[] and data. */
size_t upp_put_data_head(uint8_t *out, uint32_t crc, uint32_t n, const uint32_t *got);

/* Payload decoders: 0, or -EPROTO when the payload is not exactly one such message. */
int upp_get_hello(const uint8_t *p, size_t len, struct upp_hello *h);
int upp_get_hello_reply(const uint8_t *p, size_t len, struct upp_hello_reply *h);
int upp_get_auth(const uint8_t *p, size_t len, uint8_t nonce[UPP_NONCE], uint8_t mac[UPP_MAC]);
int upp_get_open(const uint8_t *p, size_t len, const char **path, uint16_t *path_len);
/*
 * The challenge-response MACs: HMAC-SHA256 keyed with the shared secret,
 * over a label, the server's nonce and the client's, in an order that
 * differs by direction so that neither side's answer can be replayed as
 * the other's.
 */
void upp_auth_mac(const void *secret, size_t len, int from_server,
		  const uint8_t server_nonce[UPP_NONCE], const uint8_t client_nonce[UPP_NONCE],
		  uint8_t mac[UPP_MAC]);
int upp_get_opened(const uint8_t *p, size_t len, uint32_t *handle, uint64_t *size);
/* Also -EMSGSIZE when the ranges add up past UPP_MAX_READ. */
int upp_get_read(const uint8_t *p, size_t len, struct upp_read *rd);
int upp_get_handle(const uint8_t *p, size_t len, uint32_t *handle);
int upp_get_error(const uint8_t *p, size_t len, struct upp_error *e);
/*
 * DATA: checks that n matches the request's, each got[i] <= wanted[i], the
 * sizes add up to len, and the CRC; -EBADMSG on a CRC mismatch. *data points
 * at the first data byte; got[] receives the lengths.
 */
int upp_get_data(const uint8_t *p, size_t len, uint32_t n, const uint32_t *wanted,
		 uint32_t *got, const uint8_t **data);

#endif
