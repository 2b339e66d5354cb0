/* SPDX-License-Identifier: MIT */
/*
 * The evictor's queue: every page a fill of a budgeted pager claims, in the
 * order claimed (a FIFO of region and page, grown as needed), and the
 * shadow bits that tell a refault from a first fault. Entries go stale when
 * the program discards, decommits or releases; the evictor checks each
 * against the registry under the pager's lock and drops those. Layer: below
 * the fills (which push) and the evictor (which pops); it calls nothing.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "upager-int.h"
#include "evict_queue.h"

struct upager__evq {
	pthread_mutex_t lock;
	struct upager__evq_entry *v;
	size_t cap, head, n;
};

struct upager__evq *upager__evq_new(void)
{
	struct upager__evq *q = calloc(1, sizeof(*q));

	if (q)
		pthread_mutex_init(&q->lock, NULL);
	return q;
}

void upager__evq_free(struct upager__evq *q)
{
	if (!q)
		return;
	pthread_mutex_destroy(&q->lock);
	free(q->v);
	free(q);
}

/* Under q->lock. False: out of memory, the page is not queued (and so
 * never evicted: the budget is exceeded rather than anything lost). */
static bool grow(struct upager__evq *q)
{
	size_t cap = q->cap ? q->cap * 2 : 4096;
	struct upager__evq_entry *v = malloc(cap * sizeof(*v));

	if (!v)
		return false;
	for (size_t i = 0; i < q->n; i++)
		v[i] = q->v[(q->head + i) % q->cap];
	free(q->v);
	q->v = v;
	q->cap = cap;
	q->head = 0;
	return true;
}

void upager__evq_push(struct upager__evq *q, const struct upager__evq_entry *e)
{
	pthread_mutex_lock(&q->lock);
	if (q->n < q->cap || grow(q)) {
		q->v[(q->head + q->n) % q->cap] = *e;
		q->n++;
	}
	pthread_mutex_unlock(&q->lock);
}

void upager__evq_filled(struct upager__evq *q, upager_region_t *r, size_t page)
{
	struct upager__evq_entry e = { .region = r, .page = page };
	uint64_t bit = 1ull << (page % 64);

	if (r->shadow &&
	    (atomic_load_explicit(&r->shadow[page / 64], memory_order_relaxed) & bit))
		e.ref = atomic_fetch_and(&r->shadow[page / 64], ~bit) & bit;
	upager__evq_push(q, &e);
}

size_t upager__evq_pop(struct upager__evq *q, struct upager__evq_entry *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&q->lock);
	while (n < max && q->n) {
		out[n++] = q->v[q->head];
		q->head = (q->head + 1) % q->cap;
		q->n--;
	}
	pthread_mutex_unlock(&q->lock);
	return n;
}

size_t upager__evq_len(struct upager__evq *q)
{
	size_t n;

	pthread_mutex_lock(&q->lock);
	n = q->n;
	pthread_mutex_unlock(&q->lock);
	return n;
}
