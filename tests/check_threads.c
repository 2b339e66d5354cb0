/* SPDX-License-Identifier: MIT */
/* Many threads faulting at once, on the same pages and on different ones,
 * with one and with several handler threads: every byte checked. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define NTHREADS 8

struct job {
	uint8_t *a;
	size_t pages, first, step;
	unsigned seed;
	pthread_barrier_t *go;
	long bad;
};

static void *toucher(void *arg)
{
	struct job *j = arg;
	const size_t ps = UPT_PAGE;

	pthread_barrier_wait(j->go);
	j->bad = -1;
	for (size_t i = j->first; i < j->pages; i += j->step) {
		long b = upt_check_pattern(j->a + i * ps, ps, i * ps, j->seed);
		if (b >= 0) {
			j->bad = (long)(i * ps) + b;
			break;
		}
	}
	return NULL;
}

/* same = every thread walks every page in the same order (maximum overlap);
 * otherwise each takes every NTHREADS-th page. */
static void run(upager_source_t *s, unsigned seed, size_t pages, unsigned handlers, bool same)
{
	upager_t *p = upt_pager(handlers, 0);
	pthread_t t[NTHREADS];
	struct job j[NTHREADS];
	pthread_barrier_t go;
	upager_region_t *r;
	upager_stats_t st;

	ck_assert_int_eq(upager_map(p, pages * UPT_PAGE, s, &r), 0);
	pthread_barrier_init(&go, NULL, NTHREADS);
	for (unsigned i = 0; i < NTHREADS; i++) {
		j[i] = (struct job){ .a = upager_region_addr(r), .pages = pages,
				     .first = same ? 0 : i, .step = same ? 1 : NTHREADS,
				     .seed = seed, .go = &go };
		ck_assert_int_eq(pthread_create(&t[i], NULL, toucher, &j[i]), 0);
	}
	for (unsigned i = 0; i < NTHREADS; i++) {
		pthread_join(t[i], NULL);
		ck_assert_msg(j[i].bad < 0, "thread %u: wrong byte at %ld", i, j[i].bad);
	}
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	/* A page a thread has seen is counted, even while handlers still
	 * work (a fill racing for pages already there counts them until it
	 * finds them claimed), and each page once, once they are done. */
	ck_assert_uint_eq(st.pages_resident, pages);
	ck_assert_uint_ge(st.pages_filled, pages);
	ck_assert_uint_ge(st.faults, 1);
	ck_assert_uint_eq(st.fill_errors, 0);
	pthread_barrier_destroy(&go);
	ck_assert_int_eq(upager_release(r), 0); /* waits for the region's fills */
	ck_assert_int_eq(upager_stats(p, &st), 0);
	ck_assert_uint_eq(st.pages_filled, pages);
	ck_assert_uint_eq(st.fill_errors, 0);
	upager_destroy(p);
}

static int slowish_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	upt_fill(buf, len, off, 31);
	return 0;
}

static void run_file(unsigned handlers, bool same)
{
	const size_t pages = 2048;
	upager_source_t *s;
	char path[256];
	int fd = upt_tmpfile(pages * UPT_PAGE, 41, path, sizeof(path));

	ck_assert_int_eq(upager_source_file(fd, 0, &s), 0);
	close(fd);
	run(s, 41, pages, handlers, same);
	upager_source_release(s);
}

static void run_callback(unsigned handlers, bool same)
{
	upager_source_t *s;

	ck_assert_int_eq(upager_source_callback(slowish_fill, NULL, NULL, &s), 0);
	run(s, 31, 2048, handlers, same);
	upager_source_release(s);
}

START_TEST(test_file_same_pages_1h) { run_file(1, true); }
END_TEST
START_TEST(test_file_different_pages_1h) { run_file(1, false); }
END_TEST
START_TEST(test_file_same_pages_4h) { run_file(4, true); }
END_TEST
START_TEST(test_file_different_pages_4h) { run_file(4, false); }
END_TEST
/*
 * The same with both CPUs busy, again and again: handlers are preempted
 * between counting a window and placing it, and the statistics, read as
 * soon as the last thread has its page, must already count every page, and
 * each once when the handlers are done. (Counting every page of a window
 * and taking back those another handler placed first showed up to 256
 * pages too many for a while: 2304 for 2048; counting after claiming
 * showed 2044 for 2048 once in CI's fallback run.)
 */
static atomic_bool hog_stop;

static void *cpu_hog(void *arg)
{
	(void)arg;
	while (!atomic_load_explicit(&hog_stop, memory_order_relaxed))
		;
	return NULL;
}

START_TEST(test_file_different_pages_4h_loaded)
{
	time_t until = time(NULL) + 20; /* sanitizer builds get fewer rounds */
	pthread_t hog[2];

	atomic_store(&hog_stop, false);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&hog[i], NULL, cpu_hog, NULL), 0);
	for (int i = 0; i < 100 && time(NULL) < until; i++)
		run_file(4, false);
	atomic_store(&hog_stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(hog[i], NULL);
}
END_TEST
START_TEST(test_callback_same_pages_4h) { run_callback(4, true); }
END_TEST
START_TEST(test_callback_different_pages_2h) { run_callback(2, false); }
END_TEST

/* Zero source, writers and readers on the same pages: a writer's byte is
 * never lost to a late zero fill. */
struct zjob {
	uint8_t *a;
	size_t pages;
	unsigned id;
	pthread_barrier_t *go;
};

static void *zero_writer(void *arg)
{
	struct zjob *z = arg;

	pthread_barrier_wait(z->go);
	for (size_t i = 0; i < z->pages; i++)
		z->a[i * UPT_PAGE + z->id] = (uint8_t)(z->id + 1);
	return NULL;
}

START_TEST(test_zero_concurrent_writers)
{
	const size_t pages = 4096;
	upager_t *p = upt_pager(2, 0);
	pthread_t t[NTHREADS];
	struct zjob z[NTHREADS];
	pthread_barrier_t go;
	upager_source_t *s;
	upager_region_t *r;
	uint8_t *a;

	ck_assert_int_eq(upager_source_zero(&s), 0);
	ck_assert_int_eq(upager_map(p, pages * UPT_PAGE, s, &r), 0);
	a = upager_region_addr(r);
	pthread_barrier_init(&go, NULL, NTHREADS);
	for (unsigned i = 0; i < NTHREADS; i++) {
		z[i] = (struct zjob){ .a = a, .pages = pages, .id = i, .go = &go };
		ck_assert_int_eq(pthread_create(&t[i], NULL, zero_writer, &z[i]), 0);
	}
	for (unsigned i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	for (size_t pg = 0; pg < pages; pg++) {
		for (unsigned i = 0; i < NTHREADS; i++)
			ck_assert_uint_eq(a[pg * UPT_PAGE + i], i + 1);
		ck_assert_int_eq(upt_check_zero(a + pg * UPT_PAGE + NTHREADS, UPT_PAGE - NTHREADS),
				 -1);
	}
	pthread_barrier_destroy(&go);
	upager_release(r);
	upager_source_release(s);
	upager_destroy(p);
}
END_TEST

/*
 * More faulting threads than fill slots, all waiting on reads that complete
 * only later (a FIFO the test writes once everyone is blocked): faults wait
 * for slots, and must still all complete once data flows.
 */
#define MANY 80

static void *touch_one(void *arg)
{
	return (void *)(uintptr_t)(*(volatile uint8_t *)arg + 1);
}

START_TEST(test_more_faults_than_slots)
{
	char dir[] = "/tmp/upager-fifo-XXXXXX", path[64];
	static uint8_t page[65536];
	upager_t *p = upt_pager(1, 0);
	upager_source_t *s;
	upager_region_t *r;
	pthread_t t[MANY];
	int fd, wfd;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	fd = open(path, O_RDWR | O_NONBLOCK); /* RDWR: no need to wait for a writer */
	wfd = open(path, O_WRONLY | O_NONBLOCK); /* a full pipe must not block the test */
	unlink(path);
	rmdir(dir);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(wfd, 0);
	ck_assert_int_eq(fcntl(fd, F_SETFL, 0), 0); /* reads block */
	ck_assert_int_eq(upager_source_file(fd, 0, &s), 0);
	close(fd);
	ck_assert_int_eq(upager_map(p, MANY * UPT_PAGE, s, &r), 0);
	upager_source_release(s);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0);
	for (int i = 0; i < MANY; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, touch_one,
						(uint8_t *)upager_region_addr(r) + (size_t)i * UPT_PAGE),
				 0);
	usleep(200 * 1000); /* all blocked: 64 slots reading, the rest queued */
	memset(page, 0x42, sizeof(page));
	/* A pipe read returns what is there: feed until every thread is through. */
	for (int i = 0; i < MANY; i++) {
		void *ret;

		while (pthread_tryjoin_np(t[i], &ret) != 0) {
			ck_assert(write(wfd, page, sizeof(page)) > 0 || errno == EAGAIN);
			usleep(1000);
		}
		ck_assert_uint_eq((uintptr_t)ret, 0x43);
	}
	close(wfd);
	upager_release(r);
	upager_destroy(p);
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("threads");
	TCase *tc = upt_tcase(s, "threads");

	upt_add(tc, test_file_same_pages_1h, 0, "");
	upt_add(tc, test_file_different_pages_1h, 0, "");
	upt_add(tc, test_file_same_pages_4h, 0, "");
	upt_add(tc, test_file_different_pages_4h, 0, "");
	upt_add(tc, test_file_different_pages_4h_loaded, 0, "");
	upt_add(tc, test_callback_same_pages_4h, 0, "");
	upt_add(tc, test_callback_different_pages_2h, 0, "");
	upt_add(tc, test_zero_concurrent_writers, 0, "");
	upt_add(tc, test_more_faults_than_slots, 0, "");
	return s;
}

int main(void)
{
	return upt_main(make);
}
