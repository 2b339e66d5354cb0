/* SPDX-License-Identifier: MIT */
/* The zero source: the fault loop maps the zero page or a zeroed copy. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "upager-int.h"

static int zero_fill(upager_source_t *src, struct upager__fill *fill, struct io_uring *ring)
{
	return UPAGER__FILL_ZERO;
}

static int zero_fill_inline(upager_source_t *src, size_t roff, void *buf, size_t len)
{
	return UPAGER__FILL_ZERO;
}

static void zero_destroy(upager_source_t *src)
{
	free(src);
}

static const struct upager__source_ops zero_ops = {
	.name = "zero",
	.fill = zero_fill,
	.fill_inline = zero_fill_inline,
	.destroy = zero_destroy,
};

UPAGER__EXPORT int upager_source_zero(upager_source_t **srcp)
{
	upager_source_t *src;

	if (!srcp)
		return -EINVAL;
	src = malloc(sizeof(*src));
	if (!src)
		return -ENOMEM;
	upager__source_init(src, &zero_ops);
	*srcp = src;
	return 0;
}
