/* SPDX-License-Identifier: MIT */
/*
 * An object at a URL read by threads that wait for their bytes: upagerd
 * handle's memory file when it is a URL. The bytes come through the URL
 * source's transfers (lib/url_conn.c: aligned chunks on their own thread,
 * the ETag pinned at open sent as If-Match, retries until the deadline,
 * the shared chunk cache), and a snapshot's page map and checksums are
 * lib/snapshot_url.c's: this file adds only the waiting. A read is a fill
 * with no region, handed back to the thread that waits on it instead of a
 * fault handler; the transfers end every fill by its deadline (done,
 * failed, or timed out), so a reader never waits for ever and never gets
 * bytes of another version.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "url_object.h"

#ifdef HAVE_LIBCURL
#include "snapshot_url.h"
#include "source_url.h"
#include "upager-int.h"
#include "url_conn.h"
#include "url_http.h"

_Static_assert(UPAGER__URL_OBJECT_ETAG_MAX == UPAGER__URL_ETAG_MAX, "one bound for an ETag");

struct upager__url_object {
	struct upager__snap_url su; /* su.f: a snapshot's map, if snap */
	bool snap;
};

/* A read waiting for the transfer thread. The fill comes first: the
 * thread hands back the fill, and this is found from it. */
struct waiter {
	struct upager__fill fill;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
};

static void woken(struct upager__fill *f, int result)
{
	struct waiter *w = (struct waiter *)f;

	pthread_mutex_lock(&w->lock);
	f->result = result;
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

int upager__url_object_open(struct upager__url_object **obp, const char *url,
			    const upager_url_options_t *o, const char *pin)
{
	struct upager__url_object *ob;
	uint8_t hdr[UPP_SNAP_HDR];
	size_t got;
	int ret;

	if (!upager__url_options_valid(url, o))
		return -EINVAL;
	ret = upager__url_global_init();
	if (ret < 0)
		return ret;
	ob = calloc(1, sizeof(*ob));
	if (!ob)
		return -ENOMEM;
	/* Its first bytes say whether it is a snapshot, and are its header. */
	ret = upager__url_open_first(&ob->su.conn.t, url, o, hdr, sizeof(hdr), &got);
	if (ret < 0) {
		free(ob);
		return ret;
	}
	if (pin && *pin && strcmp(pin, ob->su.conn.t.etag)) {
		upager__url_log(&ob->su.conn.t, UPAGER_LOG_ERROR,
				"url %s: the object is no longer the version pinned at start "
				"(ETag %s, now %s)", ob->su.conn.t.shown, pin, ob->su.conn.t.etag);
		ret = -ESTALE;
		goto fail;
	}
	if (got == sizeof(hdr) && !memcmp(hdr, UPP_SNAP_MAGIC, 8)) {
		ob->snap = true;
		ret = upager__snap_url_prepare(&ob->su, o->deadline_ms, hdr, got);
	}
	if (ret < 0)
		goto fail;
	ob->su.conn.complete = woken;
	ret = upager__url_conn_start(&ob->su.conn, url, o);
	if (ret == 0) {
		*obp = ob;
		return 0;
	}
	if (ob->snap)
		upp_snap_close(&ob->su.f);
fail:
	upager__url_target_free(&ob->su.conn.t);
	free(ob);
	return ret;
}

bool upager__url_object_snapshot(const struct upager__url_object *ob)
{
	return ob->snap;
}

uint64_t upager__url_object_len(const struct upager__url_object *ob)
{
	return ob->snap ? ob->su.f.len : ob->su.conn.t.size;
}

const char *upager__url_object_etag(const struct upager__url_object *ob)
{
	return ob->su.conn.t.etag;
}

int upager__url_object_read(struct upager__url_object *ob, uint64_t off, size_t len, void *buf)
{
	struct waiter w = { .fill = { .roff = off, .len = len, .buf = buf } };
	int ret;

	if (off >= upager__url_object_len(ob) || len > upager__url_object_len(ob) - off)
		return -EINVAL;
	/* A snapshot's pages are checked whole (snapurl_check): a part of one
	 * would be checked against the wrong bytes, or not at all. */
	if (ob->snap && (off % ob->su.f.ps || len % ob->su.f.ps || !len))
		return -EINVAL;
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	w.fill.deadline_ns = upager__now_ns() + ob->su.conn.deadline_ns;
	ret = upager__url_conn_fill(&ob->su.conn, &w.fill);
	if (ret == UPAGER__FILL_PENDING) {
		/* The thread ends it by its deadline whatever the server does;
		 * until then it holds the fill, so no earlier way out. */
		pthread_mutex_lock(&w.lock);
		while (!w.done)
			pthread_cond_wait(&w.cond, &w.lock);
		pthread_mutex_unlock(&w.lock);
		ret = w.fill.result;
	}
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.lock);
	return ret == UPAGER__FILL_DATA ? 1 : ret == UPAGER__FILL_ZERO ? 0 : ret < 0 ? ret : -EIO;
}

void upager__url_object_close(struct upager__url_object *ob)
{
	if (!ob)
		return;
	upager__url_conn_stop(&ob->su.conn); /* frees the target too */
	if (ob->snap)
		upp_snap_close(&ob->su.f);
	free(ob);
}
#else
int upager__url_object_open(struct upager__url_object **obp, const char *url,
			    const upager_url_options_t *o, const char *pin)
{
	return -ENOTSUP;
}

bool upager__url_object_snapshot(const struct upager__url_object *ob)
{
	return false;
}

uint64_t upager__url_object_len(const struct upager__url_object *ob)
{
	return 0;
}

const char *upager__url_object_etag(const struct upager__url_object *ob)
{
	return "";
}

int upager__url_object_read(struct upager__url_object *ob, uint64_t off, size_t len, void *buf)
{
	return -ENOTSUP;
}

void upager__url_object_close(struct upager__url_object *ob)
{
}
#endif
