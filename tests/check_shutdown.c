/* SPDX-License-Identifier: MIT */
/* Shutdown: destroy and release with faults pending finish in bounded time;
 * the blocked thread then finds the memory gone (SIGSEGV), never stale or
 * zero data; nothing leaks. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

static sigjmp_buf segv_jump;
static volatile int got_segv;

static void on_segv(int sig)
{
	got_segv = 1;
	siglongjmp(segv_jump, 1);
}

/* Touches one byte; 0 = read (wrong: memory was going away), 1 = SIGSEGV. */
static void *blocked_toucher(void *arg)
{
	volatile uint8_t *a = arg;
	volatile uint8_t v;

	if (sigsetjmp(segv_jump, 1) == 0) {
		v = a[0];
		(void)v;
		return (void *)0;
	}
	return (void *)1;
}

static int slow_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	usleep(300 * 1000);
	memset(buf, 0x5C, len);
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum { VIA_DESTROY, VIA_RELEASE };

struct pending_args {
	int via;
	bool fifo; /* a read that never completes, instead of a slow callback */
	size_t pages; /* region size: more than one makes the blocked fill a window */
};

/* Exit 0: the pending fault ended in SIGSEGV, the call returned within 5 s,
 * and (release) the pager still serves another region. */
static void pending_child(void *arg)
{
	const struct pending_args *pa = arg;
	struct sigaction sa = { .sa_handler = on_segv };
	char dir[] = "/tmp/upager-fifo-XXXXXX", path[64];
	upager_source_t *s, *z;
	upager_region_t *r, *other;
	upager_t *p;
	pthread_t t;
	void *res;
	double t0;
	int fd = -1;

	sigaction(SIGSEGV, &sa, NULL);
	if (upager_create(&p, NULL))
		_exit(2);
	if (pa->fifo) {
		if (!mkdtemp(dir))
			_exit(2);
		snprintf(path, sizeof(path), "%s/f", dir);
		if (mkfifo(path, 0600) < 0)
			_exit(2);
		fd = open(path, O_RDWR | O_NONBLOCK); /* RDWR: open without a writer */
		unlink(path);
		rmdir(dir);
		if (fd < 0 || fcntl(fd, F_SETFL, 0) < 0 || upager_source_file(fd, 0, &s))
			_exit(3);
	} else if (upager_source_callback(slow_fill, NULL, NULL, &s)) {
		_exit(3);
	}
	if (upager_map(p, pa->pages * UPT_PAGE, s, &r) || upager_source_zero(&z) ||
	    upager_map(p, UPT_PAGE, z, &other))
		_exit(4);
	if (pthread_create(&t, NULL, blocked_toucher, upager_region_addr(r)))
		_exit(5);
	usleep(100 * 1000); /* the thread is blocked in its fault now */
	t0 = now_s();
	if (pa->via == VIA_RELEASE) {
		if (upager_release(r))
			_exit(6);
		if (*(volatile uint8_t *)upager_region_addr(other) != 0)
			_exit(7);
	} else if (upager_destroy(p)) {
		_exit(6);
	}
	pthread_join(t, &res);
	if (now_s() - t0 > 5.0)
		_exit(8);
	if (res != (void *)1 || !got_segv)
		_exit(9);
	if (pa->via == VIA_RELEASE && upager_destroy(p))
		_exit(10);
	_exit(0);
}

static void check_pending(int via, bool fifo, size_t pages)
{
	struct pending_args pa = { .via = via, .fifo = fifo, .pages = pages };
	int status = upt_child(pending_child, &pa, 30);

	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
}

START_TEST(test_destroy_with_slow_fill_pending) { check_pending(VIA_DESTROY, false, 1); }
END_TEST
START_TEST(test_destroy_with_endless_read_pending) { check_pending(VIA_DESTROY, true, 1); }
END_TEST
START_TEST(test_release_with_slow_fill_pending) { check_pending(VIA_RELEASE, false, 1); }
END_TEST
START_TEST(test_release_with_endless_read_pending) { check_pending(VIA_RELEASE, true, 1); }
END_TEST
/* A window of many pages: its cancelled read must not start another read
 * (of the faulting page alone) that nobody cancels. */
START_TEST(test_destroy_with_endless_window_pending) { check_pending(VIA_DESTROY, true, 64); }
END_TEST
START_TEST(test_release_with_endless_window_pending) { check_pending(VIA_RELEASE, true, 64); }
END_TEST

/* destroy from a thread other than the one that created the pager. */
static void *destroy_thread(void *arg)
{
	return (void *)(intptr_t)upager_destroy(arg);
}

START_TEST(test_destroy_from_other_thread)
{
	upager_t *p = upt_pager(3, 0);
	upager_source_t *z;
	upager_region_t *r;
	pthread_t t;
	void *ret;

	ck_assert_int_eq(upager_source_zero(&z), 0);
	ck_assert_int_eq(upager_map(p, 1 << 20, z, &r), 0);
	ck_assert_uint_eq(*(volatile uint8_t *)upager_region_addr(r), 0);
	upager_source_release(z);
	ck_assert_int_eq(pthread_create(&t, NULL, destroy_thread, p), 0);
	ck_assert_int_eq(pthread_join(t, &ret), 0);
	ck_assert_int_eq((intptr_t)ret, 0);
}
END_TEST

/* Create/use/destroy cycles leave no descriptor or thread behind. */
START_TEST(test_no_leaks)
{
	int fds, threads;
	char path[256];
	int fd;

	/* A first cycle starts what runtimes start once (ThreadSanitizer's
	 * background thread), which is not ours to count. */
	upager_destroy(upt_pager(1, 0));
	fds = upt_count_fds();
	threads = upt_count_threads();
	fd = upt_tmpfile(64 * UPT_PAGE, 8, path, sizeof(path));

	fds++; /* the file above stays open for the loop */
	for (int i = 0; i < 20; i++) {
		upager_t *p = upt_pager(1 + i % 4, 0);
		upager_source_t *s;
		upager_region_t *r;

		ck_assert_int_eq(upager_source_file(fd, 0, &s), 0);
		ck_assert_int_eq(upager_map(p, 64 * UPT_PAGE, s, &r), 0);
		ck_assert_int_eq(upt_check_pattern(upager_region_addr(r), 64 * UPT_PAGE, 0, 8), -1);
		upager_source_release(s);
		if (i % 2)
			upager_release(r);
		ck_assert_int_eq(upager_destroy(p), 0);
	}
	ck_assert_int_eq(upt_count_fds(), fds);
	ck_assert_int_eq(upt_wait_threads(threads, 2000), threads);
	close(fd);
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("shutdown");
	TCase *tc = upt_tcase(s, "shutdown");

	upt_add(tc, test_destroy_with_slow_fill_pending, 0, "");
	upt_add(tc, test_destroy_with_endless_read_pending, 0, "");
	upt_add(tc, test_release_with_slow_fill_pending, 0, "");
	upt_add(tc, test_release_with_endless_read_pending, 0, "");
	upt_add(tc, test_destroy_with_endless_window_pending, 0, "");
	upt_add(tc, test_release_with_endless_window_pending, 0, "");
	upt_add(tc, test_destroy_from_other_thread, 0, "");
	upt_add(tc, test_no_leaks, 0, "");
	return s;
}

int main(void)
{
	return upt_main(make);
}
