/* SPDX-License-Identifier: MIT */
/*
 * upager snapshot push: a snapshot file, and its working set beside it, sent
 * to an HTTP server with PUT, so that another host restores it from there
 * (upager_snapshot_map_url). Checked before it leaves (every page against
 * its CRC32C; an incremental snapshot, which a URL restore cannot follow to
 * its parent, refused) and after it arrived (the server's length must be
 * the file's). Only the tool calls it (snapshot_tool.h).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "env.h"
#include "snapshot_tool.h"
#include "snapshot_url.h"
#include "workset.h"
#ifdef HAVE_LIBCURL
#include "url_http.h"

#define PART_DEFAULT (64ull << 20)

struct upload {
	void (*progress)(uint64_t done, uint64_t total);
	uint64_t base, total; /* bytes before this file (or part), of every file */
	unsigned parts;       /* of the last multipart upload */
};

static void part_progress(void *arg, uint64_t sent)
{
	struct upload *u = arg;

	if (u->progress)
		u->progress(u->base + sent, u->total);
}

static void part_stored(void *arg, uint64_t bytes)
{
	((struct upload *)arg)->base += bytes;
}

/* UPAGER_S3_PART_SIZE ("16M"), else 64 MiB; 0 when it is not a size. */
static uint64_t part_size_wanted(void)
{
	const char *env = getenv("UPAGER_S3_PART_SIZE");

	return env && *env ? upp_parse_size(env) : PART_DEFAULT;
}

static int xfer_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
			 curl_off_t ulnow)
{
	struct upload *u = arg;

	(void)dltotal, (void)dlnow, (void)ultotal;
	if (u->progress && ulnow > 0)
		u->progress(u->base + (uint64_t)ulnow, u->total);
	return 0;
}

/* One PUT of the file at path to url: 0, or -errno said in the log. */
static int put_file(const char *url, const char *path, const upager_url_options_t *o,
		    struct upload *u)
{
	struct upager__url_target t;
	struct curl_slist *hdr = NULL, *h2;
	long status = 0;
	struct stat st;
	CURLcode c;
	CURL *e;
	FILE *f;
	int ret = upager__url_target_init(&t, url, o);

	if (ret)
		return ret;
	f = fopen(path, "rbe");
	if (!f) {
		ret = -errno;
		upager__url_target_free(&t);
		return ret;
	}
	if (fstat(fileno(f), &st) < 0) {
		ret = -errno;
		fclose(f);
		upager__url_target_free(&t);
		return ret;
	}
	if (upager__url_is_s3(url)) {
		uint64_t want = part_size_wanted(), part = upager__s3_part_size((uint64_t)st.st_size, want);

		if (!want) {
			upager__url_log(&t, UPAGER_LOG_ERROR, "UPAGER_S3_PART_SIZE=%s: not a size",
					getenv("UPAGER_S3_PART_SIZE"));
			ret = -EINVAL;
		} else if ((uint64_t)st.st_size > part) {
			/* Larger than a part: in parts (a single PUT stops at 5 GiB). */
			uint64_t start = u->base;

			ret = upager__s3_upload(&t, fileno(f), (uint64_t)st.st_size, part, part_progress, u,
						part_stored, &u->parts);
			u->base = start + (uint64_t)st.st_size;
		}
		if (!want || (uint64_t)st.st_size > part) { /* refused, or sent in parts: no PUT */
			fclose(f);
			upager__url_target_free(&t);
			return ret;
		}
	}
	e = curl_easy_init();
	for (const struct curl_slist *a = t.auth; a && (h2 = curl_slist_append(hdr, a->data)); a = a->next)
		hdr = h2;
	h2 = curl_slist_append(hdr, "Content-Type: application/octet-stream");
	if (!e || !h2) {
		curl_easy_cleanup(e);
		curl_slist_free_all(hdr);
		fclose(f);
		upager__url_target_free(&t);
		return -ENOMEM;
	}
	hdr = h2;
	upager__url_easy_common(e, &t);
	curl_easy_setopt(e, CURLOPT_URL, t.url);
	curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(e, CURLOPT_READDATA, f);
	curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdr);
	/* A server that stops taking bytes is cut, however large the file. */
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)(o->deadline_ms + 999) / 1000);
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, xfer_progress);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, u);
	c = curl_easy_perform(e);
	if (c != CURLE_OK) {
		upager__url_log(&t, UPAGER_LOG_ERROR, "push %s: %s", t.shown, curl_easy_strerror(c));
		ret = upager__url_curl_errno(c);
	} else {
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
		if (status < 200 || status > 299) {
			upager__url_log(&t, UPAGER_LOG_ERROR, "push %s: PUT refused: HTTP %ld", t.shown,
					status);
			ret = upager__url_status_errno(status);
			ret = ret                                 ? ret
			      : status == 405 || status == 501 ? -EOPNOTSUPP
			      : status == 413                  ? -EFBIG
								 : -EIO;
		}
	}
	u->base += (uint64_t)st.st_size;
	curl_slist_free_all(hdr);
	curl_easy_cleanup(e);
	fclose(f);
	upager__url_target_free(&t);
	return ret;
}

int upager__snap_push(const char *path, const char *url, const upager_url_options_t *opts,
		      void (*progress)(uint64_t done, uint64_t total), struct upager__push_info *info)
{
	struct upager__url_target check = { 0 };
	struct upager__snap_info in;
	upager_url_options_t o;
	struct upload u = { .progress = progress };
	char *ws = NULL, *ws_url = NULL;
	uint64_t bad = 0, nws = 0, *pages = NULL, snap_size;
	struct stat st;
	int ret;

	memset(info, 0, sizeof(*info));
	if (opts)
		o = *opts;
	else
		upager_url_options_init(&o);
	if (!path || !url || !upager__is_url(url) || upager__is_url(path))
		return -EINVAL;
	if ((ret = upager__url_global_init()) < 0)
		return ret;
	ret = upager__snap_inspect(path, &in);
	if (ret == 0 && in.parent[0])
		ret = -EXDEV; /* a URL restore cannot reach the parent beside it */
	if (ret == 0)
		ret = upager__snap_verify(path, -1, NULL, &bad);
	if (ret < 0)
		goto out;
	if (stat(path, &st) < 0) {
		ret = -errno;
		goto out;
	}
	snap_size = (uint64_t)st.st_size;
	u.total = snap_size;
	/* PATH.ws, if intact, goes beside it (URL.ws), as a restore looks for
	 * it: only where the URL has no query (a signed URL is for one object). */
	ws = upager__ws_path(path);
	if (ws && !strchr(url, '?') && upager__ws_inspect(ws, in.npages, &nws, &pages) == 0 &&
	    stat(ws, &st) == 0) {
		size_t n = strlen(url) + 4;

		ws_url = malloc(n);
		if (ws_url) {
			snprintf(ws_url, n, "%s.ws", url);
			u.total += (uint64_t)st.st_size;
		}
	}
	ret = put_file(url, path, &o, &u);
	info->parts = u.parts;
	if (ret == 0 && ws_url) {
		ret = put_file(ws_url, ws, &o, &u);
		info->ws_pages = ret == 0 ? nws : 0;
	}
	if (ret < 0)
		goto out;
	/* What arrived: its length and version, as a restore will see them. */
	ret = upager__url_open(&check, url, &o);
	if (ret == 0 && check.size != snap_size) {
		upager__url_log(&check, UPAGER_LOG_ERROR, "push %s: the server holds %llu bytes, not %llu",
				check.shown, (unsigned long long)check.size, (unsigned long long)snap_size);
		ret = -EIO;
	}
	if (ret == 0) {
		info->bytes = u.total;
		snprintf(info->etag, sizeof(info->etag), "%s", check.etag);
	}
	upager__url_target_free(&check);
out:
	free(pages);
	free(ws);
	free(ws_url);
	return ret;
}
#else
int upager__snap_push(const char *path, const char *url, const upager_url_options_t *opts,
		      void (*progress)(uint64_t done, uint64_t total), struct upager__push_info *info)
{
	(void)path, (void)url, (void)opts, (void)progress;
	memset(info, 0, sizeof(*info));
	return -ENOTSUP;
}
#endif
