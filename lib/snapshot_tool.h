/* SPDX-License-Identifier: MIT */
/* Snapshot calls for the upager tool (lib/snapshot_tool.c). Internal. */
#ifndef UPAGER_SNAPSHOT_TOOL_H
#define UPAGER_SNAPSHOT_TOOL_H

#include <stdint.h>

#include "upager.h"

struct upager__snap_info {
	uint64_t page_size, length, npages, nstored, nzero, nabsent, file_size;
	uint64_t nparent; /* pages as in the parent (incremental snapshots) */
	char parent[256]; /* its file name, beside this one; "" if none */
};
int upager__snap_inspect(const char *path, struct upager__snap_info *info);
int upager__snap_verify(const char *path, int raw_fd, void (*progress)(uint64_t, uint64_t),
			uint64_t *bad_page);
int upager__snap_from_raw(const char *raw, const char *path);
int upager__ws_inspect(const char *ws_path, uint64_t npages, uint64_t *count, uint64_t **pages);

/* What upager__snap_push sent: bytes in all, the working set's pages (0:
 * none sent), and the object's ETag as the server then gave it. */
struct upager__push_info {
	uint64_t bytes, ws_pages;
	unsigned parts; /* the snapshot's, sent as an S3 multipart upload; 0: one PUT */
	char etag[256];
};
/*
 * PUTs the snapshot at path (checked first: -EBADMSG for a bad page, -EXDEV
 * for an incremental one) to url, then PATH.ws to URL.ws if there is an
 * intact one and url has no query, then asks for url's headers: its length
 * must be the file's (-EIO). progress (may be NULL) gets bytes sent of all.
 * HTTP errors: -EACCES (401, 403), -ENOENT (404), -EOPNOTSUPP (405, 501),
 * -EFBIG (413), -EIO; said in the options' log with the URL as shown. -ENOTSUP: built
 * without libcurl. opts NULL: the defaults (deadline_ms: a stall's longest).
 */
int upager__snap_push(const char *path, const char *url, const upager_url_options_t *opts,
		      void (*progress)(uint64_t done, uint64_t total), struct upager__push_info *info);

#endif
