/* SPDX-License-Identifier: MIT */
/*
 * s3://BUCKET/KEY as the requests to an S3-compatible store see it: the
 * request URL (path-style on an endpoint of the options' or environment's,
 * else virtual-hosted on AWS), and what signs each request (libcurl's AWS
 * Signature Version 4: the region, the keys, a session token's header).
 * Keys and tokens live only here and in curl's handles: never in a URL,
 * never in a log line (what logs show is s3://BUCKET/KEY).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "url_http.h"

#define MAX_BUCKET 63 /* S3's own bound: DNS label */

static const char *first(const char *a, const char *env1, const char *env2)
{
	const char *v = a;

	if (!v || !*v)
		v = env1 ? getenv(env1) : NULL;
	if ((!v || !*v) && env2)
		v = getenv(env2);
	return v && *v ? v : NULL;
}

/* key, percent-encoded but for its slashes and RFC 3986's unreserved bytes. */
static char *encode_key(const char *key)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(key);
	char *out = malloc(3 * n + 1), *o = out;

	if (!out)
		return NULL;
	for (const unsigned char *k = (const unsigned char *)key; *k; k++) {
		if ((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') ||
		    strchr("-._~/", *k)) {
			*o++ = (char)*k;
		} else {
			*o++ = '%';
			*o++ = hex[*k >> 4];
			*o++ = hex[*k & 15];
		}
	}
	*o = 0;
	return out;
}

static bool bucket_ok(const char *b, size_t n)
{
	if (n < 3 || n > MAX_BUCKET)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '-' ||
		      b[i] == '.'))
			return false;
	return true;
}

bool upager__url_is_s3(const char *url)
{
	return url && !strncasecmp(url, "s3://", 5);
}

int upager__url_s3_resolve(struct upager__url_target *t, const char *url, const upager_url_options_t *o)
{
	const char *bucket = url + 5, *slash = strchr(bucket, '/'), *key;
	const char *endpoint = first(o->s3_endpoint, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL");
	const char *region = first(o->s3_region, "AWS_REGION", "AWS_DEFAULT_REGION");
	const char *ak = first(o->s3_access_key, "AWS_ACCESS_KEY_ID", NULL);
	const char *sk = first(o->s3_secret_key, "AWS_SECRET_ACCESS_KEY", NULL);
	const char *token = first(o->s3_session_token, "AWS_SESSION_TOKEN", NULL);
	size_t nb, n;
	char *ekey;

	if (!slash || !slash[1] || strpbrk(url, "?#") || !bucket_ok(bucket, (size_t)(slash - bucket)))
		return -EINVAL;
	nb = (size_t)(slash - bucket);
	key = slash + 1;
	region = region ? region : "us-east-1";
	if (strpbrk(region, ":/ ") || (!ak) != (!sk))
		return -EINVAL; /* half a key pair would sign with nothing */
	ekey = encode_key(key);
	if (!ekey)
		return -ENOMEM;
	n = strlen(url) + strlen(ekey) * 3 + (endpoint ? strlen(endpoint) : 0) + strlen(region) + 64;
	t->url = malloc(n);
	t->shown = strdup(url);
	if (!t->url || !t->shown) {
		free(ekey);
		return -ENOMEM;
	}
	if (endpoint) {
		size_t ne = strlen(endpoint);

		while (ne && endpoint[ne - 1] == '/')
			ne--;
		snprintf(t->url, n, "%.*s/%.*s/%s", (int)ne, endpoint, (int)nb, bucket, ekey);
	} else {
		snprintf(t->url, n, "https://%.*s.s3.%s.amazonaws.com/%s", (int)nb, bucket, region, ekey);
	}
	free(ekey);
	if (!ak)
		return 0; /* a public object: unsigned requests */
	n = strlen(region) + 16;
	t->sigv4 = malloc(n);
	n = strlen(ak) + strlen(sk) + 2;
	t->userpwd = malloc(n);
	if (!t->sigv4 || !t->userpwd)
		return -ENOMEM;
	snprintf(t->sigv4, strlen(region) + 16, "aws:amz:%s:s3", region);
	snprintf(t->userpwd, n, "%s:%s", ak, sk);
	/* S3 wants the payload's hash in a signed header; libcurl 7.88 adds
	 * none and the store answers 403 SignatureDoesNotMatch. Range reads
	 * have no payload, uploads are streamed: not signed, as S3 allows. */
	t->auth = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	if (!t->auth)
		return -ENOMEM;
	if (token) {
		char *hdr = malloc(strlen(token) + 32);
		struct curl_slist *l;

		if (!hdr)
			return -ENOMEM;
		sprintf(hdr, "x-amz-security-token: %s", token);
		l = curl_slist_append(t->auth, hdr);
		explicit_bzero(hdr, strlen(hdr));
		free(hdr);
		if (!l)
			return -ENOMEM;
		t->auth = l;
	}
	return 0;
}
