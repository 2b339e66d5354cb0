/* SPDX-License-Identifier: MIT */
/* What the bench programs share: their environment knobs and their clock. */
#ifndef UPAGER_BENCH_COMMON_H
#define UPAGER_BENCH_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* The number in environment variable name, else dflt. */
static inline uint64_t bench_env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);

	return s && *s ? strtoull(s, NULL, 10) : dflt;
}

/* Seconds on the monotonic clock. */
static inline double bench_now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

#endif
