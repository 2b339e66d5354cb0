/* SPDX-License-Identifier: MIT */
/*
 * The one JSON document upagerd reads: the array of guest memory regions a
 * VM monitor sends with its userfaultfd (Firecracker's UFFD handshake).
 * The bytes come from another process and are treated as hostile: the
 * parser is bounded in depth, length and count and never reads past len.
 */
#ifndef UPAGERD_JSON_H
#define UPAGERD_JSON_H

#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_REGIONS 4096

struct json_region {
	uint64_t base;      /* base_host_virt_addr */
	uint64_t size;      /* size */
	uint64_t offset;    /* offset: where the region starts in the memory file */
	uint64_t page_size; /* page_size, or the older page_size_kib (bytes too) */
};

/*
 * Parses [ {"base_host_virt_addr": N, "size": N, "offset": N,
 * "page_size": N}, ... ] from buf[0..len). Keys it does not know are
 * skipped whatever their value. Returns the number of regions; -EAGAIN if
 * the document is a valid prefix cut short (more bytes may complete it);
 * -EINVAL with a reason in err otherwise (also when there are more than
 * max regions).
 */
int json_regions(const char *buf, size_t len, struct json_region *out, size_t max, char *err,
		 size_t errlen);

#endif
