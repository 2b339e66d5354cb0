/* SPDX-License-Identifier: MIT */
/*
 * The URL source: pages from an object on an HTTP server. Handlers hand
 * fills to the source's transfers (lib/url_conn.c), whose thread reads
 * chunks and hands them back; this file owns what makes it a source: the
 * options, opening the object (lib/url_http.c), where it ends, and each
 * fill's deadline. Built without libcurl, upager_source_url says -ENOTSUP.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "source_url.h"
#include "upager-int.h"

#ifdef HAVE_LIBCURL
#include "url_conn.h"
#include "url_http.h"
#endif

#define DEFAULT_CHUNK (4u << 20)
#define MIN_CHUNK (64u << 10)
#define MAX_CHUNK (256u << 20)
#define MAX_REQUESTS 64
#define MAX_MEM_CHUNKS 1024

UPAGER__EXPORT void upager_url_options_init(upager_url_options_t *o)
{
	if (!o)
		return;
	memset(o, 0, sizeof(*o));
	o->connect_timeout_ms = 5000;
	o->deadline_ms = 30000;
	o->chunk_size = DEFAULT_CHUNK;
	o->max_requests = 8;
	o->mem_chunks = 16;
	o->log_level = UPAGER_LOG_WARN;
}

bool upager__url_options_valid(const char *url, const upager_url_options_t *o)
{
	for (size_t i = 0; i < sizeof(o->reserved) / sizeof(o->reserved[0]); i++)
		if (o->reserved[i])
			return false;
	return url &&
	       (!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8) ||
		!strncasecmp(url, "s3://", 5)) &&
	       o->connect_timeout_ms && o->deadline_ms &&
	       o->chunk_size >= MIN_CHUNK && o->chunk_size <= MAX_CHUNK &&
	       !(o->chunk_size & (o->chunk_size - 1)) && o->max_requests &&
	       o->max_requests <= MAX_REQUESTS && o->mem_chunks > o->max_requests &&
	       o->mem_chunks <= MAX_MEM_CHUNKS && !(o->flags & ~(uint64_t)UPAGER_URL_ANY_REDIRECT) &&
	       (!o->cache_bytes || o->cache_bytes >= UPAGER__URL_CACHE_MIN_CHUNKS * (uint64_t)o->chunk_size);
}

#ifdef HAVE_LIBCURL
struct url_source {
	upager_source_t base;
	struct upager__url_conn conn;
};

static int url_fill(upager_source_t *src, struct upager__fill *fill, struct io_uring *ring)
{
	struct url_source *us = (struct url_source *)src;

	if (fill->roff >= us->conn.t.size)
		return UPAGER__FILL_ZERO; /* past the end, as the object was when opened */
	fill->done = 0;
	fill->deadline_ns = upager__now_ns() + us->conn.deadline_ns;
	return upager__url_conn_fill(&us->conn, fill);
}

static void url_destroy(upager_source_t *src)
{
	struct url_source *us = (struct url_source *)src;

	upager__url_conn_stop(&us->conn);
	free(us);
}

static const struct upager__source_ops url_ops = {
	.name = "url",
	.fill = url_fill,
	.destroy = url_destroy,
	.readahead = true,
	.fault_around = 16,
};
#endif

UPAGER__EXPORT int upager_source_url(const char *url, const upager_url_options_t *opts,
				     upager_source_t **srcp)
{
	upager_url_options_t defaults;

	if (!opts) {
		upager_url_options_init(&defaults);
		opts = &defaults;
	}
	if (!srcp || !upager__url_options_valid(url, opts))
		return -EINVAL;
#ifdef HAVE_LIBCURL
	struct url_source *us;
	int ret = upager__url_global_init();

	if (ret < 0)
		return ret;
	us = calloc(1, sizeof(*us));
	if (!us)
		return -ENOMEM;
	upager__source_init(&us->base, &url_ops);
	ret = upager__url_open(&us->conn.t, url, opts);
	if (ret < 0) {
		free(us);
		return ret;
	}
	ret = upager__url_conn_start(&us->conn, url, opts);
	if (ret < 0) {
		upager__url_target_free(&us->conn.t);
		free(us);
		return ret;
	}
	*srcp = &us->base;
	return 0;
#else
	return -ENOTSUP;
#endif
}
