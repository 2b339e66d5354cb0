/* SPDX-License-Identifier: MIT */
/*
 * Placing pages into a userfaultfd range: the one set of rules that the
 * library's fault loop (lib/fill.c) and `upagerd handle` (daemon/handle.c)
 * both follow, in the shape of the kernel's selftests (uffd-common.c: one
 * copy_page that wakes on EEXIST) and of mm/userfaultfd.c (one mfill for
 * every mode). Nothing here knows regions, sources or clients: it speaks to
 * the kernel about address ranges, and says what happened.
 */
#ifndef UPAGER_PLACE_H
#define UPAGER_PLACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/userfaultfd.h>

/* Pages one fill may cover (1 MiB of 4 KiB pages); a sequential stream's
 * window doubles up to it. */
#define UPAGER__MAX_WINDOW 256

/* uffd messages read at once. */
#define UPAGER__MSG_BATCH 64

/* The window after `win` for a fault that continues a sequential stream:
 * 2, 4, ... up to UPAGER__MAX_WINDOW. */
static inline size_t upager__window_grow(size_t win)
{
	return win >= UPAGER__MAX_WINDOW / 2 ? UPAGER__MAX_WINDOW : (win ? win * 2 : 2);
}

enum {
	UPAGER__PLACE_ZEROPAGE = 1u << 0, /* src is NULL: map the shared zero page */
	UPAGER__PLACE_WP = 1u << 1,	  /* copy write-protected (UFFDIO_COPY_MODE_WP) */
};

/* One placement: [dst, dst + len) from src, page by page as the kernel lets. */
struct upager__placement {
	int uffd;
	uintptr_t dst;	  /* page aligned */
	size_t len;	  /* a multiple of page_size */
	size_t page_size;
	const void *src;  /* len bytes for dst; NULL with UPAGER__PLACE_ZEROPAGE */
	unsigned flags;	  /* UPAGER__PLACE_* */
	size_t done;	  /* in/out: bytes from dst dealt with (placed or found there) */
	size_t present;	  /* out, added to: pages found already there */
};

/*
 * Places what is left of a placement, [dst + done, dst + len), and wakes
 * the threads waiting there. A partial copy goes on from where it stopped;
 * a page already there (another copy won) is left as it is and its waiters
 * woken, because a failed copy does not wake. A range over VMAs the program
 * split is placed page by page (one ioctl cannot cross a VMA). Returns 0
 * when every page is there, or:
 *   -EAGAIN  the address space is changing (a REMOVE, UNMAP or REMAP event
 *            is pending): read the events, then call again (done says where);
 *   -ENOENT  no registered mapping at dst + done any more: nobody waits;
 *   -EFAULT  no mapping there any more, or the source bytes cannot be read
 *            (a memory file cut short under its mapping): the caller, who
 *            knows its source, says which;
 *   -ESRCH   the process is exiting;
 *   another -errno: the range cannot take the pages.
 */
int upager__place_range(struct upager__placement *pl);

/*
 * Makes the access to the page at `page` fail: a poisoned PTE where `poison`
 * (UFFDIO_POISON: a real SIGBUS with the exact address, on every access until
 * the page is discarded), otherwise, or when the kernel refuses to poison
 * that range, fail(arg, page) raises the signal its own way (and wakes the
 * thread if it should retry). Returns 0 when the access fails, or:
 *   1        the page is there after all (filled meanwhile): its waiters are
 *            woken, nothing failed (fail() may say so too, by returning 1);
 *   -EAGAIN  as for upager__place_range: retry after the events;
 *   -ENOENT, -EFAULT  no mapping there any more: nobody waits;
 *   -ESRCH   the process is exiting;
 *   fail()'s own -errno.
 */
int upager__place_fail(int uffd, uintptr_t page, size_t page_size, bool poison,
		       int (*fail)(void *arg, uintptr_t page), void *arg);

/* Does this uffd take UFFDIO_POISON? (Linux 6.6; asks without touching
 * anything.) */
bool upager__place_can_poison(int uffd);

/*
 * Is the address space of this uffd changing (a REMOVE, UNMAP or REMAP event
 * pending in the kernel)? Asked with a copy onto `probe`, a registered page
 * already placed: it answers EEXIST, or EAGAIN while an event is pending.
 * src is a page of anything (never copied).
 */
bool upager__place_changing(int uffd, uintptr_t probe, const void *src, size_t page_size);

/* Wakes the threads waiting on faults in [start, start + len). */
int upager__place_wake(int uffd, uintptr_t start, size_t len);

/*
 * Moves the page at src to dst (UFFDIO_MOVE: dst registered with uffd and
 * empty), atomically for a thread writing to src: the write lands before
 * the move, in the page moved, or after it, in a missing page that faults.
 * Eviction takes pages away with it (lib/evict.c). 0 or -errno: -EAGAIN
 * while an event is pending, -ENOENT for a page not there, -EEXIST for a
 * dst not empty, -EBUSY for a page shared (forked).
 */
int upager__place_move(int uffd, uintptr_t dst, uintptr_t src, size_t len);
/*
 * The same for a run of pages, in one call (one TLB flush for the run where
 * the kernel batches them, 6.18): the bytes moved, a prefix of the run and
 * maybe short of len (the kernel stops at a page it cannot move, or when it
 * must drop its locks), or -errno when not even the first page moved.
 */
long upager__place_move_some(int uffd, uintptr_t dst, uintptr_t src, size_t len);

/*
 * Reads up to max messages from a non-blocking uffd. Returns how many (0:
 * none now), or -errno: -EPIPE for a closed or garbled descriptor (a read of
 * 0 bytes or not a whole number of messages).
 */
long upager__uffd_read(int uffd, struct uffd_msg *msgs, size_t max);

#endif
