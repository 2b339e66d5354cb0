/* SPDX-License-Identifier: MIT */
/*
 * make bench: a file larger than a memory budget, through upager with the
 * budget (CLOCK and FIFO) and through the kernel's own MAP_SHARED mapping
 * inside a memory cgroup limited to the same budget, in the same run:
 * sequential read, random read, random read-write (a write each touch,
 * synced at the end). Each run is a child process started with the file's
 * pages dropped from the page cache. Prints a table and {"bench":...} lines:
 * pages/s, peak RSS (the child's; for the kernel also the cgroup's peak,
 * which counts its page cache), bytes written, ratios to the kernel.
 *
 * Usage: budget [FILE]; environment: UPAGER_BENCH_BUDGET_FILE_MIB (4096),
 * UPAGER_BENCH_BUDGET_MIB (512), UPAGER_BENCH_BUDGET_TOUCHES (random
 * touches, 65536).
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
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "upager.h"
#include "common.h"

struct result {
	int ok;
	double secs;
	uint64_t pages, peak_rss_kib, cg_peak_kib, bytes_written, evicted;
	uint64_t sum; /* so the reads are not optimised away */
	char why[320];
};

enum { SYS_KERNEL, SYS_CLOCK, SYS_FIFO, NSYS };
static const char *const sys_names[NSYS] = { "kernel", "upager_clock", "upager_fifo" };
enum { W_SEQ, W_RAND, W_RW, NW };
static const char *const wl_names[NW] = { "budget_seq_read", "budget_rand_read",
					  "budget_rand_rw" };

static size_t ps, file_len, budget, touches;
static const char *path = "upager-budget.dat";
static char cg_dir[256], cg_kind[8];

static int write_str(const char *file, const char *s)
{
	int fd = open(file, O_WRONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, s, strlen(s)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

static uint64_t read_u64(const char *file)
{
	char buf[64] = "";
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? strtoull(buf, NULL, 10) : 0;
}

/*
 * A child memory cgroup limited to the budget: cgroup v2 (memory.max) where
 * its memory controller can be enabled, else v1 (memory.limit_in_bytes).
 * Returns false, with why, where neither can be written.
 */
static bool cgroup_make(char *why, size_t len)
{
	char f[320], v[32];
	static const char *const v2[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };

	snprintf(v, sizeof(v), "%zu", budget);
	for (size_t i = 0; i < 2; i++) {
		char ctl[256] = "";
		int fd;

		snprintf(f, sizeof(f), "%s/cgroup.controllers", v2[i]);
		fd = open(f, O_RDONLY);
		if (fd < 0)
			continue;
		if (read(fd, ctl, sizeof(ctl) - 1) < 0)
			ctl[0] = 0;
		close(fd);
		if (!strstr(ctl, "memory"))
			continue;
		snprintf(f, sizeof(f), "%s/cgroup.subtree_control", v2[i]);
		write_str(f, "+memory");
		snprintf(cg_dir, sizeof(cg_dir), "%s/upager-bench-%d", v2[i], (int)getpid());
		if (mkdir(cg_dir, 0755) < 0)
			continue;
		snprintf(f, sizeof(f), "%s/memory.max", cg_dir);
		if (write_str(f, v) == 0) {
			snprintf(f, sizeof(f), "%s/memory.swap.max", cg_dir);
			write_str(f, "0");
			strcpy(cg_kind, "v2");
			return true;
		}
		rmdir(cg_dir);
	}
	snprintf(cg_dir, sizeof(cg_dir), "/sys/fs/cgroup/memory/upager-bench-%d", (int)getpid());
	if (mkdir(cg_dir, 0755) == 0) {
		snprintf(f, sizeof(f), "%s/memory.limit_in_bytes", cg_dir);
		if (write_str(f, v) == 0) {
			strcpy(cg_kind, "v1");
			return true;
		}
		rmdir(cg_dir);
	}
	snprintf(why, len, "no writable memory cgroup (v2 memory controller or v1 memory "
		 "hierarchy): %s", strerror(errno));
	cg_dir[0] = 0;
	return false;
}

static void cgroup_remove(void)
{
	if (cg_dir[0])
		rmdir(cg_dir);
}

static int make_file(void)
{
	struct stat st;
	char *buf;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) == 0 && (size_t)st.st_size == file_len)
		return fd;
	buf = malloc(1 << 20);
	if (!buf)
		return -1;
	for (size_t off = 0; off < file_len; off += 1 << 20) {
		for (size_t i = 0; i < (1 << 20); i += 8)
			*(uint64_t *)(buf + i) = (off + i) * 0x9E3779B97F4A7C15ull;
		if (pwrite(fd, buf, 1 << 20, (off_t)off) != 1 << 20) {
			free(buf);
			close(fd);
			return -1;
		}
	}
	free(buf);
	if (ftruncate(fd, (off_t)file_len) < 0)
		return -1;
	return fd;
}

static void drop_cache(int fd)
{
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
}

/* The workload on [a, a + file_len): pages touched. */
static uint64_t touch_all(volatile uint8_t *a, int w, uint64_t *sum)
{
	size_t npages = file_len / ps;
	uint64_t x = 88172645463325252ull, n = 0, s = 0;

	if (w == W_SEQ) {
		for (size_t pg = 0; pg < npages; pg++, n++)
			s += *(volatile uint64_t *)(a + pg * ps + 8);
	} else {
		for (size_t i = 0; i < touches; i++, n++) {
			size_t pg;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			pg = (size_t)(x % npages);
			s += *(volatile uint64_t *)(a + pg * ps + 16);
			if (w == W_RW)
				*(volatile uint64_t *)(a + pg * ps + 24) = i;
		}
	}
	*sum = s;
	return n;
}

static uint64_t write_bytes_now(void)
{
	char line[128];
	uint64_t v = 0;
	FILE *f = fopen("/proc/self/io", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "write_bytes: %" SCNu64, &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

static void child(int sys, int w, int fd, struct result *res)
{
	struct rusage ru;
	double t0;

	if (sys == SYS_KERNEL) {
		char f[320], pid[32];
		uint64_t wb0 = write_bytes_now();
		uint8_t *a;

		snprintf(f, sizeof(f), "%s/cgroup.procs", cg_dir);
		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		if (write_str(f, pid) < 0) {
			snprintf(res->why, sizeof(res->why), "joining %s: %s", cg_dir, strerror(errno));
			return;
		}
		t0 = bench_now_s();
		a = mmap(NULL, file_len, PROT_READ | (w == W_RW ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
		if (a == MAP_FAILED) {
			snprintf(res->why, sizeof(res->why), "mmap: %s", strerror(errno));
			return;
		}
		res->pages = touch_all(a, w, &res->sum);
		if (w == W_RW)
			msync(a, file_len, MS_SYNC);
		res->secs = bench_now_s() - t0;
		res->bytes_written = write_bytes_now() - wb0;
		munmap(a, file_len);
	} else {
		upager_options_t o;
		upager_t *p;
		upager_source_t *s;
		upager_region_t *r;
		upager_stats_t st;
		int ret;

		upager_options_init(&o);
		o.mem_budget = budget;
		o.evict_policy = sys == SYS_FIFO ? UPAGER_EVICT_FIFO : UPAGER_EVICT_CLOCK;
		ret = upager_create(&p, &o);
		if (ret < 0) {
			snprintf(res->why, sizeof(res->why), "upager_create: %s", upager_strerror(ret));
			return;
		}
		t0 = bench_now_s();
		ret = w == W_RW ? upager_source_file_rw(fd, 0, &s) : upager_source_file(fd, 0, &s);
		if (ret == 0)
			ret = upager_map(p, file_len, s, &r);
		if (ret < 0) {
			snprintf(res->why, sizeof(res->why), "source/map: %s", upager_strerror(ret));
			return;
		}
		upager_source_release(s);
		res->pages = touch_all(upager_region_addr(r), w, &res->sum);
		if (w == W_RW && (ret = upager_sync(r, 0, file_len)) < 0) {
			snprintf(res->why, sizeof(res->why), "upager_sync: %s", upager_strerror(ret));
			return;
		}
		res->secs = bench_now_s() - t0;
		upager_stats(p, &st);
		res->bytes_written = st.bytes_written;
		res->evicted = st.pages_evicted;
		upager_release(r);
		upager_destroy(p);
	}
	getrusage(RUSAGE_SELF, &ru);
	res->peak_rss_kib = (uint64_t)ru.ru_maxrss;
	res->ok = 1;
}

static struct result run(int sys, int w, int fd)
{
	struct result res = { 0 };
	struct result *shared = mmap(NULL, sizeof(res), PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pid;
	int status;

	drop_cache(fd);
	if (sys == SYS_KERNEL) { /* a fresh peak per run */
		char f[320];

		cgroup_remove();
		if (!cgroup_make(res.why, sizeof(res.why)))
			return res;
		(void)f;
	}
	memset(shared, 0, sizeof(*shared));
	pid = fork();
	if (pid == 0) {
		child(sys, w, fd, shared);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	res = *shared;
	munmap(shared, sizeof(res));
	if (!res.ok && !res.why[0])
		snprintf(res.why, sizeof(res.why), "child died (status %#x)", status);
	if (sys == SYS_KERNEL && res.ok) {
		char f[320];

		snprintf(f, sizeof(f), "%s/%s", cg_dir,
			 strcmp(cg_kind, "v2") ? "memory.max_usage_in_bytes" : "memory.peak");
		res.cg_peak_kib = read_u64(f) / 1024;
	}
	return res;
}

int main(int argc, char **argv)
{
	struct result res[NW][NSYS];
	char why[200] = "";
	bool have_cg;
	int fd;

	ps = (size_t)sysconf(_SC_PAGESIZE);
	file_len = bench_env_u64("UPAGER_BENCH_BUDGET_FILE_MIB", 4096) << 20;
	budget = bench_env_u64("UPAGER_BENCH_BUDGET_MIB", 512) << 20;
	touches = bench_env_u64("UPAGER_BENCH_BUDGET_TOUCHES", 65536);
	if (argc > 1 && (argv[1][0] == '-' || argc > 2)) {
		/* An option is no file name: "--help" would be a 4 GiB file. */
		printf("usage: budget [FILE]  (default ./upager-budget.dat; a real disk, not tmpfs)\n"
		       "environment: UPAGER_BENCH_BUDGET_FILE_MIB (4096), UPAGER_BENCH_BUDGET_MIB (512),\n"
		       "UPAGER_BENCH_BUDGET_TOUCHES (65536)\n");
		return argv[1][1] == 'h' || !strcmp(argv[1], "--help") ? 0 : 2;
	}
	if (argc > 1)
		path = argv[1];
	fprintf(stderr, "budget: file %s, %zu MiB, budget %zu MiB, %zu random touches; each run "
			"cold (posix_fadvise DONTNEED)\n", path, file_len >> 20, budget >> 20, touches);
	fd = make_file();
	if (fd < 0) {
		fprintf(stderr, "budget: cannot make %s: %s\n", path, strerror(errno));
		return 1;
	}
	have_cg = cgroup_make(why, sizeof(why));
	if (!have_cg)
		fprintf(stderr, "budget: kernel rows skipped: %s\n", why);
	else
		fprintf(stderr, "budget: kernel rows in cgroup %s %s, limit %zu MiB\n", cg_kind,
			cg_dir, budget >> 20);
	for (int w = 0; w < NW; w++)
		for (int s = 0; s < NSYS; s++) {
			if (s == SYS_KERNEL && !have_cg) {
				res[w][s] = (struct result){ 0 };
				snprintf(res[w][s].why, sizeof(res[w][s].why), "%s", why);
				continue;
			}
			res[w][s] = run(s, w, fd);
		}
	cgroup_remove();
	printf("%-17s %-13s %10s %8s %12s %12s %12s %10s %8s\n", "workload", "system", "pages/s",
	       "ratio", "peak_rss_MiB", "cg_peak_MiB", "written_MiB", "evicted", "rss/bud");
	for (int w = 0; w < NW; w++)
		for (int s = 0; s < NSYS; s++) {
			struct result *r = &res[w][s];
			double pps = r->ok ? (double)r->pages / r->secs : 0;
			double k = res[w][SYS_KERNEL].ok
					   ? (double)res[w][SYS_KERNEL].pages / res[w][SYS_KERNEL].secs
					   : 0;

			if (!r->ok) {
				printf("%-17s %-13s skipped: %s\n", wl_names[w], sys_names[s], r->why);
				printf("{\"bench\":\"%s\",\"system\":\"%s\",\"skipped\":\"%s\"}\n",
				       wl_names[w], sys_names[s], r->why);
				continue;
			}
			printf("%-17s %-13s %10.0f %8.2f %12.1f %12.1f %12.1f %10" PRIu64 " %8.2f\n",
			       wl_names[w], sys_names[s], pps, k ? pps / k : 0,
			       (double)r->peak_rss_kib / 1024, (double)r->cg_peak_kib / 1024,
			       (double)r->bytes_written / 1048576, r->evicted,
			       (double)r->peak_rss_kib * 1024 / (double)budget);
			printf("{\"bench\":\"%s\",\"system\":\"%s\",\"file_mib\":%zu,\"budget_mib\":%zu,"
			       "\"pages\":%" PRIu64 ",\"pages_per_s\":%.0f,\"vs_kernel\":%.3f,"
			       "\"peak_rss_kib\":%" PRIu64 ",\"cgroup_peak_kib\":%" PRIu64
			       ",\"bytes_written\":%" PRIu64 ",\"evicted\":%" PRIu64 "}\n",
			       wl_names[w], sys_names[s], file_len >> 20, budget >> 20, r->pages, pps,
			       k ? pps / k : 0, r->peak_rss_kib, r->cg_peak_kib, r->bytes_written,
			       r->evicted);
		}
	close(fd);
	return 0;
}
