/* SPDX-License-Identifier: MIT */
/*
 * The pager's public calls: options, upager_create (the userfaultfd, the
 * zero buffer, the event probe, the prefetch queue, the handler threads)
 * and upager_destroy (every region released, then the same in reverse),
 * and the pager's features and page size. Layer: the top, with region.c
 * (whose upager_release destroy calls for each region left); it calls the
 * handler threads' start and stop, the events' probe, the prefetch queue's
 * lifetime, the registry's free and the uffd, and nothing below calls it.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "upager-int.h"
#include "handler.h"
#include "events.h"
#include "prefetch.h"
#include "registry.h"
#include "inline.h"
#include "evict.h"

#define MAX_THREADS 64

UPAGER__EXPORT void upager_options_init(upager_options_t *opts)
{
	if (!opts)
		return;
	memset(opts, 0, sizeof(*opts));
	opts->nthreads = 1;
	opts->open_method = UPAGER_OPEN_ANY;
	opts->log_level = UPAGER_LOG_WARN;
	opts->spin_us = UPAGER_SPIN_DEFAULT_US;
}

/* ---- lifecycle --------------------------------------------------------- */

/* For timed waits that a change of the wall clock must not stretch. */
static void cond_init_monotonic(pthread_cond_t *cond)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &ca);
	pthread_condattr_destroy(&ca);
}

/* What upager_create set up, whether it got all the way or not; the
 * handler threads are stopped first. */
static void pager_free(upager_t *p)
{
	upager__budget_stop(p);
	upager__events_probe_free(p);
	if (p->zero_buf)
		munmap(p->zero_buf, UPAGER__MAX_WINDOW * p->page_size);
	if (p->uffd >= 0)
		close(p->uffd);
	upager__registry_free(p);
	free(p->regions);
	pthread_rwlock_destroy(&p->lock);
	pthread_mutex_destroy(&p->ev_lock);
	pthread_cond_destroy(&p->ev_cond);
	pthread_mutex_destroy(&p->idle_lock);
	pthread_cond_destroy(&p->idle_cond);
	upager__prefetch_free(p);
	free(p);
}

UPAGER__EXPORT int upager_create(upager_t **pagerp, const upager_options_t *opts)
{
	upager_options_t defaults;
	upager_t *p;
	char why[512];
	int ret;

	if (!pagerp)
		return -EINVAL;
	if (!opts) {
		upager_options_init(&defaults);
		opts = &defaults;
	}
	if (opts->nthreads < 1 || opts->nthreads > MAX_THREADS ||
	    (opts->open_method & ~UPAGER_OPEN_ANY) || opts->log_level < UPAGER_LOG_ERROR ||
	    opts->log_level > UPAGER_LOG_DEBUG)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(opts->reserved) / sizeof(opts->reserved[0]); i++)
		if (opts->reserved[i])
			return -EINVAL;
	for (size_t i = 0; i < sizeof(opts->pad_); i++)
		if (opts->pad_[i])
			return -EINVAL;
	if (opts->fault_mode > UPAGER_FAULT_INLINE || opts->spin_us > 1000000)
		return -EINVAL;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->uffd = -1;
	p->log = opts->log;
	p->log_arg = opts->log_arg;
	p->log_level = opts->log_level;
	p->page_size = (size_t)sysconf(_SC_PAGESIZE);
	p->nthreads = opts->nthreads;
	p->spin_ns = (uint64_t)opts->spin_us * 1000;
	p->handler_cpus = opts->handler_cpus;
	p->inline_faults = opts->fault_mode == UPAGER_FAULT_INLINE;
	upager__prefetch_init(p);
	upager__counters_init(&p->st);
	pthread_rwlock_init(&p->lock, NULL);
	pthread_mutex_init(&p->ev_lock, NULL);
	cond_init_monotonic(&p->ev_cond);
	pthread_mutex_init(&p->idle_lock, NULL);
	pthread_cond_init(&p->idle_cond, NULL);

	ret = upager__uffd_open(opts->open_method,
				opts->disable_features | upager__disable_from_env(),
				p->inline_faults ? UFFD_FEATURE_SIGBUS : 0, &p->uffd, &p->features,
				&p->enabled_kernel_features, why, sizeof(why));
	if (ret < 0) {
		upager__log(p, UPAGER_LOG_ERROR, "userfaultfd unavailable: %s", why);
		goto fail;
	}
	if (p->inline_faults) {
		/* Enabled on this uffd, not only known to the kernel: without
		 * it faults would queue for handler threads that never fill them. */
		if (!(p->enabled_kernel_features & UFFD_FEATURE_SIGBUS)) {
			upager__log(p, UPAGER_LOG_ERROR,
				    "inline faults need UFFD_FEATURE_SIGBUS (Linux 4.14)");
			ret = -ENOTSUP;
			goto fail;
		}
		/* Without them a munmapped or moved mapping stays in the inline
		 * table, and its fills land in whatever is registered there next. */
		if ((p->features & (UPAGER_FEAT_EVENT_UNMAP | UPAGER_FEAT_EVENT_REMAP)) !=
		    (UPAGER_FEAT_EVENT_UNMAP | UPAGER_FEAT_EVENT_REMAP)) {
			upager__log(p, UPAGER_LOG_ERROR,
				    "inline faults need the UNMAP and REMAP events (Linux 4.11)");
			ret = -ENOTSUP;
			goto fail;
		}
		ret = upager__inline_install();
		if (ret < 0)
			goto fail;
	}
	upager__log(p, UPAGER_LOG_INFO, "userfaultfd open via %s, features 0x%llx",
		    p->features & UPAGER_FEAT_OPEN_DEV       ? "/dev/userfaultfd"
		    : p->features & UPAGER_FEAT_OPEN_SYSCALL ? "userfaultfd(2)"
							     : "userfaultfd(2) user-mode-only",
		    (unsigned long long)p->features);

	/* Read-only anonymous memory reads the shared zero page: no RSS. */
	p->zero_buf = mmap(NULL, UPAGER__MAX_WINDOW * p->page_size, PROT_READ,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p->zero_buf == MAP_FAILED) {
		p->zero_buf = NULL;
		ret = -errno;
		goto fail;
	}
	upager__events_probe_init(p);
	ret = upager__budget_start(p, opts);
	if (ret < 0)
		goto fail;
	ret = upager__handlers_start(p);
	if (ret < 0)
		goto fail;
	*pagerp = p;
	return 0;

fail:
	free(p->handlers); /* upager__handlers_start stopped what it started */
	pager_free(p);
	return ret;
}

UPAGER__EXPORT int upager_destroy(upager_t *p)
{
	if (!p)
		return -EINVAL;
	if (upager__on_handler(p))
		return -EDEADLK;
	for (;;) {
		upager_region_t *r = NULL;

		pthread_rwlock_rdlock(&p->lock);
		if (p->nregions)
			r = p->regions[p->nregions - 1];
		pthread_rwlock_unlock(&p->lock);
		if (!r)
			break;
		upager_release(r);
	}
	upager__handlers_stop(p);
	pager_free(p);
	return 0;
}

UPAGER__EXPORT uint64_t upager_features(const upager_t *p)
{
	return p ? p->features : 0;
}

UPAGER__EXPORT size_t upager_page_size(const upager_t *p)
{
	return p ? p->page_size : 0;
}
