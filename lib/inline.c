/* SPDX-License-Identifier: MIT */
/*
 * Inline faults: a pager opened with UFFD_FEATURE_SIGBUS gets no fault
 * messages; the kernel raises SIGBUS in the faulting thread instead, and
 * this handler fills and places the page from that thread, then returns so
 * that the access is retried: no handler thread, no wake-up. What it may do
 * is what a signal handler may do: no malloc, no locks (the interrupted
 * thread may hold them), no stdio, no TLS. So the region comes from the
 * lock-free inline table (inline_table.c), commit state from the region's
 * committed bitmap, buffers from a fixed pool claimed with atomics, and
 * pages go through the placement core (place.c) as in the threaded mode.
 *
 * Sources that cannot fill here (a callback runs the program's code, the
 * remote source waits on a connection thread) have no fill_inline, and a
 * snapshot's says when it cannot (recording its working set, a page that
 * fails): their faults are posted to the pager's handler threads (inline_queue.c),
 * filled as fault messages are (fill.c: windows, coalescing, readahead,
 * the remote deadline, statistics), and the thread waits on a futex for
 * the answer: retry the access, or the program's SIGBUS.
 *
 * Every SIGBUS that is not a upager fault of an inline region, and every
 * fill that fails, goes to the handler the program had installed before
 * the first inline pager, run as the kernel would (its mask, SA_NODEFER,
 * SA_RESETHAND); SIG_DFL, and SIG_IGN for a fault: the default action, the
 * signal sent again with SIG_DFL installed; SIG_IGN for a sent SIGBUS:
 * nothing. A place error that means the range is gone (ENOENT, EFAULT) or
 * changing (EAGAIN) retries the access.
 *
 * Layer: below pager.c (which installs it) and region.c; above the inline
 * table, the region state, the placement core and the counters.
 */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "events.h"
#include "handler.h"
#include "inline.h"
#include "inline_queue.h"
#include "inline_table.h"
#include "region_state.h"

/* Window buffers for sources that read (files): one per fill in progress;
 * past that many concurrent fills a fault waits for a buffer. NORESERVE: the
 * pages a window never reached cost nothing. */
#define NBUFS 64
#define BUF_PAGES UPAGER__MAX_WINDOW

static struct sigaction prev; /* the program's SIGBUS handler before ours */
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static bool installed;
static char *bufs;           /* NBUFS pages */
static size_t buf_size;
static atomic_uint_fast64_t bufs_free = ~0ull; /* bit n: buffer n is free */

static void *buf_get(unsigned *idx)
{
	for (;;) {
		uint_fast64_t f = atomic_load(&bufs_free);

		while (f) {
			unsigned i = (unsigned)__builtin_ctzll(f);

			if (atomic_compare_exchange_weak(&bufs_free, &f, f & ~(1ull << i))) {
				*idx = i;
				return bufs + (size_t)i * buf_size;
			}
		}
		sched_yield();
	}
}

static void buf_put(unsigned idx)
{
	atomic_fetch_or(&bufs_free, 1ull << idx);
}

/* The default action of a SIGBUS: death. The signal goes again, with its
 * siginfo, to this thread with the default action installed and SIGBUS
 * unblocked; nothing returns to run with SIG_DFL in place. */
static void die(siginfo_t *si)
{
	struct sigaction dfl;
	sigset_t bus;

	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGBUS, &dfl, NULL);
	sigemptyset(&bus);
	sigaddset(&bus, SIGBUS);
	if (syscall(SYS_rt_tgsigqueueinfo, getpid(), syscall(SYS_gettid), SIGBUS, si) < 0)
		syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGBUS);
	pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
	for (;;)
		pause(); /* not reached: the pending SIGBUS ends the process */
}

/*
 * The program's handler, as the kernel would have run it: with the mask
 * the thread had (uc_sigmask), the handler's sa_mask and SIGBUS itself
 * unless SA_NODEFER; SA_RESETHAND makes the default action the next one.
 */
static void chain(int sig, siginfo_t *si, void *uc)
{
	struct sigaction h = prev;
	sigset_t mask, old;

	/* SIG_IGN and SIG_DFL whatever the flags: SA_SIGINFO stays with SIG_DFL
	 * after an SA_RESETHAND handler ran (sa_handler and sa_sigaction share
	 * their bytes: calling it called address 0 or 1). */
	if (h.sa_handler == SIG_IGN && si->si_code <= 0)
		return; /* sent, and ignored, as without upager */
	if (h.sa_handler == SIG_DFL || h.sa_handler == SIG_IGN)
		die(si); /* the kernel does not let a fault's SIGBUS be ignored either */
	if (h.sa_flags & SA_RESETHAND) {
		memset(&prev, 0, sizeof(prev));
		prev.sa_handler = SIG_DFL;
	}
	mask = ((ucontext_t *)uc)->uc_sigmask;
	for (int s = 1; s < NSIG; s++)
		if (sigismember(&h.sa_mask, s) == 1)
			sigaddset(&mask, s);
	if (!(h.sa_flags & SA_NODEFER))
		sigaddset(&mask, SIGBUS);
	pthread_sigmask(SIG_SETMASK, &mask, &old);
	if (h.sa_flags & SA_SIGINFO)
		h.sa_sigaction(sig, si, uc);
	else
		h.sa_handler(sig);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static bool write_fault(void *uc)
{
#if defined(__x86_64__)
	/* The page fault error code: bit 1 is a write. */
	return ((ucontext_t *)uc)->uc_mcontext.gregs[REG_ERR] & 2;
#else
	(void)uc;
	return false; /* the zero page, then the kernel's COW fault on a write */
#endif
}

static void count(upager_t *p, upager_region_t *r, bool zero, int64_t n)
{
	uint64_t pages = (uint64_t)n, bytes = (uint64_t)(n * (int64_t)p->page_size);

	UPAGER__ADD(&p->st, pages_filled, pages);
	UPAGER__ADD(&p->st, bytes_filled, bytes);
	UPAGER__ADD(&p->st, pages_zero, zero ? pages : 0);
	UPAGER__ADD(&r->st, pages_filled, pages);
	UPAGER__ADD(&r->st, bytes_filled, bytes);
	UPAGER__ADD(&r->st, pages_zero, zero ? pages : 0);
}

/*
 * Pages to fill for the fault at page (region offset roff), from *back
 * pages before it: a fault that continues a sequential stream doubles its
 * window as the threaded mode does (1 -> 256 pages), and SEQUENTIAL advice
 * takes 256 at once; a random fault fills the source's fault-around block,
 * aligned, as the handler threads and the kernel do (zero: its page alone).
 * Measured on this VM (issue 11, 2026-12-01): a fault costs ~20 us outside
 * the handler (the exception, the signal frame, sigreturn, the retried
 * access) against ~6 us for a 64 KiB pread and copy, so on file_rand_warm a
 * minimal handler made 0.17x the kernel with one page a fault and 0.33x
 * with 16-page blocks (0.40x with 32, 0.45x with 64, at 2-4x the RSS).
 * A block already in the page cache is filled 64 pages at a time
 * (upager__source_around: on file_rand_warm 8118 -> 2048 faults, 63 K ->
 * 76 K pages/s; a cold one stays 16: 64 cost 0.50x -> 0.35x there).
 * Clipped to the mapping, the committed pages and the pages not resident.
 */
static size_t window(upager_region_t *r, const struct upager__inline_hit *hit, uintptr_t page,
		     size_t roff, size_t *back)
{
	size_t ps = r->pager->page_size, pg = roff / ps, want = 1, n = 1, around = 1;

	*back = 0;
	switch (atomic_load_explicit(&r->advice, memory_order_relaxed)) {
	case UPAGER_ADV_RANDOM:
		return 1;
	case UPAGER_ADV_SEQUENTIAL:
		want = UPAGER__MAX_WINDOW;
		break;
	default:
		if (pg != 0 && pg == atomic_load_explicit(&r->ra_next, memory_order_relaxed)) {
			want = upager__window_grow(
				atomic_load_explicit(&r->ra_win, memory_order_relaxed));
		} else if (r->src->ops->fault_around > 1) {
			around = upager__source_around(r->src, pg, ps);
			want = around - pg % around;
		}
		break;
	}
	while (n < want && page + n * ps < hit->end &&
	       upager__region_committed_bit(r, roff + n * ps) &&
	       !upager__region_resident(r, roff + n * ps))
		n++;
	while (*back < pg % around && page - (*back + 1) * ps >= hit->start &&
	       upager__region_committed_bit(r, roff - (*back + 1) * ps) &&
	       !upager__region_resident(r, roff - (*back + 1) * ps))
		(*back)++;
	atomic_store_explicit(&r->ra_win, (unsigned)(around > 1 ? around : want),
			      memory_order_relaxed);
	atomic_store_explicit(&r->ra_next, pg + n, memory_order_relaxed);
	return n + *back;
}

/* A fill that place_fail could not poison: the program gets the fault. */
static int fail_to_program(void *arg, uintptr_t page)
{
	(void)page;
	*(bool *)arg = true;
	return 0;
}

enum { RETRY, CHAIN, WAIT, FULL, POST, GONE /* retry, within a bound (see gone_at) */ };

static void count_fault(upager_t *p, upager_region_t *r, bool write)
{
	UPAGER__ADD(&p->st, faults, 1);
	UPAGER__ADD(&p->st, read_faults, !write);
	UPAGER__ADD(&p->st, write_faults, write);
	UPAGER__ADD(&r->st, faults, 1);
	UPAGER__ADD(&r->st, read_faults, !write);
	UPAGER__ADD(&r->st, write_faults, write);
}

/* May a copy into [start, end) start now? Then it runs until
 * upager__inline_copy_end (inline_table.h). */
static bool copy_begin(upager_t *p, uintptr_t start, uintptr_t end)
{
	if (!upager__inline_copy_begin(p))
		return false;
	if (!upager__events_unmapped(p, start, end))
		return true;
	upager__inline_copy_end(p);
	return false;
}

/*
 * The fault at addr of the region held in hit: fills and places its page.
 * RETRY: return, and the access runs again (placed, or faults again: a
 * decommit or release moved the page to PROT_NONE, an event is pending);
 * CHAIN: the program's handler gets the fault; POST: the source cannot
 * fill it here (fill_inline said PENDING), post_fault hands it on.
 */
static int fill_page(const struct upager__inline_hit *hit, uintptr_t addr, bool write)
{
	upager_region_t *r = hit->region;
	upager_t *p = r->pager;
	size_t ps = p->page_size;
	uintptr_t page = addr & ~(uintptr_t)(ps - 1), fpage = page;
	size_t roff = hit->roff + (page - hit->start), froff = roff, n, back;
	uint64_t t0 = upager__now_ns();
	struct upager__placement pl = { .uffd = p->uffd, .dst = page, .page_size = ps };
	unsigned bi = NBUFS;
	uint64_t claim[UPAGER__MAX_WINDOW / 64] = { 0 }; /* pages whose bit this fill set */
	bool failed = false, zero;
	int res, ret = RETRY;
	unsigned epoch, ra_win = atomic_load_explicit(&r->ra_win, memory_order_relaxed);
	size_t ra_next = atomic_load_explicit(&r->ra_next, memory_order_relaxed);

	/* Decommit clears the bits, then drains the fills that began before
	 * it: counted in first, then the bits read (both seq_cst). */
	epoch = upager__region_inline_enter(r);
	if (atomic_load(&r->dead) || !upager__region_committed_bit(r, roff)) {
		upager__region_inline_leave(r, epoch);
		count_fault(p, r, write);
		sched_yield(); /* the range is going PROT_NONE: the retry meets it */
		return RETRY;
	}
	n = window(r, hit, page, roff, &back);
	page -= back * ps;
	roff -= back * ps;
	pl.dst = page;
	if (r->src->ops->inline_reads)
		pl.src = buf_get(&bi);
	for (;;) {
		res = r->src->ops->fill_inline(r->src, roff, (void *)pl.src, n * ps);
		if (res >= 0 || n == 1)
			break;
		/* only the faulting page's failure is the program's */
		n = 1;
		back = 0;
		page = pl.dst = fpage;
		roff = froff;
	}
	if (res == UPAGER__FILL_PENDING) {
		/* The handler threads plan its window (and count it) afresh. */
		atomic_store_explicit(&r->ra_win, ra_win, memory_order_relaxed);
		atomic_store_explicit(&r->ra_next, ra_next, memory_order_relaxed);
		upager__region_inline_leave(r, epoch);
		if (bi != NBUFS)
			buf_put(bi);
		return POST;
	}
	count_fault(p, r, write);
	pl.len = n * ps;
	zero = res == UPAGER__FILL_ZERO;
	if (zero) {
		if (write)
			pl.src = p->zero_buf; /* a zero page written at once COW-faults again */
		else
			pl.flags = UPAGER__PLACE_ZEROPAGE;
	}
	/* In an UNMAP or REMAP read and not applied: the page alone if only
	 * the window's rest is, else nothing (the handler takes the mapping
	 * out, the retried access finds what is there now). */
	if (res >= 0 && !copy_begin(p, page, page + n * ps)) {
		if (n > 1 && copy_begin(p, fpage, fpage + ps)) {
			if (pl.src)
				pl.src = (const char *)pl.src + back * ps;
			n = 1;
			pl.len = ps;
			page = pl.dst = fpage;
			roff = froff;
		} else {
			ret = GONE;
		}
	}
	if (ret == GONE) {
		/* nothing placed, nothing claimed */
	} else if (res >= 0) {
		int err;

		/* Claimed (resident bit set) and counted before the pages are
		 * there, as the threaded fills do: whoever sets a bit counts it. */
		for (size_t i = 0; i < n; i++)
			if (!upager__region_resident(r, roff + i * ps) &&
			    upager__region_set_resident(r, roff + i * ps)) {
				claim[i / 64] |= 1ull << (i % 64);
				count(p, r, zero, 1);
			}
		if (r->wp)
			pl.flags |= UPAGER__PLACE_WP;
		err = upager__place_range(&pl);
		upager__inline_copy_end(p);
		if (err < 0) {
			/* Pages from pl.done on are not there: give back their claims. */
			for (size_t i = pl.done / ps; i < n; i++)
				if (claim[i / 64] & (1ull << (i % 64))) {
					upager__region_clear_resident(r, roff + i * ps, ps);
					count(p, r, zero, -1);
				}
		}
		/* EAGAIN: an event is on its way; ENOENT, EFAULT: the range is
		 * no longer registered (munmap, mremap): the access, retried,
		 * finds what is there now. Anything else is our failure. */
		if (err < 0 && err != -EAGAIN && err != -ENOENT && err != -EFAULT)
			ret = CHAIN;
		else if (err == -ENOENT || err == -EFAULT)
			ret = GONE;
	} else {
		UPAGER__ADD(&p->st, fill_errors, 1);
		UPAGER__ADD(&r->st, fill_errors, 1);
		/*
		 * No poison: a poisoned page faults as BUS_ADRERR where the kernel
		 * lacks CONFIG_MEMORY_FAILURE (this VM's), like a missing page, and
		 * a fill over it meets EEXIST and retries for ever. The program
		 * gets this fault, and every later access asks the source again.
		 */
		if (!copy_begin(p, page, page + ps)) {
			ret = GONE;
		} else {
			res = upager__place_fail(p->uffd, page, ps, false, fail_to_program,
						 &failed);
			upager__inline_copy_end(p);
			if (failed || res != -EAGAIN)
				ret = CHAIN;
		}
	}
	upager__region_inline_leave(r, epoch);
	if (bi != NBUFS)
		buf_put(bi);
	if (ret != CHAIN) {
		uint64_t ns = upager__now_ns() - t0;

		upager__lat_record(&p->st, ns);
		upager__lat_record(&r->st, ns);
	}
	return ret;
}

/*
 * The fault at addr of the region held in hit, for a source without
 * fill_inline: posted to the pager's handlers (*qp), while the table slot
 * keeps the pager alive. WAIT: the caller lets go of the slot and waits
 * for the answer; FULL: every request is taken, nap and retry; RETRY as
 * fill_page's. A handler thread of the same pager would wait for itself:
 * CHAIN, the program's SIGBUS. (Handler threads block SIGBUS, thread.c, so
 * the kernel kills the process at such a fault first, unless a callback
 * unblocked it.)
 */
static int post_fault(const struct upager__inline_hit *hit, uintptr_t addr, bool is_write,
		      struct upager__inline_req **qp)
{
	upager_region_t *r = hit->region;
	upager_t *p = r->pager;
	size_t roff = hit->roff + (addr - hit->start);
	uint64_t one = 1;
	int saved;

	if (upager__on_handler(p))
		return CHAIN;
	if (atomic_load(&r->dead) || !upager__region_committed_bit(r, roff)) {
		sched_yield(); /* the range is going PROT_NONE: the retry meets it */
		return RETRY;
	}
	*qp = upager__inline_req_claim();
	if (!*qp)
		return FULL;
	upager__inline_req_post(*qp, p, addr, is_write);
	/* Any handler of p may take it; this one is told. A full counter
	 * (EAGAIN) has a wake-up pending anyway. */
	saved = errno;
	if (write(p->handlers[(uintptr_t)*qp / sizeof(**qp) % p->nthreads].wake_fd, &one,
		  sizeof(one)) < 0)
		errno = saved;
	return WAIT;
}

/*
 * A retry in progress at one address (a miss, or a copy refused: GONE) is
 * told from a new fault there by the time between the retry's return and
 * this fault's entry: the retried access alone, unless the thread went
 * elsewhere (a SIGSEGV handler that longjmps). Longer than RETRY_GAP_NS: a
 * new fault, whose bounds start afresh. Measured entry to return, not call
 * to call: a retry that reads a slow source for a while is still one.
 */
#define RETRY_GAP_NS (UPAGER__INLINE_MISS_WAIT_NS / 4)

/*
 * The address of this thread's last fault found in no inline mapping, the
 * table's version then, when it returned, and how many such misses in a
 * row. The fault may be older than the table: a release makes the range
 * PROT_NONE, then takes it out of the table, and a SIGBUS raised before
 * the mprotect may be handled after both. So a miss retries the access: a
 * fault that is not upager's comes back to the same address with the same
 * table and goes to the program; one of a released range is now a
 * SIGSEGV. A miss at that address after the table changed is retried too
 * (it can be just as transient: a thread's second miss at one address,
 * regions later, was once the program's SIGBUS, in CI's
 * test_release_race_callback), but at most MISS_TRIES in a row: a program
 * that maps and releases regions between every retry does not keep its own
 * SIGBUS from it for ever. initial-exec: a TLS access that never
 * allocates, safe in a handler.
 */
#define MISS_TRIES 4
static __thread uintptr_t last_miss __attribute__((tls_model("initial-exec")));
static __thread uint_fast64_t last_miss_version __attribute__((tls_model("initial-exec")));
static __thread uint64_t last_miss_done __attribute__((tls_model("initial-exec")));
static __thread unsigned misses __attribute__((tls_model("initial-exec")));

/* RETRY, or CHAIN when this miss at addr is the program's fault. */
static int missed(uintptr_t addr, uint_fast64_t version, uint64_t entry)
{
	bool again = last_miss == addr && entry && entry - last_miss_done <= RETRY_GAP_NS;

	if (again && (last_miss_version == version || ++misses >= MISS_TRIES)) {
		last_miss = 0;
		return CHAIN;
	}
	if (!again)
		misses = 0;
	last_miss = addr;
	last_miss_version = version;
	last_miss_done = upager__now_ns();
	return RETRY;
}

/*
 * Where this thread's copies met the range not registered (ENOENT, EFAULT)
 * or in an UNMAP or REMAP read and not applied (copy_begin), since when,
 * and when the last retry returned. The mapping it found is being taken
 * out of the table, and the retried access finds what is there now; but a
 * copy the kernel can never take there (a window over VMAs the program
 * split, a mapping the table still holds that the kernel does not) would
 * retry for ever: past UPAGER__INLINE_MISS_WAIT_NS of retries at one
 * address, the fault is the program's.
 */
static __thread uintptr_t gone_at __attribute__((tls_model("initial-exec")));
static __thread uint64_t gone_since __attribute__((tls_model("initial-exec")));
static __thread uint64_t gone_done __attribute__((tls_model("initial-exec")));

static int gone_bounded(uintptr_t addr, uint64_t entry)
{
	/* Each retry reads the source again: give the handler that takes
	 * the mapping out the CPU instead. */
	const struct timespec nap = { 0, 100 * 1000 };
	uint64_t now = upager__now_ns();

	if (gone_at != addr || !entry || entry - gone_done > RETRY_GAP_NS) {
		gone_at = addr;
		gone_since = now;
	} else if (now - gone_since >= UPAGER__INLINE_MISS_WAIT_NS) {
		gone_at = 0;
		return CHAIN;
	}
	nanosleep(&nap, NULL);
	gone_done = upager__now_ns();
	return RETRY;
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	struct upager__inline_hit hit;
	uintptr_t addr = (uintptr_t)si->si_addr;
	int saved = errno, ret = CHAIN;
	/* A retry's return to this fault's entry (see RETRY_GAP_NS): a clock
	 * read only where a retry at this address is under way. */
	uint64_t entry = addr && (addr == gone_at || addr == last_miss) ? upager__now_ns() : 0;

	/* A userfaultfd SIGBUS is the kernel's BUS_ADRERR; a sent signal and
	 * the rest are the program's. */
	if (si->si_code == BUS_ADRERR) {
		if (upager__inline_enter(addr, &hit)) {
			struct upager__inline_req *q = NULL;

			last_miss = 0;
			ret = POST;
			if (hit.region->src->ops->fill_inline)
				ret = fill_page(&hit, addr, write_fault(uc));
			if (ret == POST)
				ret = post_fault(&hit, addr, write_fault(uc), &q);
			upager__inline_leave(&hit);
			/* Not holding the slot: a release or destroy meanwhile
			 * does not wait for this thread, whose request is
			 * answered all the same (inline_queue.c). */
			if (ret == WAIT)
				ret = upager__inline_req_wait(q) == UPAGER__INLINE_FAIL ? CHAIN
										: RETRY;
			else if (ret == FULL) {
				upager__inline_req_nap();
				ret = RETRY;
			}
			if (ret == GONE)
				ret = gone_bounded(addr, entry);
			else if (ret == RETRY)
				gone_at = 0;
		} else {
			ret = missed(addr, hit.version, entry);
		}
	}
	if (ret == CHAIN)
		chain(sig, si, uc);
	errno = saved;
}

/* The child of a fork: no parent's mapping in the table, no buffer held by
 * a parent thread's fill (that thread is not in the child). */
static void forget_in_child(void)
{
	upager__inline_forget();
	upager__inline_req_forget();
	upager__region_inline_forget();
	atomic_store(&bufs_free, ~0ull);
	pthread_mutex_init(&install_lock, NULL);
}

int upager__inline_install(void)
{
	struct sigaction sa;
	int ret = 0;

	pthread_mutex_lock(&install_lock);
	if (installed)
		goto out;
	buf_size = (size_t)sysconf(_SC_PAGESIZE) * BUF_PAGES;
	bufs = mmap(NULL, NBUFS * buf_size, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (bufs == MAP_FAILED) {
		bufs = NULL;
		ret = -ENOMEM;
		goto out;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	/*
	 * NODEFER: a program handler we chain to may touch an inline region.
	 * The program's other signals wait until the fill is done: one that
	 * siglongjmps out of it would leave its slot and region busy (release
	 * and decommit would wait for ever), and one whose handler faults on
	 * the page being filled would wait for itself. Synchronous signals
	 * stay open (blocked, the kernel kills). SA_ONSTACK only where the
	 * program's handler asked for it.
	 */
	sigfillset(&sa.sa_mask);
	sigdelset(&sa.sa_mask, SIGBUS);
	sigdelset(&sa.sa_mask, SIGSEGV);
	sigdelset(&sa.sa_mask, SIGILL);
	sigdelset(&sa.sa_mask, SIGFPE);
	sigdelset(&sa.sa_mask, SIGTRAP);
	sigdelset(&sa.sa_mask, SIGSYS);
	if (sigaction(SIGBUS, NULL, &prev) < 0) {
		ret = -errno;
		munmap(bufs, NBUFS * buf_size);
		bufs = NULL;
		goto out;
	}
	sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART | (prev.sa_flags & SA_ONSTACK);
	if (sigaction(SIGBUS, &sa, &prev) < 0) {
		ret = -errno;
		munmap(bufs, NBUFS * buf_size);
		bufs = NULL;
		goto out;
	}
	if ((ret = -pthread_atfork(NULL, NULL, forget_in_child)) < 0) {
		sigaction(SIGBUS, &prev, NULL);
		munmap(bufs, NBUFS * buf_size);
		bufs = NULL;
		goto out;
	}
	installed = true;
out:
	pthread_mutex_unlock(&install_lock);
	return ret;
}
