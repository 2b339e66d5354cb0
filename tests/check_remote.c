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
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

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

/* A daemon with --secret-file: TCP clients must know the secret. */
START_TEST(test_authentication)
{
	char good[128], bad[128], flag[160], tcp[64];
	upager_remote_options_t o;
	upager_source_t *s;
	upager_region_t *r;
	upager_t *p;
	pid_t authd;
	FILE *f;
	int port;

	snprintf(good, sizeof(good), "%s/secret", dir);
	snprintf(bad, sizeof(bad), "%s/wrong", dir);
	f = fopen(good, "w");
	fprintf(f, "correct horse battery staple\n");
	fclose(f);
	chmod(good, 0600);
	f = fopen(bad, "w");
	fprintf(f, "correct horse battery stable\n");
	fclose(f);
	upt_daemon_kill(daemon_pid); /* its socket path is reused below */
	daemon_pid = 0;
	snprintf(flag, sizeof(flag), "--secret-file=%s", good);
	authd = upt_daemon_start(root, sock, flag, NULL, &port);
	snprintf(tcp, sizeof(tcp), "tcp:127.0.0.1:%d", port);

	upager_remote_options_init(&o);
	o.secret_file = good;
	ck_assert_int_eq(upager_source_remote(tcp, "mem.img", &o, &s), 0);
	p = upt_pager(1, 0);
	ck_assert_int_eq(upager_map(p, PAGES * UPT_PAGE, s, &r), 0);
	upager_source_release(s);
	check_region_bytes(upager_region_addr(r));
	upager_destroy(p);

	o.secret_file = bad;
	ck_assert_int_eq(upager_source_remote(tcp, "mem.img", &o, &s), -EACCES);
	o.secret_file = NULL;
	ck_assert_int_eq(upager_source_remote(tcp, "mem.img", &o, &s), -EACCES);
	o.secret_file = "/nonexistent/secret";
	ck_assert_int_eq(upager_source_remote(tcp, "mem.img", &o, &s), -ENOENT);
	/* Unix sockets are guarded by their permissions, not the secret. */
	ck_assert_int_eq(upager_source_remote(unix_uri, "mem.img", NULL, &s), 0);
	upager_source_release(s);
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
		ck_assert_int_eq(upager_snapshot_map(p, local, UPAGER_SNAP_RECORD, &r), 0);
		upager_region_advise(r, UPAGER_ADV_RANDOM);
		a = upager_region_addr(r);
		for (size_t i = 0; i < 50; i++)
			ck_assert(snapshot_page_ok(a, (i * 389) % PAGES));
		upager_release(r); /* writes vm.snap.ws */
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
};

static void *race_page(void *arg)
{
	struct racer *t = arg;

	pthread_barrier_wait(t->go);
	if (sigsetjmp(bus_jmp, 1)) {
		t->result = 2;
		return NULL;
	}
	t->result = snapshot_page_ok(t->a, t->page) ? 0 : 1;
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
		t[i] = (struct racer){ (const uint8_t *)a, (size_t)pg, &go, -1 };
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

static Suite *make(void)
{
	Suite *s = suite_create("remote");
	TCase *tc = upt_tcase(s, "remote");

	tcase_add_checked_fixture(tc, setup, teardown);
	upt_add(tc, test_every_byte_unix_and_tcp, 0, "");
	upt_add(tc, test_bad_arguments, 0, "");
	upt_add(tc, test_eight_threads, 0, "");
	upt_add(tc, test_daemon_restart, 0, "");
	upt_add(tc, test_daemon_gone, 0, "");
	upt_add(tc, test_daemon_hung, 0, "");
	upt_add(tc, test_authentication, 0, "");
	upt_add(tc, test_snapshot_remote, 0, "");
	upt_add(tc, test_snapshot_remote_damaged, 0, "");
	return s;
}

int main(void)
{
	return upt_main(make);
}
