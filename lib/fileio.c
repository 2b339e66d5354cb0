/* SPDX-License-Identifier: MIT */
/* File helpers that the library and upagerd both need, written once. */
#include "config.h"

#include <string.h>

#include "fileio.h"

bool upp_all_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	/* The first byte is zero and every byte equals the next one. */
	return len == 0 || (b[0] == 0 && memcmp(b, b + 1, len - 1) == 0);
}
