/* SPDX-License-Identifier: MIT */
/* Every public call refuses bad arguments with a clear -errno, changing nothing. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static int fill_ok(void *arg, uint64_t off, void *buf, size_t len)
{
	memset(buf, 1, len);
	return 0;
}

START_TEST(test_create_args)
{
	upager_options_t o;
	upager_t *p;

	ck_assert_int_eq(upager_create(NULL, NULL), -EINVAL);
	upager_options_init(&o);
	o.nthreads = 0;
	ck_assert_int_eq(upager_create(&p, &o), -EINVAL);
	o.nthreads = 65;
	ck_assert_int_eq(upager_create(&p, &o), -EINVAL);
	upager_options_init(&o);
	o.open_method = 1u << 7;
	ck_assert_int_eq(upager_create(&p, &o), -EINVAL);
	upager_options_init(&o);
	o.log_level = 9;
	ck_assert_int_eq(upager_create(&p, &o), -EINVAL);
	upager_options_init(&o);
	o.reserved[3] = 1;
	ck_assert_int_eq(upager_create(&p, &o), -EINVAL);
	upager_options_init(NULL); /* must not crash */
	ck_assert_int_eq(upager_destroy(NULL), -EINVAL);
	ck_assert_uint_eq(upager_features(NULL), 0);
	ck_assert_uint_eq(upager_page_size(NULL), 0);

	ck_assert_int_eq(upager_create(&p, NULL), 0);
	ck_assert_uint_eq(upager_page_size(p), UPT_PAGE);
	ck_assert(upager_features(p) & (UPAGER_FEAT_OPEN_DEV | UPAGER_FEAT_OPEN_SYSCALL |
					UPAGER_FEAT_USER_ONLY));
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

START_TEST(test_source_args)
{
	upager_source_t *s;
	int fd;

	ck_assert_int_eq(upager_source_zero(NULL), -EINVAL);
	ck_assert_int_eq(upager_source_file(-1, 0, &s), -EINVAL);
	ck_assert_int_eq(upager_source_file(0, 0, NULL), -EINVAL);
	ck_assert_int_eq(upager_source_file(0, 1, &s), -EINVAL); /* misaligned offset */
	ck_assert_int_eq(upager_source_file(0, UINT64_MAX - UPT_PAGE + 1, &s), -EINVAL);
	ck_assert_int_eq(upager_source_file(1000000, 0, &s), -EBADF);
	ck_assert_int_eq(upager_source_path(NULL, 0, &s), -EINVAL);
	ck_assert_int_eq(upager_source_path("", 0, &s), -EINVAL);
	ck_assert_int_eq(upager_source_path("/nonexistent/upager", 0, &s), -ENOENT);
	ck_assert_int_eq(upager_source_path("/", 0, &s), -EISDIR);
	ck_assert_int_eq(upager_source_path("/etc/hostname", 3, &s), -EINVAL);
	fd = open("/dev/null", O_WRONLY);
	ck_assert_int_eq(upager_source_file(fd, 0, &s), -EBADF); /* cannot read it */
	close(fd);
	ck_assert_int_eq(upager_source_callback(NULL, NULL, NULL, &s), -EINVAL);
	ck_assert_int_eq(upager_source_callback(fill_ok, NULL, NULL, NULL), -EINVAL);
	ck_assert_int_eq(upager_source_release(NULL), -EINVAL);
}
END_TEST

START_TEST(test_region_args)
{
	upager_t *p = upt_pager(1, 0);
	size_t ps = UPT_PAGE;
	upager_source_t *z;
	upager_region_t *r;

	ck_assert_int_eq(upager_source_zero(&z), 0);
	ck_assert_int_eq(upager_reserve(NULL, ps, z, 0, &r), -EINVAL);
	ck_assert_int_eq(upager_reserve(p, ps, NULL, 0, &r), -EINVAL);
	ck_assert_int_eq(upager_reserve(p, ps, z, 0, NULL), -EINVAL);
	ck_assert_int_eq(upager_reserve(p, 0, z, 0, &r), -EINVAL);
	ck_assert_int_eq(upager_reserve(p, ps, z, 1u << 9, &r), -EINVAL);
	ck_assert_int_eq(upager_reserve(p, SIZE_MAX, z, 0, &r), -ENOMEM);
	ck_assert_int_eq(upager_reserve(p, SIZE_MAX / 2, z, 0, &r), -ENOMEM); /* > address space */
	ck_assert_int_eq(upager_map(p, 0, z, &r), -EINVAL);

	ck_assert_int_eq(upager_reserve(p, 10 * ps - 100, z, 0, &r), 0);
	ck_assert_uint_eq(upager_region_size(r), 10 * ps); /* rounded up */
	ck_assert_ptr_nonnull(upager_region_addr(r));
	ck_assert_ptr_null(upager_region_addr(NULL));
	ck_assert_uint_eq(upager_region_size(NULL), 0);

	ck_assert_int_eq(upager_commit(NULL, 0, ps), -EINVAL);
	ck_assert_int_eq(upager_commit(r, 0, 0), -EINVAL);
	ck_assert_int_eq(upager_commit(r, 1, ps), -EINVAL);
	ck_assert_int_eq(upager_commit(r, 0, ps + 1), -EINVAL);
	ck_assert_int_eq(upager_commit(r, 10 * ps, ps), -ERANGE);
	ck_assert_int_eq(upager_commit(r, 9 * ps, 2 * ps), -ERANGE);
	ck_assert_int_eq(upager_commit(r, ps, SIZE_MAX - ps + 1), -ERANGE);
	ck_assert_int_eq(upager_commit(r, 2 * ps, 3 * ps), 0);
	ck_assert_int_eq(upager_commit(r, 4 * ps, 2 * ps), -EEXIST); /* overlaps */
	ck_assert_int_eq(upager_commit(r, 0, 10 * ps), -EEXIST);
	ck_assert_int_eq(upager_commit(r, 2 * ps, 3 * ps), -EEXIST);

	ck_assert_int_eq(upager_decommit(NULL, 0, ps), -EINVAL);
	ck_assert_int_eq(upager_decommit(r, 0, 0), -EINVAL);
	ck_assert_int_eq(upager_decommit(r, 3, ps), -EINVAL);
	ck_assert_int_eq(upager_decommit(r, 11 * ps, ps), -ERANGE);
	ck_assert_int_eq(upager_decommit(r, 0, ps), -ENOENT);      /* never committed */
	ck_assert_int_eq(upager_decommit(r, ps, 2 * ps), -ENOENT); /* half committed */
	ck_assert_int_eq(upager_decommit(r, 3 * ps, ps), 0);       /* a hole in the middle */
	ck_assert_int_eq(upager_decommit(r, 3 * ps, ps), -ENOENT);
	ck_assert_int_eq(upager_decommit(r, 2 * ps, 3 * ps), -ENOENT);
	ck_assert_int_eq(upager_commit(r, 3 * ps, ps), 0);
	ck_assert_int_eq(upager_decommit(r, 2 * ps, 3 * ps), 0); /* merged again */

	ck_assert_int_eq(upager_region_stats(NULL, NULL), -EINVAL);
	ck_assert_int_eq(upager_stats(NULL, NULL), -EINVAL);
	ck_assert_int_eq(upager_release(NULL), -EINVAL);
	ck_assert_int_eq(upager_release(r), 0);
	ck_assert_int_eq(upager_source_release(z), 0);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

START_TEST(test_strerror)
{
	ck_assert_str_eq(upager_strerror(0), "success");
	ck_assert_ptr_nonnull(strstr(upager_strerror(-EEXIST), "committed"));
	ck_assert_ptr_nonnull(strstr(upager_strerror(-EDEADLK), "handler"));
	ck_assert_str_eq(upager_strerror(-EIO), strerror(EIO));
	ck_assert_str_eq(upager_strerror(12345), "unknown error");
	ck_assert_str_eq(upager_strerror(-100000), "unknown error");
}
END_TEST

START_TEST(test_probe)
{
	char why[256];
	uint64_t f = 0;

	ck_assert_int_eq(upager_probe(1u << 9, &f, why, sizeof(why)), -EINVAL);
	ck_assert_int_eq(upager_probe(0, &f, why, 0), -EINVAL);
	ck_assert_int_eq(upager_probe(0, &f, why, sizeof(why)), 0);
	ck_assert(f & UPAGER_FEAT_ZEROPAGE || getenv("UPAGER_DISABLE"));
	ck_assert_int_eq(upager_probe(0, NULL, NULL, 0), 0);
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("api");
	TCase *tc = upt_tcase(s, "args");

	upt_add(tc, test_create_args, 0, "");
	upt_add(tc, test_source_args, 0, "");
	upt_add(tc, test_region_args, 0, "");
	upt_add(tc, test_strerror, 0, "");
	upt_add(tc, test_probe, 0, "");
	return s;
}

int main(void)
{
	return upt_main(make);
}
