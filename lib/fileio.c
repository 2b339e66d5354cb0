/* SPDX-License-Identifier: MIT */
/* File helpers that the library and upagerd both need, written once. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"

bool upp_all_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	/* The first byte is zero and every byte equals the next one. */
	return len == 0 || (b[0] == 0 && memcmp(b, b + 1, len - 1) == 0);
}

int upp_atomic_replace(const char *path, int (*fill)(int fd, void *arg), void *arg)
{
	char *tmp, *dir, *dcopy;
	int fd, dfd, ret;

	tmp = malloc(strlen(path) + 16);
	dcopy = strdup(path);
	if (!tmp || !dcopy) {
		free(tmp);
		free(dcopy);
		return -ENOMEM;
	}
	sprintf(tmp, "%s.tmp.XXXXXX", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	ret = fill(fd, arg);
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	close(fd);
	if (ret == 0 && rename(tmp, path) < 0)
		ret = -errno;
	if (ret < 0) {
		unlink(tmp);
		goto out;
	}
	/* The rename itself must reach the disk. */
	dir = dirname(dcopy);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
out:
	free(tmp);
	free(dcopy);
	return ret;
}

int upp_read_secret(const char *path, uint8_t *buf, size_t cap, size_t *len, mode_t *mode)
{
	struct stat st;
	size_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (mode && fstat(fd, &st) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	/* One byte more than fits tells a secret that is too long. */
	while (n < cap) {
		ssize_t r = read(fd, buf + n, cap - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			ret = -EINVAL;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (ret == 0 && (n == 0 || n >= cap))
		ret = -EINVAL;
	if (ret < 0) {
		explicit_bzero(buf, cap);
		return ret;
	}
	*len = n;
	if (mode)
		*mode = st.st_mode;
	return 0;
}

int upp_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	/* Linux reads at most 0x7ffff000 bytes at a time: big maps take several. */
	while (len) {
		ssize_t n = pread(fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf = (uint8_t *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int upp_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf = (const uint8_t *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}
