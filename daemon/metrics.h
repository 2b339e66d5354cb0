/* SPDX-License-Identifier: MIT */
/*
 * --metrics ADDR: upagerd's counters in the Prometheus text format, on a
 * loopback TCP address, for serve and handle alike (docs/HANDLE.md,
 * upagerd(8)). The counters are atomics the serving code bumps; a thread of
 * its own answers scrapers, one at a time, each bounded in bytes and time.
 */
#ifndef UPAGERD_METRICS_H
#define UPAGERD_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Upper bounds of the latency histogram's buckets, in microseconds. */
#define METRICS_BUCKETS 10
extern const uint64_t metrics_bucket_us[METRICS_BUCKETS];

struct metrics {
	uint64_t faults, pages, bytes, errors, clients_total;
	int64_t clients;
	uint64_t requests; /* serve: frames received */
	uint64_t lat_count, lat_sum_ns, lat_bucket[METRICS_BUCKETS + 1]; /* last: +Inf */
};
extern struct metrics metrics;

#define METRIC_ADD(field, n) __atomic_add_fetch(&metrics.field, (n), __ATOMIC_RELAXED)

/* One fault (handle) or request (serve) served in ns nanoseconds. */
void metrics_latency(uint64_t ns);

/*
 * Listens on addr (HOST:PORT, [V6]:PORT or PORT for 127.0.0.1:PORT;
 * loopback only unless allow_remote) and serves GET /metrics from a thread:
 * the counters above under the prefix upagerd_<mode>_, then what extra
 * writes (per-client lines, at most a few hundred). Call after signal_fd().
 * 0, or -1 said on stderr.
 */
int metrics_start(const char *addr, bool allow_remote, const char *mode, void (*extra)(FILE *f));

#endif
