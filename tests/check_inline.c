/* SPDX-License-Identifier: MIT */
/*
 * Inline faults (UPAGER_FAULT_INLINE): faults resolved in the faulting
 * thread's SIGBUS handler. Every byte for the zero and file sources from 1,
 * 8 and 64 threads; the program's own SIGBUS handler and default action
 * still see their faults and upager's fill errors; a thread blocking SIGBUS;
 * read(2) into an untouched page (EFAULT); decommit, release, munmap,
 * mremap and MADV_DONTNEED racing faults (decommit and release also for a
 * callback source, whose faults go to the handler threads); a stale fill against another
 * pager's region at the same address; a signal that siglongjmps out of a
 * fill; the program's handler run as the kernel would run it; a full
 * table; fork (and a child's own inline pager); the fallback without
 * UFFD_FEATURE_SIGBUS.
 */
#include "config.h"

#include <dirent.h>
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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

/* upager_create refuses an inline pager without the UNMAP/REMAP events. */
#define NEED (UPAGER_FEAT_SIGBUS | UPAGER_FEAT_EVENT_UNMAP | UPAGER_FEAT_EVENT_REMAP)
#define WHY "UFFD_FEATURE_SIGBUS and the UNMAP/REMAP events (or UPAGER_DISABLE=sigbus/event_unmap)"
/* Tests of the program's munmap/mremap/MADV_DONTNEED: without the events
 * upager cannot know of them, in either mode. */
#define NEED_UNMAP (NEED | UPAGER_FEAT_EVENT_UNMAP)
#define NEED_REMAP (NEED | UPAGER_FEAT_EVENT_UNMAP | UPAGER_FEAT_EVENT_REMAP)
#define NEED_REMOVE (NEED | UPAGER_FEAT_EVENT_REMOVE)
#define WHY_EVENTS "UFFD_FEATURE_SIGBUS and the UNMAP/REMAP/REMOVE events"

static upager_t *inline_pager(void)
{
	upager_options_t o;
	upager_t *p = NULL;

	upager_options_init(&o);
	o.fault_mode = UPAGER_FAULT_INLINE;
	ck_assert_int_eq(upager_create(&p, &o), 0);
	return p;
}

/* ---- every byte, from many threads ---- */

static void run_threads(upager_source_t *src, unsigned seed, unsigned nthreads)
{
	upager_stats_t st;

	upt_inline_every_byte(src, seed, 2048 * UPT_PAGE, 2048, nthreads, UPAGER_ADV_NORMAL, &st);
	/* Filled in the faulting thread: a latency sample for every fault. */
	ck_assert_uint_eq(st.lat_samples, st.faults);
	/* One thread reads in order: its windows double up to 256 pages
	 * (1 + 2 + ... + 128 + 7 x 256 = 2047: 15 faults, and the last page). */
	if (nthreads == 1)
		ck_assert_uint_le(st.faults, 16);
}

static void run_zero(unsigned nthreads)
{
	upager_source_t *z;

	ck_assert_int_eq(upager_source_zero(&z), 0);
	run_threads(z, 0, nthreads);
	upager_source_release(z);
}

static void run_file(unsigned nthreads)
{
	char path[256];
	upager_source_t *f;
	int fd = upt_tmpfile(2048 * UPT_PAGE, 7, path, sizeof(path));

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(upager_source_file(fd, 0, &f), 0);
	close(fd);
	run_threads(f, 7, nthreads);
	upager_source_release(f);
}

START_TEST(test_zero_1) { run_zero(1); }
END_TEST
START_TEST(test_zero_8) { run_zero(8); }
END_TEST
START_TEST(test_zero_64) { run_zero(64); }
END_TEST
START_TEST(test_file_1) { run_file(1); }
END_TEST
START_TEST(test_file_8) { run_file(8); }
END_TEST
START_TEST(test_file_64) { run_file(64); }
END_TEST

/* A region of map_len bytes of p over a new file of file_len bytes of
 * pattern seed (*f its source, *r the region); its address. */
static uint8_t *map_file(upager_t *p, size_t file_len, size_t map_len, unsigned seed,
			 upager_source_t **f, upager_region_t **r)
{
	char path[256];
	int fd = upt_tmpfile(file_len, seed, path, sizeof(path));

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(upager_source_file(fd, 0, f), 0);
	close(fd);
	ck_assert_int_eq(upager_map(p, map_len, *f, r), 0);
	return upager_region_addr(*r);
}

/* A file shorter than the region: the rest reads as zero, as in threads mode. */
START_TEST(test_file_past_eof)
{
	const size_t ps = UPT_PAGE;
	upager_source_t *f;
	upager_region_t *r;
	upager_t *p = inline_pager();
	uint8_t *a = map_file(p, ps + ps / 2, 4 * ps, 3, &f, &r);

	ck_assert_int_eq(upt_check_pattern(a, ps + ps / 2, 0, 3), -1);
	ck_assert_int_eq(upt_check_zero(a + ps + ps / 2, 3 * ps - ps / 2), -1);
	ck_assert_int_eq(upager_release(r), 0);
	upager_source_release(f);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

/*
 * A random fault fills the file's 16-page fault-around block, aligned, in
 * the faulting thread (one fault), but never over a page already there: the
 * block stops at a resident page on either side (page 33 written by the
 * program, page 45 filled by an earlier fault) and the program's bytes stay.
 */
START_TEST(test_file_fault_around)
{
	const size_t ps = UPT_PAGE;
	upager_source_t *f;
	upager_region_t *r;
	upager_stats_t st;
	upager_t *p = inline_pager();
	unsigned char vec[64];
	uint8_t *a = map_file(p, 64 * ps, 64 * ps, 5, &f, &r);

	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0);
	a[33 * ps] = (uint8_t)~upt_byte(33 * ps, 5); /* its page alone (RANDOM), written */
	ck_assert_int_eq(upt_check_pattern(a + 45 * ps, ps, 45 * ps, 5), -1);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_NORMAL), 0);
	ck_assert_int_eq(upt_check_pattern(a + 37 * ps, ps, 37 * ps, 5), -1);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.faults, 3);
	ck_assert_int_eq(mincore(a, 64 * ps, vec), 0);
	for (size_t i = 0; i < 64; i++)
		ck_assert_msg((vec[i] & 1) == (i >= 33 && i <= 45), "page %zu", i);
	ck_assert_uint_eq(st.pages_resident, 13);
	ck_assert_int_eq(a[33 * ps], (uint8_t)~upt_byte(33 * ps, 5));
	ck_assert_int_eq(upt_check_pattern(a + 33 * ps + 1, ps - 1, 33 * ps + 1, 5), -1);
	ck_assert_int_eq(upt_check_pattern(a + 34 * ps, 12 * ps, 34 * ps, 5), -1);
	ck_assert_int_eq(upt_check_pattern(a, 64 * ps, 0, 5), 33 * ps);
	ck_assert_int_eq(upager_release(r), 0);
	upager_source_release(f);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

/* ---- limits ---- */

static int cb_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	memset(buf, 1, len);
	return 0;
}

/* Once refused (-ENOTSUP): a callback's faults now go to the handler
 * threads (tests/check_inline_sources.c has the rest). */
START_TEST(test_callback_served)
{
	upager_t *p = inline_pager();
	upager_source_t *cb;
	upager_region_t *r;

	ck_assert_int_eq(upager_source_callback(cb_fill, NULL, NULL, &cb), 0);
	ck_assert_int_eq(upager_map(p, UPT_PAGE, cb, &r), 0);
	ck_assert_int_eq(*(volatile uint8_t *)upager_region_addr(r), 1);
	ck_assert_int_eq(upager_release(r), 0);
	upager_source_release(cb);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

/* Without UFFD_FEATURE_SIGBUS (UPAGER_DISABLE=sigbus stands for an old kernel). */
START_TEST(test_no_sigbus_feature)
{
	const char *old = getenv("UPAGER_DISABLE");
	char *saved = old ? strdup(old) : NULL;
	upager_options_t o;
	upager_t *p = NULL;

	setenv("UPAGER_DISABLE", "sigbus", 1);
	upager_options_init(&o);
	o.fault_mode = UPAGER_FAULT_INLINE;
	ck_assert_int_eq(upager_create(&p, &o), -ENOTSUP);
	o.fault_mode = UPAGER_FAULT_THREADS;
	ck_assert_int_eq(upager_create(&p, &o), 0);
	ck_assert_uint_eq(upager_features(p) & UPAGER_FEAT_SIGBUS, 0);
	ck_assert_int_eq(upager_destroy(p), 0);
	if (saved)
		setenv("UPAGER_DISABLE", saved, 1);
	else
		unsetenv("UPAGER_DISABLE");
	free(saved);
}
END_TEST

/* ---- the program's SIGBUS (children: these may kill the process) ---- */

/* A file mapping cut short: SIGBUS of the program's own, under upager's handler. */
static void child_own_sigbus(void *arg)
{
	const size_t ps = UPT_PAGE;
	char path[] = "/tmp/upager-inline-XXXXXX";
	int fd = mkstemp(path);
	upager_source_t *z;
	upager_region_t *r;
	upager_t *p;
	upager_options_t o;
	volatile uint8_t *m, *a;

	upt_catch_sigbus();
	upager_options_init(&o);
	o.fault_mode = UPAGER_FAULT_INLINE;
	if (fd < 0 || upager_create(&p, &o) < 0 || upager_source_zero(&z) < 0 ||
	    upager_map(p, 4 * ps, z, &r) < 0)
		_exit(10);
	unlink(path);
	if (ftruncate(fd, ps) < 0)
		_exit(11);
	m = mmap(NULL, ps, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED || ftruncate(fd, 0) < 0)
		_exit(12);
	a = upager_region_addr(r);
	if (a[5] != 0) /* upager's own fault, inline: no call of the program's */
		_exit(13);
	if (sigsetjmp(upt_sigbus_jb, 1) == 0) {
		(void)m[100];
		_exit(14); /* no signal at all */
	}
	if (upt_sigbus_calls != 1 || upt_sigbus_addr != (void *)(m + 100) || upt_sigbus_code != BUS_ADRERR)
		_exit(15);
	/* Upager goes on after the program's handler ran. */
	if (a[ps + 1] != 0)
		_exit(16);
	_exit(0);
}

START_TEST(test_program_handler_own_fault)
{
	ck_assert_int_eq(upt_child(child_own_sigbus, NULL, 20), 0);
}
END_TEST

/* SIG_IGN: a sent SIGBUS is ignored, as without upager; upager's handler
 * stays installed and inline faults go on. */
static void child_ignored_sent(void *arg)
{
	struct sigaction cur;
	upager_source_t *z;
	upager_region_t *r;
	upager_t *p;
	volatile uint8_t *a;

	(void)arg;
	signal(SIGBUS, SIG_IGN);
	p = inline_pager();
	if (upager_source_zero(&z) < 0 || upager_map(p, 4 * UPT_PAGE, z, &r) < 0)
		_exit(10);
	a = upager_region_addr(r);
	if (a[0] != 0)
		_exit(11);
	raise(SIGBUS);
	if (sigaction(SIGBUS, NULL, &cur) < 0 || !(cur.sa_flags & SA_SIGINFO))
		_exit(12); /* SIG_DFL left installed */
	if (a[UPT_PAGE] != 0 || a[3 * UPT_PAGE] != 0)
		_exit(13);
	_exit(0);
}

START_TEST(test_ignored_sent_sigbus)
{
	int st = upt_child(child_ignored_sent, NULL, 20);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}
END_TEST

/*
 * The program's handler runs as the kernel would run it: with its sa_mask
 * and SIGBUS (no SA_NODEFER) blocked on top of the thread's mask, and once
 * only with SA_RESETHAND (the second fault: the default action).
 */
static sigset_t seen_mask;

static void masked_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	pthread_sigmask(SIG_SETMASK, NULL, &seen_mask);
	upt_sigbus_calls++;
	siglongjmp(upt_sigbus_jb, 1);
}

static void child_handler_mask(void *arg)
{
	const size_t ps = UPT_PAGE;
	char path[] = "/tmp/upager-inline-XXXXXX";
	int fd = mkstemp(path);
	struct sigaction sa;
	sigset_t thread_mask;
	volatile uint8_t *m;
	upager_t *p;

	(void)arg;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = masked_handler;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR1);
	sigaction(SIGBUS, &sa, NULL);
	sigemptyset(&thread_mask);
	sigaddset(&thread_mask, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &thread_mask, NULL);
	p = inline_pager();
	(void)p;
	unlink(path);
	if (fd < 0 || ftruncate(fd, ps) < 0)
		_exit(10);
	m = mmap(NULL, ps, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED || ftruncate(fd, 0) < 0)
		_exit(11);
	if (sigsetjmp(upt_sigbus_jb, 1) == 0) {
		(void)m[100];
		_exit(12);
	}
	if (upt_sigbus_calls != 1)
		_exit(13);
	if (!sigismember(&seen_mask, SIGBUS))
		_exit(14);
	if (!sigismember(&seen_mask, SIGUSR1))
		_exit(15);
	if (!sigismember(&seen_mask, SIGUSR2))
		_exit(16);
	if (sigsetjmp(upt_sigbus_jb, 1) == 0)
		(void)m[200]; /* SA_RESETHAND: the default action now */
	_exit(17);
}

START_TEST(test_program_handler_mask)
{
	int st = upt_child(child_handler_mask, NULL, 20);

	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "child status %#x", st);
}
END_TEST

/* A file source that cannot be read (a FIFO: pread fails with ESPIPE). */
static upager_source_t *fifo_source(void)
{
	char path[64] = "/tmp/upager-inline-fifo-XXXXXX";
	upager_source_t *s;
	int fd;

	if (!mkdtemp(path))
		_exit(20);
	strcat(path, "/f");
	if (mkfifo(path, 0600) < 0)
		_exit(21);
	fd = open(path, O_RDWR | O_NONBLOCK);
	unlink(path);
	*strrchr(path, '/') = '\0';
	rmdir(path);
	if (fd < 0 || upager_source_file(fd, 0, &s) < 0)
		_exit(22);
	close(fd);
	return s;
}

static void child_fill_error(void *arg)
{
	const size_t ps = UPT_PAGE;
	upager_options_t o;
	upager_source_t *s;
	upager_region_t *r;
	upager_stats_t st;
	upager_t *p;
	volatile uint8_t *a;

	upt_catch_sigbus();
	upager_options_init(&o);
	o.fault_mode = UPAGER_FAULT_INLINE;
	if (upager_create(&p, &o) < 0)
		_exit(10);
	s = fifo_source();
	if (upager_map(p, 4 * ps, s, &r) < 0)
		_exit(11);
	a = upager_region_addr(r);
	if (sigsetjmp(upt_sigbus_jb, 1) == 0) {
		uint8_t v = a[2 * ps + 7];
		_exit(v == 0 ? 12 : 13); /* data where there is none */
	}
	/* Poisoned: BUS_MCEERR_AR at the page; or the fault itself: BUS_ADRERR. */
	if (upt_sigbus_calls != 1 || ((uintptr_t)upt_sigbus_addr & ~(uintptr_t)(ps - 1)) != (uintptr_t)(a + 2 * ps))
		_exit(14);
	if (upt_sigbus_code != BUS_MCEERR_AR && upt_sigbus_code != BUS_ADRERR)
		_exit(15);
	if (upager_region_stats(r, &st) < 0 || st.fill_errors != 1 || st.pages_resident != 0)
		_exit(16);
	_exit(0);
}

START_TEST(test_program_handler_fill_error)
{
	ck_assert_int_eq(upt_child(child_fill_error, NULL, 20), 0);
}
END_TEST

/* No handler of the program's: the default action, as without upager. */
static void child_fill_error_default(void *arg)
{
	upager_options_t o;
	upager_region_t *r;
	upager_t *p;

	upager_options_init(&o);
	o.fault_mode = UPAGER_FAULT_INLINE;
	if (upager_create(&p, &o) < 0 || upager_map(p, UPT_PAGE, fifo_source(), &r) < 0)
		_exit(10);
	(void)*(volatile uint8_t *)upager_region_addr(r);
	_exit(11);
}

START_TEST(test_default_action)
{
	int st = upt_child(child_fill_error_default, NULL, 20);

	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "status %#x", st);
}
END_TEST

/* A thread that blocks SIGBUS: the kernel kills the process on its fault. */
static void *blocked_toucher(void *arg)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGBUS);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	return (void *)(uintptr_t)*(volatile uint8_t *)arg;
}

static void child_blocked(void *arg)
{
	upager_source_t *z;
	upager_region_t *r;
	upager_t *p = NULL;
	upager_options_t o;
	pthread_t th;

	upager_options_init(&o);
	o.fault_mode = UPAGER_FAULT_INLINE;
	if (upager_create(&p, &o) < 0 || upager_source_zero(&z) < 0 ||
	    upager_map(p, UPT_PAGE, z, &r) < 0)
		_exit(10);
	pthread_create(&th, NULL, blocked_toucher, upager_region_addr(r));
	pthread_join(th, NULL);
	_exit(11);
}

START_TEST(test_blocked_sigbus_killed)
{
	int st = upt_child(child_blocked, NULL, 20);

	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "status %#x", st);
}
END_TEST

/* ---- kernel-mode access ---- */

START_TEST(test_read_syscall_efault)
{
	const size_t ps = UPT_PAGE;
	upager_t *p = inline_pager();
	upager_source_t *z;
	upager_region_t *r;
	upager_stats_t st;
	int pfd[2];
	uint8_t *a;

	ck_assert_int_eq(upager_source_zero(&z), 0);
	ck_assert_int_eq(upager_map(p, 2 * ps, z, &r), 0);
	a = upager_region_addr(r);
	ck_assert_int_eq(pipe(pfd), 0);
	ck_assert_int_eq(write(pfd[1], "hello", 5), 5);
	/* The kernel's copy to an untouched inline page cannot be served. */
	errno = 0;
	ck_assert_int_eq(read(pfd[0], a, 5), -1);
	ck_assert_int_eq(errno, EFAULT);
	/* Prefetched first (the handler threads place it), the read works. */
	ck_assert_int_eq(upager_prefetch(r, 0, ps), 0);
	for (int i = 0; i < 5000; i++) {
		ck_assert_int_eq(upager_region_stats(r, &st), 0);
		if (st.pages_resident == 1)
			break;
		usleep(1000);
	}
	ck_assert_uint_eq(st.pages_resident, 1);
	ck_assert_int_eq(read(pfd[0], a, 5), 5);
	ck_assert_int_eq(memcmp(a, "hello", 5), 0);
	close(pfd[0]);
	close(pfd[1]);
	ck_assert_int_eq(upager_release(r), 0);
	upager_source_release(z);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

/* ---- races ---- */

static __thread sigjmp_buf segv_jb;
static atomic_bool racing;

static void on_segv(int sig)
{
	siglongjmp(segv_jb, 1);
}

struct racer {
	_Atomic(uint8_t *) base;
	size_t npages;
	unsigned seed, seed2; /* round gen / 2 - 1 even: seed; odd: seed2 */
	atomic_uint gen; /* odd while the region changes (release, map again) */
	atomic_long bad, reads;
	/* Pages of this round the program unmapped, each marked before its
	 * munmap (npages <= 64): once unmapped, anything may be mapped in the
	 * hole (seen under ASan, whose own mmaps land there: a "wrong byte"). */
	atomic_uint_fast64_t unmapped;
};

/* Reads random pages while the range is decommitted or released under it:
 * a SIGSEGV (PROT_NONE) is expected, a wrong byte is not. */
static void *race_reader(void *arg)
{
	struct racer *rc = arg;
	unsigned x = (unsigned)(uintptr_t)&x;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGSEGV);
	while (atomic_load(&racing)) {
		size_t i = (x = x * 1103515245u + 12345u) % rc->npages, off = i * UPT_PAGE + 17;
		unsigned gen = atomic_load(&rc->gen);
		uint8_t *b = atomic_load(&rc->base);

		if (sigsetjmp(segv_jb, 1)) {
			pthread_sigmask(SIG_UNBLOCK, &set, NULL);
			continue;
		}
		if (!b || (gen & 1))
			continue;
		uint8_t v = ((volatile uint8_t *)b)[off];
		/* Only a read the region and the page lived through says
		 * something: otherwise anything may have been mapped at that
		 * address meanwhile. */
		if (atomic_load(&rc->gen) != gen || (atomic_load(&rc->unmapped) & (1ull << (i % 64))))
			continue;
		if (v != upt_byte(off, (gen / 2 - 1) % 2 ? rc->seed2 : rc->seed))
			atomic_store(&rc->bad, (long)off);
		atomic_fetch_add(&rc->reads, 1);
	}
	return NULL;
}

static void start_racers(struct racer *rc, pthread_t *th, int n)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_segv;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	atomic_store(&racing, true);
	atomic_store(&rc->bad, -1);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, race_reader, rc), 0);
}

static void stop_racers(pthread_t *th, int n)
{
	atomic_store(&racing, false);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	signal(SIGSEGV, SIG_DFL);
}

/* A callback source's bytes: upt_byte(off, *(atomic_uint *)arg), whose
 * seed the races change between rounds as they rewrite a file. Its faults
 * go to the handler threads (no fill_inline). */
static int seeded_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	upt_fill(buf, len, off, atomic_load((atomic_uint *)arg));
	return 0;
}

/* Decommit and commit again under 4 readers, 300 rounds, the source's
 * bytes changed while decommitted (a file's, or a callback's seed). */
static void run_decommit_race(bool callback)
{
	const size_t ps = UPT_PAGE, npages = 256;
	char path[256];
	int fd = upt_tmpfile(npages * ps, 11, path, sizeof(path));
	upager_t *p = inline_pager();
	struct racer rc = { .npages = npages, .seed = 11, .seed2 = 12, .gen = 2 };
	atomic_uint cb_seed = 11;
	upager_source_t *f;
	upager_region_t *r;
	upager_stats_t st;
	unsigned char vec[256];
	pthread_t th[4];
	int wfd;

	ck_assert_int_ge(fd, 0);
	if (callback)
		ck_assert_int_eq(upager_source_callback(seeded_fill, &cb_seed, NULL, &f), 0);
	else
		ck_assert_int_eq(upager_source_file(fd, 0, &f), 0);
	wfd = fd; /* the source keeps its own descriptor */
	ck_assert_int_eq(upager_map(p, npages * ps, f, &r), 0);
	atomic_store(&rc.base, upager_region_addr(r));
	start_racers(&rc, th, 4);
	for (int round = 0; round < 300; round++) {
		/* Round k's file holds seed (k even) or seed2: a fill that
		 * began before the decommit would bring back the old bytes. */
		unsigned next = round % 2 ? rc.seed : rc.seed2;

		usleep(round % 7 * 100);
		atomic_fetch_add(&rc.gen, 1);
		ck_assert_int_eq(upager_decommit(r, 0, npages * ps), 0);
		/* Decommitted: no fill may land after decommit returned, even
		 * a while later. */
		usleep(round % 3 * 200);
		ck_assert_int_eq(mincore(upager_region_addr(r), npages * ps, vec), 0);
		for (size_t i = 0; i < npages; i++)
			ck_assert_msg(!(vec[i] & 1), "round %d: page %zu resident after decommit",
				      round, i);
		ck_assert_int_eq(upager_region_stats(r, &st), 0);
		ck_assert_uint_eq(st.pages_resident, 0);
		atomic_store(&cb_seed, next);
		for (size_t off = 0; off < npages * ps && !callback; off += ps) {
			uint8_t pg[UPT_PAGE];

			upt_fill(pg, ps, off, next);
			ck_assert_int_eq(pwrite(wfd, pg, ps, (off_t)off), (ssize_t)ps);
		}
		ck_assert_int_eq(upager_commit(r, 0, npages * ps), 0);
		atomic_fetch_add(&rc.gen, 1);
	}
	stop_racers(th, 4);
	ck_assert_msg(atomic_load(&rc.bad) < 0, "wrong byte at %ld", atomic_load(&rc.bad));
	ck_assert_int_gt(atomic_load(&rc.reads), 0);
	/* 300 rounds: the last one wrote seed (11) */
	ck_assert_int_eq(upt_check_pattern(upager_region_addr(r), npages * ps, 0, 11), -1);
	close(wfd);
	ck_assert_int_eq(upager_release(r), 0);
	upager_source_release(f);
	ck_assert_int_eq(upager_destroy(p), 0);
}

START_TEST(test_decommit_race)
{
	run_decommit_race(false);
}
END_TEST

START_TEST(test_decommit_race_callback)
{
	run_decommit_race(true);
}
END_TEST

/* Regions of two sources (files, or callbacks) released and reserved again
 * (often at the same address) under readers: a byte is one of theirs,
 * never a stale or zero one. */
static void run_release_race(bool callback)
{
	const size_t ps = UPT_PAGE, npages = 64;
	char path[256];
	int fd1 = upt_tmpfile(npages * ps, 21, path, sizeof(path));
	int fd2 = upt_tmpfile(npages * ps, 22, path, sizeof(path));
	upager_t *p = inline_pager();
	struct racer rc = { .npages = npages, .seed = 21, .seed2 = 22, .gen = 1 };
	atomic_uint seeds[2] = { 21, 22 };
	upager_source_t *f[2];
	pthread_t th[4];

	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(callback ? upager_source_callback(seeded_fill, &seeds[i], NULL, &f[i])
					  : upager_source_file(i ? fd2 : fd1, 0, &f[i]),
				 0);
	close(fd1);
	close(fd2);
	start_racers(&rc, th, 4);
	for (int round = 0; round < 300; round++) {
		upager_region_t *r;

		/* gen: 2 * round + 2 while region `round` is there, odd between */
		ck_assert_int_eq(upager_map(p, npages * ps, f[round % 2], &r), 0);
		atomic_store(&rc.base, upager_region_addr(r));
		atomic_fetch_add(&rc.gen, 1);
		usleep(round % 5 * 100);
		atomic_fetch_add(&rc.gen, 1);
		ck_assert_int_eq(upager_release(r), 0);
	}
	stop_racers(th, 4);
	ck_assert_msg(atomic_load(&rc.bad) < 0, "wrong byte at %ld", atomic_load(&rc.bad));
	upager_source_release(f[0]);
	upager_source_release(f[1]);
	ck_assert_int_eq(upager_destroy(p), 0);
}

START_TEST(test_release_race)
{
	run_release_race(false);
}
END_TEST

START_TEST(test_release_race_callback)
{
	run_release_race(true);
}
END_TEST

/*
 * A fill of pager A still reading when the program munmaps its range, and
 * pager B reserves a region at the same address: A's copy (UFFDIO_COPY
 * takes any registered range) must not land in B. The fill reads 256 pages
 * with O_DIRECT (SEQUENTIAL advice), so it is still reading when munmap and
 * reserve return; B's region must have no page and read as zeros.
 */
static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static _Atomic(uint8_t *) stale_addr;
static atomic_int stale_round, stale_done;

static void *stale_toucher(void *arg)
{
	sigset_t set;
	int seen = 0;

	(void)arg;
	sigemptyset(&set);
	sigaddset(&set, SIGSEGV);
	for (;;) {
		int round = atomic_load(&stale_round);
		uint8_t *b;

		if (round == seen) {
			sched_yield();
			continue;
		}
		seen = round;
		if (!(b = atomic_load(&stale_addr)))
			return NULL;
		if (sigsetjmp(segv_jb, 1) == 0)
			(void)*(volatile uint8_t *)b; /* SIGSEGV once unmapped */
		else
			pthread_sigmask(SIG_UNBLOCK, &set, NULL);
		atomic_store(&stale_done, round);
	}
}

static void child_stale_fill(void *arg)
{
	const size_t ps = UPT_PAGE, npages = 256, len = npages * ps;
	char path[256];
	int tfd = upt_tmpfile(len, 41, path, sizeof(path)), fd, hits = 0;
	upager_t *pa = inline_pager(), *pb = inline_pager();
	unsigned char vec[256];
	upager_source_t *f, *z;
	struct sigaction sa;
	pthread_t th;

	(void)arg;
	fd = tfd; /* unlinked: O_DIRECT through fcntl */
	if (tfd < 0 || fsync(fd) < 0 || fcntl(fd, F_SETFL, O_DIRECT) < 0 || upager_source_file(fd, 0, &f) < 0 || upager_source_zero(&z) < 0)
		_exit(10);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_segv;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	if (pthread_create(&th, NULL, stale_toucher, NULL) != 0)
		_exit(11);
	for (int round = 1; round <= 40; round++) {
		upager_region_t *ra, *rb;
		upager_stats_t st = { 0 };
		uint8_t *a, *b;
		uint64_t until = now_ns() + 5000000000ull;

		if (upager_map(pa, len, f, &ra) < 0 || upager_region_advise(ra, UPAGER_ADV_SEQUENTIAL) < 0)
			_exit(12);
		a = upager_region_addr(ra);
		atomic_store(&stale_addr, a);
		atomic_store(&stale_round, round);
		while (st.faults == 0 && now_ns() < until)
			upager_region_stats(ra, &st); /* the fill has begun */
		munmap(a, len);
		if (upager_reserve(pb, len, z, 0, &rb) < 0)
			_exit(13);
		b = upager_region_addr(rb);
		while (atomic_load(&stale_done) != round && now_ns() < until)
			sched_yield();
		if (atomic_load(&stale_done) != round)
			_exit(14); /* the fill never ended */
		if (b == a) {
			hits++;
			if (mincore(b, len, vec) < 0)
				_exit(15);
			for (size_t i = 0; i < npages; i++)
				if (vec[i] & 1) {
					fprintf(stderr, "round %d: page %zu of B filled by A\n", round, i);
					_exit(16);
				}
			if (upager_commit(rb, 0, len) < 0 || upt_check_zero(b, len) >= 0)
				_exit(17);
		}
		if (upager_release(rb) < 0 || upager_release(ra) < 0)
			_exit(18);
	}
	atomic_store(&stale_addr, NULL);
	atomic_store(&stale_round, 41);
	pthread_join(th, NULL);
	close(fd);
	_exit(hits ? 0 : 19); /* 19: B never landed on A's address, nothing tested */
}

START_TEST(test_stale_fill_other_pager)
{
	int st = upt_child(child_stale_fill, NULL, 60);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}
END_TEST

/*
 * The program moves a region (mremap) and reads the moved pages at once:
 * the kernel lets mremap return once the REMAP is read, before it is
 * applied to the table. The reads must see the file's bytes, not die of
 * SIGBUS (the table missed twice and gave the fault to the program). To
 * make the window wide, the process runs on one CPU and the pager's handler
 * threads are SCHED_IDLE: they apply the event only when we block.
 */
static void handlers_idle(pid_t below)
{
	struct sched_param sp = { 0 };
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;

	if (!d)
		_exit(9);
	while ((e = readdir(d)))
		if (atoi(e->d_name) > below)
			sched_setscheduler(atoi(e->d_name), SCHED_IDLE, &sp);
	closedir(d);
}

static void child_mremap_touch(void *arg)
{
	const size_t ps = UPT_PAGE, npages = 16, len = npages * ps;
	char path[256];
	int fd = upt_tmpfile(len, 51, path, sizeof(path));
	pid_t self = (pid_t)syscall(SYS_gettid);
	atomic_uint seed = 51;
	upager_source_t *f;
	cpu_set_t one;
	upager_t *p;

	CPU_ZERO(&one);
	CPU_SET(0, &one);
	sched_setaffinity(0, sizeof(one), &one);
	p = inline_pager();
	handlers_idle(self);
	if (fd < 0 || (arg ? upager_source_callback(seeded_fill, &seed, NULL, &f)
			   : upager_source_file(fd, 0, &f)) < 0)
		_exit(10);
	for (int round = 0; round < 100; round++) {
		upager_region_t *r;
		uint8_t *dst;

		if (upager_map(p, len, f, &r) < 0)
			_exit(11);
		dst = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (dst == MAP_FAILED ||
		    mremap(upager_region_addr(r), len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst) !=
			    (void *)dst)
			_exit(12);
		if (upt_check_pattern(dst, len, 0, 51) >= 0)
			_exit(13);
		if (upager_release(r) < 0)
			_exit(14);
	}
	_exit(0);
}

START_TEST(test_mremap_touch)
{
	int st = upt_child(child_mremap_touch, NULL, 60);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}
END_TEST

/* The same with a callback source: its faults wait for the handler threads. */
START_TEST(test_mremap_touch_callback)
{
	int st = upt_child(child_mremap_touch, "callback", 60);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}
END_TEST

/*
 * Readers read a region while the program munmaps it page by page from the
 * middle out (each munmap splits a mapping: the table's slot rewritten as
 * two), or MADV_DONTNEEDs it: a read of a page still mapped gets the file's
 * bytes, never SIGBUS; an unmapped page is SIGSEGV.
 */
enum { RACE_DONTNEED = 1, RACE_CALLBACK = 2 }; /* child_unmap_race's arg */

static void child_unmap_race(void *arg)
{
	const bool dontneed = (uintptr_t)arg & RACE_DONTNEED;
	const size_t ps = UPT_PAGE, npages = 64, len = npages * ps;
	char path[256];
	int fd = upt_tmpfile(len, 61, path, sizeof(path));
	upager_t *p = inline_pager();
	struct racer rc = { .npages = npages, .seed = 61, .seed2 = 61, .gen = 2 };
	atomic_uint seed = 61;
	upager_source_t *f;
	pthread_t th[4];

	if (fd < 0 || ((uintptr_t)arg & RACE_CALLBACK
			       ? upager_source_callback(seeded_fill, &seed, NULL, &f)
			       : upager_source_file(fd, 0, &f)) < 0)
		_exit(10);
	start_racers(&rc, th, 4);
	for (int round = 0; round < 60; round++) {
		upager_region_t *r;
		uint8_t *a;

		if (upager_map(p, len, f, &r) < 0)
			_exit(11);
		a = upager_region_addr(r);
		atomic_store(&rc.unmapped, 0); /* base is NULL: no read counts */
		atomic_store(&rc.base, a);
		for (size_t i = 0; i < npages / 2; i++) {
			usleep(50);
			if (dontneed) {
				if (madvise(a + (npages / 2 - i - 1) * ps, 2 * (i + 1) * ps,
					    MADV_DONTNEED) < 0)
					_exit(12);
				continue;
			}
			atomic_fetch_or(&rc.unmapped, (1ull << (npages / 2 - i - 1)) |
							      (1ull << (npages / 2 + i)));
			if (munmap(a + (npages / 2 - i - 1) * ps, ps) < 0 ||
			    munmap(a + (npages / 2 + i) * ps, ps) < 0)
				_exit(12);
		}
		atomic_fetch_add(&rc.gen, 1);
		atomic_store(&rc.base, NULL);
		atomic_fetch_add(&rc.gen, 1);
		if (upager_release(r) < 0)
			_exit(14);
	}
	stop_racers(th, 4);
	if (atomic_load(&rc.bad) >= 0) {
		fprintf(stderr, "wrong byte at %ld\n", atomic_load(&rc.bad));
		_exit(15);
	}
	_exit(atomic_load(&rc.reads) > 0 ? 0 : 16);
}

static void check_unmap_race(uintptr_t how)
{
	int st = upt_child(child_unmap_race, (void *)how, 60);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}

START_TEST(test_munmap_race)
{
	check_unmap_race(0);
}
END_TEST

START_TEST(test_dontneed_race)
{
	check_unmap_race(RACE_DONTNEED);
}
END_TEST

START_TEST(test_munmap_race_callback)
{
	check_unmap_race(RACE_CALLBACK);
}
END_TEST

START_TEST(test_dontneed_race_callback)
{
	check_unmap_race(RACE_CALLBACK | RACE_DONTNEED);
}
END_TEST

/*
 * A signal whose handler siglongjmps, sent to a thread in the middle of an
 * inline fill (256 pages, O_DIRECT): the fill must finish first, or its
 * slot and region stay busy and release waits for ever.
 */
static __thread sigjmp_buf usr1_jb;

static void on_usr1(int sig)
{
	(void)sig;
	siglongjmp(usr1_jb, 1);
}

static void *jumping_toucher(void *arg)
{
	if (sigsetjmp(usr1_jb, 1) == 0)
		for (;;)
			(void)*(volatile uint8_t *)arg; /* wait here for SIGUSR1 */
	return NULL;
}

static void child_longjmp_out(void *arg)
{
	const size_t ps = UPT_PAGE, npages = 256, len = npages * ps;
	char path[256];
	int fd = upt_tmpfile(len, 71, path, sizeof(path));
	upager_t *p = inline_pager();
	upager_stats_t st = { 0 };
	upager_source_t *f;
	upager_region_t *r;
	struct sigaction sa;
	uint64_t until;
	pthread_t th;

	(void)arg;
	if (fd < 0 || fsync(fd) < 0 || fcntl(fd, F_SETFL, O_DIRECT) < 0 ||
	    upager_source_file(fd, 0, &f) < 0 || upager_map(p, len, f, &r) < 0 ||
	    upager_region_advise(r, UPAGER_ADV_SEQUENTIAL) < 0)
		_exit(10);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	if (pthread_create(&th, NULL, jumping_toucher, upager_region_addr(r)) != 0)
		_exit(11);
	until = now_ns() + 5000000000ull;
	while (st.faults == 0 && now_ns() < until)
		upager_region_stats(r, &st); /* in the fill */
	pthread_kill(th, SIGUSR1);
	pthread_join(th, NULL);
	if (upager_decommit(r, 0, len) < 0 || upager_release(r) < 0)
		_exit(12);
	_exit(0);
}

START_TEST(test_signal_longjmp_out_of_fill)
{
	int st = upt_child(child_longjmp_out, NULL, 20);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}
END_TEST

/*
 * Decommit of a few pages while 4 threads fault without a pause on the
 * rest of the region (O_DIRECT reads, one page a fault): decommit waits for
 * the fills that began before it, not for a count of the whole region's
 * fills that never reaches zero.
 */
struct streamer {
	uint8_t *base;
	size_t first, n;
};

static atomic_bool streaming;

static void *stream_pages(void *arg)
{
	struct streamer *sm = arg;

	for (size_t i = 0; atomic_load(&streaming); i = (i + 1) % sm->n)
		(void)*(volatile uint8_t *)(sm->base + (sm->first + i) * UPT_PAGE);
	return NULL;
}

static void child_decommit_starve(void *arg)
{
	const size_t ps = UPT_PAGE, npages = 4096, len = npages * ps;
	char path[256];
	int fd = upt_tmpfile(len, 81, path, sizeof(path));
	upager_t *p = inline_pager();
	struct streamer sm[4];
	upager_source_t *f;
	upager_region_t *r;
	pthread_t th[4];

	(void)arg;
	if (fd < 0 || fsync(fd) < 0 || fcntl(fd, F_SETFL, O_DIRECT) < 0 ||
	    upager_source_file(fd, 0, &f) < 0 || upager_map(p, len, f, &r) < 0 ||
	    upager_region_advise(r, UPAGER_ADV_RANDOM) < 0)
		_exit(10);
	atomic_store(&streaming, true);
	for (int i = 0; i < 4; i++) {
		sm[i] = (struct streamer){ upager_region_addr(r), 16 + (size_t)i * 1000, 1000 };
		if (pthread_create(&th[i], NULL, stream_pages, &sm[i]) != 0)
			_exit(11);
	}
	usleep(20000);
	for (int round = 0; round < 50; round++) {
		/* Pages no stream touches, of the region they fault in. */
		if (upager_decommit(r, 0, 16 * ps) < 0 || upager_commit(r, 0, 16 * ps) < 0)
			_exit(12);
	}
	atomic_store(&streaming, false);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	_exit(0);
}

START_TEST(test_decommit_not_starved)
{
	int st = upt_child(child_decommit_starve, NULL, 30);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}
END_TEST

/*
 * A full table: reserve stops at 1000 inline mappings, so that munmap's
 * splits (a region cut in two needs a second slot) still find room: the
 * parts' pages fill, not SIGBUS.
 */
static void child_table_full(void *arg)
{
	const size_t ps = UPT_PAGE;
	upager_t *p = inline_pager();
	static upager_region_t *r[1100];
	upager_source_t *z;
	int n = 0, ret = 0;

	(void)arg;
	if (upager_source_zero(&z) < 0)
		_exit(10);
	while (n < 1100 && (ret = upager_map(p, 3 * ps, z, &r[n])) == 0)
		n++;
	if (ret != -ENOSPC) {
		fprintf(stderr, "upager_map: %d after %d regions\n", ret, n);
		_exit(11);
	}
	if (n != 1000) {
		fprintf(stderr, "%d regions reserved\n", n);
		_exit(12);
	}
	for (int i = 0; i < 24; i++) {
		volatile uint8_t *a = upager_region_addr(r[i]);

		if (munmap((void *)(a + ps), ps) < 0)
			_exit(13);
		if (a[0] != 0 || a[2 * ps + 9] != 0)
			_exit(14);
	}
	_exit(0);
}

START_TEST(test_table_full)
{
	int st = upt_child(child_table_full, NULL, 60);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}
END_TEST

/* ---- a SIGBUS that reaches upager's handler late ---- */

/*
 * A thread's SIGBUS held on its way to upager's handler while its region
 * moves away: the kernel writes the signal frame on an alternate stack
 * that is a threaded pager's region whose fill waits for the test, and the
 * program mremaps the inline region meanwhile. The handler then finds the
 * address in no mapping: retried, the access meets the hole (SIGSEGV). The
 * region comes back and it all happens again at the same address: still
 * not the program's SIGBUS. (Upager took a thread's second miss at one
 * address for a fault of the program's, however much had changed since the
 * first: a SIGBUS in CI's test_release_race_callback, and here in round 2.)
 */
#define LATE_STACK (16 * 4096)

static atomic_int gate_open, gate_calls;

/* The alternate stack's source: the kernel's write of a signal frame
 * faults here, and waits until the test opens the gate. */
static int gate_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	(void)arg;
	(void)off;
	atomic_fetch_add(&gate_calls, 1);
	while (!atomic_load(&gate_open))
		usleep(100);
	memset(buf, 0, len);
	return 0;
}

static sigjmp_buf late_jb;

static void late_on_segv(int sig)
{
	(void)sig;
	siglongjmp(late_jb, 1);
}

static void late_on_bus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	siglongjmp(late_jb, 2);
}

struct late {
	uint8_t *stack, *addr;
	atomic_int go, done;
	int how; /* 0: read, 1: SIGSEGV, 2: the program's SIGBUS */
};

static void *late_toucher(void *arg)
{
	struct late *l = arg;
	stack_t ss = { .ss_sp = l->stack, .ss_size = LATE_STACK };

	if (sigaltstack(&ss, NULL) < 0)
		return NULL;
	for (int round = 1; round <= 2; round++) {
		int how;

		while (atomic_load(&l->go) < round)
			usleep(100);
		how = sigsetjmp(late_jb, 1);
		if (how == 0)
			(void)*(volatile uint8_t *)l->addr;
		l->how = how;
		atomic_store(&l->done, round);
	}
	return NULL;
}

static bool wait_for(atomic_int *v, int at_least)
{
	for (int i = 0; i < 50000 && atomic_load(v) < at_least; i++)
		usleep(100);
	return atomic_load(v) >= at_least;
}

static void child_late_sigbus(void *arg)
{
	const size_t ps = UPT_PAGE, len = 16 * ps;
	upager_t *threads = upt_pager_mode(UPAGER_FAULT_THREADS);
	upager_t *inl;
	upager_source_t *gate, *z;
	upager_region_t *stack, *r;
	struct late l = { 0 };
	struct sigaction sa;
	pthread_t th;
	uint8_t *a, *away;

	(void)arg;
	/* The program's SIGBUS handler, on the alternate stack: upager's
	 * (installed with the first inline pager) runs there too. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = late_on_bus;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
	sigaction(SIGBUS, &sa, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = late_on_segv;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	inl = upt_pager_mode(UPAGER_FAULT_INLINE);
	if (!threads || !inl || upager_source_callback(gate_fill, NULL, NULL, &gate) < 0 ||
	    upager_map(threads, LATE_STACK, gate, &stack) < 0 || upager_source_zero(&z) < 0 ||
	    upager_map(inl, len, z, &r) < 0)
		_exit(10);
	a = upager_region_addr(r);
	away = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (away == MAP_FAILED)
		_exit(11);
	l.stack = upager_region_addr(stack);
	l.addr = a + 5 * ps + 9;
	if (pthread_create(&th, NULL, late_toucher, &l) != 0)
		_exit(12);
	for (int round = 1; round <= 2; round++) {
		atomic_store(&gate_open, 0);
		atomic_store(&gate_calls, 0);
		/* The alternate stack's pages missing again: the next frame waits. */
		if (upager_decommit(stack, 0, LATE_STACK) < 0 || upager_commit(stack, 0, LATE_STACK) < 0)
			_exit(13);
		atomic_store(&l.go, round);
		if (!wait_for(&gate_calls, 1))
			_exit(14); /* no frame written on the alternate stack */
		/* The faulting address leaves the region, and the table. */
		if (mremap(a, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, away) == MAP_FAILED)
			_exit(15);
		atomic_store(&gate_open, 1);
		if (!wait_for(&l.done, round))
			_exit(16);
		if (l.how != 1)
			_exit(20 + 10 * round + l.how); /* 32: the program's SIGBUS in round 2 */
		if (mremap(away, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, a) == MAP_FAILED)
			_exit(17);
	}
	pthread_join(th, NULL);
	/* The region works where it is. */
	if (a[7 * ps] != 0)
		_exit(18);
	_exit(0);
}

START_TEST(test_late_sigbus_after_move)
{
	upager_t *p = upt_pager_mode(UPAGER_FAULT_THREADS);
	int st;

	ck_assert_ptr_nonnull(p);
	if (upager_features(p) & UPAGER_FEAT_USER_ONLY) {
		/* The frame is the kernel's write: with UFFD_USER_MODE_ONLY it
		 * is a SIGSEGV, not a fault the callback can hold. */
		printf("SKIP test_late_sigbus_after_move: userfaultfd handles user-mode faults "
		       "only\n");
		upager_destroy(p);
		return;
	}
	upager_destroy(p);
	st = upt_child(child_late_sigbus, NULL, 20);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}
END_TEST

/* ---- fork ---- */

START_TEST(test_fork_child_no_mapping)
{
	upager_t *p = inline_pager();
	upager_source_t *z;
	upager_region_t *r;
	volatile uint8_t *a;
	int status;
	pid_t pid;

	ck_assert_int_eq(upager_source_zero(&z), 0);
	ck_assert_int_eq(upager_map(p, 2 * UPT_PAGE, z, &r), 0);
	a = upager_region_addr(r);
	ck_assert_uint_eq(a[0], 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		alarm(10);
		(void)a[UPT_PAGE]; /* MADV_DONTFORK: nothing mapped here */
		_exit(1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "status %#x", status);
	ck_assert_uint_eq(a[UPT_PAGE], 0); /* the parent goes on */
	ck_assert_int_eq(upager_release(r), 0);
	upager_source_release(z);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

/* The child's own inline pager, at the address the parent's region had
 * (MADV_DONTFORK left it free): its faults are its own. Before the table
 * was emptied in the child, they found the parent's slot and copied, through
 * the inherited uffd, into the parent's memory, and retried for ever. */
struct fork_arg {
	uint8_t *parent_addr;
	size_t len;
};

static void child_own_pager(void *arg)
{
	struct fork_arg *fa = arg;
	upager_source_t *z;
	upager_region_t *r;
	upager_t *p;
	uint8_t *a = NULL, *claim;

	/* The hole is claimed while the pager is created, whose buffers
	 * would take it otherwise. */
	claim = mmap(fa->parent_addr, fa->len, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (upager_source_zero(&z) < 0 || claim != fa->parent_addr)
		_exit(10);
	p = inline_pager();
	munmap(claim, fa->len);
	/*
	 * Plain mappings of the region's size fill every gap the kernel would
	 * choose before the hole, until two land in it; freed, they leave
	 * the highest gap that fits the region with room for reserve's
	 * one-page bitmaps, which the kernel places first.
	 */
	for (int i = 0; i < 200000 && !a; i++) {
		uint8_t *m = mmap(NULL, fa->len / 8, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint8_t *m2;

		if (m == MAP_FAILED)
			_exit(11);
		if (m < fa->parent_addr || m >= fa->parent_addr + fa->len)
			continue;
		m2 = mmap(NULL, fa->len / 8, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m2 == MAP_FAILED)
			_exit(11);
		munmap(m, fa->len / 8);
		munmap(m2, fa->len / 8);
		if (upager_map(p, fa->len / 8, z, &r) < 0)
			_exit(11);
		a = upager_region_addr(r);
	}
	if (!a || a < fa->parent_addr || a >= fa->parent_addr + fa->len) {
		fprintf(stderr, "hole %p+%zx, region at %p\n", (void *)fa->parent_addr, fa->len,
			(void *)a);
		_exit(13);
	}
	for (size_t i = 0; i < fa->len / 8; i += UPT_PAGE)
		if (a[i] != 0)
			_exit(12);
	_exit(0);
}

START_TEST(test_fork_child_own_pager)
{
	const size_t len = 64 * UPT_PAGE;
	char path[256];
	int fd = upt_tmpfile(len, 31, path, sizeof(path));
	upager_t *p = inline_pager();
	struct fork_arg fa = { .len = len };
	unsigned char vec[64];
	upager_source_t *f;
	upager_region_t *r;
	int st;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(upager_source_file(fd, 0, &f), 0);
	close(fd);
	ck_assert_int_eq(upager_map(p, len, f, &r), 0);
	fa.parent_addr = upager_region_addr(r);
	st = upt_child(child_own_pager, &fa, 10);
	/* 13: the child's region landed elsewhere, the test proved nothing */
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	ck_assert_int_eq(mincore(fa.parent_addr, len, vec), 0);
	for (size_t i = 0; i < 64; i++)
		ck_assert_msg(!(vec[i] & 1), "page %zu of the parent filled by its child", i);
	ck_assert_int_eq(upt_check_pattern(fa.parent_addr, len, 0, 31), -1);
	ck_assert_int_eq(upager_release(r), 0);
	upager_source_release(f);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("inline");
	TCase *tc = upt_tcase(s, "bytes");

	upt_add(tc, test_zero_1, NEED, WHY);
	upt_add(tc, test_zero_8, NEED, WHY);
	upt_add(tc, test_zero_64, NEED, WHY);
	upt_add(tc, test_file_1, NEED, WHY);
	upt_add(tc, test_file_8, NEED, WHY);
	upt_add(tc, test_file_64, NEED, WHY);
	upt_add(tc, test_file_past_eof, NEED, WHY);
	upt_add(tc, test_file_fault_around, NEED, WHY);
	tc = upt_tcase(s, "limits");
	upt_add(tc, test_callback_served, NEED, WHY);
	tcase_add_test(tc, test_no_sigbus_feature);
	upt_add(tc, test_read_syscall_efault, NEED, WHY);
	upt_add(tc, test_fork_child_no_mapping, NEED, WHY);
	upt_add(tc, test_fork_child_own_pager, NEED, WHY);
	upt_add(tc, test_table_full, NEED_UNMAP, WHY_EVENTS);
	tc = upt_tcase(s, "signals");
	upt_add(tc, test_program_handler_own_fault, NEED, WHY);
	upt_add(tc, test_program_handler_fill_error, NEED, WHY);
	upt_add(tc, test_default_action, NEED, WHY);
	upt_add(tc, test_blocked_sigbus_killed, NEED, WHY);
	upt_add(tc, test_ignored_sent_sigbus, NEED, WHY);
	upt_add(tc, test_program_handler_mask, NEED, WHY);
	tc = upt_tcase(s, "races");
	upt_add(tc, test_decommit_race, NEED, WHY);
	upt_add(tc, test_decommit_race_callback, NEED, WHY);
	/* Their readers read, by design, addresses unmapped or remapped under
	 * them (as test_release_race below). */
	if (UPT_TSAN) {
		printf("SKIP test_stale_fill_other_pager, test_munmap_race(_callback), "
		       "test_dontneed_race(_callback): "
		       "read memory remapped under them (ThreadSanitizer)\n");
	} else {
		upt_add(tc, test_stale_fill_other_pager, NEED_UNMAP, WHY_EVENTS);
		upt_add(tc, test_munmap_race, NEED_UNMAP, WHY_EVENTS);
		upt_add(tc, test_dontneed_race, NEED_REMOVE, WHY_EVENTS);
		upt_add(tc, test_munmap_race_callback, NEED_UNMAP, WHY_EVENTS);
		upt_add(tc, test_dontneed_race_callback, NEED_REMOVE, WHY_EVENTS);
	}
	upt_add(tc, test_mremap_touch, NEED_REMAP, WHY_EVENTS);
	upt_add(tc, test_mremap_touch_callback, NEED_REMAP, WHY_EVENTS);
	upt_add(tc, test_late_sigbus_after_move, NEED_REMAP, WHY_EVENTS);
	upt_add(tc, test_decommit_not_starved, NEED, WHY);
	/* ThreadSanitizer cannot follow a siglongjmp out of a signal handler
	 * that interrupted another (its child hangs there, on 4231568 too). */
	if (UPT_TSAN)
		printf("SKIP test_signal_longjmp_out_of_fill: siglongjmp out of nested signal "
		       "handlers (ThreadSanitizer)\n");
	else
		upt_add(tc, test_signal_longjmp_out_of_fill, NEED, WHY);
	/* Its readers read, by design, addresses another region may be mapped
	 * at meanwhile: ThreadSanitizer counts that region's mmap as a write. */
	if (UPT_TSAN)
		printf("SKIP test_release_race, test_release_race_callback: reads memory remapped "
		       "under it (ThreadSanitizer)\n");
	else {
		upt_add(tc, test_release_race, NEED, WHY);
		upt_add(tc, test_release_race_callback, NEED, WHY);
	}
	return s;
}

int main(void)
{
	return upt_main(make);
}
