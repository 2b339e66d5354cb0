/* SPDX-License-Identifier: MIT */
/*
 * The URL source's HTTP side: opening an object pins what every later
 * range request must match (its length and ETag), follows only the
 * redirects the options allow (same scheme and host by default: a
 * redirect elsewhere could hand the object, or a signed URL's secrets, to
 * another party), and turns refusals into errno values with a log line
 * that names the object without its user info or query string (where
 * presigned URLs carry their signatures).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "url_http.h"

#define MAX_REDIRECTS 5

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_ret;

static void global_init(void)
{
	global_ret = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int upager__url_global_init(void)
{
	pthread_once(&global_once, global_init);
	return global_ret == CURLE_OK ? 0 : -ENOMEM;
}

void upager__url_log(const struct upager__url_target *t, int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!t->log || level > t->log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	t->log(t->log_arg, level, buf);
}

/* Query parameters that sign a request, not name an object (S3/CloudFront presigned URLs). */
static bool signing_param(const char *p, size_t n)
{
	static const char *const names[] = { "signature", "expires", "awsaccesskeyid", "policy",
					     "key-pair-id" };
	size_t name = strcspn(p, "=&");

	if (name > n)
		name = n;
	if (name >= 6 && !strncasecmp(p, "x-amz-", 6))
		return true;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == name && !strncasecmp(p, names[i], name))
			return true;
	return false;
}

/*
 * scheme://host[:port]/path of url (malloc'd), with its query's parameters
 * but the signing ones when with_query; NULL when it is not a URL.
 */
static char *compose(const char *url, bool with_query)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *out = NULL;

	if (!u)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
		size_t n;

		curl_url_get(u, CURLUPART_PORT, &port, 0);
		if (with_query)
			curl_url_get(u, CURLUPART_QUERY, &query, 0);
		n = strlen(scheme) + strlen(host) + (port ? strlen(port) : 0) + strlen(path) +
		    (query ? strlen(query) : 0) + 8;
		out = malloc(n);
		if (out) {
			size_t len = (size_t)snprintf(out, n, "%s://%s%s%s%s", scheme, host,
						      port ? ":" : "", port ? port : "", path);
			char sep = '?';

			for (const char *q = query; q && *q;) {
				size_t part = strcspn(q, "&");

				if (part && !signing_param(q, part)) {
					out[len++] = sep;
					memcpy(out + len, q, part);
					len += part;
					sep = '&';
				}
				q += part + (q[part] == '&');
			}
			out[len] = 0;
		}
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(query);
	curl_url_cleanup(u);
	return out;
}

char *upager__url_identity(const char *given, const struct upager__url_target *t)
{
	if (upager__url_is_s3(given))
		return strdup(t->url); /* the endpoint and the bucket and key, no query */
	return compose(given, true);
}

char *upager__url_shown(const char *url)
{
	return compose(url, false);
}

/* Same scheme, host and port (the URL API fills in default ports). */
static bool same_origin(const char *a, const char *b)
{
	CURLU *ua = curl_url(), *ub = curl_url();
	static const CURLUPart parts[] = { CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT };
	bool same = ua && ub && curl_url_set(ua, CURLUPART_URL, a, 0) == CURLUE_OK &&
		    curl_url_set(ub, CURLUPART_URL, b, 0) == CURLUE_OK;

	for (size_t i = 0; same && i < sizeof(parts) / sizeof(parts[0]); i++) {
		char *pa = NULL, *pb = NULL;

		same = curl_url_get(ua, parts[i], &pa, CURLU_DEFAULT_PORT) == CURLUE_OK &&
		       curl_url_get(ub, parts[i], &pb, CURLU_DEFAULT_PORT) == CURLUE_OK &&
		       strcasecmp(pa, pb) == 0;
		curl_free(pa);
		curl_free(pb);
	}
	curl_url_cleanup(ua);
	curl_url_cleanup(ub);
	return same;
}

void upager__url_easy_common(CURL *e, const struct upager__url_target *t)
{
	if (t->sigv4) {
		curl_easy_setopt(e, CURLOPT_AWS_SIGV4, t->sigv4);
		curl_easy_setopt(e, CURLOPT_USERPWD, t->userpwd);
	}
	/* The session token's header on every request; callers that add
	 * If-Match pass t->headers, which holds it too. */
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->auth);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)t->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	if (t->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, t->ca_file);
	/* No Accept-Encoding: a range of an encoded body is not a range of the object. */
}

static void trim_copy(char *dst, size_t cap, const char *s, size_t n)
{
	while (n && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n && (s[n - 1] == '\r' || s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n >= cap)
		n = 0; /* too long to be ours: as if absent */
	memcpy(dst, s, n);
	dst[n] = 0;
}

size_t upager__url_header_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct upager__url_resp *r = arg;
	size_t len = size * n;
	char val[UPAGER__URL_ETAG_MAX];

	if (len >= 5 && !strncmp(buf, "HTTP/", 5)) {
		const char *sp = memchr(buf, ' ', len);

		memset(r, 0, sizeof(*r));
		if (sp && (size_t)(sp - buf) + 4 <= len)
			r->status = strtol(sp + 1, NULL, 10);
	} else if (len > 5 && !strncasecmp(buf, "etag:", 5)) {
		trim_copy(r->etag, sizeof(r->etag), buf + 5, len - 5);
		r->has_etag = r->etag[0] != 0;
	} else if (len > 14 && !strncasecmp(buf, "content-range:", 14)) {
		trim_copy(val, sizeof(val), buf + 14, len - 14);
		r->has_range = sscanf(val, "bytes %" SCNu64 "-%" SCNu64 "/%" SCNu64, &r->range_first,
				      &r->range_last, &r->range_total) == 3 &&
			       r->range_first <= r->range_last && r->range_last < r->range_total;
	}
	return len;
}

int upager__url_status_errno(long status)
{
	switch (status) {
	case 401:
	case 403:
		return -EACCES;
	case 404:
	case 410:
		return -ENOENT;
	case 412:
		return -ESTALE;
	default:
		return 0;
	}
}

int upager__url_curl_errno(CURLcode c)
{
	switch (c) {
	case CURLE_OK:
		return 0;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		return -EINVAL;
	case CURLE_PEER_FAILED_VERIFICATION: /* a certificate not signed by a CA we take */
		return -EKEYREJECTED;
	default:
		return -EIO;
	}
}

static size_t discard(char *buf, size_t size, size_t n, void *arg)
{
	return size * n;
}

void upager__url_target_opened(struct upager__url_target *t)
{
	if (t->easy) {
		curl_easy_cleanup(t->easy);
		pthread_mutex_destroy(&t->easy_lock);
		t->easy = NULL;
	}
}

void upager__url_target_free(struct upager__url_target *t)
{
	free(t->url);
	free(t->shown);
	free(t->sigv4);
	if (t->userpwd)
		explicit_bzero(t->userpwd, strlen(t->userpwd)); /* a secret */
	free(t->userpwd);
	curl_slist_free_all(t->headers);
	curl_slist_free_all(t->auth);
	free(t->ca_file);
	upager__url_target_opened(t);
	t->url = t->shown = t->sigv4 = t->userpwd = t->ca_file = NULL;
	t->headers = t->auth = NULL;
}

int upager__url_target_init(struct upager__url_target *t, const char *url,
			    const upager_url_options_t *o)
{
	int ret = 0;

	memset(t, 0, sizeof(*t));
	t->connect_timeout_ms = o->connect_timeout_ms;
	t->flags = o->flags;
	t->log = o->log;
	t->log_arg = o->log_arg;
	t->log_level = o->log_level;
	{
		const char *ca = o->ca_file ? o->ca_file : getenv("CURL_CA_BUNDLE");

		if (ca && *ca && !(t->ca_file = strdup(ca)))
			return -ENOMEM;
	}
	if (upager__url_is_s3(url)) {
		ret = upager__url_s3_resolve(t, url, o);
	} else {
		t->url = strdup(url);
		t->shown = upager__url_shown(url);
		if (!t->url || !t->shown)
			ret = t->url && !t->shown ? -EINVAL : -ENOMEM;
	}
	if (ret)
		upager__url_target_free(t);
	return ret;
}

/* The object's first bytes, read by the request that opens it (open_first). */
struct first_bytes {
	uint8_t *buf;
	size_t len, got;
	const struct upager__url_resp *r;
	char range[48];
};

static size_t first_cb(char *p, size_t size, size_t n, void *arg)
{
	struct first_bytes *fb = arg;
	size_t len = size * n, take;

	if (fb->r->status != 200 && fb->r->status != 206)
		return len; /* a redirect's or an error's body: dropped */
	take = len < fb->len - fb->got ? len : fb->len - fb->got;
	memcpy(fb->buf + fb->got, p, take);
	fb->got += take;
	return take == len ? len : 0; /* the rest of a 200's whole body: cut */
}

/* One HEAD of t->url (fb: a GET of its first fb->len bytes instead): 0
 * with the status in *r, or a transport -errno. */
static int head(struct upager__url_target *t, CURL *e, struct upager__url_resp *r,
		char **redirect, struct first_bytes *fb)
{
	CURLcode c;
	char *loc = NULL;

	memset(r, 0, sizeof(*r));
	curl_easy_reset(e);
	upager__url_easy_common(e, t);
	curl_easy_setopt(e, CURLOPT_URL, t->url);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)t->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, upager__url_header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	if (fb) {
		fb->got = 0;
		fb->r = r;
		snprintf(fb->range, sizeof(fb->range), "0-%zu", fb->len - 1);
		curl_easy_setopt(e, CURLOPT_RANGE, fb->range);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, first_cb);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, fb);
	} else {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
	}
	c = curl_easy_perform(e);
	if (c == CURLE_WRITE_ERROR && fb && r->status == 200 && fb->got == fb->len)
		c = CURLE_OK; /* a 200's whole body, cut after what was asked for */
	if (c != CURLE_OK) {
		upager__url_log(t, UPAGER_LOG_ERROR, "url %s: %s", t->shown, curl_easy_strerror(c));
		return upager__url_curl_errno(c);
	}
	*redirect = NULL;
	if (r->status >= 300 && r->status < 400 &&
	    curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc) {
		*redirect = strdup(loc);
		if (!*redirect)
			return -ENOMEM;
	}
	return 0;
}

static int open_with(struct upager__url_target *t, const char *url, const upager_url_options_t *o,
		     struct first_bytes *fb)
{
	struct upager__url_resp r;
	curl_off_t len = -1;
	bool fb_partial = false; /* a 206 to open_first's range */
	CURL *e;
	int ret = 0, hops = 0;

	ret = upager__url_target_init(t, url, o);
	if (ret)
		return ret;
	e = curl_easy_init();
	if (!e) {
		ret = -ENOMEM;
		goto out;
	}
	for (;;) {
		char *next = NULL, *shown;

		ret = head(t, e, &r, &next, fb);
		if (ret || !next)
			break;
		if (++hops > MAX_REDIRECTS ||
		    (!(t->flags & UPAGER_URL_ANY_REDIRECT) && !same_origin(t->url, next)) ||
		    !(shown = upager__url_shown(next))) {
			char *to = upager__url_shown(next);

			upager__url_log(t, UPAGER_LOG_ERROR, "url %s: HTTP %ld: redirect to %s refused (%s)",
					t->shown, r.status, to ? to : "an invalid URL",
					hops > MAX_REDIRECTS ? "too many" : "another scheme or host");
			free(to);
			free(next);
			ret = -EPROTO;
			break;
		}
		free(t->url);
		free(t->shown);
		t->url = next;
		t->shown = shown;
	}
	if (!ret) {
		curl_easy_getinfo(e, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
		fb_partial = fb && r.status == 206;
		if (fb_partial) {
			/* The object's length is the range's total; the bytes
			 * must be its first (all of it, if it is shorter). */
			len = -1;
			if (r.has_range && r.range_first == 0 && r.range_last + 1 == fb->got &&
			    (fb->got == fb->len || r.range_total == fb->got))
				len = (curl_off_t)r.range_total;
			r.status = 200;
		} else if (fb && r.status == 200 && fb->got < fb->len && (curl_off_t)fb->got != len) {
			len = -1; /* a body cut short */
		}
		if (r.status != 200) {
			ret = upager__url_status_errno(r.status);
			if (!ret || ret == -ESTALE)
				ret = r.status >= 300 && r.status < 400 ? -EPROTO : -EIO;
			upager__url_log(t, UPAGER_LOG_ERROR, "url %s: HTTP %ld", t->shown, r.status);
		} else if (len < 0 || !r.has_etag || !strncmp(r.etag, "W/", 2)) {
			/* Without both a range request could not be checked; a
			 * weak ETag never matches If-Match (RFC 9110 13.1.1). */
			upager__url_log(t, UPAGER_LOG_ERROR, "url %s: HTTP %s without %s: cannot pin the object",
					t->shown, fb_partial ? "206" : "200",
					len < 0 ? (fb_partial ? "a Content-Range from byte 0 with the length"
							      : "Content-Length")
						: "a strong ETag");
			ret = -EPROTO;
		} else {
			char hdr[UPAGER__URL_ETAG_MAX + 16];
			struct curl_slist *l;

			t->size = (uint64_t)len;
			memcpy(t->etag, r.etag, sizeof(t->etag));
			snprintf(hdr, sizeof(hdr), "If-Match: %s", t->etag);
			for (const struct curl_slist *a = t->auth; a && !ret; a = a->next)
				if ((l = curl_slist_append(t->headers, a->data)))
					t->headers = l;
				else
					ret = -ENOMEM;
			if (!ret && (l = curl_slist_append(t->headers, hdr)))
				t->headers = l;
			else if (!ret)
				ret = -ENOMEM;
		}
	}
	if (!ret) { /* kept, with its connection, for the reads that follow */
		t->easy = e;
		pthread_mutex_init(&t->easy_lock, NULL);
	} else {
		curl_easy_cleanup(e);
	}
out:
	if (ret)
		upager__url_target_free(t);
	return ret;
}

int upager__url_open(struct upager__url_target *t, const char *url, const upager_url_options_t *o)
{
	return open_with(t, url, o, NULL);
}

int upager__url_open_first(struct upager__url_target *t, const char *url,
			   const upager_url_options_t *o, void *buf, size_t len, size_t *got)
{
	struct first_bytes fb = { .buf = buf, .len = len };
	int ret;

	if (!len)
		return -EINVAL;
	ret = open_with(t, url, o, &fb);
	*got = ret ? 0 : fb.got;
	return ret;
}

void upager__url_recv_reset(struct upager__url_recv *rx)
{
	memset(&rx->resp, 0, sizeof(rx->resp));
	rx->got = rx->body_pos = 0;
	rx->bad = 0;
	rx->whole = false;
}

size_t upager__url_body_cb(char *p, size_t size, size_t n, void *arg)
{
	struct upager__url_recv *rx = arg;
	const struct upager__url_resp *r = &rx->resp;
	const uint64_t total = rx->t->size;
	size_t len = size * n;
	uint64_t pos, lo, hi;

	if (r->status != 200 && r->status != 206)
		return len; /* an error's body: read and dropped */
	if (!r->has_etag || strcmp(r->etag, rx->t->etag)) {
		rx->bad = -ESTALE; /* another version (or a server that cannot say) */
		return 0;
	}
	if (r->status == 206) {
		if (!r->has_range || r->range_first != rx->off || r->range_last != rx->off + rx->len - 1 ||
		    r->range_total != total || len > rx->len - rx->got) {
			rx->bad = -EPROTO;
			return 0;
		}
		memcpy(rx->buf + rx->got, p, len);
		rx->got += len;
		return len;
	}
	/* 200: the whole object from its first byte; keep the range's part. */
	pos = rx->body_pos;
	rx->body_pos += len;
	if (rx->body_pos > total) {
		rx->bad = -EPROTO;
		return 0;
	}
	lo = pos > rx->off ? pos : rx->off;
	hi = pos + len < rx->off + rx->len ? pos + len : rx->off + rx->len;
	if (lo < hi) {
		memcpy(rx->buf + (lo - rx->off), p + (lo - pos), (size_t)(hi - lo));
		rx->got = hi - rx->off;
	}
	if (rx->got == rx->len) {
		rx->whole = true;
		return rx->body_pos == total ? len : 0; /* the rest is not needed */
	}
	return len;
}

bool upager__url_recv_done(const struct upager__url_recv *rx, CURLcode res)
{
	return !rx->bad && rx->got == rx->len &&
	       (res == CURLE_OK || (res == CURLE_WRITE_ERROR && rx->whole));
}

int upager__url_read(struct upager__url_target *t, uint64_t off, size_t len, void *buf,
		     unsigned timeout_ms)
{
	struct upager__url_recv rx = { .t = t, .buf = buf, .off = off, .len = len };
	char range[48];
	CURLcode c;
	CURL *e;
	bool kept;
	int ret;

	if (!len || off > t->size || len > t->size - off)
		return -EINVAL;
	kept = t->easy && pthread_mutex_trylock(&t->easy_lock) == 0;
	if (kept)
		curl_easy_reset(t->easy); /* options only: the connection stays */
	e = kept ? t->easy : curl_easy_init();
	if (!e)
		return -ENOMEM;
	upager__url_easy_common(e, t);
	snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, off, off + len - 1);
	curl_easy_setopt(e, CURLOPT_URL, t->url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
	curl_easy_setopt(e, CURLOPT_RANGE, range);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, upager__url_header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, &rx.resp);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, upager__url_body_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &rx);
	c = curl_easy_perform(e);
	if (kept)
		pthread_mutex_unlock(&t->easy_lock);
	else
		curl_easy_cleanup(e);
	if (upager__url_recv_done(&rx, c))
		return 0;
	ret = rx.bad ? rx.bad : upager__url_status_errno(rx.resp.status);
	if (!ret)
		ret = c != CURLE_OK ? upager__url_curl_errno(c) : -EIO;
	upager__url_log(t, UPAGER_LOG_ERROR, "url %s: bytes %s: %s%ld", t->shown, range,
			ret == -ESTALE ? "the object changed since it was opened: HTTP " : "HTTP ",
			rx.resp.status);
	return ret;
}

struct small_body {
	uint8_t *buf;
	size_t len, cap, max;
	int err; /* why the body callback ended the transfer */
};

static size_t small_cb(char *p, size_t size, size_t n, void *arg)
{
	struct small_body *b = arg;
	size_t len = size * n;

	if (len > b->max - b->len) {
		b->err = -EFBIG; /* past the bound: the transfer ends */
		return 0;
	}
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		uint8_t *nb;

		while (cap < b->len + len)
			cap *= 2;
		if (cap > b->max)
			cap = b->max;
		nb = realloc(b->buf, cap);
		if (!nb) {
			b->err = -ENOMEM;
			return 0;
		}
		b->buf = nb;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, p, len);
	b->len += len;
	return len;
}

int upager__url_get_small(const char *url, const upager_url_options_t *o, size_t max,
			  unsigned timeout_ms, uint8_t **bufp, size_t *lenp)
{
	struct upager__url_target t;
	struct upager__url_resp r = { 0 };
	struct small_body b = { .max = max };
	CURLcode c = CURLE_OUT_OF_MEMORY;
	CURL *e;
	int ret = upager__url_target_init(&t, url, o);

	if (ret)
		return ret;
	e = curl_easy_init();
	if (e) {
		upager__url_easy_common(e, &t);
		curl_easy_setopt(e, CURLOPT_URL, t.url);
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
		curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, upager__url_header_cb);
		curl_easy_setopt(e, CURLOPT_HEADERDATA, &r);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, small_cb);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
		c = curl_easy_perform(e);
		curl_easy_cleanup(e);
	}
	upager__url_target_free(&t);
	if (c == CURLE_OK && r.status == 200 && b.len) {
		*bufp = b.buf;
		*lenp = b.len;
		return 0;
	}
	free(b.buf);
	if (b.err)
		return b.err;
	ret = upager__url_status_errno(r.status);
	return ret ? ret : c != CURLE_OK ? upager__url_curl_errno(c) : -EIO;
}
