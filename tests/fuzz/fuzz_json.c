/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: upagerd handle's handshake JSON (daemon/json.h). The
 * first byte bounds the regions wanted (0-255), the rest is the document,
 * in a buffer of exactly its length so that a read past it is caught. The
 * result must be a count within the bound, -EAGAIN, or -EINVAL with a
 * reason.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct json_region out[256];
	char err[128];
	size_t max, len;
	char *doc;
	int n;

	if (size < 1)
		return 0;
	max = data[0];
	len = size - 1;
	doc = malloc(len ? len : 1);
	if (!doc)
		abort();
	memcpy(doc, data + 1, len);
	memset(err, 0x55, sizeof(err));
	err[sizeof(err) - 1] = '\0';
	n = json_regions(doc, len, out, max, err, sizeof(err));
	if (n > (int)max || (n < 0 && n != -EAGAIN && n != -EINVAL))
		abort();
	if (n == -EINVAL && (!memchr(err, 0, sizeof(err)) || !err[0]))
		abort(); /* the reason is a terminated, non-empty string */
	free(doc);
	return 0;
}
