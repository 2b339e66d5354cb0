/* SPDX-License-Identifier: MIT */
/*
 * An object at a URL read by threads that wait for their bytes
 * (lib/url_object.c): what upagerd handle serves faults from when its
 * memory file is a URL. Internal; without libcurl every call is -ENOTSUP.
 */
#ifndef UPAGER_URL_OBJECT_H
#define UPAGER_URL_OBJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upager.h"

#define UPAGER__URL_OBJECT_ETAG_MAX 256

struct upager__url_object;

/*
 * Opens the object at url (http://, https://, s3://) with o: its length
 * and ETag, which every read after is pinned to (If-Match); pin non-empty:
 * the version it must still be (another one, or none: -ESTALE, said through
 * o's log). A upager snapshot (told by its magic) has its header and page
 * map read and checked, and reads then see the memory it describes; any
 * other object is raw bytes. Then starts its transfers (chunked, retried,
 * in the chunk cache UPAGER_CACHE_DIR names). 0, or -errno said through
 * o's log with the URL as shown, never its secrets: -ENOENT (404, 410),
 * -EACCES (401, 403), -EPROTO, -EBADMSG (a damaged snapshot), -EXDEV (an
 * incremental one), a transport's -errno.
 */
int upager__url_object_open(struct upager__url_object **obp, const char *url,
			    const upager_url_options_t *o, const char *pin);
/* Whether it is a upager snapshot; the bytes of memory it describes; its ETag. */
bool upager__url_object_snapshot(const struct upager__url_object *ob);
uint64_t upager__url_object_len(const struct upager__url_object *ob);
const char *upager__url_object_etag(const struct upager__url_object *ob);
/*
 * len bytes of the memory at off into buf, on any thread, waiting at most
 * o->deadline_ms from the call: 1 (bytes), 0 (all zero: buf may hold
 * anything), or -errno, never other bytes: -ESTALE (the object is no longer
 * the version opened: 412 or another ETag; every read from then on),
 * -ENOENT (gone), -ETIMEDOUT, -EBADMSG (a snapshot page fails its CRC32C),
 * -EIO; -EINVAL past the end, or for a snapshot not whole pages.
 */
int upager__url_object_read(struct upager__url_object *ob, uint64_t off, size_t len, void *buf);
/* Stops its transfers (reads still waiting fail) and frees it. */
void upager__url_object_close(struct upager__url_object *ob);

#endif
