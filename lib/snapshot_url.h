/* SPDX-License-Identifier: MIT */
/*
 * A snapshot read over HTTP (lib/snapshot_url.c): opening one (its header
 * and page map fetched once and checked as a file's are), and what the
 * upager tool does with one. Internal.
 */
#ifndef UPAGER_SNAPSHOT_URL_H
#define UPAGER_SNAPSHOT_URL_H

#include <stdbool.h>
#include <stdint.h>

#include "snapfmt.h"
#include "upager.h"

/* Whether path is a URL (http://, https:// or s3://) rather than a file. */
bool upager__is_url(const char *path);
/*
 * Opens the snapshot at url: s filled as upp_snap_open does (s->fd is -1:
 * its stored pages are at s->data_off in the object; s->file_size the
 * object's size). -EXDEV: an incremental snapshot (its parent is a file beside
 * it); -ENOTSUP: built without libcurl; else as upager_source_url and
 * upp_snap_open.
 */
int upager__snap_url_open(const char *url, const upager_url_options_t *o, struct upp_snap *s);
/*
 * Reads every stored page of the snapshot at url and checks its CRC32C:
 * 0, -EBADMSG with the first bad page in *bad_page, or -errno.
 */
int upager__snap_url_verify(const char *url, void (*progress)(uint64_t, uint64_t),
			    uint64_t *bad_page);

#ifdef HAVE_LIBCURL
#include "url_conn.h"

/* A snapshot at a URL as its readers hold it: the checked page map, and the
 * transfers its stored pages come through. */
struct upager__snap_url {
	struct upp_snap f;
	struct upager__url_conn conn;
};
/*
 * With su->conn.t opened by upager__url_open_first, which read the object's
 * first hdr_got bytes into hdr (UPP_SNAP_HDR asked for): checks the header,
 * reads the page map within timeout_ms and checks it as a file's, and sets
 * the transfers' locate (memory offset -> data area) and check (each
 * stored page's CRC32C); the transfers are not started. 0, or -errno said
 * through t's log (-EXDEV: incremental; -EFBIG; else as upp_snap_open),
 * with nothing held but the target.
 */
int upager__snap_url_prepare(struct upager__snap_url *su, unsigned timeout_ms, const uint8_t *hdr,
			     size_t hdr_got);
#endif

#endif
