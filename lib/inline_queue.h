/* SPDX-License-Identifier: MIT */
/*
 * Inline faults handed to the handler threads (inline_queue.c): for sources
 * that cannot fill from a signal handler (callback, remote, snapshot), the
 * SIGBUS handler posts the fault here and waits; a handler thread of the
 * pager fills it as a fault message and answers.
 */
#ifndef UPAGER_INLINE_QUEUE_H
#define UPAGER_INLINE_QUEUE_H

#include "upager-int.h"

/* Requests in flight in the process, all pagers together: past that many
 * waiting threads a fault naps and is retried (never dropped). */
#define UPAGER__INLINE_REQS 256

/* What the waiter does once answered. */
enum {
	UPAGER__INLINE_RETRY = 0, /* return: the access runs again */
	UPAGER__INLINE_FAIL = 1,  /* the page cannot be filled: the program's SIGBUS */
};

struct upager__inline_req {
	atomic_uint state; /* the waiter's futex word (see inline_queue.c) */
	_Atomic(upager_t *) pager;
	uintptr_t addr; /* the faulting address */
	bool write;
	int answer; /* UPAGER__INLINE_*, once answered */
	/* Handler's: the other requests waiting on the same fill. */
	struct upager__inline_req *next;
};

/*
 * The faulting thread (async-signal-safe). claim: a free request, or NULL
 * when all are taken (nap with upager__inline_req_nap, then retry the
 * access). post: hands it to p's handlers, while the caller still holds
 * the inline table's slot of the address (so p is alive). wait: until the
 * answer, which it returns; the request is free again.
 */
struct upager__inline_req *upager__inline_req_claim(void);
void upager__inline_req_post(struct upager__inline_req *q, upager_t *p, uintptr_t addr,
			     bool write);
int upager__inline_req_wait(struct upager__inline_req *q);
void upager__inline_req_nap(void);

/* A handler thread of p: the next request posted to p (NULL: none), and
 * its answer (q may be reused once answered). */
struct upager__inline_req *upager__inline_req_take(upager_t *p);
void upager__inline_req_answer(struct upager__inline_req *q, int answer);
/* Answers RETRY to every request of p not taken: its handlers are gone
 * (upager_destroy, after its regions are released). */
void upager__inline_req_cancel(upager_t *p);
/* In a fork's child: no request of the parent's threads is waiting. */
void upager__inline_req_forget(void);

#endif
