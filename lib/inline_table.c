/* SPDX-License-Identifier: MIT */
/*
 * The inline table: which addresses belong to which region of an inline
 * pager, for the SIGBUS handler (inline.c). That handler runs in whatever
 * thread faulted, which may hold the pager's rwlock or malloc's locks, so it
 * cannot use the registry. The table is a fixed array of slots in static
 * memory, one per mapping, each published with its own generation count
 * (odd while it changes) and holding a count of the fills that found it.
 *
 * A reader notes the generation, reads the slot, raises the slot's count
 * and reads the generation again; a writer makes the generation odd, then
 * waits for the count to reach zero before it changes or empties the slot.
 * Both sides are sequentially consistent, so either the writer sees the
 * reader's count and waits for its fill, or the reader sees the new
 * generation and looks again: a fill never lands in a mapping taken out
 * of the table (released, unmapped, moved), nor in a region reserved at its
 * address since. Writers (under the pager's lock, and one at a time here)
 * are registry changes: rare, and never from a signal handler.
 *
 * Layer: below region.c (reserve, release) and events.c (UNMAP, REMAP),
 * which call upager__inline_sync; inline.c reads it. It calls nothing of
 * lib/.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "inline_table.h"

struct slot {
	atomic_uint_fast64_t gen; /* odd while being changed */
	atomic_uintptr_t start, end;
	_Atomic(upager_region_t *) region;
	atomic_size_t roff;
	atomic_uint busy; /* fills that found this slot and have not left */
	upager_t *pager;  /* writers only (under writer_lock) */
};

static struct slot slots[UPAGER__INLINE_SLOTS];
/* Batches of inline pagers' uffd messages being read or read and not yet
 * applied (see upager__inline_events_open). */
static atomic_uint events_open;
/* Odd while upager__inline_sync rewrites slots: a mapping split or moved
 * is out of the table for a moment before it is back (see enter). */
static atomic_uint_fast64_t table_seq;
static atomic_uint used; /* slots [0, used) have been written at least once */
static pthread_mutex_t writer_lock = PTHREAD_MUTEX_INITIALIZER;

static bool slot_is(struct slot *s, const struct upager__mapping *m)
{
	return atomic_load_explicit(&s->start, memory_order_relaxed) == m->start &&
	       atomic_load_explicit(&s->end, memory_order_relaxed) == m->end &&
	       atomic_load_explicit(&s->region, memory_order_relaxed) == m->region &&
	       atomic_load_explicit(&s->roff, memory_order_relaxed) == m->roff;
}

static bool slot_of_pager_before(unsigned i, const upager_t *p)
{
	while (i--)
		if (slots[i].pager == p)
			return true;
	return false;
}

/* Writes m into s (NULL: empties it) once no fill holds it. */
static void slot_write(struct slot *s, upager_t *p, const struct upager__mapping *m)
{
	atomic_fetch_add(&s->gen, 1);
	while (atomic_load(&s->busy))
		sched_yield(); /* a fill of one page: a pread and an ioctl */
	atomic_store_explicit(&s->start, m ? m->start : 0, memory_order_relaxed);
	atomic_store_explicit(&s->end, m ? m->end : 0, memory_order_relaxed);
	atomic_store_explicit(&s->region, m ? m->region : NULL, memory_order_relaxed);
	atomic_store_explicit(&s->roff, m ? m->roff : 0, memory_order_relaxed);
	s->pager = m ? p : NULL;
	atomic_fetch_add_explicit(&s->gen, 1, memory_order_release);
}

int upager__inline_sync(upager_t *p)
{
	unsigned n;
	int ret = 0;

	pthread_mutex_lock(&writer_lock);
	atomic_fetch_add(&table_seq, 1);
	n = atomic_load(&used);
	/* Out first: a mapping trimmed by munmap must not outlive its pages. */
	for (unsigned i = 0; i < n; i++) {
		bool keep = false;

		if (slots[i].pager != p)
			continue;
		for (size_t j = 0; j < p->nmaps && !keep; j++)
			keep = slot_is(&slots[i], &p->maps[j]);
		if (!keep)
			slot_write(&slots[i], p, NULL);
	}
	for (size_t j = 0; j < p->nmaps; j++) {
		unsigned i, free_slot = UPAGER__INLINE_SLOTS;
		bool have = false;

		for (i = 0; i < n && !have; i++) {
			if (slots[i].pager == p)
				have = slot_is(&slots[i], &p->maps[j]);
			else if (!slots[i].pager && free_slot == UPAGER__INLINE_SLOTS)
				free_slot = i;
		}
		if (have)
			continue;
		if (free_slot == UPAGER__INLINE_SLOTS) {
			if (n == UPAGER__INLINE_SLOTS) {
				ret = -ENOSPC;
				continue;
			}
			free_slot = n++;
		}
		slot_write(&slots[free_slot], p, &p->maps[j]);
		atomic_store_explicit(&used, n, memory_order_release);
	}
	atomic_fetch_add(&table_seq, 1);
	pthread_mutex_unlock(&writer_lock);
	return ret;
}

static bool scan(uintptr_t addr, struct upager__inline_hit *hit)
{
	unsigned n = atomic_load_explicit(&used, memory_order_acquire);

	for (unsigned i = 0; i < n; i++) {
		struct slot *s = &slots[i];
		uint_fast64_t gen = atomic_load_explicit(&s->gen, memory_order_acquire);
		uintptr_t start, end;

		if (gen & 1) {
			i--; /* being written: a moment */
			sched_yield();
			continue;
		}
		start = atomic_load_explicit(&s->start, memory_order_relaxed);
		end = atomic_load_explicit(&s->end, memory_order_relaxed);
		if (addr < start || addr >= end)
			continue;
		hit->slot = i;
		hit->region = atomic_load_explicit(&s->region, memory_order_relaxed);
		hit->start = start;
		hit->end = end;
		hit->roff = atomic_load_explicit(&s->roff, memory_order_relaxed);
		atomic_fetch_add(&s->busy, 1);
		if (atomic_load(&s->gen) == gen)
			return true;
		atomic_fetch_sub(&s->busy, 1);
		i--; /* changed under us: read it again */
	}
	return false;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t); /* async-signal-safe */
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/*
 * A miss is final only once the table has stood still through a whole scan
 * and no inline pager has events read and not applied: mremap returns once
 * its REMAP is read, and the program may touch the moved pages before the
 * handler has put them in the table; a munmap that splits a mapping takes
 * it out and puts its parts back. Bounded (a thread that faults while
 * holding the pager's lock would wait for ever): then it is a miss.
 */
bool upager__inline_enter(uintptr_t addr, struct upager__inline_hit *hit)
{
	uint64_t until = 0;

	for (;;) {
		uint_fast64_t seq = atomic_load(&table_seq);

		if (scan(addr, hit))
			return true;
		hit->version = seq;
		if (!(seq & 1) && atomic_load(&table_seq) == seq && !atomic_load(&events_open))
			return false;
		hit->version = UPAGER__INLINE_UNSETTLED;
		if (!until)
			until = now_ns() + UPAGER__INLINE_MISS_WAIT_NS;
		else if (now_ns() > until)
			return false;
		sched_yield();
	}
}

bool upager__inline_has_room(void)
{
	unsigned n, inuse = 0;

	pthread_mutex_lock(&writer_lock);
	n = atomic_load(&used);
	for (unsigned i = 0; i < n; i++)
		inuse += slots[i].pager != NULL;
	pthread_mutex_unlock(&writer_lock);
	return inuse < UPAGER__INLINE_RESERVE_MAX;
}

bool upager__inline_events_begin(upager_t *p)
{
	struct pollfd pfd = { .fd = p->uffd, .events = POLLIN };

	/* Only events come on an inline pager's uffd: nothing to read, no
	 * reason to stop its copies. */
	if (poll(&pfd, 1, 0) == 0)
		return false;
	atomic_fetch_add(&events_open, 1);
	atomic_fetch_add(&p->inline_reading, 1);
	while (atomic_load(&p->inline_copying))
		sched_yield(); /* one UFFDIO_COPY (EAGAIN if it is about our event) */
	return true;
}

void upager__inline_events_read(upager_t *p)
{
	atomic_fetch_sub(&p->inline_reading, 1);
}

void upager__inline_events_end(void)
{
	atomic_fetch_sub(&events_open, 1);
}

bool upager__inline_copy_begin(upager_t *p)
{
	atomic_fetch_add(&p->inline_copying, 1);
	if (!atomic_load(&p->inline_reading))
		return true;
	atomic_fetch_sub(&p->inline_copying, 1);
	return false;
}

void upager__inline_copy_end(upager_t *p)
{
	atomic_fetch_sub(&p->inline_copying, 1);
}

bool upager__inline_events_open(void)
{
	return atomic_load(&events_open) != 0;
}

bool upager__inline_pagers_any(bool (*pred)(const upager_t *p))
{
	bool any = false;
	unsigned n;

	if (!atomic_load(&used))
		return false;
	/* Under the lock: a pager with a slot is alive (destroy empties them). */
	pthread_mutex_lock(&writer_lock);
	n = atomic_load(&used);
	for (unsigned i = 0; i < n && !any; i++)
		if (slots[i].pager && (i == 0 || !slot_of_pager_before(i, slots[i].pager)))
			any = pred(slots[i].pager);
	pthread_mutex_unlock(&writer_lock);
	return any;
}

void upager__inline_forget(void)
{
	/* The child's copies of the parent's regions are not mapped in it
	 * (MADV_DONTFORK) and their uffds are the parent's: a slot found here
	 * would copy into the parent's memory. A parent thread may have been
	 * inside the writer lock or a fill at the fork: nothing of that goes on. */
	memset(slots, 0, atomic_load(&used) * sizeof(slots[0])); /* the rest is untouched */
	atomic_store(&used, 0);
	atomic_store(&events_open, 0);
	atomic_store(&table_seq, 0); /* odd if a sync ran: every miss waited 2 s */
	pthread_mutex_init(&writer_lock, NULL);
}

void upager__inline_leave(const struct upager__inline_hit *hit)
{
	atomic_fetch_sub(&slots[hit->slot].busy, 1);
}
