/* SPDX-License-Identifier: MIT */
/*
 * The inline queue: faults of inline pagers whose source cannot fill from
 * a signal handler (a callback runs the program's code, the remote and
 * snapshot sources wait on a connection thread or on io_uring) go from
 * the faulting thread's SIGBUS handler to the pager's handler threads,
 * which fill them through the threaded fill path (fill.c) and answer.
 *
 * A request is a slot of a static array (no allocation, never freed: a
 * waiter woken after its pager is gone touches only its slot), claimed
 * with a compare-and-swap, and its state is the waiter's futex word:
 *
 *   FREE -> CLAIMED (waiter) -> POSTED (waiter, holding the table slot of
 *   the address, so the pager lives) -> TAKEN (a handler of the pager) ->
 *   DONE (the handler, with the answer) -> FREE (the waiter, once read).
 *
 * The state's low bits are those; the rest counts the slot's claims, so
 * that a handler's compare-and-swap from POSTED can only take the request
 * whose pager it read (not a later one posted in the same slot).
 *
 * A request is never dropped: a handler answers every request it took
 * (fill.c, when the fill its fault went to ends), and upager_destroy
 * answers those its handlers never took. The waiter's futex wait has no
 * lock and no allocation; it is woken by the answer only.
 *
 * Layer: below inline.c (the waiter), fill.c and handler.c (the handler);
 * it calls nothing of lib/.
 */
#include "config.h"

#include <errno.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "inline_queue.h"

enum { FREE, CLAIMED, POSTED, TAKEN, DONE };
#define STATE_BITS 3u
#define STATE(w) ((w) & ((1u << STATE_BITS) - 1))
#define WITH(w, st) (((w) & ~((1u << STATE_BITS) - 1)) | (st))

static struct upager__inline_req reqs[UPAGER__INLINE_REQS];
/* Where claims start looking: spreads the threads over the slots. */
static atomic_uint next_claim;

struct upager__inline_req *upager__inline_req_claim(void)
{
	unsigned start = atomic_fetch_add_explicit(&next_claim, 1, memory_order_relaxed);

	for (unsigned i = 0; i < UPAGER__INLINE_REQS; i++) {
		struct upager__inline_req *q = &reqs[(start + i) % UPAGER__INLINE_REQS];
		unsigned w = atomic_load_explicit(&q->state, memory_order_relaxed);

		if (STATE(w) == FREE &&
		    atomic_compare_exchange_strong(&q->state, &w,
						   WITH(w + (1u << STATE_BITS), CLAIMED)))
			return q;
	}
	return NULL;
}

void upager__inline_req_post(struct upager__inline_req *q, upager_t *p, uintptr_t addr,
			     bool write)
{
	atomic_store_explicit(&q->pager, p, memory_order_relaxed);
	q->addr = addr;
	q->write = write;
	q->answer = UPAGER__INLINE_RETRY;
	q->next = NULL;
	/* Counted first: a handler that sees no count has nothing to find. */
	atomic_fetch_add(&p->inline_posted, 1);
	atomic_store_explicit(&q->state, WITH(atomic_load(&q->state), POSTED),
			      memory_order_release);
}

int upager__inline_req_wait(struct upager__inline_req *q)
{
	unsigned s;
	int answer;

	while (STATE(s = atomic_load_explicit(&q->state, memory_order_acquire)) != DONE) {
		/* A second at a time: a lost wake-up would cost that, never a hang. */
		struct timespec t = { .tv_sec = 1 };

		syscall(SYS_futex, &q->state, FUTEX_WAIT_PRIVATE, s, &t, NULL, 0);
	}
	answer = q->answer;
	atomic_store_explicit(&q->state, WITH(s, FREE), memory_order_release);
	return answer;
}

void upager__inline_req_nap(void)
{
	struct timespec t = { .tv_nsec = 50 * 1000 };

	nanosleep(&t, NULL); /* async-signal-safe */
}

struct upager__inline_req *upager__inline_req_take(upager_t *p)
{
	if (!atomic_load(&p->inline_posted))
		return NULL;
	for (unsigned i = 0; i < UPAGER__INLINE_REQS; i++) {
		struct upager__inline_req *q = &reqs[i];
		unsigned w = atomic_load_explicit(&q->state, memory_order_acquire);

		/* The pager read belongs to the claim w counts, if the swap
		 * from w succeeds. */
		if (STATE(w) != POSTED ||
		    atomic_load_explicit(&q->pager, memory_order_relaxed) != p)
			continue;
		if (atomic_compare_exchange_strong(&q->state, &w, WITH(w, TAKEN))) {
			atomic_fetch_sub(&p->inline_posted, 1);
			return q;
		}
	}
	return NULL;
}

void upager__inline_req_answer(struct upager__inline_req *q, int answer)
{
	q->answer = answer;
	q->next = NULL;
	atomic_store_explicit(&q->state, WITH(atomic_load(&q->state), DONE),
			      memory_order_release);
	/* q may be free and claimed again by now: a spurious wake, harmless. */
	syscall(SYS_futex, &q->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void upager__inline_req_cancel(upager_t *p)
{
	struct upager__inline_req *q;

	while ((q = upager__inline_req_take(p)))
		upager__inline_req_answer(q, UPAGER__INLINE_RETRY);
}

void upager__inline_req_forget(void)
{
	memset(reqs, 0, sizeof(reqs));
}
