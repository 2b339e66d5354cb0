/* SPDX-License-Identifier: MIT */
/*
 * Paging out: a pager's memory budget and its evictor thread, and writing
 * written pages back to a writable source (eviction, upager_sync, release).
 *
 * Eviction never loses a write. A page is taken away with UFFDIO_MOVE into
 * a scratch page of ours: a program's write lands before the move (in the
 * page moved) or after it (in a missing page, which faults and waits). Under
 * the pager's lock held exclusively (no fill places meanwhile) and ev_lock
 * (no event is read meanwhile, so no madvise(DONTNEED) zaps a page under us
 * and the registry is what the kernel has), a candidate is:
 *   1. copied (process_vm_readv: a page munmapped meanwhile is EFAULT, not
 *      our SIGSEGV), then asked whether it was written (PAGEMAP_SCAN's
 *      PAGE_IS_WRITTEN: fills of tracked regions place pages
 *      write-protected, UFFD_FEATURE_WP_ASYNC unprotects on a write);
 *   2. moved out; a page not written at 1 and equal to its copy is clean
 *      (a write between 1 and the move changed it): dropped;
 *   3. otherwise dirty: a read-only source's page is moved back (it stays,
 *      pinned: dropping it would lose the program's write), a writable
 *      source's keeps its resident bit and gets its write-back bit, the
 *      locks are let go, the scratch page is written to the source, and
 *      under the locks again the page is dropped (or, on a write error,
 *      moved back, still dirty). A fault on it meanwhile waits (fill.c);
 *      fills read before it are stale (evict_gen) and refault.
 * Candidates adjacent in a region and in the queue's order go as a run: one
 * copy, one PAGEMAP_SCAN and one UFFDIO_MOVE for the run (a page moved alone
 * costs a TLB shootdown), then the decisions above a page each. A move that
 * stops short moved a prefix: those pages are decided, the others stay
 * resident and queued. The moved pages are read back (process_vm_readv
 * again) to be compared, not touched through the scratch mapping.
 * No madvise of ours reaches the userfaultfd: the scratch pages are emptied
 * unregistered, so the evictor never waits for a handler.
 *
 * Without UFFDIO_MOVE (Linux < 6.8: Debian 12's 6.1 has neither it nor
 * WP_ASYNC nor PAGEMAP_SCAN), with what 6.1 has: write-protect faults as
 * messages, and MADV_DONTNEED. Regions are registered MISSING|WP and fills
 * place pages protected (wp_sync); a page's first write is a fault the
 * handler answers by setting its written bit and unprotecting it, under
 * wp_lock. A write is never lost because a page is only dropped with its
 * bit clear and its dropping bit set, both under wp_lock: from there its
 * writes' answers are put off (the handler asks again each loop, the thread
 * waits), no fill places it, and the write lands, after the drop, in the
 * page refilled from the source, which holds the page's bytes (clean, or
 * written back: protect, then clear the bit, copy, write, and drop only if
 * the bit is still clear). No deadlock because the madvise, which waits for
 * a handler to read its REMOVE event, runs with no lock held (not ev_lock,
 * p->lock or wp_lock, which handlers take), and the handlers never block on
 * a page being dropped; then the evictor waits (bounded) for its REMOVE
 * events to be handled before it clears the dropping bits, so that none
 * clears the resident bit of a page filled again. Why not unregister around
 * the madvise, as for the scratch pages: a fault meanwhile would be the
 * kernel's zero page, wrong data. Written pages of read-only sources, and
 * pages of a region the kernel refused to register WP, stay. Without
 * write-protect faults nothing tells a clean page from one written a moment
 * ago, and with WP_ASYNC on they never reach us: no budget (-ENOTSUP).
 *
 * Layer: below the fills (which queue pages, wait for write-backs and ask
 * for room) and the public region calls (release writes back); it calls the
 * registry, the region state, the queue, pagemap and the placement core.
 */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "env.h"
#include "upager-int.h"
#include "evict.h"
#include "evict_queue.h"
#include "events.h"
#include "region_state.h"
#include "registry.h"
#include "thread.h"

/* Pages a round takes (scratch pages; the copies stay resident): runs of
 * up to this many adjacent pages move in one UFFDIO_MOVE, a TLB flush each
 * (50 us a page moved alone, 0.8 us in a run of 256, 0.7 in 512, on 2
 * vCPUs), and a round empties its scratch pages: one more flush. */
#define BATCH 512
/* Pages of the buffer moved pages are read back into to be compared. */
#define AFTER 16

struct upager__budget {
	upager_t *p;
	uint64_t pages, high, low; /* the budget and its marks, in pages */
	unsigned policy;
	struct upager__evq *q;
	struct upager__evq *first; /* pages of regions advised UPAGER_ADV_EVICT */
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;    /* the evictor: kicked, or stop */
	pthread_cond_t wb_cond; /* write-backs done, room made */
	bool stop, kick;
	atomic_bool stalled;    /* the last round freed nothing: faults do not wait */
	bool warned_pinned;
	/* Without UFFDIO_MOVE (see "Without UFFDIO_MOVE" above): a region's
	 * written bits, write-protection and dropping bits change together
	 * under wp_lock (the handlers' write-protect faults, the evictor,
	 * upager_sync), never held across a madvise or a write-back. */
	bool nomove;
	pthread_mutex_t wp_lock;
	char *scratch, *copy;   /* BATCH pages each */
	char *after;            /* AFTER pages, past the copies */
	int pm_fd;
	pid_t pid;              /* ours, for process_vm_readv (getpid is a syscall) */
};

struct cand {
	struct upager__evq_entry e;
	upager_region_t *r; /* a write-back's (referenced) */
	size_t off;
	uintptr_t addr;
	bool written;
	bool chance; /* CLOCK's second chance given (without UFFDIO_MOVE) */
	int state; /* what the locked phase made of it */
	int err;
};

/* C_MOVE: valid, to be moved (in the locked phase only). C_GO: to be
 * dropped with MADV_DONTNEED (without UFFDIO_MOVE), its dropping bit set. */
enum { C_DROP, C_REQUEUE, C_EVICTED, C_WRITEBACK, C_MOVE, C_GO };

static uint64_t resident(const upager_t *p)
{
	int64_t n = atomic_load_explicit(&p->st.pages_resident, memory_order_relaxed);

	return n > 0 ? (uint64_t)n : 0;
}

static void bit_set(atomic_uint_fast64_t *bits, size_t page, bool on)
{
	uint64_t bit = 1ull << (page % 64);

	if (on)
		atomic_fetch_or(&bits[page / 64], bit);
	else
		atomic_fetch_and(&bits[page / 64], ~bit);
}

static bool bit_get(const atomic_uint_fast64_t *bits, size_t page)
{
	return bits && (atomic_load(&bits[page / 64]) & (1ull << (page % 64)));
}

bool upager__budget_in_writeback(const upager_region_t *r, size_t off)
{
	return bit_get(r->wb, off / r->pager->page_size);
}

bool upager__budget_dropping(const upager_region_t *r, size_t off)
{
	return bit_get(r->dropping, off / r->pager->page_size);
}

/* ---- options ---- */

static unsigned env_pct(const char *name, unsigned dflt)
{
	const char *s = getenv(name);
	char *end;
	unsigned long v;

	if (!s || !*s)
		return dflt;
	v = strtoul(s, &end, 10);
	return *end || v == 0 || v > 100 ? 101 : (unsigned)v; /* 101: refused */
}

/* ---- the evictor ---- */

/* Is r one of p's live regions? Under p->lock (a queued entry may name a
 * region released since). */
static bool region_live(upager_t *p, const upager_region_t *r)
{
	for (size_t i = 0; i < p->nregions; i++)
		if (p->regions[i] == r)
			return !r->dead;
	return false;
}

/* Copies [src, src + len) of our own memory: the bytes copied, a prefix
 * (a page munmapped meanwhile ends it: EFAULT, not our SIGSEGV). */
static size_t copy_pages(const struct upager__budget *b, void *dst, uintptr_t src, size_t len)
{
	struct iovec local = { dst, len }, remote = { (void *)src, len };
	ssize_t n = process_vm_readv(b->pid, &local, 1, &remote, 1, 0);

	return n > 0 ? (size_t)n : 0;
}

static void count_evicted(upager_t *p, upager_region_t *r, size_t off)
{
	upager__region_clear_resident(r, off, p->page_size);
	if (r->shadow)
		bit_set(r->shadow, off / p->page_size, true);
	UPAGER__ADD(&p->st, pages_evicted, 1);
	UPAGER__ADD(&r->st, pages_evicted, 1);
}

static void count_written(upager_t *p, upager_region_t *r, size_t pages, int err)
{
	if (err) {
		UPAGER__ADD(&p->st, write_errors, 1);
		UPAGER__ADD(&r->st, write_errors, 1);
		int none = 0;
		atomic_compare_exchange_strong(&r->wb_err, &none, err);
		return;
	}
	UPAGER__ADD(&p->st, pages_written, pages);
	UPAGER__ADD(&r->st, pages_written, pages);
	UPAGER__ADD(&p->st, bytes_written, pages * p->page_size);
	UPAGER__ADD(&r->st, bytes_written, pages * p->page_size);
}

/* Under both locks: is candidate c still a resident page of a live region,
 * where the registry says (its address in c->addr)? */
static bool cand_valid(upager_t *p, struct cand *c)
{
	upager_region_t *r = c->e.region;
	const struct upager__mapping *m;

	c->off = c->e.page * p->page_size;
	if (!region_live(p, r) || c->off >= r->size || !upager__region_committed(r, c->off) ||
	    !upager__region_resident(r, c->off) || upager__budget_in_writeback(r, c->off))
		return false;
	c->addr = r->base + c->off;
	m = upager__lookup(p, c->addr);
	/* Moved by the program's mremap: kept (see upager_create(3)). */
	return m && m->region == r && m->roff + (c->addr - m->start) == c->off;
}

/* Under both locks: moved page c (scratch page i); same: as its copy. */
static int evict_moved(struct upager__budget *b, struct cand *c, size_t i, bool same)
{
	upager_t *p = b->p;
	size_t ps = p->page_size;
	upager_region_t *r = c->e.region;
	char *s = b->scratch + i * ps;
	int ret;

	if (!c->written && same) {
		count_evicted(p, r, c->off);
		return C_EVICTED;
	}
	if (r->src->writable) {
		bit_set(r->wb, c->off / ps, true);
		atomic_fetch_add(&r->evict_gen, 1);
		upager__region_ref(r);
		c->r = r;
		return C_WRITEBACK;
	}
	/* Written between the look and the move: it goes back, as it is. */
	ret = upager__place_move(p->uffd, c->addr, (uintptr_t)s, ps);
	if (ret < 0)
		upager__log(p, UPAGER_LOG_ERROR, "evicting %#lx: a write raced it and the page "
			    "could not be put back (%s): that write is lost",
			    (unsigned long)c->addr, strerror(-ret));
	return C_REQUEUE;
}

/*
 * Under both locks: candidates c[i, i + n), valid, of one region and
 * adjacent there, their scratch pages adjacent too: one copy, one
 * PAGEMAP_SCAN and one UFFDIO_MOVE (a TLB flush each, the cost that counts)
 * for all of them, then a decision a page. 0, or -EAGAIN: an event is on
 * its way (what was not moved is requeued by the caller).
 */
static int evict_run(struct upager__budget *b, struct cand *c, size_t i, size_t n)
{
	upager_t *p = b->p;
	size_t ps = p->page_size, copied;
	upager_region_t *r = c[i].e.region;
	bool written[BATCH];

	copied = copy_pages(b, b->copy + i * ps, c[i].addr, n * ps) / ps;
	if (!copied || upager__pagemap_written(b->pm_fd, c[i].addr, copied, ps, written, false) < 0)
		copied = 0; /* not known: written */
	for (size_t k = 0; k < n; k++) {
		struct cand *ck = &c[i + k];

		ck->written = k >= copied || written[k];
		ck->state = C_MOVE;
		if (ck->written && !r->src->writable)
			ck->state = C_REQUEUE; /* only a writable source can take the write */
		else if (ck->written && b->policy == UPAGER_EVICT_CLOCK && !ck->e.dirty_seen) {
			ck->e.dirty_seen = true; /* CLOCK: written, in use: a second chance */
			ck->state = C_REQUEUE;
		}
	}
	for (size_t k = i; k < i + n;) {
		size_t len = 0;
		long moved;

		if (c[k].state != C_MOVE) {
			k++;
			continue;
		}
		while (k + len < i + n && c[k + len].state == C_MOVE)
			len++;
		moved = upager__place_move_some(p->uffd, (uintptr_t)(b->scratch + k * ps),
						c[k].addr, len * ps);
		if (moved == -EAGAIN)
			return -EAGAIN;
		if (moved < 0) {
			upager__log(p, UPAGER_LOG_DEBUG, "evicting %#lx: %s",
				    (unsigned long)c[k].addr, strerror((int)-moved));
			c[k++].state = C_DROP;
			continue;
		}
		/* Short: the pages past it were not moved and are tried again
		 * (the next call tells why if it is not progress). */
		for (size_t end = k + (size_t)moved / ps; k < end;) {
			size_t m = end - k < AFTER ? end - k : AFTER, got;

			/* Read back through the kernel, not compared in place:
			 * a first touch of a page just mapped (here, a guest's
			 * shadow page table) cost more than the copy. */
			got = copy_pages(b, b->after, (uintptr_t)(b->scratch + k * ps), m * ps) / ps;
			for (size_t j = 0; j < m; j++, k++)
				c[k].state = evict_moved(b, &c[k], k, j < got &&
					!memcmp(b->after + j * ps, b->copy + k * ps, ps));
		}
	}
	return 0;
}

/* Under both locks: the round's candidates, a run of adjacent pages at a
 * time. Returns pages evicted, or -EAGAIN (all not done are requeued). */
static long evict_locked(struct upager__budget *b, struct cand *c, size_t n, size_t *nwb)
{
	upager_t *p = b->p;
	size_t ps = p->page_size;
	long evicted = 0;
	int ret = 0;

	for (size_t i = 0; i < n;) {
		size_t run = 1;

		/* Checked just before its run, not all first: a page queued
		 * twice is gone (evicted, or being written back) by its second
		 * turn, and copying a missing page would wait for a fill that
		 * waits for our lock. */
		if (!cand_valid(p, &c[i])) {
			c[i++].state = C_DROP;
			continue;
		}
		while (i + run < n && c[i + run].e.region == c[i].e.region &&
		       c[i + run].e.page == c[i].e.page + run && cand_valid(p, &c[i + run]) &&
		       c[i + run].addr == c[i].addr + run * ps)
			run++;
		if (atomic_load(&p->ev_pending) ||
		    (ret = evict_run(b, c, i, run)) == -EAGAIN) {
			for (size_t k = i; k < n; k++)
				if (c[k].state == C_MOVE || k >= i + run)
					c[k].state = C_REQUEUE;
			ret = -EAGAIN;
			break;
		}
		i += run;
	}
	for (size_t i = 0; i < n; i++) {
		evicted += c[i].state == C_EVICTED;
		*nwb += c[i].state == C_WRITEBACK;
	}
	return ret < 0 && !evicted ? ret : evicted;
}

/* Empties the scratch pages unregistered: no REMOVE event, no wait. */
static void scratch_empty(struct upager__budget *b)
{
	upager_t *p = b->p;
	size_t len = BATCH * p->page_size;

	upager__uffd_unregister(p->uffd, (uintptr_t)b->scratch, len);
	madvise(b->scratch, len, MADV_DONTNEED);
	if (upager__uffd_register(p->uffd, (uintptr_t)b->scratch, len, NULL) < 0)
		upager__log(p, UPAGER_LOG_ERROR, "evictor: cannot register its scratch pages");
}

/* Writes candidates c[i, i + n) back, a write a run of adjacent pages;
 * candidate i's bytes are page i of buf. */
static void write_back(struct upager__budget *b, struct cand *c, size_t n, const char *buf)
{
	upager_t *p = b->p;
	size_t ps = p->page_size;

	for (size_t i = 0; i < n;) {
		size_t run = 1;
		int err;

		if (c[i].state != C_WRITEBACK) {
			i++;
			continue;
		}
		while (i + run < n && c[i + run].state == C_WRITEBACK && c[i + run].r == c[i].r &&
		       c[i + run].off == c[i].off + run * ps)
			run++;
		err = c[i].r->src->ops->write(c[i].r->src, c[i].off, buf + i * ps, run * ps);
		if (err < 0)
			upager__log(p, UPAGER_LOG_ERROR, "write-back of region offset %#zx "
				    "(+%zu pages) failed: %s (the pages stay)",
				    c[i].off, run, strerror(-err));
		count_written(p, c[i].r, run, err);
		for (size_t k = i; k < i + run; k++)
			c[k].err = err;
		i += run;
	}
}

/* ---- without UFFDIO_MOVE: written pages from write-protect faults ---- */

/* Write-protects [addr, addr + len) (mode WP) or lifts it (0, which wakes
 * the threads waiting on it): 0 or -errno (EAGAIN: an event is on its way;
 * ENOENT: no longer a registered mapping). */
static int wp_range(upager_t *p, uintptr_t addr, size_t len, bool protect)
{
	struct uffdio_writeprotect wp = {
		.range = { addr, len }, .mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return ioctl(p->uffd, UFFDIO_WRITEPROTECT, &wp) < 0 ? -errno : 0;
}

void upager__budget_clean(upager_region_t *r, size_t off, size_t len)
{
	for (size_t pg = off / r->pager->page_size; r->dirty && pg < (off + len) / r->pager->page_size; pg++)
		bit_set(r->dirty, pg, false);
}

int upager__budget_wp_fault(upager_t *p, uintptr_t addr)
{
	struct upager__budget *b = p->budget;
	const struct upager__mapping *m;
	upager_region_t *r = NULL;
	size_t page = 0;
	int ret = 0;

	pthread_rwlock_rdlock(&p->lock);
	m = upager__lookup(p, addr);
	if (m && m->region->wp_sync && b) {
		r = m->region;
		page = (m->roff + (addr - m->start)) / p->page_size;
		pthread_mutex_lock(&b->wp_lock);
	}
	/* Being dropped: unprotected now, the write would land in a page
	 * about to be thrown away. It waits, and lands in the page filled
	 * again from the source (which has the page's bytes). */
	if (r && bit_get(r->dropping, page)) {
		ret = -EAGAIN;
	} else if (!m && b && b->nomove &&
		   (atomic_load(&p->ev_pending) || upager__events_in_kernel(p))) {
		/* Not in the registry, maybe not yet: a page the program's
		 * mremap moved here, its event not applied. Unprotected
		 * unmarked, its write would be missed by write-back. */
		ret = -EAGAIN;
	} else if (r && upager__pagemap_populated(b->pm_fd, addr, p->page_size) == 0) {
		/* Dropped since the fault (a message read before, answered
		 * after): the thread faults again, as a missing page. Marked
		 * written, its fill would be taken for written: a read-only
		 * source's page pinned for nothing. */
		upager__place_wake(p->uffd, addr, p->page_size);
	} else {
		/* Marked first, unprotected second, both under wp_lock: whoever
		 * takes the page (protects it, then clears the bit) does it
		 * wholly before or wholly after. */
		if (r)
			bit_set(r->dirty, page, true);
		if (wp_range(p, addr, p->page_size, false) < 0) /* not ours (any more) */
			upager__place_wake(p->uffd, addr, p->page_size);
	}
	if (r)
		pthread_mutex_unlock(&b->wp_lock);
	pthread_rwlock_unlock(&p->lock);
	return ret;
}

/*
 * Under wp_lock: takes the written pages of [addr, addr + n pages), page pg
 * of r on: write-protected again, then their written bits cleared (a write
 * from here faults and sets its bit again). A protection that fails leaves
 * the bits (the pages stay written, to be written back again).
 */
static int wp_take(upager_t *p, upager_region_t *r, uintptr_t addr, size_t pg, size_t n)
{
	int ret = wp_range(p, addr, n * p->page_size, true);

	for (size_t i = 0; ret == 0 && i < n; i++)
		bit_set(r->dirty, pg + i, false);
	return ret;
}

/*
 * Under both locks: what candidate c (to be page i of b->copy) becomes
 * without UFFDIO_MOVE. Clean (still protected since placed): C_GO, its
 * dropping bit set under wp_lock with the look, so no write lands in it
 * from here. Written, of a writable source: taken (protected, bit cleared),
 * copied, C_WRITEBACK. Written otherwise (or not tracked): C_REQUEUE.
 */
static int nomove_decide(struct upager__budget *b, struct cand *c, size_t i)
{
	upager_t *p = b->p;
	size_t ps = p->page_size, pg = c->off / ps;
	upager_region_t *r = c->e.region;
	int state = C_REQUEUE;

	pthread_mutex_lock(&b->wp_lock);
	/* Untracked (WP registration refused): a write could land between the
	 * look and the drop, unseen: never dropped. */
	c->written = !r->wp_sync || bit_get(r->dirty, pg);
	if (!c->written) {
		bit_set(r->dropping, pg, true);
		state = C_GO;
	} else if (r->wp_sync && r->src->writable &&
		   !(b->policy == UPAGER_EVICT_CLOCK && !c->e.dirty_seen)) {
		state = wp_take(p, r, c->addr, pg, 1) == 0 ? C_WRITEBACK : C_REQUEUE;
	} else if (r->wp_sync && r->src->writable) {
		c->e.dirty_seen = c->chance = true; /* CLOCK: written, in use: a second chance */
	}
	pthread_mutex_unlock(&b->wp_lock);
	/* Protected: the copy is the page, or a write meanwhile set its bit
	 * again (and the page stays). */
	if (state == C_WRITEBACK && copy_pages(b, b->copy + i * ps, c->addr, ps) != ps) {
		bit_set(r->dirty, pg, true);
		state = C_REQUEUE;
	}
	if (state == C_WRITEBACK) {
		bit_set(r->wb, pg, true);
		atomic_fetch_add(&r->evict_gen, 1);
	}
	if (state == C_WRITEBACK || state == C_GO) {
		upager__region_ref(r);
		c->r = r;
	}
	return state;
}

/*
 * Under both locks, after its write-back: is written-back candidate c to be
 * dropped (C_GO, its dropping bit set: not written since taken) or kept
 * (C_REQUEUE: the write failed and it is written still, or written again;
 * C_DROP: gone with its mapping)?
 */
static int nomove_written_back(struct upager__budget *b, struct cand *c)
{
	upager_t *p = b->p;
	size_t ps = p->page_size, pg = c->off / ps;
	upager_region_t *r = c->r;
	const struct upager__mapping *m = upager__lookup(p, c->addr);
	int state = C_DROP;

	pthread_mutex_lock(&b->wp_lock);
	if (c->err)
		bit_set(r->dirty, pg, true);
	if (region_live(p, r) && upager__region_committed(r, c->off) &&
	    upager__region_resident(r, c->off) && m && m->region == r &&
	    m->roff + (c->addr - m->start) == c->off) {
		state = C_REQUEUE;
		if (!c->err && !bit_get(r->dirty, pg)) {
			bit_set(r->dropping, pg, true);
			state = C_GO;
		}
	}
	pthread_mutex_unlock(&b->wp_lock);
	bit_set(r->wb, pg, false);
	atomic_fetch_add(&r->evict_gen, 1);
	return state;
}

/*
 * Drops the C_GO candidates, a madvise a run of adjacent pages, with no
 * lock held: MADV_DONTNEED waits until a handler has read its REMOVE event,
 * and handlers take ev_lock, p->lock and wp_lock. Nothing can change the
 * pages meanwhile: they are write-protected and their writes wait
 * (dropping), no fill claims them or places them as its faulting page
 * (fill.c), and their region is referenced. Returns pages dropped.
 */
static long nomove_drop(struct upager__budget *b, struct cand *c, size_t n)
{
	upager_t *p = b->p;
	size_t ps = p->page_size;
	long dropped = 0;

	for (size_t i = 0; i < n;) {
		size_t run = 1;

		if (c[i].state != C_GO) {
			i++;
			continue;
		}
		while (i + run < n && c[i + run].state == C_GO && c[i + run].r == c[i].r &&
		       c[i + run].off == c[i].off + run * ps && c[i + run].addr == c[i].addr + run * ps)
			run++;
		/* Still a registered mapping with no event on its way (the
		 * registry we looked in is the kernel's): protecting what is
		 * protected changes nothing else. */
		if (wp_range(p, c[i].addr, run * ps, true) < 0 ||
		    madvise((void *)c[i].addr, run * ps, MADV_DONTNEED) < 0) {
			for (size_t k = i; k < i + run; k++)
				c[k].state = C_REQUEUE;
		} else {
			for (size_t k = i; k < i + run; k++)
				c[k].state = C_EVICTED;
			dropped += (long)run;
		}
		i += run;
	}
	/* Our REMOVE events handled (they clear the pages' resident bits): a
	 * fill placing them from here is not undone by one. Bounded. */
	if (dropped && (p->features & UPAGER_FEAT_EVENT_REMOVE))
		upager__events_wait(p, NULL, 0, true);
	for (size_t i = 0; i < n; i++) {
		if (c[i].state == C_EVICTED)
			count_evicted(p, c[i].r, c[i].off);
		if (c[i].r && (c[i].state == C_EVICTED || c[i].state == C_REQUEUE)) {
			pthread_mutex_lock(&b->wp_lock);
			bit_set(c[i].r->dropping, c[i].off / ps, false);
			pthread_mutex_unlock(&b->wp_lock);
		}
	}
	return dropped;
}

/*
 * A round without UFFDIO_MOVE (see the header): decided under the locks,
 * written pages written back without them, decided again under them, then
 * dropped without them. Returns pages evicted, or -EAGAIN.
 */
static long evict_round_nomove(struct upager__budget *b, struct cand *c, size_t n)
{
	upager_t *p = b->p;
	size_t nwb = 0, moved_on = 0;
	long evicted;
	int ret = 0;

	pthread_mutex_lock(&p->ev_lock);
	pthread_rwlock_wrlock(&p->lock);
	/* The registry is the kernel's: no event read and not handled, none
	 * on its way (ev_lock: none read meanwhile). */
	if (atomic_load(&p->ev_pending) || upager__events_in_kernel(p))
		ret = -EAGAIN;
	for (size_t i = 0; i < n; i++) {
		if (ret)
			c[i].state = C_REQUEUE;
		else if (!cand_valid(p, &c[i]))
			c[i].state = C_DROP;
		else
			c[i].state = nomove_decide(b, &c[i], i);
		nwb += c[i].state == C_WRITEBACK;
	}
	pthread_rwlock_unlock(&p->lock);
	pthread_mutex_unlock(&p->ev_lock);

	if (nwb) {
		write_back(b, c, n, b->copy);
		pthread_mutex_lock(&p->ev_lock);
		pthread_rwlock_wrlock(&p->lock);
		for (size_t i = 0; i < n; i++)
			if (c[i].state == C_WRITEBACK)
				c[i].state = nomove_written_back(b, &c[i]);
		pthread_rwlock_unlock(&p->lock);
		pthread_mutex_unlock(&p->ev_lock);
		/* The evictor's write-backs are over: upager_sync goes on. */
		pthread_mutex_lock(&b->lock);
		pthread_cond_broadcast(&b->wb_cond);
		pthread_mutex_unlock(&b->lock);
	}
	evicted = nomove_drop(b, c, n);
	for (size_t i = 0; i < n; i++) {
		if (c[i].state == C_REQUEUE)
			upager__evq_push(b->q, &c[i].e);
		if (c[i].r)
			upager__region_unref(c[i].r);
		moved_on += c[i].state == C_DROP || c[i].chance;
	}
	/* Entries of pages not resident (fills that claimed them and placed
	 * nothing: our drops' events make placements retry, and the retry
	 * queues the page again), second chances: not "nothing to evict"
	 * (which lets faults go on over the budget), again soon. */
	if (!evicted && !ret && moved_on)
		ret = -EAGAIN;
	return !evicted && ret ? ret : evicted;
}

/* One round: up to BATCH pages. Returns pages evicted, or -EAGAIN: an
 * event is on its way, try again in a moment. */
static long evict_round(struct upager__budget *b)
{
	upager_t *p = b->p;
	size_t ps = p->page_size;
	struct cand c[BATCH];
	size_t n = 0, tries = 0, nwb = 0, want = BATCH;
	uint64_t now = resident(p);
	long evicted;
	struct upager__evq_entry e;

	/* No further than the low mark: a round is large (for the runs), and a
	 * small budget's marks are closer than that. */
	if (now > b->low && now - b->low < want)
		want = now - b->low;
	while (n < want && upager__evq_pop(b->first, &e, 1))
		c[n++] = (struct cand){ .e = e };
	/* Up to a whole sweep: the second chances given, what is left goes. */
	size_t sweep = upager__evq_len(b->q) + BATCH;

	while (n < want && tries++ < sweep) {
		if (!upager__evq_pop(b->q, &e, 1))
			break;
		if (b->policy == UPAGER_EVICT_CLOCK && e.ref) {
			e.ref = false; /* refaulted since evicted: a second chance */
			upager__evq_push(b->q, &e);
			continue;
		}
		c[n++] = (struct cand){ .e = e };
	}
	if (!n)
		return 0;
	if (b->nomove)
		return evict_round_nomove(b, c, n);

	pthread_mutex_lock(&p->ev_lock);
	pthread_rwlock_wrlock(&p->lock);
	evicted = evict_locked(b, c, n, &nwb);
	pthread_rwlock_unlock(&p->lock);
	pthread_mutex_unlock(&p->ev_lock);

	for (size_t i = 0; i < n; i++)
		if (c[i].state == C_REQUEUE)
			upager__evq_push(b->q, &c[i].e);
	if (nwb) {
		write_back(b, c, n, b->scratch);
		if (evicted < 0)
			evicted = 0;
		pthread_mutex_lock(&p->ev_lock);
		pthread_rwlock_wrlock(&p->lock);
		for (size_t i = 0; i < n; i++) {
			upager_region_t *r = c[i].r;
			uintptr_t addr;
			const struct upager__mapping *m;

			if (c[i].state != C_WRITEBACK)
				continue;
			addr = r->base + c[i].off;
			m = upager__lookup(p, addr);
			if (c[i].err == 0 || !region_live(p, r) ||
			    !upager__region_committed(r, c[i].off) || !m || m->region != r) {
				count_evicted(p, r, c[i].off);
				evicted++;
			} else if (upager__place_move(p->uffd, addr, (uintptr_t)(b->scratch + i * ps),
						      ps) == 0) {
				upager__evq_push(b->q, &c[i].e);
			} else {
				upager__log(p, UPAGER_LOG_ERROR,
					    "region offset %#zx: neither written back nor put back: "
					    "its data is lost", c[i].off);
				count_evicted(p, r, c[i].off);
			}
			bit_set(r->wb, c[i].off / ps, false);
			atomic_fetch_add(&r->evict_gen, 1);
		}
		pthread_rwlock_unlock(&p->lock);
		pthread_mutex_unlock(&p->ev_lock);
		for (size_t i = 0; i < n; i++)
			if (c[i].state == C_WRITEBACK)
				upager__region_unref(c[i].r);
	}
	pthread_mutex_lock(&b->lock);
	pthread_cond_broadcast(&b->wb_cond);
	pthread_mutex_unlock(&b->lock);
	scratch_empty(b);
	return evicted;
}

static void *evictor(void *arg)
{
	struct upager__budget *b = arg;
	upager_t *p = b->p;

	pthread_mutex_lock(&b->lock);
	while (!b->stop) {
		struct timespec until;
		long got = 0;

		if (!b->kick && resident(p) <= b->high) {
			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_nsec += 20 * 1000000;
			if (until.tv_nsec >= 1000000000) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&b->cond, &b->lock, &until);
			continue;
		}
		b->kick = false;
		pthread_mutex_unlock(&b->lock);
		while (resident(p) > b->low && !__atomic_load_n(&b->stop, __ATOMIC_RELAXED)) {
			got = evict_round(b);
			if (got <= 0)
				break;
			atomic_store(&b->stalled, false);
		}
		if (got == 0 && resident(p) > b->high) {
			atomic_store(&b->stalled, true);
			if (!b->warned_pinned) {
				b->warned_pinned = true;
				upager__log(p, UPAGER_LOG_WARN,
					    "over the memory budget (%llu of %llu pages) and nothing "
					    "to evict: pages written in regions of read-only sources stay",
					    (unsigned long long)resident(p),
					    (unsigned long long)b->pages);
			}
		}
		if (got <= 0)
			usleep(got < 0 ? 200 : 2000);
		pthread_mutex_lock(&b->lock);
		pthread_cond_broadcast(&b->wb_cond);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

/* ---- the budget's life ---- */

static void budget_free(struct upager__budget *b)
{
	upager_t *p = b->p;

	if (b->scratch) {
		upager__uffd_unregister(p->uffd, (uintptr_t)b->scratch, BATCH * p->page_size);
		munmap(b->scratch, BATCH * p->page_size);
	}
	if (b->copy)
		munmap(b->copy, (BATCH + AFTER) * p->page_size);
	if (b->pm_fd >= 0)
		close(b->pm_fd);
	upager__evq_free(b->q);
	upager__evq_free(b->first);
	pthread_mutex_destroy(&b->lock);
	pthread_mutex_destroy(&b->wp_lock);
	pthread_cond_destroy(&b->cond);
	pthread_cond_destroy(&b->wb_cond);
	free(b);
}

int upager__budget_start(upager_t *p, const upager_options_t *o)
{
	const uint64_t need = UPAGER_FEAT_MOVE | UPAGER_FEAT_WP_ASYNC | UPAGER_FEAT_PAGEMAP_SCAN;
	uint64_t bytes = o->mem_budget;
	unsigned high = o->mem_high_pct, low = o->mem_low_pct, policy = o->evict_policy;
	const char *env = getenv("UPAGER_MEM_BUDGET");
	struct upager__budget *b;
	pthread_condattr_t ca;
	size_t len = BATCH * p->page_size;
	int ret;

	if (!bytes && env && *env && !(bytes = upp_parse_size(env))) {
		upager__log(p, UPAGER_LOG_ERROR, "UPAGER_MEM_BUDGET=%s: not a size", env);
		return -EINVAL;
	}
	if (!high)
		high = env_pct("UPAGER_EVICT_HIGH_PCT", 90);
	if (!low)
		low = env_pct("UPAGER_EVICT_LOW_PCT", 70);
	env = getenv("UPAGER_EVICT_POLICY");
	if (!policy && env && *env) {
		if (!strcmp(env, "fifo"))
			policy = UPAGER_EVICT_FIFO;
		else if (strcmp(env, "clock"))
			return -EINVAL;
	}
	if (policy > UPAGER_EVICT_FIFO || high > 100 || low >= high)
		return -EINVAL;
	if (!bytes)
		return 0;
	if (bytes / p->page_size < 2 * UPAGER__MAX_WINDOW) {
		upager__log(p, UPAGER_LOG_ERROR, "a memory budget of %llu bytes is below 2 MiB",
			    (unsigned long long)bytes);
		return -EINVAL;
	}
	if (p->inline_faults) {
		upager__log(p, UPAGER_LOG_ERROR,
			    "a memory budget needs UPAGER_FAULT_THREADS (inline fills place "
			    "pages without the lock eviction takes)");
		return -ENOTSUP;
	}
	if ((p->features & need) != need && !(p->features & UPAGER_FEAT_WP)) {
		/* Without write-protect faults nothing tells a clean page from
		 * one written a moment ago: dropping either could lose a write. */
		upager__log(p, UPAGER_LOG_ERROR,
			    "a memory budget needs UFFDIO_MOVE, UFFD_FEATURE_WP_ASYNC and "
			    "PAGEMAP_SCAN (Linux 6.8), or else write-protect faults "
			    "(UFFD_FEATURE_PAGEFAULT_FLAG_WP: Linux 5.7 on x86-64 and arm64)");
		return -ENOTSUP;
	}
	if ((p->features & need) != need &&
	    (p->enabled_kernel_features & UFFD_FEATURE_WP_ASYNC)) {
		/* Our written bits come from write-protect faults, which
		 * WP_ASYNC resolves in the kernel without a message. */
		upager__log(p, UPAGER_LOG_ERROR,
			    "a memory budget without UFFDIO_MOVE needs UFFD_FEATURE_WP_ASYNC off "
			    "(UPAGER_DISABLE=wp_async)");
		return -ENOTSUP;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->p = p;
	b->nomove = (p->features & need) != need;
	b->pm_fd = -1;
	b->pid = getpid();
	b->pages = bytes / p->page_size;
	b->high = b->pages * high / 100;
	b->low = b->pages * low / 100;
	b->policy = policy;
	pthread_mutex_init(&b->lock, NULL);
	pthread_mutex_init(&b->wp_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->cond, &ca);
	pthread_cond_init(&b->wb_cond, &ca);
	pthread_condattr_destroy(&ca);
	ret = -ENOMEM;
	b->q = upager__evq_new();
	b->first = upager__evq_new();
	b->copy = mmap(NULL, len + AFTER * p->page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b->copy == MAP_FAILED)
		b->copy = NULL;
	else
		b->after = b->copy + len;
	if (!b->q || !b->first || !b->copy)
		goto fail;
	if (!b->nomove) {
		b->scratch = mmap(NULL, len, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (b->scratch == MAP_FAILED) {
			b->scratch = NULL;
			goto fail;
		}
		/* UFFDIO_MOVE's destination must be registered with the same uffd. */
		if (madvise(b->scratch, len, MADV_DONTFORK) < 0 ||
		    (ret = upager__uffd_register(p->uffd, (uintptr_t)b->scratch, len, NULL)) < 0)
			goto fail;
	}
	b->pm_fd = upager__pagemap_open();
	if (b->pm_fd < 0) {
		ret = b->pm_fd;
		goto fail;
	}
	ret = upager__thread_start(&b->thread, evictor, b);
	if (ret < 0)
		goto fail;
	b->started = true;
	p->budget = b;
	p->mem_budget = b->pages * p->page_size;
	return 0;
fail:
	budget_free(b);
	return ret;
}

void upager__budget_stop(upager_t *p)
{
	struct upager__budget *b = p->budget;

	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	__atomic_store_n(&b->stop, true, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	pthread_join(b->thread, NULL);
	p->budget = NULL;
	budget_free(b);
}

int upager__budget_region_init(upager_region_t *r)
{
	upager_t *p = r->pager;
	atomic_uint_fast64_t **bits[] = { &r->wb, &r->shadow, &r->dirty, &r->dropping };
	size_t nbits = !p->budget ? 1 : p->budget->nomove ? 4 : 2;

	if (!p->budget && !r->src->writable)
		return 0;
	for (size_t i = 0; i < nbits; i++) {
		void *m = mmap(NULL, r->resident_bytes, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (m == MAP_FAILED)
			return -ENOMEM;
		*bits[i] = m;
	}
	/* Written pages are told from clean ones where the kernel can. */
	r->track_dirty = (p->features & UPAGER_FEAT_WP_ASYNC) &&
			 (p->features & UPAGER_FEAT_PAGEMAP_SCAN);
	/* Without UFFDIO_MOVE: by write-protect faults, answered by us. */
	r->wp_sync = nbits == 4;
	if (r->wp_sync)
		r->track_dirty = false;
	if (r->track_dirty || r->wp_sync)
		r->wp = true;
	return 0;
}

/* ---- what fills ask ---- */

void upager__budget_filled(upager_t *p, upager_region_t *r, size_t off)
{
	struct upager__budget *b = p->budget;

	/* Advised UPAGER_ADV_EVICT: taken before any page of the fill order. */
	upager__evq_filled(atomic_load_explicit(&r->advice, memory_order_relaxed) ==
				   UPAGER_ADV_EVICT ? b->first : b->q,
			   r, off / p->page_size);
	if (resident(p) > b->high && !__atomic_load_n(&b->kick, __ATOMIC_RELAXED)) {
		pthread_mutex_lock(&b->lock);
		b->kick = true;
		pthread_cond_signal(&b->cond);
		pthread_mutex_unlock(&b->lock);
	}
}

bool upager__budget_room(upager_t *p, size_t n)
{
	return !p->budget || resident(p) + n <= p->budget->high;
}

/* Waits on b->wb_cond until done() or about ms milliseconds passed. */
static void wait_for(struct upager__budget *b, bool (*done)(void *), void *arg, unsigned ms)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&b->lock);
	while (!done(arg) &&
	       pthread_cond_timedwait(&b->wb_cond, &b->lock, &until) == 0)
		;
	pthread_mutex_unlock(&b->lock);
}

struct wb_wait {
	upager_region_t *r;
	size_t off;
};

static bool wb_done(void *arg)
{
	struct wb_wait *w = arg;

	return !upager__budget_in_writeback(w->r, w->off);
}

static bool room(void *arg)
{
	upager_t *p = arg;

	return resident(p) + UPAGER__MAX_WINDOW <= p->budget->pages ||
	       atomic_load(&p->budget->stalled) || atomic_load(&p->ev_pending) || upager__events_in_kernel(p);
}

void upager__budget_fault_wait(upager_t *p, upager_region_t *r, size_t off)
{
	struct upager__budget *b = p->budget;
	struct wb_wait w = { r, off };

	if (!b)
		return;
	/* A write-back is one pwrite: wait for it (the fill would be stale). */
	while (upager__budget_in_writeback(r, off))
		wait_for(b, wb_done, &w, 100);
	/* Over the budget: wait for the evictor. Bounded (2 s), and not when
	 * it cannot free anything or an event must be read first (by us: the
	 * evictor's moves fail until it is, its madvise waits until it is). */
	for (unsigned waited = 0; waited < 100 && !room(p); waited++) {
		pthread_mutex_lock(&b->lock);
		b->kick = true;
		pthread_cond_signal(&b->cond);
		pthread_mutex_unlock(&b->lock);
		wait_for(b, room, p, 20);
	}
}

/* ---- write-back of a range (upager_sync, release) ---- */

/* Makes pages [addr, addr + len) show as written again (a failed write-back). */
static void redirty(upager_t *p, uintptr_t addr, size_t len)
{
	struct uffdio_writeprotect wp = { .range = { addr, len }, .mode = 0 };

	if (ioctl(p->uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
		upager__log(p, UPAGER_LOG_ERROR, "cannot mark %#lx dirty again: %s",
			    (unsigned long)addr, strerror(errno));
}

/* How many of v[i], v[i + 1], ... (up to v[n - 1]) are true in a row. */
static size_t true_run(const bool *v, size_t i, size_t n)
{
	size_t run = 0;

	while (i + run < n && v[i + run])
		run++;
	return run;
}

/*
 * A wp_sync region's written pages of [addr, addr + n pages) at region
 * offset roff, in dirty[], taken (write-protected again, bits cleared) to
 * be written back: a write from here sets its bit again. Under p->lock.
 */
static int take_written(upager_t *p, upager_region_t *r, uintptr_t addr, size_t roff, size_t n,
			bool *dirty)
{
	struct upager__budget *b = p->budget;
	size_t ps = p->page_size, pg = roff / ps;

	pthread_mutex_lock(&b->wp_lock);
	for (size_t i = 0; i < n; i++)
		dirty[i] = upager__region_resident(r, roff + i * ps) && bit_get(r->dirty, pg + i);
	for (size_t i = 0, run; i < n; i += run ? run : 1)
		/* Not protected (an event on its way): still written, and
		 * written now as well. */
		if ((run = true_run(dirty, i, n)))
			wp_take(p, r, addr + i * ps, pg + i, run);
	pthread_mutex_unlock(&b->wp_lock);
	return 0;
}

/* Writes back the dirty pages of mapping part [addr, addr + npages) at
 * region offset roff. Under p->lock shared (the evictor moves nothing). */
static int writeback_part(upager_t *p, int pm_fd, upager_region_t *r, uintptr_t addr,
			  size_t roff, size_t npages)
{
	size_t ps = p->page_size;
	bool dirty[UPAGER__MAX_WINDOW];
	int first = 0;

	for (size_t done = 0; done < npages;) {
		size_t n = npages - done < UPAGER__MAX_WINDOW ? npages - done : UPAGER__MAX_WINDOW;
		uintptr_t at = addr + done * ps;
		int ret = -ENOTSUP;

		if (r->track_dirty && pm_fd >= 0)
			ret = upager__pagemap_written(pm_fd, at, n, ps, dirty, true);
		else if (r->wp_sync)
			ret = take_written(p, r, at, roff + done * ps, n, dirty);
		if (ret < 0) /* untracked: every resident page is dirty */
			for (size_t i = 0; i < n; i++)
				dirty[i] = upager__region_resident(r, roff + (done + i) * ps);
		for (size_t i = 0; i < n;) {
			size_t run = true_run(dirty, i, n);

			if (!run) {
				i++;
				continue;
			}
			ret = r->src->ops->write(r->src, roff + (done + i) * ps,
						 (const void *)(at + i * ps), run * ps);
			if (ret < 0) {
				upager__log(p, UPAGER_LOG_ERROR,
					    "write-back of region offset %#zx (+%zu pages) failed: %s",
					    roff + (done + i) * ps, run, strerror(-ret));
				if (r->track_dirty)
					redirty(p, at + i * ps, run * ps);
				for (size_t k = 0; r->wp_sync && k < run; k++)
					bit_set(r->dirty, (roff + (done + i + k) * ps) / ps, true);
				if (!first)
					first = ret;
			}
			count_written(p, r, run, ret < 0 ? ret : 0);
			/* Fills that read the source before this write are stale:
			 * the page, clean now, may be dropped and filled by one. */
			if (ret == 0)
				atomic_fetch_add(&r->evict_gen, 1);
			i += run;
		}
		done += n;
	}
	return first;
}

static bool no_writeback_in(void *arg)
{
	upager_region_t *r = arg;

	for (size_t w = 0; w < r->resident_bytes / 8; w++)
		if (atomic_load_explicit(&r->wb[w], memory_order_relaxed))
			return false;
	return true;
}

int upager__writeback(upager_region_t *r, size_t off, size_t len)
{
	upager_t *p = r->pager;
	size_t ps = p->page_size;
	int pm_fd = r->track_dirty ? upager__pagemap_open() : -1, first = 0, ret;

	if (!r->src->writable)
		return -EROFS;
	/* The evictor's write-backs in flight report their errors first. */
	while (p->budget && !no_writeback_in(r))
		wait_for(p->budget, no_writeback_in, r, 100);
	pthread_rwlock_rdlock(&p->lock);
	for (size_t i = 0; i < p->nmaps; i++) {
		const struct upager__mapping *m = &p->maps[i];
		size_t s, e;

		if (m->region != r)
			continue;
		s = m->roff > off ? m->roff : off;
		e = m->roff + (m->end - m->start);
		if (e > off + len)
			e = off + len;
		if (s >= e)
			continue;
		ret = writeback_part(p, pm_fd, r, m->start + (s - m->roff), s, (e - s) / ps);
		if (ret && !first)
			first = ret;
	}
	pthread_rwlock_unlock(&p->lock);
	if (pm_fd >= 0)
		close(pm_fd);
	if (r->src->ops->sync && (ret = r->src->ops->sync(r->src)) < 0) {
		upager__log(p, UPAGER_LOG_ERROR, "syncing the source: %s", strerror(-ret));
		count_written(p, r, 0, ret);
		if (!first)
			first = ret;
	}
	ret = atomic_exchange(&r->wb_err, 0);
	return ret ? ret : first;
}
