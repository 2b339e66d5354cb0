/* SPDX-License-Identifier: MIT */
/*
 * The one JSON document upagerd reads: the array of guest memory regions a
 * VM monitor sends with its userfaultfd (Firecracker's UFFD handshake).
 * The bytes come from another process and are treated as hostile: the
 * parser is bounded in depth, length and count and never reads past len.
 */
#ifndef UPAGERD_JSON_H
#define UPAGERD_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_REGIONS 4096

struct json_region {
	uint64_t base;      /* base_host_virt_addr */
	uint64_t size;      /* size */
	uint64_t offset;    /* offset: where the region starts in the memory file */
	uint64_t page_size; /* page_size, or the older page_size_kib (bytes too) */
};

#define JSON_NFIELDS 5

/*
 * Reads the document as it arrives, in time linear in its length: a
 * bracket and string scanner resumes where it stopped, and the parser runs
 * only where the scanner has seen a token end (a key's ':', a member's ',',
 * a closing bracket), resuming after the last thing it accepted. So a
 * region is checked as soon as its closing brace arrives, a repeated key
 * as soon as its ':' does. Opaque to callers: zero it with json_reader_init.
 */
struct json_reader {
	size_t scanned, parsed; /* bytes seen by the scanner; accepted by the parser */
	int depth;
	bool in_string, escaped;
	int phase, field;       /* where the parser is; the key whose value comes next */
	bool seen[JSON_NFIELDS];
	uint64_t v[JSON_NFIELDS];
	size_t n;               /* regions accepted */
};

void json_reader_init(struct json_reader *r);

/*
 * buf[0..len) is the document so far: the same bytes as before and maybe
 * more. Returns the number of regions once the array is complete (it and
 * out[] are then final); -EAGAIN if it is a valid prefix that more bytes
 * may complete; -EINVAL with a reason in err as soon as no bytes could
 * make it valid (also when there are more than max regions).
 */
int json_reader_feed(struct json_reader *r, const char *buf, size_t len, struct json_region *out,
		     size_t max, char *err, size_t errlen);

/*
 * Parses [ {"base_host_virt_addr": N, "size": N, "offset": N,
 * "page_size": N}, ... ] from buf[0..len) at once (json_reader_feed on a
 * new reader). Keys it does not know are skipped whatever their value.
 */
int json_regions(const char *buf, size_t len, struct json_region *out, size_t max, char *err,
		 size_t errlen);

#endif
