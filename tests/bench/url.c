/* SPDX-License-Identifier: MIT */
/*
 * make bench: pages from an object on a far HTTP server. A real nginx on
 * loopback behind tests/delay_proxy (each byte delayed delay_ms each way:
 * a round trip costs 2 * delay_ms more; this kernel has no netem), read
 * through upager's URL source with chunks of 1, 4 and 16 MiB, and with
 * 4 MiB chunks from a warm chunk cache on local disk; beside the kernel's
 * own MAP_SHARED mapping of the same file on local disk and upager's file
 * source on it, both cold (its pages dropped from the page cache), in the
 * same run: sequential read of every
 * page, and random page reads. Every run is a child process; runs
 * alternate between the systems and the median is reported, with the
 * bytes that crossed the proxy. Checksums must agree across systems.
 *
 * Environment: UPAGER_BENCH_URL_MIB (object, 256), UPAGER_BENCH_URL_DELAY_MS
 * (each way, 10: a 20 ms round trip), UPAGER_BENCH_URL_TOUCHES (random
 * reads, 2048), UPAGER_BENCH_URL_RUNS (3).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

struct result {
	int ok;
	double secs;
	uint64_t sum;
	char why[200];
};

enum { SYS_KERNEL, SYS_FILE, SYS_1M, SYS_4M, SYS_16M, SYS_4M_CACHED, NSYS };
static const char *const sys_names[NSYS] = { "kernel_local_cold", "upager_file_local_cold",
					     "upager_url_1m", "upager_url_4m", "upager_url_16m",
					     "upager_url_4m_cached" };
static const uint32_t sys_chunk[NSYS] = { 0, 0, 1u << 20, 4u << 20, 16u << 20, 4u << 20 };
enum { W_SEQ, W_RAND, NW };
static const char *const wl_names[NW] = { "url_seq_read", "url_rand_read" };

static size_t obj_len, touches;
static unsigned delay_ms;
static char file[256], url[128], cache_dir[64];

/* Reads the workload's pages of a (obj_len bytes): a checksum of what it read. */
static uint64_t touch(const volatile uint8_t *a, int wl)
{
	const size_t ps = 4096, npages = obj_len / ps;
	uint64_t sum = 0, rng = 0x9E3779B97F4A7C15ull;

	if (wl == W_SEQ) {
		for (size_t i = 0; i < npages; i++)
			sum += a[i * ps + (i % ps)];
		return sum;
	}
	for (size_t i = 0; i < touches; i++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		size_t page = (size_t)(rng % npages);

		sum += a[page * ps + (page % ps)] * (i + 1);
	}
	return sum;
}

static void run_kernel(int wl, struct result *res)
{
	int fd = open(file, O_RDONLY);
	void *a;
	double t0;

	if (fd < 0) {
		snprintf(res->why, sizeof(res->why), "open the object's file: %s", strerror(errno));
		return;
	}
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); /* cold: from the disk */
	t0 = bench_now_s();
	a = mmap(NULL, obj_len, PROT_READ, MAP_SHARED, fd, 0);
	if (a == MAP_FAILED) {
		snprintf(res->why, sizeof(res->why), "mmap: %s", strerror(errno));
		close(fd);
		return;
	}
	res->sum = touch(a, wl);
	res->secs = bench_now_s() - t0;
	res->ok = 1;
	munmap(a, obj_len);
	close(fd);
}

/* Through upager: the URL source (sys's chunks, maybe the cache), or the file source, cold. */
static void run_upager(int sys, int wl, struct result *res)
{
	upager_url_options_t o;
	upager_source_t *src;
	upager_region_t *r;
	upager_t *p = NULL;
	double t0;
	int ret;

	upager_url_options_init(&o);
	o.chunk_size = sys_chunk[sys];
	o.cache_dir = sys == SYS_4M_CACHED ? cache_dir : "";
	if ((ret = upager_create(&p, NULL)) < 0) {
		snprintf(res->why, sizeof(res->why), "upager_create: %s", upager_strerror(ret));
		return;
	}
	if (sys == SYS_FILE) {
		int fd = open(file, O_RDONLY);

		if (fd >= 0) {
			fdatasync(fd);
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); /* cold, as the kernel's */
		}
		t0 = bench_now_s();
		ret = fd < 0 ? -errno : upager_source_file(fd, 0, &src);
		if (fd >= 0)
			close(fd);
	} else {
		t0 = bench_now_s();
		ret = upager_source_url(url, &o, &src);
	}
	if (ret == 0) {
		ret = upager_map(p, obj_len, src, &r);
		upager_source_release(src);
	}
	if (ret < 0) {
		snprintf(res->why, sizeof(res->why), "opening %s: %s", url, upager_strerror(ret));
		upager_destroy(p);
		return;
	}
	res->sum = touch(upager_region_addr(r), wl);
	res->secs = bench_now_s() - t0;
	res->ok = 1;
	upager_destroy(p);
}

static struct result measure(int sys, int wl)
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
		if (sys == SYS_KERNEL)
			run_kernel(wl, &res);
		else
			run_upager(sys, wl, &res);
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

/* The object, as tests/nginx.c would put it (its helpers assert, for tests only). */
static int write_object(const char *path)
{
	const size_t slice = 1u << 20;
	uint8_t *buf = malloc(slice);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644), ret = 0;

	for (size_t off = 0; buf && fd >= 0 && !ret && off < obj_len; off += slice) {
		size_t n = obj_len - off < slice ? obj_len - off : slice;

		upt_fill(buf, n, off, 29);
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

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(void)
{
	struct upt_nginx ngx;
	struct upt_proxy px;
	unsigned runs;
	const char *why;
	char cmd[128];

	obj_len = (size_t)bench_env_u64("UPAGER_BENCH_URL_MIB", 256) << 20;
	delay_ms = (unsigned)bench_env_u64("UPAGER_BENCH_URL_DELAY_MS", 10);
	touches = (size_t)bench_env_u64("UPAGER_BENCH_URL_TOUCHES", 2048);
	runs = (unsigned)bench_env_u64("UPAGER_BENCH_URL_RUNS", 3);
	if (!obj_len || !runs || runs > 15) {
		fprintf(stderr, "url bench: UPAGER_BENCH_URL_MIB and _RUNS (1..15) must be set right\n");
		return 2;
	}
	why = upt_nginx_start(&ngx);
	if (why) {
		for (int wl = 0; wl < NW; wl++)
			printf("{\"bench\":\"%s\",\"skipped\":\"%s\"}\n", wl_names[wl], why);
		return 0;
	}
	snprintf(file, sizeof(file), "%s/obj.img", ngx.www);
	if (write_object(file) < 0) {
		upt_nginx_stop(&ngx);
		return 1;
	}
	if (upt_proxy_start(&px, ngx.port, delay_ms) < 0) {
		fprintf(stderr, "url bench: cannot start the delaying proxy\n");
		upt_nginx_stop(&ngx);
		return 1;
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/obj.img", px.port);
	snprintf(cache_dir, sizeof(cache_dir), "/tmp/upager-url-bench.XXXXXX");
	if (!mkdtemp(cache_dir)) {
		perror("mkdtemp");
		return 1;
	}
	printf("url bench: a %zu MiB object on nginx behind a proxy adding %u ms each way (a %u ms "
	       "round trip); %zu random page reads; median of %u runs\n",
	       obj_len >> 20, delay_ms, 2 * delay_ms, touches, runs);
	/* The cached rows read a cache one restore filled. */
	{
		struct result warm = measure(SYS_4M_CACHED, W_SEQ);

		if (!warm.ok)
			fprintf(stderr, "url bench: warming the cache: %s\n", warm.why);
	}

	double secs[NW][NSYS][15], mib[NW][NSYS][15];
	uint64_t sums[NW][NSYS];
	bool ok[NW][NSYS];
	char whys[NW][NSYS][200];

	memset(ok, 1, sizeof(ok));
	memset(whys, 0, sizeof(whys));
	for (int wl = 0; wl < NW; wl++)
		for (unsigned run = 0; run < runs; run++)
			for (int sys = 0; sys < NSYS; sys++) {
				uint64_t before = atomic_load(&px.bytes_down);
				struct result res = measure(sys, wl);

				mib[wl][sys][run] = (double)(atomic_load(&px.bytes_down) - before) / 1048576.0;
				secs[wl][sys][run] = res.secs;
				if (!res.ok) {
					ok[wl][sys] = false;
					snprintf(whys[wl][sys], sizeof(whys[wl][sys]), "%s", res.why);
				} else if (run == 0 && sys == SYS_KERNEL) {
					sums[wl][SYS_KERNEL] = res.sum;
				} else if (res.sum != sums[wl][SYS_KERNEL] && ok[wl][SYS_KERNEL]) {
					ok[wl][sys] = false;
					snprintf(whys[wl][sys], sizeof(whys[wl][sys]),
						 "checksum %" PRIx64 " differs from the kernel's %" PRIx64,
						 res.sum, sums[wl][SYS_KERNEL]);
				}
			}

	printf("\n%-14s %-22s %10s %10s %9s %9s %12s\n", "bench", "system", "ms", "pages/s",
	       "vs kernel", "vs file", "fetched MiB");
	for (int wl = 0; wl < NW; wl++) {
		double kernel_s = 0, file_s = 0;

		for (int sys = 0; sys < NSYS; sys++) {
			double s[15], f[15], med_s, med_f, pages, pps, ratio, vs_file;

			if (!ok[wl][sys]) {
				printf("%-14s %-22s failed: %s\n", wl_names[wl], sys_names[sys], whys[wl][sys]);
				printf("{\"bench\":\"%s\",\"system\":\"%s\",\"failed\":\"%s\"}\n", wl_names[wl],
				       sys_names[sys], whys[wl][sys]);
				continue;
			}
			memcpy(s, secs[wl][sys], runs * sizeof(double));
			memcpy(f, mib[wl][sys], runs * sizeof(double));
			qsort(s, runs, sizeof(double), by_value);
			qsort(f, runs, sizeof(double), by_value);
			med_s = s[runs / 2];
			med_f = f[runs / 2];
			if (sys == SYS_KERNEL)
				kernel_s = med_s;
			if (sys == SYS_FILE)
				file_s = med_s;
			pages = wl == W_SEQ ? (double)(obj_len / 4096) : (double)touches;
			pps = pages / med_s;
			ratio = kernel_s > 0 ? kernel_s / med_s : 0;
			vs_file = file_s > 0 ? file_s / med_s : 0;
			printf("%-14s %-22s %10.1f %10.0f %8.3fx %8.3fx %12.1f\n", wl_names[wl],
			       sys_names[sys], med_s * 1e3, pps, ratio, vs_file, med_f);
			printf("{\"bench\":\"%s\",\"system\":\"%s\",\"mode\":\"threads\",\"object_mib\":%zu,"
			       "\"rtt_ms\":%u,\"chunk_mib\":%u,\"ms\":%.1f,\"pages_per_s\":%.0f,"
			       "\"ratio_vs_kernel\":%.4f,\"ratio_vs_file_source\":%.4f,\"fetched_mib\":%.1f,"
			       "\"runs\":%u}\n",
			       wl_names[wl], sys_names[sys], obj_len >> 20, 2 * delay_ms,
			       sys_chunk[sys] >> 20, med_s * 1e3, pps, ratio, vs_file, med_f, runs);
		}
	}
	fflush(stdout);
	upt_proxy_stop(&px);
	upt_nginx_stop(&ngx);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cache_dir);
	return system(cmd) == 0 ? 0 : 1;
}
