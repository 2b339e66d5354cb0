/* SPDX-License-Identifier: MIT */
/*
 * The snapshot writer (upager_snapshot_save, upager_snapshot_save_incremental;
 * docs/SNAPSHOT.md): memory to a file, its stored pages first, then the page
 * map, then the header, the file replaced atomically; an incremental save
 * stores only the pages that differ from its parent's. The one place that
 * writes the format: the reorder and the tool's conversion of raw images
 * reuse its tail and its atomic save (snapshot_save.h). Apart from the
 * source because a save and a restore share nothing but the format.
 */
#include "config.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "le.h"
#include "crc32c.h"
#include "fileio.h"
#include "snapfmt.h"
#include "snapshot_save.h"
#include "upager-int.h"

/* The page map after nstored pages of data, then the header (last: a crash
 * before it leaves no valid file); upp_atomic_replace fsyncs. */
int upager__snap_write_tail(int fd, size_t ps, uint64_t npages, uint64_t nstored,
			    const uint8_t *map, const char *parent_name, uint32_t parent_crc)
{
	uint8_t hdr[UPP_SNAP_HDR] = { 0 };
	uint64_t data_off = UPP_SNAP_HDR, map_off = data_off + nstored * ps;
	int ret = upp_pwrite_full(fd, map, npages * UPP_SNAP_ENTRY, map_off);

	if (ret < 0)
		return ret;
	memcpy(hdr, UPP_SNAP_MAGIC, 8);
	put32(hdr + 8, UPP_SNAP_VERSION);
	put32(hdr + 12, (uint32_t)ps);
	put64(hdr + 16, npages * ps);
	put64(hdr + 24, npages);
	put64(hdr + 32, nstored);
	put64(hdr + 40, data_off);
	put64(hdr + 48, map_off);
	put32(hdr + 56, parent_name ? UPP_SNAP_F_PARENT : 0);
	if (parent_name) { /* by its file name: it stays beside this one */
		put32(hdr + 72, parent_crc);
		put16(hdr + 76, (uint16_t)strlen(parent_name));
		memcpy(hdr + 128, parent_name, strlen(parent_name));
	}
	put32(hdr + 60, upp_crc32c(0, map, npages * UPP_SNAP_ENTRY));
	put32(hdr + 64, upp_crc32c(0, hdr, UPP_SNAP_HDR));
	return upp_pwrite_full(fd, hdr, UPP_SNAP_HDR, 0);
}

struct save_args {
	const uint8_t *base;
	size_t len, ps;
	bool every_page;
	const struct upp_snap *parent; /* incremental: pages equal to its are not stored */
	const char *parent_name;
	bool tracked; /* a region restored from parent, its writes tracked */
};

/*
 * Whether page i (populated, not all zero) is as in the parent: compared
 * byte for byte, never by checksum. 1 same, 0 differs, -errno (a damaged
 * parent page: refuse to build on it).
 */
static int same_as_parent(const struct save_args *a, size_t i, uint8_t *tmp)
{
	int kind;

	if (upp_snap_kind(a->parent, i) != UPP_SNAP_STORED)
		return 0; /* zero or absent there, not zero here */
	kind = upp_snap_read(a->parent, i, tmp);
	if (kind < 0)
		return kind;
	return memcmp(tmp, a->base + i * a->ps, a->ps) == 0;
}

static int write_snapshot(int fd, void *arg)
{
	const struct save_args *a = arg;
	const uint8_t *base = a->base;
	size_t ps = a->ps, npages = a->len / ps, nstored = 0, run = 0;
	uint8_t *map = calloc(npages, UPP_SNAP_ENTRY), *tmp = a->parent ? malloc(ps) : NULL;
	int ret = map && (tmp || !a->parent) ? 0 : -ENOMEM;

	if (ret < 0) {
		free(map);
		free(tmp);
		return ret;
	}
	if (!a->every_page) /* a raw image: every page is there to be read */
		ret = upager__pagemap((uintptr_t)base, npages, ps, map, UPP_SNAP_ENTRY,
				      a->tracked);
	for (size_t i = 0; i < npages && ret == 0; i++) {
		uint8_t *e = map + i * UPP_SNAP_ENTRY;
		uint8_t pm = a->every_page ? UPAGER__PM_POPULATED : e[0];

		/*
		 * Incremental: never touched since the restore means as in the
		 * parent, and so does placed from it and not written since
		 * (write-protected by the fill, and still so).
		 */
		if (!(pm & UPAGER__PM_POPULATED))
			e[0] = a->parent ? UPP_SNAP_PARENT : UPP_SNAP_ABSENT;
		else if (a->parent && (pm & UPAGER__PM_CLEAN))
			e[0] = UPP_SNAP_PARENT;
		else
			e[0] = UPP_SNAP_STORED;
	}
	for (size_t i = 0; i <= npages && ret == 0; i++) {
		uint8_t *e = map + i * UPP_SNAP_ENTRY;
		int same = 0;

		if (i < npages && e[0] == UPP_SNAP_STORED) {
			if (upp_all_zero(base + i * ps, ps)) {
				e[0] = UPP_SNAP_ZERO;
			} else if (a->parent && (same = same_as_parent(a, i, tmp)) != 0) {
				if (same < 0)
					ret = same;
				e[0] = UPP_SNAP_PARENT;
			} else {
				put32(e + 4, upp_crc32c(0, base + i * ps, ps));
				put64(e + 8, nstored);
				nstored++;
				run++;
				continue;
			}
		}
		/* End of a run of stored pages (consecutive in memory and file): one write. */
		if (run && ret == 0)
			ret = upp_pwrite_full(fd, base + (i - run) * ps, run * ps,
					 UPP_SNAP_HDR + (nstored - run) * ps);
		run = 0;
	}
	if (ret == 0)
		ret = upager__snap_write_tail(fd, ps, npages, nstored, map, a->parent_name,
					      a->parent ? a->parent->hdr_crc : 0);
	free(map);
	free(tmp);
	return ret;
}

int upager__snap_save_atomic(const void *addr, size_t len, const char *path, bool every_page)
{
	struct save_args a = { addr, len, (size_t)sysconf(_SC_PAGESIZE), every_page, NULL, NULL,
			       false };

	if (!addr || !path || !*path || len == 0 || (uintptr_t)addr % a.ps || len % a.ps ||
	    (uintptr_t)addr > UINTPTR_MAX - len)
		return -EINVAL;
	return upp_atomic_replace(path, write_snapshot, &a);
}

UPAGER__EXPORT int upager_snapshot_save(const void *addr, size_t len, const char *path)
{
	return upager__snap_save_atomic(addr, len, path, false);
}

/* Whether the directories of a and b are the same one. */
static bool same_dir(const char *a, const char *b)
{
	char *ca = strdup(a), *cb = strdup(b);
	struct stat sa, sb;
	bool same = ca && cb && stat(dirname(ca), &sa) == 0 && stat(dirname(cb), &sb) == 0 &&
		    sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;

	free(ca);
	free(cb);
	return same;
}

UPAGER__EXPORT int upager_snapshot_save_incremental(const void *addr, size_t len,
						    const char *parent, const char *path)
{
	struct save_args a = { addr, len, (size_t)sysconf(_SC_PAGESIZE), false, NULL, NULL, false };
	struct upp_snap pf;
	char *pcopy;
	int ret;

	if (!addr || !parent || !path || !*parent || !*path || len == 0 || (uintptr_t)addr % a.ps ||
	    len % a.ps || (uintptr_t)addr > UINTPTR_MAX - len)
		return -EINVAL;
	/* The parent is named by its file name: it must sit beside the child,
	 * and not be the file the child replaces. */
	if (!same_dir(parent, path))
		return -EXDEV;
	if (!strcmp(strrchr(parent, '/') ? strrchr(parent, '/') + 1 : parent,
		    strrchr(path, '/') ? strrchr(path, '/') + 1 : path))
		return -EINVAL;
	ret = upp_snap_open_path(parent, (size_t)sysconf(_SC_PAGESIZE), &pf);
	if (ret < 0)
		return ret;
	pcopy = strdup(parent);
	if (!pcopy) {
		ret = -ENOMEM;
	} else if (pf.len != len) {
		ret = -EINVAL; /* not the memory this parent describes */
	} else if (strlen(basename(pcopy)) > UPP_SNAP_MAX_NAME) {
		ret = -ENAMETOOLONG;
	} else {
		a.parent = &pf;
		a.parent_name = basename(pcopy);
		a.tracked = upager__track_covers((uintptr_t)addr, len, pf.hdr_crc);
		ret = upp_atomic_replace(path, write_snapshot, &a);
	}
	free(pcopy);
	upp_snap_close(&pf);
	close(pf.fd);
	return ret;
}
