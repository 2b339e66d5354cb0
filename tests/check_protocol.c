/* SPDX-License-Identifier: MIT */
/* The page protocol's codec: round trips, every malformation the spec
 * names, and random bytes, none of which may crash or read out of bounds
 * (CI runs this under ASan). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "protocol.h"
#include "sha256.h"

/* Bit by bit, from the definition: an independent reference. */
static uint32_t crc_ref(const uint8_t *p, size_t len)
{
	uint32_t c = ~0u;

	for (size_t i = 0; i < len; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
	}
	return ~c;
}

START_TEST(test_crc32c)
{
	uint8_t buf[4096];
	unsigned seed = 1;

	ck_assert_uint_eq(upp_crc32c(0, "123456789", 9), 0xE3069283u); /* the standard check */
	ck_assert_uint_eq(upp_crc32c(0, "", 0), 0);
	for (int i = 0; i < 200; i++) {
		size_t len = (size_t)rand_r(&seed) % sizeof(buf), cut;
		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)rand_r(&seed);
		ck_assert_uint_eq(upp_crc32c(0, buf, len), crc_ref(buf, len));
		cut = len ? (size_t)rand_r(&seed) % len : 0;
		ck_assert_uint_eq(upp_crc32c(upp_crc32c(0, buf, cut), buf + cut, len - cut),
				  crc_ref(buf, len));
	}
}
END_TEST

static void hex(const uint8_t *d, char *out)
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

/* FIPS 180-4 examples and RFC 4231 test cases 1, 2 and 6. */
START_TEST(test_sha256_hmac)
{
	struct upp_sha256 s;
	uint8_t d[32], key[131], big[1000];
	char h[65];

	upp_sha256_init(&s);
	upp_sha256_update(&s, "abc", 3);
	upp_sha256_final(&s, d);
	hex(d, h);
	ck_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	upp_sha256_init(&s);
	upp_sha256_final(&s, d);
	hex(d, h);
	ck_assert_str_eq(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	upp_sha256_init(&s);
	memset(big, 'a', sizeof(big));
	for (int i = 0; i < 1000; i++)
		upp_sha256_update(&s, big, sizeof(big)); /* a million 'a' */
	upp_sha256_final(&s, d);
	hex(d, h);
	ck_assert_str_eq(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

	memset(key, 0x0b, 20);
	upp_hmac_sha256(key, 20, "Hi There", 8, NULL, 0, NULL, 0, d);
	hex(d, h);
	ck_assert_str_eq(h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
	upp_hmac_sha256("Jefe", 4, "what do ya want ", 16, "for nothing?", 12, NULL, 0, d);
	hex(d, h);
	ck_assert_str_eq(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	memset(key, 0xaa, 131);
	upp_hmac_sha256(key, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54, NULL,
			0, NULL, 0, d);
	hex(d, h);
	ck_assert_str_eq(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
	ck_assert(upp_equal32(d, d));
	memcpy(big, d, 32);
	big[31] ^= 1;
	ck_assert(!upp_equal32(d, big));
}
END_TEST

START_TEST(test_header)
{
	uint8_t b[UPP_HDR_SIZE];
	struct upp_hdr h;

	ck_assert_uint_eq(upp_put_hdr(b, UPP_READ, 77, 1234), UPP_HDR_SIZE);
	ck_assert_int_eq(upp_get_hdr(b, sizeof(b), UPP_MAX_FRAME, &h), 0);
	ck_assert_uint_eq(h.type, UPP_READ);
	ck_assert_uint_eq(h.id, 77);
	ck_assert_uint_eq(h.length, 1234);
	for (size_t n = 0; n < UPP_HDR_SIZE; n++) /* a half frame waits */
		ck_assert_int_eq(upp_get_hdr(b, n, UPP_MAX_FRAME, &h), -EAGAIN);
	b[0] = 'G'; /* garbage is refused on its first byte */
	ck_assert_int_eq(upp_get_hdr(b, 1, UPP_MAX_FRAME, &h), -EPROTO);
	upp_put_hdr(b, UPP_READ, 1, 0);
	b[5] = 1;
	ck_assert_int_eq(upp_get_hdr(b, sizeof(b), UPP_MAX_FRAME, &h), -EPROTO);
	upp_put_hdr(b, UPP_READ, 1, 0);
	b[7] = 1;
	ck_assert_int_eq(upp_get_hdr(b, sizeof(b), UPP_MAX_FRAME, &h), -EPROTO);
	upp_put_hdr(b, UPP_READ, 1, 0xFFFFFFFFu); /* "4 GiB" */
	ck_assert_int_eq(upp_get_hdr(b, sizeof(b), UPP_MAX_FRAME, &h), -EMSGSIZE);
	upp_put_hdr(b, UPP_READ, 1, UPP_MAX_FRAME + 1);
	ck_assert_int_eq(upp_get_hdr(b, sizeof(b), UPP_MAX_FRAME, &h), -EMSGSIZE);
	upp_put_hdr(b, UPP_READ, 1, UPP_MAX_FRAME);
	ck_assert_int_eq(upp_get_hdr(b, sizeof(b), UPP_MAX_FRAME, &h), 0);
}
END_TEST

START_TEST(test_hello_open_close_error)
{
	struct upp_hello h = { 1, 3, 0x5 }, h2;
	struct upp_hello_reply r = { 1, 2, 3, 4, 5, 6, { 0 } }, r2;
	struct upp_error e;
	uint8_t b[8192];
	const char *path;
	uint16_t plen;
	uint32_t handle;
	uint64_t size;
	char longp[UPP_MAX_PATH + 1];

	ck_assert_int_eq(upp_get_hello(b, upp_put_hello(b, &h), &h2), 0);
	ck_assert(h2.version_min == 1 && h2.version_max == 3 && h2.features == 5);
	ck_assert_int_eq(upp_get_hello(b, 7, &h2), -EPROTO);
	ck_assert_int_eq(upp_get_hello(b, 9, &h2), -EPROTO);
	h.version_min = 4;
	ck_assert_int_eq(upp_get_hello(b, upp_put_hello(b, &h), &h2), -EPROTO);
	ck_assert_int_eq(upp_get_hello_reply(b, upp_put_hello_reply(b, &r), &r2), 0);
	ck_assert(memcmp(&r, &r2, sizeof(r)) == 0);

	ck_assert_int_eq(upp_get_open(b, upp_put_open(b, "a/b.img", 7), &path, &plen), 0);
	ck_assert(plen == 7 && memcmp(path, "a/b.img", 7) == 0);
	ck_assert_int_eq(upp_get_open(b, 1, &path, &plen), -EPROTO);
	ck_assert_int_eq(upp_get_open(b, upp_put_open(b, "", 0), &path, &plen), -EPROTO);
	ck_assert_int_eq(upp_get_open(b, upp_put_open(b, "a\0b", 3), &path, &plen), -EPROTO);
	ck_assert_int_eq(upp_get_open(b, upp_put_open(b, "abc", 3) - 1, &path, &plen), -EPROTO);
	ck_assert_int_eq(upp_get_open(b, upp_put_open(b, "abc", 3) + 1, &path, &plen), -EPROTO);
	memset(longp, 'x', sizeof(longp));
	ck_assert_int_eq(upp_get_open(b, upp_put_open(b, longp, UPP_MAX_PATH), &path, &plen), 0);
	ck_assert_int_eq(upp_get_open(b, upp_put_open(b, longp, UPP_MAX_PATH + 1), &path, &plen),
			 -EPROTO);

	ck_assert_int_eq(upp_get_opened(b, upp_put_opened(b, 9, 1ull << 40), &handle, &size), 0);
	ck_assert(handle == 9 && size == 1ull << 40);
	ck_assert_int_eq(upp_get_opened(b, 11, &handle, &size), -EPROTO);
	ck_assert_int_eq(upp_get_handle(b, upp_put_handle(b, 42), &handle), 0);
	ck_assert_uint_eq(handle, 42);
	ck_assert_int_eq(upp_get_handle(b, 5, &handle), -EPROTO);

	ck_assert_int_eq(upp_get_error(b, upp_put_error(b, ENOENT, "no such object", 14), &e), 0);
	ck_assert(e.code == ENOENT && e.msg_len == 14 && memcmp(e.msg, "no such object", 14) == 0);
	ck_assert_int_eq(upp_get_error(b, 19, &e), -EPROTO);
	ck_assert_int_eq(upp_get_error(b, 5, &e), -EPROTO);
}
END_TEST

START_TEST(test_read)
{
	static uint8_t b[8 + 16 * 70];
	struct upp_read rd = { .handle = 3, .n = UPP_MAX_RANGES }, rd2;
	size_t n;

	for (uint32_t i = 0; i < rd.n; i++)
		rd.r[i] = (struct upp_range){ .offset = (uint64_t)i << 33, .length = 4096 * i };
	n = upp_put_read(b, &rd);
	ck_assert_int_eq(upp_get_read(b, n, &rd2), 0);
	ck_assert(rd2.handle == 3 && rd2.n == rd.n);
	for (uint32_t i = 0; i < rd.n; i++)
		ck_assert(rd2.r[i].offset == rd.r[i].offset && rd2.r[i].length == rd.r[i].length);
	ck_assert_int_eq(upp_get_read(b, n - 1, &rd2), -EPROTO);  /* truncated */
	ck_assert_int_eq(upp_get_read(b, n + 16, &rd2), -EPROTO); /* trailing bytes */
	ck_assert_int_eq(upp_get_read(b, 7, &rd2), -EPROTO);
	b[20] = 1; /* a reserved word */
	ck_assert_int_eq(upp_get_read(b, n, &rd2), -EPROTO);
	rd.n = 0;
	ck_assert_int_eq(upp_get_read(b, upp_put_read(b, &rd), &rd2), -EPROTO);
	rd.n = 1;
	rd.r[0].length = UPP_MAX_READ + 1;
	ck_assert_int_eq(upp_get_read(b, upp_put_read(b, &rd), &rd2), -EMSGSIZE);
	rd.n = 2; /* two lengths that overflow 32 bits when added */
	rd.r[0].length = rd.r[1].length = 0xFFFFFFFFu;
	ck_assert_int_eq(upp_get_read(b, upp_put_read(b, &rd), &rd2), -EMSGSIZE);
	/* n past the limit, claimed in the header of an otherwise short payload */
	b[4] = 65, b[5] = b[6] = b[7] = 0;
	ck_assert_int_eq(upp_get_read(b, 8 + 16 * 65, &rd2), -EPROTO);
}
END_TEST

START_TEST(test_data)
{
	static uint8_t b[8 + 4 * 3 + 12288];
	const uint32_t wanted[3] = { 4096, 4096, 4096 };
	uint32_t got[3] = { 4096, 100, 0 }, got2[3];
	const uint8_t *data;
	size_t head, len;

	head = upp_put_data_head(b, 0, 3, got);
	for (size_t i = 0; i < 4196; i++)
		b[head + i] = (uint8_t)(i * 7);
	len = head + 4196;
	/* the crc covers got[] and the data */
	upp_put_data_head(b, upp_crc32c(0, b + 8, len - 8), 3, got);
	ck_assert_int_eq(upp_get_data(b, len, 3, wanted, got2, &data), 0);
	ck_assert(got2[0] == 4096 && got2[1] == 100 && got2[2] == 0 && data == b + head);
	b[head + 5000 % 4196] ^= 1; /* one flipped bit */
	ck_assert_int_eq(upp_get_data(b, len, 3, wanted, got2, &data), -EBADMSG);
	b[head + 5000 % 4196] ^= 1;
	ck_assert_int_eq(upp_get_data(b, len - 1, 3, wanted, got2, &data), -EPROTO);
	ck_assert_int_eq(upp_get_data(b, len, 2, wanted, got2, &data), -EPROTO);
	got[1] = 5000; /* more than asked for */
	upp_put_data_head(b, 0, 3, got);
	ck_assert_int_eq(upp_get_data(b, len, 3, wanted, got2, &data), -EPROTO);
	ck_assert_int_eq(upp_get_data(b, 3, 3, wanted, got2, &data), -EPROTO);
}
END_TEST

/* Random bytes, and valid frames with random bits flipped, into every decoder. */
START_TEST(test_fuzz)
{
	static uint8_t b[8192];
	const uint32_t wanted[UPP_MAX_RANGES] = { [0 ... UPP_MAX_RANGES - 1] = 4096 };
	uint32_t got[UPP_MAX_RANGES];
	unsigned seed = 12345;

	for (int iter = 0; iter < 200000; iter++) {
		size_t len = (size_t)rand_r(&seed) % 600;
		struct upp_hdr h;
		struct upp_hello hh;
		struct upp_hello_reply hr;
		struct upp_read rd;
		struct upp_error e;
		const char *path;
		const uint8_t *data;
		uint16_t pl;
		uint32_t u;
		uint64_t s;

		if (iter % 2) {
			for (size_t i = 0; i < len; i++)
				b[i] = (uint8_t)rand_r(&seed);
		} else { /* a plausible READ, then damaged */
			struct upp_read v = { .handle = 1, .n = 1 + (uint32_t)rand_r(&seed) % 8 };
			for (uint32_t i = 0; i < v.n; i++)
				v.r[i] = (struct upp_range){ (uint64_t)rand_r(&seed), 4096 };
			len = upp_put_read(b, &v);
			b[(size_t)rand_r(&seed) % len] ^= (uint8_t)(1u << (rand_r(&seed) % 8));
		}
		(void)upp_get_hdr(b, len, UPP_MAX_FRAME, &h);
		(void)upp_get_hello(b, len, &hh);
		(void)upp_get_hello_reply(b, len, &hr);
		(void)upp_get_open(b, len, &path, &pl);
		(void)upp_get_opened(b, len, &u, &s);
		(void)upp_get_read(b, len, &rd);
		(void)upp_get_handle(b, len, &u);
		(void)upp_get_error(b, len, &e);
		(void)upp_get_data(b, len, 1 + (uint32_t)rand_r(&seed) % UPP_MAX_RANGES, wanted, got,
				   &data);
	}
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("protocol");
	TCase *tc = upt_tcase(s, "codec");

	upt_add(tc, test_crc32c, 0, "");
	upt_add(tc, test_sha256_hmac, 0, "");
	upt_add(tc, test_header, 0, "");
	upt_add(tc, test_hello_open_close_error, 0, "");
	upt_add(tc, test_read, 0, "");
	upt_add(tc, test_data, 0, "");
	upt_add(tc, test_fuzz, 0, "");
	return s;
}

int main(void)
{
	return upt_main(make);
}
