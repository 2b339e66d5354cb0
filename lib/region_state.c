/* SPDX-License-Identifier: MIT */
/*
 * A region's state that the fault path reads and keeps: its references (the
 * user's handle and one per fill in flight or prefetch queued), which pages
 * upager placed (the resident bitmap), which offsets are committed (lookups
 * in the commit extents; commit and decommit, in region.c, change them) and
 * the check of a range's arguments. Layer: the bottom of the core, below the
 * registry, the fills and the prefetch queue; it calls nothing of theirs.
 */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "upager-int.h"
#include "region_state.h"

void upager__region_ref(upager_region_t *r)
{
	atomic_fetch_add(&r->refs, 1);
}

void upager__region_unref(upager_region_t *r)
{
	/* The pager outlives its regions' fills (destroy joins the handlers). */
	upager_t *p = r->pager;
	int old = atomic_fetch_sub(&r->refs, 1);

	/*
	 * From the decrement on, r is not ours to read: the moment only the
	 * user's reference is left, a waiting upager_release may drop it and
	 * free r. So whether anyone waits is asked of the pager: release
	 * counts itself in before it looks at refs (both seq_cst), so either
	 * it sees this decrement or this sees it waiting.
	 */
	if (old == 2 && atomic_load(&p->releasing)) {
		pthread_mutex_lock(&p->idle_lock);
		pthread_cond_broadcast(&p->idle_cond);
		pthread_mutex_unlock(&p->idle_lock);
	}
	if (old != 1)
		return;
	munmap(r->resident, r->resident_bytes);
	if (r->committed)
		munmap(r->committed, r->resident_bytes);
	if (r->shadow)
		munmap(r->shadow, r->resident_bytes);
	if (r->wb)
		munmap(r->wb, r->resident_bytes);
	if (r->dirty)
		munmap(r->dirty, r->resident_bytes);
	if (r->dropping)
		munmap(r->dropping, r->resident_bytes);
	upager__source_unref(r->src);
	free(r->commits);
	free(r);
}

/* ---- resident bitmap ---- */

bool upager__region_set_resident(upager_region_t *r, size_t off)
{
	size_t page = off / r->pager->page_size;
	uint64_t bit = 1ull << (page % 64);

	if (atomic_fetch_or(&r->resident[page / 64], bit) & bit)
		return false;
	UPAGER__ADD(&r->st, pages_resident, 1);
	UPAGER__ADD(&r->pager->st, pages_resident, 1);
	return true;
}

void upager__region_clear_resident(upager_region_t *r, size_t off, size_t len)
{
	size_t first = off / r->pager->page_size, last = (off + len) / r->pager->page_size;
	int64_t cleared = 0;

	if (atomic_load(&r->st.pages_resident) <= 0)
		return; /* the common case for huge, barely used regions */
	for (size_t page = first; page < last;) {
		size_t w = page / 64, lo = page % 64;
		size_t hi = (last - page + lo) >= 64 ? 64 : (last - page + lo);
		uint64_t mask = (hi == 64 ? ~0ull : ((1ull << hi) - 1)) & ~((1ull << lo) - 1);

		/* Reading first keeps untouched bitmap pages unallocated. */
		if (atomic_load_explicit(&r->resident[w], memory_order_relaxed) & mask)
			cleared += __builtin_popcountll(atomic_fetch_and(&r->resident[w], ~mask) &
							mask);
		page += hi - lo;
	}
	if (cleared) {
		UPAGER__ADD(&r->st, pages_resident, -cleared);
		UPAGER__ADD(&r->pager->st, pages_resident, -cleared);
	}
}

/* ---- committed bitmap (inline pagers) ---- */

int upager__region_commit_bits_init(upager_region_t *r)
{
	/* Sized like the resident bitmap, and like it paid for as used. */
	void *bits = mmap(NULL, r->resident_bytes, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (bits == MAP_FAILED)
		return -ENOMEM;
	r->committed = bits;
	return 0;
}

void upager__region_mark_committed(upager_region_t *r, size_t off, size_t len, bool on)
{
	size_t first = off / r->pager->page_size, last = (off + len) / r->pager->page_size;

	if (!r->committed)
		return;
	for (size_t page = first; page < last;) {
		size_t w = page / 64, lo = page % 64;
		size_t hi = (last - page + lo) >= 64 ? 64 : (last - page + lo);
		uint64_t mask = (hi == 64 ? ~0ull : ((1ull << hi) - 1)) & ~((1ull << lo) - 1);

		if (on)
			atomic_fetch_or(&r->committed[w], mask);
		else if (atomic_load_explicit(&r->committed[w], memory_order_relaxed) & mask)
			atomic_fetch_and(&r->committed[w], ~mask);
		page += hi - lo;
	}
}

bool upager__region_committed_bit(const upager_region_t *r, size_t off)
{
	size_t page = off / r->pager->page_size;

	return atomic_load(&r->committed[page / 64]) & (1ull << (page % 64));
}

/* Drains one at a time: two at once would flip the epoch back under each other. */
static pthread_mutex_t drain_lock = PTHREAD_MUTEX_INITIALIZER;

unsigned upager__region_inline_enter(upager_region_t *r)
{
	for (;;) {
		unsigned e = atomic_load(&r->inline_epoch);

		atomic_fetch_add(&r->inline_busy[e & 1], 1);
		/* Counted under the epoch still current: a drain that flips it
		 * after this sees the count. Otherwise count again. */
		if (atomic_load(&r->inline_epoch) == e)
			return e & 1;
		atomic_fetch_sub(&r->inline_busy[e & 1], 1);
	}
}

void upager__region_inline_leave(upager_region_t *r, unsigned epoch)
{
	atomic_fetch_sub(&r->inline_busy[epoch], 1);
}

void upager__region_inline_forget(void)
{
	pthread_mutex_init(&drain_lock, NULL);
}

void upager__region_inline_drain(upager_region_t *r)
{
	unsigned old;

	pthread_mutex_lock(&drain_lock);
	old = atomic_fetch_add(&r->inline_epoch, 1) & 1;
	while (atomic_load(&r->inline_busy[old]))
		sched_yield(); /* a fill: a pread and an ioctl */
	pthread_mutex_unlock(&drain_lock);
}

bool upager__region_resident(const upager_region_t *r, size_t off)
{
	size_t page = off / r->pager->page_size;

	return atomic_load_explicit(&r->resident[page / 64], memory_order_relaxed) &
	       (1ull << (page % 64));
}

/* ---- commit extents (under pager->lock) ---- */

/* Index of the first extent that ends after off. */
static size_t extent_search(const upager_region_t *r, size_t off)
{
	size_t lo = 0, hi = r->ncommits;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r->commits[mid].end <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool upager__region_committed(const upager_region_t *r, size_t off)
{
	size_t i = extent_search(r, off);

	return i < r->ncommits && r->commits[i].start <= off;
}

size_t upager__region_commit_end(const upager_region_t *r, size_t off)
{
	size_t i = extent_search(r, off);

	return i < r->ncommits ? r->commits[i].end : off;
}

/* ---- argument checks ---- */

int upager__region_check_range(const upager_region_t *r, size_t off, size_t len)
{
	size_t ps;

	if (!r)
		return -EINVAL;
	ps = r->pager->page_size;
	if (len == 0 || off % ps || len % ps)
		return -EINVAL;
	if (off > r->size || len > r->size - off)
		return -ERANGE;
	return 0;
}
