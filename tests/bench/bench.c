/* SPDX-License-Identifier: MIT */
/*
 * upager-bench: upager's demand paging side by side with the kernel's, on
 * the same memory or file, with the same access loop, in the same run.
 *
 * Every measurement runs in a fresh child process (clean page tables, its
 * own peak RSS). Runs alternate kernel, upager, kernel, upager... and the
 * median of each is reported, because these VMs are noisy. Each row is
 * printed as a JSON line as soon as it is measured; a table follows.
 * Checksums of what was read must agree between the two systems.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/userfaultfd.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <upager.h>

enum sys { SYS_KERNEL, SYS_UPAGER };
/* K_REMOTE rows compare the remote source (via upagerd) with the local file
 * source on the same file, not with the kernel. */
/* K_HANDLE rows: another process's faults resolved by `upagerd handle`
 * (the Firecracker handshake) against the kernel mapping the same file. */
enum kind { K_ZERO, K_FILE, K_LATENCY, K_REMOTE, K_HANDLE };
/* Who resolves upager's faults (upager_options_t.fault_mode): handler threads,
 * or the faulting thread itself (every kind but K_HANDLE). */
enum mode { MODE_THREADS, MODE_INLINE };
static const char *const mode_names[] = { "threads", "inline" };

struct wl {
	const char *name;
	enum kind kind;
	bool random, cold;
	int cpu_mode; /* latency: 0 same CPU, 1 other CPU; remote: 0 unix, 1 tcp */
	unsigned spin_us;
};

static const struct wl workloads[] = {
	{ "zero_seq", K_ZERO, false, false, 0, UPAGER_SPIN_DEFAULT_US },
	{ "zero_rand", K_ZERO, true, false, 0, UPAGER_SPIN_DEFAULT_US },
	{ "file_seq_cold", K_FILE, false, true, 0, UPAGER_SPIN_DEFAULT_US },
	{ "file_seq_warm", K_FILE, false, false, 0, UPAGER_SPIN_DEFAULT_US },
	{ "file_rand_cold", K_FILE, true, true, 0, UPAGER_SPIN_DEFAULT_US },
	{ "file_rand_warm", K_FILE, true, false, 0, UPAGER_SPIN_DEFAULT_US },
	{ "latency_same_cpu", K_LATENCY, true, false, 0, UPAGER_SPIN_DEFAULT_US },
	{ "latency_other_cpu", K_LATENCY, true, false, 1, UPAGER_SPIN_DEFAULT_US },
	{ "latency_other_cpu_nospin", K_LATENCY, true, false, 1, 0 },
	{ "remote_seq_unix", K_REMOTE, false, false, 0, UPAGER_SPIN_DEFAULT_US },
	{ "remote_rand_unix", K_REMOTE, true, false, 0, UPAGER_SPIN_DEFAULT_US },
	{ "remote_seq_tcp", K_REMOTE, false, false, 1, UPAGER_SPIN_DEFAULT_US },
	{ "remote_rand_tcp", K_REMOTE, true, false, 1, UPAGER_SPIN_DEFAULT_US },
	{ "handle_seq", K_HANDLE, false, false, 0, 0 },
	{ "handle_rand", K_HANDLE, true, false, 0, 0 },
};
#define NWL (sizeof(workloads) / sizeof(workloads[0]))

struct opts {
	size_t zero_mib, file_mib, lat_pages, remote_mib;
	int reps;
	int threads[8], nthreads;
	unsigned handlers; /* 0: auto, min(faulting threads, CPUs) */
	unsigned handle_spin_us; /* upagerd handle --spin-us, for the handle_* rows */
	char file[512];
	char remote_file[512], remote_unix[600], remote_tcp[64], handle_sock[108];
	bool want[NWL];
	bool table;
	bool modes[2]; /* --mode: threads, inline or both */
};

struct result {
	double seconds;
	uint64_t pages;
	long peak_rss_kib;
	long pager_rss_kib; /* RSS the pager itself added (upager runs) */
	double p50_us, p99_us;
	uint64_t faults;
	uint64_t checksum;
	double cached_pct; /* page cache residency of the file before a run */
	int err;
};

static size_t ps;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void)
{
	long size, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &size, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * (long)(ps / 1024);
}

/* Page faults the process took (minor + major), all threads. */
static uint64_t faults_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

/* ---- access patterns ---- */

/* Page indices to touch: all in order, or 25% of them in a fixed random order. */
static size_t *make_order(size_t pages, bool random, size_t *n)
{
	size_t *idx = malloc(pages * sizeof(*idx));
	uint64_t x = 0x2545F4914F6CDD1Dull;

	for (size_t i = 0; i < pages; i++)
		idx[i] = i;
	if (!random) {
		*n = pages;
		return idx;
	}
	for (size_t i = pages - 1; i > 0; i--) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t j = (size_t)(x % (i + 1));
		size_t t = idx[i];
		idx[i] = idx[j];
		idx[j] = t;
	}
	*n = pages / 4;
	return idx;
}

struct worker {
	uint8_t *base;
	const size_t *idx;
	size_t n;
	bool write;
	uint64_t sum;
	pthread_barrier_t *go;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	uint64_t sum = 0;

	pthread_barrier_wait(w->go);
	if (w->write) { /* first touch: one write per page */
		for (size_t i = 0; i < w->n; i++)
			*(volatile uint64_t *)(w->base + w->idx[i] * ps) = w->idx[i];
	} else { /* a 4 KiB read: every word of the page */
		for (size_t i = 0; i < w->n; i++) {
			const volatile uint64_t *pg = (const uint64_t *)(w->base + w->idx[i] * ps);
			for (size_t j = 0; j < ps / 8; j++)
				sum += pg[j];
		}
	}
	w->sum = sum;
	return NULL;
}

/* Runs the access loop over idx with `threads` threads; returns seconds. */
static double run_access(uint8_t *base, const size_t *idx, size_t n, int threads, bool write,
			 uint64_t *sum)
{
	pthread_t t[64];
	struct worker w[64];
	pthread_barrier_t go;
	double t0, t1;

	pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
	for (int i = 0; i < threads; i++) {
		size_t lo = n * (size_t)i / (size_t)threads, hi = n * (size_t)(i + 1) / (size_t)threads;
		w[i] = (struct worker){ .base = base, .idx = idx + lo, .n = hi - lo, .write = write,
					.go = &go };
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	pthread_barrier_wait(&go);
	t0 = now_s();
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	t1 = now_s();
	pthread_barrier_destroy(&go);
	*sum = 0;
	for (int i = 0; i < threads; i++)
		*sum += w[i].sum;
	return t1 - t0;
}

/* ---- the file ---- */

static double cached_pct(int fd, size_t len)
{
	size_t pages = len / ps, in = 0;
	unsigned char *vec = malloc(pages);
	void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);

	if (m == MAP_FAILED || !vec || mincore(m, len, vec) < 0) {
		free(vec);
		if (m != MAP_FAILED)
			munmap(m, len);
		return -1;
	}
	for (size_t i = 0; i < pages; i++)
		in += vec[i] & 1;
	munmap(m, len);
	free(vec);
	return 100.0 * (double)in / (double)pages;
}

static void drop_cache(int fd)
{
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
}

static void warm_cache(int fd, size_t len)
{
	static char buf[1 << 20];

	for (size_t off = 0; off < len; off += sizeof(buf))
		if (pread(fd, buf, sizeof(buf), (off_t)off) <= 0)
			break;
}

static int make_file(const char *path, size_t len)
{
	struct stat st;
	uint64_t *buf;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) == 0 && (size_t)st.st_size == len)
		return fd; /* made by an earlier run */
	buf = malloc(1 << 20);
	for (size_t off = 0; off < len; off += 1 << 20) {
		for (size_t i = 0; i < (1 << 20) / 8; i++)
			buf[i] = (off + i * 8) * 0x9E3779B97F4A7C15ull;
		if (pwrite(fd, buf, 1 << 20, (off_t)off) != 1 << 20) {
			free(buf);
			close(fd);
			return -1;
		}
	}
	free(buf);
	fsync(fd);
	return fd;
}

/* ---- one measurement, in the child ---- */

static unsigned handlers_for(const struct opts *o, int threads)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (o->handlers)
		return o->handlers;
	return (unsigned)(threads < cpus ? threads : cpus);
}

static upager_t *new_pager(const struct opts *o, const struct wl *w, int handler_cpu,
			   int threads, enum mode mode)
{
	upager_options_t uo;
	upager_t *p;

	upager_options_init(&uo);
	uo.fault_mode = mode == MODE_INLINE ? UPAGER_FAULT_INLINE : UPAGER_FAULT_THREADS;
	uo.nthreads = handlers_for(o, threads);
	uo.spin_us = w->spin_us;
	if (handler_cpu >= 0)
		uo.handler_cpus = 1ull << handler_cpu;
	return upager_create(&p, &uo) == 0 ? p : NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void measure_latency(const struct opts *o, const struct wl *w, enum sys sys,
			    enum mode mode, struct result *res)
{
	size_t pages = o->lat_pages, n;
	size_t *idx = make_order(pages, true, &n);
	double *lat = malloc(pages * sizeof(*lat));
	upager_region_t *r = NULL;
	upager_source_t *z;
	upager_t *p = NULL;
	uint8_t *a;
	double t0;

	n = pages; /* every page, in random order: no window ever helps */
	pin(0);
	if (sys == SYS_UPAGER) {
		p = new_pager(o, w, w->cpu_mode == 0 ? 0 : 1, 1, mode);
		if (!p || upager_source_zero(&z) || upager_map(p, pages * ps, z, &r) ||
		    upager_region_advise(r, UPAGER_ADV_RANDOM)) {
			res->err = 1;
			return;
		}
		a = upager_region_addr(r);
	} else {
		a = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	}
	usleep(20000); /* let the handler go to sleep: the first fault wakes it */
	res->faults = faults_now();
	t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		double s = now_s();
		*(volatile uint64_t *)(a + idx[i] * ps) = i;
		lat[i] = now_s() - s;
	}
	res->seconds = now_s() - t0;
	res->pages = n;
	qsort(lat, n, sizeof(*lat), cmp_double);
	res->p50_us = lat[n / 2] * 1e6;
	res->p99_us = lat[n * 99 / 100] * 1e6;
	res->faults = faults_now() - res->faults;
	if (r) {
		upager_stats_t st;
		upager_region_stats(r, &st);
		res->faults = st.faults;
	}
}

/*
 * Guest memory as a VM monitor restoring a snapshot makes it: anonymous, a
 * userfaultfd over it, handed with its region to `upagerd handle` in one
 * message. NULL if any step fails.
 */
static uint8_t *handed_over(const struct opts *o, size_t len)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} ctl = { 0 };
	char json[256];
	struct iovec iov = { json, 0 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
			     .msg_controllen = sizeof(ctl) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	uint8_t *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK), s;
	struct uffdio_register reg = { .range = { (uintptr_t)a, len },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };

	if (uffd < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		uffd = dev >= 0 ? ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK) : -1;
		if (dev >= 0)
			close(dev);
	}
	if (uffd < 0) /* unprivileged: the workload touches the memory from user mode only */
		uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (a == MAP_FAILED || uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0 ||
	    ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		return NULL;
	iov.iov_len = (size_t)snprintf(json, sizeof(json),
				       "[{\"base_host_virt_addr\":%lu,\"size\":%zu,\"offset\":0,"
				       "\"page_size\":%zu}]", (unsigned long)(uintptr_t)a, len, ps);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &uffd, sizeof(int));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", o->handle_sock);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    sendmsg(s, &mh, MSG_NOSIGNAL) != (ssize_t)iov.iov_len)
		return NULL;
	return a; /* the socket and uffd stay open until this process ends */
}

static void measure(const struct opts *o, const struct wl *w, enum sys sys, int threads,
		    enum mode mode, struct result *res)
{
	size_t mib = w->kind == K_ZERO                           ? o->zero_mib
		     : w->kind == K_REMOTE || w->kind == K_HANDLE ? o->remote_mib
								  : o->file_mib;
	size_t pages = mib * ((1 << 20) / ps), n;
	size_t *idx;
	upager_region_t *r = NULL;
	upager_source_t *s = NULL;
	upager_t *p = NULL;
	uint8_t *a = NULL;
	int fd = -1;
	long before;

	if (w->kind == K_LATENCY) {
		measure_latency(o, w, sys, mode, res);
		return;
	}
	idx = make_order(pages, w->random, &n);
	if (w->kind == K_HANDLE || w->kind == K_REMOTE) {
		/* Both sides warm: the server's page cache and ours hold the file. */
		fd = open(o->remote_file, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			res->err = 1;
			return;
		}
		warm_cache(fd, pages * ps);
		res->cached_pct = cached_pct(fd, pages * ps);
	}
	if (w->kind == K_HANDLE) {
		a = sys == SYS_KERNEL ? mmap(NULL, pages * ps, PROT_READ, MAP_PRIVATE, fd, 0)
				      : handed_over(o, pages * ps);
		if (!a || a == MAP_FAILED) {
			res->err = 1;
			return;
		}
		goto access;
	}
	if (w->kind == K_REMOTE) {
		before = rss_kib();
		p = new_pager(o, w, -1, threads, MODE_THREADS);
		res->pager_rss_kib = rss_kib() - before;
		if (!p || (sys == SYS_KERNEL ? upager_source_file(fd, 0, &s)
					     : upager_source_remote(w->cpu_mode ? o->remote_tcp : o->remote_unix,
								    "upager-bench-remote.dat", NULL, &s)) ||
		    upager_map(p, pages * ps, s, &r)) {
			res->err = 1;
			return;
		}
		a = upager_region_addr(r);
		goto access;
	}
	if (w->kind == K_FILE) {
		fd = open(o->file, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			res->err = 1;
			return;
		}
		if (w->cold)
			drop_cache(fd);
		else
			warm_cache(fd, pages * ps);
		res->cached_pct = cached_pct(fd, pages * ps);
	}
	before = rss_kib();
	if (sys == SYS_UPAGER) {
		p = new_pager(o, w, -1, threads, mode);
		res->pager_rss_kib = rss_kib() - before;
		if (!p || (w->kind == K_ZERO ? upager_source_zero(&s) : upager_source_file(fd, 0, &s)) ||
		    upager_map(p, pages * ps, s, &r)) {
			res->err = 1;
			return;
		}
		a = upager_region_addr(r);
	} else if (w->kind == K_ZERO) {
		a = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	} else {
		a = mmap(NULL, pages * ps, PROT_READ, MAP_PRIVATE, fd, 0);
	}
	if (a == MAP_FAILED) {
		res->err = 1;
		return;
	}
access:
	res->faults = faults_now();
	res->seconds = run_access(a, idx, n, threads, w->kind == K_ZERO, &res->checksum);
	res->pages = n;
	res->faults = faults_now() - res->faults; /* the kernel's; upager's below */
	if (sys == SYS_KERNEL && r) { /* remote rows: the file source */
		upager_stats_t st;
		upager_region_stats(r, &st);
		res->faults = st.faults;
	}
	if (r) {
		upager_stats_t st;
		upager_region_stats(r, &st);
		res->faults = st.faults;
		res->p50_us = (double)st.lat_p50_ns / 1e3;
		res->p99_us = (double)st.lat_p99_ns / 1e3;
	}
	if (w->kind == K_ZERO) /* check what was written */
		for (size_t i = 0; i < n; i += 97)
			if (*(uint64_t *)(a + idx[i] * ps) != idx[i])
				res->err = 2;
}

static int run_child(const struct opts *o, const struct wl *w, enum sys sys, int threads,
		     enum mode mode, struct result *res)
{
	int pfd[2], status;
	pid_t pid;

	memset(res, 0, sizeof(*res));
	if (pipe(pfd) < 0)
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		struct rusage ru;

		close(pfd[0]);
		measure(o, w, sys, threads, mode, res);
		getrusage(RUSAGE_SELF, &ru);
		res->peak_rss_kib = ru.ru_maxrss;
		if (write(pfd[1], res, sizeof(*res)) != (ssize_t)sizeof(*res))
			_exit(3);
		_exit(0);
	}
	close(pfd[1]);
	if (read(pfd[0], res, sizeof(*res)) != (ssize_t)sizeof(*res))
		res->err = 9;
	close(pfd[0]);
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		res->err = res->err ? res->err : 8;
	return res->err ? -1 : 0;
}

/* ---- reporting ---- */

struct row {
	const struct wl *w;
	int threads;
	enum mode mode;
	struct result k, u; /* medians (by seconds) */
	double k_pps, u_pps;
};

static struct row rows[128];
static int nrows;

static int cmp_result(const void *a, const void *b)
{
	double x = ((const struct result *)a)->seconds, y = ((const struct result *)b)->seconds;
	return x < y ? -1 : x > y;
}

static void json(const struct row *rw, enum sys sys, const struct opts *o)
{
	const struct result *r = sys == SYS_KERNEL ? &rw->k : &rw->u;
	double pps = sys == SYS_KERNEL ? rw->k_pps : rw->u_pps;

	const bool remote = rw->w->kind == K_REMOTE;

	printf("{\"bench\":\"upager\",\"workload\":\"%s\",\"mode\":\"%s\",\"system\":\"%s\","
	       "\"threads\":%d,\"pages\":%llu,\"page_size\":%zu,\"seconds\":%.6f,"
	       "\"pages_per_s\":%.0f,",
	       rw->w->name, mode_names[rw->mode],
	       sys == SYS_KERNEL ? (remote ? "upager-file" : "kernel")
				 : (remote ? "upager-remote"
					   : rw->w->kind == K_HANDLE ? "upagerd-handle" : "upager"),
	       rw->threads,
	       (unsigned long long)r->pages, ps, r->seconds, pps);
	if (sys == SYS_UPAGER && rw->w->kind == K_HANDLE)
		printf("\"ratio_vs_kernel\":%.3f,\"handlers\":1,\"handler\":\"upagerd handle "
		       "(another process)\",\"spin_us\":%u,", rw->u_pps / rw->k_pps,
		       o->handle_spin_us);
	else if (sys == SYS_UPAGER)
		printf("\"%s\":%.3f,\"handlers\":%u,\"spin_us\":%u,\"pager_rss_kib\":%ld,",
		       remote ? "ratio_vs_file_source" : "ratio_vs_kernel", rw->u_pps / rw->k_pps,
		       handlers_for(o, rw->threads), rw->w->spin_us, r->pager_rss_kib);
	if ((sys == SYS_UPAGER && rw->w->kind != K_HANDLE) || rw->w->kind == K_LATENCY)
		printf("\"lat_p50_us\":%.2f,\"lat_p99_us\":%.2f,\"lat_measured\":\"%s\",", r->p50_us,
		       r->p99_us,
		       rw->w->kind == K_LATENCY ? "faulting thread" : "handler (fault service)");
	if (rw->w->kind == K_FILE || remote || rw->w->kind == K_HANDLE)
		printf("\"cache\":\"%s\",\"cached_pct_before\":%.1f,", rw->w->cold ? "cold" : "warm",
		       r->cached_pct);
	if (remote)
		printf("\"transport\":\"%s\",", rw->w->cpu_mode ? "tcp loopback" : "unix socket");
	printf("\"faults\":%llu,\"faults_counted\":\"%s\",\"peak_rss_kib\":%ld,\"reps\":%d}\n",
	       (unsigned long long)r->faults,
	       sys == SYS_KERNEL || rw->w->kind == K_HANDLE ? "getrusage minflt+majflt"
							    : "userfaultfd messages",
	       r->peak_rss_kib, o->reps);
	fflush(stdout);
}

static int bench_row(const struct opts *o, const struct wl *w, int threads, enum mode mode)
{
	struct result k[32], u[32];
	struct row *rw = &rows[nrows];

	for (int i = 0; i < o->reps; i++) {
		/* A B A B: each pair sees the same machine weather. */
		if (run_child(o, w, SYS_KERNEL, threads, mode, &k[i]) < 0 ||
		    run_child(o, w, SYS_UPAGER, threads, mode, &u[i]) < 0) {
			fprintf(stderr, "bench: %s (%d threads, %s): run failed (kernel err %d, upager err %d)\n",
				w->name, threads, mode_names[mode], k[i].err, u[i].err);
			return -1;
		}
		if ((w->kind == K_FILE || w->kind == K_REMOTE || w->kind == K_HANDLE) &&
		    k[i].checksum != u[i].checksum) {
			fprintf(stderr, "bench: %s: checksums differ: kernel %llx upager %llx\n",
				w->name, (unsigned long long)k[i].checksum,
				(unsigned long long)u[i].checksum);
			return -1;
		}
	}
	qsort(k, (size_t)o->reps, sizeof(k[0]), cmp_result);
	qsort(u, (size_t)o->reps, sizeof(u[0]), cmp_result);
	rw->w = w;
	rw->threads = threads;
	rw->mode = mode;
	rw->k = k[o->reps / 2];
	rw->u = u[o->reps / 2];
	rw->k_pps = (double)rw->k.pages / rw->k.seconds;
	rw->u_pps = (double)rw->u.pages / rw->u.seconds;
	json(rw, SYS_KERNEL, o);
	json(rw, SYS_UPAGER, o);
	nrows++;
	return 0;
}

static void table(const struct opts *o)
{
	printf("\n%-26s %-7s %3s %3s %8s %12s %12s %7s %9s %9s %15s %9s\n", "workload", "mode", "thr", "hdl", "pages",
	       "kernel pg/s", "upager pg/s", "ratio", "p50 us", "p99 us", "faults k/u", "peak MiB");
	for (int i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		char p50[16] = "-", p99[16] = "-"; /* handle rows: served in another process */

		if (r->w->kind != K_HANDLE) {
			snprintf(p50, sizeof(p50), "%.1f", r->u.p50_us);
			snprintf(p99, sizeof(p99), "%.1f", r->u.p99_us);
		}
		printf("%-26s %-7s %3d %3u %8llu %12.0f %12.0f %6.2fx %9s %9s %7llu/%-7llu %4ld/%-4ld\n",
		       r->w->name, mode_names[r->mode], r->threads, r->w->kind == K_HANDLE ? 1 : handlers_for(o, r->threads),
		       (unsigned long long)r->u.pages, r->k_pps, r->u_pps,
		       r->u_pps / r->k_pps, p50, p99,
		       (unsigned long long)r->k.faults, (unsigned long long)r->u.faults,
		       r->k.peak_rss_kib >> 10,
		       r->u.peak_rss_kib >> 10);
	}
	printf("\nratio = upager pages/s / kernel pages/s (remote_* rows: remote source / local file\n"
	       "source on the same warm file, \"kernel\" columns meaning the file source), medians of\n"
	       "%d alternating runs.\n"
	       "p50/p99: latency rows, per fault in the faulting thread (upager; kernel in the JSON);\n"
	       "other rows, upager's fault service time in the handler. peak MiB: kernel/upager.\n"
	       "faults k/u: the kernel's page faults (getrusage) / upager's userfaultfd faults.\n"
	       "thr: faulting threads; hdl: upager handler threads.\n"
	       "mode: threads (handler threads resolve faults) or inline (the faulting thread, in\n"
	       "its SIGBUS handler; latency rows then measure no handler at all; remote rows\n"
	       "hand each fault to the handler threads and wait); inline rows exist for every\n"
	       "workload but handle_* (the faulting thread is another process's).\n"
	       "handle_* rows: a client process's faults served by `upagerd handle` (one thread per\n"
	       "client), against the kernel mapping the same warm file; both fault columns are\n"
	       "the client's getrusage counts, and the handler's latency is not measured.\n",
	       o->reps);
}

/* A 1 TiB reserved and committed region, nothing touched: what it costs. */
static void reserve_cost(void)
{
	upager_region_t *r;
	upager_source_t *z;
	upager_t *p;
	long before, after_pager, after;

	before = rss_kib();
	if (upager_create(&p, NULL) || upager_source_zero(&z))
		return;
	after_pager = rss_kib();
	if (upager_map(p, 1ull << 40, z, &r))
		return;
	after = rss_kib();
	printf("{\"bench\":\"upager\",\"workload\":\"reserve_1tib\",\"system\":\"upager\","
	       "\"threads\":1,\"pages\":0,\"page_size\":%zu,\"seconds\":0,\"pages_per_s\":0,"
	       "\"region_rss_kib\":%ld,\"pager_rss_kib\":%ld,\"peak_rss_kib\":%ld}\n",
	       ps, after - after_pager, after_pager - before, after);
	printf("reserve_1tib: a 1 TiB region, reserved and committed, costs %ld KiB of RSS; "
	       "the pager itself %ld KiB\n", after - after_pager, after_pager - before);
	upager_release(r);
	upager_source_release(z);
	upager_destroy(p);
}

/* ---- the page server for the remote_* rows ---- */

static char upagerd_path[512] = "daemon/upagerd";
static pid_t upagerd_pid;
static char serve_dir[64];

/*
 * Runs upagerd with args (NULL-terminated, at most 12) plus --ready-fd and
 * waits up to 5 s for its "ready" line, which lands in ready. The pid, or -1.
 */
static pid_t spawn_ready(const char *const *args, char *ready, size_t len)
{
	char readyfd[16];
	const char *argv[16];
	int pfd[2], a = 0;
	ssize_t n = 0;
	pid_t pid;

	if (pipe(pfd) < 0)
		return -1;
	snprintf(readyfd, sizeof(readyfd), "%d", pfd[1]);
	while (args[a] && a < 12) {
		argv[a] = args[a];
		a++;
	}
	argv[a++] = "--ready-fd";
	argv[a++] = readyfd;
	argv[a] = NULL;
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		execv(upagerd_path, (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	for (int i = 0; i < 500 && n <= 0; i++) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		if (poll(&p, 1, 10) > 0)
			n = read(pfd[0], ready, len - 1);
	}
	close(pfd[0]);
	if (n <= 0) {
		fprintf(stderr, "upager-bench: cannot start %s %s (--upagerd PATH)\n", upagerd_path,
			args[1]);
		if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
		return -1;
	}
	ready[n] = '\0';
	return pid;
}

static int start_upagerd(struct opts *o)
{
	char ready[512] = "", sock[600], *tcp;
	int fd;

	snprintf(serve_dir, sizeof(serve_dir), "upager-bench-serve.XXXXXX");
	if (!mkdtemp(serve_dir))
		return -1;
	snprintf(o->remote_file, sizeof(o->remote_file), "%s/upager-bench-remote.dat", serve_dir);
	fd = make_file(o->remote_file, o->remote_mib << 20);
	if (fd < 0)
		return -1;
	close(fd);
	snprintf(sock, sizeof(sock), "unix:%s/upagerd.sock", serve_dir);
	snprintf(o->remote_unix, sizeof(o->remote_unix), "%s", sock);
	upagerd_pid = spawn_ready((const char *const[]){ "upagerd", "serve", "--root", serve_dir,
							 "--listen", sock, "--listen",
							 "tcp:127.0.0.1:0", "--log-level", "warn",
							 NULL },
				  ready, sizeof(ready));
	tcp = upagerd_pid > 0 ? strstr(ready, "tcp:127.0.0.1:") : NULL;
	if (!tcp)
		return -1;
	snprintf(o->remote_tcp, sizeof(o->remote_tcp), "tcp:127.0.0.1:%d", atoi(tcp + 14));
	fprintf(stderr, "upager-bench: remote rows: upagerd on %s and %s\n", o->remote_unix,
		o->remote_tcp);
	return 0;
}

static pid_t handle_pid;

/* `upagerd handle` serving the remote rows' file, for the handle_* rows. */
static int start_handler(struct opts *o)
{
	char ready[256], spin[16];

	snprintf(o->handle_sock, sizeof(o->handle_sock), "%s/uffd.sock", serve_dir);
	snprintf(spin, sizeof(spin), "%u", o->handle_spin_us);
	handle_pid = spawn_ready((const char *const[]){ "upagerd", "handle", "--socket",
							o->handle_sock, "--mem-file", o->remote_file,
							"--spin-us", spin, "--log-level", "warn",
							NULL },
				 ready, sizeof(ready));
	if (handle_pid < 0)
		return -1;
	fprintf(stderr, "upager-bench: handle rows: upagerd handle on %s\n", o->handle_sock);
	return 0;
}

static void stop_upagerd(void)
{
	char path[600];

	if (handle_pid > 0) {
		kill(handle_pid, SIGKILL); /* its clients are gone: nothing to drain */
		waitpid(handle_pid, NULL, 0);
		handle_pid = 0;
		/* Killed, it leaves its socket: the directory would stay behind. */
		snprintf(path, sizeof(path), "%s/uffd.sock", serve_dir);
		unlink(path);
	}
	if (upagerd_pid <= 0)
		return;
	kill(upagerd_pid, SIGTERM);
	waitpid(upagerd_pid, NULL, 0);
	upagerd_pid = 0;
	snprintf(path, sizeof(path), "%s/upager-bench-remote.dat", serve_dir);
	unlink(path);
	rmdir(serve_dir);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: upager-bench [options]\n"
		"  --workloads LIST  comma-separated, from:");
	for (size_t i = 0; i < NWL; i++)
		fprintf(f, "%s%s", i ? "," : " ", workloads[i].name);
	fprintf(f,
		"\n"
		"                    (default: all)\n"
		"  --zero-mib N      zero-fill region size (default 256)\n"
		"  --file-mib N      file size (default 1024)\n"
		"  --file PATH       the file to use; made if missing or of another size\n"
		"                    (default ./upager-bench.dat: on a real disk, not tmpfs)\n"
		"  --threads LIST    faulting threads for the random workloads (default 1,2,8)\n"
		"  --handlers N      upager handler threads, or auto: one per faulting thread,\n"
		"                    at most one per CPU (default auto)\n"
		"  --reps N          runs per system, alternating (default 5, at most 31)\n"
		"  --lat-pages N     pages touched by the latency workloads (default 4096)\n"
		"  --remote-mib N    file size for the remote_* and handle_* workloads (default 256)\n"
		"  --upagerd PATH    the daemon the remote_* and handle_* workloads start (default\n"
		"                    daemon/upagerd, as in the build tree)\n"
		"  --mode M          threads, inline or both (default both): who resolves\n"
		"                    upager's faults (inline: every row but handle_*)\n"
		"  --handle-spin-us N  upagerd handle --spin-us N for the handle_* rows (default 0)\n"
		"  --no-table        JSON lines only\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "workloads", 1, 0, 'w' }, { "zero-mib", 1, 0, 'z' }, { "file-mib", 1, 0, 'f' },
		{ "file", 1, 0, 'F' },      { "threads", 1, 0, 't' },  { "handlers", 1, 0, 'H' },
		{ "reps", 1, 0, 'r' },      { "lat-pages", 1, 0, 'l' }, { "no-table", 0, 0, 'T' },
		{ "remote-mib", 1, 0, 'R' }, { "upagerd", 1, 0, 'D' }, { "mode", 1, 0, 'M' },
		{ "handle-spin-us", 1, 0, 'S' },
		{ "help", 0, 0, 'h' },      { 0, 0, 0, 0 },
	};
	struct opts o = { .zero_mib = 256, .file_mib = 1024, .lat_pages = 4096, .remote_mib = 256,
			  .reps = 5,
			  .threads = { 1, 2, 8 }, .nthreads = 3, .handlers = 0, .table = true,
			  .modes = { true, true } };
	char why[512];
	int c, fd;

	ps = (size_t)sysconf(_SC_PAGESIZE);
	snprintf(o.file, sizeof(o.file), "upager-bench.dat");
	for (size_t i = 0; i < NWL; i++)
		o.want[i] = true;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'w': {
			char *list = strdup(optarg), *tok, *save = NULL;
			for (size_t i = 0; i < NWL; i++)
				o.want[i] = false;
			for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				size_t i;
				for (i = 0; i < NWL && strcmp(tok, workloads[i].name); i++)
					;
				if (i == NWL) {
					fprintf(stderr, "upager-bench: unknown workload '%s'\n", tok);
					return 2;
				}
				o.want[i] = true;
			}
			free(list);
			break;
		}
		case 'z': o.zero_mib = strtoul(optarg, NULL, 10); break;
		case 'f': o.file_mib = strtoul(optarg, NULL, 10); break;
		case 'F': snprintf(o.file, sizeof(o.file), "%s", optarg); break;
		case 'H': o.handlers = strcmp(optarg, "auto") ? (unsigned)strtoul(optarg, NULL, 10) : 0;
			if (strcmp(optarg, "auto") && o.handlers == 0)
				o.handlers = 65; /* rejected below */
			break;
		case 'r': o.reps = atoi(optarg); break;
		case 'l': o.lat_pages = strtoul(optarg, NULL, 10); break;
		case 'R': o.remote_mib = strtoul(optarg, NULL, 10); break;
		case 'D': snprintf(upagerd_path, sizeof(upagerd_path), "%s", optarg); break;
		case 'S': o.handle_spin_us = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'T': o.table = false; break;
		case 'M':
			o.modes[MODE_THREADS] = !strcmp(optarg, "threads") || !strcmp(optarg, "both");
			o.modes[MODE_INLINE] = !strcmp(optarg, "inline") || !strcmp(optarg, "both");
			if (!o.modes[MODE_THREADS] && !o.modes[MODE_INLINE]) {
				usage(stderr);
				return 2;
			}
			break;
		case 't': {
			char *list = strdup(optarg), *tok, *save = NULL;
			o.nthreads = 0;
			for (tok = strtok_r(list, ",", &save); tok && o.nthreads < 8;
			     tok = strtok_r(NULL, ",", &save))
				o.threads[o.nthreads++] = atoi(tok);
			free(list);
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (o.reps < 1 || o.reps > 31 || !o.zero_mib || !o.file_mib || !o.remote_mib || o.lat_pages < 100 ||
	    o.handlers > 64 || o.nthreads < 1) {
		usage(stderr);
		return 2;
	}
	for (int i = 0; i < o.nthreads; i++)
		if (o.threads[i] < 1 || o.threads[i] > 64) {
			usage(stderr);
			return 2;
		}
	if (upager_probe(0, NULL, why, sizeof(why)) < 0) {
		fprintf(stderr, "upager-bench: userfaultfd unavailable: %s\n", why);
		return 77;
	}
	fprintf(stderr, "upager-bench: %ld CPUs, page size %zu, %d alternating runs per system\n",
		sysconf(_SC_NPROCESSORS_ONLN), ps, o.reps);

	for (size_t i = 0; i < NWL; i++) {
		if (!o.want[i] || workloads[i].kind != K_FILE)
			continue;
		fprintf(stderr, "upager-bench: file %s, %zu MiB\n", o.file, o.file_mib);
		fd = make_file(o.file, o.file_mib << 20);
		if (fd < 0) {
			fprintf(stderr, "upager-bench: cannot make %s: %s\n", o.file, strerror(errno));
			return 1;
		}
		close(fd);
		fprintf(stderr, "upager-bench: cold runs drop the file's pages with "
				"posix_fadvise(POSIX_FADV_DONTNEED); cached_pct_before says how far it worked\n");
		break;
	}
	if (o.modes[MODE_INLINE]) {
		/* Inline mode needs kernel features (upager_create(3)): without
		 * them, the threaded rows alone, saying so. */
		upager_options_t uo;
		upager_t *p;
		int ret;

		upager_options_init(&uo);
		uo.fault_mode = UPAGER_FAULT_INLINE;
		ret = upager_create(&p, &uo);
		if (ret == 0) {
			upager_destroy(p);
		} else {
			fprintf(stderr, "upager-bench: inline mode unavailable here (%s): threaded "
					"rows only\n", upager_strerror(ret));
			o.modes[MODE_INLINE] = false;
			if (!o.modes[MODE_THREADS])
				return 1;
		}
	}
	for (size_t i = 0; i < NWL; i++)
		if (o.want[i] && (workloads[i].kind == K_REMOTE || workloads[i].kind == K_HANDLE)) {
			if (start_upagerd(&o) < 0)
				return 1;
			break;
		}
	for (size_t i = 0; i < NWL; i++)
		if (o.want[i] && workloads[i].kind == K_HANDLE) {
			if (start_handler(&o) < 0) {
				stop_upagerd();
				return 1;
			}
			break;
		}
	for (size_t i = 0; i < NWL; i++) {
		const struct wl *w = &workloads[i];
		int nt = w->random && w->kind != K_LATENCY ? o.nthreads : 1;

		if (!o.want[i])
			continue;
		for (int t = 0; t < nt; t++) {
			int threads = w->random && w->kind != K_LATENCY ? o.threads[t] : 1;

			for (int m = MODE_THREADS; m <= MODE_INLINE; m++) {
				bool can = m == MODE_THREADS || w->kind != K_HANDLE;

				if (!o.modes[m] || !can)
					continue;
				if (bench_row(&o, w, threads, (enum mode)m) < 0) {
					stop_upagerd();
					return 1;
				}
			}
		}
	}
	stop_upagerd();
	reserve_cost();
	if (o.table)
		table(&o);
	return 0;
}
