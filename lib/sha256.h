/* SPDX-License-Identifier: MIT */
/* SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104), for the page protocol's
 * challenge-response. Internal. */
#ifndef UPAGER_SHA256_H
#define UPAGER_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct upp_sha256 {
	uint32_t h[8];
	uint64_t len;
	uint8_t buf[64];
	size_t fill;
};

void upp_sha256_init(struct upp_sha256 *s);
void upp_sha256_update(struct upp_sha256 *s, const void *data, size_t len);
void upp_sha256_final(struct upp_sha256 *s, uint8_t out[32]);
/* HMAC-SHA256 of the concatenation of up to three parts (NULL parts skipped). */
void upp_hmac_sha256(const void *key, size_t keylen, const void *a, size_t alen, const void *b,
		     size_t blen, const void *c, size_t clen, uint8_t out[32]);
/* Compares in time independent of where they differ. */
int upp_equal32(const uint8_t a[32], const uint8_t b[32]);

#endif
