/* SPDX-License-Identifier: MIT */
/*
 * The --metrics exporter. A scraper is hostile like any client: one is
 * served at a time, its request head may be at most 4 KiB and must come
 * within 2 s, the reply is sent within 2 s, then the connection is closed.
 * Only the first line is looked at ("GET /metrics" or "GET /").
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "listen.h"
#include "log.h"
#include "metrics.h"

#define HEAD_MAX 4096
#define IO_TIMEOUT_S 2

struct metrics metrics;
const uint64_t metrics_bucket_us[METRICS_BUCKETS] = { 10, 25, 50, 100, 250, 500, 1000, 5000,
						       50000, 500000 };

static struct {
	int fd;
	char mode[16];
	void (*extra)(FILE *f);
} exporter_state;

void metrics_latency(uint64_t ns)
{
	size_t b = 0;

	while (b < METRICS_BUCKETS && ns > metrics_bucket_us[b] * 1000)
		b++;
	METRIC_ADD(lat_bucket[b], 1);
	METRIC_ADD(lat_count, 1);
	METRIC_ADD(lat_sum_ns, ns);
}

#define LOAD(field) __atomic_load_n(&metrics.field, __ATOMIC_RELAXED)

static void counter(FILE *f, const char *name, const char *help, const char *type, long long v)
{
	fprintf(f, "# HELP upagerd_%s_%s %s\n# TYPE upagerd_%s_%s %s\nupagerd_%s_%s %lld\n",
		exporter_state.mode, name, help, exporter_state.mode, name, type, exporter_state.mode, name, v);
}

static void render(FILE *f)
{
	bool handle = !strcmp(exporter_state.mode, "handle");
	uint64_t cum = 0;

	if (handle) {
		counter(f, "faults_total", "Page faults read from clients' userfaultfds.", "counter",
			(long long)LOAD(faults));
		counter(f, "pages_total", "Pages placed (copied or zeroed) into clients.", "counter",
			(long long)LOAD(pages));
	} else {
		counter(f, "requests_total", "Requests (frames) received from clients.", "counter",
			(long long)LOAD(requests));
	}
	counter(f, "bytes_total", handle ? "Bytes placed into clients." : "Bytes sent to clients.",
		"counter", (long long)LOAD(bytes));
	counter(f, "errors_total", handle ? "Pages that could not be served (the access got SIGBUS)."
					  : "Requests that failed.", "counter",
		(long long)LOAD(errors));
	counter(f, "clients", "Clients connected now.", "gauge", (long long)LOAD(clients));
	counter(f, "clients_total", "Clients accepted.", "counter", (long long)LOAD(clients_total));
	if (!handle)
		goto extra;
	fprintf(f, "# HELP upagerd_handle_fault_seconds Time to serve a fault, from its read to "
		   "its page placed.\n# TYPE upagerd_handle_fault_seconds histogram\n");
	for (size_t b = 0; b <= METRICS_BUCKETS; b++) {
		cum += LOAD(lat_bucket[b]);
		if (b < METRICS_BUCKETS)
			fprintf(f, "upagerd_handle_fault_seconds_bucket{le=\"%g\"} %llu\n",
				(double)metrics_bucket_us[b] / 1e6, (unsigned long long)cum);
		else
			fprintf(f, "upagerd_handle_fault_seconds_bucket{le=\"+Inf\"} %llu\n",
				(unsigned long long)cum);
	}
	fprintf(f, "upagerd_handle_fault_seconds_sum %.9f\nupagerd_handle_fault_seconds_count %llu\n",
		(double)LOAD(lat_sum_ns) / 1e9, (unsigned long long)LOAD(lat_count));
extra:
	if (exporter_state.extra)
		exporter_state.extra(f);
}

static void serve_one(int c)
{
	struct timeval tv = { IO_TIMEOUT_S, 0 };
	char head[HEAD_MAX + 1], *body = NULL, hdr[160];
	size_t len = 0, blen = 0;
	bool ok;
	FILE *f;

	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	/* Up to the end of the first line is all that is needed. */
	while (len < HEAD_MAX && !memchr(head, '\n', len)) {
		ssize_t n = recv(c, head + len, HEAD_MAX - len, 0);

		if (n <= 0)
			return;
		len += (size_t)n;
	}
	head[len] = '\0';
	ok = !strncmp(head, "GET /metrics ", 13) || !strncmp(head, "GET /metrics\r", 13) ||
	     !strncmp(head, "GET / ", 6);
	f = open_memstream(&body, &blen);
	if (!f)
		return;
	if (ok)
		render(f);
	else
		fputs("only GET /metrics here\n", f);
	fclose(f);
	snprintf(hdr, sizeof(hdr), "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n\r\n", ok ? "200 OK" : "404 Not Found",
		 blen);
	if (send(c, hdr, strlen(hdr), MSG_NOSIGNAL) > 0)
		for (size_t off = 0; off < blen;) {
			ssize_t n = send(c, body + off, blen - off, MSG_NOSIGNAL);

			if (n <= 0)
				break;
			off += (size_t)n;
		}
	free(body);
}

static void *exporter(void *arg)
{
	(void)arg;
	for (;;) {
		int c = accept4(exporter_state.fd, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
				continue;
			LOG(LOG_ERR, "metrics: accept: %s: no more scrapes served", strerror(errno));
			return NULL;
		}
		serve_one(c);
		close(c);
	}
}

int metrics_start(const char *addr, bool allow_remote, const char *mode, void (*extra)(FILE *f))
{
	char spec[300], name[300];
	pthread_attr_t attr;
	pthread_t tid;
	int ret;

	/* A bare port means loopback. */
	snprintf(spec, sizeof(spec), "%s%s", strchr(addr, ':') ? "" : "127.0.0.1:", addr);
	if (listen_tcp(spec, allow_remote, &exporter_state.fd, name, sizeof(name)) < 0)
		return -1;
	snprintf(exporter_state.mode, sizeof(exporter_state.mode), "%s", mode);
	exporter_state.extra = extra;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 << 10);
	ret = pthread_create(&tid, &attr, exporter, NULL);
	pthread_attr_destroy(&attr);
	if (ret) {
		fprintf(stderr, "upagerd: metrics: cannot start its thread: %s\n", strerror(ret));
		close(exporter_state.fd);
		return -1;
	}
	LOG(LOG_INFO, "metrics on %s (GET /metrics, Prometheus text format)", name);
	return 0;
}
