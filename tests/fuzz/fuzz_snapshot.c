/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the snapshot reader (lib/snapfmt.h) on a file and its
 * parent. Input: a flags byte (bit 0: recompute the CRCs first, so that
 * mutations get past them; bits 1-3: the page size, 256 << n), the child's
 * length (u32 LE), the child, then the parent (none if empty). They are
 * written as "s" and FUZZ_PARENT_NAME in a directory of this process's.
 * Whatever opens must read without error for every page, and closing must
 * give back every descriptor.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapfix.h"

#define MAX_PAGES_READ 1024 /* pages read back per input: bounded time */

static char dir[] = "/tmp/upager-fuzz-snap.XXXXXX";
static char child_path[64], parent_path[64];
static uint8_t *scratch;
static size_t scratch_len;

static void cleanup(void)
{
	unlink(child_path);
	unlink(parent_path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (!mkdtemp(dir))
		abort();
	snprintf(child_path, sizeof(child_path), "%s/s", dir);
	snprintf(parent_path, sizeof(parent_path), "%s/%s", dir, FUZZ_PARENT_NAME);
	atexit(cleanup);
	return 0;
}

static void put_file(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || write(fd, buf, len) != (ssize_t)len)
		abort();
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct upp_snap s;
	size_t ps, clen, plen;
	uint8_t *child, *parent, *page;
	int fd, probe, ret;

	if (size < 5)
		return 0;
	ps = (size_t)256 << ((data[0] >> 1) % 5);
	clen = get32(data + 1);
	if (clen > size - 5)
		clen = size - 5;
	plen = size - 5 - clen;
	if (scratch_len < size) { /* a writable copy, for the fixup */
		free(scratch);
		scratch = malloc(size);
		if (!scratch)
			abort();
		scratch_len = size;
	}
	memcpy(scratch, data + 5, clen + plen);
	child = scratch;
	parent = scratch + clen;
	if (data[0] & 1)
		fuzz_snap_fix(child, clen, ps, fuzz_snap_fix(parent, plen, ps, 0));
	put_file(child_path, child, clen);
	if (plen)
		put_file(parent_path, parent, plen);
	else
		unlink(parent_path);

	probe = dup(0); /* the lowest free descriptor: the same after as before */
	close(probe);
	fd = open(child_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		abort();
	ret = upp_snap_open(fd, ps, &s);
	if (ret == 0) {
		page = malloc(ps);
		if (!page)
			abort();
		if (!upp_snap_unchanged(&s, fd))
			abort();
		for (uint64_t i = 0; i < s.npages && i < MAX_PAGES_READ; i++) {
			int kind = upp_snap_kind(&s, i), pfd = -1;
			uint64_t off = upp_snap_locate(&s, i, &pfd);

			if (kind < UPP_SNAP_ABSENT || kind > UPP_SNAP_STORED)
				abort(); /* PARENT is followed, never returned */
			if ((kind == UPP_SNAP_STORED) != (off != UINT64_MAX))
				abort();
			if (kind == UPP_SNAP_STORED) {
				/* Checked at open to lie inside the file: the page is
				 * read whole, its CRC right or reported wrong. */
				if (pfd < 0)
					abort();
				ret = upp_snap_read(&s, i, page);
				if (ret != UPP_SNAP_STORED && ret != -EBADMSG)
					abort();
				if (ret == UPP_SNAP_STORED && upp_crc32c(0, page, ps) != upp_snap_crc(&s, i))
					abort();
			}
			if (kind != UPP_SNAP_STORED && upp_snap_read(&s, i, page) != kind)
				abort();
		}
		/* Past the end: absent, and reads as zeros. */
		if (upp_snap_kind(&s, s.npages) != UPP_SNAP_ABSENT ||
		    upp_snap_read(&s, s.npages, page) != UPP_SNAP_ABSENT || page[0] || page[ps - 1])
			abort();
		free(page);
		upp_snap_close(&s);
	} else if (ret != -EBADMSG && ret != -EINVAL && ret != -ENOENT && ret != -ENOMEM) {
		abort(); /* not one of the documented errors */
	}
	close(fd);
	probe = dup(0);
	close(probe);
	if (probe != fd)
		abort(); /* a descriptor was kept (a parent's, most likely) */
	return 0;
}
