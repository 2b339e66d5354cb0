/* SPDX-License-Identifier: MIT */
/*
 * Background completion (UPAGER_SNAP_COMPLETE, upager_complete): a lazy
 * restore fills every remaining page behind the faults, then lets go of its
 * source: the memory stays, right to the byte, with the snapshot gone.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"

#define NPAGES 4096 /* 16 MiB */
#define SEED 29

static char dir[64], path[128];

static void setup(void)
{
	uint8_t *a;

	snprintf(dir, sizeof(dir), "/tmp/upager-complete-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/mem.snap", dir);
	/* Every page a pattern but every 7th, written zero. */
	a = mmap(NULL, NPAGES * UPT_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(a, MAP_FAILED);
	for (size_t i = 0; i < NPAGES; i++)
		if (i % 7)
			upt_fill(a + i * UPT_PAGE, UPT_PAGE, i * UPT_PAGE, SEED);
		else
			memset(a + i * UPT_PAGE, 0, UPT_PAGE);
	ck_assert_int_eq(upager_snapshot_save(a, NPAGES * UPT_PAGE, path), 0);
	munmap(a, NPAGES * UPT_PAGE);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0) {
		/* best effort */
	}
}

static void check_page(const uint8_t *a, size_t i)
{
	if (i % 7)
		ck_assert_msg(upt_check_pattern(a + i * UPT_PAGE, UPT_PAGE, i * UPT_PAGE, SEED) < 0,
			      "page %zu: wrong bytes", i);
	else
		ck_assert_msg(upt_check_zero(a + i * UPT_PAGE, UPT_PAGE) < 0, "page %zu: not zero", i);
}

/* Is a descriptor of ours open on the snapshot file? */
static bool snapshot_open(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	bool open = false;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) && !open) {
		char link[300], target[256];
		ssize_t n;

		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = 0;
			open = strncmp(target, path, strlen(path)) == 0;
		}
	}
	closedir(d);
	return open;
}

/* Faulting threads read pages at random while the restore completes. */
struct reader {
	const uint8_t *a;
	unsigned seed;
	atomic_bool *stop;
	unsigned long wrong;
};

static void *read_random(void *arg)
{
	struct reader *rd = arg;
	uint64_t x = 0x9E3779B97F4A7C15ull * rd->seed;

	while (!atomic_load(rd->stop)) {
		size_t i;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		i = (size_t)(x % NPAGES);
		if (i % 7 ? upt_check_pattern(rd->a + i * UPT_PAGE, UPT_PAGE, i * UPT_PAGE, SEED) >= 0
			  : upt_check_zero(rd->a + i * UPT_PAGE, UPT_PAGE) >= 0)
			rd->wrong++;
	}
	return NULL;
}

static void complete_with_readers(unsigned mode)
{
	upager_t *p = upt_pager_mode(mode);
	upager_region_t *r;
	struct reader rd[3];
	pthread_t t[3];
	atomic_bool stop = false;
	uint8_t *a;

	ck_assert_int_eq(upager_snapshot_map(p, path, UPAGER_SNAP_COMPLETE, &r), 0);
	a = upager_region_addr(r);
	for (unsigned k = 0; k < 3; k++) {
		rd[k] = (struct reader){ .a = a, .seed = k + 1, .stop = &stop };
		ck_assert_int_eq(pthread_create(&t[k], NULL, read_random, &rd[k]), 0);
	}
	ck_assert(snapshot_open());
	ck_assert_int_eq(upager_complete(r, 30000), 0);
	/* The source is gone: the snapshot's descriptor closed, the file may go. */
	ck_assert_msg(!snapshot_open(), "the snapshot is still open after upager_complete");
	ck_assert_int_eq(unlink(path), 0);
	usleep(20000); /* the readers go on, on memory that is the program's now */
	atomic_store(&stop, true);
	for (unsigned k = 0; k < 3; k++) {
		pthread_join(t[k], NULL);
		ck_assert_uint_eq(rd[k].wrong, 0);
	}
	for (size_t i = 0; i < NPAGES; i++)
		check_page(a, i);
	/* Plain anonymous memory: written bytes stay, a discarded page reads zero. */
	a[5 * UPT_PAGE] = 0xAB;
	ck_assert_uint_eq(a[5 * UPT_PAGE], 0xAB);
	ck_assert_int_eq(madvise(a + 8 * UPT_PAGE, UPT_PAGE, MADV_DONTNEED), 0);
	ck_assert_int_eq(upt_check_zero(a + 8 * UPT_PAGE, UPT_PAGE), -1);
	check_page(a, 9);
	ck_assert_int_eq(munmap(a, NPAGES * UPT_PAGE), 0);
	ck_assert_int_eq(upager_destroy(p), 0);
}

START_TEST(test_complete_threads)
{
	complete_with_readers(UPAGER_FAULT_THREADS);
}
END_TEST

START_TEST(test_complete_inline)
{
	complete_with_readers(UPAGER_FAULT_INLINE);
}
END_TEST

/* Without UPAGER_SNAP_COMPLETE, upager_complete queues the rest itself. */
START_TEST(test_complete_without_flag)
{
	upager_t *p = upt_pager_mode(UPAGER_FAULT_THREADS);
	upager_region_t *r;
	uint8_t *a;
	upager_stats_t st;

	ck_assert_int_eq(upager_snapshot_map(p, path, 0, &r), 0);
	a = upager_region_addr(r);
	check_page(a, 100);
	check_page(a, 700);
	ck_assert_int_eq(upager_complete(r, 30000), 0);
	ck_assert_int_eq(upager_stats(p, &st), 0);
	ck_assert_uint_ge(st.pages_prefetched, NPAGES - 16 * 2); /* all but the faults' windows */
	for (size_t i = 0; i < NPAGES; i++)
		check_page(a, i);
	ck_assert_int_eq(munmap(a, NPAGES * UPT_PAGE), 0);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

/* A page that cannot be filled: no completion, and the region still serves. */
static int fail_page_3(void *arg, uint64_t off, void *buf, size_t len)
{
	(void)arg;
	if (off <= 3 * UPT_PAGE && off + len > 3 * UPT_PAGE)
		return -EIO;
	upt_fill(buf, len, off, SEED);
	return 0;
}

START_TEST(test_complete_times_out)
{
	upager_t *p = upt_pager_mode(UPAGER_FAULT_THREADS);
	upager_source_t *src;
	upager_region_t *r;
	uint8_t *a;

	ck_assert_int_eq(upager_source_callback(fail_page_3, NULL, NULL, &src), 0);
	ck_assert_int_eq(upager_map(p, 64 * UPT_PAGE, src, &r), 0);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0);
	ck_assert_int_eq(upager_complete(r, 300), -ETIMEDOUT);
	a = upager_region_addr(r);
	/* Still a upager region: pages come from the source. */
	ck_assert_int_eq(upt_check_pattern(a + 10 * UPT_PAGE, UPT_PAGE, 10 * UPT_PAGE, SEED), -1);
	ck_assert_int_eq(upager_complete(NULL, 0), -EINVAL);
	ck_assert_int_eq(upager_complete(r, -2), -EINVAL);
	ck_assert_int_eq(upager_release(r), 0);
	upager_source_release(src);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

/* Decommitted parts are not waited for; they stay PROT_NONE. */
START_TEST(test_complete_partly_committed)
{
	upager_t *p = upt_pager_mode(UPAGER_FAULT_THREADS);
	upager_region_t *r;
	uint8_t *a;

	ck_assert_int_eq(upager_snapshot_map(p, path, 0, &r), 0);
	a = upager_region_addr(r); /* the handle is gone after upager_complete */
	ck_assert_int_eq(upager_decommit(r, 0, 1024 * UPT_PAGE), 0);
	ck_assert_int_eq(upager_complete(r, 30000), 0);
	for (size_t i = 1024; i < NPAGES; i++)
		check_page(a, i);
	ck_assert_int_eq(munmap(a, NPAGES * UPT_PAGE), 0);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("complete");
	TCase *tc = upt_tcase(s, "complete");

	tcase_add_checked_fixture(tc, setup, teardown);
	upt_add(tc, test_complete_threads, 0, "");
	upt_add(tc, test_complete_inline, UPAGER_FEAT_SIGBUS | UPAGER_FEAT_EVENT_UNMAP | UPAGER_FEAT_EVENT_REMAP,
		"UFFD_FEATURE_SIGBUS and the UNMAP/REMAP events");
	upt_add(tc, test_complete_without_flag, 0, "");
	upt_add(tc, test_complete_times_out, 0, "");
	upt_add(tc, test_complete_partly_committed, 0, "");
	return s;
}

int main(void)
{
	return upt_main(make);
}
