/* SPDX-License-Identifier: MIT */
/* The zero source: every byte reads zero, read and write faults alike. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static void run_zero(uint64_t disable)
{
	upager_t *p = upt_pager(1, disable);
	const size_t ps = UPT_PAGE, n = 512;
	upager_source_t *z;
	upager_region_t *r;
	upager_stats_t st;
	uint8_t *a;

	ck_assert_int_eq(upager_source_zero(&z), 0);
	ck_assert_int_eq(upager_map(p, n * ps, z, &r), 0);
	ck_assert_int_eq(upager_source_release(z), 0); /* the region keeps its own reference */
	a = upager_region_addr(r);

	/* Even pages: read first. Odd pages: written first. */
	for (size_t i = 0; i < n; i += 2)
		ck_assert_int_eq(upt_check_zero(a + i * ps, ps), -1);
	for (size_t i = 1; i < n; i += 2)
		memset(a + i * ps, (int)(i & 0xff) | 1, ps);
	for (size_t i = 1; i < n; i += 2)
		for (size_t b = 0; b < ps; b++)
			ck_assert_uint_eq(a[i * ps + b], (i & 0xff) | 1);
	/* Writing a page first read as zero: the kernel's COW, no new fault to us. */
	a[0] = 42;
	ck_assert_uint_eq(a[0], 42);
	ck_assert_int_eq(upt_check_zero(a + 1, ps - 1), -1);

	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.faults, n);
	ck_assert_uint_eq(st.read_faults, n / 2);
	ck_assert_uint_eq(st.write_faults, n / 2);
	ck_assert_uint_eq(st.pages_filled, n);
	ck_assert_uint_eq(st.bytes_filled, n * ps);
	ck_assert_uint_eq(st.pages_zero, n);
	ck_assert_uint_eq(st.pages_resident, n);
	ck_assert_uint_eq(st.fill_errors, 0);
	/* Latency is recorded after the copy that woke us: allow it a moment. */
	for (int i = 0; i < 1000 && st.lat_samples < n; i++) {
		usleep(1000);
		ck_assert_int_eq(upager_region_stats(r, &st), 0);
	}
	ck_assert_uint_eq(st.lat_samples, n);
	ck_assert(st.lat_min_ns > 0 && st.lat_min_ns <= st.lat_p50_ns);
	ck_assert(st.lat_p50_ns <= st.lat_p99_ns && st.lat_p99_ns <= st.lat_max_ns);

	ck_assert_int_eq(upager_release(r), 0);
	ck_assert_int_eq(upager_stats(p, &st), 0);
	ck_assert_uint_eq(st.faults, n);
	ck_assert_uint_eq(st.pages_resident, 0);
	ck_assert_int_eq(upager_destroy(p), 0);
}

START_TEST(test_zero_zeropage)
{
	run_zero(0);
}
END_TEST

/* Without UFFDIO_ZEROPAGE read faults take a copy of a zero page. */
START_TEST(test_zero_copy_only)
{
	run_zero(UPAGER_FEAT_ZEROPAGE);
}
END_TEST

/* Read faults map the shared zero page: resident memory does not grow. */
START_TEST(test_zero_reads_cost_no_memory)
{
	upager_t *p = upt_pager(1, 0);
	const size_t len = 64u << 20;
	upager_source_t *z;
	upager_region_t *r;
	volatile uint8_t *a;
	unsigned sum = 0;
	long before, after;

	ck_assert_int_eq(upager_source_zero(&z), 0);
	ck_assert_int_eq(upager_map(p, len, z, &r), 0);
	a = upager_region_addr(r);
	/* The region's own resident memory: the process's would also count a
	 * sanitizer's shadow of the region, which reads fault in where the
	 * kernel maps no zero page for them (6.18 here: 8 MiB for 64). */
	before = upt_range_rss_kib((const void *)a, len);
	for (size_t off = 0; off < len; off += UPT_PAGE)
		sum += a[off];
	after = upt_range_rss_kib((const void *)a, len);
	ck_assert_uint_eq(sum, 0);
	ck_assert_msg(before >= 0 && after >= 0, "region not found in /proc/self/smaps");
	ck_assert_msg(after - before < 1024, "the region's RSS grew %ld KiB reading 64 MiB of zeros",
		      after - before);
	upager_release(r);
	upager_source_release(z);
	upager_destroy(p);
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("zero");
	TCase *tc = upt_tcase(s, "zero");

	upt_add(tc, test_zero_zeropage, UPAGER_FEAT_ZEROPAGE, "UFFDIO_ZEROPAGE");
	upt_add(tc, test_zero_copy_only, 0, "");
	if (UPT_TSAN)
		printf("SKIP test_zero_reads_cost_no_memory: ThreadSanitizer's shadow memory is RSS\n");
	else
		upt_add(tc, test_zero_reads_cost_no_memory, UPAGER_FEAT_ZEROPAGE, "UFFDIO_ZEROPAGE");
	return s;
}

int main(void)
{
	return upt_main(make);
}
