/* SPDX-License-Identifier: MIT */
/*
 * The placement core (see place.h). Both fault loops met the same kernel
 * answers and once handled them differently: two of the three `upagerd
 * handle` hangs found by hostile testing sat where the copies differed. The
 * rules live here once: EEXIST wakes, a partial copy goes on, EAGAIN waits
 * for the events, a refused poison falls back to the caller's signal.
 */
#include "config.h"

#include <errno.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "compat.h"
#include "place.h"

int upager__place_wake(int uffd, uintptr_t start, size_t len)
{
	struct uffdio_range range = { .start = start, .len = len };

	return ioctl(uffd, UFFDIO_WAKE, &range) < 0 ? -errno : 0;
}

/* One ioctl over [dst, dst + len); returns 0 or -errno, *placed what went in. */
static int place_once(const struct upager__placement *pl, uintptr_t dst, size_t len,
		      int64_t *placed)
{
	int ret;

	if (pl->flags & UPAGER__PLACE_ZEROPAGE) {
		struct uffdio_zeropage zp = { .range = { .start = dst, .len = len } };

		ret = ioctl(pl->uffd, UFFDIO_ZEROPAGE, &zp);
		*placed = zp.zeropage;
	} else {
		struct uffdio_copy cp = {
			.dst = dst,
			.src = (uintptr_t)pl->src + (dst - pl->dst),
			.len = len,
			.mode = (pl->flags & UPAGER__PLACE_WP) ? UFFDIO_COPY_MODE_WP : 0,
		};

		ret = ioctl(pl->uffd, UFFDIO_COPY, &cp);
		*placed = cp.copy;
	}
	return ret < 0 ? -errno : 0;
}

int upager__place_range(struct upager__placement *pl)
{
	bool by_page = false;

	while (pl->done < pl->len) {
		uintptr_t dst = pl->dst + pl->done;
		size_t len = by_page ? pl->page_size : pl->len - pl->done;
		int64_t placed = 0;
		int ret = place_once(pl, dst, len, &placed);

		if (ret == 0) {
			pl->done += len;
			continue;
		}
		if (placed > 0) {
			/* Partial (the kernel says EAGAIN): what went in is woken;
			 * the next attempt meets the cause. */
			pl->done += (size_t)placed;
			continue;
		}
		if (ret == -ENOENT && !by_page && len > pl->page_size) {
			/*
			 * One ioctl must stay within one VMA, and the program may
			 * have split the range (mprotect, mlock, madvise of a part
			 * of it): ENOENT for the whole, though each page is in a
			 * registered VMA. Page by page, only a page truly gone
			 * fails. Returning instead, the faulting thread was woken
			 * to fault again, asked the same window, for ever.
			 */
			by_page = true;
			continue;
		}
		if (ret != -EEXIST)
			return ret;
		/* This page is there already: a failed copy does not wake. */
		upager__place_wake(pl->uffd, dst, pl->page_size);
		pl->present++;
		pl->done += pl->page_size;
	}
	return 0;
}

bool upager__place_changing(int uffd, uintptr_t probe, const void *src, size_t page_size)
{
	struct uffdio_copy cp = { .dst = probe, .src = (uintptr_t)src, .len = page_size };

	return ioctl(uffd, UFFDIO_COPY, &cp) < 0 && errno == EAGAIN;
}

bool upager__place_can_poison(int uffd)
{
	/* With no argument the ioctl, if the kernel has it, stops at reading
	 * it (EFAULT), or at a pending remove (EAGAIN): it touches nothing. */
	return ioctl(uffd, UFFDIO_POISON, NULL) < 0 && (errno == EFAULT || errno == EAGAIN);
}

int upager__place_fail(int uffd, uintptr_t page, size_t page_size, bool poison,
		       int (*fail)(void *arg, uintptr_t page), void *arg)
{
	if (poison) {
		struct uffdio_poison pz = { .range = { .start = page, .len = page_size } };

		if (ioctl(uffd, UFFDIO_POISON, &pz) == 0)
			return 0; /* it wakes the waiters, who fault on the poison */
		switch (errno) {
		case EEXIST: /* filled meanwhile: its waiters get their data */
			upager__place_wake(uffd, page, page_size);
			return 1;
		case EAGAIN:
		case ENOENT:
		case EFAULT:
		case ESRCH:
			return -errno;
		default: /* a range this mapping cannot poison: a signal, then */
			break;
		}
	}
	return fail(arg, page);
}

long upager__uffd_read(int uffd, struct uffd_msg *msgs, size_t max)
{
	ssize_t n = read(uffd, msgs, max * sizeof(*msgs));

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n == 0 || n % (ssize_t)sizeof(*msgs))
		return -EPIPE;
	return n / (long)sizeof(*msgs);
}

long upager__place_move_some(int uffd, uintptr_t dst, uintptr_t src, size_t len)
{
	struct uffdio_move mv = { .dst = dst, .src = src, .len = len };

	if (ioctl(uffd, UFFDIO_MOVE, &mv) == 0)
		return mv.move > 0 && mv.move <= (int64_t)len ? (long)mv.move : (long)len;
	/* Short: -1 with errno (EAGAIN mostly) and move the bytes moved. */
	if (mv.move > 0 && mv.move < (int64_t)len)
		return (long)mv.move;
	return -errno;
}

int upager__place_move(int uffd, uintptr_t dst, uintptr_t src, size_t len)
{
	long ret = upager__place_move_some(uffd, dst, src, len);

	if (ret < 0)
		return (int)ret;
	return ret == (long)len ? 0 : -EAGAIN;
}
