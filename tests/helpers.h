/* SPDX-License-Identifier: MIT */
/* Shared test helpers: suites with timeouts and feature skips, patterned
 * files, children with deadlines, RSS/fd/thread counts. */
#ifndef UPAGER_TEST_HELPERS_H
#define UPAGER_TEST_HELPERS_H

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "upager.h"

#define UPT_TIMEOUT 60 /* seconds, per test; generous for sanitizer builds */
#define UPT_PAGE ((size_t)sysconf(_SC_PAGESIZE))

/* Features of the userfaultfd tests would get (honours UPAGER_DISABLE). */
uint64_t upt_features(void);
/* A test case with the suite's timeout. */
TCase *upt_tcase(Suite *s, const char *name);
/* Adds a test if the kernel has every feature in need, else says why not. */
void upt_add(TCase *tc, const TTest *t, uint64_t need, const char *why);
/* Runs the suite; exit status for automake (77 when userfaultfd is unusable). */
int upt_main(Suite *(*make)(void));
/* A log callback (upager_options.log, upager_url_options.log) that keeps every line, one a
 * line, in upt_logged (bounded; tests clear it with upt_logged[0] = 0 and search it). */
extern char upt_logged[4096];
void upt_keep_log(void *arg, int level, const char *msg);
/* upt_main for the URL source's suites: exit 77 (skipped, saying why) without libcurl. */
int upt_main_url(Suite *(*make)(void));

upager_t *upt_pager(unsigned nthreads, uint64_t disable);
/* A pager with default options but fault_mode (UPAGER_FAULT_THREADS/INLINE). */
upager_t *upt_pager_mode(unsigned fault_mode);

/* Byte seed at offset off: differs on every page, so misplaced pages show. */
static inline uint8_t upt_byte(uint64_t off, unsigned seed)
{
	uint64_t x = (off / 8 + 1) * 0x9E3779B97F4A7C15ull + seed;
	return (uint8_t)((x >> 29) ^ (x >> 47) ^ off);
}
/* Writes upt_byte(off + i, seed) for i in [0, len) to buf. */
static inline void upt_fill(void *buf, size_t len, uint64_t off, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		((uint8_t *)buf)[i] = upt_byte(off + i, seed);
}
/* A temporary file of size bytes of upt_byte(off, seed); unlinked at exit. */
int upt_tmpfile(size_t size, unsigned seed, char *path, size_t pathlen);
/* Index of the first byte of [p, p+len) that differs from upt_byte(base+i), or -1. */
long upt_check_pattern(const uint8_t *p, size_t len, uint64_t base, unsigned seed);
long upt_check_zero(const uint8_t *p, size_t len);

/*
 * Maps src (len bytes of upt_byte(off, seed), zeros after; seed 0: zeros)
 * over npages pages in a new inline pager (UPAGER_FAULT_INLINE), with that
 * advice; nthreads (at most 64) read every byte, each every nthreads-th page
 * (the odd ones write the byte they expect first), then one thread again,
 * which must take no fault. Checks every page resident and filled once, no
 * fill error, a latency sample for at most every fault; *st receives the
 * region's statistics before the pager is destroyed.
 */
void upt_inline_every_byte(upager_source_t *src, unsigned seed, size_t len, size_t npages,
			   unsigned nthreads, int advice, upager_stats_t *st);

/* Runs fn(arg) in a child; its exit status (waitpid form), SIGKILLed and
 * failing the test if it runs past timeout_s. */
int upt_child(void (*fn)(void *arg), void *arg, int timeout_s);

/*
 * Runs daemon/upagerd (as built in this tree) with args (a NULL-terminated
 * list: the command and its flags) and --ready-fd, env (may be NULL) put in
 * its environment; waits up to 5 s for its ready line, left in ready.
 */
pid_t upt_upagerd(const char *const *args, const char *env, char *ready, size_t len);
/* Starts tests/fake_http MODE serving size bytes of upt_byte(off, seed):
 * its pid (SIGKILL it after), its object's URL in url. */
pid_t upt_fake_http_start(const char *mode, size_t size, unsigned seed, char *url, size_t len);
/* The same with every "NAME=value" of envs (NULL-terminated, or NULL) in its
 * environment and, if err_fd >= 0, its stderr on err_fd. Killed if it does
 * not become ready. */
pid_t upt_upagerd_env(const char *const *args, const char *const *envs, int err_fd, char *ready,
		      size_t len);
/*
 * Starts the daemon built in this tree (daemon/upagerd) serving root on
 * unix:sock and tcp:127.0.0.1:0, plus up to two extra arguments; waits
 * until it is listening. *tcp_port receives the TCP port.
 */
pid_t upt_daemon_start(const char *root, const char *sock, const char *extra1,
		       const char *extra2, int *tcp_port);
void upt_daemon_kill(pid_t pid);

/* A userfaultfd (O_CLOEXEC | O_NONBLOCK) as upager opens one: the syscall,
 * else /dev/userfaultfd, else user-mode-only (unprivileged); -1: none. */
int upt_open_uffd(void);

long upt_rss_kib(void);
/* A loopback TCP port nobody listens on now (a server may still lose a race
 * for it: retry), or -1. */
int upt_free_port(void);
/* Resident KiB of the mappings inside [addr, addr + len) (/proc/self/smaps
 * Rss: the shared zero page is not counted), or -1. Unlike upt_rss_kib it
 * leaves out what a sanitizer's shadow memory costs for the same reads. */
long upt_range_rss_kib(const void *addr, size_t len);
int upt_count_fds(void);
int upt_count_threads(void); /* not counting io_uring's kernel workers */
int upt_wait_threads(int want, int timeout_ms); /* the count once want or timed out */

/*
 * A value a fill callback (run by the pager's handler thread) writes and the
 * test reads once the fault it served is over, or the test writes before a
 * fault and the callback reads: the kernel orders the two (the faulting
 * access waits for the fill to place the page), but ThreadSanitizer cannot
 * see that, so both sides go through these.
 */
#define UPT_GET(x) __atomic_load_n(&(x), __ATOMIC_SEQ_CST)
#define UPT_SET(x, v) __atomic_store_n(&(x), (v), __ATOMIC_SEQ_CST)

/* Built with ThreadSanitizer (configure --enable-sanitizers=thread): its
 * shadow memory grows with every page touched, so RSS is no measure. */
#if defined(__SANITIZE_THREAD__)
#define UPT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UPT_TSAN 1
#endif
#endif
#ifndef UPT_TSAN
#define UPT_TSAN 0
#endif

/* Built with AddressSanitizer (configure --enable-sanitizers). */
#if defined(__SANITIZE_ADDRESS__)
#define UPT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UPT_ASAN 1
#endif
#endif
#ifndef UPT_ASAN
#define UPT_ASAN 0
#endif

/* ---- the program's own SIGBUS handler, for tests of what reaches it ---- */
#include <setjmp.h>
#include <signal.h>

/* Where upt_sigbus_catcher jumps (sigsetjmp(upt_sigbus_jb, 1) before the
 * access), and what the SIGBUS it caught said; upt_sigbus_calls counts them. */
extern sigjmp_buf upt_sigbus_jb;
extern void *volatile upt_sigbus_addr;
extern volatile int upt_sigbus_code, upt_sigbus_calls;
/* Notes si_addr and si_code, counts the call, siglongjmps to upt_sigbus_jb. */
void upt_sigbus_catcher(int sig, siginfo_t *si, void *uc);
/* Installs upt_sigbus_catcher as the process's SIGBUS handler (SA_SIGINFO). */
void upt_catch_sigbus(void);

#endif
