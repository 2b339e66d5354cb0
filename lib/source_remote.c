/* SPDX-License-Identifier: MIT */
/*
 * The remote source: pages from upagerd (docs/PROTOCOL.md), and the restore
 * of a snapshot the server holds (upager_snapshot_map_remote). Handlers
 * hand fills to the source's connection (lib/remote_conn.c), whose thread
 * sends, receives and hands them back; this file owns what makes it a
 * source: the options, where the object ends, each fill's deadline, and
 * the working set fetched beside a remote snapshot.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "protocol.h"
#include "remote_conn.h"
#include "remote_handshake.h"
#include "upager-int.h"
#include "workset.h"

struct remote_source {
	upager_source_t base;
	uint64_t deadline_ns; /* each fill's, from when it is queued */
	struct upager__remote_conn conn;
};

static int remote_fill(upager_source_t *src, struct upager__fill *fill, struct io_uring *ring)
{
	struct remote_source *rs = (struct remote_source *)src;

	if (fill->roff >= rs->conn.size)
		return UPAGER__FILL_ZERO; /* past the end, as the object was when opened */
	if (fill->len > UPP_MAX_READ)
		fill->len = UPP_MAX_READ;
	fill->deadline_ns = upager__now_ns() + rs->deadline_ns;
	upager__remote_conn_send(&rs->conn, fill);
	return UPAGER__FILL_PENDING;
}

static void remote_destroy(upager_source_t *src)
{
	struct remote_source *rs = (struct remote_source *)src;

	upager__remote_conn_stop(&rs->conn);
	free(rs);
}

static const struct upager__source_ops remote_ops = {
	.name = "remote",
	.fill = remote_fill,
	.destroy = remote_destroy,
	.readahead = true,
	.fault_around = 16,
};

UPAGER__EXPORT void upager_remote_options_init(upager_remote_options_t *o)
{
	if (!o)
		return;
	memset(o, 0, sizeof(*o));
	o->connect_timeout_ms = 5000;
	o->deadline_ms = 30000;
}

UPAGER__EXPORT int upager_source_remote(const char *uri, const char *object,
					const upager_remote_options_t *opts,
					upager_source_t **srcp)
{
	upager_remote_options_t defaults;
	struct upager__remote_peer *peer;
	struct remote_source *rs;
	int ret;

	if (!opts) {
		upager_remote_options_init(&defaults);
		opts = &defaults;
	}
	if (!uri || !object || !srcp || !*object || strlen(object) > UPP_MAX_PATH ||
	    strlen(uri) >= sizeof(peer->uri) || opts->connect_timeout_ms == 0 ||
	    opts->deadline_ms == 0 || (strncmp(uri, "unix:", 5) && strncmp(uri, "tcp:", 4)))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(opts->reserved) / sizeof(opts->reserved[0]); i++)
		if (opts->reserved[i])
			return -EINVAL;
	if (opts->flags & ~(uint64_t)UPAGER_REMOTE_SNAPSHOT)
		return -EINVAL;
	rs = calloc(1, sizeof(*rs));
	if (!rs)
		return -ENOMEM;
	upager__source_init(&rs->base, &remote_ops);
	peer = &rs->conn.peer;
	strcpy(peer->uri, uri);
	strcpy(peer->object, object);
	peer->image = opts->flags & UPAGER_REMOTE_SNAPSHOT;
	peer->connect_timeout_ms = opts->connect_timeout_ms;
	if (opts->secret_file) {
		ret = upp_read_secret(opts->secret_file, peer->secret, sizeof(peer->secret),
				      &peer->secret_len, NULL);
		if (ret) {
			explicit_bzero(peer->secret, sizeof(peer->secret)); /* a part may be read */
			free(rs);
			return ret;
		}
	}
	rs->deadline_ns = (uint64_t)opts->deadline_ms * 1000000ull;
	ret = upager__remote_conn_start(&rs->conn);
	if (ret < 0) {
		/* The secret must not outlive the source in freed memory. */
		explicit_bzero(peer->secret, sizeof(peer->secret));
		free(rs);
		return ret;
	}
	*srcp = &rs->base;
	return 0;
}

UPAGER__EXPORT int upager_snapshot_map_remote(upager_t *pager, const char *uri, const char *object,
					      const upager_remote_options_t *opts, unsigned flags,
					      upager_region_t **regionp)
{
	upager_remote_options_t o;
	upager_source_t *src;
	struct remote_source *rs;
	uint64_t size;
	int ret;

	if (!pager || !regionp || (flags & ~(UPAGER_SNAP_RECORD | UPAGER_SNAP_PREFETCH | UPAGER_SNAP_COMPLETE)))
		return -EINVAL;
	if (flags & UPAGER_SNAP_RECORD)
		return -EOPNOTSUPP; /* the server is read-only: record on a local restore */
	if (opts)
		o = *opts;
	else
		upager_remote_options_init(&o);
	o.flags |= UPAGER_REMOTE_SNAPSHOT;
	ret = upager_source_remote(uri, object, &o, &src);
	if (ret < 0)
		return ret;
	rs = (struct remote_source *)src;
	size = rs->conn.size;
	ret = size == 0 ? -EBADMSG : size > SIZE_MAX ? -EFBIG : upager_map(pager, (size_t)size, src, regionp);
	if (ret == 0 && (flags & UPAGER_SNAP_PREFETCH) && strlen(object) + 3 <= UPP_MAX_PATH) {
		/*
		 * OBJECT.ws beside it on the server, if there is one and it is
		 * intact: a working set of no more pages than the image has
		 * nor than this machine has memory for (the image's size is the
		 * server's word; a prefetch beyond memory could not stay).
		 */
		size_t ps = (size_t)sysconf(_SC_PAGESIZE), len;
		long phys = sysconf(_SC_PHYS_PAGES);
		uint64_t npages = size / ps, most = npages, nws, *ws;
		char wsobj[UPP_MAX_PATH + 1];
		uint8_t *buf;

		if (phys > 0 && (uint64_t)phys < most)
			most = (uint64_t)phys;
		snprintf(wsobj, sizeof(wsobj), "%s.ws", object);
		ret = upager__remote_fetch_small(&rs->conn.peer, wsobj, upager__ws_max_size(most),
						 &buf, &len);
		if (ret == 0) {
			ws = upager__ws_parse(buf, len, npages, &nws);
			if (ws)
				upager__ws_prefetch(*regionp, ws, nws, ps);
			free(ws);
			free(buf);
		} else if (ret != -ENOENT) {
			upager__log(pager, UPAGER_LOG_WARN, "remote %s: %s: %s: restoring without prefetch",
				    uri, wsobj, ret == -EFBIG ? "bigger than a working set of "
					"this image on this machine can be" : strerror(-ret));
		}
		ret = 0; /* the restore goes on without prefetch */
	}
	if (ret == 0)
		ret = upager__snap_fill_rest(regionp, flags);
	upager_source_release(src);
	return ret;
}
