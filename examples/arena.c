/* SPDX-License-Identifier: MIT */
/*
 * arena: a bump allocator on upager's reserve/commit model.
 *
 * It reserves 64 GiB of address space up front (free), commits it in 1 MiB
 * steps as the frontier grows (still free), pays for a page only when an
 * allocation first touches it, and on reset decommits everything, giving
 * the memory back while keeping the addresses. Watch RSS follow use.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <upager.h>

#define ARENA_RESERVE (64ull << 30)
#define COMMIT_STEP (1u << 20)

struct arena {
	upager_region_t *region;
	uint8_t *base;
	size_t used, committed;
};

static int arena_init(struct arena *a, upager_t *pager)
{
	upager_source_t *zero;
	int ret = upager_source_zero(&zero);

	if (ret < 0)
		return ret;
	ret = upager_reserve(pager, ARENA_RESERVE, zero, 0, &a->region);
	upager_source_release(zero);
	if (ret < 0)
		return ret;
	a->base = upager_region_addr(a->region);
	a->used = a->committed = 0;
	return 0;
}

static void *arena_alloc(struct arena *a, size_t size)
{
	size_t start = (a->used + 15) & ~(size_t)15, end = start + size;

	if (end > ARENA_RESERVE)
		return NULL;
	if (end > a->committed) {
		size_t grow = (end - a->committed + COMMIT_STEP - 1) / COMMIT_STEP * COMMIT_STEP;
		if (upager_commit(a->region, a->committed, grow) < 0)
			return NULL;
		a->committed += grow;
	}
	a->used = end;
	return a->base + start;
}

static int arena_reset(struct arena *a)
{
	int ret = a->committed ? upager_decommit(a->region, 0, a->committed) : 0;

	a->used = a->committed = 0;
	return ret;
}

static long rss_kib(void)
{
	long size, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &size, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void report(const char *what, upager_t *pager, long base)
{
	upager_stats_t st;

	upager_stats(pager, &st);
	printf("%-34s RSS %+8ld KiB   faults %7llu   resident pages %7llu\n", what,
	       rss_kib() - base, (unsigned long long)st.faults,
	       (unsigned long long)st.pages_resident);
}

int main(void)
{
	struct arena a;
	upager_t *pager;
	char why[512];
	long base;
	int ret;

	if ((ret = upager_probe(0, NULL, why, sizeof(why))) < 0) {
		fprintf(stderr, "arena: userfaultfd unavailable: %s\n", why);
		return 77;
	}
	if ((ret = upager_create(&pager, NULL)) < 0 || (ret = arena_init(&a, pager)) < 0) {
		fprintf(stderr, "arena: %s\n", upager_strerror(ret));
		return 1;
	}
	base = rss_kib();
	printf("arena: reserved %llu GiB at %p\n", ARENA_RESERVE >> 30, (void *)a.base);
	report("after reserve", pager, base);

	for (int round = 0; round < 2; round++) {
		size_t n = round == 0 ? 100000 : 400000;
		uint64_t sum = 0;

		for (size_t i = 0; i < n; i++) {
			uint64_t *node = arena_alloc(&a, 256);
			if (!node) {
				fprintf(stderr, "arena: out of space\n");
				return 1;
			}
			node[0] = i;
			sum += node[0];
		}
		printf("round %d: %zu allocations of 256 B, %zu MiB committed (sum %llu)\n", round,
		       n, a.committed >> 20, (unsigned long long)sum);
		report("  after allocating", pager, base);
		if ((ret = arena_reset(&a)) < 0) {
			fprintf(stderr, "arena: reset: %s\n", upager_strerror(ret));
			return 1;
		}
		report("  after reset (decommit)", pager, base);
	}
	upager_release(a.region);
	upager_destroy(pager);
	return 0;
}
