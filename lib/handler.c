/* SPDX-License-Identifier: MIT */
/*
 * The handler thread: one per handler, on its own io_uring. It owns the
 * thread's life (start, CPU affinity, stop), the ring (a poll on the
 * userfaultfd, a poll on the handler's wake eventfd, and the sources' I/O),
 * the slots and their buffers, and the loop: read the uffd's messages in
 * batches under ev_lock (events go to events.c, faults to a backlog), give
 * backlogged faults to fill.c while slots are free (write-protect faults,
 * of budgets without UFFDIO_MOVE, to evict.c), retry placements that
 * met EAGAIN, run the prefetch queue, spin a while after a fault, then wait
 * for CQEs and dispatch them (the uffd's poll, wake-ups, source I/O that
 * finishes a fill). It also takes fills that sources complete on threads of
 * their own (upager__fill_complete), and lets public calls wait for the
 * handlers' events (upager__events_settle). Layer: between the pager, which
 * starts and stops it, and fill.c, prefetch, events.c, evict.c and the
 * placement core, which it calls; nothing below calls back into it.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "thread.h"
#include "compat.h"
#include "upager-int.h"
#include "events.h"
#include "evict.h"
#include "fill.h"
#include "handler.h"
#include "inline_queue.h"
#include "inline_table.h"
#include "prefetch.h"
#include "spin.h"

enum { TAG_UFFD = 1, TAG_WAKE = 2, TAG_IGNORE = UPAGER__TAG_IGNORE };

static void arm_poll(struct upager__handler *h, int fd, uint64_t tag)
{
	struct io_uring_sqe *sqe = upp_get_sqe(&h->ring);

	/* The ring has room for every slot's I/O twice over; this cannot fail
	 * unless the kernel is out of memory, and then the next loop retries. */
	if (!sqe)
		return;
	io_uring_prep_poll_add(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, tag);
	if (tag == TAG_UFFD)
		h->poll_armed = true;
}

static void list_remove(struct upager__fill **head, struct upager__fill *f)
{
	for (; *head; head = &(*head)->next)
		if (*head == f) {
			*head = f->next;
			f->next = NULL;
			return;
		}
}

/* ---- messages ---- */

/*
 * Reads what the uffd holds; events are handled now, faults queue for a slot.
 * The read and the noting of its events are one step under ev_lock (see
 * struct upager). A spinning handler leaves the read to one holding it.
 */
static void read_messages(struct upager__handler *h, bool spinning)
{
	upager_t *p = h->pager;
	struct uffd_msg msgs[UPAGER__MSG_BATCH];

	while (h->uffd_ready) {
		long n;
		bool events = false;

		if (!spinning)
			pthread_mutex_lock(&p->ev_lock);
		else if (pthread_mutex_trylock(&p->ev_lock) != 0)
			return;
		/* Open before the read: from the moment the kernel lets the
		 * munmap go on, a region registered elsewhere waits for us. */
		if (p->inline_faults && !upager__inline_events_begin(p)) {
			pthread_mutex_unlock(&p->ev_lock);
			h->uffd_ready = false;
			break;
		}
		n = upager__uffd_read(p->uffd, msgs, UPAGER__MSG_BATCH);
		if (n > 0)
			events = upager__events_note(h, msgs, (size_t)n);
		if (p->inline_faults)
			upager__inline_events_read(p);
		pthread_mutex_unlock(&p->ev_lock);
		if (p->inline_faults && !events)
			upager__inline_events_end();
		/*
		 * Events apply in the order the kernel gave them: first those
		 * other handlers read before. mremap sends REMAP and then an
		 * UNMAP of the old range; applied the other way round, the
		 * UNMAP cuts the region out of the registry, the REMAP finds
		 * nothing to move, and the moved pages fill with zeros. Earlier
		 * batches wait for nothing later: no deadlock.
		 */
		if (events && p->nthreads > 1)
			upager__events_wait(p, h, h->ev_seq - 1, false);
		if (n < 0)
			upager__log(p, UPAGER_LOG_ERROR, "reading userfaultfd: %s", strerror((int)-n));
		for (long i = 0; i < n; i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT) {
				upager__events_apply(h, &msgs[i]);
				continue;
			}
			if (h->nbacklog == h->capbacklog) {
				size_t cap = h->capbacklog ? h->capbacklog * 2 : 64;
				struct uffd_msg *b = realloc(h->backlog, cap * sizeof(*b));
				if (!b) {
					/* Unanswered, the thread stays blocked; waking it
					 * makes it fault again, and us see it again later. */
					upager__place_wake(p->uffd,
							  (uintptr_t)msgs[i].arg.pagefault.address &
								  ~(uintptr_t)(p->page_size - 1),
							  p->page_size);
					continue;
				}
				h->backlog = b;
				h->capbacklog = cap;
			}
			h->backlog[h->nbacklog++] = msgs[i];
		}
		if (events)
			upager__events_handled(h);
		if (p->inline_faults && events)
			upager__inline_events_end();
		if (n < UPAGER__MSG_BATCH)
			h->uffd_ready = false; /* drained: the poll, armed next, sees anything newer */
	}
}

/*
 * A write to a page placed write-protected in a region whose written pages
 * we track ourselves (a budget without UFFDIO_MOVE, evict.c): answered at
 * once, or kept to be asked again while the page is being dropped. Its
 * thread waits either way; kept for want of memory, it is woken instead
 * (and writes after the drop into the page filled again, or faults again).
 */
static void wp_fault(struct upager__handler *h, const struct uffd_msg *msg)
{
	upager_t *p = h->pager;
	uintptr_t addr = (uintptr_t)msg->arg.pagefault.address & ~(uintptr_t)(p->page_size - 1);

	if (upager__budget_wp_fault(p, addr) != -EAGAIN)
		return;
	if (h->nwp_wait == h->capwp_wait) {
		size_t cap = h->capwp_wait ? h->capwp_wait * 2 : 16;
		struct uffd_msg *w = realloc(h->wp_wait, cap * sizeof(*w));

		if (!w) {
			upager__place_wake(p->uffd, addr, p->page_size);
			return;
		}
		h->wp_wait = w;
		h->capwp_wait = cap;
	}
	h->wp_wait[h->nwp_wait++] = *msg;
}

static void run_wp_wait(struct upager__handler *h)
{
	size_t n = h->nwp_wait;

	h->nwp_wait = 0;
	for (size_t i = 0; i < n; i++) /* kept ones go back in front: i >= nwp_wait */
		wp_fault(h, &h->wp_wait[i]);
}

static void run_backlog(struct upager__handler *h)
{
	size_t i = 0;

	if (h->nbacklog == 0)
		return;
	/* A fault may start a window and its readahead: 1 + RA_DEPTH slots. */
	while (i < h->nbacklog && h->nfree > UPAGER__RA_DEPTH) {
		const struct uffd_msg *msg = &h->backlog[i++];

		if (msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
			wp_fault(h, msg);
		else
			upager__fill_fault(h, msg);
	}
	memmove(h->backlog, h->backlog + i, (h->nbacklog - i) * sizeof(h->backlog[0]));
	h->nbacklog -= i;
}

/* Inline faults posted by their threads (inline_queue.c), while a slot is
 * free for them as for the backlog's; the rest wait for the next round. */
static void run_inline(struct upager__handler *h)
{
	struct upager__inline_req *q;

	while (h->nfree > UPAGER__RA_DEPTH && !h->stopping &&
	       (q = upager__inline_req_take(h->pager)))
		upager__fill_fault_inline(h, q);
}

/*
 * A released region's reads may never end (a FIFO, a hung server): cancel
 * them, so that upager_release and upager_destroy return in bounded time.
 * Their CQEs then finish the fills without placing anything.
 */
static void cancel_dead_io(struct upager__handler *h)
{
	for (struct upager__fill *f = h->inflight; f; f = f->next) {
		struct io_uring_sqe *sqe;

		if (!atomic_load(&f->region->dead))
			continue;
		sqe = upp_get_sqe(&h->ring);
		if (sqe) {
			io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)f, 0);
			io_uring_sqe_set_data64(sqe, TAG_IGNORE);
		}
	}
}

void upager__fill_complete(struct upager__fill *f, int result)
{
	struct upager__handler *h = f->h;
	uint64_t one = 1;

	f->result = result;
	pthread_mutex_lock(&h->done_lock);
	f->next_done = h->done;
	h->done = f;
	pthread_mutex_unlock(&h->done_lock);
	if (write(h->wake_fd, &one, sizeof(one)) != sizeof(one))
		upager__log(h->pager, UPAGER_LOG_ERROR, "cannot wake handler %u: %s", h->idx,
			    strerror(errno));
}

/* Fills other threads completed: finish them here, where their slots live. */
static void run_done(struct upager__handler *h)
{
	struct upager__fill *list;

	pthread_mutex_lock(&h->done_lock);
	list = h->done;
	h->done = NULL;
	pthread_mutex_unlock(&h->done_lock);
	while (list) {
		struct upager__fill *f = list;

		list = f->next_done;
		list_remove(&h->inflight, f);
		upager__fill_finish(h, f, f->result);
	}
}

static void handle_cqe(struct upager__handler *h, struct io_uring_cqe *cqe)
{
	uint64_t tag = io_uring_cqe_get_data64(cqe);
	struct upager__fill *f;
	int ret;

	if (tag == TAG_UFFD) {
		h->poll_armed = false;
		h->uffd_ready = true;
		return;
	}
	if (tag == TAG_WAKE) {
		uint64_t v;

		if (read(h->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			upager__log(h->pager, UPAGER_LOG_ERROR, "wake eventfd: %s",
				    strerror(errno));
		h->stopping = atomic_load(&h->pager->stopping);
		run_done(h);
		cancel_dead_io(h);
		if (!h->stopping)
			arm_poll(h, h->wake_fd, TAG_WAKE);
		return;
	}
	if (tag == TAG_IGNORE)
		return;
	f = (struct upager__fill *)(uintptr_t)tag;
	if (atomic_load_explicit(&f->region->dead, memory_order_relaxed))
		ret = -ECANCELED; /* released: nothing to place, do not read on */
	else
		ret = f->region->src->ops->complete(f->region->src, f, cqe->res, &h->ring);
	if (ret == UPAGER__FILL_PENDING)
		return;
	list_remove(&h->inflight, f);
	upager__fill_finish(h, f, ret);
}

static unsigned reap(struct upager__handler *h)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;

	io_uring_for_each_cqe(&h->ring, head, cqe) {
		handle_cqe(h, cqe);
		seen++;
	}
	io_uring_cq_advance(&h->ring, seen);
	return seen;
}

/*
 * Busy-polls for the next fault for a while after the last one: waking a
 * sleeping thread on another CPU costs far more than the fault itself in a
 * VM. Only right after activity, so an idle pager costs no CPU.
 */
static void spin(struct upager__handler *h)
{
	upager_t *p = h->pager;
	uint64_t until = h->last_fault_ns + p->spin_ns;

	if (!p->spin_ns || h->retry || h->nbacklog || h->stopping)
		return;
	io_uring_submit(&h->ring);
	while (upager__now_ns() < until) {
		if (io_uring_cq_ready(&h->ring))
			return;
		h->uffd_ready = true;
		read_messages(h, true);
		if (h->nbacklog || atomic_load(&p->inline_posted))
			return;
		upager__cpu_relax();
	}
}

static void *handler_main(void *arg)
{
	struct upager__handler *h = arg;
	upager_t *p = h->pager;

	arm_poll(h, h->wake_fd, TAG_WAKE);
	h->uffd_ready = true; /* faults may have queued before we started */

	for (;;) {
		int ret;

		if (h->uffd_ready && !h->stopping)
			read_messages(h, false);
		run_wp_wait(h);
		run_backlog(h);
		run_inline(h);
		upager__fill_retry_all(h);
		if (!h->stopping)
			upager__prefetch_run(h);
		if (h->stopping && h->nfree == UPAGER__SLOTS)
			break;
		spin(h);
		/* Go round again only if that can make progress: faults waiting
		 * for a slot need the completions that the wait below reaps. */
		if ((h->nbacklog && h->nfree > UPAGER__RA_DEPTH) || (h->uffd_ready && !h->stopping))
			continue;
		if (!h->poll_armed && !h->stopping)
			arm_poll(h, p->uffd, TAG_UFFD);

		if (io_uring_cq_ready(&h->ring)) {
			io_uring_submit(&h->ring);
		} else if (h->retry || h->nwp_wait) {
			/* The madvise/munmap caller (or the evictor's drop) must
			 * run before EAGAIN clears. */
			struct __kernel_timespec ts = { .tv_nsec = 50 * 1000 };
			struct io_uring_cqe *cqe;
			ret = io_uring_submit_and_wait_timeout(&h->ring, &cqe, 1, &ts, NULL);
			if (ret < 0 && ret != -ETIME && ret != -EINTR)
				upager__log(p, UPAGER_LOG_ERROR, "io_uring wait: %s", strerror(-ret));
		} else {
			ret = io_uring_submit_and_wait(&h->ring, 1);
			if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
				upager__log(p, UPAGER_LOG_ERROR, "io_uring wait: %s", strerror(-ret));
		}
		reap(h);
	}
	return NULL;
}

/* ---- the handler threads: start, stop, wake ---- */

/* initial-exec: read by inline faults' SIGBUS handler (inline.c), where a
 * first access must not allocate. */
static __thread struct upager__handler *current_handler __attribute__((tls_model("initial-exec")));

bool upager__on_handler(const upager_t *p)
{
	return current_handler && current_handler->pager == p;
}

/* That handler, or NULL. */
static struct upager__handler *current_of(const upager_t *p)
{
	return upager__on_handler(p) ? current_handler : NULL;
}

void upager__events_settle(upager_t *p, bool in_kernel)
{
	struct upager__handler *self = current_of(p);
	uint64_t until = upager__now_ns() + UPAGER__EV_WAIT_NS;

	/* The event's munmap thread is woken once a handler has read it. */
	while (in_kernel && !self && upager__events_in_kernel(p) && upager__now_ns() < until) {
		struct timespec nap = { .tv_nsec = 20 * 1000 };

		nanosleep(&nap, NULL);
	}
	upager__events_wait(p, self, 0, true);
}

void upager__events_settle_inline(void)
{
	uint64_t until = upager__now_ns() + UPAGER__EV_WAIT_NS;
	struct timespec nap = { .tv_nsec = 20 * 1000 };

	/* In the kernel first, then open: an event read between the two
	 * checks was counted open before its read. */
	while (upager__inline_pagers_any(upager__events_in_kernel) && upager__now_ns() < until)
		nanosleep(&nap, NULL);
	while (upager__inline_events_open() && upager__now_ns() < until)
		nanosleep(&nap, NULL);
}

void upager__kick_handlers(upager_t *p)
{
	uint64_t one = 1;

	for (unsigned i = 0; i < p->nthreads; i++)
		if (p->handlers[i].wake_fd >= 0 &&
		    write(p->handlers[i].wake_fd, &one, sizeof(one)) != sizeof(one))
			upager__log(p, UPAGER_LOG_ERROR, "cannot wake handler %u: %s", i,
				    strerror(errno));
}

static void stop_handlers(upager_t *p, unsigned started)
{
	atomic_store(&p->stopping, true);
	upager__kick_handlers(p);
	for (unsigned i = 0; i < started; i++)
		pthread_join(p->handlers[i].thread, NULL);
}

static void handler_free(struct upager__handler *h)
{
	io_uring_queue_exit(&h->ring);
	close(h->wake_fd);
	h->wake_fd = -1;
	munmap(h->bufs, (size_t)UPAGER__SLOTS * UPAGER__MAX_WINDOW * h->pager->page_size);
	free(h->backlog);
	free(h->wp_wait);
}

static void *handler_thread(void *arg)
{
	struct upager__handler *h = arg;

	current_handler = h;
	if (h->pager->handler_cpus) {
		cpu_set_t set;

		CPU_ZERO(&set);
		for (int c = 0; c < 64; c++)
			if (h->pager->handler_cpus & (1ull << c))
				CPU_SET(c, &set);
		if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
			upager__log(h->pager, UPAGER_LOG_WARN,
				    "handler %u: cannot set CPU affinity", h->idx);
	}
	return handler_main(h);
}

static int handler_init(upager_t *p, struct upager__handler *h, unsigned idx)
{
	int ret;

	h->pager = p;
	h->idx = idx;
	pthread_mutex_init(&h->done_lock, NULL);
	h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (h->wake_fd < 0)
		return -errno;
	ret = io_uring_queue_init(2 * UPAGER__SLOTS, &h->ring, 0);
	if (ret < 0) {
		close(h->wake_fd);
		h->wake_fd = -1;
		return ret;
	}
	/* A window per slot, but memory only where fills have run: random
	 * faults use a page of each buffer, sequential streams a few buffers. */
	h->bufs = mmap(NULL, (size_t)UPAGER__SLOTS * UPAGER__MAX_WINDOW * p->page_size,
		       PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (h->bufs == MAP_FAILED) {
		h->bufs = NULL;
		io_uring_queue_exit(&h->ring);
		close(h->wake_fd);
		h->wake_fd = -1;
		return -ENOMEM;
	}
	for (unsigned i = 0; i < UPAGER__SLOTS; i++) {
		h->slots[i].h = h;
		h->slots[i].buf = (char *)h->bufs + (size_t)i * UPAGER__MAX_WINDOW * p->page_size;
		h->slots[i].next = h->free;
		h->free = &h->slots[i];
	}
	h->nfree = UPAGER__SLOTS;
	return 0;
}

/*
 * Starts p->nthreads handlers (p->handlers). On failure none is left
 * running and p->handlers is freed.
 */
int upager__handlers_start(upager_t *p)
{
	unsigned started = 0;
	int ret = 0;

	p->handlers = calloc(p->nthreads, sizeof(*p->handlers));
	if (!p->handlers)
		return -ENOMEM;
	for (unsigned i = 0; i < p->nthreads; i++)
		p->handlers[i].wake_fd = -1;
	/* Handler threads take no signals: those are the program's (thread.c). */
	for (; started < p->nthreads; started++) {
		struct upager__handler *h = &p->handlers[started];

		ret = handler_init(p, h, started);
		if (ret == 0) {
			ret = upager__thread_start(&h->thread, handler_thread, h);
			if (ret < 0)
				handler_free(h);
		}
		if (ret < 0)
			break;
	}
	if (ret < 0) {
		stop_handlers(p, started);
		for (unsigned i = 0; i < started; i++)
			handler_free(&p->handlers[i]);
		free(p->handlers);
		p->handlers = NULL;
	}
	return ret;
}

/* Stops and frees every handler: each cancels what it still has in flight
 * and exits when its slots are free. */
void upager__handlers_stop(upager_t *p)
{
	stop_handlers(p, p->nthreads);
	/* Inline faults no handler took: their threads retry, and find their
	 * regions gone (upager_destroy released them first). */
	upager__inline_req_cancel(p);
	for (unsigned i = 0; i < p->nthreads; i++)
		handler_free(&p->handlers[i]);
	free(p->handlers);
	p->handlers = NULL;
}
