/* SPDX-License-Identifier: MIT */
/*
 * The URL source's HTTP side (lib/url_http.c): opening an object (its
 * length and version, pinned), the options every request shares, and
 * reading a response's headers. Internal; built only with libcurl.
 */
#ifndef UPAGER_URL_HTTP_H
#define UPAGER_URL_HTTP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "upager.h"

#define UPAGER__URL_ETAG_MAX 256

/* An object as opened: every range request goes to url, If-Match etag. */
struct upager__url_target {
	char *url;   /* after the redirects followed at open */
	char *shown; /* url without user info, query or fragment: what logs say */
	char etag[UPAGER__URL_ETAG_MAX];
	uint64_t size;
	struct curl_slist *headers; /* auth's, then If-Match: etag */
	/* s3:// objects (url_s3.c): "aws:amz:REGION:s3" and "KEY:SECRET" for
	 * libcurl's SigV4, a session token's header; NULL when unsigned. */
	char *sigv4, *userpwd;
	struct curl_slist *auth;
	char *ca_file; /* NULL: libcurl's default */
	unsigned connect_timeout_ms;
	uint64_t flags; /* UPAGER_URL_* */
	upager_log_fn log;
	void *log_arg;
	int log_level;
	/* The connection the HEAD at open made, for the reads that follow it
	 * (a snapshot's header and page map): no new TCP and TLS handshake
	 * each. Used by one reader at a time (easy_lock); the others make
	 * their own. */
	CURL *easy;
	pthread_mutex_t easy_lock;
};

/* What the headers of a response said (the last response, after a 100). */
struct upager__url_resp {
	long status;
	bool has_etag, has_range;
	char etag[UPAGER__URL_ETAG_MAX];
	uint64_t range_first, range_last, range_total;
};

/*
 * Receiving a range [off, off + len) of t's object into buf: the body
 * callback takes a 206's bytes only if its ETag is t's and its
 * Content-Range exactly the range, and from a 200 (a server that ignores
 * Range) only the range's part of the whole body, cut off after it.
 */
struct upager__url_recv {
	const struct upager__url_target *t;
	struct upager__url_resp resp; /* CURLOPT_HEADERDATA */
	uint8_t *buf;
	uint64_t off, len;
	uint64_t got, body_pos;
	int bad;    /* -ESTALE (another version), -EPROTO (not the range asked for) */
	bool whole; /* the range came from a 200's whole body */
};
void upager__url_recv_reset(struct upager__url_recv *rx);
/* CURLOPT_WRITEFUNCTION for a struct upager__url_recv. */
size_t upager__url_body_cb(char *p, size_t size, size_t n, void *rx);
/* Whether rx received its range, after a transfer that ended with res. */
bool upager__url_recv_done(const struct upager__url_recv *rx, CURLcode res);
/*
 * [off, off + len) of t's object into buf, at once (one request, within
 * timeout_ms): 0, or -ESTALE (412 or another ETag), -EPROTO (not those
 * bytes), a status's -errno, -EIO, or a transport -errno.
 */
int upager__url_read(struct upager__url_target *t, uint64_t off, size_t len, void *buf,
		     unsigned timeout_ms);
/*
 * The whole of the small object at url (GET, no HEAD first: one round trip;
 * no redirect followed), at most max bytes, within timeout_ms: 0 with
 * *bufp (malloc'd) and *lenp, or -errno: -ENOENT (404, 410), -EACCES,
 * -EFBIG (longer than max), -EIO. Nothing logged: for what may be missing.
 */
int upager__url_get_small(const char *url, const upager_url_options_t *o, size_t max,
			  unsigned timeout_ms, uint8_t **bufp, size_t *lenp);

/*
 * What names the object given as url (opened as t), for the chunk cache's
 * key (malloc'd, NULL: no memory): the URL as given, before redirects
 * (which may lead to per-request signed URLs), without user info and
 * without the query parameters that sign a request (X-Amz-*, Signature,
 * Expires...); for s3:// the endpoint's URL of the bucket and key.
 */
char *upager__url_identity(const char *url, const struct upager__url_target *t);

/*
 * The part size for an S3 multipart upload of size bytes: want, within S3's
 * 5 MiB..5 GiB, raised so that there are at most 10000 parts.
 */
uint64_t upager__s3_part_size(uint64_t size, uint64_t want);
/*
 * Uploads size bytes of fd to t (an s3:// object) in parts of part bytes
 * (lib/url_s3_upload.c): 0 and *nparts, or -errno said in t's log (the
 * upload aborted). progress gets the bytes sent of the part under way,
 * part_done each part's length once it is stored; both may be NULL.
 */
int upager__s3_upload(const struct upager__url_target *t, int fd, uint64_t size, uint64_t part,
		      void (*progress)(void *arg, uint64_t part_bytes_sent), void *progress_arg,
		      void (*part_done)(void *arg, uint64_t bytes), unsigned *nparts);

/* curl_global_init, once per process: 0 or -ENOMEM. */
int upager__url_global_init(void);
/*
 * Asks for the object's headers (HEAD), following redirects the options
 * allow, within connect_timeout_ms: fills t (0), or -errno, logged with
 * the URL (as shown) and the status: -ENOENT (404, 410), -EACCES (401,
 * 403), -EPROTO (no length or version, a redirect refused), -EIO (other).
 */
int upager__url_open(struct upager__url_target *t, const char *url,
		     const upager_url_options_t *o);
/*
 * The same, and the object's first len bytes into buf in the same round
 * trip: a GET of that range instead of the HEAD (its 206 says the length
 * and the version as well; a 200's whole body is cut after them). *got:
 * len, or the object's length if shorter.
 */
int upager__url_open_first(struct upager__url_target *t, const char *url,
			   const upager_url_options_t *o, void *buf, size_t len, size_t *got);
void upager__url_target_free(struct upager__url_target *t);
/* The reads of opening are over: the connection kept for them goes (an
 * idle connection is a descriptor held, and the server closes it anyway).
 * No upager__url_read of t may run meanwhile (its easy_lock goes too). */
void upager__url_target_opened(struct upager__url_target *t);
/* t for url as every request sees it, without asking the server anything
 * (s3:// resolved by url_s3.c): 0, -EINVAL (not a URL we take), -ENOMEM. */
int upager__url_target_init(struct upager__url_target *t, const char *url,
			    const upager_url_options_t *o);
/* url_s3.c: s3://BUCKET/KEY URLs, resolved into t's url, shown and signing. */
bool upager__url_is_s3(const char *url);
int upager__url_s3_resolve(struct upager__url_target *t, const char *url,
			   const upager_url_options_t *o);
/* scheme://host[:port]/path of url, without user info, query or fragment
 * (malloc'd), or NULL when url is not one: what logs may say. */
char *upager__url_shown(const char *url);
/* The options of every request to t: protocols, timeouts, no redirects, no signals. */
void upager__url_easy_common(CURL *e, const struct upager__url_target *t);
/* CURLOPT_HEADERFUNCTION for a struct upager__url_resp (zeroed first). */
size_t upager__url_header_cb(char *buf, size_t size, size_t n, void *resp);
/* A transfer's failure as -errno (-EIO for the ones without a better one). */
int upager__url_curl_errno(CURLcode c);
/* An HTTP status that will not change by asking again, as -errno (0: none such). */
int upager__url_status_errno(long status);
/* Through t's log: a line naming the object as shown, never its secrets. */
void upager__url_log(const struct upager__url_target *t, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
