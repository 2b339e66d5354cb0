/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: every decoder of the page protocol (lib/protocol.h).
 * The first byte picks the decoder, the rest is its input. A message that
 * decodes must encode back to the very same bytes: a decoder that accepts
 * what the encoder would write differently is a codec that disagrees with
 * itself.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

/* Encoders write at most this much for any message a decoder accepts. */
#define OUT_MAX (UPP_HDR_SIZE + 8 + 4 * UPP_MAX_RANGES + UPP_MAX_FRAME + 64)

static void same(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	if (alen != blen || memcmp(a, b, alen))
		abort(); /* decode + encode is not the identity */
}

static void expect_errno(int ret)
{
	if (ret != 0 && ret != -EPROTO && ret != -EMSGSIZE && ret != -EAGAIN && ret != -EBADMSG)
		abort(); /* documented: 0 or one of these */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[OUT_MAX];
	const uint8_t *p = data + 1;
	size_t len;
	int ret;

	if (size < 1)
		return 0;
	len = size - 1;
	switch (data[0] % 10) {
	case 0: {
		struct upp_hdr h;

		ret = upp_get_hdr(p, len, UPP_MAX_FRAME, &h);
		expect_errno(ret);
		if (ret == 0) {
			if (h.length > UPP_MAX_FRAME)
				abort();
			same(p, UPP_HDR_SIZE, out, upp_put_hdr(out, h.type, h.id, h.length));
		}
		break;
	}
	case 1: {
		struct upp_hello h;

		ret = upp_get_hello(p, len, &h);
		expect_errno(ret);
		if (ret == 0)
			same(p, len, out, upp_put_hello(out, &h));
		break;
	}
	case 2: {
		struct upp_hello_reply h;

		ret = upp_get_hello_reply(p, len, &h);
		expect_errno(ret);
		if (ret == 0)
			same(p, len, out, upp_put_hello_reply(out, &h));
		break;
	}
	case 3: {
		uint8_t nonce[UPP_NONCE], mac[UPP_MAC];
		int with_nonce = len > UPP_MAC; /* the request has one, the reply not */

		ret = upp_get_auth(p, len, with_nonce ? nonce : NULL, mac);
		expect_errno(ret);
		if (ret == 0)
			same(p, len, out, upp_put_auth(out, with_nonce ? nonce : NULL, mac));
		break;
	}
	case 4: {
		const char *path;
		uint16_t n;

		ret = upp_get_open(p, len, &path, &n);
		expect_errno(ret);
		if (ret == 0) {
			if (n == 0 || n > UPP_MAX_PATH || memchr(path, 0, n))
				abort();
			same(p, len, out, upp_put_open(out, path, n));
		}
		break;
	}
	case 5: {
		uint32_t handle;
		uint64_t sz;

		ret = upp_get_opened(p, len, &handle, &sz);
		expect_errno(ret);
		if (ret == 0)
			same(p, len, out, upp_put_opened(out, handle, sz));
		break;
	}
	case 6: {
		struct upp_read rd;
		uint64_t total = 0;

		ret = upp_get_read(p, len, &rd);
		expect_errno(ret);
		if (ret == 0) {
			if (rd.n == 0 || rd.n > UPP_MAX_RANGES)
				abort();
			for (uint32_t i = 0; i < rd.n; i++)
				total += rd.r[i].length;
			if (total > UPP_MAX_READ)
				abort();
			same(p, len, out, upp_put_read(out, &rd));
		}
		break;
	}
	case 7: {
		uint32_t handle;

		ret = upp_get_handle(p, len, &handle);
		expect_errno(ret);
		if (ret == 0)
			same(p, len, out, upp_put_handle(out, handle));
		break;
	}
	case 8: {
		struct upp_error e;

		ret = upp_get_error(p, len, &e);
		expect_errno(ret);
		if (ret == 0 && len <= UPP_MAX_FRAME)
			same(p, len, out, upp_put_error(out, e.code, e.msg, e.msg_len));
		break;
	}
	case 9: {
		/* DATA answers a READ: the request's range count and lengths come
		 * first (n, then n wanted lengths), then the reply. */
		uint32_t wanted[UPP_MAX_RANGES], got[UPP_MAX_RANGES], n;
		const uint8_t *d;

		if (len < 1)
			break;
		n = p[0] % (UPP_MAX_RANGES + 2); /* one past the limit too */
		p++, len--;
		for (uint32_t i = 0; i < UPP_MAX_RANGES; i++)
			wanted[i] = i < n && len >= 2 * (size_t)(i + 1) ? (uint32_t)p[2 * i] << 8 | p[2 * i + 1] : 4096;
		if (len >= 2 * (size_t)n)
			p += 2 * (size_t)n, len -= 2 * (size_t)n;
		ret = upp_get_data(p, len, n, wanted, got, &d);
		expect_errno(ret);
		if (ret == 0) {
			size_t head;
			uint64_t sum = 0;

			if (n == 0 || n > UPP_MAX_RANGES)
				abort();
			for (uint32_t i = 0; i < n; i++) {
				if (got[i] > wanted[i])
					abort();
				sum += got[i];
			}
			head = upp_put_data_head(out, upp_crc32c(0, p + 8, len - 8), n, got);
			if (d != p + head || sum != len - head)
				abort();
			same(p, head, out, head);
		}
		break;
	}
	}
	return 0;
}
