/* SPDX-License-Identifier: MIT */
/*
 * The prefetch queue: upager_prefetch() and working-set requests, read
 * ahead of the program by the handlers. It owns the queue (pf_head, pf_tail
 * under pf_lock), its producer (upager__prefetch_list: checks the ranges,
 * takes a region reference per request, wakes one handler in turn) and its
 * consumer (upager__prefetch_run, on a handler thread: windows while slots
 * beyond the faults' reserve are free, planned with fill.c's window
 * functions). Layer: between the public calls and the handler loop above,
 * which produce and run it, and the fills, registry and region state below.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "upager-int.h"
#include "fill.h"
#include "prefetch.h"
#include "region_state.h"
#include "registry.h"

void upager__prefetch_init(upager_t *p)
{
	pthread_mutex_init(&p->pf_lock, NULL);
}

/* Every region is released by now, and with it every request. */
void upager__prefetch_free(upager_t *p)
{
	pthread_mutex_destroy(&p->pf_lock);
}

/* Wakes one handler, in turn, to look at the queue. */
static void kick_one(upager_t *p)
{
	unsigned i = atomic_fetch_add(&p->pf_next_handler, 1) % p->nthreads;
	uint64_t one = 1;

	if (write(p->handlers[i].wake_fd, &one, sizeof(one)) != sizeof(one))
		upager__log(p, UPAGER_LOG_ERROR, "cannot wake handler %u: %s", i, strerror(errno));
}

/*
 * Queues prefetches of the n ranges [offs[i], offs[i] + lens[i]) of r (each
 * checked) behind those already queued, in this order, with one lock and one
 * wakeup: a working set of thousands of runs costs its caller little.
 */
int upager__prefetch_list(upager_region_t *r, const size_t *offs, const size_t *lens, size_t n)
{
	struct upager__prefetch *head = NULL, *tail = NULL, *req;
	upager_t *p;
	int ret = 0;

	for (size_t i = 0; i < n && ret == 0; i++)
		ret = upager__region_check_range(r, offs[i], lens[i]);
	if (ret < 0 || n == 0)
		return ret;
	p = r->pager;
	for (size_t i = 0; i < n; i++) {
		req = malloc(sizeof(*req));
		if (!req)
			break; /* a shorter prefetch */
		*req = (struct upager__prefetch){ .region = r, .off = offs[i], .end = offs[i] + lens[i] };
		if (tail)
			tail->next = req;
		else
			head = req;
		tail = req;
	}
	if (!head)
		return -ENOMEM;
	pthread_rwlock_rdlock(&p->lock);
	if (r->dead) {
		pthread_rwlock_unlock(&p->lock);
		ret = -EINVAL;
	} else {
		for (req = head; req; req = req->next)
			upager__region_ref(r); /* each dropped by the handler when done or released */
		pthread_rwlock_unlock(&p->lock);
		pthread_mutex_lock(&p->pf_lock);
		if (p->pf_tail)
			p->pf_tail->next = head;
		else
			p->pf_head = head;
		p->pf_tail = tail;
		pthread_mutex_unlock(&p->pf_lock);
		kick_one(p);
		return 0;
	}
	while (head) {
		req = head->next;
		free(head);
		head = req;
	}
	return ret;
}

/* upager_prefetch() requests: issue windows while slots allow. */
void upager__prefetch_run(struct upager__handler *h)
{
	upager_t *p = h->pager;
	struct upager__prefetch *req;

	for (;;) {
		struct upager__fill *batch[UPAGER__SLOTS];
		size_t n = 0;
		bool finished = false;

		pthread_mutex_lock(&p->pf_lock);
		req = p->pf_head;
		if (req && (atomic_load(&req->region->dead) || h->nfree > UPAGER__FAULT_RESERVE)) {
			p->pf_head = req->next;
			if (!p->pf_head)
				p->pf_tail = NULL;
		} else {
			req = NULL;
		}
		pthread_mutex_unlock(&p->pf_lock);
		if (!req)
			return;

		pthread_rwlock_rdlock(&p->lock);
		while (!req->region->dead && req->off < req->end &&
		       h->nfree > UPAGER__FAULT_RESERVE) {
			upager_region_t *r = req->region;
			uintptr_t addr = r->base + req->off;
			const struct upager__mapping *m = upager__lookup(p, addr);
			size_t pages;

			if (!m || m->region != r || m->roff + (addr - m->start) != req->off ||
			    !upager__region_committed(r, req->off) ||
			    upager__region_resident(r, req->off) || upager__fill_in_flight(h, addr)) {
				req->off += p->page_size; /* not ours to fill, or done already */
				continue;
			}
			pages = upager__fill_clip_window(h, m, r, addr, req->off, UPAGER__MAX_WINDOW);
			if (req->off + pages * p->page_size > req->end)
				pages = (req->end - req->off) / p->page_size;
			batch[n++] = upager__fill_new(h, r, addr, req->off, pages, true);
			req->off += pages * p->page_size;
		}
		finished = req->region->dead || req->off >= req->end;
		pthread_rwlock_unlock(&p->lock);
		upager__fill_start_all(h, batch, n);

		if (finished) {
			upager__region_unref(req->region);
			free(req);
			continue;
		}
		/* Out of slots: back to the front of the queue, for later. */
		pthread_mutex_lock(&p->pf_lock);
		req->next = p->pf_head;
		p->pf_head = req;
		if (!p->pf_tail)
			p->pf_tail = req;
		pthread_mutex_unlock(&p->pf_lock);
		return;
	}
}
