/* SPDX-License-Identifier: MIT */
/*
 * make bench: pages from an object on an HTTP server, near and far. A real
 * nginx on loopback behind tests/delay_proxy twice: no delay, and delay_ms
 * each way (a round trip costs 2 * delay_ms more; this kernel has no
 * netem). Three parts, every run a child process, runs alternating between
 * the systems of a group, medians reported with the bytes that crossed the
 * proxies; checksums must agree across systems.
 *
 *  1. Sequential read of every page and random page reads, by 1 and by
 *     `many` threads: the kernel's own MAP_SHARED mapping of the same file
 *     on local disk and upager's file source on it, both cold (pages
 *     dropped from the page cache); upager's URL source (4 MiB chunks) at
 *     0 ms and at the far round trip; with one thread also 1 and 16 MiB
 *     chunks and a warm chunk cache, far.
 *  2. A snapshot of the object restored with its recorded working set
 *     prefetched (hot_mib of pages at random, read 4 times): from the
 *     local file (cold), from its URL with an empty chunk cache at 0 ms and
 *     far, and far again from the chunk cache the cold run filled: time to
 *     the first answer, query phase, bytes fetched.
 *  3. procs processes restoring the snapshot from its URL at once (far),
 *     each reading every page, through one chunk cache: bytes fetched and
 *     range requests, against the chunks there are.
 *
 * Environment: UPAGER_BENCH_URL_MIB (object, 256), UPAGER_BENCH_URL_DELAY_MS
 * (each way, 10: a 20 ms round trip), UPAGER_BENCH_URL_TOUCHES (random
 * reads, 256), UPAGER_BENCH_URL_RUNS (3), UPAGER_BENCH_URL_THREADS (many,
 * 8), UPAGER_BENCH_URL_HOT_MIB (working set, 32), UPAGER_BENCH_URL_PROCS (4).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "delay_proxy.h"
#include "helpers.h"
#include "nginx.h"
#include "upager.h"
#include "common.h"

#define SEED 29
#define PS 4096
#define MAX_RUNS 15
#define CHUNK_4M (4u << 20)

struct result {
	int ok;
	double secs, first; /* first: a restore's first answer (in secs too) */
	uint64_t sum, read_bytes;
	char why[200];
};

enum { SYS_KERNEL, SYS_FILE, SYS_URL, SYS_URL_CACHED, SYS_SNAP_LOCAL, SYS_SNAP_URL,
       SYS_SNAP_URL_WARM };
enum { W_SEQ, W_RAND, W_RESTORE };
enum { NEAR, FAR };

/* One row: a system on a workload, by threads, over a proxy (near or far). */
struct row {
	const char *bench, *system;
	int sys, wl, far;
	unsigned threads;
	uint32_t chunk;
	double secs[MAX_RUNS], first[MAX_RUNS], mib[MAX_RUNS];
	uint64_t sum;
	bool ok, have_sum;
	char why[200];
};

static size_t obj_len, touches, hot_pages;
static unsigned delay_ms, many, procs;
static char file[256], snap[256], url[2][160], snap_url[2][160];
static struct upt_proxy px[2];
static struct upt_nginx ngx;
/* The run's chunk cache: the warm rows read one that a run filled. */
static char cache_dir[64];

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ---- the workloads: each thread its share, one checksum ---- */

struct part {
	const volatile uint8_t *a;
	int wl;
	unsigned t, n;
	uint64_t sum;
};

static void *touch_part(void *arg)
{
	struct part *pt = arg;
	size_t npages = obj_len / PS;

	pt->sum = 0;
	if (pt->wl == W_SEQ) { /* thread t: its n-th of the pages, in order */
		size_t from = npages * pt->t / pt->n, to = npages * (pt->t + 1) / pt->n;

		for (size_t i = from; i < to; i++)
			pt->sum += pt->a[i * PS + (i % PS)];
		return NULL;
	}
	uint64_t rng = 0x9E3779B97F4A7C15ull + pt->t;
	size_t share = touches / pt->n;

	for (size_t i = 0; i < share; i++) {
		size_t page = (size_t)(xorshift(&rng) % npages);

		pt->sum += pt->a[page * PS + (page % PS)] * (i + 1);
	}
	return NULL;
}

static uint64_t touch(const volatile uint8_t *a, int wl, unsigned nthreads)
{
	struct part pt[64];
	pthread_t th[64];
	uint64_t sum = 0;

	for (unsigned t = 0; t < nthreads; t++) {
		pt[t] = (struct part){ .a = a, .wl = wl, .t = t, .n = nthreads };
		if (nthreads > 1 && pthread_create(&th[t], NULL, touch_part, &pt[t]) != 0)
			touch_part(&pt[t]);
	}
	if (nthreads == 1)
		touch_part(&pt[0]);
	for (unsigned t = 0; t < nthreads; t++) {
		if (nthreads > 1)
			pthread_join(th[t], NULL);
		sum += pt[t].sum;
	}
	return sum;
}

/* The working set: hot_pages pages at random (some twice), in query order. */
static size_t hot_page(size_t i)
{
	uint64_t s = 0x5EED0000ull + i * 0x9E3779B97F4A7C15ull;

	return (size_t)(xorshift(&s) % (obj_len / PS));
}

/* Reads the working set 4 times, checking every byte read; *first: when
 * the first answer came (bench_now_s). 0 if every byte was right. */
static int query(const volatile uint8_t *a, double *first, uint64_t *sum)
{
	*sum = 0;
	for (int pass = 0; pass < 4; pass++)
		for (size_t i = 0; i < hot_pages; i++) {
			size_t off = hot_page(i) * PS + (i % PS);
			uint8_t v = a[off];

			if (v != upt_byte(off, SEED))
				return -1;
			if (!pass && !i)
				*first = bench_now_s();
			*sum += v;
		}
	return 0;
}

static void drop_cache(const char *path)
{
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return;
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); /* cold: from the disk */
	close(fd);
}

/* ---- one run, in a child ---- */

static void run_kernel(const struct row *rw, struct result *res)
{
	int fd = open(file, O_RDONLY);
	void *a;
	double t0;

	if (fd < 0) {
		snprintf(res->why, sizeof(res->why), "open the object's file: %s", strerror(errno));
		return;
	}
	close(fd);
	drop_cache(file);
	fd = open(file, O_RDONLY);
	t0 = bench_now_s();
	a = mmap(NULL, obj_len, PROT_READ, MAP_SHARED, fd, 0);
	if (a == MAP_FAILED) {
		snprintf(res->why, sizeof(res->why), "mmap: %s", strerror(errno));
		close(fd);
		return;
	}
	res->sum = touch(a, rw->wl, rw->threads);
	res->secs = bench_now_s() - t0;
	res->ok = 1;
	munmap(a, obj_len);
	close(fd);
}

static void url_options(upager_url_options_t *o, const struct row *rw)
{
	upager_url_options_init(o);
	o->chunk_size = rw->chunk ? rw->chunk : CHUNK_4M;
	o->cache_dir = rw->sys == SYS_URL_CACHED || rw->sys == SYS_SNAP_URL ||
				       rw->sys == SYS_SNAP_URL_WARM
			       ? cache_dir
			       : ""; /* "": none, whatever the environment says */
}

/* A run's pager and URL options: NULL, saying why in res, if none. */
static upager_t *run_pager(const struct row *rw, upager_url_options_t *o, struct result *res)
{
	upager_t *p = NULL;
	int ret;

	url_options(o, rw);
	if ((ret = upager_create(&p, NULL)) < 0) {
		snprintf(res->why, sizeof(res->why), "upager_create: %s", upager_strerror(ret));
		return NULL;
	}
	return p;
}

/* Through upager: the file source, cold, or the URL source. */
static void run_upager(const struct row *rw, struct result *res)
{
	upager_url_options_t o;
	upager_source_t *src;
	upager_region_t *r;
	upager_t *p = run_pager(rw, &o, res);
	double t0;
	int ret;

	if (!p)
		return;
	if (rw->sys == SYS_FILE) {
		drop_cache(file);
		t0 = bench_now_s();
		int fd = open(file, O_RDONLY);

		ret = fd < 0 ? -errno : upager_source_file(fd, 0, &src);
		if (fd >= 0)
			close(fd);
	} else {
		t0 = bench_now_s();
		ret = upager_source_url(url[rw->far], &o, &src);
	}
	if (ret == 0) {
		ret = upager_map(p, obj_len, src, &r);
		upager_source_release(src);
	}
	if (ret < 0) {
		snprintf(res->why, sizeof(res->why), "opening the object: %s", upager_strerror(ret));
		upager_destroy(p);
		return;
	}
	res->sum = touch(upager_region_addr(r), rw->wl, rw->threads);
	res->secs = bench_now_s() - t0;
	res->ok = 1;
	upager_destroy(p);
}

/* A restore with the working set prefetched: local, or from the URL. */
static void run_restore(const struct row *rw, struct result *res)
{
	upager_url_options_t o;
	upager_region_t *r;
	upager_stats_t st;
	upager_t *p = run_pager(rw, &o, res);
	double t0;
	int ret;

	if (!p)
		return;
	if (rw->sys == SYS_SNAP_LOCAL) {
		char ws[300];

		snprintf(ws, sizeof(ws), "%s.ws", snap);
		drop_cache(snap);
		drop_cache(ws);
		t0 = bench_now_s();
		ret = upager_snapshot_map(p, snap, UPAGER_SNAP_PREFETCH, &r);
	} else {
		t0 = bench_now_s();
		ret = upager_snapshot_map_url(p, snap_url[rw->far], &o, UPAGER_SNAP_PREFETCH, &r);
	}
	if (ret < 0) {
		snprintf(res->why, sizeof(res->why), "restoring: %s", upager_strerror(ret));
		upager_destroy(p);
		return;
	}
	if (query(upager_region_addr(r), &res->first, &res->sum) < 0) {
		snprintf(res->why, sizeof(res->why), "a wrong byte in the restored memory");
		upager_destroy(p);
		return;
	}
	res->secs = bench_now_s() - t0;
	res->first -= t0;
	if (upager_region_stats(r, &st) == 0)
		res->read_bytes = st.bytes_filled;
	res->ok = 1;
	upager_destroy(p);
}

static struct result measure(const struct row *rw)
{
	struct result res = { 0 };
	int pfd[2], status;
	pid_t pid;

	if (pipe(pfd) < 0) {
		snprintf(res.why, sizeof(res.why), "pipe: %s", strerror(errno));
		return res;
	}
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		if (rw->sys == SYS_KERNEL)
			run_kernel(rw, &res);
		else if (rw->wl == W_RESTORE)
			run_restore(rw, &res);
		else
			run_upager(rw, &res);
		if (write(pfd[1], &res, sizeof(res)) != (ssize_t)sizeof(res))
			_exit(1);
		_exit(0);
	}
	close(pfd[1]);
	if (pid < 0 || read(pfd[0], &res, sizeof(res)) != (ssize_t)sizeof(res)) {
		memset(&res, 0, sizeof(res));
		snprintf(res.why, sizeof(res.why), "the run's process died");
	}
	close(pfd[0]);
	if (pid > 0)
		waitpid(pid, &status, 0);
	return res;
}

/* ---- setup: the object, its snapshot and working set ---- */

/* The object, as tests/nginx.c would put it (its helpers assert, for tests only). */
static int write_object(const char *path)
{
	const size_t slice = 1u << 20;
	uint8_t *buf = malloc(slice);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644), ret = 0;

	for (size_t off = 0; buf && fd >= 0 && !ret && off < obj_len; off += slice) {
		size_t n = obj_len - off < slice ? obj_len - off : slice;

		upt_fill(buf, n, off, SEED);
		if (write(fd, buf, n) != (ssize_t)n)
			ret = -1;
	}
	if (!buf || fd < 0 || ret || fsync(fd) < 0) {
		fprintf(stderr, "url bench: writing %s: %s\n", path, strerror(errno));
		ret = -1;
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return ret;
}

/* The object's bytes saved as a snapshot, and its working set recorded by
 * a restore that reads it (in a child: its pager's threads go with it). */
static int write_snapshot(void)
{
	/* In anonymous memory, every page there: a save stores populated pages only. */
	uint8_t *a = mmap(NULL, obj_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ret = -1, status;
	pid_t pid;

	if (a != MAP_FAILED) {
		for (size_t off = 0; off < obj_len; off += PS)
			upt_fill(a + off, PS, off, SEED);
		ret = upager_snapshot_save(a, obj_len, snap);
		munmap(a, obj_len);
	}
	if (ret < 0) {
		fprintf(stderr, "url bench: saving the snapshot: %s\n",
			a == MAP_FAILED ? strerror(errno) : upager_strerror(ret));
		return -1;
	}
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		upager_region_t *r;
		upager_t *p;
		uint64_t sum;
		double first;

		if (upager_create(&p, NULL) < 0 ||
		    upager_snapshot_map(p, snap, UPAGER_SNAP_RECORD, &r) < 0 ||
		    query(upager_region_addr(r), &first, &sum) < 0 || upager_release(r) < 0)
			_exit(1);
		upager_destroy(p);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status)) {
		fprintf(stderr, "url bench: recording the working set failed\n");
		return -1;
	}
	return 0;
}

static int rm_rf(const char *dir)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int new_cache(void)
{
	snprintf(cache_dir, sizeof(cache_dir), "/tmp/upager-url-bench.XXXXXX");
	if (!mkdtemp(cache_dir)) {
		perror("url bench: mkdtemp");
		return -1;
	}
	return 0;
}

/* ---- running and reporting ---- */

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(const double *v, unsigned n)
{
	double s[MAX_RUNS];

	memcpy(s, v, n * sizeof(double));
	qsort(s, n, sizeof(double), by_value);
	return s[n / 2];
}

/* Runs every row of a group once (run: which), in order, for the run. */
static void run_group(struct row *rows, size_t n, unsigned run)
{
	for (size_t i = 0; i < n; i++) {
		struct row *rw = &rows[i];
		uint64_t before = atomic_load(&px[NEAR].bytes_down) + atomic_load(&px[FAR].bytes_down);
		struct result res;

		/* A cold restore from the URL fills a cache of its own, which
		 * the warm row after it reads; the cached object row reads the
		 * one the run's first cached read filled. */
		if (rw->sys == SYS_SNAP_URL && (rm_rf(cache_dir) < 0 || new_cache() < 0)) {
			rw->ok = false;
			snprintf(rw->why, sizeof(rw->why), "no cache directory");
			continue;
		}
		res = measure(rw);
		rw->mib[run] = (double)(atomic_load(&px[NEAR].bytes_down) +
					atomic_load(&px[FAR].bytes_down) - before) /
			       1048576.0;
		if (rw->sys == SYS_SNAP_LOCAL)
			rw->mib[run] = (double)res.read_bytes / 1048576.0;
		rw->secs[run] = res.secs;
		rw->first[run] = res.first;
		if (!res.ok) {
			rw->ok = false;
			snprintf(rw->why, sizeof(rw->why), "%s", res.why);
		} else if (!rw->have_sum) {
			rw->sum = res.sum;
			rw->have_sum = true;
		} else if (rw->sum != res.sum) {
			rw->ok = false;
			snprintf(rw->why, sizeof(rw->why), "checksum %" PRIx64 " differs from run 0's",
				 res.sum);
		}
	}
}

static void report_reads(struct row *rows, size_t n, unsigned runs)
{
	double kernel_s = 0, file_s = 0;
	uint64_t kernel_sum = 0;

	for (size_t i = 0; i < n; i++) {
		struct row *rw = &rows[i];
		double med_s, pages, pps;

		if (rw->ok && rw->sys == SYS_KERNEL)
			kernel_sum = rw->sum;
		else if (rw->ok && kernel_sum && rw->sum != kernel_sum) {
			rw->ok = false;
			snprintf(rw->why, sizeof(rw->why), "checksum %" PRIx64 " differs from the kernel's",
				 rw->sum);
		}
		if (!rw->ok) {
			printf("%-14s %-22s %2u %3u failed: %s\n", rw->bench, rw->system, rw->threads,
			       rw->far ? 2 * delay_ms : 0, rw->why);
			printf("{\"bench\":\"%s\",\"system\":\"%s\",\"threads\":%u,\"failed\":\"%s\"}\n",
			       rw->bench, rw->system, rw->threads, rw->why);
			continue;
		}
		med_s = median(rw->secs, runs);
		if (rw->sys == SYS_KERNEL)
			kernel_s = med_s;
		if (rw->sys == SYS_FILE)
			file_s = med_s;
		pages = rw->wl == W_SEQ ? (double)(obj_len / PS) : (double)(touches / rw->threads * rw->threads);
		pps = pages / med_s;
		printf("%-14s %-22s %2u %3u %9.1f %10.0f %8.3fx %8.3fx %10.1f\n", rw->bench, rw->system,
		       rw->threads, rw->far ? 2 * delay_ms : 0, med_s * 1e3, pps,
		       kernel_s > 0 ? kernel_s / med_s : 0, file_s > 0 ? file_s / med_s : 0,
		       median(rw->mib, runs));
		printf("{\"bench\":\"%s\",\"system\":\"%s\",\"mode\":\"threads\",\"threads\":%u,"
		       "\"object_mib\":%zu,\"rtt_ms\":%u,\"chunk_mib\":%u,\"ms\":%.1f,"
		       "\"pages_per_s\":%.0f,\"ratio_vs_kernel\":%.4f,\"ratio_vs_file_source\":%.4f,"
		       "\"fetched_mib\":%.1f,\"runs\":%u}\n",
		       rw->bench, rw->system, rw->threads, obj_len >> 20, rw->far ? 2 * delay_ms : 0,
		       (rw->sys == SYS_URL || rw->sys == SYS_URL_CACHED) ? rw->chunk >> 20 : 0,
		       med_s * 1e3, pps, kernel_s > 0 ? kernel_s / med_s : 0,
		       file_s > 0 ? file_s / med_s : 0, median(rw->mib, runs), runs);
	}
}

static void report_restores(struct row *rows, size_t n, unsigned runs)
{
	double local_s = 0, local_q = 0;

	for (size_t i = 0; i < n; i++) {
		struct row *rw = &rows[i];
		double med_s, med_first, med_q, q[MAX_RUNS];

		if (!rw->ok) {
			printf("%-14s %-22s failed: %s\n", rw->bench, rw->system, rw->why);
			printf("{\"bench\":\"%s\",\"system\":\"%s\",\"failed\":\"%s\"}\n", rw->bench,
			       rw->system, rw->why);
			continue;
		}
		for (unsigned r = 0; r < runs; r++)
			q[r] = rw->secs[r] - rw->first[r];
		med_s = median(rw->secs, runs);
		med_first = median(rw->first, runs);
		med_q = median(q, runs);
		if (rw->sys == SYS_SNAP_LOCAL) {
			local_s = med_s;
			local_q = med_q;
		}
		printf("%-14s %-22s %3u %9.1f %9.1f %9.1f %8.3fx %10.1f\n", rw->bench, rw->system,
		       rw->far ? 2 * delay_ms : 0, med_first * 1e3, med_q * 1e3, med_s * 1e3,
		       local_s > 0 ? med_s / local_s : 0, median(rw->mib, runs));
		printf("{\"bench\":\"%s\",\"system\":\"%s\",\"mode\":\"threads\",\"snapshot_mib\":%zu,"
		       "\"working_set_pages\":%zu,\"rtt_ms\":%u,\"first_answer_ms\":%.1f,"
		       "\"query_ms\":%.1f,\"total_ms\":%.1f,\"time_vs_local\":%.4f,"
		       "\"query_vs_local\":%.4f,\"fetched_mib\":%.1f,\"runs\":%u}\n",
		       rw->bench, rw->system, obj_len >> 20, hot_pages, rw->far ? 2 * delay_ms : 0,
		       med_first * 1e3, med_q * 1e3, med_s * 1e3, local_s > 0 ? med_s / local_s : 0,
		       local_q > 0 ? med_q / local_q : 0, median(rw->mib, runs), runs);
	}
}

/*
 * procs processes restore the snapshot from its URL (far) at once through
 * one empty chunk cache, each reading every page: what crossed the proxy,
 * and the range requests nginx saw, against the chunks there are.
 */
static void shared_cache(void)
{
	size_t before_reqs = upt_nginx_requests(&ngx, 206), reqs;
	uint64_t before = atomic_load(&px[FAR].bytes_down), bytes;
	struct stat st;
	pid_t pids[64];
	unsigned bad = 0;
	double t0 = bench_now_s(), secs, chunks;

	if (stat(snap, &st) < 0 || rm_rf(cache_dir) < 0 || new_cache() < 0)
		return;
	chunks = (double)((st.st_size + CHUNK_4M - 1) / CHUNK_4M);
	fflush(NULL);
	for (unsigned i = 0; i < procs; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			upager_url_options_t o;
			upager_region_t *r;
			upager_t *p;
			const volatile uint8_t *a;

			upager_url_options_init(&o);
			o.cache_dir = cache_dir;
			if (upager_create(&p, NULL) < 0 ||
			    upager_snapshot_map_url(p, snap_url[FAR], &o, 0, &r) < 0)
				_exit(1);
			a = upager_region_addr(r);
			for (size_t off = 0; off < obj_len; off += PS)
				if (a[off + 7] != upt_byte(off + 7, SEED))
					_exit(2);
			upager_destroy(p);
			_exit(0);
		}
	}
	for (unsigned i = 0; i < procs; i++) {
		int status;

		if (pids[i] < 0 || waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			bad++;
	}
	secs = bench_now_s() - t0;
	bytes = atomic_load(&px[FAR].bytes_down) - before;
	/* Less each open's own: the header, and the page map (16 bytes a
	 * page) in pieces of 16 MiB (lib/snapshot_url.c). */
	reqs = upt_nginx_requests(&ngx, 206) - before_reqs -
	       procs * (1 + (obj_len / PS * 16 + (16u << 20) - 1) / (16u << 20));
	if (bad) {
		printf("url_shared_cache: %u of %u processes failed\n", bad, procs);
		printf("{\"bench\":\"url_shared_cache\",\"failed\":\"%u of %u processes\"}\n", bad,
		       procs);
		return;
	}
	printf("url_shared_cache: %u processes, each reading all %zu MiB of the snapshot, far: "
	       "%.1f MiB fetched (%.2f times the snapshot), %zu range requests for its %.0f chunks "
	       "(%.2f a chunk; the opens' not counted), %.1f ms\n",
	       procs, obj_len >> 20, (double)bytes / 1048576.0, (double)bytes / (double)st.st_size,
	       reqs, chunks, (double)reqs / chunks, secs * 1e3);
	printf("{\"bench\":\"url_shared_cache\",\"system\":\"upager_url_4m_cache\",\"processes\":%u,"
	       "\"snapshot_mib\":%zu,\"rtt_ms\":%u,\"fetched_mib\":%.1f,\"fetched_vs_snapshot\":%.4f,"
	       "\"range_requests\":%zu,\"chunks\":%.0f,\"requests_per_chunk\":%.4f,\"ms\":%.1f}\n",
	       procs, obj_len >> 20, 2 * delay_ms, (double)bytes / 1048576.0,
	       (double)bytes / (double)st.st_size, reqs, chunks, (double)reqs / chunks, secs * 1e3);
}

#define ROW(b, name, s, w, f, t, c) \
	(struct row){ .bench = b, .system = name, .sys = s, .wl = w, .far = f, .threads = t, \
		      .chunk = c, .ok = true }

int main(void)
{
	static struct row rows[4][8], restores[4];
	size_t nrows[4] = { 0 };
	const char *why;
	unsigned runs;
	int ret = 0;

	obj_len = (size_t)bench_env_u64("UPAGER_BENCH_URL_MIB", 256) << 20;
	delay_ms = (unsigned)bench_env_u64("UPAGER_BENCH_URL_DELAY_MS", 10);
	touches = (size_t)bench_env_u64("UPAGER_BENCH_URL_TOUCHES", 256);
	runs = (unsigned)bench_env_u64("UPAGER_BENCH_URL_RUNS", 3);
	many = (unsigned)bench_env_u64("UPAGER_BENCH_URL_THREADS", 8);
	hot_pages = (size_t)bench_env_u64("UPAGER_BENCH_URL_HOT_MIB", 32) << 20 >> 12;
	procs = (unsigned)bench_env_u64("UPAGER_BENCH_URL_PROCS", 4);
	if (!obj_len || !runs || runs > MAX_RUNS || !many || many > 64 || !procs || procs > 64 ||
	    !hot_pages || touches < many) {
		fprintf(stderr, "url bench: UPAGER_BENCH_URL_MIB, _RUNS (1..15), _THREADS (1..64), "
				"_PROCS (1..64), _HOT_MIB and _TOUCHES (>= _THREADS) must be set right\n");
		return 2;
	}
	why = upt_nginx_start(&ngx);
	if (why) {
		static const char *const benches[] = { "url_seq_read", "url_rand_read",
						       "url_snapshot_restore", "url_shared_cache" };

		for (size_t i = 0; i < 4; i++)
			printf("{\"bench\":\"%s\",\"skipped\":\"%s\"}\n", benches[i], why);
		return 0;
	}
	snprintf(file, sizeof(file), "%s/obj.img", ngx.www);
	snprintf(snap, sizeof(snap), "%s/obj.snap", ngx.www);
	if (write_object(file) < 0 || write_snapshot() < 0) {
		upt_nginx_stop(&ngx);
		return 1;
	}
	for (int f = NEAR; f <= FAR; f++) {
		if (upt_proxy_start(&px[f], ngx.port, f == FAR ? delay_ms : 0) < 0) {
			fprintf(stderr, "url bench: cannot start the delaying proxy\n");
			upt_nginx_stop(&ngx);
			return 1;
		}
		snprintf(url[f], sizeof(url[f]), "http://127.0.0.1:%d/obj.img", px[f].port);
		snprintf(snap_url[f], sizeof(snap_url[f]), "http://127.0.0.1:%d/obj.snap", px[f].port);
	}
	if (new_cache() < 0)
		return 1;
	printf("url bench: a %zu MiB object on nginx behind a proxy adding 0 or %u ms each way "
	       "(a %u ms round trip: far); %zu random page reads; %zu MiB working set; "
	       "median of %u runs\n",
	       obj_len >> 20, delay_ms, 2 * delay_ms, touches, hot_pages >> 8, runs);

	/* Groups: (workload, threads); each alternates its systems run by run. */
	for (int g = 0; g < 4; g++) {
		int wl = g / 2 ? W_RAND : W_SEQ;
		unsigned t = g % 2 ? many : 1;
		const char *b = wl == W_SEQ ? "url_seq_read" : "url_rand_read";
		struct row *r = rows[g];
		size_t n = 0;

		r[n++] = ROW(b, "kernel_local_cold", SYS_KERNEL, wl, NEAR, t, 0);
		r[n++] = ROW(b, "upager_file_local_cold", SYS_FILE, wl, NEAR, t, 0);
		r[n++] = ROW(b, "upager_url_4m", SYS_URL, wl, NEAR, t, CHUNK_4M);
		r[n++] = ROW(b, "upager_url_4m", SYS_URL, wl, FAR, t, CHUNK_4M);
		if (t == 1) {
			r[n++] = ROW(b, "upager_url_1m", SYS_URL, wl, FAR, t, 1u << 20);
			r[n++] = ROW(b, "upager_url_16m", SYS_URL, wl, FAR, t, 16u << 20);
			r[n++] = ROW(b, "upager_url_4m_cached", SYS_URL_CACHED, wl, FAR, t, CHUNK_4M);
		}
		nrows[g] = n;
	}
	restores[0] = ROW("url_snapshot_restore", "snap_local_cold", SYS_SNAP_LOCAL, W_RESTORE, NEAR, 1, 0);
	restores[1] = ROW("url_snapshot_restore", "snap_url_cold", SYS_SNAP_URL, W_RESTORE, NEAR, 1, 0);
	restores[2] = ROW("url_snapshot_restore", "snap_url_cold", SYS_SNAP_URL, W_RESTORE, FAR, 1, 0);
	restores[3] = ROW("url_snapshot_restore", "snap_url_warm_cache", SYS_SNAP_URL_WARM, W_RESTORE,
			  FAR, 1, 0);

	/* The cached rows read a cache that one read of the object filled. */
	{
		struct row warm = ROW("", "", SYS_URL_CACHED, W_SEQ, FAR, 1, CHUNK_4M);
		struct result res = measure(&warm);

		if (!res.ok)
			fprintf(stderr, "url bench: warming the cache: %s\n", res.why);
	}
	for (int g = 0; g < 4; g++)
		for (unsigned run = 0; run < runs; run++)
			run_group(rows[g], nrows[g], run);
	printf("\n%-14s %-22s %2s %3s %9s %10s %9s %9s %10s\n", "bench", "system", "th", "rtt", "ms",
	       "pages/s", "vs kernel", "vs file", "fetch MiB");
	for (int g = 0; g < 4; g++)
		report_reads(rows[g], nrows[g], runs);

	/* The object's cache made way for the restores' own. */
	for (unsigned run = 0; run < runs; run++)
		run_group(restores, 4, run);
	printf("\n%-14s %-22s %3s %9s %9s %9s %9s %10s\n", "bench", "system", "rtt", "first ms",
	       "query ms", "total ms", "vs local", "fetch MiB");
	report_restores(restores, 4, runs);
	printf("\n");
	shared_cache();
	fflush(stdout);
	for (int f = NEAR; f <= FAR; f++)
		upt_proxy_stop(&px[f]);
	upt_nginx_stop(&ngx);
	if (rm_rf(cache_dir) < 0)
		ret = 1;
	return ret;
}
