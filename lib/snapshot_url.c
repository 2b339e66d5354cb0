/* SPDX-License-Identifier: MIT */
/*
 * Snapshots over HTTP (upager_snapshot_map_url; `upager snapshot info|verify
 * URL`): the header and page map are fetched once, at open, with the
 * object's ETag pinned, and checked by the same reader as a file's
 * (lib/snapfmt.c, given them in a sparse memfd of the object's size, so
 * that no check is written twice); then the URL source's transfers
 * (lib/url_conn.c) read stored pages from the data area in chunks, told by
 * this file where each page lies, and every stored page is checked against
 * its CRC32C before the fill that holds it is placed: a mismatch is SIGBUS,
 * never wrong data.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "crc32c.h"
#include "fileio.h"
#include "le.h"
#include "snapshot_url.h"
#include "source_url.h"
#include "upager-int.h"
#include "workset.h"

#ifdef HAVE_LIBCURL
#include "url_http.h"
#endif

bool upager__is_url(const char *path)
{
	return path && (!strncasecmp(path, "http://", 7) || !strncasecmp(path, "https://", 8) ||
			!strncasecmp(path, "s3://", 5));
}

#ifdef HAVE_LIBCURL
#define META_PIECE (16u << 20) /* the page map is fetched in pieces of this */

/*
 * The header (hdr: the object's first bytes, read by its open) and the map
 * of t's object, read into a sparse memfd of its size and checked there by
 * upp_snap_open. The map's length is the
 * header's word: bounded first by the object's size and a quarter of this
 * machine's memory (it is held in memory, as a file's is).
 */
static int open_meta(struct upager__url_target *t, unsigned timeout_ms, const uint8_t *hdr,
		     size_t hdr_got, struct upp_snap *s)
{
	const size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	long phys = sysconf(_SC_PHYS_PAGES);
	uint8_t *buf = NULL;
	uint64_t npages, map_off, map_len, most = t->size;
	int fd, ret;

	if (t->size < UPP_SNAP_HDR || hdr_got != UPP_SNAP_HDR)
		return -EBADMSG;
	if (memcmp(hdr, UPP_SNAP_MAGIC, 8))
		return -EBADMSG;
	if (get32(hdr + 56) & UPP_SNAP_F_PARENT) {
		upager__url_log(t, UPAGER_LOG_ERROR,
				"url %s: an incremental snapshot: its parent cannot be read beside it",
				t->shown);
		return -EXDEV;
	}
	npages = get64(hdr + 24);
	map_off = get64(hdr + 48);
	if (phys > 0 && (uint64_t)phys * ps / 4 < most)
		most = (uint64_t)phys * ps / 4;
	if (npages == 0 || npages > most / UPP_SNAP_ENTRY || map_off > t->size ||
	    npages * UPP_SNAP_ENTRY > t->size - map_off)
		return -EBADMSG;
	map_len = npages * UPP_SNAP_ENTRY;
	fd = memfd_create("upager-snapshot-url", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = malloc(map_len < META_PIECE ? map_len : META_PIECE);
	ret = !buf ? -ENOMEM : ftruncate(fd, (off_t)t->size) < 0 ? -errno
			     : upp_pwrite_full(fd, hdr, UPP_SNAP_HDR, 0);
	for (uint64_t at = 0; ret == 0 && at < map_len; at += META_PIECE) {
		size_t n = map_len - at < META_PIECE ? (size_t)(map_len - at) : META_PIECE;

		ret = upager__url_read(t, map_off + at, n, buf, timeout_ms);
		if (ret == 0)
			ret = upp_pwrite_full(fd, buf, n, map_off + at);
	}
	free(buf);
	if (ret == 0)
		ret = upp_snap_open(fd, ps, s);
	close(fd);
	s->fd = -1; /* the stored pages are in the object */
	return ret;
}

int upager__snap_url_open(const char *url, const upager_url_options_t *o, struct upp_snap *s)
{
	struct upager__url_target t;
	uint8_t hdr[UPP_SNAP_HDR];
	size_t got;
	int ret = upager__url_global_init();

	if (ret == 0)
		ret = upager__url_open_first(&t, url, o, hdr, sizeof(hdr), &got);
	if (ret < 0)
		return ret;
	ret = open_meta(&t, o->deadline_ms, hdr, got, s);
	s->file_size = t.size;
	upager__url_target_free(&t);
	return ret;
}

int upager__snap_url_verify(const char *url, void (*progress)(uint64_t, uint64_t),
			    uint64_t *bad_page)
{
	upager_url_options_t o;
	struct upager__url_target t;
	struct upp_snap s;
	uint64_t *page_of = NULL, data_len, done = 0;
	uint8_t *buf = NULL, hdr[UPP_SNAP_HDR];
	size_t got;
	int ret = upager__url_global_init();

	upager_url_options_init(&o);
	if (ret == 0)
		ret = upager__url_open_first(&t, url, &o, hdr, sizeof(hdr), &got);
	if (ret < 0)
		return ret;
	ret = open_meta(&t, o.deadline_ms, hdr, got, &s);
	if (ret < 0)
		goto out_t;
	/* Stored pages in data order, so that the data area is read once, in pieces. */
	page_of = malloc((s.nstored ? s.nstored : 1) * sizeof(*page_of));
	buf = malloc(o.chunk_size);
	if (!page_of || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint64_t i = 0; i < s.npages; i++) {
		const uint8_t *e = s.map + i * UPP_SNAP_ENTRY;

		if (e[0] == UPP_SNAP_STORED)
			page_of[get64(e + 8)] = i;
	}
	data_len = s.nstored * s.ps;
	for (uint64_t at = 0; ret == 0 && at < data_len; at += o.chunk_size) {
		size_t n = data_len - at < o.chunk_size ? (size_t)(data_len - at) : o.chunk_size;

		ret = upager__url_read(&t, s.data_off + at, n, buf, o.deadline_ms);
		for (size_t k = 0; ret == 0 && k < n / s.ps; k++) {
			uint64_t pg = page_of[at / s.ps + k];

			if (upp_crc32c(0, buf + k * s.ps, s.ps) != upp_snap_crc(&s, pg)) {
				*bad_page = pg;
				ret = -EBADMSG;
			}
		}
		done += n / s.ps;
		if (progress)
			progress(done, s.nstored);
	}
out:
	free(buf);
	free(page_of);
	upp_snap_close(&s);
out_t:
	upager__url_target_free(&t);
	return ret;
}

/* ---- the source ---- */

struct snapurl_source {
	upager_source_t base;
	struct upager__snap_url su;
};

/* Stored pages lie in the data area by their index; the rest read zero. */
static bool snapurl_locate(void *arg, uint64_t roff, size_t len, uint64_t *obj, size_t *n)
{
	const struct upager__snap_url *ss = arg;
	const size_t ps = ss->f.ps;
	const uint64_t page = roff / ps;
	const uint8_t *e = upp_snap_entry(&ss->f, page, NULL);
	bool stored = e && e[0] == UPP_SNAP_STORED;
	uint64_t idx = stored ? get64(e + 8) : 0;
	size_t run = ps - roff % ps;

	for (uint64_t k = 1; run < len; k++) {
		const uint8_t *x = upp_snap_entry(&ss->f, page + k, NULL);
		bool xs = x && x[0] == UPP_SNAP_STORED;

		if (xs != stored || (stored && get64(x + 8) != idx + k))
			break;
		run += ps;
	}
	*n = run < len ? run : len;
	*obj = ss->f.data_off + idx * ps + roff % ps;
	return stored;
}

static int snapurl_check(void *arg, struct upager__fill *fill)
{
	const struct upager__snap_url *ss = arg;
	const size_t ps = ss->f.ps;
	bool any = false;

	for (size_t k = 0; k < fill->len / ps; k++) {
		uint64_t page = fill->roff / ps + k;

		if (upp_snap_kind(&ss->f, page) != UPP_SNAP_STORED)
			continue;
		if (upp_crc32c(0, (uint8_t *)fill->buf + k * ps, ps) != upp_snap_crc(&ss->f, page)) {
			if (fill->region)
				upager__log(fill->region->pager, UPAGER_LOG_ERROR,
					    "url %s: snapshot page %llu fails its checksum: not mapped",
					    ss->conn.t.shown, (unsigned long long)page);
			else
				upager__url_log(&ss->conn.t, UPAGER_LOG_ERROR,
						"url %s: snapshot page %llu fails its checksum",
						ss->conn.t.shown, (unsigned long long)page);
			return -EBADMSG;
		}
		any = true;
	}
	return any ? UPAGER__FILL_DATA : UPAGER__FILL_ZERO;
}

int upager__snap_url_prepare(struct upager__snap_url *su, unsigned timeout_ms, const uint8_t *hdr,
			     size_t hdr_got)
{
	int ret = open_meta(&su->conn.t, timeout_ms, hdr, hdr_got, &su->f);

	if (ret == 0 && su->f.len > SIZE_MAX)
		ret = -EFBIG;
	if (ret < 0) {
		if (ret != -EXDEV)
			upager__url_log(&su->conn.t, UPAGER_LOG_ERROR, "url %s: not a valid snapshot: %s",
					su->conn.t.shown, strerror(-ret));
		if (su->f.map)
			upp_snap_close(&su->f);
		return ret;
	}
	su->conn.locate = snapurl_locate;
	su->conn.check = snapurl_check;
	su->conn.locate_arg = su;
	return 0;
}

static int snapurl_fill(upager_source_t *src, struct upager__fill *fill, struct io_uring *ring)
{
	struct upager__snap_url *ss = &((struct snapurl_source *)src)->su;

	if (fill->roff >= ss->f.len)
		return UPAGER__FILL_ZERO;
	fill->done = 0;
	fill->deadline_ns = upager__now_ns() + ss->conn.deadline_ns;
	return upager__url_conn_fill(&ss->conn, fill);
}

static void snapurl_destroy(upager_source_t *src)
{
	struct snapurl_source *ss = (struct snapurl_source *)src;

	upager__url_conn_stop(&ss->su.conn);
	upp_snap_close(&ss->su.f);
	free(ss);
}

static const struct upager__source_ops snapurl_ops = {
	.name = "snapshot-url",
	.fill = snapurl_fill,
	.destroy = snapurl_destroy,
	.readahead = true,
	.fault_around = 16,
};

struct ws_key {
	uint64_t chunk, page; /* chunk: 0 for a page not stored (no fetch), else 1 + its chunk */
};

static int by_chunk(const void *a, const void *b)
{
	const struct ws_key *x = a, *y = b;

	if (x->chunk != y->chunk)
		return x->chunk < y->chunk ? -1 : 1;
	return x->page < y->page ? -1 : x->page > y->page;
}

/*
 * The working set in the order its chunks are in the object, each chunk's
 * pages in page order: each chunk is fetched once, its pages placed while
 * it is in memory. In recorded order a working set scattered over more
 * chunks than memory holds took each chunk in and out again and again (a
 * 32 MiB working set at random in 256 MiB: 3.3 s from a warm chunk cache,
 * 9x the local restore). Faults go first in any case.
 */
static void ws_by_chunk(uint64_t *ws, uint64_t nws, const struct upp_snap *f, uint64_t chunk_size)
{
	struct ws_key *k = malloc(nws * sizeof(*k));

	if (!k)
		return; /* recorded order, then */
	for (uint64_t i = 0; i < nws; i++) {
		const uint8_t *e = upp_snap_entry(f, ws[i], NULL);

		k[i].page = ws[i];
		k[i].chunk = e && e[0] == UPP_SNAP_STORED
				     ? 1 + (f->data_off + get64(e + 8) * f->ps) / chunk_size
				     : 0;
	}
	qsort(k, nws, sizeof(*k), by_chunk);
	for (uint64_t i = 0; i < nws; i++)
		ws[i] = k[i].page;
	free(k);
}

/* URL.ws, if it is there and a working set of this snapshot: prefetched. */
static void prefetch_ws(upager_region_t *r, const char *url, const upager_url_options_t *o,
			const struct upp_snap *f)
{
	uint64_t nws, *ws;
	char *wsurl;
	uint8_t *buf;
	size_t len;

	if (strchr(url, '?') || !(wsurl = upager__ws_path(url)))
		return; /* a query (a signed URL) cannot name its neighbour */
	/* One GET, no HEAD: a hint, checked by its parse, needs no pinned
	 * version; a missing one is no error. */
	if (upager__url_get_small(wsurl, o, upager__ws_max_size(f->npages), o->deadline_ms, &buf,
				  &len) == 0) {
		if ((ws = upager__ws_parse(buf, len, f->npages, &nws))) {
			ws_by_chunk(ws, nws, f, o->chunk_size);
			upager__ws_prefetch(r, ws, nws, f->ps);
			free(ws);
		}
		free(buf);
	}
	free(wsurl);
}
#else
int upager__snap_url_open(const char *url, const upager_url_options_t *o, struct upp_snap *s)
{
	return -ENOTSUP;
}

int upager__snap_url_verify(const char *url, void (*progress)(uint64_t, uint64_t),
			    uint64_t *bad_page)
{
	return -ENOTSUP;
}
#endif

UPAGER__EXPORT int upager_snapshot_map_url(upager_t *pager, const char *url,
					   const upager_url_options_t *opts, unsigned flags,
					   upager_region_t **regionp)
{
	upager_url_options_t o;

	if (opts)
		o = *opts;
	else
		upager_url_options_init(&o);
	if (!pager || !regionp || !upager__url_options_valid(url, &o) ||
	    (flags & ~(UPAGER_SNAP_RECORD | UPAGER_SNAP_PREFETCH | UPAGER_SNAP_COMPLETE)))
		return -EINVAL;
	if (flags & UPAGER_SNAP_RECORD)
		return -EOPNOTSUPP; /* the object is read-only: record on a local restore */
#ifdef HAVE_LIBCURL
	struct snapurl_source *ss;
	uint8_t hdr[UPP_SNAP_HDR];
	size_t got;
	int ret = upager__url_global_init();

	if (ret < 0)
		return ret;
	ss = calloc(1, sizeof(*ss));
	if (!ss)
		return -ENOMEM;
	upager__source_init(&ss->base, &snapurl_ops);
	ret = upager__url_open_first(&ss->su.conn.t, url, &o, hdr, sizeof(hdr), &got);
	if (ret < 0) {
		free(ss);
		return ret;
	}
	ret = upager__snap_url_prepare(&ss->su, o.deadline_ms, hdr, got);
	if (ret < 0) {
		upager__url_target_free(&ss->su.conn.t);
		free(ss);
		return ret;
	}
	ret = upager__url_conn_start(&ss->su.conn, url, &o);
	if (ret < 0) {
		upp_snap_close(&ss->su.f);
		upager__url_target_free(&ss->su.conn.t);
		free(ss);
		return ret;
	}
	ret = upager_map(pager, (size_t)ss->su.f.len, &ss->base, regionp);
	if (ret == 0 && (flags & UPAGER_SNAP_PREFETCH))
		prefetch_ws(*regionp, url, &o, &ss->su.f);
	if (ret == 0)
		ret = upager__snap_fill_rest(regionp, flags);
	upager_source_release(&ss->base);
	return ret;
#else
	return -ENOTSUP;
#endif
}
