/* SPDX-License-Identifier: MIT */
/*
 * Working sets (PATH.ws, docs/SNAPSHOT.md): recording one, the file's
 * format (writing, reading, checking) and turning one into prefetches.
 * Apart from the snapshot source because more than it use them: the local
 * restore (upager_snapshot_map), the remote one (upager_snapshot_map_remote
 * fetches OBJECT.ws from the server and parses the bytes here), the
 * reorder and the upager tool. The file is a hint and hostile: a damaged
 * one is no working set, never a wrong page.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "le.h"
#include "crc32c.h"
#include "fileio.h"
#include "snapfmt.h"
#include "upager-int.h"
#include "workset.h"

/*
 * The working set (PATH.ws): a 32-byte header ("UPGWS001", u64 count,
 * u64 npages of the snapshot, u32 CRC32C of the entries, u32 CRC32C of the
 * header's first 28 bytes) and count u64 page indices in first-touch order.
 */
#define WS_MAGIC "UPGWS001"
#define WS_HDR 32

char *upager__ws_path(const char *snap_path)
{
	char *ws_path = malloc(strlen(snap_path) + 4);

	if (ws_path)
		sprintf(ws_path, "%s.ws", snap_path);
	return ws_path;
}

/* ---- recording ---- */

int upager__ws_record_start(struct upager__ws_recorder *rec, char *path, uint64_t npages,
			    size_t ps)
{
	memset(rec, 0, sizeof(*rec));
	rec->seen = calloc((npages + 7) / 8, 1);
	if (!rec->seen)
		return -ENOMEM;
	pthread_mutex_init(&rec->lock, NULL);
	rec->npages = npages;
	rec->ps = ps;
	rec->path = path;
	return 0;
}

static void ws_add(struct upager__ws_recorder *rec, uint64_t page)
{
	if (page >= rec->npages || (rec->seen[page / 8] & (1u << (page % 8))))
		return;
	if (rec->n == rec->cap) {
		uint64_t cap = rec->cap ? rec->cap * 2 : 1024;
		uint64_t *n = realloc(rec->pages, cap * sizeof(*n));
		if (!n)
			return; /* a shorter working set: only prefetch suffers */
		rec->pages = n;
		rec->cap = cap;
	}
	rec->seen[page / 8] |= (uint8_t)(1u << (page % 8));
	rec->pages[rec->n++] = page;
}

/*
 * What a fault made resident, the faulting page first, then the rest of
 * its window: what the recorded run had when it needed it. Prefetches are
 * not recorded (they are guesses). Several handlers may call.
 */
void upager__ws_record_fill(struct upager__ws_recorder *rec, const struct upager__fill *fill)
{
	uint64_t first, n;

	if (!rec->path || fill->prefetch)
		return; /* not recording: rec->ps is 0 */
	first = fill->roff / rec->ps;
	n = fill->len / rec->ps;
	pthread_mutex_lock(&rec->lock);
	ws_add(rec, first + (fill->fault_addr - fill->addr) / rec->ps);
	for (uint64_t k = 0; k < n; k++)
		ws_add(rec, first + k);
	pthread_mutex_unlock(&rec->lock);
}

static int write_ws_file(int fd, void *arg)
{
	struct upager__ws_recorder *rec = arg;
	uint8_t hdr[WS_HDR] = { 0 };
	int ret;

	memcpy(hdr, WS_MAGIC, 8);
	put64(hdr + 8, rec->n);
	put64(hdr + 16, rec->npages);
	for (uint64_t i = 0; i < rec->n; i++) /* little-endian on disk */
		put64((uint8_t *)&rec->pages[i], rec->pages[i]);
	put32(hdr + 24, upp_crc32c(0, rec->pages, rec->n * 8));
	put32(hdr + 28, upp_crc32c(0, hdr, 28));
	ret = upp_pwrite_full(fd, hdr, WS_HDR, 0);
	return ret ? ret : upp_pwrite_full(fd, rec->pages, rec->n * 8, WS_HDR);
}

/* Written when the source goes (the region was released), atomically; a
 * working set that cannot be written is only a hint lost. */
void upager__ws_record_end(struct upager__ws_recorder *rec)
{
	if (!rec->path)
		return;
	(void)upp_atomic_replace(rec->path, write_ws_file, rec);
	free(rec->path);
	free(rec->pages);
	free(rec->seen);
	pthread_mutex_destroy(&rec->lock);
	rec->path = NULL;
}

/* ---- reading ---- */

uint64_t upager__ws_max_size(uint64_t npages)
{
	return WS_HDR + npages * 8;
}

/* A working-set file's bytes: its page indices, or NULL if damaged. */
uint64_t *upager__ws_parse(const uint8_t *buf, size_t len, uint64_t npages, uint64_t *count)
{
	uint64_t *ws, n;

	if (len < WS_HDR || memcmp(buf, WS_MAGIC, 8) || upp_crc32c(0, buf, 28) != get32(buf + 28) ||
	    get64(buf + 16) != npages || (n = get64(buf + 8)) > npages || len != WS_HDR + n * 8 ||
	    upp_crc32c(0, buf + WS_HDR, n * 8) != get32(buf + 24))
		return NULL;
	ws = malloc(n ? n * 8 : 1);
	if (!ws)
		return NULL;
	for (uint64_t i = 0; i < n; i++) {
		ws[i] = get64(buf + WS_HDR + i * 8);
		if (ws[i] >= npages) {
			free(ws);
			return NULL;
		}
	}
	*count = n;
	return ws;
}

static int open_cloexec(void *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC | O_NOCTTY);

	return fd < 0 ? -errno : fd;
}

/* Reads PATH.ws: its page indices, or NULL if there is none, it is damaged,
 * or it is no regular file (a FIFO there must not hold the restore). */
uint64_t *upager__ws_read(const char *ws_path, uint64_t npages, uint64_t *count)
{
	uint64_t *ws = NULL;
	uint8_t *buf;
	struct stat st;
	int fd = upp_open_regular(open_cloexec, (void *)ws_path);

	if (fd < 0)
		return NULL;
	/* No bigger than a working set of every page can be. */
	if (fstat(fd, &st) == 0 && (uint64_t)st.st_size <= upager__ws_max_size(npages) &&
	    (buf = malloc((size_t)st.st_size + 1))) {
		if (upp_pread_full(fd, buf, (size_t)st.st_size, 0) == 0)
			ws = upager__ws_parse(buf, (size_t)st.st_size, npages, count);
		free(buf);
	}
	close(fd);
	return ws;
}

/*
 * Queues the working set's pages as prefetches in recorded order, runs of
 * consecutive pages as one request: the handlers take requests in order,
 * and faults before any of them. Best effort (out of memory: no prefetch).
 */
void upager__ws_prefetch(upager_region_t *r, const uint64_t *ws, uint64_t nws, size_t ps)
{
	size_t *offs = malloc(nws * sizeof(*offs)), *lens = malloc(nws * sizeof(*lens)), n = 0;

	for (uint64_t i = 0; offs && lens && i < nws;) {
		uint64_t j = i + 1;

		while (j < nws && ws[j] == ws[j - 1] + 1 && j - i < UPAGER__MAX_WINDOW)
			j++;
		offs[n] = ws[i] * ps;
		lens[n++] = (j - i) * ps;
		i = j;
	}
	if (offs && lens)
		upager__prefetch_list(r, offs, lens, n);
	free(offs);
	free(lens);
}


int upager__snap_fill_rest(upager_region_t **regionp, unsigned flags)
{
	int ret;

	if (!(flags & UPAGER_SNAP_COMPLETE))
		return 0;
	ret = upager__prefetch_list(*regionp, &(size_t){ 0 }, &(*regionp)->size, 1);
	if (ret < 0) {
		upager_release(*regionp);
		*regionp = NULL;
	}
	return ret;
}
