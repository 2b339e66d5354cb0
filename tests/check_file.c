/* SPDX-License-Identifier: MIT */
/* The file source: MAP_PRIVATE semantics, every byte checked. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"

START_TEST(test_file_every_byte)
{
	const size_t ps = UPT_PAGE, len = 1000 * ps;
	upager_t *p = upt_pager(1, 0);
	upager_source_t *s;
	upager_region_t *r;
	upager_stats_t st;
	char path[256];
	int fd = upt_tmpfile(len, 7, path, sizeof(path));
	uint8_t *a;

	ck_assert_int_eq(upager_source_file(fd, 0, &s), 0);
	close(fd); /* the source holds its own descriptor */
	ck_assert_int_eq(upager_map(p, len, s, &r), 0);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0); /* count page by page */
	upager_source_release(s);
	a = upager_region_addr(r);
	/* Touch in a scrambled order so neighbouring pages are not filled in turn. */
	for (size_t i = 0; i < 1000; i++) {
		size_t pg = (i * 337) % 1000;
		ck_assert_uint_eq(a[pg * ps + 5], upt_byte(pg * ps + 5, 7));
	}
	ck_assert_int_eq(upt_check_pattern(a, len, 0, 7), -1);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.faults, 1000);
	ck_assert_uint_eq(st.pages_filled, 1000);
	ck_assert_uint_eq(st.pages_zero, 0);
	ck_assert_uint_eq(st.pages_resident, 1000);
	upager_release(r);
	upager_destroy(p);
}
END_TEST

START_TEST(test_file_offset_and_path)
{
	const size_t ps = UPT_PAGE;
	upager_t *p = upt_pager(1, 0);
	upager_source_t *s;
	upager_region_t *r;
	char path[256], link[300];
	int fd = upt_tmpfile(64 * ps, 3, path, sizeof(path));

	/* The file is unlinked; reach it by /proc to test the path constructor. */
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ck_assert_int_eq(upager_source_path(link, 16 * ps, &s), 0);
	ck_assert_int_eq(upager_map(p, 48 * ps, s, &r), 0);
	upager_source_release(s);
	ck_assert_int_eq(upt_check_pattern(upager_region_addr(r), 48 * ps, 16 * ps, 3), -1);
	upager_release(r);
	upager_destroy(p);
	close(fd);
}
END_TEST

/* Region longer than the file: the tail of the last page and every page
 * past the end read zero, as with mmap. */
START_TEST(test_file_shorter_than_region)
{
	const size_t ps = UPT_PAGE, flen = 10 * ps + 123, rlen = 32 * ps;
	upager_t *p = upt_pager(1, 0);
	upager_source_t *s;
	upager_region_t *r;
	upager_stats_t st;
	char path[256];
	int fd = upt_tmpfile(flen, 11, path, sizeof(path));
	uint8_t *a;

	ck_assert_int_eq(upager_source_file(fd, 0, &s), 0);
	ck_assert_int_eq(upager_map(p, rlen, s, &r), 0);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0); /* count page by page */
	upager_source_release(s);
	a = upager_region_addr(r);
	ck_assert_int_eq(upt_check_pattern(a, flen, 0, 11), -1);
	ck_assert_int_eq(upt_check_zero(a + flen, rlen - flen), -1);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.pages_filled, 32);
	ck_assert_uint_eq(st.pages_zero, 32 - 11); /* wholly past the end */
	/* An empty file reads as zeros throughout. */
	ck_assert_int_eq(ftruncate(fd, 0), 0);
	ck_assert_int_eq(upager_decommit(r, 0, rlen), 0);
	ck_assert_int_eq(upager_commit(r, 0, rlen), 0);
	ck_assert_int_eq(upt_check_zero(a, rlen), -1);
	upager_release(r);
	upager_destroy(p);
	close(fd);
}
END_TEST

/* Writes stay in memory: the file is unchanged, and a decommit brings back
 * the file's bytes. */
START_TEST(test_file_private_copy)
{
	const size_t ps = UPT_PAGE, len = 16 * ps;
	upager_t *p = upt_pager(1, 0);
	upager_source_t *s;
	upager_region_t *r;
	char path[256];
	int fd = upt_tmpfile(len, 5, path, sizeof(path));
	uint8_t *a, buf[64];

	ck_assert_int_eq(upager_source_file(fd, 0, &s), 0);
	ck_assert_int_eq(upager_map(p, len, s, &r), 0);
	upager_source_release(s);
	a = upager_region_addr(r);
	memset(a + 3 * ps, 0xEE, ps);      /* write fault on an untouched page */
	ck_assert_uint_eq(a[5 * ps], upt_byte(5 * ps, 5));
	a[5 * ps] ^= 0xFF;                /* write to a page already read */
	ck_assert_int_eq(pread(fd, buf, sizeof(buf), 3 * ps), (ssize_t)sizeof(buf));
	ck_assert_int_eq(upt_check_pattern(buf, sizeof(buf), 3 * ps, 5), -1);
	ck_assert_int_eq(pread(fd, buf, 1, 5 * ps), 1);
	ck_assert_uint_eq(buf[0], upt_byte(5 * ps, 5));
	ck_assert_int_eq(upager_decommit(r, 0, len), 0);
	ck_assert_int_eq(upager_commit(r, 0, len), 0);
	ck_assert_int_eq(upt_check_pattern(a, len, 0, 5), -1);
	upager_release(r);
	upager_destroy(p);
	close(fd);
}
END_TEST

/* The file is read when a page is filled: changes show in pages not yet
 * filled, never in pages already filled. With RANDOM advice a page is
 * filled exactly when it is first touched. */
START_TEST(test_file_reads_at_fault_time)
{
	const size_t ps = UPT_PAGE;
	upager_t *p = upt_pager(1, 0);
	upager_source_t *s;
	upager_region_t *r;
	char path[256];
	int fd = upt_tmpfile(4 * ps, 1, path, sizeof(path));
	uint8_t *a, v = 0x5A;

	ck_assert_int_eq(upager_source_file(fd, 0, &s), 0);
	ck_assert_int_eq(upager_map(p, 4 * ps, s, &r), 0);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0);
	upager_source_release(s);
	a = upager_region_addr(r);
	ck_assert_uint_eq(a[0], upt_byte(0, 1));
	ck_assert_int_eq(pwrite(fd, &v, 1, 0), 1);
	ck_assert_int_eq(pwrite(fd, &v, 1, 2 * ps), 1);
	ck_assert_uint_eq(a[0], upt_byte(0, 1));
	ck_assert_uint_eq(a[2 * ps], 0x5A);
	upager_release(r);
	upager_destroy(p);
	close(fd);
}
END_TEST

/*
 * A random fault on a file fills 16 pages around it, 64 when that block is
 * already in the page cache (two RWF_NOWAIT probes: neighbours then cost a
 * copy, not a disk read). Cold: the file's pages dropped first.
 */
static void cached_block(unsigned mode)
{
	const size_t ps = UPT_PAGE, len = 1024 * ps;
	upager_source_t *s;
	upager_region_t *r;
	upager_stats_t st;
	char path[256];
	int fd = upt_tmpfile(len, 9, path, sizeof(path));
	uint8_t *buf = malloc(len);

	ck_assert_int_eq(fdatasync(fd), 0);
	for (int warm = 0; warm < 2; warm++) {
		upager_t *p = upt_pager_mode(mode);

		if (warm) {
			char byte;
			struct iovec v = { &byte, 1 };

			ck_assert_int_eq(pread(fd, buf, len, 0), (ssize_t)len);
			if (preadv2(fd, &v, 1, 0, RWF_NOWAIT) != 1) { /* a file system without it */
				printf("SKIP %s (warm part): RWF_NOWAIT: %s\n", __func__, strerror(errno));
				upager_destroy(p);
				break;
			}
		} else {
			ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
		}
		ck_assert_int_eq(upager_source_file(fd, 0, &s), 0);
		ck_assert_int_eq(upager_map(p, len, s, &r), 0);
		upager_source_release(s);
		ck_assert_uint_eq(((uint8_t *)upager_region_addr(r))[300 * ps + 1], upt_byte(300 * ps + 1, 9));
		ck_assert_int_eq(upager_region_stats(r, &st), 0);
		ck_assert_uint_eq(st.faults, 1);
		ck_assert_uint_eq(st.pages_filled, warm ? 64 : 16); /* 256..319, else 288..303 */
		ck_assert_int_eq(upt_check_pattern(upager_region_addr(r), len, 0, 9), -1);
		upager_release(r);
		upager_destroy(p);
	}
	free(buf);
	close(fd);
}

START_TEST(test_file_cached_block_threads)
{
	cached_block(UPAGER_FAULT_THREADS);
}
END_TEST

START_TEST(test_file_cached_block_inline)
{
	cached_block(UPAGER_FAULT_INLINE);
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("file");
	TCase *tc = upt_tcase(s, "file");

	upt_add(tc, test_file_every_byte, 0, "");
	upt_add(tc, test_file_offset_and_path, 0, "");
	upt_add(tc, test_file_shorter_than_region, 0, "");
	upt_add(tc, test_file_private_copy, 0, "");
	upt_add(tc, test_file_reads_at_fault_time, 0, "");
	upt_add(tc, test_file_cached_block_threads, 0, "");
	upt_add(tc, test_file_cached_block_inline,
		UPAGER_FEAT_SIGBUS | UPAGER_FEAT_EVENT_UNMAP | UPAGER_FEAT_EVENT_REMAP,
		"UFFD_FEATURE_SIGBUS and the UNMAP/REMAP events, which inline mode needs "
		"(or UPAGER_DISABLE=sigbus/event_unmap)");
	return s;
}

int main(void)
{
	return upt_main(make);
}
