/* SPDX-License-Identifier: MIT */
/*
 * upagerd handle's failover (docs/HANDLE.md, "Failover"): a client restores
 * a 256 MiB image from several faulting threads, and discards pages it has
 * read, while the worker serving it is SIGKILLed at random moments. Every
 * byte must be right, every page discarded before a kill must read zero
 * after it, and no thread may be stuck; with the supervisor killed too the
 * client must end (SIGBUS), never hang, and never read a byte that is
 * neither the image's nor zero.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "nginx.h"

#define IMG_SIZE (256ull << 20)
#define SEED 13
#define NREADERS 4
#define KILLS 5
#define MAX_SLOW 8192
#define SLOW_NS 200000ull /* faults longer than this are kept, for the pause */

static char dir[64], sock_path[128], mem_path[128], log_path[128];
static pid_t sup_pid;

/* Shared by the test and its client process. */
struct shared {
	atomic_int started;	/* the client has sent its handshake */
	atomic_int readers_done;
	atomic_uint nslow;
	atomic_ulong discarded, zero_pages;
	uint64_t slow[MAX_SLOW][2]; /* start, end (CLOCK_MONOTONIC ns) */
	uint64_t kill_at[KILLS];
	int nkills;
};
static struct shared *sh;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void nap_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- the daemon: a supervisor and its worker ---- */

/* The first worker dies right after reading its 3000th fault, before
 * answering it (handle.c, UPAGERD_TEST_KILL_AFTER_FAULT): a thread then
 * waits on a fault no worker will answer unless the next one wakes it. */
static void start_handler(void)
{
	const char *args[] = { "handle", "--socket", sock_path, "--mem-file", mem_path,
			       "--log-file", log_path, "--log-level", "info", NULL };
	char ready[256];

	sup_pid = upt_upagerd(args, "UPAGERD_TEST_KILL_AFTER_FAULT=3000", ready, sizeof(ready));
}

/* The supervisor's children, oldest first (at most max): how many. */
static int children(pid_t *out, int max)
{
	char path[64], buf[256], *p = buf, *end;
	ssize_t n;
	int fd, k = 0;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)sup_pid, (int)sup_pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	for (long v; k < max && (v = strtol(p, &end, 10)) > 0; p = end)
		out[k++] = (pid_t)v;
	return k;
}

/* The supervisor's worker now, or -1 (between two): its oldest child (the
 * standby worker is always started after the worker it stands by). */
static pid_t worker_pid(void)
{
	pid_t c[4];

	return children(c, 4) > 0 ? c[0] : -1;
}

/* Waits (up to 10 s) for a worker other than not_this; -1 if none came. */
static pid_t next_worker(pid_t not_this)
{
	for (int i = 0; i < 10000; i++) {
		pid_t w = worker_pid();

		if (w > 0 && w != not_this)
			return w;
		nap_us(1000);
	}
	return -1;
}

static void setup_files(void)
{
	uint8_t *buf = malloc(1 << 20);
	int fd;

	snprintf(dir, sizeof(dir), "/tmp/upagerd-failover-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock_path, sizeof(sock_path), "%s/uffd.sock", dir);
	snprintf(mem_path, sizeof(mem_path), "%s/mem.raw", dir);
	snprintf(log_path, sizeof(log_path), "%s/log", dir);
	fd = open(mem_path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	for (uint64_t off = 0; off < IMG_SIZE; off += 1 << 20) {
		upt_fill(buf, 1 << 20, off, SEED);
		ck_assert_int_eq(write(fd, buf, 1 << 20), 1 << 20);
	}
	close(fd);
	free(buf);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(sh, MAP_FAILED);
}

static void setup(void)
{
	setup_files();
	start_handler();
}

static void teardown(void)
{
	char cmd[300];
	pid_t w = worker_pid();

	/* The supervisor first: it would start another worker. */
	upt_daemon_kill(sup_pid);
	if (w > 0)
		kill(w, SIGKILL); /* reaped by init: not our child */
	munmap(sh, sizeof(*sh));
	if (getenv("FAILOVER_KEEP_LOG")) {
		snprintf(cmd, sizeof(cmd), "cat %s >&2", log_path);
		if (system(cmd)) {
			/* best effort */
		}
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd)) {
		/* best effort */
	}
}

/* ---- the client: a VM monitor restoring its memory ---- */

struct client_opts {
	bool keep_uffd;	 /* keep its own copy of the uffd, as HANDLE.md asks */
	bool watch;	 /* end itself (SIGBUS) once its socket to upagerd closes */
	long reader_nap; /* microseconds between two pages */
	size_t pages;	 /* per reader; 0: all of its share */
};

static const struct client_opts *co;
static uint8_t *mem;
static _Atomic uint8_t *page_state; /* 0 untouched, 1 read and checked, 2 discarded */
static atomic_int stop_discarding;

static void *reader(void *arg)
{
	size_t t = (size_t)arg, ps = UPT_PAGE, n = IMG_SIZE / ps / NREADERS;
	size_t *order = malloc(n * sizeof(*order));
	uint64_t x = 0x9E3779B97F4A7C15ull * (t + 1);

	if (!order)
		_exit(2);
	for (size_t i = 0; i < n; i++)
		order[i] = t + i * NREADERS;
	for (size_t i = n - 1; i > 0; i--) { /* a random order: no read-ahead helps */
		size_t j, tmp;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		j = (size_t)(x % (i + 1));
		tmp = order[i], order[i] = order[j], order[j] = tmp;
	}
	if (co->pages && co->pages < n)
		n = co->pages;
	for (size_t i = 0; i < n; i++) {
		size_t p = order[i];
		uint8_t *at = mem + p * ps;
		uint64_t t0 = now_ns(), t1;

		(void)*(volatile uint8_t *)at;
		t1 = now_ns();
		if (t1 - t0 > SLOW_NS) {
			unsigned k = atomic_fetch_add(&sh->nslow, 1);

			if (k < MAX_SLOW)
				sh->slow[k][0] = t0, sh->slow[k][1] = t1;
		}
		if (upt_check_pattern(at, ps, p * ps, SEED) >= 0) {
			/* Only with no handler left (the uffd gone: the kernel
			 * zero-fills): zero is then what the kernel gives. */
			if (co->keep_uffd || upt_check_zero(at, ps) >= 0)
				_exit(3);
			atomic_fetch_add(&sh->zero_pages, 1);
		}
		atomic_store(&page_state[p], 1);
		if (co->reader_nap)
			nap_us(co->reader_nap);
	}
	free(order);
	atomic_fetch_add(&sh->readers_done, 1);
	return NULL;
}

/* Discards pages already read and checked, as a balloon does: each must
 * read zero from then on, across any number of worker deaths. */
static void *discarder(void *arg)
{
	size_t ps = UPT_PAGE, npages = IMG_SIZE / ps;
	uint64_t x = 88172645463325252ull;

	(void)arg;
	while (!atomic_load(&stop_discarding)) {
		size_t p;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		p = (size_t)(x % npages);
		if (atomic_load(&page_state[p]) == 1) {
			if (madvise(mem + p * ps, ps, MADV_DONTNEED))
				_exit(5);
			atomic_store(&page_state[p], 2);
			atomic_fetch_add(&sh->discarded, 1);
		}
		nap_us(100);
	}
	return NULL;
}

/* Ends the process once no upagerd holds its socket: its faults would
 * otherwise wait for ever (a VM monitor can do the same). */
static void *watcher(void *arg)
{
	struct pollfd p = { .fd = (int)(intptr_t)arg, .events = POLLRDHUP };

	while (poll(&p, 1, -1) < 0 && errno == EINTR)
		;
	kill(getpid(), SIGBUS);
	return NULL;
}

static void client(void *arg)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	struct uffdio_register reg;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pthread_t rd[NREADERS], dis, w;
	char json[256];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
			     .msg_controllen = sizeof(ctl) };
	struct cmsghdr *cm;
	int uffd, s;

	co = arg;
	mem = mmap(NULL, IMG_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
	page_state = calloc(IMG_SIZE / UPT_PAGE, 1);
	uffd = upt_open_uffd();
	if (mem == MAP_FAILED || !page_state || uffd < 0 || ioctl(uffd, UFFDIO_API, &api))
		_exit(80);
	reg = (struct uffdio_register){ .range = { (uintptr_t)mem, IMG_SIZE },
					.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		_exit(81);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	strcpy(sa.sun_path, sock_path);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		_exit(82);
	snprintf(json, sizeof(json),
		 "[{\"base_host_virt_addr\": %llu, \"size\": %llu, \"offset\": 0, \"page_size\": %zu}]",
		 (unsigned long long)(uintptr_t)mem, (unsigned long long)IMG_SIZE, UPT_PAGE);
	iov = (struct iovec){ json, strlen(json) };
	memset(&ctl, 0, sizeof(ctl));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &uffd, sizeof(int));
	if (sendmsg(s, &mh, MSG_NOSIGNAL) != (ssize_t)strlen(json))
		_exit(83);
	if (!co->keep_uffd)
		close(uffd);
	if (co->watch && pthread_create(&w, NULL, watcher, (void *)(intptr_t)s))
		_exit(84);
	atomic_store(&sh->started, 1);
	for (size_t t = 0; t < NREADERS; t++)
		if (pthread_create(&rd[t], NULL, reader, (void *)t))
			_exit(85);
	if (pthread_create(&dis, NULL, discarder, NULL))
		_exit(86);
	for (size_t t = 0; t < NREADERS; t++)
		pthread_join(rd[t], NULL);
	atomic_store(&stop_discarding, 1);
	pthread_join(dis, NULL);
	/* Discarded before (and across) the kills, read only now. */
	for (size_t p = 0; p < IMG_SIZE / UPT_PAGE; p++)
		if (atomic_load(&page_state[p]) == 2 && upt_check_zero(mem + p * UPT_PAGE, UPT_PAGE) >= 0)
			_exit(4);
	_exit(0);
}

static pid_t start_client(const struct client_opts *o)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		client((void *)o);
	for (int i = 0; i < 10000 && !atomic_load(&sh->started); i++)
		nap_us(1000);
	ck_assert_msg(atomic_load(&sh->started), "the client did not start");
	return pid;
}

/* The client's wait status, SIGKILLing it (and failing) past timeout_s. */
static int wait_client(pid_t pid, int timeout_s)
{
	uint64_t until = now_ns() + (uint64_t)timeout_s * 1000000000ull;
	int st = 0;

	while (now_ns() < until) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return st;
		nap_us(1000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	ck_abort_msg("the client was still running after %d s: a thread is stuck", timeout_s);
	return st;
}

static const char *client_exit(int st)
{
	static char why[96];

	if (WIFSIGNALED(st))
		snprintf(why, sizeof(why), "killed by signal %d", WTERMSIG(st));
	else
		snprintf(why, sizeof(why), "exit %d (3: a wrong byte, 4: a discarded page not zero)",
			 WEXITSTATUS(st));
	return why;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The pause each kill cost: the longest fault under way at the kill or
 * begun within 1 ms of it. Said on stdout, with p50 and p99. */
static void report_pauses(void)
{
	unsigned n = atomic_load(&sh->nslow);
	uint64_t pause[KILLS];
	int landed = 0;

	n = n < MAX_SLOW ? n : MAX_SLOW;
	for (int k = 0; k < sh->nkills; k++) {
		pause[k] = 0;
		for (unsigned i = 0; i < n; i++)
			if (sh->slow[i][0] <= sh->kill_at[k] + 1000000 && sh->slow[i][1] >= sh->kill_at[k] &&
			    sh->slow[i][1] - sh->slow[i][0] > pause[k])
				pause[k] = sh->slow[i][1] - sh->slow[i][0];
		landed += pause[k] > 0;
		printf("failover: kill %d: longest fault across it %llu us\n", k,
		       (unsigned long long)(pause[k] / 1000));
	}
	qsort(pause, (size_t)sh->nkills, sizeof(pause[0]), cmp_u64);
	printf("failover: %d kills, %d during faults; pause p50 %llu us, max %llu us; "
	       "%lu pages discarded\n", sh->nkills, landed,
	       (unsigned long long)(pause[sh->nkills / 2] / 1000),
	       (unsigned long long)(pause[sh->nkills - 1] / 1000), atomic_load(&sh->discarded));
	fflush(stdout);
}

START_TEST(worker_killed_five_times)
{
	static const struct client_opts o = { .keep_uffd = true };
	uint64_t x = (uint64_t)now_ns() | 1;
	pid_t client_pid, w = next_worker(-1);
	int st;

	ck_assert_int_gt(w, 0);
	client_pid = start_client(&o);
	for (int k = 0; k < KILLS; k++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		nap_us(20000 + (long)(x % 200000)); /* 20-220 ms: any moment of its life */
		sh->kill_at[k] = now_ns();
		/* The first may have died already (UPAGERD_TEST_KILL_AFTER_FAULT). */
		ck_assert(kill(w, SIGKILL) == 0 || errno == ESRCH);
		sh->nkills = k + 1;
		w = next_worker(w);
		ck_assert_msg(w > 0, "no worker after kill %d", k);
	}
	st = wait_client(client_pid, 100);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client: %s", client_exit(st));
	report_pauses();
	ck_assert_int_gt(atomic_load(&sh->discarded), 0);
}
END_TEST

/*
 * A standby worker waits beside the worker, started in advance: when the
 * worker dies (here the first one, at its 3000th fault) the standby takes
 * the clients over without a fork and exec in the pause, and another
 * standby follows it.
 */
START_TEST(standby_takes_over)
{
	static const struct client_opts o = { .keep_uffd = true, .reader_nap = 50 };
	pid_t client_pid, c[4], w = next_worker(-1), standby = -1, now;
	char cmd[300];
	int st, n = 0;

	ck_assert_int_gt(w, 0);
	for (int i = 0; i < 5000 && standby < 0; i++) {
		if (children(c, 4) >= 2 && c[0] == w)
			standby = c[1];
		else
			nap_us(1000);
	}
	ck_assert_msg(standby > 0, "no standby worker beside worker %d", (int)w);
	client_pid = start_client(&o);
	now = next_worker(w); /* the first worker ends itself at its 3000th fault */
	ck_assert_msg(now == standby, "worker %d took over, not the standby %d", (int)now,
		      (int)standby);
	for (int i = 0; i < 5000 && n < 2; i++) {
		n = children(c, 4);
		if (n < 2 || c[1] == standby)
			n = 0, nap_us(1000);
	}
	ck_assert_msg(n >= 2, "no new standby after the takeover");
	st = wait_client(client_pid, 100);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client: %s", client_exit(st));
	snprintf(cmd, sizeof(cmd), "grep -q 'worker pid %d (started in advance) takes over' '%s'",
		 (int)standby, log_path);
	ck_assert_msg(system(cmd) == 0, "the log does not say the standby took over");
}
END_TEST

START_TEST(sighup_hands_over)
{
	static const struct client_opts o = { .keep_uffd = true };
	pid_t client_pid, w = next_worker(-1);
	int st;

	client_pid = start_client(&o);
	for (int k = 0; k < 3; k++) {
		nap_us(100000);
		ck_assert_int_eq(kill(sup_pid, SIGHUP), 0);
		w = next_worker(w);
		ck_assert_msg(w > 0, "no worker after SIGHUP %d", k);
	}
	st = wait_client(client_pid, 120);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client: %s", client_exit(st));
}
END_TEST

/* Kills the supervisor, then its worker: nothing serves the client any more. */
static void kill_all(void)
{
	pid_t w = next_worker(-1);

	ck_assert_int_gt(w, 0);
	upt_daemon_kill(sup_pid);
	sup_pid = -1;
	ck_assert_int_eq(kill(w, SIGKILL), 0);
}

START_TEST(supervisor_killed_too_client_ends)
{
	/* Slow readers: the restore is under way when both die. */
	static const struct client_opts o = { .keep_uffd = true, .watch = true, .reader_nap = 100 };
	pid_t client_pid = start_client(&o);
	int st;

	nap_us(100000);
	kill_all();
	st = wait_client(client_pid, 30);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "client: %s", client_exit(st));
}
END_TEST

START_TEST(supervisor_killed_too_uffd_closed_zero_fill)
{
	/* A client that did not keep its uffd: when the last copy closes, the
	 * kernel drops the registration and faults read zero (wrong data for a
	 * restore: why HANDLE.md says to keep it). Never a hang, and never a
	 * byte that is neither the image's nor zero. */
	static const struct client_opts o = { .keep_uffd = false, .reader_nap = 100 };
	pid_t client_pid = start_client(&o);
	int st;

	nap_us(100000);
	kill_all();
	st = wait_client(client_pid, 60);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client: %s", client_exit(st));
	printf("failover: uffd closed, no handler left: %lu pages read zero instead of the "
	       "image's bytes\n", atomic_load(&sh->zero_pages));
	ck_assert_int_gt(atomic_load(&sh->zero_pages), 0);
}
END_TEST

/* ---- under systemd: the FD store, spoken as systemd does ---- */

#define STORE_MAX 64

/* A fake NOTIFY_SOCKET: what upagerd stores (FDSTORE=1, FDNAME=), removes
 * (FDSTOREREMOVE=1) and says (READY=1), kept as systemd would. */
static struct {
	int sock;
	int fds[STORE_MAX];
	char names[STORE_MAX][64];
	int n;
	bool ready;
} store = { .sock = -1 };
static pid_t store_daemon = -1;
static const char *store_mem; /* store_start's --mem-file; NULL: mem_path */
static struct upt_nginx ngx;  /* fdstore_url_pinned's, stopped by store_teardown */
static bool ngx_up;

static void store_pump(int ms)
{
	uint64_t until = now_ns() + (uint64_t)ms * 1000000;

	do {
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(8 * sizeof(int))];
		} ctl;
		char text[512], name[64] = "stored";
		struct iovec iov = { text, sizeof(text) - 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
				     .msg_controllen = sizeof(ctl) };
		struct pollfd p = { .fd = store.sock, .events = POLLIN };
		int got[8], ngot = 0;
		ssize_t n;
		char *v;

		if (poll(&p, 1, 1) <= 0)
			continue;
		n = recvmsg(store.sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0)
			continue;
		text[n] = '\0';
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
			for (size_t k = 0; cm->cmsg_type == SCM_RIGHTS &&
					   k < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int) && ngot < 8; k++)
				memcpy(&got[ngot++], CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
		if ((v = strstr(text, "FDNAME=")))
			sscanf(v + 7, "%63[^\n]", name);
		if (strstr(text, "READY=1"))
			store.ready = true;
		if (strstr(text, "FDSTOREREMOVE=1"))
			for (int i = 0; i < store.n; i++)
				if (!strcmp(store.names[i], name)) {
					close(store.fds[i]);
					store.fds[i] = store.fds[--store.n];
					memcpy(store.names[i], store.names[store.n], sizeof(store.names[i]));
					i--;
				}
		for (int k = 0; k < ngot; k++) {
			if (strstr(text, "FDSTORE=1") && store.n < STORE_MAX) {
				store.fds[store.n] = got[k];
				snprintf(store.names[store.n++], sizeof(store.names[0]), "%s", name);
			} else {
				close(got[k]);
			}
		}
	} while (now_ns() < until);
}

/* upagerd handle under a fake systemd: NOTIFY_SOCKET, and the FD store
 * handed back as LISTEN_FDS (with LISTEN_FDNAMES), as systemd does on a
 * restart. Returns once it said READY=1. */
static void store_start(void)
{
	char notify[160];
	pid_t pid;

	snprintf(notify, sizeof(notify), "%s/notify", dir);
	store.ready = false;
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char names[STORE_MAX * 64] = "", num[16];

		for (int i = 0; i < store.n; i++) /* out of the way of 3.. first */
			store.fds[i] = fcntl(store.fds[i], F_DUPFD, 3 + STORE_MAX);
		for (int i = 0; i < store.n; i++) {
			dup2(store.fds[i], 3 + i);
			strcat(names, i ? ":" : "");
			strcat(names, store.names[i]);
		}
		snprintf(num, sizeof(num), "%d", store.n);
		setenv("LISTEN_FDS", num, 1);
		snprintf(num, sizeof(num), "%d", (int)getpid());
		setenv("LISTEN_PID", num, 1);
		setenv("LISTEN_FDNAMES", names, 1);
		setenv("NOTIFY_SOCKET", notify, 1);
		if (!store.n)
			unsetenv("LISTEN_FDS");
		execl("daemon/upagerd", "upagerd", "handle", "--socket", sock_path, "--mem-file",
		      store_mem ? store_mem : mem_path, "--log-file", log_path, (char *)NULL);
		_exit(127);
	}
	store_daemon = pid;
	for (int i = 0; i < 100 && !store.ready; i++)
		store_pump(50);
	ck_assert_msg(store.ready, "upagerd sent no READY=1 (%d descriptors handed back)", store.n);
}

static void store_setup(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	setup_files();
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", dir);
	store.sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(store.sock, 0);
	ck_assert_int_eq(bind(store.sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
	sup_pid = -1;
}

static void store_teardown(void)
{
	if (store_daemon > 0)
		upt_daemon_kill(store_daemon);
	store_daemon = -1;
	for (int i = 0; i < store.n; i++)
		close(store.fds[i]);
	store.n = 0;
	close(store.sock);
	store.sock = -1;
	if (ngx_up)
		upt_nginx_stop(&ngx);
	ngx_up = false;
	teardown();
}

static int store_count(const char *prefix)
{
	int k = 0;

	for (int i = 0; i < store.n; i++)
		k += !strncmp(store.names[i], prefix, strlen(prefix));
	return k;
}

/* The client's wait status, with the FD store served meanwhile. */
static int store_wait_client(pid_t client_pid, int timeout_s)
{
	int st = 0;

	for (int i = 0; i < timeout_s * 1000 && waitpid(client_pid, &st, WNOHANG) != client_pid; i++)
		store_pump(1);
	if (waitpid(client_pid, &st, WNOHANG) == 0) {
		kill(client_pid, SIGKILL);
		waitpid(client_pid, &st, 0);
		ck_abort_msg("the client was still running after %d s: a thread is stuck", timeout_s);
	}
	return st;
}

START_TEST(fdstore_restarts)
{
	static const struct client_opts o = { .keep_uffd = true };
	uint64_t x = (uint64_t)now_ns() | 1;
	pid_t client_pid;
	int st = 0;

	store_start();
	ck_assert_int_eq(store_count("upagerd-memfile"), 1);
	client_pid = start_client(&o);
	for (int k = 0; k < 3; k++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		store_pump(50 + (int)(x % 200));
		ck_assert_int_ge(store_count("upagerd-c"), 3); /* sock, uffd, state[, pidfd] */
		sh->kill_at[k] = now_ns();
		sh->nkills = k + 1;
		upt_daemon_kill(store_daemon);
		store_daemon = -1;
		store_start();
	}
	st = store_wait_client(client_pid, 120);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client: %s", client_exit(st));
	report_pauses();
	/* Its session over, what was stored for it is removed. */
	for (int i = 0; i < 100 && store_count("upagerd-c"); i++)
		store_pump(20);
	ck_assert_int_eq(store_count("upagerd-c"), 0);
}
END_TEST

/*
 * A memory file at a URL under systemd: its version, pinned at the first
 * start, waits in the FD store (upagerd-memfile) with the clients. A
 * restarted upagerd serves that version (every byte right); one that finds
 * the object replaced serves none of the new one, and says so.
 */
START_TEST(fdstore_url_pinned)
{
	static const struct client_opts o = { .keep_uffd = true };
	const char *no_nginx = upt_nginx_start(&ngx);
	char url[160], cmd[400];
	pid_t client_pid;
	int st;

	UPT_NEED_NGINX(no_nginx);
	ngx_up = true;
	upt_nginx_put(&ngx, "mem.raw", IMG_SIZE, SEED, 0); /* mem_path's bytes */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/mem.raw", ngx.port);
	store_mem = url;
	store_start();
	ck_assert_int_eq(store_count("upagerd-memfile"), 1);
	client_pid = start_client(&o);
	store_pump(100);
	upt_daemon_kill(store_daemon);
	store_daemon = -1;
	store_start();
	st = store_wait_client(client_pid, 120);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client: %s", client_exit(st));
	snprintf(cmd, sizeof(cmd), "grep -q 'version pinned' '%s'", log_path);
	ck_assert_msg(system(cmd) != 0, "the same version was taken for another");
	/* Replaced (another mtime: another ETag), then a restart. */
	upt_nginx_put(&ngx, "mem.raw", IMG_SIZE, SEED, 100);
	upt_daemon_kill(store_daemon);
	store_daemon = -1;
	store_start();
	snprintf(cmd, sizeof(cmd), "grep -q 'cannot open the version pinned at start' '%s'",
		 log_path);
	ck_assert_msg(system(cmd) == 0, "the restarted upagerd took the replaced object");
}
END_TEST

/* ---- --metrics ---- */

static int connect_port(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_eq(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return s;
}

/* Sends req, returns what came back until the server closed (malloc'd). */
static char *scrape(int port, const char *req)
{
	size_t len = 0, cap = 1 << 16;
	char *buf = malloc(cap + 1);
	int s = connect_port(port);
	ssize_t n;

	ck_assert_int_eq(send(s, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	while (len < cap && (n = recv(s, buf + len, cap - len, 0)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(s);
	return buf;
}

/* The value of a sample line "name value", or -1. */
static long long sample(const char *text, const char *name)
{
	char key[200];
	const char *at;

	snprintf(key, sizeof(key), "\n%s ", name);
	at = strstr(text, key);
	return at ? atoll(at + strlen(key)) : -1;
}

/* Scrapers that send nothing, too much, or ask for something else are
 * closed (2 s at most each) and the next scrape is answered. */
static void hostile_scrapers(int port)
{
	char big[8192], *r;
	int idle = connect_port(port), flood = connect_port(port);

	memset(big, 'A', sizeof(big));
	ck_assert_int_gt(send(flood, big, sizeof(big), MSG_NOSIGNAL), 0);
	r = scrape(port, "GET /nothing HTTP/1.0\r\n\r\n");
	ck_assert_msg(strstr(r, " 404 "), "%s", r);
	free(r);
	close(idle);
	close(flood);
}

START_TEST(metrics_handle)
{
	static const struct client_opts o = { .keep_uffd = true, .pages = 256 };
	char addr[32], *r;
	const char *args[] = { "handle", "--socket", sock_path, "--mem-file", mem_path,
			       "--log-file", log_path, "--metrics", addr, NULL };
	char ready[256];
	int port = upt_free_port(), st;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	sup_pid = upt_upagerd(args, NULL, ready, sizeof(ready));
	st = wait_client(start_client(&o), 60);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client: %s", client_exit(st));
	hostile_scrapers(port);
	r = scrape(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert_msg(strstr(r, "HTTP/1.0 200 OK"), "%s", r);
	/* 4 readers x 256 pages, and the discards' zero pages if read again. */
	ck_assert_int_ge(sample(r, "upagerd_handle_faults_total"), 4 * 256);
	ck_assert_int_ge(sample(r, "upagerd_handle_pages_total"), 4 * 256);
	ck_assert_int_ge(sample(r, "upagerd_handle_bytes_total"), 4 * 256 * (long long)UPT_PAGE);
	ck_assert_int_eq(sample(r, "upagerd_handle_errors_total"), 0);
	ck_assert_int_eq(sample(r, "upagerd_handle_clients_total"), 1);
	ck_assert_int_eq(sample(r, "upagerd_handle_fault_seconds_count"),
			 sample(r, "upagerd_handle_faults_total"));
	ck_assert_int_eq(sample(r, "upagerd_handle_fault_seconds_bucket{le=\"+Inf\"}"),
			 sample(r, "upagerd_handle_faults_total"));
	free(r);
}
END_TEST

START_TEST(metrics_handle_per_client)
{
	/* Slow readers: still connected when scraped. */
	static const struct client_opts o = { .keep_uffd = true, .pages = 2000, .reader_nap = 200 };
	char addr[32], *r, want[64];
	const char *args[] = { "handle", "--socket", sock_path, "--mem-file", mem_path,
			       "--log-file", log_path, "--metrics", addr, NULL };
	char ready[256];
	int port = upt_free_port(), st;
	pid_t client_pid;

	snprintf(addr, sizeof(addr), "%d", port); /* a bare port: loopback */
	sup_pid = upt_upagerd(args, NULL, ready, sizeof(ready));
	client_pid = start_client(&o);
	nap_us(300000);
	r = scrape(port, "GET /metrics HTTP/1.0\r\n\r\n");
	snprintf(want, sizeof(want), "upagerd_handle_client_faults_total{pid=\"%d\"", (int)client_pid);
	ck_assert_msg(strstr(r, want), "no %s in %s", want, r);
	ck_assert_int_eq(sample(r, "upagerd_handle_clients"), 1);
	free(r);
	st = wait_client(client_pid, 60);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client: %s", client_exit(st));
}
END_TEST

START_TEST(metrics_serve)
{
	char root[128], sock[160], addr[32], metrics_arg[48], *r;
	int port = upt_free_port();
	pid_t pid;

	snprintf(root, sizeof(root), "%s", dir);
	snprintf(sock, sizeof(sock), "%s/serve.sock", dir);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	snprintf(metrics_arg, sizeof(metrics_arg), "--metrics=%s", addr);
	pid = upt_daemon_start(root, sock, metrics_arg, NULL, NULL);
	hostile_scrapers(port);
	r = scrape(port, "GET /metrics HTTP/1.0\r\n\r\n");
	upt_daemon_kill(pid);
	ck_assert_msg(strstr(r, "HTTP/1.0 200 OK"), "%s", r);
	ck_assert_int_eq(sample(r, "upagerd_serve_requests_total"), 0);
	ck_assert_int_eq(sample(r, "upagerd_serve_clients"), 0);
	ck_assert_int_ge(sample(r, "upagerd_serve_bytes_total"), 0);
	free(r);
}
END_TEST

START_TEST(metrics_not_remote)
{
	const char *args[] = { "handle", "--socket", sock_path, "--mem-file", mem_path,
			       "--metrics", "0.0.0.0:9", "--no-supervisor", NULL };
	int st;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 2);
		execv("daemon/upagerd", (char *const *)(const char *[]){ "upagerd", args[0], args[1],
			args[2], args[3], args[4], args[5], args[6], args[7], NULL });
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %#x", st);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("failover");
	TCase *tc = upt_tcase(s, "kill"); /* alone: CK_RUN_CASE=kill loops it */

	tcase_set_timeout(tc, 180);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, worker_killed_five_times);
	tc = upt_tcase(s, "failover");
	tcase_set_timeout(tc, 180);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, sighup_hands_over);
	tcase_add_test(tc, standby_takes_over);
	tcase_add_test(tc, supervisor_killed_too_client_ends);
	tcase_add_test(tc, supervisor_killed_too_uffd_closed_zero_fill);
	tc = upt_tcase(s, "fdstore");
	tcase_set_timeout(tc, 180);
	tcase_add_checked_fixture(tc, store_setup, store_teardown);
	tcase_add_test(tc, fdstore_restarts);
	tcase_add_test(tc, fdstore_url_pinned);
	tc = upt_tcase(s, "metrics");
	tcase_add_checked_fixture(tc, setup_files, teardown);
	tcase_add_test(tc, metrics_handle);
	tcase_add_test(tc, metrics_handle_per_client);
	tcase_add_test(tc, metrics_serve);
	tcase_add_test(tc, metrics_not_remote);
	return s;
}

int main(void)
{
	return upt_main(suite);
}
