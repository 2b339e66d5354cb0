/* SPDX-License-Identifier: MIT */
/* A real nginx on loopback for the URL tests and bench (tests/nginx.h). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "nginx.h"

static const char *nginx_path(void)
{
	static const char *const where[] = { "/usr/sbin/nginx", "/sbin/nginx", "/usr/local/sbin/nginx" };

	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++)
		if (access(where[i], X_OK) == 0)
			return where[i];
	return NULL;
}

static int listening(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static int write_conf(const struct upt_nginx *n)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/nginx.conf", n->dir);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f,
		"daemon off;\nmaster_process off;\nworker_processes 1;\n"
		"pid %1$s/nginx.pid;\nerror_log %1$s/error.log;\n"
		"events { worker_connections 512; }\n"
		"http {\n"
		"  log_format upt '$connection $connection_requests $status $request_method $uri "
		"auth=\\\"$http_authorization\\\" token=\\\"$http_x_amz_security_token\\\" "
		"proto=$server_protocol range=$http_range';\n"
		"  access_log %1$s/access.log upt;\n"
		"  client_body_temp_path %1$s/tmp; proxy_temp_path %1$s/tmp;\n"
		"  fastcgi_temp_path %1$s/tmp; uwsgi_temp_path %1$s/tmp; scgi_temp_path %1$s/tmp;\n"
		"  keepalive_requests 100000; keepalive_timeout 60s;\n"
		"  sendfile on; tcp_nodelay on; client_max_body_size 0;\n"
		"  server {\n"
		"    listen 127.0.0.1:%2$d;\n"
		"    root %1$s/www;\n"
		"    location /forbidden/ { return 403; }\n"
		"    location /up/ { dav_methods PUT; create_full_put_path on; }\n"
		"  }\n",
		n->dir, n->port);
	if (n->tls_port)
		fprintf(f,
			"  server {\n"
			"    listen 127.0.0.1:%2$d ssl http2;\n"
			"    ssl_certificate %1$s/cert.pem; ssl_certificate_key %1$s/key.pem;\n"
			"    root %1$s/www;\n"
			"  }\n",
			n->dir, n->tls_port);
	fprintf(f, "}\n");
	return fclose(f);
}

/* A self-signed certificate for 127.0.0.1 (an EC key: fast), if openssl is here. */
static void make_cert(struct upt_nginx *n)
{
	char cmd[512];

	if (access("/usr/bin/openssl", X_OK))
		return;
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
		 "-keyout %1$s/key.pem -out %1$s/cert.pem -days 2 -subj /CN=127.0.0.1 "
		 "-addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
		 n->dir);
	if (system(cmd) == 0)
		snprintf(n->cert, sizeof(n->cert), "%s/cert.pem", n->dir);
}

const char *upt_nginx_start(struct upt_nginx *n)
{
	const char *bin = nginx_path();
	char conf[128], tmp[128];

	memset(n, 0, sizeof(*n));
	n->pid = -1;
	if (!bin)
		return "nginx not installed (Debian: apt-get install nginx; ./bootstrap does as root)";
	snprintf(n->dir, sizeof(n->dir), "/tmp/upager-nginx-XXXXXX");
	if (!mkdtemp(n->dir))
		return "cannot make a directory for nginx";
	snprintf(n->www, sizeof(n->www), "%s/www", n->dir);
	snprintf(n->log, sizeof(n->log), "%s/access.log", n->dir);
	snprintf(tmp, sizeof(tmp), "%s/tmp", n->dir);
	snprintf(conf, sizeof(conf), "%s/nginx.conf", n->dir);
	mkdir(n->www, 0755);
	mkdir(tmp, 0700);
	make_cert(n);
	for (int attempt = 0; attempt < 5; attempt++) {
		n->port = upt_free_port();
		if (n->cert[0])
			n->tls_port = upt_free_port();
		if (n->port < 0 || n->tls_port < 0 || write_conf(n))
			break;
		fflush(NULL);
		n->pid = fork();
		if (n->pid == 0) {
			int null = open("/dev/null", O_RDWR);

			dup2(null, 1);
			dup2(null, 2);
			execl(bin, "nginx", "-p", n->dir, "-c", conf, "-e", "stderr", (char *)NULL);
			_exit(127);
		}
		if (n->pid < 0)
			break;
		for (int i = 0; i < 500; i++) { /* 5 s */
			struct timespec ts = { 0, 10 * 1000 * 1000 };
			int status;

			if (listening(n->port) && (!n->tls_port || listening(n->tls_port)))
				return NULL;
			if (waitpid(n->pid, &status, WNOHANG) == n->pid) {
				n->pid = -1; /* lost the port, most likely: again */
				break;
			}
			nanosleep(&ts, NULL);
		}
		if (n->pid > 0) {
			kill(n->pid, SIGKILL);
			waitpid(n->pid, NULL, 0);
			n->pid = -1;
		}
	}
	upt_nginx_stop(n);
	return "nginx did not start (see its error log)";
}

void upt_nginx_stop(struct upt_nginx *n)
{
	char cmd[128];

	if (n->pid > 0) {
		kill(n->pid, SIGKILL);
		waitpid(n->pid, NULL, 0);
	}
	n->pid = -1;
	if (n->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", n->dir);
		if (system(cmd) != 0) {
			/* best effort */
		}
	}
	n->dir[0] = 0;
}

static size_t count_requests(const struct upt_nginx *n, int status, bool h2)
{
	FILE *f = fopen(n->log, "r");
	unsigned long c, r;
	int st;
	size_t count = 0;
	char line[512];

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lu %lu %d", &c, &r, &st) == 3 && (!status || st == status) &&
		    (!h2 || strstr(line, "proto=HTTP/2.0")))
			count++;
	fclose(f);
	return count;
}

size_t upt_nginx_requests(const struct upt_nginx *n, int status)
{
	return count_requests(n, status, false);
}

size_t upt_nginx_requests_h2(const struct upt_nginx *n, int status)
{
	return count_requests(n, status, true);
}

size_t upt_nginx_connections(const struct upt_nginx *n)
{
	FILE *f = fopen(n->log, "r");
	unsigned long c, r;
	size_t count = 0;
	char line[512];

	if (!f)
		return 0;
	/* A connection's first request is its request number 1. */
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lu %lu", &c, &r) == 2 && r == 1)
			count++;
	fclose(f);
	return count;
}

void upt_nginx_put(const struct upt_nginx *n, const char *name, size_t size, unsigned seed,
		   int mtime_shift)
{
	char path[256], tmp[256];
	struct timespec ts[2];
	uint8_t *buf = malloc(size ? size : 1);
	int fd;

	snprintf(path, sizeof(path), "%s/%s", n->www, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", n->www, name);
	ck_assert_ptr_nonnull(buf);
	upt_fill(buf, size, 0, seed);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, buf, size), (ssize_t)size);
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec += mtime_shift;
	ts[1] = ts[0];
	ck_assert_int_eq(futimens(fd, ts), 0);
	close(fd);
	ck_assert_int_eq(rename(tmp, path), 0);
	free(buf);
}
