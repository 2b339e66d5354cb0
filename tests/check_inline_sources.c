/* SPDX-License-Identifier: MIT */
/*
 * Inline faults (UPAGER_FAULT_INLINE) for sources that cannot fill from a
 * signal handler: callback and remote (a fake upagerd, tests/fake_server.h),
 * whose faults go from the SIGBUS handler to the pager's handler threads
 * and back; and snapshot, filled in the handler (raw pages), except while
 * recording its working set and for a page failing its checksum. Every byte from 1, 8 and 64 threads; a
 * callback's error is the program's SIGBUS at the address, or the default
 * action; a killed server is SIGBUS within the deadline; release and
 * destroy while threads wait for their fills; more waiters than request
 * slots; a callback that touches a
 * region of its own pager (the process dies of SIGBUS: no hang).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "fake_server.h"

#define NEED (UPAGER_FEAT_SIGBUS | UPAGER_FEAT_EVENT_UNMAP | UPAGER_FEAT_EVENT_REMAP)
#define WHY "UFFD_FEATURE_SIGBUS and the UNMAP/REMAP events (or UPAGER_DISABLE=sigbus/event_unmap)"
#define NPAGES 2048
#define SEED 29

static upager_t *inline_pager(unsigned nthreads)
{
	upager_options_t o;
	upager_t *p = NULL;

	upager_options_init(&o);
	o.fault_mode = UPAGER_FAULT_INLINE;
	o.nthreads = nthreads;
	if (upager_create(&p, &o) < 0)
		return NULL;
	return p;
}

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* ---- every byte, from many threads (tests/helpers.c) ---- */

static void run_threads(upager_source_t *src, size_t len, unsigned nthreads, int advice)
{
	upager_stats_t st;

	upt_inline_every_byte(src, SEED, len, NPAGES, nthreads, advice, &st);
}

/* ---- callback ---- */

static atomic_long cb_calls;

static int pattern_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	(void)arg;
	atomic_fetch_add(&cb_calls, 1);
	upt_fill(buf, len, off, SEED);
	return 0;
}

static void run_callback(unsigned nthreads)
{
	upager_source_t *cb;

	ck_assert_int_eq(upager_source_callback(pattern_fill, NULL, NULL, &cb), 0);
	run_threads(cb, NPAGES * UPT_PAGE, nthreads, UPAGER_ADV_NORMAL);
	upager_source_release(cb);
}

START_TEST(test_callback_1) { run_callback(1); }
END_TEST
START_TEST(test_callback_8) { run_callback(8); }
END_TEST
START_TEST(test_callback_64) { run_callback(64); }
END_TEST

/* ---- remote, from a fake upagerd ---- */

static void run_remote(unsigned nthreads)
{
	struct upt_fake_script script = { .size = NPAGES * UPT_PAGE - 100, .seed = SEED };
	struct upt_fake *fk = upt_fake_start(&script);
	upager_remote_options_t o;
	upager_source_t *s;

	ck_assert_msg(fk != NULL, "the fake server (tests/fake_server) did not start");
	upager_remote_options_init(&o);
	ck_assert_int_eq(upager_source_remote(fk->uri, "mem.img", &o, &s), 0);
	/* At random: a page a fault, every fault a round trip to the server. */
	run_threads(s, NPAGES * UPT_PAGE - 100, nthreads,
		    nthreads == 1 ? UPAGER_ADV_NORMAL : UPAGER_ADV_RANDOM);
	upager_source_release(s);
	upt_fake_stop(fk);
}

START_TEST(test_remote_1) { run_remote(1); }
END_TEST
START_TEST(test_remote_8) { run_remote(8); }
END_TEST
START_TEST(test_remote_64) { run_remote(64); }
END_TEST

/* ---- snapshot ---- */

/* A snapshot of the pattern at path (pages of it, made from the template
 * path); 0 or -errno. */
static int save_snapshot(char *path, size_t pages)
{
	const size_t len = pages * UPT_PAGE;
	uint8_t *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = mkstemp(path), ret;

	if (fd >= 0)
		close(fd);
	if (fd < 0 || a == MAP_FAILED)
		return -EIO;
	upt_fill(a, len, 0, SEED);
	ret = upager_snapshot_save(a, len, path);
	munmap(a, len);
	return ret;
}

static void run_snapshot(unsigned nthreads)
{
	char path[] = "/tmp/upager-inline-snap-XXXXXX";
	upager_source_t *s;
	uint64_t slen = 0;

	ck_assert_int_eq(save_snapshot(path, NPAGES), 0);
	ck_assert_int_eq(upager_source_snapshot(path, &slen, &s), 0);
	unlink(path);
	ck_assert_uint_eq(slen, NPAGES * UPT_PAGE);
	run_threads(s, NPAGES * UPT_PAGE, nthreads, UPAGER_ADV_NORMAL);
	upager_source_release(s);
}

/* Stored pages are filled in the faulting thread (raw: a pread and a CRC),
 * with inline mode's window: a fault at random fills the 16-page
 * fault-around block around it, aligned, as the handler threads do, in one
 * fault (page 37: pages 32-47). */
START_TEST(test_snapshot_filled_inline)
{
	char path[] = "/tmp/upager-inline-snap-XXXXXX";
	upager_region_t *r;
	upager_stats_t st;
	upager_t *p = inline_pager(1);
	const uint8_t *a;

	ck_assert_int_eq(save_snapshot(path, 64), 0);
	ck_assert_int_eq(upager_snapshot_map(p, path, 0, &r), 0);
	unlink(path);
	a = upager_region_addr(r);
	ck_assert_int_eq(upt_check_pattern(a + 37 * UPT_PAGE, UPT_PAGE, 37 * UPT_PAGE, SEED), -1);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.faults, 1);
	ck_assert_uint_eq(st.pages_resident, 16);
	ck_assert_int_eq(upt_check_pattern(a + 32 * UPT_PAGE, 16 * UPT_PAGE, 32 * UPT_PAGE, SEED), -1);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.faults, 1);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

/* Recording the working set takes a lock: those faults go to the handler
 * threads, which record them (PATH.ws, written at release). */
START_TEST(test_snapshot_record_queued)
{
	char path[] = "/tmp/upager-inline-snap-XXXXXX", ws[64];
	upager_region_t *r;
	upager_stats_t st;
	upager_t *p = inline_pager(1);
	struct stat sb;
	const uint8_t *a;

	ck_assert_int_eq(save_snapshot(path, 64), 0);
	snprintf(ws, sizeof(ws), "%s.ws", path);
	ck_assert_int_eq(upager_snapshot_map(p, path, UPAGER_SNAP_RECORD, &r), 0);
	a = upager_region_addr(r);
	ck_assert_int_eq(upt_check_pattern(a + 37 * UPT_PAGE, UPT_PAGE, 37 * UPT_PAGE, SEED), -1);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.faults, 1);
	ck_assert_uint_eq(st.pages_resident, 16); /* the handlers' fault-around block */
	ck_assert_int_eq(upt_check_pattern(a, 64 * UPT_PAGE, 0, SEED), -1);
	ck_assert_int_eq(upager_release(r), 0);
	ck_assert_int_eq(stat(ws, &sb), 0);
	ck_assert_int_gt(sb.st_size, 0);
	unlink(ws);
	unlink(path);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

/* A stored page that fails its CRC: the program's SIGBUS at the address
 * (the handler threads read it again and log it); the others read right. */
static void child_snapshot_corrupt(void *arg)
{
	const char *path = arg;
	upager_region_t *r;
	upager_stats_t st;
	upager_t *p;
	const volatile uint8_t *a;

	upt_catch_sigbus();
	if (!(p = inline_pager(1)) || upager_snapshot_map(p, path, 0, &r) < 0)
		_exit(10);
	upager_region_advise(r, UPAGER_ADV_RANDOM);
	a = upager_region_addr(r);
	for (int i = 0; i < 8; i++)
		if (i != 3 && a[i * UPT_PAGE + 100] != upt_byte(i * UPT_PAGE + 100, SEED))
			_exit(11);
	if (sigsetjmp(upt_sigbus_jb, 1) == 0) {
		(void)a[3 * UPT_PAGE + 100];
		_exit(12); /* wrong data */
	}
	if (upt_sigbus_calls != 1 || upt_sigbus_addr != (void *)(a + 3 * UPT_PAGE + 100) || upt_sigbus_code != BUS_ADRERR)
		_exit(13);
	if (upager_region_stats(r, &st) < 0 || st.fill_errors != 1 || st.pages_resident != 7)
		_exit(14);
	_exit(0);
}

START_TEST(test_snapshot_corrupt_page)
{
	char path[] = "/tmp/upager-inline-snap-XXXXXX";
	uint8_t b;
	int fd, st;

	ck_assert_int_eq(save_snapshot(path, 8), 0);
	/* Header and map in the first 4 KiB, then the pages (check_snapshot). */
	fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &b, 1, 4096 + 3 * UPT_PAGE + 100), 1);
	b ^= 0x80;
	ck_assert_int_eq(pwrite(fd, &b, 1, 4096 + 3 * UPT_PAGE + 100), 1);
	close(fd);
	st = upt_child(child_snapshot_corrupt, path, 20);
	unlink(path);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}
END_TEST

START_TEST(test_snapshot_1) { run_snapshot(1); }
END_TEST
START_TEST(test_snapshot_8) { run_snapshot(8); }
END_TEST
START_TEST(test_snapshot_64) { run_snapshot(64); }
END_TEST

/* ---- fill errors: the program's SIGBUS (children) ---- */

/* Page 2 cannot be filled; the others are the pattern. */
static int failing_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	(void)arg;
	if (off <= 2 * UPT_PAGE && off + len > 2 * UPT_PAGE)
		return -EIO;
	upt_fill(buf, len, off, SEED);
	return 0;
}

static void child_callback_error(void *arg)
{
	const size_t ps = UPT_PAGE;
	upager_source_t *cb;
	upager_region_t *r;
	upager_stats_t st;
	upager_t *p;
	volatile uint8_t *a;

	(void)arg;
	upt_catch_sigbus();
	if (!(p = inline_pager(1)) || upager_source_callback(failing_fill, NULL, NULL, &cb) < 0)
		_exit(10);
	if (upager_map(p, 8 * ps, cb, &r) < 0)
		_exit(11);
	upager_region_advise(r, UPAGER_ADV_RANDOM);
	a = upager_region_addr(r);
	if (a[ps + 5] != upt_byte(ps + 5, SEED))
		_exit(12);
	if (sigsetjmp(upt_sigbus_jb, 1) == 0) {
		uint8_t v = a[2 * ps + 7];
		_exit(v == upt_byte(2 * ps + 7, SEED) ? 13 : 14); /* data where there is none */
	}
	if (upt_sigbus_calls != 1 || upt_sigbus_addr != (void *)(a + 2 * ps + 7) || upt_sigbus_code != BUS_ADRERR)
		_exit(15);
	/* Every later access asks the source again, and fails again. */
	if (sigsetjmp(upt_sigbus_jb, 1) == 0) {
		(void)a[2 * ps];
		_exit(16);
	}
	if (upt_sigbus_calls != 2 || upt_sigbus_addr != (void *)(a + 2 * ps))
		_exit(17);
	if (a[3 * ps + 1] != upt_byte(3 * ps + 1, SEED))
		_exit(18);
	if (upager_region_stats(r, &st) < 0 || st.fill_errors != 2 || st.pages_resident != 2)
		_exit(19);
	upager_release(r);
	upager_destroy(p);
	_exit(0);
}

START_TEST(test_callback_error_program_handler)
{
	int st = upt_child(child_callback_error, NULL, 20);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}
END_TEST

static void child_callback_error_default(void *arg)
{
	upager_source_t *cb;
	upager_region_t *r;
	upager_t *p;

	(void)arg;
	if (!(p = inline_pager(1)) || upager_source_callback(failing_fill, NULL, NULL, &cb) < 0 ||
	    upager_map(p, 4 * UPT_PAGE, cb, &r) < 0)
		_exit(10);
	(void)*(volatile uint8_t *)((uint8_t *)upager_region_addr(r) + 2 * UPT_PAGE);
	_exit(11);
}

START_TEST(test_callback_error_default_action)
{
	int st = upt_child(child_callback_error_default, NULL, 20);

	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "status %#x", st);
}
END_TEST

/* The server killed under a region: SIGBUS within the deadline (1 s, plus
 * at most one connect attempt), not a hang. */
static void child_server_killed(void *arg)
{
	struct upt_fake_script script = { .size = 64 * UPT_PAGE, .seed = SEED };
	struct upt_fake *fk = upt_fake_start(&script);
	upager_remote_options_t o;
	upager_source_t *s;
	upager_region_t *r;
	upager_t *p;
	volatile uint8_t *a;

	(void)arg;
	upt_catch_sigbus();
	upager_remote_options_init(&o);
	o.deadline_ms = 1000;
	if (!fk || !(p = inline_pager(1)) || upager_source_remote(fk->uri, "mem.img", &o, &s) < 0 ||
	    upager_map(p, 64 * UPT_PAGE, s, &r) < 0)
		_exit(10);
	upager_region_advise(r, UPAGER_ADV_RANDOM);
	a = upager_region_addr(r);
	if (a[7] != upt_byte(7, SEED))
		_exit(11);
	upt_fake_stop(fk);
	if (sigsetjmp(upt_sigbus_jb, 1) == 0) {
		(void)a[40 * UPT_PAGE + 3];
		_exit(12);
	}
	if (upt_sigbus_calls != 1 || upt_sigbus_addr != (void *)(a + 40 * UPT_PAGE + 3))
		_exit(13);
	_exit(0);
}

START_TEST(test_remote_server_killed)
{
	uint64_t t0 = now_ms();
	int st = upt_child(child_server_killed, NULL, 30);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
	ck_assert_uint_lt(now_ms() - t0, 8000);
}
END_TEST

/* ---- release and destroy while threads wait for their fills ---- */

static atomic_int slow_started;
static atomic_bool releasing;

static int slow_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	(void)arg;
	/* From the third fill on, not before the release begins (2 s at
	 * most): threads are then still waiting when it does, however slowly
	 * the machine runs the main thread (seen under ThreadSanitizer on a
	 * loaded machine: every fill done before the release, none waited). */
	if (atomic_fetch_add(&slow_started, 1) >= 2)
		for (int i = 0; i < 2000 && !atomic_load(&releasing); i++)
			usleep(1000);
	usleep(20 * 1000);
	upt_fill(buf, len, off, SEED);
	return 0;
}

static __thread sigjmp_buf waiter_jb;
static atomic_int segv_seen;

static void waiter_on_segv(int sig)
{
	(void)sig;
	atomic_fetch_add(&segv_seen, 1);
	siglongjmp(waiter_jb, 1);
}

struct waiter {
	uint8_t *page;
	size_t off;
	int outcome; /* 1 data, 2 SIGSEGV (released), 3 wrong byte */
};

static void *wait_for_page(void *arg)
{
	struct waiter *w = arg;

	if (sigsetjmp(waiter_jb, 1) == 0) {
		uint8_t v = *(volatile uint8_t *)w->page;
		w->outcome = v == upt_byte(w->off, SEED) ? 1 : 3;
	} else {
		w->outcome = 2;
	}
	return NULL;
}

/* 16 threads fault on pages of a slow callback's region; the region is
 * released (or the pager destroyed) while most wait: each reads the right
 * byte or meets the released range (SIGSEGV, as in threads mode); none
 * hangs, none reads a wrong byte, and release returns. */
static void child_release_waiting(void *arg)
{
	const bool destroy = *(const bool *)arg;
	const size_t ps = UPT_PAGE;
	struct waiter w[16];
	pthread_t th[16];
	struct sigaction sa;
	upager_source_t *cb;
	upager_region_t *r;
	upager_t *p;
	uint8_t *a;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = waiter_on_segv;
	sigaction(SIGSEGV, &sa, NULL);
	if (!(p = inline_pager(1)) || upager_source_callback(slow_fill, NULL, NULL, &cb) < 0 ||
	    upager_map(p, 64 * ps, cb, &r) < 0)
		_exit(10);
	upager_region_advise(r, UPAGER_ADV_RANDOM);
	a = upager_region_addr(r);
	for (int i = 0; i < 16; i++) {
		w[i] = (struct waiter){ .page = a + (size_t)i * 3 * ps + 11,
					.off = (size_t)i * 3 * ps + 11 };
		if (pthread_create(&th[i], NULL, wait_for_page, &w[i]) != 0)
			_exit(11);
	}
	while (atomic_load(&slow_started) < 2)
		usleep(1000);
	atomic_store(&releasing, true);
	if (destroy ? upager_destroy(p) != 0 : upager_release(r) != 0)
		_exit(12);
	for (int i = 0; i < 16; i++) {
		pthread_join(th[i], NULL);
		if (w[i].outcome != 1 && w[i].outcome != 2)
			_exit(20 + w[i].outcome);
	}
	/* Some waited through the release: a fill takes 20 ms, one at a time. */
	if (atomic_load(&segv_seen) == 0)
		_exit(13);
	if (!destroy)
		upager_destroy(p);
	upager_source_release(cb);
	_exit(0);
}

START_TEST(test_release_while_waiting)
{
	bool destroy = false;
	int st = upt_child(child_release_waiting, &destroy, 20);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}
END_TEST

START_TEST(test_destroy_while_waiting)
{
	bool destroy = true;
	int st = upt_child(child_release_waiting, &destroy, 20);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
}
END_TEST

/* More threads waiting than there are request slots (256): those without
 * one nap and fault again; none is dropped, none hangs, every byte right.
 * The first fill waits until every thread has started (and faulted, or is
 * about to), so that the slots run out. */
static atomic_bool all_started;

static int slowish_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	(void)arg;
	while (!atomic_load(&all_started))
		usleep(1000);
	usleep(200);
	upt_fill(buf, len, off, SEED);
	return 0;
}

START_TEST(test_more_waiters_than_slots)
{
	enum { N = 320 };
	static struct waiter w[N];
	static pthread_t th[N];
	pthread_attr_t attr;
	upager_source_t *cb;
	upager_region_t *r;
	upager_stats_t st;
	upager_t *p = inline_pager(1);
	uint8_t *a;

	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(upager_source_callback(slowish_fill, NULL, NULL, &cb), 0);
	ck_assert_int_eq(upager_map(p, N * UPT_PAGE, cb, &r), 0);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0);
	a = upager_region_addr(r);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	for (int i = 0; i < N; i++) {
		w[i] = (struct waiter){ .page = a + (size_t)i * UPT_PAGE + 5,
					.off = (size_t)i * UPT_PAGE + 5 };
		ck_assert_int_eq(pthread_create(&th[i], &attr, wait_for_page, &w[i]), 0);
	}
	usleep(100 * 1000);
	atomic_store(&all_started, true);
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		ck_assert_msg(w[i].outcome == 1, "thread %d: outcome %d", i, w[i].outcome);
	}
	pthread_attr_destroy(&attr);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.pages_resident, N);
	ck_assert_uint_eq(st.fill_errors, 0);
	ck_assert_int_eq(upager_destroy(p), 0);
	upager_source_release(cb);
}
END_TEST

/* ---- a callback touching memory of its own pager ---- */

static uint8_t *other_page;

/* Reads a page of another callback region of the same pager, whose fill
 * would need the handler thread this callback runs on. */
static int touching_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	(void)arg;
	(void)off;
	memset(buf, *(volatile uint8_t *)other_page, len);
	return 0;
}

/* Handler threads block SIGBUS (lib/thread.c): the kernel kills the
 * process at the callback's fault, as it would for a zero or file region.
 * Not a wait for itself (a hang), not wrong data. */
static void child_callback_recursion(void *arg)
{
	upager_source_t *cb, *cb2;
	upager_region_t *r, *r2;
	upager_t *p;
	volatile uint8_t *a;

	(void)arg;
	upt_catch_sigbus();
	if (!(p = inline_pager(1)) || upager_source_callback(touching_fill, NULL, NULL, &cb) < 0 ||
	    upager_source_callback(pattern_fill, NULL, NULL, &cb2) < 0 ||
	    upager_map(p, UPT_PAGE, cb, &r) < 0 || upager_map(p, UPT_PAGE, cb2, &r2) < 0)
		_exit(10);
	other_page = upager_region_addr(r2);
	a = upager_region_addr(r);
	if (sigsetjmp(upt_sigbus_jb, 1) == 0)
		_exit(a[0] == upt_byte(0, SEED) ? 11 : 12);
	_exit(13); /* the program's handler ran on the handler thread */
}

START_TEST(test_callback_touches_own_pager)
{
	int st = upt_child(child_callback_recursion, NULL, 20);

	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "status %#x", st);
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("inline_sources");
	TCase *tc = upt_tcase(s, "bytes");

	upt_add(tc, test_callback_1, NEED, WHY);
	upt_add(tc, test_callback_8, NEED, WHY);
	upt_add(tc, test_callback_64, NEED, WHY);
	upt_add(tc, test_remote_1, NEED, WHY);
	upt_add(tc, test_remote_8, NEED, WHY);
	upt_add(tc, test_remote_64, NEED, WHY);
	upt_add(tc, test_snapshot_1, NEED, WHY);
	upt_add(tc, test_snapshot_8, NEED, WHY);
	upt_add(tc, test_snapshot_64, NEED, WHY);
	upt_add(tc, test_snapshot_filled_inline, NEED, WHY);
	upt_add(tc, test_snapshot_record_queued, NEED, WHY);
	upt_add(tc, test_snapshot_corrupt_page, NEED, WHY);
	tc = upt_tcase(s, "errors");
	upt_add(tc, test_callback_error_program_handler, NEED, WHY);
	upt_add(tc, test_callback_error_default_action, NEED, WHY);
	upt_add(tc, test_remote_server_killed, NEED, WHY);
	upt_add(tc, test_callback_touches_own_pager, NEED, WHY);
	tc = upt_tcase(s, "races");
	upt_add(tc, test_release_while_waiting, NEED, WHY);
	upt_add(tc, test_destroy_while_waiting, NEED, WHY);
	upt_add(tc, test_more_waiters_than_slots, NEED, WHY);
	return s;
}

int main(void)
{
	return upt_main(make);
}
