/* SPDX-License-Identifier: MIT */
/* The page protocol's codec (docs/PROTOCOL.md). Every read of the input is
 * preceded by a check that the bytes are there. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "le.h"
#include "protocol.h"
#include "sha256.h"

/* ---- header ---- */

size_t upp_put_hdr(uint8_t *out, uint8_t type, uint32_t id, uint32_t length)
{
	put32(out, UPP_MAGIC);
	out[4] = type;
	out[5] = 0;
	put16(out + 6, 0);
	put32(out + 8, id);
	put32(out + 12, length);
	return UPP_HDR_SIZE;
}

int upp_get_hdr(const uint8_t *in, size_t len, uint32_t max_payload, struct upp_hdr *hdr)
{
	/* Judge the magic as soon as it is there: garbage fails fast. */
	for (size_t i = 0; i < 4 && i < len; i++)
		if (in[i] != (uint8_t)(UPP_MAGIC >> (8 * i)))
			return -EPROTO;
	if (len < UPP_HDR_SIZE)
		return -EAGAIN;
	if (in[5] != 0 || get16(in + 6) != 0)
		return -EPROTO;
	hdr->type = in[4];
	hdr->id = get32(in + 8);
	hdr->length = get32(in + 12);
	if (hdr->length > max_payload)
		return -EMSGSIZE;
	return 0;
}

/* ---- messages ---- */

size_t upp_put_hello(uint8_t *out, const struct upp_hello *h)
{
	put16(out, h->version_min);
	put16(out + 2, h->version_max);
	put32(out + 4, h->features);
	return 8;
}

int upp_get_hello(const uint8_t *p, size_t len, struct upp_hello *h)
{
	if (len != 8)
		return -EPROTO;
	h->version_min = get16(p);
	h->version_max = get16(p + 2);
	h->features = get32(p + 4);
	return h->version_min <= h->version_max ? 0 : -EPROTO;
}

size_t upp_put_hello_reply(uint8_t *out, const struct upp_hello_reply *h)
{
	put16(out, h->version);
	put16(out + 2, 0);
	put32(out + 4, h->features);
	put32(out + 8, h->max_frame);
	put32(out + 12, h->max_read);
	put32(out + 16, h->max_inflight);
	put32(out + 20, h->max_handles);
	if (!(h->features & UPP_FEAT_AUTH))
		return 24;
	memcpy(out + 24, h->nonce, UPP_NONCE);
	return 24 + UPP_NONCE;
}

int upp_get_hello_reply(const uint8_t *p, size_t len, struct upp_hello_reply *h)
{
	if (len < 24 || get16(p + 2) != 0)
		return -EPROTO;
	h->version = get16(p);
	h->features = get32(p + 4);
	h->max_frame = get32(p + 8);
	h->max_read = get32(p + 12);
	h->max_inflight = get32(p + 16);
	h->max_handles = get32(p + 20);
	if (len != ((h->features & UPP_FEAT_AUTH) ? 24u + UPP_NONCE : 24u))
		return -EPROTO;
	if (h->features & UPP_FEAT_AUTH)
		memcpy(h->nonce, p + 24, UPP_NONCE);
	return 0;
}

size_t upp_put_auth(uint8_t *out, const uint8_t nonce[UPP_NONCE], const uint8_t mac[UPP_MAC])
{
	if (nonce)
		memcpy(out, nonce, UPP_NONCE);
	memcpy(out + (nonce ? UPP_NONCE : 0), mac, UPP_MAC);
	return (nonce ? UPP_NONCE : 0) + UPP_MAC;
}

int upp_get_auth(const uint8_t *p, size_t len, uint8_t nonce[UPP_NONCE], uint8_t mac[UPP_MAC])
{
	if (len != (nonce ? UPP_NONCE : 0) + UPP_MAC)
		return -EPROTO;
	if (nonce)
		memcpy(nonce, p, UPP_NONCE);
	memcpy(mac, p + (nonce ? UPP_NONCE : 0), UPP_MAC);
	return 0;
}

void upp_auth_mac(const void *secret, size_t len, int from_server,
		  const uint8_t server_nonce[UPP_NONCE], const uint8_t client_nonce[UPP_NONCE],
		  uint8_t mac[UPP_MAC])
{
	static const char client_label[] = "upager-auth-v1 client";
	static const char server_label[] = "upager-auth-v1 server";

	if (from_server)
		upp_hmac_sha256(secret, len, server_label, sizeof(server_label) - 1, client_nonce,
				UPP_NONCE, server_nonce, UPP_NONCE, mac);
	else
		upp_hmac_sha256(secret, len, client_label, sizeof(client_label) - 1, server_nonce,
				UPP_NONCE, client_nonce, UPP_NONCE, mac);
}

size_t upp_put_open(uint8_t *out, const char *path, uint16_t len)
{
	put16(out, len);
	memcpy(out + 2, path, len);
	return 2u + len;
}

int upp_get_open(const uint8_t *p, size_t len, const char **path, uint16_t *path_len)
{
	uint16_t n;

	if (len < 2)
		return -EPROTO;
	n = get16(p);
	if (n == 0 || n > UPP_MAX_PATH || len != 2u + n || memchr(p + 2, 0, n))
		return -EPROTO;
	*path = (const char *)p + 2;
	*path_len = n;
	return 0;
}

size_t upp_put_opened(uint8_t *out, uint32_t handle, uint64_t size)
{
	put32(out, handle);
	put64(out + 4, size);
	return 12;
}

int upp_get_opened(const uint8_t *p, size_t len, uint32_t *handle, uint64_t *size)
{
	if (len != 12)
		return -EPROTO;
	*handle = get32(p);
	*size = get64(p + 4);
	return 0;
}

size_t upp_put_read(uint8_t *out, const struct upp_read *rd)
{
	put32(out, rd->handle);
	put32(out + 4, rd->n);
	for (uint32_t i = 0; i < rd->n; i++) {
		put64(out + 8 + 16 * i, rd->r[i].offset);
		put32(out + 16 + 16 * i, rd->r[i].length);
		put32(out + 20 + 16 * i, 0);
	}
	return 8 + 16 * (size_t)rd->n;
}

int upp_get_read(const uint8_t *p, size_t len, struct upp_read *rd)
{
	uint64_t total = 0;

	if (len < 8)
		return -EPROTO;
	rd->handle = get32(p);
	rd->n = get32(p + 4);
	if (rd->n == 0 || rd->n > UPP_MAX_RANGES || len != 8 + 16 * (size_t)rd->n)
		return -EPROTO;
	for (uint32_t i = 0; i < rd->n; i++) {
		rd->r[i].offset = get64(p + 8 + 16 * i);
		rd->r[i].length = get32(p + 16 + 16 * i);
		if (get32(p + 20 + 16 * i) != 0)
			return -EPROTO;
		total += rd->r[i].length;
	}
	return total > UPP_MAX_READ ? -EMSGSIZE : 0;
}

size_t upp_put_handle(uint8_t *out, uint32_t handle)
{
	put32(out, handle);
	return 4;
}

int upp_get_handle(const uint8_t *p, size_t len, uint32_t *handle)
{
	if (len != 4)
		return -EPROTO;
	*handle = get32(p);
	return 0;
}

size_t upp_put_error(uint8_t *out, uint32_t code, const char *msg, uint16_t len)
{
	put32(out, code);
	put16(out + 4, len);
	memcpy(out + 6, msg, len);
	return 6u + len;
}

int upp_get_error(const uint8_t *p, size_t len, struct upp_error *e)
{
	if (len < 6)
		return -EPROTO;
	e->code = get32(p);
	e->msg_len = get16(p + 4);
	if (len != 6u + e->msg_len)
		return -EPROTO;
	e->msg = (const char *)p + 6;
	return 0;
}

size_t upp_put_data_head(uint8_t *out, uint32_t crc, uint32_t n, const uint32_t *got)
{
	put32(out, crc);
	put32(out + 4, n);
	for (uint32_t i = 0; i < n; i++)
		put32(out + 8 + 4 * i, got[i]);
	return 8 + 4 * (size_t)n;
}

int upp_get_data(const uint8_t *p, size_t len, uint32_t n, const uint32_t *wanted,
		 uint32_t *got, const uint8_t **data)
{
	uint64_t sum = 0;
	size_t head;

	if (n == 0 || n > UPP_MAX_RANGES || len < 8 || get32(p + 4) != n)
		return -EPROTO;
	head = 8 + 4 * (size_t)n;
	if (len < head)
		return -EPROTO;
	for (uint32_t i = 0; i < n; i++) {
		got[i] = get32(p + 8 + 4 * i);
		if (got[i] > wanted[i])
			return -EPROTO;
		sum += got[i];
	}
	if (sum != len - head)
		return -EPROTO;
	if (upp_crc32c(0, p + 8, len - 8) != get32(p))
		return -EBADMSG;
	*data = p + head;
	return 0;
}
