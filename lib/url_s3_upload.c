/* SPDX-License-Identifier: MIT */
/*
 * S3 multipart upload: a file larger than one part goes up as numbered
 * parts (CreateMultipartUpload, UploadPart, CompleteMultipartUpload), since
 * a single PUT stops at 5 GiB and a failed one starts over from byte 0.
 * Parts are sent in order over one kept-alive connection, each retried a
 * few times; an upload that fails is aborted so that its parts do not stay
 * billed in the bucket. Answers are read bounded (an S3 error body, an
 * upload id, a completion's XML: 64 KiB at most). Built only with libcurl.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "url_http.h"

#define PART_MIN (5ull << 20)  /* S3's smallest part (but the last) */
#define PART_MAX (5ull << 30)  /* and its largest */
#define MAX_PARTS 10000u
#define BODY_MAX (64u << 10)
#define PART_TRIES 3

struct body {
	char buf[BODY_MAX + 1];
	size_t len;
};

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
	struct body *b = arg;
	size_t take = size * n;

	if (take > BODY_MAX - b->len)
		take = BODY_MAX - b->len; /* the rest is not ours to keep */
	memcpy(b->buf + b->len, p, take);
	b->len += take;
	b->buf[b->len] = 0;
	return size * n;
}

struct part_src {
	int fd;
	uint64_t off, left;
};

static size_t read_part(char *buf, size_t size, size_t n, void *arg)
{
	struct part_src *s = arg;
	size_t want = size * n;
	ssize_t got;

	if (want > s->left)
		want = (size_t)s->left;
	if (!want)
		return 0;
	got = pread(s->fd, buf, want, (off_t)s->off);
	if (got <= 0)
		return CURL_READFUNC_ABORT; /* a file that shrank: never send a short part */
	s->off += (uint64_t)got;
	s->left -= (uint64_t)got;
	return (size_t)got;
}

struct upload {
	const struct upager__url_target *t;
	CURL *e;
	char *id;              /* escaped upload id */
	void (*progress)(void *arg, uint64_t part_bytes_sent);
	void *progress_arg;
};

static int xfer(void *arg, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln)
{
	struct upload *u = arg;

	(void)dlt, (void)dln, (void)ult;
	if (u->progress && uln > 0)
		u->progress(u->progress_arg, (uint64_t)uln);
	return 0;
}

/* One request: method to t->url + query, with src (a file part) or post (bytes) as body. */
static int request(struct upload *u, const char *method, const char *query, struct part_src *src,
		   const char *post, struct body *resp, struct upager__url_resp *hdr, long *status)
{
	const struct upager__url_target *t = u->t;
	size_t n = strlen(t->url) + strlen(query) + 2;
	char *url = malloc(n);
	CURLcode c;

	if (!url)
		return -ENOMEM;
	snprintf(url, n, "%s?%s", t->url, query);
	curl_easy_reset(u->e); /* the connection stays in the handle's cache */
	upager__url_easy_common(u->e, t);
	curl_easy_setopt(u->e, CURLOPT_URL, url);
	curl_easy_setopt(u->e, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(u->e, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(u->e, CURLOPT_HEADERFUNCTION, upager__url_header_cb);
	curl_easy_setopt(u->e, CURLOPT_HEADERDATA, hdr);
	curl_easy_setopt(u->e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(u->e, CURLOPT_LOW_SPEED_TIME, 30L);
	if (src) {
		curl_easy_setopt(u->e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(u->e, CURLOPT_READFUNCTION, read_part);
		curl_easy_setopt(u->e, CURLOPT_READDATA, src);
		curl_easy_setopt(u->e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)src->left);
		curl_easy_setopt(u->e, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(u->e, CURLOPT_XFERINFOFUNCTION, xfer);
		curl_easy_setopt(u->e, CURLOPT_XFERINFODATA, u);
	} else if (post) {
		curl_easy_setopt(u->e, CURLOPT_POSTFIELDS, post);
		curl_easy_setopt(u->e, CURLOPT_POSTFIELDSIZE, (long)strlen(post));
	}
	curl_easy_setopt(u->e, CURLOPT_CUSTOMREQUEST, method);
	resp->len = 0;
	resp->buf[0] = 0;
	memset(hdr, 0, sizeof(*hdr));
	c = curl_easy_perform(u->e);
	free(url);
	*status = 0;
	if (c != CURLE_OK)
		return upager__url_curl_errno(c);
	curl_easy_getinfo(u->e, CURLINFO_RESPONSE_CODE, status);
	return 0;
}

/* The text of <tag> in xml, into out (cap bytes): 0, or -EPROTO. */
static int xml_field(const char *xml, const char *tag, char *out, size_t cap)
{
	char open[64], close[64];
	const char *a, *b;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	a = strstr(xml, open);
	b = a ? strstr(a, close) : NULL;
	if (!a || !b || (size_t)(b - a - strlen(open)) >= cap || b == a + strlen(open))
		return -EPROTO;
	a += strlen(open);
	memcpy(out, a, (size_t)(b - a));
	out[b - a] = 0;
	return 0;
}

/* Why a request failed, as -errno, said once in the log. */
static int refused(const struct upload *u, const char *what, long status, const struct body *b)
{
	char code[64] = "";
	int ret = upager__url_status_errno(status);

	xml_field(b->buf, "Code", code, sizeof(code));
	upager__url_log(u->t, UPAGER_LOG_ERROR, "push %s: %s: HTTP %ld%s%s", u->t->shown, what,
			status, code[0] ? " " : "", code);
	return ret ? ret : status == 413 ? -EFBIG : -EIO;
}

uint64_t upager__s3_part_size(uint64_t size, uint64_t want)
{
	uint64_t part = want < PART_MIN ? PART_MIN : want > PART_MAX ? PART_MAX : want;

	if (size / part >= MAX_PARTS) /* S3 takes 10000 parts at most: larger ones */
		part = (size / MAX_PARTS + (1u << 20)) & ~((1ull << 20) - 1);
	return part;
}

int upager__s3_upload(const struct upager__url_target *t, int fd, uint64_t size, uint64_t part,
		      void (*progress)(void *arg, uint64_t part_bytes_sent), void *progress_arg,
		      void (*part_done)(void *arg, uint64_t bytes), unsigned *nparts)
{
	struct upload u = { .t = t, .progress = progress, .progress_arg = progress_arg };
	struct upager__url_resp hdr;
	struct body *b = malloc(sizeof(*b));
	char id[1024], query[1200], *xml = NULL;
	unsigned count = (unsigned)((size + part - 1) / part), done = 0;
	size_t xml_len = 0, xml_cap = 0;
	long status;
	int ret;

	*nparts = 0;
	u.e = curl_easy_init();
	if (!b || !u.e) {
		ret = -ENOMEM;
		goto out;
	}
	ret = request(&u, "POST", "uploads=", NULL, "", b, &hdr, &status); /* "=": SigV4 signs an empty value so */
	if (ret == 0 && (status < 200 || status > 299))
		ret = refused(&u, "starting a multipart upload", status, b);
	if (ret == 0 && xml_field(b->buf, "UploadId", id, sizeof(id)) < 0) {
		upager__url_log(t, UPAGER_LOG_ERROR, "push %s: no UploadId in the answer", t->shown);
		ret = -EPROTO;
	}
	if (ret < 0)
		goto out;
	u.id = curl_easy_escape(u.e, id, 0);
	if (!u.id) {
		ret = -ENOMEM;
		goto abort;
	}
	xml_cap = 128 + (size_t)count * (64 + UPAGER__URL_ETAG_MAX);
	xml = malloc(xml_cap);
	if (!xml) {
		ret = -ENOMEM;
		goto abort;
	}
	xml_len = (size_t)snprintf(xml, xml_cap, "<CompleteMultipartUpload>");
	for (unsigned i = 0; i < count; i++) {
		uint64_t off = (uint64_t)i * part, len = size - off < part ? size - off : part;

		snprintf(query, sizeof(query), "partNumber=%u&uploadId=%s", i + 1, u.id);
		for (int attempt = 0;; attempt++) {
			struct part_src src = { fd, off, len };

			ret = request(&u, "PUT", query, &src, NULL, b, &hdr, &status);
			if (ret == 0 && status >= 200 && status <= 299 && hdr.has_etag)
				break;
			if (ret == 0 && status >= 200 && status <= 299) {
				upager__url_log(t, UPAGER_LOG_ERROR, "push %s: part %u: no ETag",
						t->shown, i + 1);
				ret = -EPROTO;
				goto abort;
			}
			if (attempt + 1 >= PART_TRIES || (ret == 0 && status < 500 && status != 429)) {
				if (ret == 0)
					ret = refused(&u, "a part", status, b);
				goto abort;
			}
			usleep(100000u << attempt); /* 5xx, 429, a broken connection: again */
		}
		xml_len += (size_t)snprintf(xml + xml_len, xml_cap - xml_len,
					    "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>",
					    i + 1, hdr.etag);
		done++;
		if (part_done)
			part_done(progress_arg, len);
	}
	snprintf(xml + xml_len, xml_cap - xml_len, "</CompleteMultipartUpload>");
	snprintf(query, sizeof(query), "uploadId=%s", u.id);
	ret = request(&u, "POST", query, NULL, xml, b, &hdr, &status);
	/* S3 may answer 200 and then an error in the body (it failed after the headers). */
	if (ret == 0 && (status < 200 || status > 299 || strstr(b->buf, "<Error>")))
		ret = refused(&u, "completing the multipart upload", status, b);
	if (ret == 0) {
		*nparts = done;
		goto out;
	}
abort:
	if (u.id) { /* its parts would stay in the bucket, unseen and billed */
		long st;

		snprintf(query, sizeof(query), "uploadId=%s", u.id);
		if (request(&u, "DELETE", query, NULL, NULL, b, &hdr, &st) != 0 || st < 200 || st > 299)
			upager__url_log(t, UPAGER_LOG_WARN,
					"push %s: the failed upload could not be aborted: its parts "
					"stay until the bucket's lifecycle rules remove them",
					t->shown);
	}
out:
	free(xml);
	if (u.id)
		curl_free(u.id);
	curl_easy_cleanup(u.e);
	free(b);
	return ret;
}
