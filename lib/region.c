/* SPDX-License-Identifier: MIT */
/*
 * Regions: the reserve/commit model on top of one anonymous mapping.
 *
 * reserve   mmap(PROT_NONE, MAP_NORESERVE) + UFFDIO_REGISTER(MISSING): costs
 *           address space and a VMA, no memory.
 * commit    mprotect(READ|WRITE): the first touch of each page faults to us.
 * decommit  mprotect(PROT_NONE) + MADV_DONTNEED: pages are freed; the next
 *           commit and touch faults again.
 * release   mprotect(PROT_NONE), UFFDIO_UNREGISTER (wakes blocked faulters,
 *           who then see the memory gone), munmap.
 *
 * Commit state lives in the region (changed here, read by the fills through
 * region_state.c), not in the page tables, so the fault loop can refuse to
 * fill a page a concurrent decommit has just taken away.
 *
 * Layer: the top, with pager.c: the public region calls. It calls the
 * handlers (wait for events, wake to cancel), the registry, the region
 * state, the prefetch queue's producer and the uffd; no file of the core
 * below calls it (upager_destroy and the snapshot calls use it as a program
 * would).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "upager-int.h"
#include "handler.h"
#include "registry.h"
#include "region_state.h"
#include "prefetch.h"
#include "inline_table.h"
#include "fill.h"
#include "evict.h"

/* ---- commit extents: changes (under pager->lock) ---- */

static bool extents_overlap(const upager_region_t *r, size_t start, size_t end)
{
	for (size_t i = 0; i < r->ncommits; i++)
		if (r->commits[i].start < end && r->commits[i].end > start)
			return true;
	return false;
}

static bool extents_cover(const upager_region_t *r, size_t start, size_t end)
{
	/* Extents are merged, so a covered range lies inside one of them. */
	for (size_t i = 0; i < r->ncommits; i++)
		if (r->commits[i].start <= start && r->commits[i].end >= end)
			return true;
	return false;
}

static int extents_reserve(upager_region_t *r, size_t more)
{
	if (r->ncommits + more > r->capcommits) {
		size_t cap = r->capcommits ? r->capcommits * 2 : 8;
		struct upager__extent *n = realloc(r->commits, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		r->commits = n;
		r->capcommits = cap;
	}
	return 0;
}

/* Adds [start, end), known not to overlap, merging with neighbours. */
static void extents_add(upager_region_t *r, size_t start, size_t end)
{
	size_t i = 0;

	while (i < r->ncommits && r->commits[i].end < start)
		i++;
	if (i < r->ncommits && r->commits[i].end == start) {
		r->commits[i].end = end;
		if (i + 1 < r->ncommits && r->commits[i + 1].start == end) {
			r->commits[i].end = r->commits[i + 1].end;
			memmove(&r->commits[i + 1], &r->commits[i + 2],
				(r->ncommits - i - 2) * sizeof(r->commits[0]));
			r->ncommits--;
		}
		return;
	}
	if (i < r->ncommits && r->commits[i].start == end) {
		r->commits[i].start = start;
		return;
	}
	memmove(&r->commits[i + 1], &r->commits[i], (r->ncommits - i) * sizeof(r->commits[0]));
	r->commits[i].start = start;
	r->commits[i].end = end;
	r->ncommits++;
}

/* Removes [start, end), known to lie inside one extent. */
static void extents_remove(upager_region_t *r, size_t start, size_t end)
{
	size_t i = 0;

	while (r->commits[i].end < end)
		i++;
	struct upager__extent *e = &r->commits[i];
	if (e->start == start && e->end == end) {
		memmove(e, e + 1, (r->ncommits - i - 1) * sizeof(*e));
		r->ncommits--;
	} else if (e->start == start) {
		e->start = end;
	} else if (e->end == end) {
		e->end = start;
	} else {
		size_t tail = e->end;
		e->end = start;
		memmove(e + 2, e + 1, (r->ncommits - i - 1) * sizeof(*e));
		e[1].start = end;
		e[1].end = tail;
		r->ncommits++;
	}
}

/* ---- argument checks ---- */


/* True if [off, off+len) of r is still mapped where it was reserved. */
static bool in_place(upager_t *p, const upager_region_t *r, size_t off, size_t len)
{
	uintptr_t at = r->base + off, end = r->base + off + len;

	while (at < end) {
		struct upager__mapping *m = upager__lookup(p, at);
		if (!m || m->region != r || m->roff != m->start - r->base)
			return false;
		at = m->end;
	}
	return true;
}

/* ---- public calls ---- */

UPAGER__EXPORT int upager_reserve(upager_t *p, size_t len, upager_source_t *src, unsigned flags,
				  upager_region_t **regionp)
{
	struct upager__mapping m;
	upager_region_t *r;
	size_t ps, npages;
	void *addr;
	int ret;

	if (!p || !src || !regionp || len == 0 || (flags & ~UPAGER_RESERVE_COMMIT))
		return -EINVAL;
	ps = p->page_size;
	if (len > SIZE_MAX - ps)
		return -ENOMEM;
	len = (len + ps - 1) & ~(ps - 1);
	npages = len / ps;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->pager = p;
	r->size = len;
	atomic_init(&r->refs, 1);
	upager__counters_init(&r->st);
	/* Untouched bitmap pages cost nothing: a 1 TiB region pays for what it uses. */
	r->resident_bytes = ((npages + 63) / 64) * sizeof(uint64_t);
	r->resident = mmap(NULL, r->resident_bytes, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r->resident == MAP_FAILED) {
		free(r);
		return -ENOMEM;
	}
	upager__source_ref(src);
	r->src = src;
	if (p->inline_faults && upager__region_commit_bits_init(r) < 0) {
		upager__region_unref(r);
		return -ENOMEM;
	}

	addr = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (addr == MAP_FAILED) {
		upager__region_unref(r);
		return -ENOMEM;
	}
	r->base = (uintptr_t)addr;
	/*
	 * The kernel may have freed this range for us a moment ago: by this
	 * thread's munmap or mremap, whose event a handler has read but maybe
	 * not handled, or another thread's, whose event may not even be read.
	 * Handled after this region is in the registry, such an event would
	 * cut this region's pages out of it, to be zero-filled. And an inline
	 * fill of any pager's mapping that was here would land in this region
	 * once it is registered (see inline_table.h).
	 */
	upager__events_settle(p, true);
	upager__events_settle_inline();
	/*
	 * Register under the write lock: the fault loop zero-fills registered
	 * addresses it cannot find, and must not do so to a region that is
	 * registered but not yet in the registry.
	 */
	pthread_rwlock_wrlock(&p->lock);
	/* A fork()ed child would get our missing pages zero-filled by its kernel
	 * (its copy of the VMA is not registered): no mapping is better than wrong data. */
	if (madvise(addr, len, MADV_DONTFORK) < 0) {
		ret = -errno;
		goto fail_unmap;
	}
	/* A snapshot's region tracks writes when the kernel can (WP_ASYNC, and
	 * PAGEMAP_SCAN to read them back): incremental saves then skip clean pages. */
	r->wp = src->track_writes && (p->features & UPAGER_FEAT_WP_ASYNC) &&
		(p->features & UPAGER_FEAT_PAGEMAP_SCAN);
	/* A budget or a writable source: bitmaps, and written pages tracked. */
	ret = upager__budget_region_init(r);
	if (ret < 0)
		goto fail_unmap;
	ret = upager__uffd_register(p->uffd, r->base, len, &r->wp);
	if (ret < 0)
		goto fail_unmap;
	r->track_dirty = r->track_dirty && r->wp;
	r->wp_sync = r->wp_sync && r->wp; /* refused: every page counts as written */
	/* Not a budget's write-protection without WP_ASYNC: saves cannot read it. */
	if (r->wp && !r->wp_sync && src->track_writes &&
	    upager__track_add(r->base, len, src->snap_id) < 0) {
		ret = -ENOMEM;
		goto fail_unregister;
	}
	if (p->nregions == p->capregions) {
		size_t cap = p->capregions ? p->capregions * 2 : 8;
		upager_region_t **n = realloc(p->regions, cap * sizeof(*n));
		if (!n) {
			ret = -ENOMEM;
			goto fail_unregister;
		}
		p->regions = n;
		p->capregions = cap;
	}
	if (p->inline_faults && !upager__inline_has_room()) {
		ret = -ENOSPC;
		goto fail_unregister;
	}
	m = (struct upager__mapping){ .start = r->base, .end = r->base + len, .region = r };
	ret = upager__map_insert(p, &m);
	if (ret < 0)
		goto fail_unregister;
	if (p->inline_faults && (ret = upager__inline_sync(p)) < 0) {
		upager__map_cut(p, m.start, m.end, false);
		upager__inline_sync(p);
		goto fail_unregister;
	}
	upager__map_forget_moves(p, m.start, m.end);
	p->regions[p->nregions++] = r;
	pthread_rwlock_unlock(&p->lock);

	if (flags & UPAGER_RESERVE_COMMIT) {
		ret = upager_commit(r, 0, len);
		if (ret < 0) {
			upager_release(r);
			return ret;
		}
	}
	*regionp = r;
	return 0;

fail_unregister:
	if (r->wp)
		upager__track_del(r->base);
	upager__uffd_unregister(p->uffd, r->base, len);
fail_unmap:
	munmap(addr, len);
	pthread_rwlock_unlock(&p->lock);
	upager__region_unref(r);
	return ret;
}

UPAGER__EXPORT int upager_map(upager_t *p, size_t len, upager_source_t *src,
			      upager_region_t **regionp)
{
	return upager_reserve(p, len, src, UPAGER_RESERVE_COMMIT, regionp);
}

UPAGER__EXPORT int upager_commit(upager_region_t *r, size_t off, size_t len)
{
	int ret = upager__region_check_range(r, off, len);
	upager_t *p;

	if (ret < 0)
		return ret;
	p = r->pager;
	upager__events_settle(p, false); /* the registry as the program's munmap/mremap left it */
	pthread_rwlock_wrlock(&p->lock);
	if (!in_place(p, r, off, len))
		ret = -EFAULT;
	else if (extents_overlap(r, off, off + len))
		ret = -EEXIST;
	else if ((ret = extents_reserve(r, 1)) == 0) {
		if (mprotect((void *)(r->base + off), len, PROT_READ | PROT_WRITE) < 0) {
			ret = -errno;
		} else {
			extents_add(r, off, off + len);
			upager__region_mark_committed(r, off, len, true);
		}
	}
	pthread_rwlock_unlock(&p->lock);
	return ret;
}

UPAGER__EXPORT int upager_decommit(upager_region_t *r, size_t off, size_t len)
{
	int ret = upager__region_check_range(r, off, len);
	upager_t *p;

	if (ret < 0)
		return ret;
	p = r->pager;
	/* MADV_DONTNEED waits until a handler has read the REMOVE event. */
	if (upager__on_handler(p))
		return -EDEADLK;
	upager__events_settle(p, false);
	pthread_rwlock_wrlock(&p->lock);
	if (!in_place(p, r, off, len))
		ret = -EFAULT;
	else if (!extents_cover(r, off, off + len))
		ret = -ENOENT;
	else if ((ret = extents_reserve(r, 1)) == 0) {
		if (mprotect((void *)(r->base + off), len, PROT_NONE) < 0) {
			ret = -errno;
		} else {
			/* From here no fill lands in the range: the fault loop checks
			 * commit state under this lock before it places a page. */
			extents_remove(r, off, off + len);
			upager__fill_decommitted(r, off, len);
			upager__region_mark_committed(r, off, len, false);
			upager__region_clear_resident(r, off, len);
			upager__budget_clean(r, off, len);
		}
	}
	pthread_rwlock_unlock(&p->lock);
	if (ret == 0 && r->committed) {
		/* Inline fills that read the page committed before the bit was
		 * cleared may still place it: discard after them, and take back
		 * the resident bits they set. */
		upager__region_inline_drain(r);
		upager__region_clear_resident(r, off, len);
	}
	if (ret == 0 && madvise((void *)(r->base + off), len, MADV_DONTNEED) < 0)
		ret = -errno;
	return ret;
}

/* Takes r out of the registry (its mappings in *minep) and the pager's
 * list, and marks it dead: no fill starts for it from here. Under p->lock
 * held for writing. */
static int take_out(upager_t *p, upager_region_t *r, struct upager__mapping **minep, size_t *np)
{
	int ret = upager__map_remove_region(p, r, minep, np);

	if (ret < 0)
		return ret;
	for (size_t i = 0; i < p->nregions; i++)
		if (p->regions[i] == r) {
			p->regions[i] = p->regions[--p->nregions];
			break;
		}
	r->dead = true;
	return 0;
}

/*
 * The end of a region taken out of the registry and marked dead (mine: its
 * mappings, freed here): out of the inline table, every fill of it over,
 * then (unmap) unregistered and unmapped, and the program's reference
 * dropped (the last frees it and its source).
 */
static void retire(upager_t *p, upager_region_t *r, struct upager__mapping *mine, size_t n,
		   bool unmap)
{
	if (r->wp) /* before the range can be reused */
		upager__track_del(r->base);

	/* Out of the inline table, no inline fill of it left running, only
	 * now: a fault until PROT_NONE (or the unregister) retries (the region
	 * is dead), and one not found in the table would be the program's
	 * SIGBUS. */
	if (p->inline_faults) {
		pthread_rwlock_rdlock(&p->lock);
		upager__inline_sync(p);
		pthread_rwlock_unlock(&p->lock);
	}
	/*
	 * When release returns no fill of the region runs or will start, so
	 * the caller may free what its callback uses. Fills in flight see the
	 * region dead and wake their threads, which fault on the range while
	 * it is still reserved; reads that may never end are cancelled. On a
	 * handler thread we cannot wait for ourselves: the fill around us
	 * finishes after we return.
	 */
	if (!upager__on_handler(p)) {
		atomic_fetch_add(&p->releasing, 1);
		upager__kick_handlers(p);
		pthread_mutex_lock(&p->idle_lock);
		while (atomic_load(&r->refs) > 1)
			pthread_cond_wait(&p->idle_cond, &p->idle_lock);
		pthread_mutex_unlock(&p->idle_lock);
		atomic_fetch_sub(&p->releasing, 1);
	}
	for (size_t i = 0; unmap && i < n; i++) {
		/* Wakes threads whose faults were never read; they fault too. */
		upager__uffd_unregister(p->uffd, mine[i].start, mine[i].end - mine[i].start);
		munmap((void *)mine[i].start, mine[i].end - mine[i].start);
	}
	free(mine);
	upager__region_clear_resident(r, 0, r->size);
	upager__region_unref(r);
}

UPAGER__EXPORT int upager_release(upager_region_t *r)
{
	struct upager__mapping *mine;
	size_t n;
	upager_t *p;
	int ret, wb_ret = 0;

	if (!r)
		return -EINVAL;
	p = r->pager;
	/* Where the program's mremap moved the region's pages, and what munmap left. */
	upager__events_settle(p, false);
	/* A writable source gets what was written, while it is still mapped. */
	if (r->src->writable && !upager__on_handler(p))
		wb_ret = upager__writeback(r, 0, r->size);
	pthread_rwlock_wrlock(&p->lock);
	ret = take_out(p, r, &mine, &n);
	if (ret < 0) {
		pthread_rwlock_unlock(&p->lock);
		return ret;
	}
	/* PROT_NONE first: a thread woken from here on faults (SIGSEGV)
	 * instead of reading a fresh zero page. Under the lock: any inline
	 * sync after it (another reserve, release, event) takes the region
	 * out of the table, and a fault there then must meet PROT_NONE, not
	 * miss twice (the program's SIGBUS). */
	for (size_t i = 0; i < n; i++)
		mprotect((void *)mine[i].start, mine[i].end - mine[i].start, PROT_NONE);
	pthread_rwlock_unlock(&p->lock);
	retire(p, r, mine, n, true);
	return wb_ret;
}

/* Is every committed page of r resident, by its bits? Under p->lock. */
static bool resident_bits_full(const upager_region_t *r)
{
	size_t ps = r->pager->page_size;

	for (size_t i = 0; i < r->ncommits; i++)
		for (size_t off = r->commits[i].start; off < r->commits[i].end; off += ps)
			if (!upager__region_resident(r, off))
				return false;
	return true;
}

/*
 * Is every committed page of r there, by the page tables (present, or
 * swapped out)? The resident bits alone cannot say: a fill sets them just
 * before it places the pages. 1 yes, 0 no, or -errno. Under p->lock held
 * for writing: no event moves a mapping meanwhile.
 */
static int placed_in_page_tables(upager_t *p, const upager_region_t *r)
{
	size_t ps = p->page_size;
	uint8_t pm[4096];

	for (size_t i = 0; i < p->nmaps; i++) {
		const struct upager__mapping *m = &p->maps[i];

		if (m->region != r)
			continue;
		for (uintptr_t a = m->start; a < m->end;) {
			size_t n = (m->end - a) / ps, roff = m->roff + (a - m->start);
			int ret;

			n = n < sizeof(pm) ? n : sizeof(pm);
			ret = upager__pagemap(a, n, ps, pm, 1, false);
			if (ret < 0)
				return ret;
			for (size_t k = 0; k < n; k++)
				if (!(pm[k] & UPAGER__PM_POPULATED) &&
				    upager__region_committed(r, roff + k * ps))
					return 0;
			a += n * ps;
		}
	}
	return 1;
}

UPAGER__EXPORT int upager_complete(upager_region_t *r, int timeout_ms)
{
	struct upager__mapping *mine;
	uint64_t deadline;
	size_t n;
	upager_t *p;
	int ret;

	if (!r || timeout_ms < -1)
		return -EINVAL;
	p = r->pager;
	if (upager__on_handler(p))
		return -EDEADLK; /* the fills it waits for may need this thread */
	if (p->budget || r->src->writable)
		return -EBUSY; /* pages may leave again: eviction, write-back */
	/* Behind what is queued (a working set first), at the same low priority. */
	ret = upager_prefetch(r, 0, r->size);
	if (ret < 0)
		return ret;
	deadline = upager__now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000ull;
	for (;;) {
		struct timespec nap = { 0, 2 * 1000 * 1000 };
		bool full;

		/* Where the program's mremap moved pages, and what it discarded. */
		upager__events_settle(p, false);
		pthread_rwlock_rdlock(&p->lock);
		full = resident_bits_full(r);
		pthread_rwlock_unlock(&p->lock);
		if (full) {
			pthread_rwlock_wrlock(&p->lock);
			ret = placed_in_page_tables(p, r);
			if (ret == 1)
				break; /* with the lock held */
			pthread_rwlock_unlock(&p->lock);
			if (ret < 0)
				return ret;
		}
		if (timeout_ms >= 0 && upager__now_ns() >= deadline)
			return -ETIMEDOUT;
		nanosleep(&nap, NULL);
	}
	ret = take_out(p, r, &mine, &n);
	if (ret < 0) {
		pthread_rwlock_unlock(&p->lock);
		return ret;
	}
	/*
	 * Unregistered under the lock, before anything lets go of the region:
	 * from here on the kernel resolves every fault there as anonymous
	 * memory, so no access meets an address upager no longer knows (inline:
	 * the program's SIGBUS). Every page is placed; one the program discards
	 * from now on reads zero.
	 */
	for (size_t i = 0; i < n; i++)
		upager__uffd_unregister(p->uffd, mine[i].start, mine[i].end - mine[i].start);
	pthread_rwlock_unlock(&p->lock);
	retire(p, r, mine, n, false);
	return 0;
}

UPAGER__EXPORT int upager_region_advise(upager_region_t *r, int advice)
{
	if (!r || advice < UPAGER_ADV_NORMAL || advice > UPAGER_ADV_EVICT)
		return -EINVAL;
	atomic_store(&r->advice, advice);
	return 0;
}

UPAGER__EXPORT int upager_prefetch(upager_region_t *r, size_t off, size_t len)
{
	return upager__prefetch_list(r, &off, &len, 1);
}

UPAGER__EXPORT void *upager_region_addr(const upager_region_t *r)
{
	return r ? (void *)r->base : NULL;
}

UPAGER__EXPORT size_t upager_region_size(const upager_region_t *r)
{
	return r ? r->size : 0;
}

UPAGER__EXPORT int upager_sync(upager_region_t *r, size_t off, size_t len)
{
	int ret = upager__region_check_range(r, off, len);

	if (ret < 0)
		return ret;
	/* A source callback: the write-back may fault on a page only a
	 * handler can fill. */
	if (upager__on_handler(r->pager))
		return -EDEADLK;
	return upager__writeback(r, off, len);
}
