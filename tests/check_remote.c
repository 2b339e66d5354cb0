/* SPDX-License-Identifier: MIT */
/*
 * The remote source against real upagerd processes: every byte over Unix
 * sockets and TCP, many threads, a daemon killed and restarted mid-stream,
 * and a daemon gone or hung for good, where the access must end in SIGBUS
 * within the deadline, never in wrong data or a hang.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fake_server.h"
#include "helpers.h"
#include "protocol.h"

#define PAGES 1024
#define SEED 55

static char dir[64], root[96], sock[128], tcp_uri[64], unix_uri[160];
static pid_t daemon_pid;

static void start(void)
{
	int port;

	daemon_pid = upt_daemon_start(root, sock, NULL, NULL, &port);
	snprintf(tcp_uri, sizeof(tcp_uri), "tcp:127.0.0.1:%d", port);
}

static void setup(void)
{
	char path[200];
	uint8_t *buf = malloc(PAGES * UPT_PAGE);
	int fd;

	snprintf(dir, sizeof(dir), "/tmp/upager-remote-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(root, sizeof(root), "%s/root", dir);
	mkdir(root, 0700);
	snprintf(path, sizeof(path), "%s/mem.img", root);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	upt_fill(buf, PAGES * UPT_PAGE - 100, 0, SEED); /* a ragged end */
	ck_assert_int_eq(write(fd, buf, PAGES * UPT_PAGE - 100), (ssize_t)(PAGES * UPT_PAGE - 100));
	close(fd);
	free(buf);
	snprintf(sock, sizeof(sock), "%s/upagerd.sock", dir);
	snprintf(unix_uri, sizeof(unix_uri), "unix:%s", sock);
	start();
}

static void teardown(void)
{
	char cmd[128];

	upt_daemon_kill(daemon_pid);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0) {
		/* best effort */
	}
}

static void check_region_bytes(const uint8_t *a)
{
	const size_t len = PAGES * UPT_PAGE;

	ck_assert_int_eq(upt_check_pattern(a, len - 100, 0, SEED), -1);
	ck_assert_int_eq(upt_check_zero(a + len - 100, 100), -1);
}

static upager_region_t *remote_region(upager_t *p, const char *uri, unsigned deadline_ms,
				      int advice)
{
	upager_remote_options_t o;
	upager_source_t *s;
	upager_region_t *r;

	upager_remote_options_init(&o);
	if (deadline_ms)
		o.deadline_ms = deadline_ms;
	ck_assert_int_eq(upager_source_remote(uri, "mem.img", &o, &s), 0);
	ck_assert_int_eq(upager_map(p, PAGES * UPT_PAGE, s, &r), 0);
	upager_source_release(s);
	ck_assert_int_eq(upager_region_advise(r, advice), 0);
	return r;
}

START_TEST(test_every_byte_unix_and_tcp)
{
	const char *uris[2] = { unix_uri, tcp_uri };

	for (int k = 0; k < 2; k++) {
		upager_t *p = upt_pager(1, 0);
		upager_region_t *r = remote_region(p, uris[k], 0, UPAGER_ADV_NORMAL);
		upager_region_t *q = remote_region(p, uris[k], 0, UPAGER_ADV_RANDOM);
		uint8_t *b = upager_region_addr(q);
		upager_stats_t st;

		check_region_bytes(upager_region_addr(r)); /* sequential: windows, readahead */
		for (size_t i = 0; i < PAGES; i++) {       /* scattered, page by page */
			size_t pg = (i * 389) % PAGES;
			ck_assert_uint_eq(b[pg * UPT_PAGE + 9], pg * UPT_PAGE + 9 < PAGES * UPT_PAGE - 100
									  ? upt_byte(pg * UPT_PAGE + 9, SEED)
									  : 0);
		}
		check_region_bytes(b);
		ck_assert_int_eq(upager_region_stats(q, &st), 0);
		/* The kernel may report a fault twice (a waiter woken early faults
		 * again); what matters is one fill per page, no errors. */
		ck_assert_uint_ge(st.faults, PAGES);
		ck_assert_uint_eq(st.pages_filled, PAGES);
		ck_assert_uint_eq(st.fill_errors, 0);
		upager_destroy(p);
	}
}
END_TEST

START_TEST(test_bad_arguments)
{
	upager_remote_options_t o;
	upager_source_t *s;
	char nowhere[200];

	upager_remote_options_init(&o);
	ck_assert_int_eq(upager_source_remote(NULL, "mem.img", NULL, &s), -EINVAL);
	ck_assert_int_eq(upager_source_remote(unix_uri, NULL, NULL, &s), -EINVAL);
	ck_assert_int_eq(upager_source_remote(unix_uri, "", NULL, &s), -EINVAL);
	ck_assert_int_eq(upager_source_remote(unix_uri, "mem.img", NULL, NULL), -EINVAL);
	ck_assert_int_eq(upager_source_remote("http://x", "mem.img", NULL, &s), -EINVAL);
	ck_assert_int_eq(upager_source_remote("tcp:nocolon", "mem.img", NULL, &s), -EINVAL);
	o.deadline_ms = 0;
	ck_assert_int_eq(upager_source_remote(unix_uri, "mem.img", &o, &s), -EINVAL);
	upager_remote_options_init(&o);
	o.reserved[0] = 1;
	ck_assert_int_eq(upager_source_remote(unix_uri, "mem.img", &o, &s), -EINVAL);
	ck_assert_int_eq(upager_source_remote(unix_uri, "no-such.img", NULL, &s), -ENOENT);
	ck_assert_int_eq(upager_source_remote(unix_uri, "../etc/passwd", NULL, &s), -EACCES);
	snprintf(nowhere, sizeof(nowhere), "unix:%s/nobody.sock", dir);
	ck_assert_int_eq(upager_source_remote(nowhere, "mem.img", NULL, &s), -ENOENT);
	ck_assert_int_eq(upager_source_remote("tcp:127.0.0.1:1", "mem.img", NULL, &s), -ECONNREFUSED);
}
END_TEST

struct toucher {
	const uint8_t *a;
	unsigned first;
	long bad;
};

static void *touch_pages(void *arg)
{
	struct toucher *t = arg;

	t->bad = -1;
	for (size_t i = t->first; i < PAGES; i += 8) {
		size_t off = i * UPT_PAGE;
		uint8_t want = off + 1 < PAGES * UPT_PAGE - 100 ? upt_byte(off + 1, SEED) : 0;
		if (t->a[off + 1] != want) {
			t->bad = (long)off;
			break;
		}
	}
	return NULL;
}

START_TEST(test_eight_threads)
{
	upager_t *p = upt_pager(2, 0);
	upager_region_t *r = remote_region(p, unix_uri, 0, UPAGER_ADV_RANDOM);
	struct toucher t[8];
	pthread_t th[8];

	for (unsigned i = 0; i < 8; i++) {
		t[i] = (struct toucher){ .a = upager_region_addr(r), .first = i };
		pthread_create(&th[i], NULL, touch_pages, &t[i]);
	}
	for (unsigned i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		ck_assert_msg(t[i].bad < 0, "thread %u: wrong byte at %ld", i, t[i].bad);
	}
	check_region_bytes(upager_region_addr(r));
	upager_destroy(p);
}
END_TEST

/* SIGKILL the daemon half way, start another on the same socket: the
 * faults waiting meanwhile complete, with the right bytes. */
static void *restart_later(void *arg)
{
	usleep(300 * 1000);
	start();
	return NULL;
}

START_TEST(test_daemon_restart)
{
	upager_t *p = upt_pager(1, 0);
	upager_region_t *r = remote_region(p, unix_uri, 10000, UPAGER_ADV_RANDOM);
	const uint8_t *a = upager_region_addr(r);
	pthread_t th;

	ck_assert_int_eq(upt_check_pattern(a, PAGES / 2 * UPT_PAGE, 0, SEED), -1);
	upt_daemon_kill(daemon_pid);
	ck_assert_int_eq(pthread_create(&th, NULL, restart_later, NULL), 0);
	check_region_bytes(a); /* blocks until the new daemon answers */
	pthread_join(th, NULL);
	upager_destroy(p);
}
END_TEST

/* Server gone (killed) or hung (stopped) for good: SIGBUS within the
 * deadline, checked in a child. */
static void gone_child(void *arg)
{
	const int *hang = arg;
	upager_t *p;
	upager_region_t *r;

	if (upager_create(&p, NULL))
		_exit(2);
	r = remote_region(p, unix_uri, 1000, UPAGER_ADV_RANDOM);
	if (*hang)
		kill(daemon_pid, SIGSTOP);
	else
		upt_daemon_kill(daemon_pid);
	_exit(*(volatile uint8_t *)upager_region_addr(r) == 0 ? 3 : 4);
}

static void check_gone(int hang)
{
	struct timespec t0, t1;
	int status;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	status = upt_child(gone_child, &hang, 30);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "status %#x", status);
	/* deadline 1 s, plus at most one connect attempt (5 s) */
	ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 8);
	if (hang)
		kill(daemon_pid, SIGCONT);
}

START_TEST(test_daemon_gone)
{
	check_gone(0);
}
END_TEST

START_TEST(test_daemon_hung)
{
	check_gone(1);
}
END_TEST

static void write_secret(char *path, size_t len, const char *name, const char *secret)
{
	FILE *f;

	snprintf(path, len, "%s/%s", dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%s\n", secret);
	fclose(f);
	chmod(path, 0600);
}

/* mem.img from uri, with secret_file, byte for byte. */
static void check_served(const char *uri, const char *secret_file)
{
	upager_remote_options_t o;
	upager_source_t *s;
	upager_region_t *r;
	upager_t *p;

	upager_remote_options_init(&o);
	o.secret_file = secret_file;
	ck_assert_int_eq(upager_source_remote(uri, "mem.img", &o, &s), 0);
	p = upt_pager(1, 0);
	ck_assert_int_eq(upager_map(p, PAGES * UPT_PAGE, s, &r), 0);
	upager_source_release(s);
	check_region_bytes(upager_region_addr(r));
	upager_destroy(p);
}

/* A daemon with --secret-file: TCP clients must know the secret, and so
 * must Unix-socket clients that have it (they ask for the challenge). */
START_TEST(test_authentication)
{
	char good[128], bad[128], flag[160], tcp[64];
	upager_remote_options_t o;
	upager_source_t *s;
	pid_t authd;
	int port;

	write_secret(good, sizeof(good), "secret", "correct horse battery staple");
	write_secret(bad, sizeof(bad), "wrong", "correct horse battery stable");
	upt_daemon_kill(daemon_pid); /* its socket path is reused below */
	daemon_pid = 0;
	snprintf(flag, sizeof(flag), "--secret-file=%s", good);
	authd = upt_daemon_start(root, sock, flag, NULL, &port);
	snprintf(tcp, sizeof(tcp), "tcp:127.0.0.1:%d", port);

	check_served(tcp, good);
	upager_remote_options_init(&o);
	o.secret_file = bad;
	ck_assert_int_eq(upager_source_remote(tcp, "mem.img", &o, &s), -EACCES);
	o.secret_file = NULL;
	ck_assert_int_eq(upager_source_remote(tcp, "mem.img", &o, &s), -EACCES);
	o.secret_file = "/nonexistent/secret";
	ck_assert_int_eq(upager_source_remote(tcp, "mem.img", &o, &s), -ENOENT);
	/* Unix sockets are guarded by their permissions, not the secret... */
	check_served(unix_uri, NULL);
	/* ...but a client with the secret asks the server to prove it there too. */
	check_served(unix_uri, good);
	o.secret_file = bad;
	ck_assert_int_eq(upager_source_remote(unix_uri, "mem.img", &o, &s), -EACCES);
	daemon_pid = authd; /* teardown stops it */
}
END_TEST

/* ---- snapshots served by upagerd ---- */

/* A snapshot in the root of PAGES pages: pattern, except page%5==1 zero and page%5==2 absent. */
static void save_snapshot(const char *name)
{
	char path[256];
	uint8_t *m = mmap(NULL, PAGES * UPT_PAGE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	for (size_t i = 0; i < PAGES; i++) {
		if (i % 5 == 1)
			memset(m + i * UPT_PAGE, 0, UPT_PAGE);
		else if (i % 5 != 2)
			upt_fill(m + i * UPT_PAGE, UPT_PAGE, i * UPT_PAGE, SEED);
	}
	snprintf(path, sizeof(path), "%s/%s", root, name);
	ck_assert_int_eq(upager_snapshot_save(m, PAGES * UPT_PAGE, path), 0);
	munmap(m, PAGES * UPT_PAGE);
}

static int snapshot_page_ok(const uint8_t *a, size_t i)
{
	return i % 5 == 1 || i % 5 == 2 ? upt_check_zero(a + i * UPT_PAGE, UPT_PAGE) < 0
					: upt_check_pattern(a + i * UPT_PAGE, UPT_PAGE, i * UPT_PAGE,
							    SEED) < 0;
}

/* A restore of the local snapshot at path that records its working set,
 * touches 50 pages and is released: it writes path.ws. */
static void record_50_pages(upager_t *p, const char *path)
{
	upager_region_t *r;
	const uint8_t *a;

	ck_assert_int_eq(upager_snapshot_map(p, path, UPAGER_SNAP_RECORD, &r), 0);
	upager_region_advise(r, UPAGER_ADV_RANDOM);
	a = upager_region_addr(r);
	for (size_t i = 0; i < 50; i++)
		ck_assert(snapshot_page_ok(a, (i * 389) % PAGES));
	upager_release(r);
}

START_TEST(test_snapshot_remote)
{
	const char *uris[2] = { unix_uri, tcp_uri };
	upager_t *p = upt_pager(1, 0);
	upager_source_t *s;
	upager_region_t *r;
	upager_stats_t st;

	save_snapshot("vm.snap");
	ck_assert_int_eq(upager_snapshot_map_remote(p, unix_uri, "vm.snap", NULL, UPAGER_SNAP_RECORD,
						    &r), -EOPNOTSUPP);
	ck_assert_int_eq(upager_snapshot_map_remote(p, unix_uri, "vm.snap", NULL, 1u << 9, &r),
			 -EINVAL);
	ck_assert_int_eq(upager_snapshot_map_remote(NULL, unix_uri, "vm.snap", NULL, 0, &r), -EINVAL);
	ck_assert_int_eq(upager_snapshot_map_remote(p, unix_uri, "none.snap", NULL, 0, &r), -ENOENT);
	for (int k = 0; k < 2; k++) {
		for (int adv = 0; adv < 2; adv++) {
			const uint8_t *a;

			ck_assert_int_eq(upager_snapshot_map_remote(p, uris[k], "vm.snap", NULL, 0, &r), 0);
			ck_assert_uint_eq(upager_region_size(r), PAGES * UPT_PAGE);
			upager_region_advise(r, adv ? UPAGER_ADV_RANDOM : UPAGER_ADV_NORMAL);
			a = upager_region_addr(r);
			for (size_t i = 0; i < PAGES; i++) {
				size_t pg = adv ? (i * 389) % PAGES : i;

				ck_assert_msg(snapshot_page_ok(a, pg), "page %zu wrong", pg);
			}
			ck_assert_int_eq(upager_region_stats(r, &st), 0);
			ck_assert_uint_eq(st.fill_errors, 0);
			upager_release(r);
		}
	}
	/* A working set recorded on a local restore, put beside it on the server:
	 * a remote restore fetches it and prefetches its pages. */
	{
		char local[256];
		const uint8_t *a;

		snprintf(local, sizeof(local), "%s/vm.snap", root);
		ck_assert_int_eq(upager_snapshot_map_remote(p, unix_uri, "vm.snap", NULL,
							    UPAGER_SNAP_PREFETCH, &r), 0);
		upager_release(r); /* no PATH.ws yet: a restore without prefetch */
		record_50_pages(p, local);
		ck_assert_int_eq(upager_snapshot_map_remote(p, tcp_uri, "vm.snap", NULL,
							    UPAGER_SNAP_PREFETCH, &r), 0);
		for (int i = 0; i < 3000; i++) {
			ck_assert_int_eq(upager_region_stats(r, &st), 0);
			if (st.pages_prefetched >= 50)
				break;
			usleep(1000);
		}
		ck_assert_uint_eq(st.pages_prefetched, 50);
		a = upager_region_addr(r);
		for (size_t i = 0; i < PAGES; i++)
			ck_assert(snapshot_page_ok(a, i));
		upager_release(r);
	}
	/* An incremental snapshot beside its parent: served through the chain. */
	{
		char local[256], child[256];
		uint8_t *a;

		snprintf(local, sizeof(local), "%s/vm.snap", root);
		snprintf(child, sizeof(child), "%s/vm2.snap", root);
		ck_assert_int_eq(upager_snapshot_map(p, local, 0, &r), 0);
		a = upager_region_addr(r);
		memset(a + 7 * UPT_PAGE, 0x5A, UPT_PAGE);
		ck_assert_int_eq(upager_snapshot_save_incremental(a, PAGES * UPT_PAGE, local, child), 0);
		upager_release(r);
		ck_assert_int_eq(upager_snapshot_map_remote(p, unix_uri, "vm2.snap", NULL, 0, &r), 0);
		a = upager_region_addr(r);
		for (size_t i = 0; i < PAGES; i++)
			if (i == 7)
				ck_assert(a[i * UPT_PAGE] == 0x5A && a[i * UPT_PAGE + UPT_PAGE - 1] == 0x5A);
			else
				ck_assert(snapshot_page_ok(a, i));
		upager_release(r);
	}
	/* Opened plainly, the same file is its own bytes: the header first. */
	ck_assert_int_eq(upager_source_remote(unix_uri, "vm.snap", NULL, &s), 0);
	ck_assert_int_eq(upager_map(p, UPT_PAGE, s, &r), 0);
	upager_source_release(s);
	ck_assert_int_eq(memcmp(upager_region_addr(r), "UPGSNAP1", 8), 0);
	upager_release(r);
	/* A raw file asked for as an image is its own image. */
	ck_assert_int_eq(upager_snapshot_map_remote(p, unix_uri, "mem.img", NULL, 0, &r), 0);
	check_region_bytes(upager_region_addr(r));
	upager_release(r);
	upager_destroy(p);
}
END_TEST

static __thread sigjmp_buf bus_jmp;

static void on_bus(int sig)
{
	(void)sig;
	siglongjmp(bus_jmp, 1);
}

struct racer {
	const uint8_t *a;
	size_t page;
	pthread_barrier_t *go;
	int result; /* 0 right bytes, 1 wrong bytes, 2 SIGBUS */
	int (*page_ok)(const uint8_t *a, size_t page);
	unsigned delay_ms; /* after the barrier, before the access */
};

static void *race_page(void *arg)
{
	struct racer *t = arg;

	pthread_barrier_wait(t->go);
	if (t->delay_ms)
		usleep(t->delay_ms * 1000);
	if (sigsetjmp(bus_jmp, 1)) {
		t->result = 2;
		return NULL;
	}
	t->result = t->page_ok(t->a, t->page) ? 0 : 1;
	return NULL;
}

/*
 * Page 8 is damaged. Sixteen threads fault on pages 0..15 at once, so that
 * their fills share READ frames: only page 8's access may fail. Without
 * UFFD_FEATURE_THREAD_ID (and UFFDIO_POISON) the SIGBUS is the process's,
 * delivered to any thread: then page 8 is touched alone, afterwards.
 */
static void touch_damaged(void *arg)
{
	struct sigaction sa = { .sa_handler = on_bus };
	bool directed = upt_features() & (UPAGER_FEAT_THREAD_ID | UPAGER_FEAT_POISON);
	int nt = directed ? 16 : 15;
	pthread_t th[16];
	struct racer t[16];
	pthread_barrier_t go;
	upager_t *p = upt_pager(2, 0);
	upager_region_t *r;
	const volatile uint8_t *a;

	(void)arg;
	sigaction(SIGBUS, &sa, NULL);
	if (upager_snapshot_map_remote(p, unix_uri, "bad.snap", NULL, 0, &r))
		_exit(10);
	upager_region_advise(r, UPAGER_ADV_RANDOM); /* a fill per page */
	a = upager_region_addr(r);
	pthread_barrier_init(&go, NULL, (unsigned)nt);
	for (int i = 0, pg = 0; i < nt; i++, pg++) {
		if (!directed && pg == 8)
			pg++;
		t[i] = (struct racer){ (const uint8_t *)a, (size_t)pg, &go, -1, snapshot_page_ok, 0 };
		pthread_create(&th[i], NULL, race_page, &t[i]);
	}
	for (int i = 0; i < nt; i++) {
		pthread_join(th[i], NULL);
		if (t[i].result != (t[i].page == 8 ? 2 : 0))
			_exit(20 + i);
	}
	if (!directed) {
		if (sigsetjmp(bus_jmp, 1))
			_exit(0);
		(void)a[8 * UPT_PAGE];
		_exit(40); /* the damaged page was handed over */
	}
	_exit(0);
}

/* Completed, the restore needs upagerd no more: killed, every byte right. */
START_TEST(test_snapshot_remote_complete)
{
	upager_t *p = upt_pager(1, 0);
	upager_region_t *r;
	uint8_t *a;

	save_snapshot("vm.snap");
	ck_assert_int_eq(upager_snapshot_map_remote(p, tcp_uri, "vm.snap", NULL, UPAGER_SNAP_COMPLETE,
						    &r), 0);
	a = upager_region_addr(r);
	ck_assert(snapshot_page_ok(a, 700)); /* a fault among the fills */
	ck_assert_int_eq(upager_complete(r, 30000), 0);
	upt_daemon_kill(daemon_pid);
	daemon_pid = -1;
	for (size_t i = 0; i < PAGES; i++)
		ck_assert_msg(snapshot_page_ok(a, i), "page %zu wrong", i);
	ck_assert_int_eq(munmap(a, PAGES * UPT_PAGE), 0);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

START_TEST(test_snapshot_remote_damaged)
{
	char path[256];
	uint8_t b;
	int fd, st;
	upager_t *p = upt_pager(1, 0);
	upager_region_t *r;

	save_snapshot("bad.snap");
	/* Stored pages are those with i%5 not 1 or 2, in order: page 8 is the 5th (index 4). */
	snprintf(path, sizeof(path), "%s/bad.snap", root);
	fd = open(path, O_RDWR);
	ck_assert_int_eq(pread(fd, &b, 1, 4096 + 4 * (off_t)UPT_PAGE + 33), 1);
	b ^= 0x20;
	ck_assert_int_eq(pwrite(fd, &b, 1, 4096 + 4 * (off_t)UPT_PAGE + 33), 1);
	close(fd);
	st = upt_child(touch_damaged, NULL, 30);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x (exit %d)", st,
		      WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	/* A damaged page map is refused before anything is mapped. */
	save_snapshot("bad.snap");
	fd = open(path, O_RDWR);
	{
		struct stat sb;

		ck_assert_int_eq(fstat(fd, &sb), 0);
		ck_assert_int_eq(pread(fd, &b, 1, sb.st_size - 3), 1); /* in the page map */
		b ^= 1;
		ck_assert_int_eq(pwrite(fd, &b, 1, sb.st_size - 3), 1);
	}
	close(fd);
	ck_assert_int_eq(upager_snapshot_map_remote(p, unix_uri, "bad.snap", NULL, 0, &r), -EBADMSG);
	upager_destroy(p);
}
END_TEST

/* ---- hostile servers: a fake upagerd (tests/fake_server.h), scripted per connection ---- */

/* Starts the fake server with script, serving mem.img's bytes (and size,
 * unless the script says another). */
static struct upt_fake *fake_start(struct upt_fake_script *script)
{
	struct upt_fake *fk;

	if (!script->size)
		script->size = PAGES * UPT_PAGE - 100;
	script->seed = SEED;
	fk = upt_fake_start(script);
	ck_assert_msg(fk != NULL, "the fake server (tests/fake_server) did not start");
	return fk;
}

/* A source on fk with deadline_ms (and secret_file, if not NULL) mapped over
 * mem.img's length, page by page; exits 2 from the child on failure. */
static upager_region_t *fake_region(upager_t *p, const struct upt_fake *fk, unsigned deadline_ms,
				    const char *secret_file)
{
	upager_remote_options_t o;
	upager_source_t *s;
	upager_region_t *r;

	upager_remote_options_init(&o);
	o.deadline_ms = deadline_ms;
	o.secret_file = secret_file;
	if (upager_source_remote(fk->uri, "mem.img", &o, &s) ||
	    upager_map(p, PAGES * UPT_PAGE, s, &r))
		_exit(2);
	upager_source_release(s);
	upager_region_advise(r, UPAGER_ADV_RANDOM);
	return r;
}

static int mem_page_ok(const uint8_t *a, size_t i)
{
	return upt_check_pattern(a + i * UPT_PAGE, UPT_PAGE, i * UPT_PAGE, SEED) < 0;
}

struct far_fault {
	struct upt_fake_script *script;
	unsigned deadline_ms;
	const char *secret_file, *log_path;
	struct upt_fake *fk; /* while it runs */
	int conns;           /* the connections it accepted */
};

static void log_to_file(void *arg, int level, const char *msg)
{
	FILE *f = fopen(arg, "a");

	(void)level;
	if (f) {
		fprintf(f, "%s\n", msg);
		fclose(f);
	}
}

/* A pager whose log lines go to log_path (NULL: none); exits 2 from the
 * child on failure. */
static upager_t *logging_pager(const char *log_path)
{
	upager_options_t po;
	upager_t *p;

	upager_options_init(&po);
	if (log_path) {
		po.log = log_to_file;
		po.log_arg = (void *)log_path;
	}
	if (upager_create(&p, &po))
		_exit(2);
	return p;
}

/* Whether a line of the log at log_path holds what; the last line read in last. */
static bool log_says(const char *log_path, const char *what, char *last, size_t len)
{
	FILE *f = fopen(log_path, "r");
	bool said = false;

	while (f && fgets(last, (int)len, f))
		said |= strstr(last, what) != NULL;
	if (f)
		fclose(f);
	return said;
}

/*
 * Page 0 from the fake's first connection (which then closes), then page
 * 500, which needs a new one: exit 0 if both hold the right bytes, 3 if
 * page 500 does not; a fault that fails is a SIGBUS.
 */
static void far_fault_child(void *arg)
{
	const struct far_fault *ff = arg;
	upager_t *p = logging_pager(ff->log_path);
	upager_region_t *r;
	const volatile uint8_t *a;

	r = fake_region(p, ff->fk, ff->deadline_ms, ff->secret_file);
	a = upager_region_addr(r);
	if (!mem_page_ok((const uint8_t *)a, 0))
		_exit(4);
	_exit(mem_page_ok((const uint8_t *)a, 500) ? 0 : 3);
}

/* Runs far_fault_child against ff's fake (started and stopped here): the
 * child's status and how long it took, in seconds. */
static double far_fault(struct far_fault *ff, int *status)
{
	struct timespec t0, t1;

	ff->fk = fake_start(ff->script);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	*status = upt_child(far_fault_child, ff, 40);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ff->conns = atomic_load(&ff->fk->conns);
	upt_fake_stop(ff->fk);
	ff->fk = NULL;
	return (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
}

/* Page 500 must end in SIGBUS at its deadline: well within 4 deadlines. */
static void expect_sigbus_at_deadline(struct far_fault *ff, const char *what)
{
	int status;
	double secs = far_fault(ff, &status);

	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS,
		      "%s: status %#x after %.1f s", what, status, secs);
	ck_assert_msg(secs < 4.0 * ff->deadline_ms / 1000, "%s: SIGBUS after %.1f s with deadline_ms=%u",
		      what, secs, ff->deadline_ms);
}

/* A server that drips its HELLO reply, a byte every 0.5 s, on every
 * reconnection: the fault still ends at its deadline (1 s), not when the
 * handshake would end (20 s). */
START_TEST(test_handshake_drip)
{
	struct upt_fake_script fk = { .conn = { UPT_FAKE_GOOD, UPT_FAKE_DRIP }, .nconn = 2,
				      .close_after_reads = 1 };
	struct far_fault ff = { .script = &fk, .deadline_ms = 1000 };

	expect_sigbus_at_deadline(&ff, "dripping");
}
END_TEST

/* Servers that accept and close, or die in the middle of a HELLO reply or
 * a DATA reply, over and over: the fault ends in the right bytes once a
 * good one answers, or in SIGBUS at its deadline if none does. */
START_TEST(test_dying_servers)
{
	struct upt_fake_script fk = { .conn = { UPT_FAKE_GOOD, UPT_FAKE_CLOSE, UPT_FAKE_DIE_HELLO,
						UPT_FAKE_DIE_DATA, UPT_FAKE_CLOSE, UPT_FAKE_DIE_HELLO,
						UPT_FAKE_DIE_DATA, UPT_FAKE_GOOD },
				      .nconn = 8, .close_after_reads = 1 };
	struct far_fault ff = { .script = &fk, .deadline_ms = 10000 };
	double secs;
	int status;

	secs = far_fault(&ff, &status);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x after %.1f s",
		      status, secs);
	ck_assert_int_ge(ff.conns, 8);

	for (int last = UPT_FAKE_CLOSE; last <= UPT_FAKE_DIE_DATA; last++) {
		static const char *const what[] = { [UPT_FAKE_CLOSE] = "closing",
						    [UPT_FAKE_DIE_HELLO] = "dying in HELLO",
						    [UPT_FAKE_DIE_DATA] = "dying in DATA" };
		struct upt_fake_script dying = { .conn = { UPT_FAKE_GOOD, (enum upt_fake_mode)last },
						 .nconn = 2, .close_after_reads = 1 };

		ff = (struct far_fault){ .script = &dying, .deadline_ms = 1000 };
		expect_sigbus_at_deadline(&ff, what[last]);
		ck_assert_int_ge(ff.conns, 2);
	}
}
END_TEST

/* upager_source_remote's answer from a fake with script (started and
 * stopped here) to a client that has the secret in secret_file. */
static int open_fake(struct upt_fake_script *script, const char *secret_file)
{
	upager_remote_options_t o;
	upager_source_t *s;
	struct upt_fake *fk;
	int ret;

	upager_remote_options_init(&o);
	o.secret_file = secret_file;
	fk = fake_start(script);
	ret = upager_source_remote(fk->uri, "mem.img", &o, &s);
	if (ret == 0)
		upager_source_release(s);
	upt_fake_stop(fk);
	return ret;
}

/* A client with a secret trusts only a server that proves it knows it:
 * not one that never asks (leaves the AUTH bit out), nor one whose proof
 * is wrong. */
START_TEST(test_auth_impostor)
{
	struct upt_fake_script open_fk = { 0 };
	struct upt_fake_script wrong_fk = { .secret = "correct horse battery stable" };
	struct upt_fake_script right_fk = { .secret = "correct horse battery staple" };
	char secret[128];

	write_secret(secret, sizeof(secret), "secret", "correct horse battery staple");
	ck_assert_int_eq(open_fake(&open_fk, secret), -EACCES);
	ck_assert_int_eq(open_fake(&wrong_fk, secret), -EACCES);
	ck_assert_int_eq(open_fake(&right_fk, secret), 0); /* the fake itself is right */
}
END_TEST

/* The server proves itself on the first connection, and after the
 * connection breaks an impostor answers without asking: its pages are
 * never mapped, the fault ends in SIGBUS at the deadline, and the pager's
 * log callback says why. */
START_TEST(test_auth_impostor_on_reconnect)
{
	struct upt_fake_script fk = { .close_after_reads = 1,
				      .secret = "correct horse battery staple", .impostor_from = 1 };
	struct far_fault ff = { .script = &fk, .deadline_ms = 1000 };
	char secret[128], log_path[128], line[512] = "";

	write_secret(secret, sizeof(secret), "secret", "correct horse battery staple");
	snprintf(log_path, sizeof(log_path), "%s/log", dir);
	ff.secret_file = secret;
	ff.log_path = log_path;
	expect_sigbus_at_deadline(&ff, "impostor");
	ck_assert_msg(log_says(log_path, "did not prove it knows the secret", line, sizeof(line)),
		      "no log line about the server's proof (last: %s)", line);
}
END_TEST

/*
 * Thread A's fault on page 0 asks for a 16-page window; the server answers
 * that READ with ERROR after 0.5 s, while thread B faults on page 3 of the
 * window meanwhile. Each ends in SIGBUS or in its bytes (a page may be
 * asked for again alone), never in wrong bytes or a wait for ever.
 */
static void window_error_child(void *arg)
{
	struct sigaction sa = { .sa_handler = on_bus };
	const struct upt_fake *fk = arg;
	upager_t *p = upt_pager(1, 0);
	upager_region_t *r = fake_region(p, fk, 3000, NULL);
	pthread_barrier_t go;
	struct racer t[2];
	pthread_t th[2];

	sigaction(SIGBUS, &sa, NULL);
	upager_region_advise(r, UPAGER_ADV_NORMAL); /* a fault fills a window around it */
	pthread_barrier_init(&go, NULL, 2);
	t[0] = (struct racer){ upager_region_addr(r), 0, &go, -1, mem_page_ok, 0 };
	t[1] = (struct racer){ upager_region_addr(r), 3, &go, -1, mem_page_ok, 150 };
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, race_page, &t[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 2; i++)
		if (t[i].result != 0 && t[i].result != 2)
			_exit(20 + i);
	_exit(0);
}

START_TEST(test_hostile_window_error)
{
	/* A READ of 16 pages or more: ERROR EIO after 0.5 s. */
	struct upt_fake_script script = {
		.read = { { .error = true, .error_from = 16 * UPT_PAGE, .delay_ms = 500 } },
		.nread = 1
	};
	struct upt_fake *fk = fake_start(&script);
	int status, big_reads;

	status = upt_child(window_error_child, fk, 20);
	big_reads = atomic_load(&fk->errors);
	upt_fake_stop(fk);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x (exit %d)", status,
		      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	ck_assert_int_ge(big_reads, 1);
}
END_TEST

/* ---- signals, lying sizes and deadlines in the handshake and the .ws fetch ---- */

/* What a child saw, in memory shared with the test. */
struct seen {
	int ret;
	double secs;
	uint64_t prefetched;
	int ws_reads;
};

static struct seen *seen_map(void)
{
	struct seen *sn = mmap(NULL, sizeof(*sn), PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(sn, MAP_FAILED);
	memset(sn, 0, sizeof(*sn));
	sn->ret = 1;
	return sn;
}

static double secs_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void on_alarm(int sig)
{
	(void)sig;
}

/* SIGALRM at the calling thread every 20 ms, caught by a handler installed
 * without SA_RESTART (a poll would fail with EINTR under either). */
static void alarm_this_thread(void)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	struct sigevent ev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGALRM };
	struct itimerspec it = { { 0, 20 * 1000 * 1000 }, { 0, 20 * 1000 * 1000 } };
	timer_t t;

	ev._sigev_un._tid = gettid(); /* sigev_notify_thread_id */
	if (sigaction(SIGALRM, &sa, NULL) || timer_create(CLOCK_MONOTONIC, &ev, &t) ||
	    timer_settime(t, 0, &it, NULL))
		_exit(2);
}

struct signal_case {
	struct upt_fake *fk;
	struct seen *sn;
};

static void signal_handshake_child(void *arg)
{
	const struct signal_case *sc = arg;
	upager_source_t *s;
	struct timespec t0;

	alarm_this_thread();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	sc->sn->ret = upager_source_remote(sc->fk->uri, "mem.img", NULL, &s);
	sc->sn->secs = secs_since(&t0);
	if (sc->sn->ret == 0)
		upager_source_release(s);
}

/* A server that answers HELLO after 0.3 s, to a caller that gets a signal
 * every 20 ms: the handshake waits on through them (connect timeout 5 s). */
START_TEST(test_signal_in_handshake)
{
	struct upt_fake_script script = { .hello_delay_ms = 300 };
	struct signal_case sc = { fake_start(&script), seen_map() };
	int status;

	status = upt_child(signal_handshake_child, &sc, 20);
	upt_fake_stop(sc.fk);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	ck_assert_msg(sc.sn->ret == 0, "upager_source_remote: %d after %.3f s", sc.sn->ret,
		      sc.sn->secs);
	munmap(sc.sn, sizeof(*sc.sn));
}
END_TEST

/* The bytes of a working set recorded on a local restore of a snapshot of
 * PAGES pages that touched 50 of them (malloc'ed, *lenp bytes). */
static uint8_t *record_ws(size_t *lenp)
{
	char local[256], ws[300];
	upager_t *p = upt_pager(1, 0);
	uint8_t *buf;
	struct stat sb;
	int fd;

	save_snapshot("vm.snap");
	snprintf(local, sizeof(local), "%s/vm.snap", root);
	snprintf(ws, sizeof(ws), "%s.ws", local);
	record_50_pages(p, local);
	upager_destroy(p);
	fd = open(ws, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &sb), 0);
	buf = malloc((size_t)sb.st_size);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(read(fd, buf, (size_t)sb.st_size), sb.st_size);
	close(fd);
	*lenp = (size_t)sb.st_size;
	return buf;
}

static void signal_ws_child(void *arg)
{
	const struct signal_case *sc = arg;
	upager_t *p = upt_pager(1, 0);
	upager_region_t *r;
	upager_stats_t st = { 0 };
	struct timespec t0;

	alarm_this_thread();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	sc->sn->ret = upager_snapshot_map_remote(p, sc->fk->uri, "vm.snap", NULL,
						 UPAGER_SNAP_PREFETCH, &r);
	sc->sn->secs = secs_since(&t0);
	if (sc->sn->ret)
		_exit(0);
	for (clock_gettime(CLOCK_MONOTONIC, &t0); secs_since(&t0) < 5;) {
		upager_region_stats(r, &st);
		if (st.pages_prefetched >= 50)
			break;
		usleep(10 * 1000);
	}
	sc->sn->prefetched = st.pages_prefetched;
}

/* The same for the working set beside a snapshot, each READ of which the
 * server answers after 0.3 s: it is fetched through the signals, and prefetched. */
START_TEST(test_signal_in_ws_fetch)
{
	struct upt_fake_script script = { .ws_read_delay_ms = 300, .size = PAGES * UPT_PAGE };
	struct signal_case sc = { NULL, seen_map() };
	size_t len;
	uint8_t *ws = record_ws(&len);
	int status;

	script.ws = ws;
	script.ws_size = len;
	sc.fk = fake_start(&script);
	status = upt_child(signal_ws_child, &sc, 30);
	upt_fake_stop(sc.fk);
	free(ws);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	ck_assert_msg(sc.sn->ret == 0, "upager_snapshot_map_remote: %d after %.3f s", sc.sn->ret,
		      sc.sn->secs);
	ck_assert_msg(sc.sn->prefetched == 50, "%llu pages prefetched of the working set's 50",
		      (unsigned long long)sc.sn->prefetched);
	munmap(sc.sn, sizeof(*sc.sn));
}
END_TEST

struct ws_case {
	struct upt_fake *fk;
	struct seen *sn;
	unsigned connect_timeout_ms;
	const char *log_path;
};

static void map_prefetch_child(void *arg)
{
	const struct ws_case *wc = arg;
	upager_t *p = logging_pager(wc->log_path);
	upager_remote_options_t o;
	upager_region_t *r;
	struct timespec t0;

	upager_remote_options_init(&o);
	o.connect_timeout_ms = wc->connect_timeout_ms;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	wc->sn->ret = upager_snapshot_map_remote(p, wc->fk->uri, "vm.snap", &o, UPAGER_SNAP_PREFETCH,
						 &r);
	wc->sn->secs = secs_since(&t0);
	wc->sn->ws_reads = atomic_load(&wc->fk->ws_reads);
}

static uint64_t phys_pages(void)
{
	long n = sysconf(_SC_PHYS_PAGES);

	ck_assert_int_gt(n, 0);
	return (uint64_t)n;
}

/*
 * A server that claims a 64 GiB image and as big a working set as this
 * machine could hold, and answers each READ of it (8 MiB) after 0.7 s, each
 * within the connect timeout (1 s): the map still returns within about one
 * such timeout (the handshakes are quick), not one per READ.
 */
START_TEST(test_ws_fetch_one_deadline)
{
	struct upt_fake_script script = { .ws_read_delay_ms = 700, .size = 64ull << 30 };
	struct ws_case wc = { NULL, seen_map(), 1000, NULL };
	uint64_t npages = script.size / UPT_PAGE, most = phys_pages();
	int status;

	script.ws_size = 32 + 8 * (most < npages ? most : npages);
	ck_assert_uint_gt(script.ws_size, 2 * UPP_MAX_READ); /* several READs */
	wc.fk = fake_start(&script);
	status = upt_child(map_prefetch_child, &wc, 40);
	upt_fake_stop(wc.fk);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	ck_assert_msg(wc.sn->ret == 0 && wc.sn->secs < 2.5,
		      "upager_snapshot_map_remote: %d after %.1f s with a 1 s connect timeout "
		      "(%d READs of the .ws)", wc.sn->ret, wc.sn->secs, wc.sn->ws_reads);
	munmap(wc.sn, sizeof(*wc.sn));
}
END_TEST

/*
 * A server that claims an image of 4 times this machine's memory and a
 * working set of more pages than the machine has: the client neither
 * allocates for nor asks for that .ws, and the log says why.
 */
START_TEST(test_ws_claim_bounded)
{
	uint64_t most = phys_pages();
	struct upt_fake_script script = { .size = 4 * most * UPT_PAGE,
					  .ws_size = 32 + 8 * (most + 1) };
	struct ws_case wc = { NULL, seen_map(), 5000, NULL };
	char log_path[128], line[512] = "";
	int status, ws_reads;

	snprintf(log_path, sizeof(log_path), "%s/log", dir);
	wc.log_path = log_path;
	wc.fk = fake_start(&script);
	status = upt_child(map_prefetch_child, &wc, 40);
	ws_reads = atomic_load(&wc.fk->ws_reads);
	upt_fake_stop(wc.fk);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	ck_assert_msg(wc.sn->ret == 0, "upager_snapshot_map_remote: %d", wc.sn->ret);
	ck_assert_msg(ws_reads == 0, "%d READs of a %llu-byte .ws", ws_reads,
		      (unsigned long long)script.ws_size);
	ck_assert_msg(log_says(log_path, "vm.snap.ws", line, sizeof(line)),
		      "no log line about the .ws (last: %s)", line);
	munmap(wc.sn, sizeof(*wc.sn));
}
END_TEST

/*
 * A clock that moves 0.6 ms on every reading while fake_clock_step_ns is
 * set (in a child): deadlines pass between any two readings, the way a
 * preempted thread sees them.
 */
static uint64_t fake_clock_step_ns, fake_clock_ns;

int clock_gettime(clockid_t clk, struct timespec *ts)
{
	if (clk != CLOCK_MONOTONIC || !fake_clock_step_ns)
		return (int)syscall(SYS_clock_gettime, clk, ts);
	if (!fake_clock_ns) {
		struct timespec now;

		syscall(SYS_clock_gettime, clk, &now);
		fake_clock_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
	}
	fake_clock_ns += fake_clock_step_ns;
	ts->tv_sec = (time_t)(fake_clock_ns / 1000000000ull);
	ts->tv_nsec = (long)(fake_clock_ns % 1000000000ull);
	return 0;
}

static void dial_child(void *arg)
{
	const char *uri = arg;
	upager_remote_options_t o;
	upager_source_t *s;
	int ret;

	upager_remote_options_init(&o);
	o.connect_timeout_ms = 1;
	fake_clock_step_ns = 600 * 1000;
	ret = upager_source_remote(uri, "mem.img", &o, &s);
	_exit(ret == -ETIMEDOUT ? 0 : 3);
}

/*
 * A TCP connect that the listener never completes (its accept queue is
 * full), with a 1 ms connect timeout that passes while dial() looks at
 * the clock: it ends in ETIMEDOUT at once, not when TCP gives up (2 min).
 */
START_TEST(test_dial_deadline_passes)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), filler[4], status;
	char uri[64];

	ck_assert_int_ge(l, 0);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(l, 0), 0);
	ck_assert_int_eq(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
	/* Fill the accept queue: the next SYN is dropped, the connect waits. */
	for (int i = 0; i < 4; i++) {
		filler[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		connect(filler[i], (struct sockaddr *)&sa, sizeof(sa));
	}
	usleep(200 * 1000);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", ntohs(sa.sin_port));
	status = upt_child(dial_child, uri, 10);
	for (int i = 0; i < 4; i++)
		close(filler[i]);
	close(l);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
}
END_TEST

/* Non-zero: the Unix sockets made in this process get this SO_SNDBUF (the
 * kernel's least, some 4 KiB), as if wmem_default were that low. */
static int small_sndbuf;

int socket(int domain, int type, int protocol)
{
	int fd = (int)syscall(SYS_socket, domain, type, protocol);

	if (fd >= 0 && domain == AF_UNIX && small_sndbuf)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small_sndbuf, sizeof(small_sndbuf));
	return fd;
}

#define DEAF_SIZE (256u << 20)

/* Two handlers prefetch all of a 256 MiB object (more 1 MiB fills than
 * they have slots for, in READs of at most 8 of them), then a fault on its
 * last page, against a server that stops reading after the handshake. */
static void deaf_child(void *arg)
{
	const struct upt_fake *fk = arg;
	upager_remote_options_t o;
	upager_t *p = upt_pager(2, 0);
	upager_source_t *s;
	upager_region_t *r;
	const volatile uint8_t *a;

	upager_remote_options_init(&o);
	o.connect_timeout_ms = 20000;
	o.deadline_ms = 1000;
	small_sndbuf = 1;
	if (upager_source_remote(fk->uri, "mem.img", &o, &s) || upager_map(p, DEAF_SIZE, s, &r))
		_exit(2);
	upager_source_release(s);
	upager_region_advise(r, UPAGER_ADV_RANDOM);
	if (upager_prefetch(r, 0, DEAF_SIZE / 2 - UPT_PAGE) ||
	    upager_prefetch(r, DEAF_SIZE / 2, DEAF_SIZE / 2 - UPT_PAGE))
		_exit(3);
	usleep(200 * 1000); /* the connection thread is blocked sending by now */
	a = upager_region_addr(r);
	_exit(a[DEAF_SIZE - UPT_PAGE] == 0x5A ? 4 : 5); /* SIGBUS expected */
}

/*
 * A server that stops reading once the handshake is done, to a client
 * whose socket's send buffer is small: the requests fill it and the
 * connection thread blocks sending. The fault still ends in SIGBUS at
 * its deadline (1 s), not at the connect timeout (20 s).
 */
START_TEST(test_deaf_server)
{
	struct upt_fake_script script = { .conn = { UPT_FAKE_DEAF }, .nconn = 1, .size = DEAF_SIZE };
	struct upt_fake *fk = fake_start(&script);
	struct timespec t0;
	double secs;
	int status;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	status = upt_child(deaf_child, fk, 40);
	secs = secs_since(&t0);
	upt_fake_stop(fk);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "status %#x after %.1f s",
		      status, secs);
	ck_assert_msg(secs < 4.0, "SIGBUS after %.1f s with deadline_ms=1000", secs);
}
END_TEST

/* A test case whose tests each get a directory and a daemon of their own. */
static TCase *remote_tcase(Suite *s, const char *name)
{
	TCase *tc = upt_tcase(s, name);

	tcase_add_checked_fixture(tc, setup, teardown);
	return tc;
}

static Suite *make(void)
{
	Suite *s = suite_create("remote");
	TCase *tc = remote_tcase(s, "remote");

	upt_add(tc, test_every_byte_unix_and_tcp, 0, "");
	upt_add(tc, test_bad_arguments, 0, "");
	upt_add(tc, test_eight_threads, 0, "");
	upt_add(tc, test_daemon_restart, 0, "");
	upt_add(tc, test_daemon_gone, 0, "");
	upt_add(tc, test_daemon_hung, 0, "");
	upt_add(tc, test_authentication, 0, "");
	upt_add(tc, test_snapshot_remote, 0, "");
	upt_add(tc, test_snapshot_remote_complete, 0, "");
	upt_add(tc, test_snapshot_remote_damaged, 0, "");

	/* Fake servers: slow, dying, impostors (tests/fake_server, a process
	 * of its own: nothing here forks beside its threads). */
	tc = remote_tcase(s, "hostile");
	upt_add(tc, test_handshake_drip, 0, "");
	upt_add(tc, test_dying_servers, 0, "");
	upt_add(tc, test_auth_impostor, 0, "");
	upt_add(tc, test_auth_impostor_on_reconnect, 0, "");
	upt_add(tc, test_signal_in_handshake, 0, "");
	upt_add(tc, test_signal_in_ws_fetch, 0, "");
	upt_add(tc, test_ws_fetch_one_deadline, 0, "");
	upt_add(tc, test_ws_claim_bounded, 0, "");
	upt_add(tc, test_dial_deadline_passes, 0, "");
	upt_add(tc, test_deaf_server, 0, "");
	/* Needs the fault loop to wake a fault that joined a window whose
	 * READ failed (lib/fill.c); a case of its own, to run alone. */
	tc = remote_tcase(s, "hostile_window_error");
	/* Each thread catches its own SIGBUS: the signal must be directed. */
	upt_add(tc, test_hostile_window_error, UPAGER_FEAT_THREAD_ID,
		"UFFD_FEATURE_THREAD_ID (a SIGBUS directed at the faulting thread)");
	return s;
}

int main(void)
{
	return upt_main(make);
}
