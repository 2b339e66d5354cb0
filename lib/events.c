/* SPDX-License-Identifier: MIT */
/*
 * The program's address-space events (UFFD_EVENT_REMOVE/UNMAP/REMAP): applied
 * to the registry and the resident bitmaps, and the bookkeeping of those
 * read but not yet handled (ev_lock, ev_reads, ev_pending, each handler's
 * noted ranges), which public calls wait on and faults and fills are held
 * by; and the probe page that tells whether an event is on its way. See
 * "Events read but not yet handled" in docs/DESIGN.md. Layer: below the
 * handler thread (which reads the events and calls here) and the fills
 * (which ask whether an event holds them); it calls the registry, the
 * region state and the uffd.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "upager-int.h"
#include "events.h"
#include "region_state.h"
#include "registry.h"
#include "inline_table.h"

/*
 * Does an event that a handler other than self has read, in a batch numbered
 * up to bound, and not yet handled concern [start, start + len)? Under
 * p->ev_lock.
 */
static bool events_cover(upager_t *p, const struct upager__handler *self, uintptr_t start,
			 size_t len, uint64_t bound)
{
	for (unsigned i = 0; i < p->nthreads; i++) {
		const struct upager__handler *o = &p->handlers[i];

		if (o == self || !o->ev_seq || o->ev_seq > bound)
			continue;
		for (size_t j = 0; j < o->nev_ranges; j++)
			if (o->ev_ranges[j].start < start + len && o->ev_ranges[j].end > start)
				return true;
	}
	return false;
}

/* Under p->ev_lock, with the batch just read: notes its events. */
bool upager__events_note(struct upager__handler *h, const struct uffd_msg *msgs, size_t n)
{
	struct upager__ev_range *r = h->ev_ranges;

	for (size_t i = 0; i < n; i++) {
		const struct uffd_msg *m = &msgs[i];

		if (m->event == UFFD_EVENT_REMOVE || m->event == UFFD_EVENT_UNMAP) {
			*r++ = (struct upager__ev_range){ m->arg.remove.start, m->arg.remove.end,
							  m->event == UFFD_EVENT_UNMAP };
		} else if (m->event == UFFD_EVENT_REMAP) {
			*r++ = (struct upager__ev_range){ m->arg.remap.from,
							  m->arg.remap.from + m->arg.remap.len, true };
			*r++ = (struct upager__ev_range){ m->arg.remap.to,
							  m->arg.remap.to + m->arg.remap.len, true };
		}
	}
	__atomic_store_n(&h->nev_ranges, (size_t)(r - h->ev_ranges), __ATOMIC_RELEASE);
	if (!h->nev_ranges)
		return false;
	h->ev_seq = ++h->pager->ev_reads;
	atomic_fetch_add(&h->pager->ev_pending, 1);
	return true;
}

/*
 * Waits until no handler but self has a batch of events numbered up to
 * bound (all read so far, if now) not yet handled. Bounded: it waits at most
 * UPAGER__EV_WAIT_NS, then logs and goes on.
 */
void upager__events_wait(upager_t *p, const struct upager__handler *self, uint64_t bound, bool now)
{
	struct timespec until;
	int ret = 0;

	pthread_mutex_lock(&p->ev_lock);
	if (now)
		bound = p->ev_reads;
	if (events_cover(p, self, 0, UINTPTR_MAX, bound)) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += UPAGER__EV_WAIT_NS / 1000000000ull;
		while (ret == 0 && events_cover(p, self, 0, UINTPTR_MAX, bound))
			ret = pthread_cond_timedwait(&p->ev_cond, &p->ev_lock, &until);
	}
	pthread_mutex_unlock(&p->ev_lock);
	if (ret)
		upager__log(p, UPAGER_LOG_WARN, "events read %llu s ago still not handled: %s",
			    (unsigned long long)(UPAGER__EV_WAIT_NS / 1000000000ull), strerror(ret));
}

void upager__events_handled(struct upager__handler *h)
{
	upager_t *p = h->pager;

	pthread_mutex_lock(&p->ev_lock);
	h->ev_seq = 0;
	/* Inline copies read it without the lock (upager__events_unmapped). */
	__atomic_store_n(&h->nev_ranges, 0, __ATOMIC_RELEASE);
	atomic_fetch_sub(&p->ev_pending, 1);
	pthread_cond_broadcast(&p->ev_cond);
	pthread_mutex_unlock(&p->ev_lock);
}

/*
 * Does an event that a handler other than h has read, in a batch numbered up
 * to *bound, and not yet handled concern [start, start + len)? A *bound of 0
 * becomes the number of batches read so far: only events read by then can
 * hold a fault or a fill, so that a stream of later ones cannot hold it for
 * ever.
 */
bool upager__events_concern(struct upager__handler *h, uintptr_t start, size_t len,
			    uint64_t *bound)
{
	upager_t *p = h->pager;
	bool cover;

	pthread_mutex_lock(&p->ev_lock);
	if (!*bound)
		*bound = p->ev_reads;
	cover = events_cover(p, h, start, len, *bound);
	pthread_mutex_unlock(&p->ev_lock);
	return cover;
}

/*
 * Is [start, end) in an UNMAP or REMAP that a handler of p has read and not
 * yet applied? Lock-free, for an inline copy between
 * upager__inline_copy_begin and _end (inline.c): the ranges are written only while no
 * copy of p runs (upager__inline_events_begin to _read), emptied by
 * upager__events_handled once the table no longer holds what they took out.
 */
bool upager__events_unmapped(const upager_t *p, uintptr_t start, uintptr_t end)
{
	for (unsigned i = 0; i < p->nthreads; i++) {
		const struct upager__handler *o = &p->handlers[i];
		size_t n = __atomic_load_n(&o->nev_ranges, __ATOMIC_ACQUIRE);

		for (size_t j = 0; j < n; j++)
			if (o->ev_ranges[j].unmapped && o->ev_ranges[j].start < end &&
			    o->ev_ranges[j].end > start)
				return true;
	}
	return false;
}

/* The registry changed: so does what inline faults find (under the lock). */
static void inline_sync(upager_t *p)
{
	if (p->inline_faults && upager__inline_sync(p) < 0)
		upager__log(p, UPAGER_LOG_ERROR,
			    "inline table full: faults of a moved mapping will be SIGBUS");
}

void upager__events_apply(struct upager__handler *h, const struct uffd_msg *msg)
{
	upager_t *p = h->pager;

	switch (msg->event) {
	case UFFD_EVENT_REMOVE:
		/* madvise(DONTNEED/REMOVE): the pages are gone, refills come from the source. */
		pthread_rwlock_rdlock(&p->lock);
		for (uintptr_t a = msg->arg.remove.start; a < msg->arg.remove.end;) {
			struct upager__mapping *m = upager__lookup(p, a);
			uintptr_t end;

			if (!m) {
				a += p->page_size;
				continue;
			}
			end = m->end < msg->arg.remove.end ? m->end : msg->arg.remove.end;
			upager__region_clear_resident(m->region, m->roff + (a - m->start), end - a);
			a = end;
		}
		pthread_rwlock_unlock(&p->lock);
		break;
	case UFFD_EVENT_UNMAP:
		pthread_rwlock_wrlock(&p->lock);
		if (upager__map_unmap(p, msg->arg.remove.start, msg->arg.remove.end) < 0)
			upager__log(p, UPAGER_LOG_ERROR, "registry: out of memory on munmap");
		inline_sync(p);
		pthread_rwlock_unlock(&p->lock);
		break;
	case UFFD_EVENT_REMAP:
		pthread_rwlock_wrlock(&p->lock);
		if (upager__map_remap(p, msg->arg.remap.from, msg->arg.remap.to,
				     msg->arg.remap.len) < 0)
			upager__log(p, UPAGER_LOG_ERROR, "registry: out of memory on mremap");
		inline_sync(p);
		pthread_rwlock_unlock(&p->lock);
		break;
	case UFFD_EVENT_FORK:
		/* Not requested; a descriptor sent anyway must not leak. */
		close((int)msg->arg.fork.ufd);
		break;
	default:
		upager__log(p, UPAGER_LOG_WARN, "unexpected userfaultfd event %#x", msg->event);
		break;
	}
}

/* See upager.ev_probe. Without it, reserve cannot see another thread's munmap
 * whose event is not read yet; nothing else depends on it. */
void upager__events_probe_init(upager_t *p)
{
	uint64_t events = UPAGER_FEAT_EVENT_REMOVE | UPAGER_FEAT_EVENT_UNMAP |
			  UPAGER_FEAT_EVENT_REMAP;
	struct upager__placement pl = {
		.uffd = p->uffd, .len = p->page_size, .page_size = p->page_size,
		.src = p->zero_buf,
	};
	void *a;
	int ret = 0;

	if (!(p->features & events))
		return;
	a = mmap(NULL, p->page_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		return;
	pl.dst = (uintptr_t)a;
	if (madvise(a, p->page_size, MADV_DONTFORK) < 0)
		ret = -errno;
	else if ((ret = upager__uffd_register(p->uffd, pl.dst, p->page_size, NULL)) == 0) {
		ret = upager__place_range(&pl);
		if (ret == 0 && pl.present == 0) {
			p->ev_probe = pl.dst;
			return;
		}
		upager__uffd_unregister(p->uffd, pl.dst, p->page_size);
	}
	upager__log(p, UPAGER_LOG_INFO, "no event probe page: %s",
		    ret ? strerror(-ret) : "it was there already");
	munmap(a, p->page_size);
}

bool upager__events_in_kernel(const upager_t *p)
{
	return p->ev_probe &&
	       upager__place_changing(p->uffd, p->ev_probe, p->zero_buf, p->page_size);
}

void upager__events_probe_free(upager_t *p)
{
	if (!p->ev_probe)
		return;
	upager__uffd_unregister(p->uffd, p->ev_probe, p->page_size);
	munmap((void *)p->ev_probe, p->page_size);
}
