/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the working-set (.ws) file parser (lib/workset.c,
 * upager__ws_parse). Input: a flags byte (bit 0: recompute both CRCs
 * first, so that mutations get past them), the snapshot's page count (u64
 * LE; bounded to 2^40, more than a 47-bit address space holds in 4 KiB
 * pages, as every caller's count is), then the file. Every index returned
 * must be below the page count.
 */
#include <stdlib.h>
#include <string.h>

#include "snapfix.h"
#include "workset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t npages, count = UINT64_MAX, *ws;
	uint8_t *buf;
	size_t len;

	if (size < 9)
		return 0;
	npages = get64(data + 1) & ((1ull << 40) - 1);
	len = size - 9;
	buf = malloc(len + 1);
	if (!buf)
		abort();
	memcpy(buf, data + 9, len);
	if (data[0] & 1)
		fuzz_ws_fix(buf, len);
	ws = upager__ws_parse(buf, len, npages, &count);
	if (ws) {
		if (count > npages || FUZZ_WS_HDR + count * 8 != len)
			abort();
		for (uint64_t i = 0; i < count; i++)
			if (ws[i] >= npages)
				abort();
		free(ws);
	}
	free(buf);
	return 0;
}
