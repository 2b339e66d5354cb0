/* SPDX-License-Identifier: MIT */
/* The reserve/commit model: what is accessible, what costs memory, and
 * what a decommit gives back. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

struct pattern_src {
	unsigned seed;
	int calls;
};

static int pattern_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	struct pattern_src *ps = arg;

	__atomic_add_fetch(&ps->calls, 1, __ATOMIC_SEQ_CST);
	upt_fill(buf, len, off, ps->seed);
	return 0;
}

/* Reserve 1 TiB: no memory is spent; commit and touch far apart; decommit. */
START_TEST(test_one_tib)
{
	const size_t tib = 1ull << 40, ps = UPT_PAGE;
	struct pattern_src src = { .seed = 2 };
	upager_t *p = upt_pager(1, 0);
	upager_source_t *s;
	upager_region_t *r;
	upager_stats_t st;
	long before, after;
	uint8_t *a;

	ck_assert_int_eq(upager_source_callback(pattern_fill, &src, NULL, &s), 0);
	before = upt_rss_kib();
	ck_assert_int_eq(upager_reserve(p, tib, s, 0, &r), 0);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0); /* exactly what is touched */
	after = upt_rss_kib();
	ck_assert_msg(after - before < 1024, "reserving 1 TiB cost %ld KiB of RSS", after - before);
	ck_assert_uint_eq(upager_region_size(r), tib);
	a = upager_region_addr(r);

	/* Commit it all: still nothing resident until touched. */
	ck_assert_int_eq(upager_commit(r, 0, tib), 0);
	after = upt_rss_kib();
	ck_assert_msg(after - before < 1024, "committing 1 TiB cost %ld KiB of RSS", after - before);
	const size_t offs[] = { 0, ps, tib / 2, tib / 3 & ~(ps - 1), tib - ps };
	for (size_t i = 0; i < 5; i++)
		ck_assert_int_eq(upt_check_pattern(a + offs[i], ps, offs[i], 2), -1);
	ck_assert_int_eq(UPT_GET(src.calls), 5);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.pages_resident, 5);
	ck_assert_int_eq(upager_decommit(r, 0, tib), 0);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.pages_resident, 0);
	ck_assert_int_eq(upager_release(r), 0);
	upager_source_release(s);
	upager_destroy(p);
}
END_TEST

/* Decommit frees the pages; recommit fills them from the source again. */
START_TEST(test_decommit_recommit)
{
	const size_t ps = UPT_PAGE, n = 4096; /* 16 MiB */
	struct pattern_src src = { .seed = 6 };
	upager_t *p = upt_pager(1, 0);
	upager_source_t *s;
	upager_region_t *r;
	upager_stats_t st;
	long base, full, dropped;
	uint8_t *a;

	ck_assert_int_eq(upager_source_callback(pattern_fill, &src, NULL, &s), 0);
	ck_assert_int_eq(upager_map(p, n * ps, s, &r), 0);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0); /* one call per page */
	a = upager_region_addr(r);
	base = upt_rss_kib();
	for (size_t i = 0; i < n; i++)
		a[i * ps + 1] ^= 0xFF; /* dirty every page */
	full = upt_rss_kib();
	ck_assert_msg(full - base >= (long)(n * ps / 1024) * 9 / 10, "RSS grew only %ld KiB",
		      full - base);
	ck_assert_int_eq(upager_decommit(r, 0, n * ps), 0);
	dropped = upt_rss_kib();
	ck_assert_msg(full - dropped >= (long)(n * ps / 1024) * 9 / 10,
		      "decommit freed only %ld KiB", full - dropped);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.pages_resident, 0);

	/* Half back: the writes are gone, the source's bytes are there. */
	ck_assert_int_eq(upager_commit(r, 0, n / 2 * ps), 0);
	ck_assert_int_eq(upt_check_pattern(a, n / 2 * ps, 0, 6), -1);
	ck_assert_int_eq(UPT_GET(src.calls), (int)(n + n / 2));
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.pages_resident, n / 2);
	ck_assert_uint_eq(st.faults, n + n / 2);
	upager_release(r);
	upager_source_release(s);
	upager_destroy(p);
}
END_TEST

/* Touching reserved-but-uncommitted or decommitted memory is SIGSEGV. */
static void touch_child(void *arg)
{
	const size_t ps = UPT_PAGE;
	const int *which = arg;
	upager_source_t *z;
	upager_region_t *r;
	upager_t *p;
	volatile uint8_t *a;

	if (upager_create(&p, NULL) || upager_source_zero(&z) || upager_reserve(p, 4 * ps, z, 0, &r))
		_exit(2);
	a = upager_region_addr(r);
	if (upager_commit(r, ps, ps))
		_exit(3);
	a[ps] = 1;
	if (*which == 1 && upager_decommit(r, ps, ps))
		_exit(4);
	_exit(a[*which == 0 ? 2 * ps : ps] == 0 ? 5 : 6);
}

START_TEST(test_uncommitted_segv)
{
	for (int which = 0; which < 2; which++) {
		int status = upt_child(touch_child, &which, 20);
		ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
			      "case %d: status %#x", which, status);
	}
}
END_TEST

/* The arena pattern: commit pieces as a frontier grows, then decommit all. */
START_TEST(test_incremental_commits)
{
	const size_t ps = UPT_PAGE, chunk = 16 * ps, total = 64 * chunk;
	upager_t *p = upt_pager(1, 0);
	upager_source_t *z;
	upager_region_t *r;
	uint8_t *a;

	ck_assert_int_eq(upager_source_zero(&z), 0);
	ck_assert_int_eq(upager_reserve(p, total, z, 0, &r), 0);
	a = upager_region_addr(r);
	/* Out of order, so extents must merge from both sides. */
	for (size_t i = 0; i < 64; i++) {
		size_t c = (i * 13) % 64;
		ck_assert_int_eq(upager_commit(r, c * chunk, chunk), 0);
		memset(a + c * chunk, (int)c + 1, chunk);
	}
	for (size_t c = 0; c < 64; c++)
		for (size_t b = 0; b < chunk; b += 512)
			ck_assert_uint_eq(a[c * chunk + b], c + 1);
	ck_assert_int_eq(upager_commit(r, 0, ps), -EEXIST);
	ck_assert_int_eq(upager_decommit(r, 0, total), 0); /* one extent by now */
	ck_assert_int_eq(upager_commit(r, 0, total), 0);
	ck_assert_int_eq(upt_check_zero(a, total), -1);
	upager_release(r);
	upager_source_release(z);
	upager_destroy(p);
}
END_TEST

/* Regions are independent, and may be released from another thread. */
static void *release_thread(void *arg)
{
	return (void *)(intptr_t)upager_release(arg);
}

START_TEST(test_many_regions_release_elsewhere)
{
	const size_t ps = UPT_PAGE;
	struct pattern_src src[8];
	upager_region_t *r[8];
	upager_t *p = upt_pager(1, 0);
	upager_stats_t st;

	for (unsigned i = 0; i < 8; i++) {
		upager_source_t *s;

		src[i] = (struct pattern_src){ .seed = 100 + i };
		ck_assert_int_eq(upager_source_callback(pattern_fill, &src[i], NULL, &s), 0);
		ck_assert_int_eq(upager_map(p, (i + 1) * 8 * ps, s, &r[i]), 0);
		upager_source_release(s);
	}
	for (unsigned i = 0; i < 8; i++)
		ck_assert_int_eq(upt_check_pattern(upager_region_addr(r[i]), (i + 1) * 8 * ps, 0,
						   100 + i),
				 -1);
	ck_assert_int_eq(upager_stats(p, &st), 0);
	ck_assert_uint_eq(st.pages_resident, 8 * 36);
	for (unsigned i = 0; i < 8; i += 2) {
		pthread_t t;
		void *ret;

		ck_assert_int_eq(pthread_create(&t, NULL, release_thread, r[i]), 0);
		ck_assert_int_eq(pthread_join(t, &ret), 0);
		ck_assert_int_eq((intptr_t)ret, 0);
	}
	ck_assert_int_eq(upager_stats(p, &st), 0);
	ck_assert_uint_eq(st.pages_resident, 8 * (2 + 4 + 6 + 8));
	/* destroy releases the rest */
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("region");
	TCase *tc = upt_tcase(s, "region");

	if (UPT_TSAN)
		printf("SKIP test_one_tib: under ThreadSanitizer a 1 TiB reservation may find no room (-ENOMEM seen)\n");
	else
		upt_add(tc, test_one_tib, 0, "");
	upt_add(tc, test_decommit_recommit, 0, "");
	upt_add(tc, test_uncommitted_segv, 0, "");
	upt_add(tc, test_incremental_commits, 0, "");
	upt_add(tc, test_many_regions_release_elsewhere, 0, "");
	return s;
}

int main(void)
{
	return upt_main(make);
}
