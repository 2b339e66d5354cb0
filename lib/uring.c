/* SPDX-License-Identifier: MIT */
/* io_uring helpers that the library and upagerd both need, written once. */
#include "config.h"

#include "uring.h"

struct io_uring_sqe *upp_get_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	return sqe;
}
