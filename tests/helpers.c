/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

static uint64_t features;
static int probed, probe_err;
static char probe_why[512];

uint64_t upt_features(void)
{
	if (!probed) {
		probe_err = upager_probe(0, &features, probe_why, sizeof(probe_why));
		probed = 1;
	}
	return probe_err ? 0 : features;
}

TCase *upt_tcase(Suite *s, const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, UPT_TIMEOUT);
	suite_add_tcase(s, tc);
	return tc;
}

void upt_add(TCase *tc, const TTest *t, uint64_t need, const char *why)
{
	uint64_t missing = need & ~upt_features();

	if (missing) {
		printf("SKIP %s: kernel lacks %s (feature mask 0x%llx)\n", t->name, why,
		       (unsigned long long)missing);
		return;
	}
	tcase_add_test(tc, t);
}

char upt_logged[4096];
static pthread_mutex_t logged_lock = PTHREAD_MUTEX_INITIALIZER;

void upt_keep_log(void *arg, int level, const char *msg)
{
	(void)arg;
	(void)level;
	pthread_mutex_lock(&logged_lock);
	strncat(upt_logged, msg, sizeof(upt_logged) - strlen(upt_logged) - 2);
	strcat(upt_logged, "\n");
	pthread_mutex_unlock(&logged_lock);
}

int upt_main_url(Suite *(*make)(void))
{
	upager_source_t *s = NULL;

	if (upager_source_url("http://127.0.0.1:1/x", NULL, &s) == -ENOTSUP) {
		printf("SKIP all: built without libcurl (upager_source_url gives -ENOTSUP)\n");
		return 77;
	}
	if (s)
		upager_source_release(s);
	return upt_main(make);
}

int upt_main(Suite *(*make)(void))
{
	SRunner *sr;
	int failed;

	upt_features();
	if (probe_err) {
		printf("SKIP all: userfaultfd unusable here: %s\n", probe_why);
		return 77;
	}
	sr = srunner_create(make());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

upager_t *upt_pager(unsigned nthreads, uint64_t disable)
{
	upager_options_t o;
	upager_t *p = NULL;
	int ret;

	upager_options_init(&o);
	o.nthreads = nthreads;
	o.disable_features = disable;
	ret = upager_create(&p, &o);
	ck_assert_msg(ret == 0, "upager_create: %s", upager_strerror(ret));
	return p;
}

int upt_tmpfile(size_t size, unsigned seed, char *path, size_t pathlen)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	uint8_t buf[65536];
	int fd;

	snprintf(path, pathlen, "%s/upager-test-XXXXXX", dir);
	fd = mkstemp(path);
	ck_assert_msg(fd >= 0, "mkstemp: %s", strerror(errno));
	for (size_t off = 0; off < size;) {
		size_t n = size - off < sizeof(buf) ? size - off : sizeof(buf);
		upt_fill(buf, n, off, seed);
		ck_assert_int_eq(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
		off += n;
	}
	/* Tests run in forked children; unlink now so nothing outlives them. */
	unlink(path);
	return fd;
}

long upt_check_pattern(const uint8_t *p, size_t len, uint64_t base, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != upt_byte(base + i, seed))
			return (long)i;
	return -1;
}

long upt_check_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return (long)i;
	return -1;
}

int upt_child(void (*fn)(void *arg), void *arg, int timeout_s)
{
	struct timespec ts = { 0, 5 * 1000 * 1000 };
	int status = 0;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		fn(arg);
		_exit(0);
	}
	for (long waited = 0; waited < timeout_s * 200L; waited++) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	ck_abort_msg("child did not finish within %d s (hung)", timeout_s);
	return status;
}

pid_t upt_upagerd_env(const char *const *args, const char *const *envs, int err_fd, char *ready,
		      size_t len)
{
	char readyfd[16];
	const char *argv[32];
	int pfd[2], a = 0;
	ssize_t n = 0;
	pid_t pid;

	ck_assert_int_eq(pipe(pfd), 0);
	snprintf(readyfd, sizeof(readyfd), "%d", pfd[1]);
	argv[a++] = "upagerd";
	while (*args && a < 28)
		argv[a++] = *args++;
	argv[a++] = "--ready-fd";
	argv[a++] = readyfd;
	argv[a] = NULL;
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		for (; envs && *envs; envs++)
			putenv((char *)*envs);
		if (err_fd >= 0)
			dup2(err_fd, 2);
		execv("daemon/upagerd", (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	for (int tries = 0; tries < 500 && n <= 0; tries++) { /* 5 s */
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		if (poll(&p, 1, 10) > 0)
			n = read(pfd[0], ready, len - 1);
	}
	close(pfd[0]);
	if (n <= 0)
		upt_daemon_kill(pid);
	ck_assert_msg(n > 0, "upagerd %s did not become ready", argv[1] ? argv[1] : "");
	ready[n] = '\0';
	return pid;
}

pid_t upt_fake_http_start(const char *mode, size_t size, unsigned seed, char *url, size_t len)
{
	char sz[32], sd[16], line[64];
	int pfd[2], port = 0;
	pid_t pid;
	FILE *f;

	snprintf(sz, sizeof(sz), "%zu", size);
	snprintf(sd, sizeof(sd), "%u", seed);
	ck_assert_int_eq(pipe(pfd), 0);
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		execl("tests/fake_http", "fake_http", mode, sz, sd, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	f = fdopen(pfd[0], "r");
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	fclose(f);
	ck_assert_int_eq(sscanf(line, "port %d", &port), 1);
	snprintf(url, len, "http://127.0.0.1:%d/mem.img", port);
	return pid;
}

pid_t upt_upagerd(const char *const *args, const char *env, char *ready, size_t len)
{
	const char *envs[2] = { env, NULL };

	return upt_upagerd_env(args, envs, -1, ready, len);
}

pid_t upt_daemon_start(const char *root, const char *sock, const char *extra1,
		       const char *extra2, int *tcp_port)
{
	char listen[160], ready[512], *tcp;
	const char *args[12];
	int a = 0;
	pid_t pid;

	snprintf(listen, sizeof(listen), "unix:%s", sock);
	args[a++] = "serve";
	args[a++] = "--root";
	args[a++] = root;
	args[a++] = "--listen";
	args[a++] = listen;
	args[a++] = "--listen";
	args[a++] = "tcp:127.0.0.1:0";
	args[a++] = "--log-level";
	args[a++] = "warn";
	if (extra1)
		args[a++] = extra1;
	if (extra2)
		args[a++] = extra2;
	args[a] = NULL;
	pid = upt_upagerd(args, NULL, ready, sizeof(ready));
	tcp = strstr(ready, "tcp:127.0.0.1:");
	ck_assert_ptr_nonnull(tcp);
	if (tcp_port)
		*tcp_port = atoi(tcp + 14);
	return pid;
}

int upt_open_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) { /* unprivileged: the device */
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		fd = dev >= 0 ? ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK) : -1;
		if (dev >= 0)
			close(dev);
	}
	if (fd < 0)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	return fd;
}

void upt_daemon_kill(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
}

upager_t *upt_pager_mode(unsigned fault_mode)
{
	upager_options_t o;
	upager_t *p = NULL;
	int ret;

	upager_options_init(&o);
	o.fault_mode = fault_mode;
	ret = upager_create(&p, &o);
	ck_assert_msg(ret == 0, "upager_create: %s", upager_strerror(ret));
	return p;
}

int upt_free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
	    !getsockname(fd, (struct sockaddr *)&a, &al))
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

long upt_rss_kib(void)
{
	long size, rss = -1;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &size, &rss) != 2)
			rss = -1;
		fclose(f);
	}
	return rss < 0 ? -1 : rss * (long)(sysconf(_SC_PAGESIZE) / 1024);
}

long upt_range_rss_kib(const void *addr, size_t len)
{
	uintptr_t lo = (uintptr_t)addr, hi = lo + len, start = 0, end = 0, s, e;
	long total = 0, kib;
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &s, &e) == 2) {
			start = s, end = e;
			found |= start >= lo && end <= hi;
			continue;
		}
		if (sscanf(line, "Rss: %ld kB", &kib) == 1 && start >= lo && end <= hi)
			total += kib;
	}
	fclose(f);
	return found ? total : -1;
}

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

int upt_count_fds(void)
{
	return count_dir("/proc/self/fd");
}

/* Threads of ours: io_uring's kernel workers (iou-wrk-*, iou-sqp-*) are
 * listed too, and leave on their own a moment after their ring closes. */
int upt_count_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char path[300], comm[32] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		f = fopen(path, "r");
		if (f) {
			if (!fgets(comm, sizeof(comm), f))
				comm[0] = '\0';
			fclose(f);
		}
		n += strncmp(comm, "iou-", 4) != 0;
	}
	closedir(d);
	return n;
}

/*
 * pthread_join returns once the kernel clears the thread's tid, which is
 * before the task leaves /proc/self/task; a joined thread can be listed for a
 * moment longer. Poll until the count reaches want or the deadline passes.
 */
int upt_wait_threads(int want, int timeout_ms)
{
	int n = upt_count_threads();

	for (int waited = 0; n != want && waited < timeout_ms; waited++) {
		usleep(1000);
		n = upt_count_threads();
	}
	return n;
}

/* ---- every byte of an inline region, from many threads ---- */

struct toucher {
	uint8_t *base;
	size_t npages, first, step, len;
	unsigned seed;
	bool write;
	long bad; /* first wrong byte's offset, or -1 */
};

static void *touch_pages(void *arg)
{
	struct toucher *t = arg;
	const size_t ps = UPT_PAGE;

	t->bad = -1;
	/* A stride through the region: neighbours belong to other threads. */
	for (size_t i = t->first; i < t->npages && t->bad < 0; i += t->step) {
		uint8_t *pg = t->base + i * ps;
		size_t off = i * ps, data = off >= t->len ? 0 : t->len - off < ps ? t->len - off : ps;
		long at;

		if (t->write) { /* a write fault first: the same byte back */
			uint8_t v = ps / 2 < data ? upt_byte(off + ps / 2, t->seed) : 0;
			pg[ps / 2] = 0x5a;
			pg[ps / 2] = v;
		}
		at = upt_check_pattern(pg, data, off, t->seed);
		if (at < 0 && data < ps && (at = upt_check_zero(pg + data, ps - data)) >= 0)
			at += (long)data;
		if (at >= 0)
			t->bad = (long)off + at;
	}
	return NULL;
}

void upt_inline_every_byte(upager_source_t *src, unsigned seed, size_t len, size_t npages,
			   unsigned nthreads, int advice, upager_stats_t *st)
{
	const size_t ps = UPT_PAGE;
	struct toucher t[64];
	pthread_t th[64];
	upager_options_t o;
	upager_region_t *r;
	upager_t *p = NULL;
	uint64_t faults;

	ck_assert_uint_le(nthreads, 64);
	if (!seed)
		len = 0;
	upager_options_init(&o);
	o.fault_mode = UPAGER_FAULT_INLINE;
	ck_assert_int_eq(upager_create(&p, &o), 0);
	ck_assert_int_eq(upager_map(p, npages * ps, src, &r), 0);
	ck_assert_int_eq(upager_region_advise(r, advice), 0);
	for (unsigned i = 0; i < nthreads; i++) {
		t[i] = (struct toucher){ .base = upager_region_addr(r), .npages = npages,
					 .first = i, .step = nthreads, .len = len, .seed = seed,
					 .write = i % 2 };
		ck_assert_int_eq(pthread_create(&th[i], NULL, touch_pages, &t[i]), 0);
	}
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(th[i], NULL);
		ck_assert_msg(t[i].bad < 0, "thread %u: wrong byte at offset %ld", i, t[i].bad);
	}
	/* Again, now that every page is there: no fault, same bytes. */
	ck_assert_int_eq(upager_region_stats(r, st), 0);
	faults = st->faults;
	t[0] = (struct toucher){ .base = upager_region_addr(r), .npages = npages, .step = 1,
				 .len = len, .seed = seed };
	touch_pages(&t[0]);
	ck_assert_int_eq(t[0].bad, -1);
	ck_assert_int_eq(upager_region_stats(r, st), 0);
	ck_assert_uint_eq(st->faults, faults);
	ck_assert_uint_eq(st->pages_resident, npages);
	ck_assert_uint_eq(st->pages_filled, npages);
	ck_assert_uint_ge(st->faults, 1);
	/* A fault that joined a fill in flight has no latency of its own, as
	 * in threads mode. */
	ck_assert_uint_ge(st->lat_samples, 1);
	ck_assert_uint_le(st->lat_samples, st->faults);
	ck_assert_uint_eq(st->fill_errors, 0);
	ck_assert_int_eq(upager_release(r), 0);
	ck_assert_int_eq(upager_destroy(p), 0);
}

/* ---- the program's own SIGBUS handler ---- */

sigjmp_buf upt_sigbus_jb;
void *volatile upt_sigbus_addr;
volatile int upt_sigbus_code, upt_sigbus_calls;

void upt_sigbus_catcher(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	upt_sigbus_addr = si->si_addr;
	upt_sigbus_code = si->si_code;
	upt_sigbus_calls++;
	siglongjmp(upt_sigbus_jb, 1);
}

void upt_catch_sigbus(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = upt_sigbus_catcher;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGBUS, &sa, NULL);
}
