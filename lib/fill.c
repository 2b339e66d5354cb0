/* SPDX-License-Identifier: MIT */
/*
 * Filling: what a fault or a prefetch becomes once read. A fault takes a
 * slot and a window of pages (the faulting page and, on a sequential
 * stream, the pages after it; on a random fault the source's fault-around
 * block), its source either answers at once (zero, callback) or submits
 * I/O whose completion the handler hands back here, and the result is
 * placed through the placement core (place.c) under the pager's lock held
 * shared, after checking that the pages still belong to a live, committed
 * region: decommit and release take the lock exclusively, so a fill never
 * lands in memory that was taken away. Here too: readahead, the claims and
 * statistics of a fill, waking a window that was not placed, and SIGBUS
 * for a page that cannot be filled. Layer: below the handler thread and
 * the prefetch queue, which start fills and finish them; it calls the
 * events bookkeeping, the registry, the region state, the sources (through
 * their ops) and the placement core, never the handler loop or the pager.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compat.h"
#include "upager-int.h"
#include "events.h"
#include "evict.h"
#include "fill.h"
#include "inline_queue.h"
#include "region_state.h"
#include "registry.h"

static void continue_readahead(struct upager__handler *h, upager_region_t *r);

/* ---- slots ---- */

/* The handler allocates the slots and their buffers (handler.c); a fill
 * takes one when it is planned and gives it back when it ends. */
static struct upager__fill *slot_get(struct upager__handler *h)
{
	struct upager__fill *f = h->free;

	h->free = f->next;
	h->nfree--;
	f->next = NULL;
	return f;
}

static void slot_put(struct upager__handler *h, struct upager__fill *f)
{
	f->region = NULL;
	f->next = h->free;
	h->free = f;
	h->nfree++;
}

static struct upager__fill *in_flight(struct upager__handler *h, uintptr_t addr)
{
	for (struct upager__fill *f = h->inflight; f; f = f->next)
		if (addr >= f->addr && addr < f->addr + f->len)
			return f;
	return NULL;
}

bool upager__fill_in_flight(struct upager__handler *h, uintptr_t addr)
{
	return in_flight(h, addr) != NULL;
}

/*
 * Answers the inline faults waiting for f (all but those of its faulting
 * page when keep_fault: it is asked for again). The fill has ended, so
 * their pages are placed, or were not this fill's to place: the access
 * runs again and finds what is there now, faulting again if need be (a
 * spurious answer costs a fault, never wrong data). Only the faulting
 * page of a fill that failed is the program's SIGBUS, as the threaded
 * mode's place_error makes it.
 */
static void answer_waiters(upager_t *p, struct upager__fill *f, bool keep_fault)
{
	struct upager__inline_req *q = f->waiters, *keep = NULL;

	f->waiters = NULL;
	while (q) {
		struct upager__inline_req *next = q->next;
		bool fault_page = (q->addr & ~(uintptr_t)(p->page_size - 1)) == f->fault_addr;

		if (keep_fault && fault_page) {
			q->next = keep;
			keep = q;
		} else {
			upager__inline_req_answer(q, fault_page && f->inline_failed
							     ? UPAGER__INLINE_FAIL
							     : UPAGER__INLINE_RETRY);
		}
		q = next;
	}
	f->waiters = keep;
}

/*
 * Must f wait for events that other handlers have read, and not yet handled,
 * about its pages? They may be changing the registry under it: a fault at
 * mremap's new address misses, a page's REMOVE clears its resident bit
 * after the fill placed it. Only events read by the time f is first looked
 * at here: later ones cannot keep it waiting for ever.
 */
static bool events_hold(struct upager__handler *h, struct upager__fill *f)
{
	/* A fault read after an event was noted sees the count (ev_lock). */
	if (!atomic_load_explicit(&h->pager->ev_pending, memory_order_relaxed))
		return false;
	return upager__events_concern(h, f->addr, f->len, &f->ev_bound);
}

/* ---- windows ---- */

/*
 * How many pages a fault at page `page` of r should fill, and from how far
 * before it (*back): on a sequential stream a growing window forward; on a
 * random fault the source's fault-around block, aligned, like the kernel's.
 */
static size_t window_for(upager_region_t *r, size_t page, size_t *back, bool *sequential)
{
	unsigned around, win;

	*back = 0;
	*sequential = false;
	switch (atomic_load_explicit(&r->advice, memory_order_relaxed)) {
	case UPAGER_ADV_RANDOM:
		return 1;
	case UPAGER_ADV_SEQUENTIAL:
		*sequential = true;
		return UPAGER__MAX_WINDOW;
	}
	win = atomic_load_explicit(&r->ra_win, memory_order_relaxed);
	if (page == atomic_load_explicit(&r->ra_next, memory_order_relaxed) && page != 0) {
		win = (unsigned)upager__window_grow(win);
		*sequential = true;
	} else {
		around = upager__source_around(r->src, page, r->pager->page_size);
		win = around;
		*back = page % around;
	}
	atomic_store_explicit(&r->ra_win, win, memory_order_relaxed);
	return win - *back;
}

/* May the page at addr (region offset roff) be filled by a new window? */
static bool fillable(struct upager__handler *h, const struct upager__mapping *m,
		     upager_region_t *r, uintptr_t addr, size_t roff)
{
	return addr >= m->start && addr < m->end && upager__region_committed(r, roff) &&
	       !upager__region_resident(r, roff) && !upager__fill_in_flight(h, addr);
}

/*
 * Clips a window of up to `want` pages at address addr (region offset roff)
 * to what may be filled: inside the mapping and the committed extent, and
 * up to the first page already resident or in flight. Under p->lock.
 */
size_t upager__fill_clip_window(struct upager__handler *h, const struct upager__mapping *m,
				upager_region_t *r, uintptr_t addr, size_t roff, size_t want)
{
	size_t ps = h->pager->page_size;
	size_t limit = upager__region_commit_end(r, roff) - roff;
	size_t n = 1;

	if (limit > m->end - addr)
		limit = m->end - addr;
	while (n < want && n * ps < limit && !upager__region_resident(r, roff + n * ps) &&
	       !upager__fill_in_flight(h, addr + n * ps))
		n++;
	return n;
}

/* ---- placing pages ---- */

/* place_error: no signal, the page is another fill's (upager__place_fail says 1) */
enum { PLACED_MEANWHILE = 1 };

struct sigbus_target {
	upager_t *pager;
	struct upager__fill *fill;
};

/*
 * place_error's fallback where the page cannot be poisoned: SIGBUS queued
 * to the faulting thread, then woken to retry its access. The kernel lets
 * only a process's main thread send a kernel si_code, so it arrives as
 * SI_QUEUE, with the page address in si_addr and in si_value.sival_ptr.
 */
static int queue_sigbus(void *arg, uintptr_t page)
{
	const struct sigbus_target *t = arg;
	struct upager__fill *f = t->fill;
	upager_t *p = t->pager;
	siginfo_t si;
	long ret;

	/* A signal, unlike a poisoned PTE, reaches the thread wherever it is:
	 * if another fill claimed the page (placed, or placing and then
	 * waking), the thread has or will have its data and may be running
	 * on; failing, that fill wakes it to fault again. */
	if (f->region && upager__region_resident(f->region, f->roff + (page - f->addr))) {
		upager__place_wake(p->uffd, page, p->page_size);
		return PLACED_MEANWHILE;
	}
	if (p->inline_faults) {
		/* Its thread waits for the answer (answer_waiters), and takes
		 * the fault to the program's handler itself: the kernel's
		 * siginfo, as for an inline fill's own failure. */
		f->inline_failed = true;
		return 0;
	}
	memset(&si, 0, sizeof(si));
	si.si_signo = SIGBUS;
	si.si_code = SI_QUEUE;
	si.si_addr = (void *)page; /* shares its bytes with si_pid/si_uid */
	si.si_value.sival_ptr = (void *)page;
	if (f->tid && (p->features & UPAGER_FEAT_THREAD_ID))
		ret = syscall(SYS_rt_tgsigqueueinfo, getpid(), f->tid, SIGBUS, &si);
	else
		ret = syscall(SYS_rt_sigqueueinfo, getpid(), SIGBUS, &si);
	if (ret < 0)
		upager__log(p, UPAGER_LOG_ERROR, "cannot queue SIGBUS to thread %u: %s", f->tid,
			    strerror(errno));
	upager__place_wake(p->uffd, page, p->page_size);
	return 0;
}

/*
 * The faulting thread gets SIGBUS: a poisoned PTE where the kernel has
 * UFFDIO_POISON (a real fault, si_code BUS_ADRERR and the exact address, and
 * every later access too, until decommit), a queued signal otherwise. An
 * inline pager's thread waits in its SIGBUS handler and is answered; no
 * poison there (inline.c says why).
 * Returns 0, PLACED_MEANWHILE, -EAGAIN (retry after the events) or -errno.
 */
static int place_error(upager_t *p, struct upager__fill *f)
{
	struct sigbus_target target = { .pager = p, .fill = f };

	return upager__place_fail(p->uffd, f->fault_addr, p->page_size,
				  (p->features & UPAGER_FEAT_POISON) && !p->inline_faults, queue_sigbus,
				  &target);
}

/* Did the fill claim page i of its window (see count_before)? */
static bool fill_claimed(const struct upager__fill *f, size_t i)
{
	return f->claim[i / 64] & (1ull << (i % 64));
}

/*
 * Maps [f->placed, f->len) of the fill: the runs of pages it claimed, and
 * the faulting page whoever claimed it. Read faults of zero ranges map the
 * shared zero page (no memory until written); write faults get zeroed
 * copies, which spares each page the second fault that a write to the zero
 * page would take. A page another fill claimed is left to it: that fill
 * places it or, failing, wakes its waiters (a wake per run here too costs
 * less than the copy that would fail). The faulting page is copied anyway:
 * its claim may be a bit that a REMOVE read by another handler has not
 * cleared yet, and nobody else would wake the thread. A page already there
 * (another fill won) is skipped and its waiters woken, because a failed
 * copy does not wake.
 */
static int place_range(upager_t *p, struct upager__fill *f)
{
	const size_t ps = p->page_size;
	bool zero = f->result == UPAGER__FILL_ZERO;

	while (f->placed < f->len) {
		uintptr_t dst = f->addr + f->placed;
		bool mine = fill_claimed(f, f->placed / ps);
		size_t run = ps;
		struct upager__placement pl;
		int ret;

		if (!mine && (dst != f->fault_addr || f->prefetch)) {
			while (f->placed + run < f->len && !fill_claimed(f, (f->placed + run) / ps) &&
			       (dst + run != f->fault_addr || f->prefetch))
				run += ps;
			/* A claim may also be the bit of a page a REMOVE being
			 * handled elsewhere has just dropped: a thread coalesced
			 * onto this fill must not sleep on it. Woken, it faults
			 * again and is copied as a faulting page. */
			upager__place_wake(p->uffd, dst, run);
			f->placed += run;
			continue;
		}
		while (mine && f->placed + run < f->len && fill_claimed(f, (f->placed + run) / ps))
			run += ps;
		pl = (struct upager__placement){
			.uffd = p->uffd, .dst = dst, .len = run, .page_size = ps,
			/* Placed write-protected in a tracked region: a later
			 * write unprotects it (WP_ASYNC), so "still protected"
			 * means "as the source had it". */
			.flags = f->region && f->region->wp ? UPAGER__PLACE_WP : 0,
		};
		/* Not in a region tracking written pages for write-back or
		 * eviction: the zero page cannot be placed protected, and
		 * would always look written. */
		if (zero && !f->write && (p->features & UPAGER_FEAT_ZEROPAGE) &&
		    !(f->region && (f->region->track_dirty || f->region->wp_sync)))
			pl.flags = UPAGER__PLACE_ZEROPAGE;
		else
			pl.src = (zero ? (const char *)p->zero_buf : (const char *)f->buf) + f->placed;
		ret = upager__place_range(&pl);
		f->placed += pl.done;
		f->skipped += (unsigned)pl.present;
		if (ret < 0)
			return ret;
	}
	return 0;
}

void upager__fill_decommitted(upager_region_t *r, size_t off, size_t len)
{
	uint_fast64_t n = atomic_load(&r->decommits);

	r->decommit_log[n % UPAGER__DECOMMIT_LOG].off = off;
	r->decommit_log[n % UPAGER__DECOMMIT_LOG].end = off + len;
	atomic_store(&r->decommits, n + 1);
}

/* Was a part of f's range decommitted since f was planned? Past the log's
 * length, taken as yes: its faulting threads fault again, nothing worse. */
static bool decommitted_since(const struct upager__fill *f)
{
	const upager_region_t *r = f->region;
	uint_fast64_t n = atomic_load(&r->decommits);

	if (n - f->decommits > UPAGER__DECOMMIT_LOG)
		return true;
	for (uint_fast64_t i = f->decommits; i < n; i++)
		if (r->decommit_log[i % UPAGER__DECOMMIT_LOG].off < f->roff + f->len &&
		    r->decommit_log[i % UPAGER__DECOMMIT_LOG].end > f->roff)
			return true;
	return false;
}

/* Is the fill's range still where and what it was when the fault came?
 * Committed now is not enough: decommitted and committed again since, the
 * range holds the source's bytes of now, which the fill may not have read. */
static bool still_valid(upager_t *p, const struct upager__fill *f)
{
	const struct upager__mapping *m = upager__lookup(p, f->addr);

	if (!f->region)
		return m == NULL; /* unknown address: still nobody's */
	if (!(m && m->region == f->region && m->roff + (f->addr - m->start) == f->roff &&
	      f->addr + f->len <= m->end && !f->region->dead && !decommitted_since(f) &&
	      upager__region_committed(f->region, f->roff) &&
	      upager__region_commit_end(f->region, f->roff) >= f->roff + f->len))
		return false;
	/* A writable source's page evicted since the fill read it: what it
	 * read may be older than what was written back; and the faulting page
	 * being written back or dropped is not to be placed under the evictor. */
	return !f->region->wb ||
	       (atomic_load(&f->region->evict_gen) == f->evict_gen &&
		!upager__budget_in_writeback(f->region, f->fault_addr - f->addr + f->roff) &&
		!upager__budget_dropping(f->region, f->fault_addr - f->addr + f->roff));
}

/*
 * Fill counts are taken before the pages are placed, because placing wakes
 * the faulting thread, which may read the statistics at once; they are
 * taken back if placing fails. Each page counts once, for the fill that
 * claims it by setting its resident bit, whoever places it: a window read
 * by one handler while another placed its pages (a handler coalesces only
 * its own faults) counts nothing and copies only its faulting page. Counting
 * every page of a window and taking back those found placed showed, to a
 * reader of the statistics, up to 256 pages too many for as long as the
 * copies took (check_threads: pages_filled 2304 for 2048 pages); see
 * count_before for the order within a claim.
 * Latency is recorded after, so that it includes the copy: it alone may lag.
 */
static void count_pages(upager_t *p, struct upager__fill *f, int64_t pages)
{
	upager_region_t *r = f->region;
	uint64_t n = (uint64_t)pages, bytes = (uint64_t)(pages * (int64_t)p->page_size);
	bool zero = f->result == UPAGER__FILL_ZERO;

	UPAGER__ADD(&p->st, pages_filled, n);
	UPAGER__ADD(&p->st, bytes_filled, bytes);
	UPAGER__ADD(&p->st, pages_zero, zero ? n : 0);
	UPAGER__ADD(&p->st, pages_prefetched, f->prefetch ? n : 0);
	if (!r)
		return;
	UPAGER__ADD(&r->st, pages_filled, n);
	UPAGER__ADD(&r->st, bytes_filled, bytes);
	UPAGER__ADD(&r->st, pages_zero, zero ? n : 0);
	UPAGER__ADD(&r->st, pages_prefetched, f->prefetch ? n : 0);
}

/*
 * Claims and counts the pages about to be placed, [f->placed, f->len): those
 * whose resident bit this fill sets. A bit already set is another fill's
 * claim, or a page already there. The pages are counted before their bits
 * are set, because a set bit lets another fill copy that page as its
 * faulting page at once, and its thread must find the page counted
 * (counting after setting the bits let check_threads see pages_filled 2044
 * with 2048 pages resident, once in some hundred runs). Only pages whose
 * bit is still clear are counted, so a count taken back (a claim lost to a
 * concurrent fill between the look and the claim) is rare and brief.
 */
static void count_before(upager_t *p, struct upager__fill *f)
{
	int64_t counted = 0, taken = 0;

	memset(f->claim, 0, sizeof(f->claim));
	if (f->result < 0)
		return;
	for (size_t off = f->placed; off < f->len; off += p->page_size)
		if (!f->region || !upager__region_resident(f->region, f->roff + off))
			counted++;
	count_pages(p, f, counted);
	for (size_t off = f->placed; off < f->len; off += p->page_size) {
		size_t i = off / p->page_size;

		/* A page being dropped (evict.c) is left to refault after. */
		if (f->region && (upager__budget_dropping(f->region, f->roff + off) ||
				  !upager__region_set_resident(f->region, f->roff + off)))
			continue;
		f->claim[i / 64] |= 1ull << (i % 64);
		taken++;
		if (p->budget && f->region)
			upager__budget_filled(p, f->region, f->roff + off);
	}
	if (taken != counted)
		count_pages(p, f, taken - counted);
}

static void count_after(upager_t *p, struct upager__fill *f, int ret)
{
	upager_region_t *r = f->region;

	if (f->result >= 0 && ret != 0) {
		/* Give back the claims not placed; an EAGAIN retry claims again. */
		int64_t n = 0;

		for (size_t off = f->placed; off < f->len; off += p->page_size) {
			if (!fill_claimed(f, off / p->page_size))
				continue;
			n++;
			if (r)
				upager__region_clear_resident(r, f->roff + off, p->page_size);
		}
		count_pages(p, f, -n);
	}
	if (f->skipped) {
		/* Pages another fill placed first. Those we claimed stay counted
		 * here: the one who placed them copied them only as its faulting
		 * page, which it does not count when another fill claimed it.
		 * A fill of an address in no region claims nothing: what it
		 * found there was counted by whoever placed it (a fault read
		 * after its region's release, on a page another handler had
		 * placed: check_threads saw pages_filled 2055 for 2048). */
		if (!r)
			count_pages(p, f, -(int64_t)f->skipped);
		UPAGER__ADD(&p->st, coalesced, 1);
		if (r)
			UPAGER__ADD(&r->st, coalesced, 1);
		f->skipped = 0;
	}
	if (f->result < 0 && ret == 0) {
		UPAGER__ADD(&p->st, fill_errors, 1);
		if (r)
			UPAGER__ADD(&r->st, fill_errors, 1);
	}
	if (ret != -EAGAIN && !f->prefetch) {
		uint64_t ns = upager__now_ns() - f->t0;

		upager__lat_record(&p->st, ns);
		if (r)
			upager__lat_record(&r->st, ns);
	}
}

/*
 * Wakes every thread waiting on a page of the fill's window, except the
 * faulting page when keep_fault (it is being asked for again). A fault on a
 * page in flight is coalesced: dropped, left to the fill's UFFDIO_COPY to
 * wake. A fill that ends without placing its pages must wake them itself,
 * or its coalesced waiters sleep for ever; woken, they fault again and get
 * fills of their own. Only on errors and invalidated fills: a spurious wake
 * costs a fault again, never wrong data.
 */
static void wake_window(upager_t *p, const struct upager__fill *f, bool keep_fault)
{
	uintptr_t end = f->addr + f->len;

	if (!keep_fault || f->fault_addr < f->addr || f->fault_addr >= end) {
		upager__place_wake(p->uffd, f->addr, f->len);
		return;
	}
	if (f->fault_addr > f->addr)
		upager__place_wake(p->uffd, f->addr, f->fault_addr - f->addr);
	if (f->fault_addr + p->page_size < end)
		upager__place_wake(p->uffd, f->fault_addr + p->page_size,
				  end - f->fault_addr - p->page_size);
}

static void fill_done(struct upager__handler *h, struct upager__fill *f)
{
	answer_waiters(h->pager, f, false);
	if (f->region)
		upager__region_unref(f->region);
	slot_put(h, f);
}

/*
 * Maps the result of a fill. Returns false if it must be retried (EAGAIN:
 * the program's munmap/mremap/madvise is in progress and its event must be
 * read first).
 */
static bool fill_place(struct upager__handler *h, struct upager__fill *f)
{
	upager_t *p = h->pager;
	int ret;

	if (events_hold(h, f))
		return false;
	if (f->ev_deferred) {
		/* Its events are handled: faulting again, the thread finds the
		 * registry as the program left it. */
		upager__place_wake(p->uffd, f->fault_addr, p->page_size);
		fill_done(h, f);
		return true;
	}
	pthread_rwlock_rdlock(&p->lock);
	if (!still_valid(p, f)) {
		pthread_rwlock_unlock(&p->lock);
		if (f->result < 0)
			upager__log(p, UPAGER_LOG_DEBUG,
				    "fill of region offset %#zx failed (%s), but the range was "
				    "decommitted, released or moved meanwhile: nothing placed",
				    f->roff, strerror(-f->result));
		/* Let the threads retry: they now find the memory gone or changed. */
		wake_window(p, f, false);
		fill_done(h, f);
		return true;
	}
	count_before(p, f);
	if (f->result >= 0)
		ret = place_range(p, f);
	else
		ret = place_error(p, f);
	count_after(p, f, ret);
	pthread_rwlock_unlock(&p->lock);

	if (ret == -EAGAIN)
		return false;
	if (ret == 0 && f->result < 0)
		upager__log(p, UPAGER_LOG_WARN,
			    "fill of region offset %#zx failed (%s): access gets SIGBUS", f->roff,
			    strerror(-f->result));
	if (ret == PLACED_MEANWHILE)
		upager__log(p, UPAGER_LOG_DEBUG,
			    "fill of region offset %#zx failed (%s), but another fill has its page: "
			    "no SIGBUS", f->roff, strerror(-f->result));
	if (ret == 0 && f->readahead && f->region) {
		upager_region_t *r = f->region;

		/* Our own reference: once the fill's is gone, a release may finish. */
		upager__region_ref(r);
		fill_done(h, f);
		continue_readahead(h, r);
		upager__region_unref(r);
		return true;
	}
	if (ret < 0) {
		/* ENOENT/EFAULT: the VMA went away under us; ESRCH: the mm is exiting. */
		upager__log(p, UPAGER_LOG_DEBUG, "placing %#lx failed: %s",
			    (unsigned long)f->addr, strerror(-ret));
		wake_window(p, f, false);
	}
	fill_done(h, f);
	return true;
}

static void start_fill(struct upager__handler *h, struct upager__fill *f);

void upager__fill_finish(struct upager__handler *h, struct upager__fill *f, int result)
{
	f->result = result;
	if (result < 0 && f->region && atomic_load(&f->region->dead)) {
		/* Released (a cancelled read, most likely): ask nothing more of
		 * the source, whose next read nobody would cancel; placing finds
		 * the region gone and wakes the window. */
	} else if (result < 0) {
		if (f->prefetch) { /* nobody asked: nobody gets a SIGBUS */
			wake_window(h->pager, f, false);
			fill_done(h, f);
			return;
		}
		if (f->len > h->pager->page_size) {
			/* Ask again for the faulting page alone: the error may be
			 * in a neighbour the window only guessed at. Threads
			 * waiting on the others fault again, each for its own. */
			wake_window(h->pager, f, true);
			answer_waiters(h->pager, f, true);
			f->roff += f->fault_addr - f->addr;
			f->addr = f->fault_addr;
			f->len = h->pager->page_size;
			start_fill(h, f);
			return;
		}
	}
	if (!fill_place(h, f)) {
		f->next = h->retry;
		h->retry = f;
		h->uffd_ready = true; /* read the pending event that caused EAGAIN */
	}
}

/* Hands a prepared fill to its source (outside the lock: callbacks may be slow). */
static void start_fill(struct upager__handler *h, struct upager__fill *f)
{
	upager_region_t *r = f->region;
	int ret;

	f->done = f->placed = f->skipped = 0;
	/*
	 * A registered address in no region: the part of a region that mremap
	 * grew, or one being released. Anonymous memory reads zero there; do
	 * what the kernel would.
	 */
	if (r && atomic_load(&r->dead))
		ret = -ECANCELED; /* released since it was planned: no more reads */
	else
		ret = r ? r->src->ops->fill(r->src, f, &h->ring) : UPAGER__FILL_ZERO;
	if (ret == UPAGER__FILL_PENDING) {
		f->next = h->inflight;
		h->inflight = f;
		return;
	}
	upager__fill_finish(h, f, ret);
}

struct upager__fill *upager__fill_new(struct upager__handler *h, upager_region_t *r,
				      uintptr_t addr, size_t roff, size_t pages, bool prefetch)
{
	struct upager__fill *f = slot_get(h);

	f->region = r;
	f->addr = f->fault_addr = addr;
	f->roff = roff;
	f->len = pages * h->pager->page_size;
	f->prefetch = prefetch;
	f->readahead = false;
	f->sequential = prefetch;
	f->write = false;
	f->tid = 0;
	f->ev_bound = 0;
	f->ev_deferred = false;
	f->waiters = NULL;
	f->inline_failed = false;
	atomic_store(&f->fault_joined, false);
	/* Under pager->lock, as the commit check before it: a decommit after
	 * that check is counted after this read. */
	f->decommits = r ? atomic_load(&r->decommits) : 0;
	f->evict_gen = r ? atomic_load(&r->evict_gen) : 0;
	f->t0 = upager__now_ns();
	if (r)
		upager__region_ref(r);
	return f;
}

/*
 * Queues windows after `roff` to be read before the stream gets there.
 * Under p->lock; returns how many fills it prepared in out[].
 */
static size_t plan_readahead(struct upager__handler *h, const struct upager__mapping *m,
			     upager_region_t *r, size_t roff, unsigned depth,
			     struct upager__fill **out)
{
	size_t ps = h->pager->page_size, n = 0;

	for (unsigned d = 0; d < depth && h->nfree > UPAGER__FAULT_RESERVE &&
			     upager__budget_room(h->pager, (d + 1) * UPAGER__MAX_WINDOW); d++) {
		uintptr_t addr = m->start + (roff - m->roff);
		size_t pages;

		if (addr >= m->end || !upager__region_committed(r, roff) ||
		    upager__region_resident(r, roff) || upager__fill_in_flight(h, addr))
			break;
		pages = upager__fill_clip_window(h, m, r, addr, roff, UPAGER__MAX_WINDOW);
		out[n] = upager__fill_new(h, r, addr, roff, pages, true);
		out[n++]->readahead = true;
		roff += pages * ps;
	}
	atomic_store_explicit(&r->ra_next, roff / ps, memory_order_relaxed);
	return n;
}

void upager__fill_start_all(struct upager__handler *h, struct upager__fill **fills, size_t n)
{
	for (size_t i = 0; i < n; i++)
		start_fill(h, fills[i]);
}

/*
 * A readahead window has landed: read the next, as long as the stream's
 * readahead is less than UPAGER__RA_AHEAD windows past its last fault. The
 * reader then finds its pages placed without faulting, instead of stalling
 * on a window every few.
 */
static void continue_readahead(struct upager__handler *h, upager_region_t *r)
{
	upager_t *p = h->pager;
	struct upager__fill *ra[1];
	size_t next, n = 0;
	const struct upager__mapping *m;

	if (h->stopping || atomic_load(&r->dead))
		return;
	next = atomic_load_explicit(&r->ra_next, memory_order_relaxed);
	if (next >= atomic_load_explicit(&r->ra_fault, memory_order_relaxed) +
			    (size_t)UPAGER__RA_AHEAD * UPAGER__MAX_WINDOW)
		return;
	pthread_rwlock_rdlock(&p->lock);
	m = upager__lookup(p, r->base + next * p->page_size);
	if (m && m->region == r && !r->dead && next * p->page_size < r->size &&
	    m->roff + (r->base + next * p->page_size - m->start) == next * p->page_size)
		n = plan_readahead(h, m, r, next * p->page_size, 1, ra);
	pthread_rwlock_unlock(&p->lock);
	upager__fill_start_all(h, ra, n);
}

/*
 * Another handler has read an event about addr and not handled it yet: the
 * registry may be about to change there (mremap moved a region to addr).
 * The fault waits on the retry list; the thread is woken to fault again once
 * the event is handled. The count alone (ev_pending) says "maybe": this
 * message was read under ev_lock after any event whose call has returned.
 */
static bool defer_fault(struct upager__handler *h, uintptr_t addr, struct upager__inline_req *q)
{
	upager_t *p = h->pager;
	struct upager__fill *f;
	uint64_t bound = 0;

	if (!upager__events_concern(h, addr, p->page_size, &bound))
		return false;
	f = upager__fill_new(h, NULL, addr, 0, 1, false);
	f->ev_bound = bound;
	f->ev_deferred = true;
	f->waiters = q;
	f->next = h->retry;
	h->retry = f;
	return true;
}

/*
 * A fault at page addr: plans its window (and readahead) and starts it. q:
 * an inline fault's waiting thread (inline_queue.c), answered when the
 * fill it joins ends, or at once when there is nothing to fill.
 */
static void fault(struct upager__handler *h, uintptr_t addr, bool write, uint32_t tid,
		  struct upager__inline_req *q)
{
	upager_t *p = h->pager;
	struct upager__fill *f, *ra[UPAGER__RA_DEPTH];
	const struct upager__mapping *m;
	upager_region_t *r = NULL;
	size_t roff = 0, pages = 1, nra = 0, back = 0;
	uintptr_t start = addr;
	bool sequential = false;

	h->last_fault_ns = upager__now_ns();
	if (atomic_load_explicit(&p->ev_pending, memory_order_relaxed) && defer_fault(h, addr, q))
		return;
	UPAGER__ADD(&p->st, faults, 1);
	UPAGER__ADD(&p->st, read_faults, !write);
	UPAGER__ADD(&p->st, write_faults, write);

	for (unsigned again = 0;; again++) {
		pthread_rwlock_rdlock(&p->lock);
		m = upager__lookup(p, addr);
		if (!m || !m->region->wb || again == 8)
			break;
		r = m->region;
		roff = m->roff + (addr - m->start);
		if (!upager__budget_in_writeback(r, roff) && (again || !p->budget))
			break;
		/* Being written back (the fill would read what is older), or
		 * over the budget: wait for the evictor, a bounded while. */
		upager__region_ref(r);
		pthread_rwlock_unlock(&p->lock);
		upager__budget_fault_wait(p, r, roff);
		upager__region_unref(r);
	}
	r = NULL;
	roff = 0;
	if (m) {
		r = m->region;
		roff = m->roff + (addr - m->start);
		UPAGER__ADD(&r->st, faults, 1);
		UPAGER__ADD(&r->st, read_faults, !write);
		UPAGER__ADD(&r->st, write_faults, write);
		if (r->dead || !upager__region_committed(r, roff)) {
			/* Decommitted after the access: on retry it meets PROT_NONE. */
			pthread_rwlock_unlock(&p->lock);
			upager__place_wake(p->uffd, addr, p->page_size);
			if (q)
				upager__inline_req_answer(q, UPAGER__INLINE_RETRY);
			return;
		}
		if ((f = in_flight(h, addr))) {
			pthread_rwlock_unlock(&p->lock);
			atomic_store(&f->fault_joined, true);
			UPAGER__ADD(&p->st, coalesced, 1);
			UPAGER__ADD(&r->st, coalesced, 1);
			if (q) { /* answered when that fill ends */
				q->next = f->waiters;
				f->waiters = q;
			}
			return; /* its UFFDIO_COPY wakes every thread waiting on the page */
		}
		pages = window_for(r, roff / p->page_size, &back, &sequential);
		/* Walk back over the fault-around block while its pages may be filled. */
		while (back && fillable(h, m, r, start - p->page_size, roff - p->page_size)) {
			start -= p->page_size;
			roff -= p->page_size;
			pages++;
			back--;
		}
		pages = upager__fill_clip_window(h, m, r, start, roff, pages);
		atomic_store_explicit(&r->ra_next, roff / p->page_size + pages,
				      memory_order_relaxed);
		atomic_store_explicit(&r->ra_fault, roff / p->page_size, memory_order_relaxed);
	} else if (q) {
		/* Out of the registry since the thread found it in the inline
		 * table (released, unmapped, moved): retried, the access finds
		 * what is there now. Not the zero fill below, for a range that
		 * may be another pager's region by now. */
		pthread_rwlock_unlock(&p->lock);
		upager__inline_req_answer(q, UPAGER__INLINE_RETRY);
		return;
	}
	f = upager__fill_new(h, r, start, roff, pages, false);
	f->fault_addr = addr;
	f->sequential = sequential;
	f->write = write;
	f->tid = tid;
	f->waiters = q;
	if (r && r->src->ops->readahead && pages == UPAGER__MAX_WINDOW)
		nra = plan_readahead(h, m, r, roff + pages * p->page_size, UPAGER__RA_DEPTH, ra);
	pthread_rwlock_unlock(&p->lock);

	start_fill(h, f);
	upager__fill_start_all(h, ra, nra);
}

void upager__fill_fault(struct upager__handler *h, const struct uffd_msg *msg)
{
	upager_t *p = h->pager;

	fault(h, (uintptr_t)msg->arg.pagefault.address & ~(uintptr_t)(p->page_size - 1),
	      msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE,
	      (p->features & UPAGER_FEAT_THREAD_ID) ? msg->arg.pagefault.feat.ptid : 0, NULL);
}

void upager__fill_fault_inline(struct upager__handler *h, struct upager__inline_req *q)
{
	fault(h, q->addr & ~(uintptr_t)(h->pager->page_size - 1), q->write, 0, q);
}

void upager__fill_retry_all(struct upager__handler *h)
{
	struct upager__fill *list = h->retry;

	h->retry = NULL;
	while (list) {
		struct upager__fill *f = list;

		list = f->next;
		f->next = NULL;
		if (!fill_place(h, f)) {
			f->next = h->retry;
			h->retry = f;
		}
	}
}
