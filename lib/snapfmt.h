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

enum { UPP_SNAP_ABSENT = 0, UPP_SNAP_ZERO = 1, UPP_SNAP_STORED = 2, UPP_SNAP_PARENT = 3 };

#define UPP_SNAP_F_PARENT 1u   /* header flags: an incremental snapshot */
#define UPP_SNAP_MAX_CHAIN 16  /* parents followed at most */
#define UPP_SNAP_MAX_NAME 255  /* a parent's file name */

struct upp_snap {
	int fd; /* not owned */
	size_t ps;
	uint64_t len, npages, nstored, data_off, file_size;
	uint8_t *map; /* npages entries */
	uint32_t hdr_crc; /* identifies this exact file to its children */
	/* An incremental snapshot: pages of kind PARENT are as in this one, a
	 * file beside it, opened (and owned) here. */
	struct upp_snap *parent;
	char parent_name[UPP_SNAP_MAX_NAME + 1];
};

/*
 * Checks every field of the snapshot open on fd for page size ps and reads
 * its page map; for an incremental snapshot, opens and checks its parents
 * too (beside it, by name, each the exact file it was saved against, at
 * most UPP_SNAP_MAX_CHAIN deep). -EBADMSG: not a valid snapshot (or a parent
 * missing, changed or invalid: -ENOENT for a missing one); -EINVAL: written
 * with another page size; -EISDIR. upp_snap_close() frees what it allocated.
 */
int upp_snap_open(int fd, size_t ps, struct upp_snap *s);
/*
 * The same, for a daemon serving hostile files: parents are looked up in
 * dirfd (the snapshot's directory, which the caller opened where it may),
 * and -ENOMEM before anything is allocated or read if the chain's page maps
 * (16 bytes a page, by the headers' page counts) would pass max_maps bytes.
 */
int upp_snap_open_at(int dirfd, int fd, size_t ps, size_t max_maps, struct upp_snap *s);
/* upp_snap_open of the file at path, opened here: 0 with *s filled (the
 * caller closes s->fd after upp_snap_close), or -errno. */
int upp_snap_open_path(const char *path, size_t ps, struct upp_snap *s);
void upp_snap_close(struct upp_snap *s);
/* Whether fd's file starts with the snapshot magic (before any checking). */
bool upp_snap_is(int fd);
/* Whether the file on fd has the header s was opened with (its CRC), so that
 * s's checked page map still describes it. */
bool upp_snap_unchanged(const struct upp_snap *s, int fd);

/*
 * A descriptor open for reading on a regular file, or -errno: -EINVAL for
 * anything else (a FIFO or a device is never opened for reading, a
 * directory never served), -ELOOP for a symlink open_as did not follow.
 * open_as(ctx, flags) opens the file in question with flags (O_PATH, then
 * O_RDONLY | O_NONBLOCK): fd or -errno.
 */
int upp_open_regular(int (*open_as)(void *ctx, int flags), void *ctx);

/* The kind of page in this file's own map (PARENT included). */
static inline int upp_snap_own_kind(const struct upp_snap *s, uint64_t page)
{
	return page < s->npages ? s->map[page * UPP_SNAP_ENTRY] : UPP_SNAP_ABSENT;
}
/*
 * The map entry that says what page holds, following PARENT links, and the
 * snapshot it belongs to (*owner may be NULL); NULL past the end.
 */
const uint8_t *upp_snap_entry(const struct upp_snap *s, uint64_t page,
			      const struct upp_snap **owner);
/* The kind of page's contents, parents followed (never PARENT). */
int upp_snap_kind(const struct upp_snap *s, uint64_t page);
/* Where a stored page's bytes are: the offset, and the file in *fdp;
 * UINT64_MAX for zero and absent pages. Parents followed. */
uint64_t upp_snap_locate(const struct upp_snap *s, uint64_t page, int *fdp);
/*
 * Page `page` into buf (ps bytes), its CRC32C checked, parents followed:
 * the page's kind, or -EIO (short read), -errno, -EBADMSG (checksum
 * mismatch: buf is garbage). Absent and zero pages (and pages past the end)
 * read as zeros.
 */
int upp_snap_read(const struct upp_snap *s, uint64_t page, void *buf);
/* The CRC32C a stored page must have (parents followed); 0 for others. */
uint32_t upp_snap_crc(const struct upp_snap *s, uint64_t page);

#endif
