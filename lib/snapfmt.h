/* SPDX-License-Identifier: MIT */
/*
 * The snapshot file format (docs/SNAPSHOT.md): constants and a reader that
 * believes nothing before it has checked it. Shared by the library (the
 * snapshot source) and upagerd (serving snapshots). Internal.
 */
#ifndef UPAGER_SNAPFMT_H
#define UPAGER_SNAPFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UPP_SNAP_MAGIC "UPGSNAP1"
#define UPP_SNAP_VERSION 1
#define UPP_SNAP_HDR 4096
#define UPP_SNAP_ENTRY 16 /* kind u8, 3 zero bytes, CRC32C u32, data index u64 */

enum { UPP_SNAP_ABSENT = 0, UPP_SNAP_ZERO = 1, UPP_SNAP_STORED = 2 };

struct upp_snap {
	int fd; /* not owned */
	size_t ps;
	uint64_t len, npages, nstored, data_off, file_size;
	uint8_t *map; /* npages entries */
};

/*
 * Checks every field of the snapshot open on fd for page size ps and reads
 * its page map. -EBADMSG: not a valid snapshot; -EINVAL: written with
 * another page size; -EISDIR. upp_snap_close() frees what it allocated.
 */
int upp_snap_open(int fd, size_t ps, struct upp_snap *s);
void upp_snap_close(struct upp_snap *s);
/* Whether fd's file starts with the snapshot magic (before any checking). */
bool upp_snap_is(int fd);

static inline int upp_snap_kind(const struct upp_snap *s, uint64_t page)
{
	return page < s->npages ? s->map[page * UPP_SNAP_ENTRY] : UPP_SNAP_ABSENT;
}
/* Where a stored page's bytes are in the file; UINT64_MAX for other pages. */
uint64_t upp_snap_data_off(const struct upp_snap *s, uint64_t page);
/*
 * Page `page` into buf (ps bytes), its CRC32C checked: the page's kind, or
 * -EIO (short read), -errno, -EBADMSG (checksum mismatch: buf is garbage).
 * Absent and zero pages (and pages past the end) read as zeros.
 */
int upp_snap_read(const struct upp_snap *s, uint64_t page, void *buf);

#endif
