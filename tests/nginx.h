/* SPDX-License-Identifier: MIT */
/*
 * A real nginx for the URL source's tests and bench rows: started on a free
 * loopback port with a config and prefix of its own (a new directory under
 * /tmp), serving that directory's www/ as static files (ETags, ranges,
 * If-Match, keep-alive), stopped and removed after.
 */
#ifndef UPAGER_TEST_NGINX_H
#define UPAGER_TEST_NGINX_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

struct upt_nginx {
	pid_t pid;
	int port;
	char dir[64];  /* its prefix; www/ is the document root */
	char www[96];
	char log[96];  /* access log: "connection requests status method uri auth="..." token="..."
	                  proto=..." a line */
	int tls_port;  /* https, HTTP/2 offered (a self-signed certificate); 0: no openssl here */
	char cert[96]; /* that certificate, the CA file a client needs */
};

/* In a test: skips it, saying so, when why (upt_nginx_start's answer) is set. */
#define UPT_NEED_NGINX(why)                                       \
	do {                                                      \
		if (why) {                                        \
			printf("SKIP %s: %s\n", __func__, (why)); \
			return;                                   \
		}                                                 \
	} while (0)

/* NULL when nginx runs, else why it cannot (the test skips, saying so). */
const char *upt_nginx_start(struct upt_nginx *n);
/* Stops it (SIGKILL if it will not go) and removes its directory. */
void upt_nginx_stop(struct upt_nginx *n);
/* Lines of its access log with status (0: any): requests answered. */
size_t upt_nginx_requests(const struct upt_nginx *n, int status);
/* Lines of its access log with status (0: any) that came over HTTP/2. */
size_t upt_nginx_requests_h2(const struct upt_nginx *n, int status);
/* Distinct connections in its access log. */
size_t upt_nginx_connections(const struct upt_nginx *n);
/* A file of size bytes of upt_byte(off, seed) in www/name, its mtime now + mtime_shift s
 * (replaced atomically: a rename). */
void upt_nginx_put(const struct upt_nginx *n, const char *name, size_t size, unsigned seed,
		   int mtime_shift);

#endif
