/* SPDX-License-Identifier: MIT */
/* Reading the snapshot format (docs/SNAPSHOT.md): every field is hostile
 * until checked, so that no later access can go out of bounds. */
#include "config.h"

#include <errno.h>
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

bool upp_snap_is(int fd)
{
	char magic[8];

	return pread(fd, magic, 8, 0) == 8 && !memcmp(magic, UPP_SNAP_MAGIC, 8);
}

int upp_snap_open(int fd, size_t ps, struct upp_snap *s)
{
	uint8_t hdr[UPP_SNAP_HDR];
	uint64_t map_len, data_len, data_end, size;
	struct stat st;
	uint32_t crc;

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
	    get32(hdr + 8) != UPP_SNAP_VERSION || get32(hdr + 56) != 0)
		return -EBADMSG;
	crc = get32(hdr + 64);
	put32(hdr + 64, 0);
	if (upp_crc32c(0, hdr, UPP_SNAP_HDR) != crc || !all_zero(hdr + 68, UPP_SNAP_HDR - 68))
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
	if (pread(fd, s->map, map_len, (off_t)get64(hdr + 48)) != (ssize_t)map_len ||
	    upp_crc32c(0, s->map, map_len) != get32(hdr + 60))
		goto bad;
	for (uint64_t i = 0; i < s->npages; i++) {
		const uint8_t *e = s->map + i * UPP_SNAP_ENTRY;

		if (e[0] > UPP_SNAP_STORED || e[1] || e[2] || e[3] ||
		    (e[0] == UPP_SNAP_STORED ? get64(e + 8) >= s->nstored
					     : get32(e + 4) || get64(e + 8)))
			goto bad;
	}
	return 0;
bad:
	free(s->map);
	s->map = NULL;
	return -EBADMSG;
}

void upp_snap_close(struct upp_snap *s)
{
	free(s->map);
	s->map = NULL;
}

uint64_t upp_snap_data_off(const struct upp_snap *s, uint64_t page)
{
	if (upp_snap_kind(s, page) != UPP_SNAP_STORED)
		return UINT64_MAX;
	return s->data_off + get64(s->map + page * UPP_SNAP_ENTRY + 8) * s->ps;
}

int upp_snap_read(const struct upp_snap *s, uint64_t page, void *buf)
{
	const uint8_t *e;
	ssize_t got;
	int kind = upp_snap_kind(s, page);

	if (kind != UPP_SNAP_STORED) {
		memset(buf, 0, s->ps);
		return kind;
	}
	e = s->map + page * UPP_SNAP_ENTRY;
	do
		got = pread(s->fd, buf, s->ps, (off_t)(s->data_off + get64(e + 8) * s->ps));
	while (got < 0 && errno == EINTR);
	if (got != (ssize_t)s->ps)
		return got < 0 ? -errno : -EIO;
	return upp_crc32c(0, buf, s->ps) == get32(e + 4) ? kind : -EBADMSG;
}
