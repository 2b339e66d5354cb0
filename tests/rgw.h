/* SPDX-License-Identifier: MIT */
/*
 * A real, throwaway Ceph RADOS Gateway (S3 API) on loopback for the URL
 * source's S3 tests: one monitor, one OSD on memstore (in memory, 512 MiB)
 * and radosgw's beast frontend, each a child of the caller started in the
 * foreground with a config, keyrings and logs in a new directory under /tmp;
 * cephx on, an S3 user with random keys. Stopped (killed) and removed after.
 *
 * The children get SIGKILL when the thread that started them exits
 * (PR_SET_PDEATHSIG): start and stop from the same, long-lived thread.
 *
 * S3 requests signed by libcurl (CURLOPT_AWS_SIGV4 "aws:amz:us-east-1:s3")
 * need an "x-amz-content-sha256:" header (UNSIGNED-PAYLOAD or the body's
 * SHA-256): libcurl 7.88 does not add one and radosgw answers 403
 * SignatureDoesNotMatch without it.
 */
#ifndef UPAGER_TEST_RGW_H
#define UPAGER_TEST_RGW_H

#include <stddef.h>
#include <sys/types.h>

struct upt_rgw {
	pid_t mon, osd, rgw;	/* the three daemons, -1 when not running */
	int port;		/* radosgw's loopback port (beast frontend) */
	char dir[64];		/* its own directory under /tmp: config, keyrings, data, logs */
	char endpoint[64];	/* "http://127.0.0.1:PORT" */
	char access_key[32], secret_key[64]; /* an S3 user made with radosgw-admin user create */
};

/* NULL when it runs (a bucket may then be made with upt_rgw_bucket), else why
 * not (the test skips saying so). Gives up within about 60 s; on failure
 * nothing is left running and the directory is removed. */
const char *upt_rgw_start(struct upt_rgw *g);
/* Kills all three daemons, reaps them, removes dir. Safe to call twice. */
void upt_rgw_stop(struct upt_rgw *g);
/* Makes bucket (path-style; an existing one of this user is fine). 0 or -1. */
int upt_rgw_bucket(const struct upt_rgw *g, const char *bucket);
/* Makes bucket and uploads size bytes of upt_byte(off, seed) as key, signed
 * (libcurl, SigV4, path-style endpoint/bucket/key). 0 or -1. */
int upt_rgw_put(const struct upt_rgw *g, const char *bucket, const char *key, size_t size,
		unsigned seed);

#endif
