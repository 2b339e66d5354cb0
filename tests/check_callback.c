/* SPDX-License-Identifier: MIT */
/* The callback source: data end to end, and a failing fill ends the access
 * in SIGBUS (UFFDIO_POISON, or the queued-signal fallback), never in wrong
 * data or a hang. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

struct cb_state {
	unsigned seed;
	uint64_t fail_off; /* offset whose fill fails, UINT64_MAX: none */
	int calls, destroyed;
};

static int cb_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	struct cb_state *st = arg;

	__atomic_add_fetch(&st->calls, 1, __ATOMIC_SEQ_CST);
	if (off == UPT_GET(st->fail_off))
		return -EIO;
	upt_fill(buf, len, off, st->seed);
	return 0;
}

static void cb_destroy(void *arg)
{
	((struct cb_state *)arg)->destroyed++;
}

START_TEST(test_callback_every_byte)
{
	const size_t ps = UPT_PAGE, n = 300;
	struct cb_state cs = { .seed = 9, .fail_off = UINT64_MAX };
	upager_t *p = upt_pager(1, 0);
	upager_source_t *s;
	upager_region_t *r;
	upager_stats_t st;

	ck_assert_int_eq(upager_source_callback(cb_fill, &cs, cb_destroy, &s), 0);
	ck_assert_int_eq(upager_map(p, n * ps, s, &r), 0);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0); /* one call per page */
	ck_assert_int_eq(upt_check_pattern(upager_region_addr(r), n * ps, 0, 9), -1);
	ck_assert_int_eq(UPT_GET(cs.calls), (int)n);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.pages_filled, n);
	ck_assert_uint_eq(st.pages_zero, 0);
	upager_release(r);
	ck_assert_int_eq(cs.destroyed, 0); /* the caller still holds a reference */
	upager_source_release(s);
	ck_assert_int_eq(cs.destroyed, 1);
	upager_destroy(p);
}
END_TEST

/* ---- failure: SIGBUS in a child, caught and reported through the exit code ---- */

static sigjmp_buf jump;
static volatile void *bus_addr;
static volatile int bus_code;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	bus_addr = si->si_addr;
	bus_code = si->si_code;
	siglongjmp(jump, 1);
}

struct fail_args {
	uint64_t disable;
	int expect_code;
};

/* Exit codes: 10 SIGBUS at the right page with the right code, then the
 * pages around it fine, and a retry after decommit fine; others: what broke. */
static void fail_child(void *arg)
{
	const struct fail_args *fa = arg;
	const size_t ps = UPT_PAGE;
	struct cb_state cs = { .seed = 4, .fail_off = 5 * ps };
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };
	upager_options_t o;
	upager_source_t *s;
	upager_region_t *r;
	upager_stats_t st;
	upager_t *p;
	volatile uint8_t *a;
	volatile uint8_t v = 0;

	upager_options_init(&o);
	o.disable_features = fa->disable;
	if (upager_create(&p, &o) || upager_source_callback(cb_fill, &cs, NULL, &s) ||
	    upager_map(p, 8 * ps, s, &r))
		_exit(2);
	a = upager_region_addr(r);
	sigaction(SIGBUS, &sa, NULL);
	if (sigsetjmp(jump, 1) == 0) {
		v = a[5 * ps + 17];
		_exit(3); /* read something: wrong data */
	}
	if ((uintptr_t)bus_addr < (uintptr_t)a + 5 * ps ||
	    (uintptr_t)bus_addr >= (uintptr_t)a + 6 * ps)
		_exit(4);
	if (bus_code != fa->expect_code)
		_exit(5);
	/* The neighbours are unaffected. */
	if (upt_check_pattern((const uint8_t *)a + 4 * ps, ps, 4 * ps, 4) != -1 ||
	    upt_check_pattern((const uint8_t *)a + 6 * ps, ps, 6 * ps, 4) != -1)
		_exit(6);
	if (upager_region_stats(r, &st) || st.fill_errors < 1)
		_exit(7);
	/* Once the source recovers, decommit + commit gives the real data. */
	UPT_SET(cs.fail_off, UINT64_MAX);
	if (upager_decommit(r, 5 * ps, ps) || upager_commit(r, 5 * ps, ps))
		_exit(8);
	if (sigsetjmp(jump, 1) == 0) {
		if (upt_check_pattern((const uint8_t *)a + 5 * ps, ps, 5 * ps, 4) != -1)
			_exit(9);
	} else {
		_exit(11);
	}
	(void)v;
	upager_release(r);
	upager_source_release(s);
	upager_destroy(p);
	_exit(10);
}

START_TEST(test_callback_failure_poison)
{
	struct fail_args fa = { .disable = 0, .expect_code = BUS_ADRERR };
	int status = upt_child(fail_child, &fa, 20);

	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 10, "child status %#x", status);
}
END_TEST

START_TEST(test_callback_failure_signal_fallback)
{
	struct fail_args fa = { .disable = UPAGER_FEAT_POISON, .expect_code = SI_QUEUE };
	int status = upt_child(fail_child, &fa, 20);

	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 10, "child status %#x", status);
}
END_TEST

/* With no handler installed, the default action: the process dies of SIGBUS. */
static void die_child(void *arg)
{
	struct cb_state cs = { .seed = 1, .fail_off = 0 };
	const uint64_t *disable = arg;
	upager_options_t o;
	upager_source_t *s;
	upager_region_t *r;
	upager_t *p;

	upager_options_init(&o);
	o.disable_features = *disable;
	if (upager_create(&p, &o) || upager_source_callback(cb_fill, &cs, NULL, &s) ||
	    upager_map(p, UPT_PAGE, s, &r))
		_exit(2);
	_exit(*(volatile uint8_t *)upager_region_addr(r) == 0 ? 3 : 4);
}

START_TEST(test_callback_failure_kills)
{
	uint64_t variants[] = { 0, UPAGER_FEAT_POISON, UPAGER_FEAT_POISON | UPAGER_FEAT_THREAD_ID };

	for (size_t i = 0; i < 3; i++) {
		int status;

		if (i == 0 && !(upt_features() & UPAGER_FEAT_POISON))
			continue;
		status = upt_child(die_child, &variants[i], 20);
		ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS,
			      "variant %zu: child status %#x", i, status);
	}
}
END_TEST

/* A positive return is a broken callback; it must still not map the page. */
static int cb_positive(void *arg, uint64_t off, void *buf, size_t len)
{
	memset(buf, 0x77, len);
	return 1;
}

static void positive_child(void *arg)
{
	upager_source_t *s;
	upager_region_t *r;
	upager_t *p;

	if (upager_create(&p, NULL) || upager_source_callback(cb_positive, NULL, NULL, &s) ||
	    upager_map(p, UPT_PAGE, s, &r))
		_exit(2);
	_exit(*(volatile uint8_t *)upager_region_addr(r) == 0x77 ? 3 : 4);
}

START_TEST(test_callback_positive_return)
{
	int status = upt_child(positive_child, NULL, 20);

	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "status %#x", status);
}
END_TEST

/* upager_decommit/destroy from inside a fill would deadlock: refused. */
struct reentry {
	upager_t *p;
	upager_region_t *r;
	int decommit_ret, destroy_ret;
};

static int cb_reenter(void *arg, uint64_t off, void *buf, size_t len)
{
	struct reentry *re = arg;

	UPT_SET(re->decommit_ret, upager_decommit(UPT_GET(re->r), 0, UPT_PAGE));
	UPT_SET(re->destroy_ret, upager_destroy(UPT_GET(re->p)));
	memset(buf, 1, len);
	return 0;
}

START_TEST(test_callback_reentry_refused)
{
	struct reentry re = { 0 };
	upager_source_t *s;
	upager_region_t *r;

	UPT_SET(re.p, upt_pager(1, 0));
	ck_assert_int_eq(upager_source_callback(cb_reenter, &re, NULL, &s), 0);
	ck_assert_int_eq(upager_map(re.p, UPT_PAGE, s, &r), 0);
	UPT_SET(re.r, r);
	ck_assert_uint_eq(*(volatile uint8_t *)upager_region_addr(r), 1);
	ck_assert_int_eq(UPT_GET(re.decommit_ret), -EDEADLK);
	ck_assert_int_eq(UPT_GET(re.destroy_ret), -EDEADLK);
	upager_source_release(s);
	ck_assert_int_eq(upager_destroy(re.p), 0);
}
END_TEST

/* When upager_release returns, no fill of the region is running: the
 * caller may free what its callback uses. */
static int cb_running, cb_finished;

static int slow_tracked_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	UPT_SET(cb_running, 1);
	usleep(200 * 1000);
	memset(buf, 0x3C, len);
	UPT_SET(cb_finished, 1);
	UPT_SET(cb_running, 0);
	return 0;
}

static sigjmp_buf segv_jump;

static void on_segv(int sig)
{
	siglongjmp(segv_jump, 1);
}

/* Released under it, this access ends in SIGSEGV, caught here. */
static void *touch_released(void *arg)
{
	if (sigsetjmp(segv_jump, 1) == 0)
		return (void *)(uintptr_t)*(volatile uint8_t *)arg;
	return NULL;
}

static void release_wait_child(void *arg)
{
	upager_source_t *s;
	upager_region_t *r;
	upager_t *p;
	pthread_t t;

	if (upager_create(&p, NULL) ||
	    upager_source_callback(slow_tracked_fill, NULL, NULL, &s) ||
	    upager_map(p, UPT_PAGE, s, &r))
		_exit(2);
	signal(SIGSEGV, on_segv);
	if (pthread_create(&t, NULL, touch_released, upager_region_addr(r)))
		_exit(3);
	pthread_detach(t); /* not joined: this process _exits */
	while (!UPT_GET(cb_running))
		usleep(1000);
	if (upager_release(r))
		_exit(4);
	if (UPT_GET(cb_running) || !UPT_GET(cb_finished))
		_exit(5); /* release returned while the callback ran */
	_exit(0);
}

START_TEST(test_release_waits_for_callback)
{
	int status = upt_child(release_wait_child, NULL, 20);

	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("callback");
	TCase *tc = upt_tcase(s, "callback");

	upt_add(tc, test_callback_every_byte, 0, "");
	upt_add(tc, test_callback_failure_poison, UPAGER_FEAT_POISON, "UFFDIO_POISON (Linux 6.6)");
	upt_add(tc, test_callback_failure_signal_fallback, UPAGER_FEAT_THREAD_ID,
		"UFFD_FEATURE_THREAD_ID");
	upt_add(tc, test_callback_failure_kills, 0, "");
	upt_add(tc, test_callback_positive_return, 0, "");
	upt_add(tc, test_callback_reentry_refused, 0, "");
	upt_add(tc, test_release_waits_for_callback, 0, "");
	return s;
}

int main(void)
{
	return upt_main(make);
}
