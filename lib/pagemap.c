/* SPDX-License-Identifier: MIT */
/*
 * Which pages of our own memory are populated, and which were written since
 * upager placed them: PAGEMAP_SCAN where the kernel has it (Linux 6.7),
 * /proc/self/pagemap read eight bytes a page otherwise. And the list of
 * regions whose writes are tracked (restored snapshots), which is what lets
 * an incremental save believe a page's "not written" bit.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "compat.h"
#include "upager-int.h"
#include "env.h"

static int open_pagemap(void)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

bool upager__pagemap_scan_works(void)
{
	static atomic_int known; /* 0 unknown, 1 yes, 2 no */
	int k = atomic_load(&known);

	if (k == 0) {
		struct pm_scan_arg a = { .size = sizeof(a) };
		uintptr_t probe = (uintptr_t)&a & ~(uintptr_t)4095; /* our stack: mapped */
		int fd = open_pagemap();

		/* An empty range walks nothing; kernels without the ioctl say ENOTTY. */
		a.start = a.end = probe;
		k = fd >= 0 && ioctl(fd, PAGEMAP_SCAN, &a) >= 0 ? 1 : 2;
		if (fd >= 0)
			close(fd);
		atomic_store(&known, k);
	}
	return k == 1;
}

/* The fallback: bits 63 (present) and 62 (swapped) of each pagemap entry. */
static int read_pagemap(int fd, uintptr_t addr, size_t npages, size_t ps, uint8_t *out,
			size_t stride)
{
	uint64_t buf[512];

	for (size_t i = 0; i < npages;) {
		size_t n = npages - i < 512 ? npages - i : 512;
		ssize_t got = pread(fd, buf, n * 8, (off_t)((addr / ps + i) * 8));

		if (got <= 0 || got % 8)
			return got < 0 ? -errno : -EIO;
		for (size_t j = 0; j < (size_t)got / 8; j++)
			out[(i + j) * stride] = (buf[j] >> 62) & 3 ? UPAGER__PM_POPULATED : 0;
		i += (size_t)got / 8;
	}
	return 0;
}

/*
 * One walk returns at most vec_len ranges of equal categories; a walk that
 * stops early says where in walk_end, and the next starts there. Only
 * populated pages are asked for, so holes cost nothing in the output.
 */
static int scan_pagemap(int fd, uintptr_t addr, size_t npages, size_t ps, uint8_t *out,
			size_t stride, bool written)
{
	struct page_region vec[256];
	uintptr_t end = addr + npages * ps;
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.end = end,
		.vec = (uintptr_t)vec,
		.vec_len = sizeof(vec) / sizeof(vec[0]),
		.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_WRITTEN |
			       PAGE_IS_WPALLOWED,
	};

	for (size_t i = 0; i < npages; i++)
		out[i * stride] = 0;
	for (uintptr_t at = addr; at < end;) {
		long n;

		a.start = at;
		a.walk_end = 0;
		n = ioctl(fd, PAGEMAP_SCAN, &a);
		if (n < 0)
			return -errno;
		for (long k = 0; k < n; k++) {
			uint8_t v = UPAGER__PM_POPULATED;

			if (vec[k].start < at || vec[k].end > end || vec[k].start >= vec[k].end)
				return -EIO; /* not what we asked for: trust nothing */
			/* Write-protected by our fill and not written since. */
			if (written && (vec[k].categories & PAGE_IS_WPALLOWED) &&
			    !(vec[k].categories & PAGE_IS_WRITTEN))
				v |= UPAGER__PM_CLEAN;
			for (uintptr_t pg = vec[k].start; pg < vec[k].end; pg += ps)
				out[(pg - addr) / ps * stride] = v;
		}
		if (a.walk_end <= at || a.walk_end > end)
			return -EIO;
		at = a.walk_end;
	}
	return 0;
}

int upager__pagemap(uintptr_t addr, size_t npages, size_t ps, uint8_t *out, size_t stride,
		    bool written)
{
	int fd = open_pagemap(), ret;
	/* UPAGER_DISABLE read here, not through uffd.c, which asks us whether
	 * the scan works: no cycle between the two. */
	bool scan = upager__pagemap_scan_works() && !upp_env_disables("pagemap_scan");

	if (fd < 0)
		return fd;
	ret = scan ? scan_pagemap(fd, addr, npages, ps, out, stride, written) : -ENOTTY;
	/* A mapping the scan does not take still has its pagemap entries. */
	if (ret < 0)
		ret = read_pagemap(fd, addr, npages, ps, out, stride);
	close(fd);
	return ret;
}

int upager__pagemap_open(void)
{
	return open_pagemap();
}

int upager__pagemap_populated(int fd, uintptr_t addr, size_t ps)
{
	uint8_t pm;
	int ret = read_pagemap(fd, addr, 1, ps, &pm, 1);

	return ret < 0 ? ret : pm == UPAGER__PM_POPULATED;
}

/*
 * Written pages (PAGE_IS_WRITTEN: no uffd-wp bit, i.e. written since a fill
 * placed the page protected or since the last take) among those present.
 * With take, PM_SCAN_WP_MATCHING protects what it reports in the same walk,
 * page table lock held: a write after it shows as written again.
 */
int upager__pagemap_written(int fd, uintptr_t addr, size_t npages, size_t ps, bool *out,
			    bool take)
{
	struct page_region vec[256];
	uintptr_t end = addr + npages * ps;
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.end = end,
		.vec = (uintptr_t)vec,
		.vec_len = sizeof(vec) / sizeof(vec[0]),
		.flags = take ? PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC : 0,
		.category_mask = PAGE_IS_WRITTEN | PAGE_IS_PRESENT,
		.return_mask = PAGE_IS_WRITTEN,
	};

	if (upp_env_disables("pagemap_scan") || !upager__pagemap_scan_works())
		return -ENOTSUP;
	memset(out, 0, npages * sizeof(*out));
	for (uintptr_t at = addr; at < end;) {
		long n;

		a.start = at;
		a.walk_end = 0;
		n = ioctl(fd, PAGEMAP_SCAN, &a);
		if (n < 0)
			return -errno;
		for (long k = 0; k < n; k++) {
			if (vec[k].start < at || vec[k].end > end || vec[k].start >= vec[k].end)
				return -EIO;
			for (uintptr_t pg = vec[k].start; pg < vec[k].end; pg += ps)
				out[(pg - addr) / ps] = true;
		}
		if (a.walk_end <= at || a.walk_end > end)
			return -EIO;
		at = a.walk_end;
	}
	return 0;
}

/* ---- regions whose writes are tracked ---- */

struct tracked {
	uintptr_t base;
	size_t size;
	uint32_t id;
};

static pthread_mutex_t tracked_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tracked *tracked;
static size_t ntracked, captracked;

int upager__track_add(uintptr_t base, size_t size, uint32_t id)
{
	int ret = 0;

	pthread_mutex_lock(&tracked_lock);
	if (ntracked == captracked) {
		size_t cap = captracked ? captracked * 2 : 8;
		struct tracked *n = realloc(tracked, cap * sizeof(*n));

		if (n) {
			tracked = n;
			captracked = cap;
		}
	}
	if (ntracked < captracked)
		tracked[ntracked++] = (struct tracked){ base, size, id };
	else
		ret = -ENOMEM;
	pthread_mutex_unlock(&tracked_lock);
	return ret;
}

void upager__track_del(uintptr_t base)
{
	pthread_mutex_lock(&tracked_lock);
	for (size_t i = 0; i < ntracked; i++)
		if (tracked[i].base == base) {
			tracked[i] = tracked[--ntracked];
			break;
		}
	if (ntracked == 0) {
		free(tracked);
		tracked = NULL;
		captracked = 0;
	}
	pthread_mutex_unlock(&tracked_lock);
}

bool upager__track_covers(uintptr_t addr, size_t len, uint32_t id)
{
	bool yes = false;

	pthread_mutex_lock(&tracked_lock);
	for (size_t i = 0; i < ntracked && !yes; i++)
		yes = tracked[i].id == id && addr >= tracked[i].base &&
		      addr - tracked[i].base <= tracked[i].size &&
		      len <= tracked[i].size - (addr - tracked[i].base);
	pthread_mutex_unlock(&tracked_lock);
	return yes;
}
