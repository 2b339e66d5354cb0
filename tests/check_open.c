/* SPDX-License-Identifier: MIT */
/* Opening userfaultfd each way, what each way can do, and what an
 * unprivileged user gets told. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

static const struct {
	unsigned method;
	uint64_t feat;
	const char *name;
} methods[] = {
	{ UPAGER_OPEN_DEV, UPAGER_FEAT_OPEN_DEV, "/dev/userfaultfd" },
	{ UPAGER_OPEN_SYSCALL, UPAGER_FEAT_OPEN_SYSCALL, "userfaultfd(2)" },
	{ UPAGER_OPEN_USER_ONLY, UPAGER_FEAT_USER_ONLY, "userfaultfd(2) user-mode-only" },
};

static int fill_pattern(void *arg, uint64_t off, void *buf, size_t len)
{
	upt_fill(buf, len, off, 13);
	return 0;
}

/* read(2) into an untouched page of a region: the fault is taken in kernel
 * mode. Returns read's result or -errno. */
static long kernel_mode_touch(upager_t *p)
{
	upager_source_t *s;
	upager_region_t *r;
	char path[256];
	int fd = upt_tmpfile(UPT_PAGE, 1, path, sizeof(path));
	long n;

	ck_assert_int_eq(upager_source_callback(fill_pattern, NULL, NULL, &s), 0);
	ck_assert_int_eq(upager_map(p, 2 * UPT_PAGE, s, &r), 0);
	upager_source_release(s);
	n = pread(fd, upager_region_addr(r), UPT_PAGE, 0);
	n = n < 0 ? -errno : n;
	if (n > 0)
		ck_assert_int_eq(upt_check_pattern(upager_region_addr(r), UPT_PAGE, 0, 1), -1);
	/* The user-mode touch works either way. */
	ck_assert_int_eq(upt_check_pattern((uint8_t *)upager_region_addr(r) + UPT_PAGE, UPT_PAGE,
					   UPT_PAGE, 13),
			 -1);
	upager_release(r);
	close(fd);
	return n;
}

START_TEST(test_each_method)
{
	int worked = 0;

	for (size_t i = 0; i < 3; i++) {
		upager_options_t o;
		upager_t *p;
		char why[512];
		uint64_t f;
		int ret = upager_probe(methods[i].method, &f, why, sizeof(why));

		if (ret < 0) {
			printf("note: %s unavailable here: %s\n", methods[i].name, why);
			ck_assert(strlen(why) > 10);
			continue;
		}
		ck_assert_uint_eq(f & (UPAGER_FEAT_OPEN_DEV | UPAGER_FEAT_OPEN_SYSCALL |
				       UPAGER_FEAT_USER_ONLY),
				  methods[i].feat);
		upager_options_init(&o);
		o.open_method = methods[i].method;
		ck_assert_int_eq(upager_create(&p, &o), 0);
		ck_assert_uint_eq(upager_features(p) & methods[i].feat, methods[i].feat);
		/* Kernel-mode faults: served, except in user-mode-only mode. */
		if (methods[i].method == UPAGER_OPEN_USER_ONLY)
			ck_assert_int_eq(kernel_mode_touch(p), -EFAULT);
		else
			ck_assert_int_eq(kernel_mode_touch(p), (long)UPT_PAGE);
		ck_assert_int_eq(upager_destroy(p), 0);
		worked++;
	}
	ck_assert_int_gt(worked, 0);
}
END_TEST

/* The order is fixed: /dev/userfaultfd first when allowed. */
START_TEST(test_any_prefers_dev)
{
	uint64_t f;

	ck_assert_int_eq(upager_probe(UPAGER_OPEN_ANY, &f, NULL, 0), 0);
	if (upager_probe(UPAGER_OPEN_DEV, NULL, NULL, 0) == 0)
		ck_assert(f & UPAGER_FEAT_OPEN_DEV);
}
END_TEST

/* As an unprivileged user with the default sysctl, only user-mode-only is
 * left; asking for the others says what to change. Runs when we are root
 * and can drop to 'nobody'. */
static void unpriv_child(void *arg)
{
	struct passwd *pw = getpwnam("nobody");
	char why[1024];
	uint64_t f;
	int ret;

	if (!pw || setgid(pw->pw_gid) || setuid(pw->pw_uid))
		_exit(2);
	ret = upager_probe(UPAGER_OPEN_DEV | UPAGER_OPEN_SYSCALL, &f, why, sizeof(why));
	if (ret != -EPERM)
		_exit(ret == 0 ? 20 : 3); /* 20: this machine lets everyone in */
	if (!strstr(why, "/dev/userfaultfd") || !strstr(why, "vm.unprivileged_userfaultfd"))
		_exit(4);
	ret = upager_probe(0, &f, why, sizeof(why));
	if (ret != 0 || !(f & UPAGER_FEAT_USER_ONLY))
		_exit(5);
	_exit(0);
}

START_TEST(test_unprivileged)
{
	int status = upt_child(unpriv_child, NULL, 20);

	ck_assert_msg(WIFEXITED(status), "status %#x", status);
	if (WEXITSTATUS(status) == 20) {
		printf("note: test_unprivileged: unprivileged userfaultfd is enabled here\n");
		return;
	}
	ck_assert_msg(WEXITSTATUS(status) == 0, "child exit %d", WEXITSTATUS(status));
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("open");
	TCase *tc = upt_tcase(s, "open");

	upt_add(tc, test_each_method, 0, "");
	upt_add(tc, test_any_prefers_dev, 0, "");
	if (geteuid() == 0 && getpwnam("nobody"))
		upt_add(tc, test_unprivileged, 0, "");
	else
		printf("SKIP test_unprivileged: needs root to drop to 'nobody'\n");
	return s;
}

int main(void)
{
	return upt_main(make);
}
