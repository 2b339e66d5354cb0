/* SPDX-License-Identifier: MIT */
/*
 * The snapshot source (upager_source_snapshot, upager_snapshot_map;
 * docs/SNAPSHOT.md): serves a snapshot file's pages, each checked against
 * its CRC32C before it is mapped, and for a restore with a working set
 * runs the storage readahead thread ahead of the handlers that place it.
 * Apart from the writer because a restore and a save share nothing but the
 * format, which lib/snapfmt.c reads for both; the working set it records
 * and prefetches is lib/workset.c's.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "thread.h"
#include "snapfmt.h"
#include "upager-int.h"
#include "workset.h"

struct snap_source {
	upager_source_t base;
	struct upp_snap f;
	struct upager__ws_recorder rec; /* UPAGER_SNAP_RECORD */
	/* Prefetching (UPAGER_SNAP_PREFETCH): the storage readahead thread. */
	pthread_t ra;
	bool ra_running, ra_stop;
	uint64_t *ra_pages, ra_n;
};

static int snap_fill(upager_source_t *src, struct upager__fill *fill, struct io_uring *ring)
{
	struct snap_source *ss = (struct snap_source *)src;
	size_t ps = ss->f.ps, first = fill->roff / ps, n = fill->len / ps;
	bool any = false;

	upager__ws_record_fill(&ss->rec, fill);
	for (size_t k = 0; k < n; k++) {
		int kind = upp_snap_read(&ss->f, first + k, (uint8_t *)fill->buf + k * ps);

		if (kind == -EBADMSG)
			upager__log(fill->h->pager, UPAGER_LOG_ERROR,
				    "snapshot: page %zu fails its checksum: not mapped", first + k);
		if (kind < 0)
			return kind;
		any |= kind == UPP_SNAP_STORED;
	}
	return any ? UPAGER__FILL_DATA : UPAGER__FILL_ZERO;
}

/*
 * Inline pagers: pages are stored raw, so a fill is a pread and a CRC per
 * page, async-signal-safe. Not while recording the working set (a lock and
 * allocations) and not for a page that fails: the handler threads fill
 * those (PENDING), logging the checksum failure as they do.
 */
static int snap_fill_inline(upager_source_t *src, size_t roff, void *buf, size_t len)
{
	struct snap_source *ss = (struct snap_source *)src;
	size_t ps = ss->f.ps, first = roff / ps, n = len / ps;
	bool any = false;

	if (ss->rec.path)
		return UPAGER__FILL_PENDING;
	for (size_t k = 0; k < n; k++) {
		int kind = upp_snap_read(&ss->f, first + k, (uint8_t *)buf + k * ps);

		if (kind < 0)
			return UPAGER__FILL_PENDING;
		any |= kind == UPP_SNAP_STORED;
	}
	return any ? UPAGER__FILL_DATA : UPAGER__FILL_ZERO;
}

#define RA_BATCH 1024

struct ra_range {
	uint64_t off;
	int fd; /* an incremental snapshot's pages may be in its parents */
};

static int cmp_ra_range(const void *a, const void *b)
{
	const struct ra_range *x = a, *y = b;

	if (x->fd != y->fd)
		return x->fd < y->fd ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

/*
 * The working set's pages are scattered through the file; read one by one,
 * in order, by the handler that places them, they would cost a storage
 * round trip each. This thread runs ahead: a batch at a time, in recorded
 * order, it sorts the batch's file offsets, merges neighbours (gaps of up to
 * 16 KiB are read through) and asks the kernel to read them all
 * (POSIX_FADV_WILLNEED: asynchronous, many requests in flight). The handler
 * then finds its pages in the page cache, or waits on reads already queued.
 */
static void *readahead_thread(void *arg)
{
	struct snap_source *ss = arg;
	struct ra_range *rr = malloc(RA_BATCH * sizeof(*rr));
	uint64_t ps = ss->f.ps;

	for (uint64_t i = 0; rr && i < ss->ra_n; i += RA_BATCH) {
		size_t n = 0;

		if (__atomic_load_n(&ss->ra_stop, __ATOMIC_RELAXED))
			break;
		for (uint64_t k = i; k < ss->ra_n && k < i + RA_BATCH; k++) {
			int fd = -1;
			uint64_t off = upp_snap_locate(&ss->f, ss->ra_pages[k], &fd);

			if (off != UINT64_MAX)
				rr[n++] = (struct ra_range){ off, fd };
		}
		qsort(rr, n, sizeof(*rr), cmp_ra_range);
		for (size_t j = 0; j < n;) {
			uint64_t start = rr[j].off, end = start + ps;
			int fd = rr[j].fd;

			while (++j < n && rr[j].fd == fd && rr[j].off <= end + 4 * ps)
				end = rr[j].off + ps;
			posix_fadvise(fd, (off_t)start, (off_t)(end - start), POSIX_FADV_WILLNEED);
		}
	}
	free(rr);
	return NULL;
}

static void snap_destroy(upager_source_t *src)
{
	struct snap_source *ss = (struct snap_source *)src;

	if (ss->ra_running) {
		__atomic_store_n(&ss->ra_stop, true, __ATOMIC_RELAXED);
		pthread_join(ss->ra, NULL);
	}
	free(ss->ra_pages);

	upager__ws_record_end(&ss->rec);
	close(ss->f.fd);
	upp_snap_close(&ss->f);
	free(ss);
}

static const struct upager__source_ops snap_ops = {
	.name = "snapshot",
	.fill = snap_fill,
	.destroy = snap_destroy,
	.fault_around = 16,
	.fill_inline = snap_fill_inline,
	.inline_reads = true,
};

UPAGER__EXPORT int upager_source_snapshot(const char *path, uint64_t *lenp,
					  upager_source_t **srcp)
{
	struct snap_source *ss;
	int ret;

	if (!path || !*path || !srcp)
		return -EINVAL;
	ss = calloc(1, sizeof(*ss));
	if (!ss)
		return -ENOMEM;
	ret = upp_snap_open_path(path, (size_t)sysconf(_SC_PAGESIZE), &ss->f);
	if (ret < 0) {
		free(ss);
		return ret;
	}
	upager__source_init(&ss->base, &snap_ops);
	ss->base.track_writes = true;
	ss->base.snap_id = ss->f.hdr_crc;
	if (lenp)
		*lenp = ss->f.len;
	*srcp = &ss->base;
	return 0;
}

UPAGER__EXPORT int upager_snapshot_map(upager_t *pager, const char *path, unsigned flags,
				       upager_region_t **regionp)
{
	struct snap_source *ss;
	upager_source_t *src;
	uint64_t len, *ws = NULL, nws = 0;
	char *ws_path;
	int ret;

	if (!pager || !regionp || !path || (flags & ~(UPAGER_SNAP_RECORD | UPAGER_SNAP_PREFETCH | UPAGER_SNAP_COMPLETE)))
		return -EINVAL;
	ws_path = upager__ws_path(path);
	if (!ws_path)
		return -ENOMEM;
	ret = upager_source_snapshot(path, &len, &src);
	if (ret < 0) {
		free(ws_path);
		return ret;
	}
	ss = (struct snap_source *)src;
	if (len > SIZE_MAX) {
		ret = -EFBIG;
		goto out;
	}
	if (flags & UPAGER_SNAP_PREFETCH)
		ws = upager__ws_read(ws_path, ss->f.npages, &nws);
	if (flags & UPAGER_SNAP_RECORD) {
		/* Written when the region (and so the source) goes. */
		ret = upager__ws_record_start(&ss->rec, ws_path, ss->f.npages, ss->f.ps);
		if (ret < 0)
			goto out;
		ws_path = NULL;
	}
	ret = upager_map(pager, (size_t)len, src, regionp);
	if (ret == 0 && nws) {
		/* The storage reads go ahead on their own thread (best effort:
		 * without it the handlers still read each page themselves). */
		ss->ra_pages = ws;
		ss->ra_n = nws;
		ss->ra_running = upager__thread_start(&ss->ra, readahead_thread, ss) == 0;
	}
	if (ret == 0 && nws)
		upager__ws_prefetch(*regionp, ws, nws, ss->f.ps);
	if (ret == 0)
		ret = upager__snap_fill_rest(regionp, flags);
out:
	if (!ss->ra_running) { /* else the thread's, until the source goes */
		free(ws);
		ss->ra_pages = NULL;
	}
	free(ws_path);
	upager_source_release(src);
	return ret;
}
