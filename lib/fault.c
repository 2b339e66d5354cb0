/* SPDX-License-Identifier: MIT */
/*
 * The fault loop: one per handler thread, on its own io_uring.
 *
 * The ring carries a poll on the userfaultfd, a poll on the stop eventfd,
 * and the sources' I/O. Fault messages are read in batches; each takes a
 * fill slot, its source either answers at once (zero, callback) or submits
 * I/O whose completion comes back on the ring, so a slow read holds one
 * slot and not the thread. Placement (UFFDIO_COPY/ZEROPAGE/POISON) happens
 * under the pager's lock held shared, after checking that the page still
 * belongs to a live, committed region: decommit and release take the lock
 * exclusively, so a fill never lands in memory that was taken away.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compat.h"
#include "upager-int.h"

enum { TAG_UFFD = 1, TAG_WAKE = 2, TAG_CANCEL = 3 };

static void arm_poll(struct upager__handler *h, int fd, uint64_t tag)
{
	struct io_uring_sqe *sqe = upager__get_sqe(&h->ring);

	/* The ring has room for every slot's I/O twice over; this cannot fail
	 * unless the kernel is out of memory, and then the next loop retries. */
	if (!sqe)
		return;
	io_uring_prep_poll_add(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, tag);
	if (tag == TAG_UFFD)
		h->poll_armed = true;
}

/* ---- slots ---- */

static struct upager__fill *slot_get(struct upager__handler *h)
{
	struct upager__fill *f = h->free;

	h->free = f->next;
	h->nfree--;
	f->next = NULL;
	return f;
}

static void slot_put(struct upager__handler *h, struct upager__fill *f)
{
	f->region = NULL;
	f->next = h->free;
	h->free = f;
	h->nfree++;
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

/* ---- placing pages ---- */

/*
 * The faulting thread gets SIGBUS. Where the kernel has UFFDIO_POISON the
 * page gets a poisoned PTE: a real fault, si_code BUS_ADRERR and the exact
 * address, and every later access too, until decommit. Otherwise we queue
 * SIGBUS to that thread before waking it to retry its access. The kernel
 * lets only a process's main thread send a kernel si_code, so it arrives as
 * SI_QUEUE, with the page address in si_addr and in si_value.sival_ptr.
 */
static int place_error(upager_t *p, struct upager__fill *f)
{
	if (p->features & UPAGER_FEAT_POISON) {
		struct uffdio_poison pz = {
			.range = { .start = f->addr + f->placed, .len = f->len - f->placed },
		};
		if (ioctl(p->uffd, UFFDIO_POISON, &pz) == 0)
			return 0;
		if (errno == EAGAIN)
			return -EAGAIN;
		if (errno != EEXIST) /* EEXIST: a page is there; just wake */
			return -errno;
	} else {
		siginfo_t si;
		long ret;

		memset(&si, 0, sizeof(si));
		si.si_signo = SIGBUS;
		si.si_code = SI_QUEUE;
		si.si_addr = (void *)f->addr; /* shares its bytes with si_pid/si_uid */
		si.si_value.sival_ptr = (void *)f->addr;
		if (f->tid && (p->features & UPAGER_FEAT_THREAD_ID))
			ret = syscall(SYS_rt_tgsigqueueinfo, getpid(), f->tid, SIGBUS, &si);
		else
			ret = syscall(SYS_rt_sigqueueinfo, getpid(), SIGBUS, &si);
		if (ret < 0)
			upager__log(p, UPAGER_LOG_ERROR, "cannot queue SIGBUS to thread %u: %s",
				    f->tid, strerror(errno));
	}
	upager__uffd_wake(p->uffd, f->addr, f->len);
	return 0;
}

static int place_data(upager_t *p, struct upager__fill *f, const void *src)
{
	struct uffdio_copy c = {
		.dst = f->addr + f->placed,
		.src = (uintptr_t)src + f->placed,
		.len = f->len - f->placed,
	};

	if (ioctl(p->uffd, UFFDIO_COPY, &c) == 0)
		return 0;
	if (c.copy > 0)
		f->placed += (size_t)c.copy;
	return -errno;
}

/*
 * Read faults map the shared zero page (no memory until written); write
 * faults get a zeroed copy, which spares them the second fault that a
 * write to the zero page would take.
 */
static int place_zero(upager_t *p, struct upager__fill *f)
{
	if (!f->write && (p->features & UPAGER_FEAT_ZEROPAGE)) {
		struct uffdio_zeropage z = {
			.range = { .start = f->addr + f->placed, .len = f->len - f->placed },
		};
		if (ioctl(p->uffd, UFFDIO_ZEROPAGE, &z) == 0)
			return 0;
		if (z.zeropage > 0)
			f->placed += (size_t)z.zeropage;
		return -errno;
	}
	return place_data(p, f, p->zero_page);
}

/* Is the fill's page still where and what it was when the fault came? */
static bool still_valid(upager_t *p, const struct upager__fill *f)
{
	const struct upager__mapping *m = upager__lookup(p, f->addr);

	if (!f->region)
		return m == NULL; /* unknown address: still nobody's */
	return m && m->region == f->region && m->roff + (f->addr - m->start) == f->roff &&
	       !f->region->dead && upager__region_committed(f->region, f->roff);
}

/*
 * Fill counts are taken before the page is placed, because placing it wakes
 * the faulting thread, which may read the statistics at once; they are
 * taken back if placing fails. Latency is recorded after, so that it
 * includes the copy: it alone may lag the faulting thread.
 */
static void count_fill(upager_t *p, struct upager__fill *f, int64_t sign)
{
	upager_region_t *r = f->region;
	int64_t pages = (int64_t)(f->len / p->page_size) * sign;
	int64_t bytes = (int64_t)f->len * sign;
	bool zero = f->result == UPAGER__FILL_ZERO;

	UPAGER__ADD(&p->st, pages_filled, (uint64_t)pages);
	UPAGER__ADD(&p->st, bytes_filled, (uint64_t)bytes);
	UPAGER__ADD(&p->st, pages_zero, zero ? (uint64_t)pages : 0);
	if (!r)
		return;
	UPAGER__ADD(&r->st, pages_filled, (uint64_t)pages);
	UPAGER__ADD(&r->st, bytes_filled, (uint64_t)bytes);
	UPAGER__ADD(&r->st, pages_zero, zero ? (uint64_t)pages : 0);
	if (sign > 0)
		for (size_t off = 0; off < f->len; off += p->page_size)
			upager__region_set_resident(r, f->roff + off);
}

static void count_outcome(upager_t *p, struct upager__fill *f, int ret)
{
	upager_region_t *r = f->region;

	if (f->result >= 0 && ret != 0) {
		count_fill(p, f, -1);
		/* EEXIST: someone else's page is there, and they counted it. */
		if (r && ret != -EEXIST)
			upager__region_clear_resident(r, f->roff, f->len);
	}
	if (f->result < 0 && ret == 0) {
		UPAGER__ADD(&p->st, fill_errors, 1);
		if (r)
			UPAGER__ADD(&r->st, fill_errors, 1);
	}
	if (ret == -EEXIST) {
		UPAGER__ADD(&p->st, coalesced, 1);
		if (r)
			UPAGER__ADD(&r->st, coalesced, 1);
	}
	if (ret != -EAGAIN) {
		uint64_t ns = upager__now_ns() - f->t0;

		upager__lat_record(&p->st, ns);
		if (r)
			upager__lat_record(&r->st, ns);
	}
}

static void fill_done(struct upager__handler *h, struct upager__fill *f)
{
	if (f->region)
		upager__region_unref(f->region);
	slot_put(h, f);
}

/*
 * Maps the result of a fill. Returns false if it must be retried (EAGAIN:
 * the program's munmap/mremap/madvise is in progress and its event must be
 * read first).
 */
static bool fill_place(struct upager__handler *h, struct upager__fill *f)
{
	upager_t *p = h->pager;
	int ret;

	pthread_rwlock_rdlock(&p->lock);
	if (!still_valid(p, f)) {
		pthread_rwlock_unlock(&p->lock);
		/* Let the thread retry: it now finds the memory gone or changed. */
		upager__uffd_wake(p->uffd, f->addr, f->len);
		fill_done(h, f);
		return true;
	}
	if (f->result >= 0)
		count_fill(p, f, +1);
	if (f->result == UPAGER__FILL_DATA)
		ret = place_data(p, f, f->buf);
	else if (f->result == UPAGER__FILL_ZERO)
		ret = place_zero(p, f);
	else
		ret = place_error(p, f);
	count_outcome(p, f, ret);
	pthread_rwlock_unlock(&p->lock);

	switch (ret) {
	case 0:
		break;
	case -EAGAIN:
		return false;
	case -EEXIST:
		/* Another fill won the race; the losing copy does not wake. */
		upager__uffd_wake(p->uffd, f->addr, f->len);
		break;
	default:
		/* ENOENT/EFAULT: the VMA went away under us; ESRCH: the mm is exiting. */
		upager__log(p, UPAGER_LOG_DEBUG, "placing %#lx failed: %s",
			    (unsigned long)f->addr, strerror(-ret));
		upager__uffd_wake(p->uffd, f->addr, f->len);
		break;
	}
	fill_done(h, f);
	return true;
}

static void fill_finish(struct upager__handler *h, struct upager__fill *f, int result)
{
	f->result = result;
	if (result < 0)
		upager__log(h->pager, UPAGER_LOG_WARN,
			    "fill of region offset %#zx failed (%s): access gets SIGBUS", f->roff,
			    strerror(-result));
	if (!fill_place(h, f)) {
		f->next = h->retry;
		h->retry = f;
		h->uffd_ready = true; /* read the pending event that caused EAGAIN */
	}
}

/* ---- messages ---- */

static bool in_flight(struct upager__handler *h, uintptr_t addr)
{
	for (struct upager__fill *f = h->inflight; f; f = f->next)
		if (addr >= f->addr && addr < f->addr + f->len)
			return true;
	return false;
}

static void handle_fault(struct upager__handler *h, const struct uffd_msg *msg)
{
	upager_t *p = h->pager;
	uintptr_t addr = (uintptr_t)msg->arg.pagefault.address & ~(uintptr_t)(p->page_size - 1);
	bool write = msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE;
	const struct upager__mapping *m;
	struct upager__fill *f;
	upager_region_t *r = NULL;
	size_t roff = 0;
	int ret;

	UPAGER__ADD(&p->st, faults, 1);
	UPAGER__ADD(&p->st, read_faults, !write);
	UPAGER__ADD(&p->st, write_faults, write);

	pthread_rwlock_rdlock(&p->lock);
	m = upager__lookup(p, addr);
	if (m) {
		r = m->region;
		roff = m->roff + (addr - m->start);
		UPAGER__ADD(&r->st, faults, 1);
		UPAGER__ADD(&r->st, read_faults, !write);
		UPAGER__ADD(&r->st, write_faults, write);
		if (r->dead || !upager__region_committed(r, roff)) {
			/* Decommitted after the access: on retry it meets PROT_NONE. */
			pthread_rwlock_unlock(&p->lock);
			upager__uffd_wake(p->uffd, addr, p->page_size);
			return;
		}
		if (in_flight(h, addr)) {
			pthread_rwlock_unlock(&p->lock);
			UPAGER__ADD(&p->st, coalesced, 1);
			UPAGER__ADD(&r->st, coalesced, 1);
			return; /* its UFFDIO_COPY wakes every thread waiting on the page */
		}
		upager__region_ref(r);
	}
	pthread_rwlock_unlock(&p->lock);

	f = slot_get(h);
	f->region = r;
	f->addr = addr;
	f->roff = roff;
	f->len = p->page_size;
	f->done = f->placed = 0;
	f->write = write;
	f->tid = (p->features & UPAGER_FEAT_THREAD_ID) ? msg->arg.pagefault.feat.ptid : 0;
	f->t0 = upager__now_ns();

	/*
	 * A registered address in no region: the part of a region that mremap
	 * grew, or one being released. Anonymous memory reads zero there; do
	 * what the kernel would.
	 */
	ret = r ? r->src->ops->fill(r->src, f, &h->ring) : UPAGER__FILL_ZERO;
	if (ret == UPAGER__FILL_PENDING) {
		f->next = h->inflight;
		h->inflight = f;
		return;
	}
	fill_finish(h, f, ret);
}

static void handle_message(struct upager__handler *h, const struct uffd_msg *msg)
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
		if (upager__map_cut(p, msg->arg.remove.start, msg->arg.remove.end, true) < 0)
			upager__log(p, UPAGER_LOG_ERROR, "registry: out of memory on munmap");
		pthread_rwlock_unlock(&p->lock);
		break;
	case UFFD_EVENT_REMAP:
		pthread_rwlock_wrlock(&p->lock);
		if (upager__map_move(p, msg->arg.remap.from, msg->arg.remap.to,
				     msg->arg.remap.len) < 0)
			upager__log(p, UPAGER_LOG_ERROR, "registry: out of memory on mremap");
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

/* Reads what the uffd holds; events are handled now, faults queue for a slot. */
static void read_messages(struct upager__handler *h)
{
	upager_t *p = h->pager;
	struct uffd_msg msgs[UPAGER__MSG_BATCH];

	while (h->uffd_ready) {
		ssize_t n = read(p->uffd, msgs, sizeof(msgs));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				upager__log(p, UPAGER_LOG_ERROR, "reading userfaultfd: %s",
					    strerror(errno));
			h->uffd_ready = false;
			break;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT) {
				handle_message(h, &msgs[i]);
				continue;
			}
			if (h->nbacklog == h->capbacklog) {
				size_t cap = h->capbacklog ? h->capbacklog * 2 : 64;
				struct uffd_msg *b = realloc(h->backlog, cap * sizeof(*b));
				if (!b) {
					/* Unanswered, the thread stays blocked; waking it
					 * makes it fault again, and us see it again later. */
					upager__uffd_wake(p->uffd,
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
		if ((size_t)n < sizeof(msgs))
			h->uffd_ready = false; /* drained: the poll, armed next, sees anything newer */
	}
}

static void run_backlog(struct upager__handler *h)
{
	size_t i = 0;

	if (h->nbacklog == 0)
		return;
	while (i < h->nbacklog && h->nfree > 0)
		handle_fault(h, &h->backlog[i++]);
	memmove(h->backlog, h->backlog + i, (h->nbacklog - i) * sizeof(h->backlog[0]));
	h->nbacklog -= i;
}

static void run_retries(struct upager__handler *h)
{
	struct upager__fill *list = h->retry;

	h->retry = NULL;
	while (list) {
		struct upager__fill *f = list;

		list = f->next;
		f->next = NULL;
		if (!fill_place(h, f)) {
			f->next = h->retry;
			h->retry = f;
		}
	}
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
		sqe = upager__get_sqe(&h->ring);
		if (sqe) {
			io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)f, 0);
			io_uring_sqe_set_data64(sqe, TAG_CANCEL);
		}
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
		cancel_dead_io(h);
		if (!h->stopping)
			arm_poll(h, h->wake_fd, TAG_WAKE);
		return;
	}
	if (tag == TAG_CANCEL)
		return;
	f = (struct upager__fill *)(uintptr_t)tag;
	if (atomic_load_explicit(&f->region->dead, memory_order_relaxed))
		ret = -ECANCELED; /* released: nothing to place, do not read on */
	else
		ret = f->region->src->ops->complete(f->region->src, f, cqe->res, &h->ring);
	if (ret == UPAGER__FILL_PENDING)
		return;
	list_remove(&h->inflight, f);
	fill_finish(h, f, ret);
}

void *upager__handler_main(void *arg)
{
	struct upager__handler *h = arg;
	upager_t *p = h->pager;

	arm_poll(h, h->wake_fd, TAG_WAKE);
	h->uffd_ready = true; /* faults may have queued before we started */

	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		int ret;

		if (h->uffd_ready && !h->stopping)
			read_messages(h);
		run_backlog(h);
		run_retries(h);
		if (h->stopping && h->nfree == UPAGER__SLOTS)
			break;
		if (!h->uffd_ready && !h->poll_armed && !h->stopping)
			arm_poll(h, p->uffd, TAG_UFFD);

		if (h->retry) {
			/* The madvise/munmap caller must run before EAGAIN clears. */
			struct __kernel_timespec ts = { .tv_nsec = 50 * 1000 };
			ret = io_uring_submit_and_wait_timeout(&h->ring, &cqe, 1, &ts, NULL);
		} else {
			ret = io_uring_submit_and_wait(&h->ring, 1);
		}
		if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EAGAIN && ret != -EBUSY)
			upager__log(p, UPAGER_LOG_ERROR, "io_uring wait: %s", strerror(-ret));

		io_uring_for_each_cqe(&h->ring, head, cqe) {
			handle_cqe(h, cqe);
			seen++;
		}
		io_uring_cq_advance(&h->ring, seen);
	}
	return NULL;
}
