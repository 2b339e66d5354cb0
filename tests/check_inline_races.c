/* SPDX-License-Identifier: MIT */
/*
 * Inline faults (UPAGER_FAULT_INLINE), the findings of the hostile review
 * of issue 11: an inline pager refused without the UNMAP/REMAP events; an
 * unresolvable copy retried within a bound; an inline fill in flight while
 * the program mremaps another region over its range; the program's
 * SIG_DFL/SIG_IGN with SA_SIGINFO left in its flags; fork in the middle of a
 * decommit drain or a table rewrite; a region split into more mappings
 * than the table holds; registered addresses in no mapping (MREMAP_DONTUNMAP,
 * mremap grown in place). Each test ran first against the code before its
 * fix (see the commits).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "upager-int.h" /* the pager's lock, held as a upager_* call does */

/* An inline pager needs the SIGBUS feature and the UNMAP/REMAP events. */
#define NEED (UPAGER_FEAT_SIGBUS | UPAGER_FEAT_EVENT_UNMAP | UPAGER_FEAT_EVENT_REMAP)
#define WHY "UFFD_FEATURE_SIGBUS and the UNMAP/REMAP events"

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* ---- finding 2: no inline pager without the UNMAP/REMAP events ---- */

/*
 * Without UNMAP events a munmapped region's mapping stays in the inline
 * table: another pager's region at that address was filled from the stale
 * one (its zero region read the file's bytes), and a file mapped past its
 * end there retried its own SIGBUS for ever. So upager_create refuses.
 */
START_TEST(test_refused_without_events)
{
	const uint64_t events[] = { UPAGER_FEAT_EVENT_UNMAP, UPAGER_FEAT_EVENT_REMAP };

	for (size_t i = 0; i < 2; i++) {
		upager_options_t o;
		upager_t *p = NULL;
		int ret;

		upager_options_init(&o);
		o.fault_mode = UPAGER_FAULT_INLINE;
		o.disable_features = events[i];
		ret = upager_create(&p, &o);
		if (ret == 0)
			upager_destroy(p);
		ck_assert_msg(ret == -ENOTSUP, "without feature %#llx: upager_create returned %d",
			      (unsigned long long)events[i], ret);
		/* the threaded mode still works without them */
		o.fault_mode = UPAGER_FAULT_THREADS;
		ck_assert_int_eq(upager_create(&p, &o), 0);
		ck_assert_int_eq(upager_destroy(p), 0);
	}
}
END_TEST

/*
 * A copy that the kernel refuses with ENOENT (the range is not one VMA
 * registered: here a 256-page SEQUENTIAL window over a VMA the program split
 * with madvise) is retried, but not for ever: the child ends, with the
 * right bytes or the program's SIGBUS, within the test's bound. Before, it
 * retried the same window for ever.
 */
static void child_split_window(void *arg)
{
	const size_t ps = UPT_PAGE;
	upager_t *p = upt_pager_mode(UPAGER_FAULT_INLINE);
	upager_source_t *z;
	upager_region_t *r;
	volatile uint8_t *a;

	(void)arg;
	if (upager_source_zero(&z) < 0 || upager_map(p, 64 * ps, z, &r) < 0 ||
	    upager_region_advise(r, UPAGER_ADV_SEQUENTIAL) < 0)
		_exit(10);
	a = upager_region_addr(r);
	if (madvise((void *)(a + 8 * ps), 8 * ps, MADV_DONTDUMP) < 0)
		_exit(11);
	for (size_t i = 0; i < 64; i++)
		if (a[i * ps] != 0)
			_exit(12);
	_exit(0);
}

START_TEST(test_unplaceable_copy_bounded)
{
	int st = upt_child(child_split_window, NULL, 20);

	ck_assert_msg((WIFEXITED(st) && WEXITSTATUS(st) == 0) ||
			      (WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS),
		      "child status %#x", st);
}
END_TEST

/* ---- finding 1: mremap over an inline region with a fill in flight ---- */

/*
 * Pager B's inline file region at Y is being filled (a 256-page O_DIRECT
 * window, SEQUENTIAL advice) when the program mremap(MREMAP_FIXED)s
 * region A (a zero source) onto Y. The kernel lets B's copy through once
 * B's handler has read the UNMAP, and UFFDIO_COPY takes any registered
 * range: B's bytes landed in A (no upager_reserve ran to wait for it).
 * Every byte at Y must read 0. The toucher's access, retried after B's
 * fill, may meet an inline A at Y before A's handler has read the REMAP:
 * the documented limit (the program's SIGBUS), which the toucher takes and
 * goes on.
 */
static _Atomic(uint8_t *) over_target;
static atomic_int over_go, over_done;
static __thread sigjmp_buf *over_jb;

static void over_on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	if (!over_jb)
		_exit(20); /* not the toucher's */
	siglongjmp(*over_jb, 1);
}

static void *over_toucher(void *arg)
{
	sigjmp_buf jb;

	(void)arg;
	for (int seen = 0;;) {
		int g = atomic_load(&over_go);

		if (g < 0)
			return NULL;
		if (g == seen) {
			sched_yield();
			continue;
		}
		seen = g;
		if (sigsetjmp(jb, 1) == 0) {
			over_jb = &jb;
			(void)*(volatile uint8_t *)atomic_load(&over_target);
		}
		over_jb = NULL;
		atomic_store(&over_done, g);
	}
}

static void child_mremap_over(void *arg)
{
	const size_t ps = UPT_PAGE, npages = 256, len = npages * ps;
	unsigned amode = *(unsigned *)arg;
	char path[256];
	struct sigaction sa = { .sa_sigaction = over_on_sigbus, .sa_flags = SA_SIGINFO };
	int fd = upt_tmpfile(len, 43, path, sizeof(path));
	upager_t *pb, *pa;
	upager_source_t *f, *z;
	pthread_t th;
	int bad = 0;

	sigaction(SIGBUS, &sa, NULL); /* before the first inline pager */
	pb = upt_pager_mode(UPAGER_FAULT_INLINE);
	pa = upt_pager_mode(amode);

	if (fd < 0 || fsync(fd) < 0 || fcntl(fd, F_SETFL, O_DIRECT) < 0 ||
	    upager_source_file(fd, 0, &f) < 0 || upager_source_zero(&z) < 0)
		_exit(10);
	close(fd);
	if (pthread_create(&th, NULL, over_toucher, NULL) != 0)
		_exit(10);
	for (int round = 1; round <= 40 && !bad; round++) {
		upager_region_t *ra, *rb;
		upager_stats_t st = { 0 };
		uint8_t *y, *x;
		uint64_t until;

		if (upager_map(pb, len, f, &rb) < 0 || upager_map(pa, len, z, &ra) < 0 ||
		    upager_region_advise(rb, UPAGER_ADV_SEQUENTIAL) < 0)
			_exit(11);
		y = upager_region_addr(rb);
		x = upager_region_addr(ra);
		atomic_store(&over_target, y);
		atomic_store(&over_go, round);
		until = now_ns() + 2000000000ull;
		while (st.faults == 0 && now_ns() < until)
			upager_region_stats(rb, &st);
		if (mremap(x, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, y) != (void *)y)
			_exit(12);
		while (atomic_load(&over_done) != round)
			sched_yield();
		for (size_t i = 0; i < len; i++)
			if (((volatile uint8_t *)y)[i] != 0) {
				fprintf(stderr, "round %d: byte %zu of A (moved over B) reads %#x\n",
					round, i, y[i]);
				bad = 1;
				break;
			}
		if (upager_release(ra) < 0 || upager_release(rb) < 0)
			_exit(13);
	}
	atomic_store(&over_go, -1);
	pthread_join(th, NULL);
	_exit(bad);
}

static void check_mremap_over(unsigned amode)
{
	int st = upt_child(child_mremap_over, &amode, 60);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}

START_TEST(test_mremap_over_inline_fill) { check_mremap_over(UPAGER_FAULT_THREADS); }
END_TEST
START_TEST(test_mremap_inline_over_inline_fill) { check_mremap_over(UPAGER_FAULT_INLINE); }
END_TEST

/* ---- finding 5: SIG_DFL/SIG_IGN with SA_SIGINFO in the flags ---- */

/*
 * The kernel leaves SIG_DFL with SA_SIGINFO after an SA_SIGINFO |
 * SA_RESETHAND handler ran, and sigaction() accepts SIG_IGN or SIG_DFL with
 * it: the disposition is still the default or ignore. upager's chain called
 * sa_sigaction, address 1 or 0 (the child died of SIGSEGV).
 */
static void child_disposition_siginfo(void *arg)
{
	bool ignore = *(bool *)arg;
	const size_t ps = UPT_PAGE;
	struct sigaction sa = { .sa_flags = SA_SIGINFO };
	upager_t *p;
	char *m;
	int fd;

	sa.sa_handler = ignore ? SIG_IGN : SIG_DFL;
	sigaction(SIGBUS, &sa, NULL);
	p = upt_pager_mode(UPAGER_FAULT_INLINE);
	(void)p;
	alarm(10);
	if (ignore) {
		kill(getpid(), SIGBUS); /* ignored, as without upager */
		_exit(0);
	}
	/* a mapping past the end of its file: the kernel's SIGBUS, not upager's */
	fd = open(getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", O_TMPFILE | O_RDWR, 0600);
	m = mmap(NULL, ps, PROT_READ, MAP_SHARED, fd, 0);
	if (fd < 0 || m == MAP_FAILED)
		_exit(10);
	(void)*(volatile char *)m;
	_exit(11);
}

START_TEST(test_ignored_with_siginfo)
{
	bool ignore = true;
	int st = upt_child(child_disposition_siginfo, &ignore, 20);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x%s", st,
		      WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "");
}
END_TEST

START_TEST(test_default_with_siginfo)
{
	bool ignore = false;
	int st = upt_child(child_disposition_siginfo, &ignore, 20);

	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "child status %#x %s", st,
		      WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "");
}
END_TEST

/* ---- finding 4: fork in the middle of a decommit's drain ---- */

/*
 * A thread of the parent is in upager_decommit's drain (which waits for
 * inline fills under a process-wide lock) when another forks: the child's
 * own inline pager's decommit waited for that lock for ever (7 children of
 * 100 in the review's probe).
 */
#define DRAIN_PAGES 256
static upager_region_t *drain_region;
static atomic_bool drain_stop;
static __thread sigjmp_buf drain_jb;

static void drain_on_segv(int sig)
{
	(void)sig;
	siglongjmp(drain_jb, 1);
}

static void *drain_faulter(void *arg)
{
	volatile uint8_t *a = upager_region_addr(drain_region);

	(void)arg;
	while (!atomic_load(&drain_stop))
		for (size_t i = 0; i < DRAIN_PAGES && !atomic_load(&drain_stop); i++) {
			if (sigsetjmp(drain_jb, 1))
				break; /* decommitted under us: PROT_NONE */
			(void)a[i * UPT_PAGE];
		}
	return NULL;
}

static void *drain_decommitter(void *arg)
{
	(void)arg;
	while (!atomic_load(&drain_stop)) {
		upager_decommit(drain_region, 0, DRAIN_PAGES * UPT_PAGE);
		upager_commit(drain_region, 0, DRAIN_PAGES * UPT_PAGE);
	}
	return NULL;
}

static void grandchild_decommit(void)
{
	upager_t *p;
	upager_source_t *z;
	upager_region_t *r;

	signal(SIGALRM, SIG_DFL); /* Check's handler would kill the group */
	alarm(3);                 /* hung: killed by SIGALRM */
	p = upt_pager_mode(UPAGER_FAULT_INLINE);
	if (upager_source_zero(&z) < 0 || upager_map(p, 16 * UPT_PAGE, z, &r) < 0)
		_exit(10);
	(void)*(volatile uint8_t *)upager_region_addr(r);
	_exit(upager_decommit(r, 0, 16 * UPT_PAGE) == 0 ? 0 : 11);
}

static void child_fork_in_drain(void *arg)
{
	struct sigaction sa = { .sa_handler = drain_on_segv, .sa_flags = SA_NODEFER };
	char path[256];
	int fd = upt_tmpfile(DRAIN_PAGES * UPT_PAGE, 47, path, sizeof(path)), hung = 0;
	upager_t *p;
	upager_source_t *f;
	pthread_t t1, t2;

	(void)arg;
	sigaction(SIGSEGV, &sa, NULL);
	p = upt_pager_mode(UPAGER_FAULT_INLINE);
	if (fd < 0 || upager_source_file(fd, 0, &f) < 0 ||
	    upager_map(p, DRAIN_PAGES * UPT_PAGE, f, &drain_region) < 0 ||
	    upager_region_advise(drain_region, UPAGER_ADV_SEQUENTIAL) < 0)
		_exit(10); /* 1 MiB windows: fills long enough to drain */
	pthread_create(&t1, NULL, drain_faulter, NULL);
	pthread_create(&t2, NULL, drain_decommitter, NULL);
	for (int k = 0; k < 150 && !hung; k++) {
		int st;
		pid_t pid;

		usleep(1000 + k % 7 * 130);
		pid = fork();
		if (pid == 0)
			grandchild_decommit();
		if (pid < 0 || waitpid(pid, &st, 0) != pid)
			_exit(12);
		if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM) {
			fprintf(stderr, "fork %d: the child's decommit hung (3 s)\n", k);
			hung = 1;
		} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "fork %d: child status %#x\n", k, st);
			hung = 2;
		}
	}
	atomic_store(&drain_stop, true);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	_exit(hung);
}

START_TEST(test_fork_in_decommit_drain)
{
	int st = upt_child(child_fork_in_drain, NULL, 50);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}
END_TEST

/* ---- finding 3: one region split into more mappings than 1024 ---- */

/*
 * upager_reserve stops at 1000 inline regions, but the program's munmap
 * splits a region into as many mappings as it likes (up to the kernel's
 * vm.max_map_count): every other page of a 2200-page region unmapped
 * leaves 1100. The table held 1024: the faults of the rest were the
 * program's SIGBUS.
 */
static void child_split_many(void *arg)
{
	const size_t ps = UPT_PAGE, n = 2200;
	upager_t *p = upt_pager_mode(UPAGER_FAULT_INLINE);
	char path[256];
	int fd = upt_tmpfile(n * ps, 53, path, sizeof(path));
	upager_source_t *f;
	upager_region_t *r;
	upager_stats_t st;
	uint8_t *a;

	(void)arg;
	if (fd < 0 || upager_source_file(fd, 0, &f) < 0 || upager_map(p, n * ps, f, &r) < 0 ||
	    upager_region_advise(r, UPAGER_ADV_RANDOM) < 0)
		_exit(10);
	a = upager_region_addr(r);
	for (size_t i = 1; i < n; i += 2)
		if (munmap(a + i * ps, ps) < 0)
			_exit(11);
	for (size_t i = 0; i < n; i += 2)
		if (upt_check_pattern(a + i * ps, ps, i * ps, 53) >= 0) {
			fprintf(stderr, "page %zu: wrong bytes\n", i);
			_exit(12);
		}
	if (upager_region_stats(r, &st) < 0 || st.pages_filled != n / 2)
		_exit(13);
	_exit(0);
}

START_TEST(test_split_past_table)
{
	int st = upt_child(child_split_many, NULL, 50);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x %s", st,
		      WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "");
}
END_TEST

/* ---- finding 7: registered addresses in no mapping (a documented limit) ---- */

/*
 * The old range of an mremap(MREMAP_DONTUNMAP), and the part an mremap
 * grows a region by in place, stay registered but belong to no mapping.
 * The threaded mode zero-fills their faults; an inline pager's handler
 * cannot tell whose uffd registered them (a zero page placed there could
 * be a moved page whose REMAP is not read yet), so the fault is the
 * program's SIGBUS at its exact address (upager_create(3), Limits). The
 * test holds that: the program's handler sees BUS_ADRERR at the address,
 * nothing hangs, no byte is made up.
 */
static volatile void *limit_addr;
static volatile int limit_code;
static sigjmp_buf limit_jb;

static void limit_on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	limit_addr = si->si_addr;
	limit_code = si->si_code;
	siglongjmp(limit_jb, 1);
}

static void child_no_mapping(void *arg)
{
	const size_t ps = UPT_PAGE;
	bool grow = *(bool *)arg;
	struct sigaction sa = { .sa_sigaction = limit_on_sigbus, .sa_flags = SA_SIGINFO };
	upager_source_t *z;
	upager_region_t *r;
	upager_t *p;
	uint8_t *a, *b, *probe;

	sigaction(SIGBUS, &sa, NULL); /* before the first inline pager */
	p = upt_pager_mode(UPAGER_FAULT_INLINE);
	if (upager_source_zero(&z) < 0 || upager_map(p, 32 * ps, z, &r) < 0)
		_exit(10);
	a = upager_region_addr(r);
	if (grow) {
		/* the top half unmapped (out of the region), then grown back
		 * in place: a + 16 pages on are registered, in no mapping */
		if (munmap(a + 16 * ps, 16 * ps) < 0)
			_exit(11);
		if (mremap(a, 16 * ps, 32 * ps, 0) != (void *)a)
			_exit(77); /* taken meanwhile: nothing tested */
		probe = a + 20 * ps;
		if (a[0] != 0) /* the region itself still fills */
			_exit(12);
	} else {
		b = mremap(a, 16 * ps, 16 * ps, MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
		if (b == MAP_FAILED)
			_exit(77); /* kernel without MREMAP_DONTUNMAP */
		if (b[0] != 0 || b[5 * ps] != 0) /* the moved region fills */
			_exit(12);
		probe = a + 3 * ps; /* the old range */
	}
	alarm(10);
	if (sigsetjmp(limit_jb, 1) == 0) {
		(void)*(volatile uint8_t *)probe;
		_exit(13); /* read something: zero-filled, the limit is gone */
	}
	if (limit_addr != (void *)probe || limit_code != BUS_ADRERR)
		_exit(14);
	_exit(0);
}

static void check_no_mapping(bool grow)
{
	int st = upt_child(child_no_mapping, &grow, 30);

	if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
		return; /* could not arrange it here */
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}

START_TEST(test_dontunmap_old_range_sigbus) { check_no_mapping(false); }
END_TEST
START_TEST(test_grown_part_sigbus) { check_no_mapping(true); }
END_TEST

/* ---- a pager's events and its faults from a thread holding its lock ---- */

/*
 * A thread holding the pager's lock (inside a upager_* call, interrupted by
 * a signal handler of the program) touches an inline region of that pager
 * while another thread munmaps part of another region of it: the handler
 * needs the lock as writer to apply the UNMAP. The fault must be filled
 * (its range is not the event's). Before, the handler closed the pager to
 * fills from before its read to after the batch was applied, and the fault
 * waited in the table's scan for ever.
 */
static upager_t *held_pager;
static volatile uint8_t *held_addr;
static atomic_int held_stage;

static void *held_toucher(void *arg)
{
	uint8_t c;

	(void)arg;
	pthread_rwlock_rdlock(&held_pager->lock);
	atomic_store(&held_stage, 1);
	while (atomic_load(&held_stage) != 2)
		sched_yield();
	usleep(200 * 1000); /* the handler reads the UNMAP and waits for the lock */
	c = held_addr[5 * UPT_PAGE];
	pthread_rwlock_unlock(&held_pager->lock);
	atomic_store(&held_stage, 3);
	return (void *)(uintptr_t)c;
}

static void child_fault_holding_lock(void *arg)
{
	const size_t ps = UPT_PAGE;
	upager_source_t *z;
	upager_region_t *r1, *r2;
	uint8_t *b;
	pthread_t t;
	uint64_t t0;

	(void)arg;
	held_pager = upt_pager_mode(UPAGER_FAULT_INLINE);
	if (upager_source_zero(&z) < 0 || upager_map(held_pager, 16 * ps, z, &r1) < 0 ||
	    upager_map(held_pager, 16 * ps, z, &r2) < 0)
		_exit(10);
	held_addr = upager_region_addr(r1);
	b = upager_region_addr(r2);
	b[0] = 1;
	if (pthread_create(&t, NULL, held_toucher, NULL))
		_exit(11);
	while (atomic_load(&held_stage) != 1)
		sched_yield();
	atomic_store(&held_stage, 2);
	t0 = now_ns();
	if (munmap(b + 8 * ps, ps) < 0)
		_exit(12);
	while (atomic_load(&held_stage) != 3 && now_ns() - t0 < 10 * 1000000000ull)
		usleep(1000);
	if (atomic_load(&held_stage) != 3) {
		printf("the fault of a thread holding the pager's lock not done after 10 s\n");
		fflush(stdout);
		_exit(1);
	}
	pthread_join(t, NULL);
	_exit(0);
}

START_TEST(test_fault_holding_lock_during_unmap)
{
	int st = upt_child(child_fault_holding_lock, NULL, 20);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}
END_TEST

/*
 * Faults of one region go on being filled while another thread munmaps
 * pages of another region of the same pager in a loop (an UNMAP event
 * each): 64 of them within 10 s (progress, not speed). Before, the pager
 * was closed to fills from its handler's poll until the batch was applied,
 * and under the stream the faulting thread waited in the table's scan.
 */
#define STREAM_PAGES 64
#define STREAM_MUNMAPS (1u << 20) /* 4 GiB of addresses: more than 10 s of munmaps */
static volatile uint8_t *stream_addr;
static atomic_long stream_faults;

static void *stream_faulter(void *arg)
{
	(void)arg;
	for (size_t i = 0; i < STREAM_PAGES; i++) {
		(void)stream_addr[i * UPT_PAGE];
		atomic_fetch_add(&stream_faults, 1);
	}
	return NULL;
}

static void child_faults_during_munmaps(void *arg)
{
	const size_t ps = UPT_PAGE;
	upager_t *p = upt_pager_mode(UPAGER_FAULT_INLINE);
	upager_source_t *z;
	upager_region_t *r1, *r2;
	uint8_t *b;
	pthread_t t;
	uint64_t t0;
	size_t i;

	(void)arg;
	if (upager_source_zero(&z) < 0 || upager_map(p, STREAM_PAGES * ps, z, &r1) < 0 ||
	    upager_map(p, STREAM_MUNMAPS * ps, z, &r2) < 0 ||
	    upager_region_advise(r1, UPAGER_ADV_RANDOM) < 0)
		_exit(10);
	stream_addr = upager_region_addr(r1);
	b = upager_region_addr(r2);
	t0 = now_ns();
	if (pthread_create(&t, NULL, stream_faulter, NULL))
		_exit(11);
	/* From the end, a page at a time: each munmap an UNMAP event. */
	for (i = STREAM_MUNMAPS; i-- > 0 && atomic_load(&stream_faults) < STREAM_PAGES;) {
		if (munmap(b + i * ps, ps) < 0)
			_exit(13);
		if (now_ns() - t0 > 10 * 1000000000ull)
			break;
	}
	if (atomic_load(&stream_faults) < STREAM_PAGES) {
		printf("%ld of %d faults filled in %.1f s of munmaps (%zu munmaps)\n",
		       atomic_load(&stream_faults), STREAM_PAGES, (double)(now_ns() - t0) / 1e9,
		       STREAM_MUNMAPS - 1 - i);
		fflush(stdout);
		_exit(1);
	}
	pthread_join(t, NULL);
	_exit(0);
}

START_TEST(test_faults_during_munmaps)
{
	int st = upt_child(child_faults_during_munmaps, NULL, 30);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}
END_TEST

/* ---- a fill begun before a decommit, ended after a recommit ---- */

/*
 * A handler's fill read the source before a decommit and places after the
 * range was committed again: the commit state it checks at placement is
 * the same as when it began, but the range's contents are not the ones it
 * read (decommit drops them; the source has changed since). The callback
 * blocks the first fill until the test has decommitted, changed the seed
 * and committed again; the page must then read the new seed's bytes. One
 * handler thread, so the stale fill ends before the touch's fault is read;
 * no REMOVE event, so decommit's MADV_DONTNEED does not wait for it.
 */
static atomic_uint regen_seed, regen_stage; /* 1: in the fill; 2: let it go */
/* Seeds far apart: upt_byte's bytes come from the high bits of a sum. */
#define REGEN_OLD 0x10000001u
#define REGEN_NEW 0x50000003u

static int regen_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	unsigned seed = atomic_load(&regen_seed);

	(void)arg;
	if (atomic_load(&regen_stage) == 0) {
		atomic_store(&regen_stage, 1);
		for (int i = 0; i < 20000 && atomic_load(&regen_stage) != 2; i++)
			usleep(500);
	}
	upt_fill(buf, len, off, seed);
	return 0;
}

static void check_fill_across_recommit(unsigned mode)
{
	const size_t ps = UPT_PAGE;
	upager_options_t o;
	upager_source_t *cb;
	upager_region_t *r;
	upager_t *p = NULL;
	uint8_t *a;

	upager_options_init(&o);
	o.fault_mode = mode;
	o.nthreads = 1;
	o.disable_features = UPAGER_FEAT_EVENT_REMOVE;
	ck_assert_int_eq(upager_create(&p, &o), 0);
	atomic_store(&regen_seed, REGEN_OLD);
	atomic_store(&regen_stage, 0);
	ck_assert_int_eq(upager_source_callback(regen_fill, NULL, NULL, &cb), 0);
	ck_assert_int_eq(upager_map(p, 4 * ps, cb, &r), 0);
	a = upager_region_addr(r);
	ck_assert_int_eq(upager_prefetch(r, 0, ps), 0);
	for (int i = 0; i < 20000 && atomic_load(&regen_stage) != 1; i++)
		usleep(500);
	ck_assert_uint_eq(atomic_load(&regen_stage), 1);
	ck_assert_int_eq(upager_decommit(r, 0, 4 * ps), 0);
	atomic_store(&regen_seed, REGEN_NEW);
	ck_assert_int_eq(upager_commit(r, 0, 4 * ps), 0);
	atomic_store(&regen_stage, 2);
	ck_assert_msg(upt_check_pattern(a, ps, 0, REGEN_NEW) == -1,
		      "the fill begun before the decommit placed %s bytes",
		      upt_check_pattern(a, ps, 0, REGEN_OLD) == -1 ? "the old" : "wrong");
	ck_assert_int_eq(upager_release(r), 0);
	upager_source_release(cb);
	ck_assert_int_eq(upager_destroy(p), 0);
}

START_TEST(test_fill_across_recommit_threads) { check_fill_across_recommit(UPAGER_FAULT_THREADS); }
END_TEST
START_TEST(test_fill_across_recommit_inline) { check_fill_across_recommit(UPAGER_FAULT_INLINE); }
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("inline_races");
	TCase *tc = upt_tcase(s, "events");

	upt_add(tc, test_refused_without_events, UPAGER_FEAT_SIGBUS, "UFFD_FEATURE_SIGBUS");
	upt_add(tc, test_unplaceable_copy_bounded, NEED, WHY);
	/* Their toucher reads, by design, memory remapped under it. */
	if (UPT_TSAN) {
		printf("SKIP test_mremap_over_inline_fill, test_mremap_inline_over_inline_fill: "
		       "read memory remapped under them (ThreadSanitizer)\n");
	} else {
		upt_add(tc, test_mremap_over_inline_fill, NEED, WHY);
		upt_add(tc, test_mremap_inline_over_inline_fill, NEED, WHY);
	}
	tc = upt_tcase(s, "signals");
	upt_add(tc, test_ignored_with_siginfo, NEED, WHY);
	upt_add(tc, test_default_with_siginfo, NEED, WHY);
	tc = upt_tcase(s, "table");
	/* 1100 munmaps and a table re-sync each: past 50 s under ThreadSanitizer. */
	if (UPT_TSAN)
		printf("SKIP test_split_past_table: 1100 munmap splits take over 50 s under "
		       "ThreadSanitizer\n");
	else
		upt_add(tc, test_split_past_table, NEED, WHY);
	upt_add(tc, test_dontunmap_old_range_sigbus, NEED, WHY);
	upt_add(tc, test_grown_part_sigbus, NEED, WHY);
	tc = upt_tcase(s, "locked");
	upt_add(tc, test_fault_holding_lock_during_unmap, NEED, WHY);
	upt_add(tc, test_faults_during_munmaps, NEED, WHY);
	tc = upt_tcase(s, "fork");
	/* Seen under AddressSanitizer on a loaded machine: the grandchild's
	 * handler thread waits for ever on a lock of ASan's allocator that a
	 * parent thread held at the fork (GCC 12's libasan has no fork hook),
	 * and its decommit for that thread. Without ASan, glibc's malloc is
	 * fork-safe and the test means what it says. */
	if (UPT_ASAN)
		printf("SKIP test_fork_in_decommit_drain: AddressSanitizer's allocator is not "
		       "fork-safe (a child of a multithreaded process may deadlock in malloc)\n");
	else
		upt_add(tc, test_fork_in_decommit_drain, NEED, WHY);
	tc = upt_tcase(s, "recommit");
	tcase_add_test(tc, test_fill_across_recommit_threads);
	upt_add(tc, test_fill_across_recommit_inline, NEED, WHY);
	return s;
}

int main(void)
{
	return upt_main(make);
}
