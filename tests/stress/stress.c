/* SPDX-License-Identifier: MIT */
/*
 * make stress: many threads fault on regions of every source kind while
 * other threads drop, decommit, move, unmap and release them under their
 * feet, and the page server they read from is killed and restarted. Every
 * byte read is checked against what its source must produce.
 *
 * What may race, and why the rest may not:
 *   - a region's lock (slot.lock) is held shared while a thread touches the
 *     region and exclusively to release, re-create, munmap or mremap it:
 *     touching unmapped memory is SIGSEGV by definition, so those races
 *     have no defined outcome to check;
 *   - a chunk's lock is held shared while touching and for MADV_DONTNEED and
 *     prefetch, exclusively to decommit and commit: a touch of a decommitted
 *     page is SIGSEGV by definition too. (Catching that SIGSEGV with
 *     sigsetjmp would also swallow a SIGSEGV on committed memory, the very
 *     bug to find.) Decommit still races with fills in flight for the chunk
 *     (window fills, readahead, prefetch) and with faults on the other
 *     chunks of the same region;
 *   - MADV_DONTNEED races freely with faults on the read-only pages of its
 *     range: whichever wins, they read the source's bytes. Every
 *     WRITE_EVERY-th page is also written; its content depends on whether
 *     a discard came between, so a per-page mutex orders its writes and
 *     checks with the discards of its range.
 *
 * Environment: STRESS_SECONDS (default 60), STRESS_THREADS (64),
 * STRESS_HANDLERS (2), STRESS_SEED (from the clock), STRESS_VERBOSE (the
 * library's log level shown, with times: 0 errors (default), 1 warnings,
 * 2 info, 3 debug), STRESS_OPS (what may happen to the memory and the
 * server, default all of: dontneed,decommit,prefetch,advise,munmap,mremap,
 * release,restart; "none" or an empty list of known names, e.g. "advise",
 * leaves faults alone). Exits 0 with a summary line; 1 on a wrong byte,
 * 2 on a hang (no progress for HANG_SECONDS) or a run past its time, 3 on
 * a crash (SIGSEGV/SIGBUS), 4 on an API error or setup failure, 128 + N on
 * signal N (SIGINT, SIGTERM, SIGHUP). Every exit kills the upagerd it
 * started and removes its temporary directory; a SIGKILL leaves the
 * directory behind, but the server dies with us (PR_SET_PDEATHSIG).
 */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "upager.h"

#define NSLOTS         12
#define NCHUNKS        8
#define REGION_PAGES   1024
#define CHUNK_PAGES    (REGION_PAGES / NCHUNKS)
#define WRITE_EVERY    4      /* page % WRITE_EVERY == 1 is a write page */
#define MAX_GROW_PAGES 64
#define MAX_THREADS    256
#define NMUTATORS      3
#define HANG_SECONDS   10
#define END_MARGIN_S   20     /* after STRESS_SECONDS: joins, releases, destroy */
#define MIB            (1024 * 1024ull)

/* Sizes chosen so that regions read past the end of their files. */
#define FILE_BYTES     (8 * MIB - 1000)
#define REMOTE_BYTES   (4 * MIB - 3000)
#define SEED_FILE      0x5eed0001ull
#define SEED_REMOTE    0x5eed0002ull
#define SEED_SNAP      0x5eed0003ull

enum kind { K_ZERO, K_FILE, K_CALLBACK, K_REMOTE, K_SNAPSHOT, K_REMOTE_SNAPSHOT, NKINDS };
static const char *const kind_name[NKINDS] = {
	"zero", "file", "callback", "remote", "snapshot", "remote-snapshot",
};

/* STRESS_OPS: what the mutators and the restarter may do (default all). */
enum op { OP_DONTNEED, OP_DECOMMIT, OP_PREFETCH, OP_ADVISE, OP_MUNMAP, OP_MREMAP, OP_RELEASE,
	  OP_RESTART, NOPS };
static const char *const op_name[NOPS] = {
	"dontneed", "decommit", "prefetch", "advise", "munmap", "mremap", "release", "restart",
};

enum exit_code { EXIT_WRONG = 1, EXIT_HANG = 2, EXIT_CRASH = 3, EXIT_SETUP = 4 };

struct slot {
	pthread_rwlock_t lock;               /* see the top of the file */
	pthread_rwlock_t chunk_lock[NCHUNKS];
	pthread_mutex_t page_mu[REGION_PAGES / WRITE_EVERY];
	uint64_t stamp[REGION_PAGES / WRITE_EVERY]; /* under page_mu; 0: as the source */
	enum kind kind;
	upager_region_t *_Atomic region;     /* NULL: none (a remote create failed) */
	uint8_t *_Atomic base;               /* where the region is now (mremap moves it) */
	_Atomic size_t grown;                /* pages mremap added past the region: zero */
	uint64_t id;                         /* changes on every re-create */
	uint64_t file_off;                   /* K_FILE: the source's file offset */
	bool moved;                          /* mremapped: commit/decommit no longer apply */
	bool committed[NCHUNKS];             /* under chunk_lock */
	bool unmapped[NCHUNKS];              /* under lock */
};

/* What a thread is doing, for the watchdog. since_ns 0: idle. */
struct watch {
	char name[16];
	_Atomic uint64_t since_ns;
	const char *_Atomic op;
	_Atomic int slot;
	_Atomic uint64_t id;
	_Atomic uint64_t off;
};

struct counters {
	_Atomic uint64_t pages_checked, writes, dontneed, decommit, commit, prefetch, advise,
		mremap, mremap_refused, munmap, release, create, create_retry, server_restarts,
		server_stops, callback_fills;
};

static struct {
	size_t ps;
	unsigned seconds, nthreads, nhandlers;
	uint64_t seed, features;
	int verbose; /* the library's log level to print (UPAGER_LOG_*) */
	unsigned ops; /* 1 << enum op */
	const char *upagerd;
	char dir[256], sock_uri[300];
	/* Every path made in dir, for the async-signal-safe cleanup. */
	char paths[8][320];
	int npaths;
	char log_path[320], snap_path[320];
	int file_fd;
	_Atomic pid_t server_pid;
	_Atomic bool server_up; /* the first server is ready */
	const char *_Atomic server_event; /* the restarter's last deed, and when */
	_Atomic uint64_t server_event_ns;
	_Atomic bool stop;
	_Atomic bool workers_done; /* until then the server must be up */
	_Atomic bool failing;
	_Atomic uint64_t next_id, next_stamp;
	uint64_t start_ns, deadline_ns;
	upager_t *pager;
	struct slot slots[NSLOTS];
	struct watch watches[MAX_THREADS + NMUTATORS + 2];
	_Atomic int nwatches;
	struct counters n;
	upager_remote_options_t ropts;
} g;

static __thread struct watch *self;
static __thread uint64_t rng;

/* ---- small helpers ------------------------------------------------------ */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

static uint64_t rnd(uint64_t n)
{
	rng = mix(rng);
	return n ? rng % n : 0;
}

static void sleep_us(uint64_t us)
{
	struct timespec ts = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The data of every patterned source: 8-byte words of mix(seed, offset). */
static void pattern(uint64_t seed, uint64_t off, uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t w = mix(seed * 0x100000001B3ull ^ ((off + i) / 8));

		memcpy(buf + i, &w, 8);
	}
}

/* The snapshot: every 5th page zero, every 7th other one never populated
 * (absent: reads zero), the rest patterned. */
static bool snap_page_zero(size_t page)
{
	return page % 5 == 0 || page % 7 == 3;
}

/* async-signal-safe output */
static void say(const char *s)
{
	size_t len = strlen(s);

	while (len > 0) {
		ssize_t w = write(2, s, len);

		if (w <= 0)
			return;
		s += w;
		len -= (size_t)w;
	}
}

/* Kills the server, shows the end of its log when failing, removes the
 * directory. Async-signal-safe: it runs from fatal signal handlers too. */
static void cleanup(bool failed)
{
	pid_t pid = atomic_exchange(&g.server_pid, 0);
	char buf[2048];

	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	if (failed && g.log_path[0]) {
		int fd = open(g.log_path, O_RDONLY);

		if (fd >= 0) {
			off_t end = lseek(fd, 0, SEEK_END);
			ssize_t n;

			if (end > (off_t)sizeof(buf))
				lseek(fd, end - (off_t)sizeof(buf), SEEK_SET);
			else
				lseek(fd, 0, SEEK_SET);
			n = read(fd, buf, sizeof(buf) - 1);
			if (n > 0) {
				buf[n] = '\0';
				say("stress: end of upagerd's log:\n");
				say(buf);
				say("\n");
			}
			close(fd);
		}
	}
	for (int i = 0; i < g.npaths; i++)
		unlink(g.paths[i]);
	if (g.dir[0])
		rmdir(g.dir);
	g.dir[0] = '\0';
}

/* Only the first failing thread reports and exits; the others wait for it. */
static void die(int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (atomic_exchange(&g.failing, true))
		for (;;)
			pause();
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	say("stress: FAIL: ");
	say(msg);
	say("\n");
	cleanup(true);
	_exit(code);
}

static struct watch *watch_new(const char *prefix, int i)
{
	struct watch *w = &g.watches[atomic_fetch_add(&g.nwatches, 1)];

	snprintf(w->name, sizeof(w->name), "%s%d", prefix, i);
	atomic_store(&w->slot, -1);
	return w;
}

static void watch_begin(const char *op, int slot, uint64_t id, uint64_t off)
{
	atomic_store(&self->op, op);
	atomic_store(&self->slot, slot);
	atomic_store(&self->id, id);
	atomic_store(&self->off, off);
	atomic_store(&self->since_ns, now_ns());
}

static void watch_end(void)
{
	atomic_store(&self->since_ns, 0);
}

/* ---- sources and regions ------------------------------------------------ */

static size_t region_bytes(void)
{
	return (size_t)REGION_PAGES * g.ps;
}

/* What page `page` of the slot's region must read, a write stamp aside. */
static void expect_page(const struct slot *s, size_t page, uint8_t *buf)
{
	uint64_t off = (uint64_t)page * g.ps, limit = 0, seed = 0, src_off = off;

	memset(buf, 0, g.ps);
	if (page >= REGION_PAGES)
		return; /* the part mremap grew: anonymous memory */
	switch (s->kind) {
	case K_ZERO:
		return;
	case K_FILE:
		seed = SEED_FILE, src_off = s->file_off + off, limit = FILE_BYTES;
		break;
	case K_CALLBACK:
		seed = s->id, limit = UINT64_MAX;
		break;
	case K_REMOTE:
		seed = SEED_REMOTE, limit = REMOTE_BYTES;
		break;
	case K_SNAPSHOT:
	case K_REMOTE_SNAPSHOT:
		if (snap_page_zero(page))
			return;
		seed = SEED_SNAP, limit = UINT64_MAX;
		break;
	default:
		return;
	}
	if (src_off >= limit)
		return;
	pattern(seed, src_off, buf, g.ps);
	if (limit - src_off < g.ps)
		memset(buf + (limit - src_off), 0, g.ps - (size_t)(limit - src_off));
}

static int callback_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	atomic_fetch_add(&g.n.callback_fills, 1);
	/* Now and then slow, so that more faults join fills in flight. */
	if (mix((uint64_t)(uintptr_t)buf ^ off ^ now_ns()) % 64 == 0)
		sleep_us(200);
	pattern((uint64_t)(uintptr_t)arg, off, buf, len);
	return 0;
}

static bool remote_down_error(int ret)
{
	return ret == -ECONNREFUSED || ret == -ENOENT || ret == -ECONNRESET || ret == -EPIPE ||
	       ret == -ETIMEDOUT || ret == -ECONNABORTED || ret == -EAGAIN;
}

/* A source for the slot's current id; the server may be down for a moment. */
static int make_source(struct slot *s, upager_source_t **src)
{
	upager_remote_options_t snap_opts = g.ropts;
	uint64_t give_up = now_ns() + 3000000000ull;
	uint64_t len = 0;
	int ret;

	switch (s->kind) {
	case K_ZERO:
		return upager_source_zero(src);
	case K_FILE:
		s->file_off = (s->id % 5) * MIB;
		return upager_source_file(g.file_fd, s->file_off, src);
	case K_CALLBACK:
		return upager_source_callback(callback_fill, (void *)(uintptr_t)s->id, NULL, src);
	case K_SNAPSHOT:
		ret = upager_source_snapshot(g.snap_path, &len, src);
		if (ret == 0 && len != region_bytes())
			die(EXIT_SETUP, "snapshot describes %" PRIu64 " bytes, not %zu", len,
			    region_bytes());
		return ret;
	case K_REMOTE:
	case K_REMOTE_SNAPSHOT:
		snap_opts.flags = s->kind == K_REMOTE_SNAPSHOT ? UPAGER_REMOTE_SNAPSHOT : 0;
		for (;;) {
			ret = upager_source_remote(g.sock_uri,
						   s->kind == K_REMOTE ? "remote.bin" : "snap.img",
						   &snap_opts, src);
			if (ret == 0 || !remote_down_error(ret) || now_ns() > give_up ||
			    atomic_load(&g.stop))
				return ret;
			atomic_fetch_add(&g.n.create_retry, 1);
			sleep_us(20000);
		}
	default:
		return -EINVAL;
	}
}

/* Under the slot's exclusive lock (or before any thread runs). */
static void slot_create(int i)
{
	struct slot *s = &g.slots[i];
	upager_source_t *src;
	upager_region_t *r;
	int ret;

	s->id = atomic_fetch_add(&g.next_id, 1);
	ret = make_source(s, &src);
	if (ret < 0) {
		if ((s->kind == K_REMOTE || s->kind == K_REMOTE_SNAPSHOT) && remote_down_error(ret))
			return; /* the server stayed down too long: left empty, tried again later */
		die(EXIT_SETUP, "slot %d: %s source: %s", i, kind_name[s->kind],
		    upager_strerror(ret));
	}
	ret = upager_map(g.pager, region_bytes(), src, &r);
	upager_source_release(src);
	if (ret < 0)
		die(EXIT_SETUP, "slot %d: upager_map(%s): %s", i, kind_name[s->kind],
		    upager_strerror(ret));
	for (int c = 0; c < NCHUNKS; c++)
		s->committed[c] = true, s->unmapped[c] = false;
	memset(s->stamp, 0, sizeof(s->stamp));
	s->moved = false;
	atomic_store(&s->grown, 0);
	atomic_store(&s->base, upager_region_addr(r));
	atomic_store(&s->region, r);
	atomic_fetch_add(&g.n.create, 1);
}

/* Under the slot's exclusive lock. */
static void slot_release(int i)
{
	struct slot *s = &g.slots[i];
	upager_region_t *r = atomic_load(&s->region);
	size_t grown = atomic_load(&s->grown);
	uint8_t *base = atomic_load(&s->base);
	int ret;

	if (!r)
		return;
	atomic_store(&s->region, NULL);
	ret = upager_release(r);
	if (ret < 0)
		die(EXIT_SETUP, "slot %d: upager_release: %s", i, upager_strerror(ret));
	/* The tail mremap grew was never the region's: release leaves it. */
	if (grown)
		munmap(base + region_bytes(), grown * g.ps);
	atomic_store(&s->base, NULL);
	atomic_store(&s->grown, 0);
	atomic_fetch_add(&g.n.release, 1);
}

/* ---- the faulting threads ----------------------------------------------- */

static void wrong_byte(int slot, const struct slot *s, size_t page, const uint8_t *p,
		       const uint8_t *want, uint64_t stamp)
{
	size_t i = 0;
	char exp_hex[64] = "", got_hex[64] = "";

	while (i < g.ps && p[i] == want[i])
		i++;
	if (i == g.ps)
		return; /* it changed back: cannot be, but report only what is wrong */
	for (size_t k = 0; k < 8 && i + k < g.ps; k++) {
		snprintf(exp_hex + 3 * k, 4, "%02x ", want[i + k]);
		snprintf(got_hex + 3 * k, 4, "%02x ", p[i + k]);
	}
	die(EXIT_WRONG,
	    "wrong byte: thread %s slot %d (%s, region id %" PRIu64 "%s) page %zu offset %#zx "
	    "(address %p): expected %#04x got %#04x (re-read %#04x); from there expected [%s] "
	    "got [%s]; write stamp %#" PRIx64,
	    self->name, slot, kind_name[s->kind], s->id, s->moved ? ", mremapped" : "", page,
	    page * g.ps + i, (const void *)(p + i), want[i], p[i],
	    ((const volatile uint8_t *)p)[i], exp_hex, got_hex, stamp);
}

/* Checks one page; under its mutex if it is a write page (then may write it). */
static void touch_page(int slot, struct slot *s, size_t page, uint8_t *want, bool write)
{
	uint8_t *p = atomic_load(&s->base) + page * g.ps;
	bool wpage = page < REGION_PAGES && page % WRITE_EVERY == 1;
	pthread_mutex_t *mu = wpage ? &s->page_mu[page / WRITE_EVERY] : NULL;
	uint64_t stamp = 0;

	expect_page(s, page, want);
	watch_begin(write ? "write" : "read", slot, s->id, page * g.ps);
	if (mu) {
		pthread_mutex_lock(mu);
		stamp = s->stamp[page / WRITE_EVERY];
		if (stamp)
			memcpy(want, &stamp, 8);
	}
	if (memcmp(p, want, g.ps) != 0)
		wrong_byte(slot, s, page, p, want, stamp);
	if (mu && write) {
		stamp = atomic_fetch_add(&g.next_stamp, 1) | (1ull << 63);
		memcpy(p, &stamp, 8);
		s->stamp[page / WRITE_EVERY] = stamp;
		atomic_fetch_add(&g.n.writes, 1);
	}
	if (mu)
		pthread_mutex_unlock(mu);
	watch_end();
	atomic_fetch_add_explicit(&g.n.pages_checked, 1, memory_order_relaxed);
}

static void *worker(void *arg)
{
	int me = (int)(intptr_t)arg;
	uint8_t *want = malloc(g.ps);

	self = watch_new("worker", me);
	pthread_setname_np(pthread_self(), self->name);
	rng = mix(g.seed ^ (uint64_t)me << 32);
	if (!want)
		die(EXIT_SETUP, "out of memory");
	while (!atomic_load(&g.stop)) {
		int i = (int)rnd(NSLOTS);
		struct slot *s = &g.slots[i];
		size_t grown, first, last, n, c;

		pthread_rwlock_rdlock(&s->lock);
		grown = atomic_load(&s->grown);
		c = rnd(NCHUNKS + (grown ? 1 : 0));
		if (!atomic_load(&s->region) || (c < NCHUNKS && s->unmapped[c])) {
			pthread_rwlock_unlock(&s->lock);
			continue;
		}
		if (c == NCHUNKS) { /* the grown tail: no chunk lock, never decommitted */
			first = REGION_PAGES, last = REGION_PAGES + grown;
		} else {
			pthread_rwlock_rdlock(&s->chunk_lock[c]);
			if (!s->committed[c]) {
				pthread_rwlock_unlock(&s->chunk_lock[c]);
				pthread_rwlock_unlock(&s->lock);
				continue;
			}
			first = c * CHUNK_PAGES, last = first + CHUNK_PAGES;
		}
		if (rnd(4) == 0 && c < NCHUNKS) { /* write one write page (its first word) */
			size_t page = first + rnd(last - first);

			page = page - page % WRITE_EVERY + 1;
			touch_page(i, s, page, want, true);
		} else { /* a run, forwards: sequential faults grow the fill window */
			size_t start = first + rnd(last - first);

			n = 1 + rnd(rnd(2) ? 4 : 48);
			for (size_t page = start; page < last && page < start + n; page++)
				touch_page(i, s, page, want, false);
		}
		if (c < NCHUNKS)
			pthread_rwlock_unlock(&s->chunk_lock[c]);
		pthread_rwlock_unlock(&s->lock);
	}
	free(want);
	return NULL;
}

/* ---- the threads that pull the memory away ------------------------------ */

static void op_dontneed(int i, struct slot *s)
{
	size_t grown = atomic_load(&s->grown), c = rnd(NCHUNKS + (grown ? 1 : 0));
	size_t first, n, lo, hi;

	if (c == NCHUNKS) {
		first = REGION_PAGES + rnd(grown), n = 1 + rnd(REGION_PAGES + grown - first);
		watch_begin("dontneed", i, s->id, first * g.ps);
		if (madvise(atomic_load(&s->base) + first * g.ps, n * g.ps, MADV_DONTNEED) < 0)
			die(EXIT_SETUP, "madvise(DONTNEED) of a grown tail: %s", strerror(errno));
		atomic_fetch_add(&g.n.dontneed, 1);
		return;
	}
	if (s->unmapped[c])
		return;
	pthread_rwlock_rdlock(&s->chunk_lock[c]);
	if (s->committed[c]) {
		first = c * CHUNK_PAGES + rnd(CHUNK_PAGES);
		n = 1 + rnd((c + 1) * CHUNK_PAGES - first);
		watch_begin("dontneed", i, s->id, first * g.ps);
		/* The write pages (page % WRITE_EVERY == 1) of the range, in order. */
		lo = (first + WRITE_EVERY - 2) / WRITE_EVERY;
		hi = (first + n + WRITE_EVERY - 2) / WRITE_EVERY;
		for (size_t w = lo; w < hi; w++)
			pthread_mutex_lock(&s->page_mu[w]);
		if (madvise(atomic_load(&s->base) + first * g.ps, n * g.ps, MADV_DONTNEED) < 0)
			die(EXIT_SETUP, "madvise(DONTNEED): %s", strerror(errno));
		for (size_t w = lo; w < hi; w++) {
			s->stamp[w] = 0;
			pthread_mutex_unlock(&s->page_mu[w]);
		}
		atomic_fetch_add(&g.n.dontneed, 1);
	}
	pthread_rwlock_unlock(&s->chunk_lock[c]);
}

/* Decommit a chunk (recommitting it at once or on a later visit), or commit
 * it back: under the chunk's exclusive lock, no thread is touching it. */
static void op_decommit(int i, struct slot *s)
{
	size_t c = rnd(NCHUNKS), off = c * CHUNK_PAGES * g.ps, len = CHUNK_PAGES * g.ps;
	upager_region_t *r = atomic_load(&s->region);
	int ret;

	if (s->moved || s->unmapped[c])
		return;
	watch_begin("decommit", i, s->id, off);
	pthread_rwlock_wrlock(&s->chunk_lock[c]);
	if (s->committed[c]) {
		ret = upager_decommit(r, off, len);
		if (ret < 0)
			die(EXIT_SETUP, "slot %d: upager_decommit(%#zx, %#zx): %s", i, off, len,
			    upager_strerror(ret));
		s->committed[c] = false;
		for (size_t w = c * CHUNK_PAGES / WRITE_EVERY; w < (c + 1) * CHUNK_PAGES / WRITE_EVERY;
		     w++)
			s->stamp[w] = 0;
		atomic_fetch_add(&g.n.decommit, 1);
	}
	if (!s->committed[c] && rnd(2)) {
		watch_begin("commit", i, s->id, off);
		ret = upager_commit(r, off, len);
		if (ret < 0)
			die(EXIT_SETUP, "slot %d: upager_commit(%#zx, %#zx): %s", i, off, len,
			    upager_strerror(ret));
		s->committed[c] = true;
		atomic_fetch_add(&g.n.commit, 1);
	}
	pthread_rwlock_unlock(&s->chunk_lock[c]);
}

static void op_prefetch(int i, struct slot *s)
{
	size_t c = rnd(NCHUNKS), first = c * CHUNK_PAGES + rnd(CHUNK_PAGES);
	size_t n = 1 + rnd((c + 1) * CHUNK_PAGES - first);
	int ret;

	if (s->moved || s->unmapped[c])
		return;
	pthread_rwlock_rdlock(&s->chunk_lock[c]);
	if (s->committed[c]) {
		watch_begin("prefetch", i, s->id, first * g.ps);
		ret = upager_prefetch(atomic_load(&s->region), first * g.ps, n * g.ps);
		if (ret < 0)
			die(EXIT_SETUP, "slot %d: upager_prefetch: %s", i, upager_strerror(ret));
		atomic_fetch_add(&g.n.prefetch, 1);
	}
	pthread_rwlock_unlock(&s->chunk_lock[c]);
}

static void op_advise(int i, struct slot *s)
{
	int ret;

	watch_begin("advise", i, s->id, 0);
	ret = upager_region_advise(atomic_load(&s->region), (int)rnd(3));
	if (ret < 0)
		die(EXIT_SETUP, "slot %d: upager_region_advise: %s", i, upager_strerror(ret));
	atomic_fetch_add(&g.n.advise, 1);
}

/* Under the slot's exclusive lock. */
static void op_munmap(int i, struct slot *s)
{
	size_t c = rnd(NCHUNKS);

	if (s->unmapped[c])
		return;
	watch_begin("munmap", i, s->id, c * CHUNK_PAGES * g.ps);
	if (munmap(atomic_load(&s->base) + c * CHUNK_PAGES * g.ps, CHUNK_PAGES * g.ps) < 0)
		die(EXIT_SETUP, "munmap: %s", strerror(errno));
	s->unmapped[c] = true;
	atomic_fetch_add(&g.n.munmap, 1);
}

/* Under the slot's exclusive lock: move and grow the whole region (only
 * while it is one mapping: every chunk committed and mapped). */
static void op_mremap(int i, struct slot *s)
{
	size_t grow = 1 + rnd(MAX_GROW_PAGES);
	void *to;

	if (s->moved)
		return;
	for (int c = 0; c < NCHUNKS; c++)
		if (!s->committed[c] || s->unmapped[c])
			return;
	watch_begin("mremap", i, s->id, 0);
	to = mremap(atomic_load(&s->base), region_bytes(), region_bytes() + grow * g.ps,
		    MREMAP_MAYMOVE);
	if (to == MAP_FAILED) {
		atomic_fetch_add(&g.n.mremap_refused, 1);
		return;
	}
	s->moved = true;
	atomic_store(&s->base, to);
	atomic_store(&s->grown, grow);
	atomic_fetch_add(&g.n.mremap, 1);
}

static void *mutator(void *arg)
{
	int me = (int)(intptr_t)arg;

	self = watch_new("mutator", me);
	pthread_setname_np(pthread_self(), self->name);
	rng = mix(g.seed ^ 0xabcdefull ^ (uint64_t)me << 40);
	while (!atomic_load(&g.stop)) {
		int i = (int)rnd(NSLOTS);
		struct slot *s = &g.slots[i];
		unsigned op = (unsigned)rnd(100);

		sleep_us(rnd(2000));
		if (!(g.ops & 1u << (op < 40 ? OP_DONTNEED : op < 58 ? OP_DECOMMIT :
				      op < 66 ? OP_PREFETCH : op < 70 ? OP_ADVISE :
				      op < 75 ? OP_MUNMAP : op < 82 ? OP_MREMAP : OP_RELEASE)))
			continue;
		if (op < 70) { /* races with faults: the shared lock */
			watch_begin("lock", i, 0, 0);
			pthread_rwlock_rdlock(&s->lock);
			if (!atomic_load(&s->region))
				;
			else if (op < 40 && (g.features & UPAGER_FEAT_EVENT_REMOVE))
				op_dontneed(i, s);
			else if (op < 58)
				op_decommit(i, s);
			else if (op < 66)
				op_prefetch(i, s);
			else
				op_advise(i, s);
			pthread_rwlock_unlock(&s->lock);
		} else { /* takes the region away: the exclusive lock */
			watch_begin("lock", i, 0, 0);
			pthread_rwlock_wrlock(&s->lock);
			if (!atomic_load(&s->region))
				slot_create(i);
			else if (op < 75 && (g.features & UPAGER_FEAT_EVENT_UNMAP))
				op_munmap(i, s);
			else if (op < 82 && (g.features & UPAGER_FEAT_EVENT_REMAP))
				op_mremap(i, s);
			else {
				watch_begin("release", i, s->id, 0);
				slot_release(i);
				watch_begin("create", i, s->id, 0);
				slot_create(i);
			}
			pthread_rwlock_unlock(&s->lock);
		}
		watch_end();
	}
	return NULL;
}

/* ---- the page server ----------------------------------------------------- */

/* Starts upagerd serve on the socket; dies if it is not ready in 5 s. Its
 * parent-death signal kills it should this process die without cleaning
 * up (it follows the thread that forked it, which lives until the end). */
static void server_start(void)
{
	char listen[320], ready[256];
	pid_t parent = getpid(), pid;
	int pfd[2];
	ssize_t n = 0;

	snprintf(listen, sizeof(listen), "unix:%s/upagerd.sock", g.dir);
	if (pipe2(pfd, O_CLOEXEC) < 0)
		die(EXIT_SETUP, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		die(EXIT_SETUP, "fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (dup2(pfd[1], 3) < 0)
			_exit(127);
		execl(g.upagerd, "upagerd", "serve", "--root", g.dir, "--listen", listen,
		      "--log-file", g.log_path, "--log-level", "warn", "--ready-fd", "3",
		      (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	atomic_store(&g.server_pid, pid);
	for (int tries = 0; tries < 500 && n <= 0; tries++) { /* 5 s */
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };

		if (poll(&p, 1, 10) > 0)
			n = read(pfd[0], ready, sizeof(ready) - 1);
	}
	close(pfd[0]);
	if (n <= 0)
		die(EXIT_SETUP, "%s serve did not become ready in 5 s", g.upagerd);
}

static void server_event(const char *what)
{
	if (g.verbose >= UPAGER_LOG_INFO)
		fprintf(stderr, "stress: %.3f s: server %s\n", (double)(now_ns() - g.start_ns) / 1e9,
			what);
	atomic_store(&g.server_event, what);
	atomic_store(&g.server_event_ns, now_ns());
}

static void server_kill(void)
{
	pid_t pid = atomic_exchange(&g.server_pid, 0);

	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
}

/* Kills the server (down for up to 0.5 s) or stops it (up to 2 s: a hung
 * server), every 1-3 s; the remote faults' deadline is far longer. */
static void *restarter(void *arg)
{
	(void)arg;
	self = watch_new("restarter", 0);
	pthread_setname_np(pthread_self(), "restarter");
	rng = mix(g.seed ^ 0x5e5e5eull);
	server_start();
	atomic_store(&g.server_up, true);
	while (!atomic_load(&g.stop)) {
		sleep_us(1000000 + rnd(2000000));
		if (atomic_load(&g.stop))
			break;
		if (!(g.ops & 1u << OP_RESTART))
			continue;
		if (rnd(4) == 0) {
			pid_t pid = atomic_load(&g.server_pid);

			watch_begin("server-stop", -1, 0, 0);
			kill(pid, SIGSTOP);
			server_event("stopped (SIGSTOP)");
			sleep_us(rnd(2000000));
			kill(pid, SIGCONT);
			server_event("continued (SIGCONT)");
			atomic_fetch_add(&g.n.server_stops, 1);
		} else {
			watch_begin("server-restart", -1, 0, 0);
			server_kill();
			server_event("killed");
			sleep_us(rnd(500000));
			server_start();
			server_event("restarted");
			atomic_fetch_add(&g.n.server_restarts, 1);
		}
		watch_end();
	}
	/* The workers' last faults still need it. */
	while (!atomic_load(&g.workers_done))
		sleep_us(10000);
	server_kill();
	return NULL;
}

/* ---- the watchdog -------------------------------------------------------- */

static void read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, len - 1) : -1;

	buf[n > 0 ? n : 0] = '\0';
	if (fd >= 0)
		close(fd);
}

/* On a hang: every thread's kernel stack but the workers' (those are
 * summed up by where they wait), which shows whether the handlers still
 * read the userfaultfd; with STRESS_GDB=1 also every user-space stack. */
static void dump_threads(void)
{
	char path[300], comm[32], stack[2048], top[96];
	struct { char top[96]; int n; } waits[16];
	int nwaits = 0;
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;

	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		read_small(path, comm, sizeof(comm));
		comm[strcspn(comm, "\n")] = '\0';
		snprintf(path, sizeof(path), "/proc/self/task/%s/stack", e->d_name);
		read_small(path, stack, sizeof(stack));
		if (strncmp(comm, "worker", 6) == 0) {
			int w = 0;

			snprintf(top, sizeof(top), "%.*s", (int)strcspn(stack, "\n"), stack);
			while (w < nwaits && strcmp(waits[w].top, top) != 0)
				w++;
			if (w == nwaits && nwaits < 16)
				snprintf(waits[nwaits++].top, sizeof(top), "%s", top), waits[w].n = 0;
			if (w < nwaits)
				waits[w].n++;
			continue;
		}
		fprintf(stderr, "stress: thread %s (%s), kernel stack:\n%s", e->d_name, comm, stack);
	}
	if (d)
		closedir(d);
	for (int w = 0; w < nwaits; w++)
		fprintf(stderr, "stress: %d workers in %s\n", waits[w].n, waits[w].top);
	if (getenv("STRESS_GDB") && atoi(getenv("STRESS_GDB")) > 0) {
		char cmd[256];

		snprintf(cmd, sizeof(cmd),
			 "timeout 30 gdb -q -batch -p %d -ex 'thread apply all bt' </dev/null 2>&1 "
			 "| grep -v '^\\[New LWP'",
			 (int)getpid());
		fflush(stderr);
		if (system(cmd) < 0)
			fprintf(stderr, "stress: cannot run gdb\n");
	}
	fflush(stderr);
}

/* Async-signal-safe, like say(): snprintf of integers and strings does not
 * allocate in glibc. */
static void say_server_event(void)
{
	const char *ev = atomic_load(&g.server_event);
	uint64_t at = ev ? atomic_load(&g.server_event_ns) : g.start_ns;
	char line[128];

	snprintf(line, sizeof(line), "stress: the server was last %s %" PRIu64 " ms ago\n",
		 ev ? ev : "started", (now_ns() - at) / 1000000);
	say(line);
}

/* Whether the page a stuck thread touches is mapped: mapped means its fill
 * was placed but the thread was not woken; not mapped, that no fill came. */
static const char *page_state(int slot, uint64_t off)
{
	uint8_t *base = slot >= 0 ? atomic_load(&g.slots[slot].base) : NULL;
	unsigned char vec = 0;

	if (!base)
		return "no region";
	if (mincore(base + (off & ~(uint64_t)(g.ps - 1)), g.ps, &vec) < 0)
		return errno == ENOMEM ? "not mapped (mincore: ENOMEM)" : "mincore failed";
	return vec & 1 ? "resident (placed, the thread not woken?)" : "not resident (no fill came?)";
}

static void *watchdog(void *arg)
{
	/* The HANG lines, said again after the threads' stacks: a log's tail
	 * (all CI keeps of a long failure) then still says what hung. */
	static char recap[2048];

	(void)arg;
	pthread_setname_np(pthread_self(), "watchdog");
	for (;;) {
		uint64_t t = now_ns();
		int stuck = 0, nw = atomic_load(&g.nwatches);
		char line[320];

		for (int i = 0; i < nw; i++) {
			struct watch *w = &g.watches[i];
			uint64_t since = atomic_load(&w->since_ns);
			int sl = atomic_load(&w->slot);

			if (!since || t < since || t - since < HANG_SECONDS * 1000000000ull)
				continue;
			if (!stuck++ && atomic_exchange(&g.failing, true))
				for (;;)
					pause();
			snprintf(line, sizeof(line),
				 "stress: HANG: %s: no progress for %.1f s in %s, slot %d (%s, "
				 "region id %" PRIu64 ") offset %#" PRIx64 "\n",
				 w->name, (double)(t - since) / 1e9, atomic_load(&w->op), sl,
				 sl >= 0 ? kind_name[g.slots[sl].kind] : "-", atomic_load(&w->id),
				 atomic_load(&w->off));
			say(line);
			if (strlen(recap) + strlen(line) < sizeof(recap))
				strcat(recap, line);
			if (sl >= 0) {
				upager_region_t *r = atomic_load(&g.slots[sl].region);
				upager_stats_t st = { 0 };

				if (r)
					upager_region_stats(r, &st);
				snprintf(line, sizeof(line),
					 "stress: that page: %s; the region: %" PRIu64
					 " faults, %" PRIu64 " coalesced, %" PRIu64
					 " pages filled, %" PRIu64 " fill errors\n",
					 page_state(sl, atomic_load(&w->off)), st.faults, st.coalesced,
					 st.pages_filled, st.fill_errors);
				say(line);
				if (strlen(recap) + strlen(line) < sizeof(recap))
					strcat(recap, line);
			}
		}
		if (stuck) {
			say_server_event();
			dump_threads();
			say(recap);
			say_server_event();
			cleanup(true);
			_exit(EXIT_HANG);
		}
		if (t > g.deadline_ns) {
			if (atomic_exchange(&g.failing, true))
				for (;;)
					pause();
			say("stress: HANG: the run did not end within STRESS_SECONDS + 20 s\n");
			cleanup(true);
			_exit(EXIT_HANG);
		}
		sleep_us(200000);
	}
	return NULL;
}

/* ---- signals -------------------------------------------------------------- */

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
	char line[320];
	int slot = -1;
	size_t off = 0;

	(void)uc;
	if (atomic_exchange(&g.failing, true))
		for (;;)
			pause();
	for (int i = 0; i < NSLOTS; i++) {
		uint8_t *b = atomic_load(&g.slots[i].base), *a = si->si_addr;

		if (b && a >= b && a < b + region_bytes() + atomic_load(&g.slots[i].grown) * g.ps)
			slot = i, off = (size_t)(a - b);
	}
	snprintf(line, sizeof(line),
		 "stress: FAIL: %s (si_code %d) at %p in thread %s: slot %d (%s) offset %#zx; "
		 "the thread was doing %s on slot %d region id %" PRIu64 " offset %#" PRIx64 "\n",
		 sig == SIGBUS ? "SIGBUS" : sig == SIGSEGV ? "SIGSEGV" : strsignal(sig),
		 si->si_code, si->si_addr, self ? self->name : "?", slot,
		 slot >= 0 ? kind_name[g.slots[slot].kind] : "-", off,
		 self ? atomic_load(&self->op) : "?", self ? atomic_load(&self->slot) : -1,
		 self ? atomic_load(&self->id) : 0, self ? atomic_load(&self->off) : 0);
	say(line);
	if (self && atomic_load(&self->slot) >= 0) {
		const struct slot *ws = &g.slots[atomic_load(&self->slot)];

		snprintf(line, sizeof(line),
			 "stress: that slot: %s at %p, %d pages + %zu grown by mremap%s\n",
			 kind_name[ws->kind], (void *)atomic_load(&ws->base), REGION_PAGES,
			 atomic_load(&ws->grown), ws->moved ? " (mremapped)" : "");
		say(line);
	}
	say_server_event();
	cleanup(true);
	_exit(EXIT_CRASH);
}

static void on_term(int sig)
{
	if (atomic_exchange(&g.failing, true))
		for (;;)
			pause();
	say(sig == SIGALRM ? "stress: HANG: still running STRESS_SECONDS + 30 s after the start\n"
			   : "stress: interrupted\n");
	cleanup(true);
	_exit(sig == SIGALRM ? EXIT_HANG : 128 + sig);
}

static void signals(void)
{
	struct sigaction sa = { .sa_sigaction = on_fatal, .sa_flags = SA_SIGINFO };
	struct sigaction st = { .sa_handler = on_term };

	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGABRT, &sa, NULL);
	sigaction(SIGINT, &st, NULL);
	sigaction(SIGTERM, &st, NULL);
	sigaction(SIGALRM, &st, NULL);
	sigaction(SIGHUP, &st, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* ---- setup ---------------------------------------------------------------- */

static void log_cb(void *arg, int level, const char *msg)
{
	static const char *const level_name[] = { "error", "warning", "info", "debug" };
	char line[512];

	(void)arg;
	snprintf(line, sizeof(line), "stress: %.3f s: upager %s: %s\n",
		 (double)(now_ns() - g.start_ns) / 1e9,
		 level_name[level < 0 ? 0 : level > 3 ? 3 : level], msg);
	say(line);
}

static const char *dir_path(const char *name)
{
	char *p = g.paths[g.npaths++];

	snprintf(p, sizeof(g.paths[0]), "%s/%s", g.dir, name);
	return p;
}

static void write_file(const char *path, uint64_t seed, uint64_t size)
{
	uint8_t *buf = malloc(MIB);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (!buf || fd < 0)
		die(EXIT_SETUP, "%s: %s", path, strerror(errno));
	for (uint64_t off = 0; off < size; off += MIB) {
		size_t len = size - off < MIB ? (size_t)(size - off) : MIB;

		pattern(seed, off, buf, MIB);
		if (write(fd, buf, len) != (ssize_t)len)
			die(EXIT_SETUP, "%s: %s", path, strerror(errno));
	}
	close(fd);
	free(buf);
}

static void write_snapshot(void)
{
	uint8_t *m = mmap(NULL, region_bytes(), PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ret;

	if (m == MAP_FAILED)
		die(EXIT_SETUP, "mmap: %s", strerror(errno));
	for (size_t page = 0; page < REGION_PAGES; page++) {
		if (page % 5 == 0)
			memset(m + page * g.ps, 0, g.ps); /* populated, zero */
		else if (!snap_page_zero(page))
			pattern(SEED_SNAP, page * g.ps, m + page * g.ps, g.ps);
	}
	ret = upager_snapshot_save(m, region_bytes(), g.snap_path);
	if (ret < 0)
		die(EXIT_SETUP, "upager_snapshot_save: %s", upager_strerror(ret));
	munmap(m, region_bytes());
}

static unsigned env_unsigned(const char *name, unsigned def, unsigned max)
{
	const char *v = getenv(name);
	char *end;
	unsigned long x;

	if (!v || !*v)
		return def;
	x = strtoul(v, &end, 10);
	if (*end || x == 0 || x > max) {
		fprintf(stderr, "stress: %s=%s: want 1..%u\n", name, v, max);
		exit(EXIT_SETUP);
	}
	return (unsigned)x;
}

static unsigned parse_ops(const char *v)
{
	unsigned ops = 0;
	char buf[256], *save = NULL;

	if (!v || !*v)
		return (1u << NOPS) - 1;
	snprintf(buf, sizeof(buf), "%s", v);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int o = 0;

		while (o < NOPS && strcmp(t, op_name[o]) != 0)
			o++;
		if (o == NOPS) {
			fprintf(stderr, "stress: STRESS_OPS: unknown %s (dontneed, decommit, prefetch, "
					"advise, munmap, mremap, release, restart)\n", t);
			exit(EXIT_SETUP);
		}
		ops |= 1u << o;
	}
	return ops;
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	char why[256] = "";
	upager_options_t opts;
	int ret;

	ret = upager_probe(0, NULL, why, sizeof(why));
	if (ret < 0) {
		fprintf(stderr, "stress: SKIP: userfaultfd unusable: %s\n", why);
		exit(77);
	}
	snprintf(g.dir, sizeof(g.dir), "%s/upager-stress.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(g.dir)) {
		fprintf(stderr, "stress: mkdtemp %s: %s\n", g.dir, strerror(errno));
		g.dir[0] = '\0';
		exit(EXIT_SETUP);
	}
	write_file(dir_path("data.bin"), SEED_FILE, FILE_BYTES);
	write_file(dir_path("remote.bin"), SEED_REMOTE, REMOTE_BYTES);
	snprintf(g.snap_path, sizeof(g.snap_path), "%s", dir_path("snap.img"));
	snprintf(g.log_path, sizeof(g.log_path), "%s", dir_path("upagerd.log"));
	snprintf(g.sock_uri, sizeof(g.sock_uri), "unix:%s", dir_path("upagerd.sock"));
	write_snapshot();
	g.file_fd = open(g.paths[0], O_RDONLY | O_CLOEXEC);
	if (g.file_fd < 0)
		die(EXIT_SETUP, "%s: %s", g.paths[0], strerror(errno));

	upager_remote_options_init(&g.ropts);
	g.ropts.connect_timeout_ms = 2000;
	/* Shorter than the watchdog: a fault the restarts starve ends in SIGBUS,
	 * with its address, rather than in a hang report. Servers are down for
	 * 2 s at most. */
	g.ropts.deadline_ms = 8000;

	upager_options_init(&opts);
	opts.nthreads = g.nhandlers;
	opts.log = log_cb;
	opts.log_level = g.verbose;
	ret = upager_create(&g.pager, &opts);
	if (ret < 0)
		die(EXIT_SETUP, "upager_create: %s", upager_strerror(ret));
	g.features = upager_features(g.pager);

	for (int i = 0; i < NSLOTS; i++) {
		struct slot *s = &g.slots[i];
		pthread_rwlockattr_t attr;

		/* Writers first: 64 readers would otherwise starve the mutators. */
		pthread_rwlockattr_init(&attr);
		pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&s->lock, &attr);
		for (int c = 0; c < NCHUNKS; c++)
			pthread_rwlock_init(&s->chunk_lock[c], &attr);
		pthread_rwlockattr_destroy(&attr);
		for (size_t w = 0; w < REGION_PAGES / WRITE_EVERY; w++)
			pthread_mutex_init(&s->page_mu[w], NULL);
		s->kind = (enum kind)(i % NKINDS);
	}
}

int main(int argc, char **argv)
{
	pthread_t workers[MAX_THREADS], mutators[NMUTATORS], restart, dog;
	upager_stats_t st;
	uint64_t t0;
	int ret;

	g.ps = (size_t)sysconf(_SC_PAGESIZE);
	g.upagerd = argc > 1 ? argv[1] : "daemon/upagerd";
	g.seconds = env_unsigned("STRESS_SECONDS", 60, 86400);
	g.nthreads = env_unsigned("STRESS_THREADS", 64, MAX_THREADS);
	g.nhandlers = env_unsigned("STRESS_HANDLERS", 2, 64);
	g.ops = parse_ops(getenv("STRESS_OPS"));
	g.verbose = getenv("STRESS_VERBOSE") ? atoi(getenv("STRESS_VERBOSE")) : 0;
	g.verbose = g.verbose < 0 ? 0 : g.verbose > 3 ? 3 : g.verbose;
	g.seed = getenv("STRESS_SEED") ? strtoull(getenv("STRESS_SEED"), NULL, 0) : now_ns();
	if (argc > 2 || access(g.upagerd, X_OK) < 0) {
		fprintf(stderr, "usage: %s [PATH-TO-UPAGERD]  (default daemon/upagerd)\n", argv[0]);
		return EXIT_SETUP;
	}
	atomic_store(&g.next_id, 1);
	atomic_store(&g.next_stamp, 1);
	signals();
	t0 = g.start_ns = now_ns();
	/* Bounded even if setup itself hangs; the watchdog bounds the rest. */
	g.deadline_ns = t0 + (g.seconds + END_MARGIN_S) * 1000000000ull;
	alarm(g.seconds + END_MARGIN_S + 10);
	setup();
	printf("stress: %u s, %u threads, %u handlers, seed %#" PRIx64 ", features %#" PRIx64
	       ", dir %s\n",
	       g.seconds, g.nthreads, g.nhandlers, g.seed, g.features, g.dir);
	fflush(stdout);

	if (pthread_create(&dog, NULL, watchdog, NULL) != 0 ||
	    pthread_create(&restart, NULL, restarter, NULL) != 0)
		die(EXIT_SETUP, "pthread_create failed");
	while (!atomic_load(&g.server_up))
		sleep_us(1000);
	for (int i = 0; i < NSLOTS; i++)
		slot_create(i);
	for (unsigned i = 0; i < g.nthreads; i++)
		if (pthread_create(&workers[i], NULL, worker, (void *)(intptr_t)i) != 0)
			die(EXIT_SETUP, "pthread_create failed");
	for (int i = 0; i < NMUTATORS; i++)
		if (pthread_create(&mutators[i], NULL, mutator, (void *)(intptr_t)i) != 0)
			die(EXIT_SETUP, "pthread_create failed");

	while (now_ns() - t0 < g.seconds * 1000000000ull)
		sleep_us(100000);
	atomic_store(&g.stop, true);
	for (unsigned i = 0; i < g.nthreads; i++)
		pthread_join(workers[i], NULL);
	for (int i = 0; i < NMUTATORS; i++)
		pthread_join(mutators[i], NULL);
	atomic_store(&g.workers_done, true);
	pthread_join(restart, NULL);

	self = watch_new("main", 0);
	ret = upager_stats(g.pager, &st);
	if (ret < 0)
		die(EXIT_SETUP, "upager_stats: %s", upager_strerror(ret));
	for (int i = 0; i < NSLOTS; i++) {
		watch_begin("release", i, g.slots[i].id, 0);
		slot_release(i);
	}
	watch_begin("destroy", -1, 0, 0);
	ret = upager_destroy(g.pager);
	if (ret < 0)
		die(EXIT_SETUP, "upager_destroy: %s", upager_strerror(ret));
	watch_end();
	close(g.file_fd);
	atomic_store(&g.failing, true); /* the watchdog must not report now */
	cleanup(false);
	printf("stress: OK %.1f s, %u threads: faults %" PRIu64 " (coalesced %" PRIu64
	       ", fill errors %" PRIu64 "), pages filled %" PRIu64 ", pages checked %" PRIu64
	       ", writes %" PRIu64 ", dontneed %" PRIu64 ", decommit %" PRIu64 ", commit %" PRIu64
	       ", prefetch %" PRIu64 ", advise %" PRIu64 ", mremap %" PRIu64 " (refused %" PRIu64
	       "), munmap %" PRIu64 ", release %" PRIu64 ", create %" PRIu64 " (retried %" PRIu64
	       "), callback fills %" PRIu64 ", server restarts %" PRIu64 ", server stops %" PRIu64
	       "\n",
	       (double)(now_ns() - t0) / 1e9, g.nthreads, st.faults, st.coalesced, st.fill_errors,
	       st.pages_filled, atomic_load(&g.n.pages_checked), atomic_load(&g.n.writes),
	       atomic_load(&g.n.dontneed), atomic_load(&g.n.decommit), atomic_load(&g.n.commit),
	       atomic_load(&g.n.prefetch), atomic_load(&g.n.advise), atomic_load(&g.n.mremap),
	       atomic_load(&g.n.mremap_refused), atomic_load(&g.n.munmap),
	       atomic_load(&g.n.release), atomic_load(&g.n.create), atomic_load(&g.n.create_retry),
	       atomic_load(&g.n.callback_fills), atomic_load(&g.n.server_restarts),
	       atomic_load(&g.n.server_stops));
	return 0;
}
