/* SPDX-License-Identifier: MIT */
/* The callback source: the user's function fills the page, synchronously,
 * on the handler thread. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "upager-int.h"

struct callback_source {
	upager_source_t base;
	upager_fill_fn fn;
	void *arg;
	void (*destroy)(void *arg);
};

static int callback_fill(upager_source_t *src, struct upager__fill *fill,
			 struct io_uring *ring)
{
	struct callback_source *cs = (struct callback_source *)src;
	int ret = cs->fn(cs->arg, fill->roff, fill->buf, fill->len);

	if (ret == 0)
		return UPAGER__FILL_DATA;
	/* A positive return breaks the contract; it still must not map the page. */
	return ret < 0 && ret > -4096 ? ret : -EIO;
}

static void callback_destroy(upager_source_t *src)
{
	struct callback_source *cs = (struct callback_source *)src;

	if (cs->destroy)
		cs->destroy(cs->arg);
	free(cs);
}

static const struct upager__source_ops callback_ops = {
	.name = "callback",
	.fill = callback_fill,
	.destroy = callback_destroy,
};

UPAGER__EXPORT int upager_source_callback(upager_fill_fn fill, void *arg,
					  void (*destroy)(void *arg), upager_source_t **srcp)
{
	struct callback_source *cs;

	if (!fill || !srcp)
		return -EINVAL;
	cs = calloc(1, sizeof(*cs));
	if (!cs)
		return -ENOMEM;
	upager__source_init(&cs->base, &callback_ops);
	cs->fn = fill;
	cs->arg = arg;
	cs->destroy = destroy;
	*srcp = &cs->base;
	return 0;
}
