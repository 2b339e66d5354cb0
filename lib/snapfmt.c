/* SPDX-License-Identifier: MIT */
/* Reading the snapshot format (docs/SNAPSHOT.md): every field is hostile
 * until checked, so that no later access can go out of bounds. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "le.h"
#include "protocol.h" /* upp_crc32c */
#include "snapfmt.h"

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static int open_depth(int fd, size_t ps, struct upp_snap *s, int depth);

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

/* The parent named in s, beside the file open on fd: opened and checked. */
static int open_parent(int fd, size_t ps, struct upp_snap *s, uint32_t want_crc, int depth)
{
	char link[64], path[4096], *slash;
	ssize_t n;
	int dfd, pfd, ret;

	if (depth >= UPP_SNAP_MAX_CHAIN)
		return -EBADMSG; /* a chain that long is a loop, or a lie */
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
	if (dfd < 0)
		return -errno;
	pfd = openat(dfd, s->parent_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	ret = pfd < 0 ? (errno == ENOENT ? -ENOENT : -EBADMSG) : 0;
	close(dfd);
	if (ret < 0)
		return ret;
	s->parent = malloc(sizeof(*s->parent));
	if (!s->parent) {
		close(pfd);
		return -ENOMEM;
	}
	ret = open_depth(pfd, ps, s->parent, depth + 1);
	if (ret == 0 && (s->parent->hdr_crc != want_crc || s->parent->npages != s->npages))
		ret = -EBADMSG; /* not the file this one was saved against */
	if (ret < 0) {
		upp_snap_close(s->parent);
		free(s->parent);
		s->parent = NULL;
		close(pfd);
	}
	return ret;
}

static int open_depth(int fd, size_t ps, struct upp_snap *s, int depth)
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
	if (!all_zero(hdr + 68, UPP_SNAP_HDR - 68))
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
	s->map = malloc(map_len);
	if (!s->map)
		return -ENOMEM;
	ret = -EBADMSG;
	if (pread(fd, s->map, map_len, (off_t)get64(hdr + 48)) != (ssize_t)map_len ||
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
	if ((flags & UPP_SNAP_F_PARENT) && (ret = open_parent(fd, ps, s, parent_crc, depth)) < 0)
		goto bad;
	return 0;
bad:
	free(s->map);
	s->map = NULL;
	return ret;
}

int upp_snap_open(int fd, size_t ps, struct upp_snap *s)
{
	return open_depth(fd, ps, s, 0);
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
	ssize_t got;

	if (!e || e[0] != UPP_SNAP_STORED) {
		memset(buf, 0, s->ps);
		return e ? e[0] : UPP_SNAP_ABSENT;
	}
	do
		got = pread(o->fd, buf, s->ps, (off_t)(o->data_off + get64(e + 8) * o->ps));
	while (got < 0 && errno == EINTR);
	if (got != (ssize_t)s->ps)
		return got < 0 ? -errno : -EIO;
	return upp_crc32c(0, buf, s->ps) == get32(e + 4) ? UPP_SNAP_STORED : -EBADMSG;
}
