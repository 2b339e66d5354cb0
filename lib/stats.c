/* SPDX-License-Identifier: MIT */
/* Counters and the fault-latency histogram; all updates are relaxed atomics
 * because several handler threads account into the same region. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "spin.h"
#include "upager-int.h"

uint64_t upager__now_ns(void)
{
	return upager__mono_ns();
}

void upager__counters_init(struct upager__counters *c)
{
	memset(c, 0, sizeof(*c));
	atomic_store(&c->lat_min, UINT64_MAX);
}

static unsigned bucket_of(uint64_t v)
{
	unsigned e;

	if (v < UPAGER__HIST_SUB)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v); /* >= 4 */
	unsigned b = UPAGER__HIST_SUB + (e - 4) * UPAGER__HIST_SUB +
		     (unsigned)((v >> (e - 4)) & (UPAGER__HIST_SUB - 1));
	return b < UPAGER__HIST_BUCKETS ? b : UPAGER__HIST_BUCKETS - 1;
}

/* The middle of a bucket's range. */
static uint64_t bucket_value(unsigned b)
{
	unsigned e, sub;

	if (b < UPAGER__HIST_SUB)
		return b;
	e = (b - UPAGER__HIST_SUB) / UPAGER__HIST_SUB + 4;
	sub = (b - UPAGER__HIST_SUB) % UPAGER__HIST_SUB;
	uint64_t lo = (1ull << e) + ((uint64_t)sub << (e - 4));
	return lo + (1ull << (e - 4)) / 2;
}

void upager__lat_record(struct upager__counters *c, uint64_t ns)
{
	uint64_t cur;

	UPAGER__ADD(c, lat[bucket_of(ns)], 1);
	UPAGER__ADD(c, lat_n, 1);
	cur = atomic_load_explicit(&c->lat_min, memory_order_relaxed);
	while (ns < cur && !atomic_compare_exchange_weak(&c->lat_min, &cur, ns))
		;
	cur = atomic_load_explicit(&c->lat_max, memory_order_relaxed);
	while (ns > cur && !atomic_compare_exchange_weak(&c->lat_max, &cur, ns))
		;
}

static uint64_t percentile(const struct upager__counters *c, uint64_t n, unsigned pct)
{
	uint64_t rank = (n * pct + 99) / 100, seen = 0;

	if (rank == 0)
		rank = 1;
	for (unsigned b = 0; b < UPAGER__HIST_BUCKETS; b++) {
		seen += atomic_load_explicit(&c->lat[b], memory_order_relaxed);
		if (seen >= rank)
			return bucket_value(b);
	}
	return atomic_load(&c->lat_max);
}

void upager__counters_read(const struct upager__counters *c, upager_stats_t *out)
{
	int64_t resident = atomic_load(&c->pages_resident);

	memset(out, 0, sizeof(*out));
	out->faults = atomic_load(&c->faults);
	out->read_faults = atomic_load(&c->read_faults);
	out->write_faults = atomic_load(&c->write_faults);
	out->coalesced = atomic_load(&c->coalesced);
	out->pages_filled = atomic_load(&c->pages_filled);
	out->bytes_filled = atomic_load(&c->bytes_filled);
	out->pages_zero = atomic_load(&c->pages_zero);
	out->fill_errors = atomic_load(&c->fill_errors);
	out->pages_prefetched = atomic_load(&c->pages_prefetched);
	out->pages_evicted = atomic_load(&c->pages_evicted);
	out->pages_written = atomic_load(&c->pages_written);
	out->bytes_written = atomic_load(&c->bytes_written);
	out->write_errors = atomic_load(&c->write_errors);
	out->pages_resident = resident > 0 ? (uint64_t)resident : 0;
	out->lat_samples = atomic_load(&c->lat_n);
	if (out->lat_samples) {
		uint64_t lo = atomic_load(&c->lat_min), hi = atomic_load(&c->lat_max);
		out->lat_min_ns = lo;
		out->lat_max_ns = hi;
		/* Bucket midpoints can stray outside what was seen; clamp them. */
		out->lat_p50_ns = percentile(c, out->lat_samples, 50);
		out->lat_p99_ns = percentile(c, out->lat_samples, 99);
		if (out->lat_p50_ns < lo) out->lat_p50_ns = lo;
		if (out->lat_p99_ns < lo) out->lat_p99_ns = lo;
		if (out->lat_p50_ns > hi) out->lat_p50_ns = hi;
		if (out->lat_p99_ns > hi) out->lat_p99_ns = hi;
	}
}

UPAGER__EXPORT int upager_region_stats(const upager_region_t *region, upager_stats_t *stats)
{
	if (!region || !stats)
		return -EINVAL;
	upager__counters_read(&region->st, stats);
	stats->mem_budget = region->pager->mem_budget;
	return 0;
}

UPAGER__EXPORT int upager_stats(const upager_t *pager, upager_stats_t *stats)
{
	if (!pager || !stats)
		return -EINVAL;
	upager__counters_read(&pager->st, stats);
	stats->mem_budget = pager->mem_budget;
	return 0;
}
