/* SPDX-License-Identifier: MIT */
/* Fault-around windows, readahead, prefetch and handler options: fewer
 * faults, and still every byte right and nothing clobbered. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

struct src_state {
	unsigned seed;
	uint64_t fail_off;
	int calls;
	size_t max_len;
};

static int counting_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	struct src_state *st = arg;

	__atomic_add_fetch(&st->calls, 1, __ATOMIC_SEQ_CST);
	/* Read by the test after the fault: ordered by the kernel's wake,
	 * which ThreadSanitizer cannot see, hence the atomics. */
	if (len > UPT_GET(st->max_len))
		UPT_SET(st->max_len, len);
	if (st->fail_off >= off && st->fail_off < off + len)
		return -EIO;
	upt_fill(buf, len, off, st->seed);
	return 0;
}

static upager_region_t *callback_region(upager_t *p, struct src_state *st, size_t pages,
					int advice)
{
	upager_source_t *s;
	upager_region_t *r;

	ck_assert_int_eq(upager_source_callback(counting_fill, st, NULL, &s), 0);
	ck_assert_int_eq(upager_map(p, pages * UPT_PAGE, s, &r), 0);
	upager_source_release(s);
	ck_assert_int_eq(upager_region_advise(r, advice), 0);
	return r;
}

/* Sequential first touch: NORMAL grows its window, SEQUENTIAL starts big,
 * RANDOM takes a fault per page; the bytes are right in every case. */
START_TEST(test_windows_by_advice)
{
	const size_t pages = 4096;
	const int advice[] = { UPAGER_ADV_NORMAL, UPAGER_ADV_SEQUENTIAL, UPAGER_ADV_RANDOM };

	for (int i = 0; i < 3; i++) {
		struct src_state st = { .seed = 3, .fail_off = UINT64_MAX };
		upager_t *p = upt_pager(1, 0);
		upager_region_t *r = callback_region(p, &st, pages, advice[i]);
		upager_stats_t s;

		ck_assert_int_eq(upt_check_pattern(upager_region_addr(r), pages * UPT_PAGE, 0, 3), -1);
		ck_assert_int_eq(upager_region_stats(r, &s), 0);
		ck_assert_uint_eq(s.pages_filled, pages);
		ck_assert_uint_eq(s.pages_resident, pages);
		if (advice[i] == UPAGER_ADV_RANDOM) {
			ck_assert_uint_eq(s.faults, pages);
			ck_assert_uint_eq(UPT_GET(st.max_len), UPT_PAGE);
		} else if (advice[i] == UPAGER_ADV_SEQUENTIAL) {
			ck_assert_uint_le(s.faults, pages / 256 + 1);
			ck_assert_uint_eq(UPT_GET(st.max_len), 256 * UPT_PAGE);
		} else {
			ck_assert_uint_le(s.faults, pages / 256 + 16); /* 1, 2, 4, ... 256 */
			ck_assert_uint_eq(UPT_GET(st.max_len), 256 * UPT_PAGE);
		}
		upager_release(r);
		upager_destroy(p);
	}
}
END_TEST

/*
 * A window over a VMA the program split (madvise MADV_DONTDUMP of part of
 * the region here; mprotect or mlock of a part do the same): one UFFDIO_COPY
 * must stay within one VMA, and the kernel answers ENOENT to a range over
 * two. With SEQUENTIAL advice every fault asked the same 256 pages again,
 * was woken to retry, and faulted again for ever. Each mode of placement:
 * copies (callback), zero pages (zero source read) and zeroed copies
 * (zero source written). In a child: a hang ends in its timeout.
 */
static void split_vma_child(void *arg)
{
	const size_t pages = 64;
	int which = (int)(intptr_t)arg;
	struct src_state st = { .seed = 9, .fail_off = UINT64_MAX };
	upager_t *p = upt_pager(1, 0);
	upager_source_t *z;
	upager_region_t *r;
	uint8_t *a;

	if (which == 0) {
		r = callback_region(p, &st, pages, UPAGER_ADV_SEQUENTIAL);
	} else {
		if (upager_source_zero(&z) || upager_map(p, pages * UPT_PAGE, z, &r))
			_exit(10);
		upager_source_release(z);
		if (upager_region_advise(r, UPAGER_ADV_SEQUENTIAL))
			_exit(11);
	}
	a = upager_region_addr(r);
	/* Three VMAs: [0, 8), [8, 16) and [16, 64). */
	if (madvise(a + 8 * UPT_PAGE, 8 * UPT_PAGE, MADV_DONTDUMP) < 0)
		_exit(12);
	for (size_t i = 0; i < pages; i++) {
		if (which == 2)
			a[i * UPT_PAGE] = 0;
		if (which == 0 ? upt_check_pattern(a + i * UPT_PAGE, UPT_PAGE, i * UPT_PAGE, 9) >= 0
			       : upt_check_zero(a + i * UPT_PAGE, UPT_PAGE) >= 0)
			_exit(13);
	}
	_exit(0);
}

START_TEST(test_window_over_split_vma)
{
	int st = upt_child(split_vma_child, (void *)(intptr_t)_i, 20);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "%s: status 0x%x (killed by signal %d: a hang ends in SIGKILL)",
		      _i == 0 ? "callback" : _i == 1 ? "zero, read" : "zero, written", st,
		      WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}
END_TEST

/* Zero source, written sequentially: windows of zeroed copies, all zero. */
START_TEST(test_zero_windows)
{
	const size_t pages = 8192;
	upager_t *p = upt_pager(1, 0);
	upager_source_t *z;
	upager_region_t *r;
	upager_stats_t s;
	uint8_t *a;

	ck_assert_int_eq(upager_source_zero(&z), 0);
	ck_assert_int_eq(upager_map(p, pages * UPT_PAGE, z, &r), 0);
	upager_source_release(z);
	a = upager_region_addr(r);
	for (size_t i = 0; i < pages; i++)
		a[i * UPT_PAGE + 7] = 1;
	for (size_t i = 0; i < pages; i++) {
		ck_assert_int_eq(upt_check_zero(a + i * UPT_PAGE, 7), -1);
		ck_assert_uint_eq(a[i * UPT_PAGE + 7], 1);
		ck_assert_int_eq(upt_check_zero(a + i * UPT_PAGE + 8, UPT_PAGE - 8), -1);
	}
	ck_assert_int_eq(upager_region_stats(r, &s), 0);
	ck_assert_uint_eq(s.pages_filled, pages);
	ck_assert_uint_le(s.faults, pages / 256 + 16);
	upager_release(r);
	upager_destroy(p);
}
END_TEST

/* A window never crosses into uncommitted memory, nor over pages already
 * there (the program's writes survive). */
START_TEST(test_windows_respect_extents_and_resident)
{
	const size_t ps = UPT_PAGE;
	struct src_state st = { .seed = 5, .fail_off = UINT64_MAX };
	upager_t *p = upt_pager(1, 0);
	upager_source_t *s;
	upager_region_t *r;
	upager_stats_t stt;
	uint8_t *a;

	ck_assert_int_eq(upager_source_callback(counting_fill, &st, NULL, &s), 0);
	ck_assert_int_eq(upager_reserve(p, 1024 * ps, s, 0, &r), 0);
	upager_source_release(s);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_SEQUENTIAL), 0);
	a = upager_region_addr(r);
	ck_assert_int_eq(upager_commit(r, 0, 100 * ps), 0);
	ck_assert_int_eq(upager_commit(r, 200 * ps, 100 * ps), 0);
	a[0] = 0xAA;                       /* fills [0, 100): the extent's end */
	ck_assert_int_eq(upager_region_stats(r, &stt), 0);
	ck_assert_uint_eq(stt.pages_resident, 100);
	/* Write pages 50..59, drop 40..49 and put them back: a fault at 40
	 * may fill 40..49 only. */
	for (size_t i = 50; i < 60; i++)
		memset(a + i * ps, 0x11, ps);
	ck_assert_int_eq(upager_decommit(r, 40 * ps, 10 * ps), 0);
	ck_assert_int_eq(upager_commit(r, 40 * ps, 10 * ps), 0);
	ck_assert_int_eq(upt_check_pattern(a + 40 * ps, 10 * ps, 40 * ps, 5), -1);
	for (size_t i = 50 * ps; i < 60 * ps; i++)
		ck_assert_uint_eq(a[i], 0x11);
	ck_assert_uint_eq(a[0], 0xAA);
	ck_assert_int_eq(upt_check_pattern(a + 1, 40 * ps - 1, 1, 5), -1);
	ck_assert_int_eq(upt_check_pattern(a + 60 * ps, 40 * ps, 60 * ps, 5), -1);
	/* The second extent fills on its own. */
	ck_assert_int_eq(upt_check_pattern(a + 200 * ps, 100 * ps, 200 * ps, 5), -1);
	ck_assert_int_eq(upager_region_stats(r, &stt), 0);
	ck_assert_uint_eq(stt.pages_resident, 200);
	upager_release(r);
	upager_destroy(p);
}
END_TEST

/* A source failing inside a window: only the faulting page's own failure
 * is a SIGBUS; the pages before and after are filled. */
static sigjmp_buf jump;
static volatile uintptr_t bus_addr;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	bus_addr = (uintptr_t)si->si_addr;
	siglongjmp(jump, 1);
}

static void window_fail_child(void *arg)
{
	const size_t ps = UPT_PAGE;
	struct src_state st = { .seed = 8, .fail_off = 300 * ps };
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };
	upager_region_t *r;
	upager_t *p;
	uint8_t *a;

	if (upager_create(&p, NULL))
		_exit(2);
	r = callback_region(p, &st, 1024, UPAGER_ADV_SEQUENTIAL);
	a = upager_region_addr(r);
	sigaction(SIGBUS, &sa, NULL);
	if (upt_check_pattern(a, 300 * ps, 0, 8) != -1)
		_exit(3);
	if (sigsetjmp(jump, 1) == 0) {
		volatile uint8_t v = a[300 * ps];
		(void)v;
		_exit(4);
	}
	if (bus_addr < (uintptr_t)a + 300 * ps || bus_addr >= (uintptr_t)a + 301 * ps)
		_exit(5);
	if (upt_check_pattern(a + 301 * ps, 723 * ps, 301 * ps, 8) != -1)
		_exit(6);
	_exit(0);
}

START_TEST(test_window_failure_isolated)
{
	int status = upt_child(window_fail_child, NULL, 20);

	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
}
END_TEST

/* File source read sequentially: readahead places pages before any fault. */
START_TEST(test_file_readahead)
{
	const size_t pages = 8192; /* 32 MiB */
	upager_t *p = upt_pager(1, 0);
	upager_source_t *s;
	upager_region_t *r;
	upager_stats_t st;
	char path[256];
	int fd = upt_tmpfile(pages * UPT_PAGE, 12, path, sizeof(path));

	ck_assert_int_eq(upager_source_file(fd, 0, &s), 0);
	close(fd);
	ck_assert_int_eq(upager_map(p, pages * UPT_PAGE, s, &r), 0);
	upager_source_release(s);
	ck_assert_int_eq(upt_check_pattern(upager_region_addr(r), pages * UPT_PAGE, 0, 12), -1);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.pages_filled, pages);
	ck_assert_uint_gt(st.pages_prefetched, 0);
	ck_assert_uint_lt(st.faults, pages / 64);
	upager_release(r);
	upager_destroy(p);
}
END_TEST

/* Release while readahead is chaining windows: nothing touches the freed
 * region (ASan would say), and the next region is unaffected. */
START_TEST(test_release_during_readahead)
{
	const size_t pages = 16384; /* 64 MiB */
	char path[256];
	int fd = upt_tmpfile(pages * UPT_PAGE, 21, path, sizeof(path));
	upager_t *p = upt_pager(2, 0);

	for (int i = 0; i < 20; i++) {
		upager_source_t *s;
		upager_region_t *r;

		ck_assert_int_eq(upager_source_file(fd, 0, &s), 0);
		ck_assert_int_eq(upager_map(p, pages * UPT_PAGE, s, &r), 0);
		upager_source_release(s);
		ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_SEQUENTIAL), 0);
		ck_assert_int_eq(upt_check_pattern(upager_region_addr(r), (size_t)(i + 1) * 64 * UPT_PAGE,
						   0, 21),
				 -1);
		ck_assert_int_eq(upager_release(r), 0);
	}
	ck_assert_int_eq(upager_destroy(p), 0);
	close(fd);
}
END_TEST

START_TEST(test_prefetch)
{
	const size_t pages = 4096, ps = UPT_PAGE;
	struct src_state st = { .seed = 9, .fail_off = UINT64_MAX };
	upager_t *p = upt_pager(2, 0);
	upager_region_t *r = callback_region(p, &st, pages, UPAGER_ADV_RANDOM);
	upager_stats_t s;

	ck_assert_int_eq(upager_prefetch(NULL, 0, ps), -EINVAL);
	ck_assert_int_eq(upager_prefetch(r, 1, ps), -EINVAL);
	ck_assert_int_eq(upager_prefetch(r, 0, 0), -EINVAL);
	ck_assert_int_eq(upager_prefetch(r, pages * ps, ps), -ERANGE);
	ck_assert_int_eq(upager_region_advise(r, 7), -EINVAL);
	ck_assert_int_eq(upager_region_advise(NULL, UPAGER_ADV_NORMAL), -EINVAL);

	ck_assert_int_eq(upager_decommit(r, 1000 * ps, 10 * ps), 0); /* a hole: skipped */
	ck_assert_int_eq(upager_prefetch(r, 0, pages * ps), 0);
	for (int i = 0; i < 5000; i++) {
		ck_assert_int_eq(upager_region_stats(r, &s), 0);
		if (s.pages_prefetched >= pages - 10)
			break;
		usleep(1000);
	}
	ck_assert_uint_eq(s.pages_prefetched, pages - 10);
	ck_assert_uint_eq(s.faults, 0);
	ck_assert_int_eq(upt_check_pattern(upager_region_addr(r), 1000 * ps, 0, 9), -1);
	ck_assert_int_eq(upt_check_pattern((uint8_t *)upager_region_addr(r) + 1010 * ps,
					   (pages - 1010) * ps, 1010 * ps, 9),
			 -1);
	ck_assert_int_eq(upager_region_stats(r, &s), 0);
	ck_assert_uint_eq(s.faults, 0); /* everything was there before the touch */
	ck_assert_uint_eq(s.pages_resident, pages - 10);
	/* Prefetching what is resident does nothing. */
	ck_assert_int_eq(upager_prefetch(r, 0, pages * ps), 0);
	/* A region released with prefetch queued: no hang, nothing leaks. */
	ck_assert_int_eq(upager_commit(r, 1000 * ps, 10 * ps), 0);
	ck_assert_int_eq(upager_prefetch(r, 1000 * ps, 10 * ps), 0);
	ck_assert_int_eq(upager_release(r), 0);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

/* Handler options: pinned handlers, spinning on and off, bad values refused. */
START_TEST(test_handler_options)
{
	const unsigned spins[] = { 0, 50, 1000 };
	upager_options_t o;
	upager_t *p;

	upager_options_init(&o);
	ck_assert_uint_eq(o.spin_us, UPAGER_SPIN_DEFAULT_US);
	o.spin_us = 2000000;
	ck_assert_int_eq(upager_create(&p, &o), -EINVAL);
	upager_options_init(&o);
	o.fault_mode = 7;
	ck_assert_int_eq(upager_create(&p, &o), -EINVAL);
	for (int i = 0; i < 3; i++) {
		struct src_state st = { .seed = 2, .fail_off = UINT64_MAX };
		upager_region_t *r;

		upager_options_init(&o);
		o.spin_us = spins[i];
		o.handler_cpus = 1; /* CPU 0 exists everywhere */
		o.nthreads = 2;
		ck_assert_int_eq(upager_create(&p, &o), 0);
		r = callback_region(p, &st, 256, UPAGER_ADV_RANDOM);
		ck_assert_int_eq(upt_check_pattern(upager_region_addr(r), 256 * UPT_PAGE, 0, 2), -1);
		ck_assert_int_eq(upager_destroy(p), 0);
	}
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("fastpath");
	TCase *tc = upt_tcase(s, "fastpath");

	upt_add(tc, test_windows_by_advice, 0, "");
	upt_add(tc, test_zero_windows, 0, "");
	tcase_add_loop_test(tc, test_window_over_split_vma, 0, 3);
	upt_add(tc, test_windows_respect_extents_and_resident, 0, "");
	upt_add(tc, test_window_failure_isolated, 0, "");
	upt_add(tc, test_file_readahead, 0, "");
	upt_add(tc, test_release_during_readahead, 0, "");
	upt_add(tc, test_prefetch, 0, "");
	upt_add(tc, test_handler_options, 0, "");
	return s;
}

int main(void)
{
	return upt_main(make);
}
