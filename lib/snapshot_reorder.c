/* SPDX-License-Identifier: MIT */
/*
 * upager_snapshot_reorder (docs/SNAPSHOT.md): rewrites a snapshot with its
 * recorded working set's pages first in the file, in recorded order, so
 * that a prefetching restore reads one run instead of pages scattered
 * through it. Apart from the writer because it writes no memory, only a
 * file already written, and it is the one place that reads a working set
 * and a snapshot together; it keeps the writer's tail (page map, header).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "le.h"
#include "fileio.h"
#include "snapfmt.h"
#include "snapshot_save.h"
#include "upager-int.h"
#include "workset.h"

struct reorder_args {
	const struct upp_snap *f;
	const uint64_t *ws;
	uint64_t nws;
};

#define REORDER_BUF 256 /* pages written at once */

/* Stored pages in a new order: the working set's, as recorded, then the rest. */
static int write_reordered(int fd, void *arg)
{
	const struct reorder_args *a = arg;
	const struct upp_snap *f = a->f;
	uint64_t npages = f->npages, next = 0, nbuf = 0;
	uint8_t *map = malloc(npages * UPP_SNAP_ENTRY), *placed = calloc((npages + 7) / 8, 1);
	uint8_t *buf = malloc(REORDER_BUF * f->ps);
	int ret = map && placed && buf ? 0 : -ENOMEM;

	if (ret == 0)
		memcpy(map, f->map, npages * UPP_SNAP_ENTRY);
	for (uint64_t k = 0; ret == 0 && k < a->nws + npages; k++) {
		uint64_t page = k < a->nws ? a->ws[k] : k - a->nws;
		int kind;

		if (upp_snap_own_kind(f, page) != UPP_SNAP_STORED ||
		    (placed[page / 8] & (1u << (page % 8))))
			continue;
		placed[page / 8] |= (uint8_t)(1u << (page % 8));
		kind = upp_snap_read(f, page, buf + nbuf * f->ps); /* checked: never copy damage */
		if (kind < 0) {
			ret = kind;
			break;
		}
		put64(map + page * UPP_SNAP_ENTRY + 8, next + nbuf);
		if (++nbuf == REORDER_BUF) {
			ret = upp_pwrite_full(fd, buf, nbuf * f->ps, UPP_SNAP_HDR + next * f->ps);
			next += nbuf;
			nbuf = 0;
		}
	}
	if (ret == 0 && nbuf)
		ret = upp_pwrite_full(fd, buf, nbuf * f->ps, UPP_SNAP_HDR + next * f->ps);
	if (ret == 0)
		ret = upager__snap_write_tail(fd, f->ps, npages, f->nstored, map,
					      f->parent ? f->parent_name : NULL,
					      f->parent ? f->parent->hdr_crc : 0);
	free(map);
	free(placed);
	free(buf);
	return ret;
}

UPAGER__EXPORT int upager_snapshot_reorder(const char *path)
{
	struct reorder_args a = { 0 };
	struct upp_snap f;
	char *ws_path;
	uint64_t *ws;
	int ret;

	if (!path || !*path)
		return -EINVAL;
	ret = upp_snap_open_path(path, (size_t)sysconf(_SC_PAGESIZE), &f);
	if (ret < 0)
		return ret;
	ws_path = upager__ws_path(path);
	if (!ws_path)
		ret = -ENOMEM;
	if (ret == 0) {
		ws = upager__ws_read(ws_path, f.npages, &a.nws);
		if (!ws)
			ret = access(ws_path, F_OK) == 0 ? -EBADMSG : -ENOENT;
		free(ws_path);
	}
	if (ret == 0) {
		a.f = &f;
		a.ws = ws;
		ret = upp_atomic_replace(path, write_reordered, &a);
		free(ws);
	}
	upp_snap_close(&f);
	close(f.fd);
	return ret;
}
