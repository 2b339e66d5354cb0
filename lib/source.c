/* SPDX-License-Identifier: MIT */
/* What every source shares: reference counting and the ring helper. */
#include "config.h"

#include <errno.h>

#include "upager-int.h"

void upager__source_init(upager_source_t *src, const struct upager__source_ops *ops)
{
	src->ops = ops;
	atomic_init(&src->refs, 1);
	src->track_writes = false;
	src->snap_id = 0;
	src->writable = false; /* upager_source_file_rw sets it */
}

unsigned upager__source_around(upager_source_t *src, size_t pg, size_t page_size)
{
	const struct upager__source_ops *ops = src->ops;
	unsigned big = ops->cached_around;

	if (big > ops->fault_around && ops->cached &&
	    ops->cached(src, pg / big * big * page_size, (size_t)big * page_size))
		return big;
	return ops->fault_around ? ops->fault_around : 1;
}

void upager__source_ref(upager_source_t *src)
{
	atomic_fetch_add(&src->refs, 1);
}

void upager__source_unref(upager_source_t *src)
{
	if (atomic_fetch_sub(&src->refs, 1) == 1)
		src->ops->destroy(src);
}

UPAGER__EXPORT int upager_source_release(upager_source_t *src)
{
	if (!src)
		return -EINVAL;
	upager__source_unref(src);
	return 0;
}
