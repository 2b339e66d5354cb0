/* SPDX-License-Identifier: MIT */
/* Reading the snapshot format (docs/SNAPSHOT.md): every field is hostile
 * until checked, so that no later access can go out of bounds. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "le.h"
#include "crc32c.h"
#include "fileio.h"
#include "snapfmt.h"

static int open_depth(int dirfd, int fd, size_t ps, size_t *budget, struct upp_snap *s,
		      int depth);

int upp_open_regular(int (*open_as)(void *ctx, int flags), void *ctx)
{
	struct stat st;
	int fd = open_as(ctx, O_PATH), ret;

	/* Looked at before it is opened: opening a FIFO blocks until a writer
	 * comes, opening a device may do anything. */
	if (fd < 0)
		return fd;
	ret = fstat(fd, &st) < 0 ? -errno : S_ISREG(st.st_mode) ? 0 : S_ISLNK(st.st_mode) ? -ELOOP
											: -EINVAL;
	close(fd);
	if (ret < 0)
		return ret;
	/* It may have been replaced since: O_NONBLOCK, so that a FIFO put there
	 * cannot hold the open, and checked again. */
	fd = open_as(ctx, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || fcntl(fd, F_SETFL, 0) < 0) {
		close(fd);
		return -EINVAL;
	}
	return fd;
}

bool upp_snap_is(int fd)
{
	char magic[8];

	return pread(fd, magic, 8, 0) == 8 && !memcmp(magic, UPP_SNAP_MAGIC, 8);
}

bool upp_snap_unchanged(const struct upp_snap *s, int fd)
{
	uint8_t crc[4];

	return pread(fd, crc, 4, 64) == 4 && get32(crc) == s->hdr_crc;
}

static bool good_name(const uint8_t *name, size_t len)
{
	if (len == 0 || len > UPP_SNAP_MAX_NAME || (len == 1 && name[0] == '.') ||
	    (len == 2 && name[0] == '.' && name[1] == '.'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (name[i] == '/' || name[i] == '\0')
			return false;
	return true;
}

struct at_name {
	int dirfd;
	const char *name;
};

static int open_beside(void *ctx, int flags)
{
	const struct at_name *a = ctx;
	int fd = openat(a->dirfd, a->name, flags | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/* The directory of the file open on fd, found by its name in /proc (for
 * callers that did not say where it is). */
static int dir_of(int fd)
{
	char link[64], path[4096], *slash;
	ssize_t n;
	int dfd;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		return -EBADMSG;
	path[n] = '\0';
	slash = strrchr(path, '/');
	if (!slash)
		return -EBADMSG;
	*(slash == path ? slash + 1 : slash) = '\0';
	dfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return dfd < 0 ? -errno : dfd;
}

/* The parent named in s, in dirfd (the directory of the file open on fd):
 * opened and checked. Its name has no '/' and is no symlink, so it is
 * beside its child, never elsewhere. */
static int open_parent(int dirfd, int fd, size_t ps, size_t *budget, struct upp_snap *s,
		       uint32_t want_crc, int depth)
{
	struct at_name at = { dirfd, s->parent_name };
	int own_dir = -1, pfd, ret;

	if (depth >= UPP_SNAP_MAX_CHAIN)
		return -EBADMSG; /* a chain that long is a loop, or a lie */
	if (dirfd < 0 && (at.dirfd = own_dir = dir_of(fd)) < 0)
		return own_dir;
	pfd = upp_open_regular(open_beside, &at);
	if (pfd < 0) {
		if (own_dir >= 0)
			close(own_dir);
		return pfd == -ENOENT ? -ENOENT : -EBADMSG;
	}
	s->parent = malloc(sizeof(*s->parent));
	ret = s->parent ? open_depth(at.dirfd, pfd, ps, budget, s->parent, depth + 1) : -ENOMEM;
	if (own_dir >= 0)
		close(own_dir);
	if (ret == 0 && (s->parent->hdr_crc != want_crc || s->parent->npages != s->npages))
		ret = -EBADMSG; /* not the file this one was saved against */
	if (ret < 0) {
		if (s->parent)
			upp_snap_close(s->parent);
		free(s->parent);
		s->parent = NULL;
		close(pfd);
	}
	return ret;
}

static int open_depth(int dirfd, int fd, size_t ps, size_t *budget, struct upp_snap *s,
		      int depth)
{
	uint8_t hdr[UPP_SNAP_HDR];
	uint64_t map_len, data_len, data_end, size;
	uint32_t crc, flags, parent_crc = 0;
	struct stat st;
	int ret;

	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->ps = ps;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	size = (uint64_t)st.st_size;
	if (!S_ISREG(st.st_mode) || st.st_size < UPP_SNAP_HDR ||
	    pread(fd, hdr, UPP_SNAP_HDR, 0) != UPP_SNAP_HDR || memcmp(hdr, UPP_SNAP_MAGIC, 8) ||
	    get32(hdr + 8) != UPP_SNAP_VERSION)
		return -EBADMSG;
	flags = get32(hdr + 56);
	crc = get32(hdr + 64);
	put32(hdr + 64, 0);
	if (upp_crc32c(0, hdr, UPP_SNAP_HDR) != crc || (flags & ~UPP_SNAP_F_PARENT))
		return -EBADMSG;
	s->hdr_crc = crc;
	if (flags & UPP_SNAP_F_PARENT) {
		size_t nlen = get16(hdr + 76);

		parent_crc = get32(hdr + 72);
		if (!good_name(hdr + 128, nlen))
			return -EBADMSG;
		memcpy(s->parent_name, hdr + 128, nlen);
		s->parent_name[nlen] = '\0';
		/* What is left of the header must be zero, as in any other. */
		memset(hdr + 72, 0, 6);
		memset(hdr + 128, 0, nlen);
	}
	if (!upp_all_zero(hdr + 68, UPP_SNAP_HDR - 68))
		return -EBADMSG;
	if (get32(hdr + 12) != ps)
		return -EINVAL; /* written on a machine with another page size */
	s->len = get64(hdr + 16);
	s->npages = get64(hdr + 24);
	s->nstored = get64(hdr + 32);
	s->data_off = get64(hdr + 40);
	s->file_size = size;
	/* Sizes that would overflow, or lie past the file, are lies. */
	if (s->npages == 0 || s->npages > size / UPP_SNAP_ENTRY || s->len != s->npages * ps ||
	    s->nstored > s->npages || s->data_off < UPP_SNAP_HDR || s->data_off % ps ||
	    s->data_off > size)
		return -EBADMSG;
	map_len = s->npages * UPP_SNAP_ENTRY;
	data_len = s->nstored * ps;
	data_end = s->data_off + data_len;
	if (data_len > size || data_end > size || get64(hdr + 48) < data_end ||
	    get64(hdr + 48) > size || map_len > size - get64(hdr + 48))
		return -EBADMSG;
	/* Charged by the header's word, before anything is allocated or read. */
	if (map_len > *budget)
		return -ENOMEM;
	*budget -= map_len;
	s->map = malloc(map_len);
	if (!s->map)
		return -ENOMEM;
	ret = -EBADMSG;
	if (upp_pread_full(fd, s->map, map_len, get64(hdr + 48)) < 0 ||
	    upp_crc32c(0, s->map, map_len) != get32(hdr + 60))
		goto bad;
	for (uint64_t i = 0; i < s->npages; i++) {
		const uint8_t *e = s->map + i * UPP_SNAP_ENTRY;

		if (e[0] > UPP_SNAP_PARENT || e[1] || e[2] || e[3] ||
		    (e[0] == UPP_SNAP_PARENT && !(flags & UPP_SNAP_F_PARENT)) ||
		    (e[0] == UPP_SNAP_STORED ? get64(e + 8) >= s->nstored
					     : get32(e + 4) || get64(e + 8)))
			goto bad;
	}
	if ((flags & UPP_SNAP_F_PARENT) &&
	    (ret = open_parent(dirfd, fd, ps, budget, s, parent_crc, depth)) < 0)
		goto bad;
	return 0;
bad:
	free(s->map);
	s->map = NULL;
	return ret;
}

int upp_snap_open(int fd, size_t ps, struct upp_snap *s)
{
	size_t unlimited = SIZE_MAX;

	return open_depth(-1, fd, ps, &unlimited, s, 0);
}

int upp_snap_open_at(int dirfd, int fd, size_t ps, size_t max_maps, struct upp_snap *s)
{
	return open_depth(dirfd, fd, ps, &max_maps, s, 0);
}

int upp_snap_open_path(const char *path, size_t ps, struct upp_snap *s)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret;

	if (fd < 0)
		return -errno;
	ret = upp_snap_open(fd, ps, s);
	if (ret < 0)
		close(fd);
	return ret;
}

void upp_snap_close(struct upp_snap *s)
{
	if (s->parent) {
		upp_snap_close(s->parent);
		close(s->parent->fd); /* parents' files are ours */
		free(s->parent);
		s->parent = NULL;
	}
	free(s->map);
	s->map = NULL;
}

const uint8_t *upp_snap_entry(const struct upp_snap *s, uint64_t page,
			      const struct upp_snap **owner)
{
	const uint8_t *e;

	if (page >= s->npages)
		return NULL;
	/* Checked at open: PARENT only where a parent is, chains bounded. */
	while ((e = s->map + page * UPP_SNAP_ENTRY)[0] == UPP_SNAP_PARENT)
		s = s->parent;
	if (owner)
		*owner = s;
	return e;
}

int upp_snap_kind(const struct upp_snap *s, uint64_t page)
{
	const uint8_t *e = upp_snap_entry(s, page, NULL);

	return e ? e[0] : UPP_SNAP_ABSENT;
}

uint32_t upp_snap_crc(const struct upp_snap *s, uint64_t page)
{
	const uint8_t *e = upp_snap_entry(s, page, NULL);

	return e && e[0] == UPP_SNAP_STORED ? get32(e + 4) : 0;
}

uint64_t upp_snap_locate(const struct upp_snap *s, uint64_t page, int *fdp)
{
	const struct upp_snap *o;
	const uint8_t *e = upp_snap_entry(s, page, &o);

	if (!e || e[0] != UPP_SNAP_STORED)
		return UINT64_MAX;
	*fdp = o->fd;
	return o->data_off + get64(e + 8) * o->ps;
}

int upp_snap_read(const struct upp_snap *s, uint64_t page, void *buf)
{
	const struct upp_snap *o;
	const uint8_t *e = upp_snap_entry(s, page, &o); /* the chain walked once */
	int ret;

	if (!e || e[0] != UPP_SNAP_STORED) {
		memset(buf, 0, s->ps);
		return e ? e[0] : UPP_SNAP_ABSENT;
	}
	ret = upp_pread_full(o->fd, buf, s->ps, o->data_off + get64(e + 8) * o->ps);
	if (ret < 0)
		return ret;
	return upp_crc32c(0, buf, s->ps) == get32(e + 4) ? UPP_SNAP_STORED : -EBADMSG;
}
