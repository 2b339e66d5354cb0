/* SPDX-License-Identifier: MIT */
/*
 * What only the upager tool (tools/upager.c) asks of snapshots: what a file
 * holds, checking every page of it (and writing it out as a raw image),
 * converting a raw image, and reading a working set. Apart from the
 * library's snapshot files because no program linked to the library calls
 * them: the tool links the library statically to reach them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "snapfmt.h"
#include "snapshot_save.h"
#include "snapshot_tool.h"
#include "snapshot_url.h"
#include "workset.h"

int upager__snap_inspect(const char *path, struct upager__snap_info *info)
{
	struct upp_snap f;
	upager_url_options_t o;
	int ret;

	upager_url_options_init(&o);
	/* A URL: its header and page map, fetched (lib/snapshot_url.c). */
	ret = upager__is_url(path) ? upager__snap_url_open(path, &o, &f)
				   : upp_snap_open_path(path, (size_t)sysconf(_SC_PAGESIZE), &f);
	memset(info, 0, sizeof(*info));
	if (ret < 0)
		return ret;
	info->page_size = f.ps;
	info->length = f.len;
	info->npages = f.npages;
	info->nstored = f.nstored;
	info->file_size = f.file_size;
	for (uint64_t i = 0; i < f.npages; i++) {
		info->nzero += upp_snap_own_kind(&f, i) == UPP_SNAP_ZERO;
		info->nparent += upp_snap_own_kind(&f, i) == UPP_SNAP_PARENT;
	}
	info->nabsent = f.npages - f.nstored - info->nzero - info->nparent;
	snprintf(info->parent, sizeof(info->parent), "%s", f.parent ? f.parent_name : "");
	if (f.fd >= 0)
		close(f.fd);
	upp_snap_close(&f);
	return 0;
}

/* Reads and checks every stored page; with raw_fd >= 0 also writes it there. */
int upager__snap_verify(const char *path, int raw_fd, void (*progress)(uint64_t, uint64_t),
			uint64_t *bad_page)
{
	struct upp_snap f;
	uint8_t *page;
	int ret;

	if (upager__is_url(path)) /* read in chunks, in data order; no raw image from there */
		return raw_fd >= 0 ? -EOPNOTSUPP : upager__snap_url_verify(path, progress, bad_page);
	ret = upp_snap_open_path(path, (size_t)sysconf(_SC_PAGESIZE), &f);
	if (ret < 0)
		return ret;
	page = malloc(f.ps);
	if (!page)
		ret = -ENOMEM;
	if (ret == 0 && raw_fd >= 0 && ftruncate(raw_fd, (off_t)f.len) < 0)
		ret = -errno;
	for (uint64_t i = 0; ret == 0 && i < f.npages; i++) {
		int kind;

		if (progress && (i % 4096 == 0 || i + 1 == f.npages))
			progress(i + 1, f.npages);
		if (upp_snap_kind(&f, i) != UPP_SNAP_STORED)
			continue; /* a hole in the raw image reads zero */
		kind = upp_snap_read(&f, i, page);
		if (kind == -EBADMSG)
			*bad_page = i;
		if (kind < 0)
			ret = kind;
		else if (raw_fd >= 0)
			ret = upp_pwrite_full(raw_fd, page, f.ps, i * f.ps);
	}
	if (ret == 0 && raw_fd >= 0 && fsync(raw_fd) < 0)
		ret = -errno;
	free(page);
	close(f.fd);
	upp_snap_close(&f);
	return ret;
}

/* A raw memory image (a flat file, as VM monitors write) to a snapshot. */
int upager__snap_from_raw(const char *raw, const char *path)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	struct stat st;
	void *m;
	int fd = open(raw, O_RDONLY | O_CLOEXEC), ret;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0 ||
	    (uint64_t)st.st_size % ps) {
		close(fd);
		return -EINVAL; /* a raw image is a whole number of pages */
	}
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return -errno;
	ret = upager__snap_save_atomic(m, (size_t)st.st_size, path, true);
	munmap(m, (size_t)st.st_size);
	return ret;
}

int upager__ws_inspect(const char *ws_path, uint64_t npages, uint64_t *count, uint64_t **pages)
{
	*pages = upager__ws_read(ws_path, npages, count);
	return *pages ? 0 : -EBADMSG;
}
