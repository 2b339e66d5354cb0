/* SPDX-License-Identifier: MIT */
/*
 * Busy-polling helpers shared by the library's handler threads and upagerd
 * handle's client threads: waking a sleeping thread on another CPU costs far
 * more than a fault in a VM, so both poll their uffd for a while after a
 * fault. Header-only: both sides inline them in their loops.
 */
#ifndef UPAGER_SPIN_H
#define UPAGER_SPIN_H

#include <stdint.h>
#include <time.h>

static inline void upager__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static inline uint64_t upager__mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
