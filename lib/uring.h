/* SPDX-License-Identifier: MIT */
/* io_uring helpers shared by the library's handlers and upagerd. Internal. */
#ifndef UPAGER_URING_H
#define UPAGER_URING_H

#include <liburing.h>

/* An SQE, submitting what is queued if the ring is full; NULL only if still
 * none (the kernel is out of memory): callers cope. */
struct io_uring_sqe *upp_get_sqe(struct io_uring *ring);

#endif
