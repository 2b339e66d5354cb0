/* SPDX-License-Identifier: MIT */
/*
 * The chunk cache: chunks of remote objects kept in a local directory that
 * every process on the host shares, so that twenty restores of one
 * snapshot fetch each chunk once.
 *
 *   DIR/KEY/0000000000000003.chunk   chunk 3 of one object version
 *   DIR/KEY/fetching                 byte i locked while a process fetches chunk i
 *   DIR/.trim                        flock()ed by the process trimming
 *
 * KEY is the SHA-256 of the URL, the version (ETag), the length and the
 * chunk size: another version of the object is another key, so versions
 * never mix, and an old version's chunks simply age out. A chunk file is
 * a header (magic, idx, length, CRC32C of the bytes) and the bytes; it is
 * written under a temporary name and renamed, so a reader opens all of a
 * chunk or nothing, and it is checked on every read: a damaged file
 * (truncated, flipped bits, another chunk's) is removed and the chunk
 * fetched again. Claims are open-file-description locks on one byte each
 * of "fetching": no lock file to create or remove per chunk, and the
 * kernel drops them when their process dies. Recency is the file's mtime,
 * set on every hit, since atime is unreliable under relatime. Files are
 * created with the directory's mode bits whatever the umask (a
 * group-shared directory made by the operator shares its chunks with the
 * group). Everyone who may write the directory is trusted with the bytes
 * of every fault (a CRC is not a signature): a directory, or key
 * directory, owned by another user (but root) or writable by others is
 * refused. Nothing here blocks on a file: chunk files are opened
 * O_NONBLOCK, so a FIFO put in a chunk's place is a damaged chunk, not a
 * transfer thread stuck in open().
 */
#define _GNU_SOURCE
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chunk_cache.h"
#include "crc32c.h"
#include "fileio.h"
#include "le.h"
#include "sha256.h"

#define HDR 64
#define MAGIC "UPGCHNK1"
#define TMP_PREFIX ".tmp-"
#define TMP_STALE_S 60

/* Who may be trusted with a cache's bytes: us or root, and not everyone. */
static int trusted(const struct stat *st)
{
	if (!S_ISDIR(st->st_mode))
		return -ENOTDIR;
	if ((st->st_uid != geteuid() && st->st_uid != 0) || (st->st_mode & S_IWOTH))
		return -EPERM;
	return 0;
}

/* Opens (creating it with mode, whatever the umask) the file name in dirfd. */
static int open_made(int dirfd, const char *name, int flags, unsigned mode)
{
	int fd = openat(dirfd, name, flags | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);

	if (fd >= 0) {
		fchmod(fd, mode);
		return fd;
	}
	if (errno != EEXIST)
		return -1;
	return openat(dirfd, name, flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
}

static void chunk_name(char *name, size_t len, uint64_t idx)
{
	snprintf(name, len, "%016" PRIx64 ".chunk", idx);
}

int upager__chunk_cache_open(struct upager__chunk_cache *cc, const char *dir, uint64_t max_bytes,
			     const char *url, const char *etag, uint64_t size, uint64_t chunk_size)
{
	struct upp_sha256 sha;
	uint8_t digest[32];
	char meta[64];
	struct stat st;
	bool made;
	int ret;

	memset(cc, 0, sizeof(*cc));
	cc->dirfd = cc->keyfd = cc->lockfd = -1;
	cc->max_bytes = max_bytes;
	cc->chunk_size = chunk_size;
	if (!dir || !*dir || !max_bytes)
		return -EINVAL;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	cc->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cc->dirfd < 0 || fstat(cc->dirfd, &st) < 0)
		goto fail_errno;
	if ((ret = trusted(&st)) < 0)
		goto fail;
	/* The setgid bit (a shared group) and the read/write bits, never the sticky one. */
	cc->dir_mode = (st.st_mode & 02775) | 0700;
	cc->file_mode = (st.st_mode & 0664) | 0600;

	upp_sha256_init(&sha);
	upp_sha256_update(&sha, "upager chunk cache 1\n", 21);
	upp_sha256_update(&sha, url, strlen(url) + 1);
	upp_sha256_update(&sha, etag, strlen(etag) + 1);
	snprintf(meta, sizeof(meta), "%" PRIu64 " %" PRIu64, size, chunk_size);
	upp_sha256_update(&sha, meta, strlen(meta));
	upp_sha256_final(&sha, digest);
	for (int i = 0; i < 32; i++)
		snprintf(cc->key + 2 * i, 3, "%02x", digest[i]);
	memcpy(cc->digest, digest, sizeof(cc->digest));

	made = mkdirat(cc->dirfd, cc->key, cc->dir_mode) == 0;
	if (!made && errno != EEXIST)
		goto fail_errno;
	cc->keyfd = openat(cc->dirfd, cc->key, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (cc->keyfd < 0 || (made && fchmod(cc->keyfd, cc->dir_mode) < 0) ||
	    fstat(cc->keyfd, &st) < 0)
		goto fail_errno;
	if ((ret = trusted(&st)) < 0)
		goto fail;
	cc->lockfd = open_made(cc->keyfd, "fetching", O_RDWR, cc->file_mode);
	if (cc->lockfd < 0 || fstat(cc->lockfd, &st) < 0)
		goto fail_errno;
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		goto fail;
	}
	upager__chunk_cache_trim(cc); /* what others left beyond the bound, stale temporaries */
	return 0;
fail_errno:
	ret = -errno;
fail:
	upager__chunk_cache_close(cc);
	return ret;
}

void upager__chunk_cache_close(struct upager__chunk_cache *cc)
{
	if (cc->lockfd >= 0)
		close(cc->lockfd); /* lets go of every claim */
	if (cc->keyfd >= 0)
		close(cc->keyfd);
	if (cc->dirfd >= 0)
		close(cc->dirfd);
	cc->dirfd = cc->keyfd = cc->lockfd = -1;
}

/* Removes a damaged chunk file, unless it was replaced meanwhile (a good one, then). */
static void remove_damaged(struct upager__chunk_cache *cc, int fd, const char *name)
{
	struct stat mine, now;

	if (fstat(fd, &mine) == 0 && fstatat(cc->keyfd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
	    mine.st_ino == now.st_ino && mine.st_dev == now.st_dev)
		unlinkat(cc->keyfd, name, 0);
}

int upager__chunk_cache_get(struct upager__chunk_cache *cc, uint64_t idx, void *buf, size_t len)
{
	uint8_t hdr[HDR];
	char name[32];
	struct stat st;
	int fd, ret;

	chunk_name(name, sizeof(name), idx);
	fd = openat(cc->keyfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return errno == ELOOP ? (unlinkat(cc->keyfd, name, 0), -EBADMSG) : -ENOENT;
	ret = fstat(fd, &st) < 0 ? -errno : 0;
	if (!ret && (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != HDR + (uint64_t)len))
		ret = -EBADMSG;
	if (!ret)
		ret = upp_pread_full(fd, hdr, HDR, 0);
	if (!ret && (memcmp(hdr, MAGIC, 8) || get64(hdr + 8) != idx || get64(hdr + 16) != len ||
		     get64(hdr + 24) != cc->chunk_size || memcmp(hdr + 40, cc->digest, 16)))
		ret = -EBADMSG;
	if (!ret)
		ret = upp_pread_full(fd, buf, len, HDR);
	if (!ret && upp_crc32c(0, buf, len) != get32(hdr + 32))
		ret = -EBADMSG;
	if (ret == -EIO)
		ret = -EBADMSG; /* cut short since its size was checked */
	if (ret == -EBADMSG)
		remove_damaged(cc, fd, name);
	else if (!ret)
		futimens(fd, NULL); /* recency for the trim: best effort */
	close(fd);
	return ret == -EBADMSG || ret == 0 ? ret : -ENOENT; /* unreadable: fetch it */
}

static int lock_byte(struct upager__chunk_cache *cc, uint64_t idx, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = (off_t)idx, .l_len = 1 };

	if (fcntl(cc->lockfd, F_OFD_SETLK, &fl) == 0)
		return 0;
	return errno == EAGAIN || errno == EACCES ? -EAGAIN : -errno;
}

int upager__chunk_cache_claim(struct upager__chunk_cache *cc, uint64_t idx)
{
	return lock_byte(cc, idx, F_WRLCK);
}

void upager__chunk_cache_unclaim(struct upager__chunk_cache *cc, uint64_t idx)
{
	lock_byte(cc, idx, F_UNLCK);
}

int upager__chunk_cache_put(struct upager__chunk_cache *cc, uint64_t idx, const void *buf,
			    size_t len)
{
	uint8_t hdr[HDR] = { 0 };
	char tmp[64], name[32];
	int fd, ret;

	chunk_name(name, sizeof(name), idx);
	snprintf(tmp, sizeof(tmp), TMP_PREFIX "%d-%" PRIx64 "-%" PRIu64, (int)getpid(), idx,
		 cc->tmp_seq++);
	fd = openat(cc->keyfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		    cc->file_mode);
	if (fd < 0)
		return -errno;
	fchmod(fd, cc->file_mode); /* the umask's bits back: the group shares it */
	memcpy(hdr, MAGIC, 8);
	put64(hdr + 8, idx);
	put64(hdr + 16, len);
	put64(hdr + 24, cc->chunk_size);
	put32(hdr + 32, upp_crc32c(0, buf, len));
	memcpy(hdr + 40, cc->digest, 16); /* whose chunk: a file linked from another key fails */
	ret = upp_pwrite_full(fd, hdr, HDR, 0);
	if (!ret)
		ret = upp_pwrite_full(fd, buf, len, HDR);
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (!ret && renameat(cc->keyfd, tmp, cc->keyfd, name) < 0)
		ret = -errno;
	if (ret) {
		unlinkat(cc->keyfd, tmp, 0);
		if (ret == -ENOSPC || ret == -EDQUOT)
			upager__chunk_cache_trim(cc); /* room, for the next one */
		return ret;
	}
	cc->since_trim += HDR + len;
	if (cc->since_trim >= cc->max_bytes / 16)
		upager__chunk_cache_trim(cc);
	return 0;
}

/* ---- the trim ---- */

struct cached {
	struct timespec used;
	uint64_t bytes;
	char path[65 + 32]; /* KEY/NAME */
};

struct listing {
	struct cached *v;
	size_t n, cap;
	uint64_t bytes;
};

static bool is_key(const char *name)
{
	size_t i;

	for (i = 0; name[i]; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return i == 64;
}

static bool ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);

	return n >= t && !strcmp(s + n - t, tail);
}

/* Lists one key directory's chunks into l; removes its stale temporaries. */
static int list_key(struct upager__chunk_cache *cc, const char *key, struct listing *l, long *removed)
{
	int fd = openat(cc->dirfd, key, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	time_t now = time(NULL);
	struct dirent *de;
	DIR *d;

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		struct stat st;
		bool tmp = !strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX));

		if ((!tmp && !ends_with(de->d_name, ".chunk")) || strlen(de->d_name) > 31 ||
		    fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (tmp) { /* a writer killed midway, or one still writing */
			if (st.st_mtime + TMP_STALE_S < now && unlinkat(fd, de->d_name, 0) == 0)
				(*removed)++;
			continue;
		}
		if (l->n == l->cap) {
			size_t cap = l->cap ? 2 * l->cap : 256;
			struct cached *v = realloc(l->v, cap * sizeof(*v));

			if (!v) {
				closedir(d);
				return -ENOMEM;
			}
			l->v = v;
			l->cap = cap;
		}
		l->v[l->n].used = st.st_mtim;
		l->v[l->n].bytes = (uint64_t)st.st_size;
		memcpy(l->v[l->n].path, key, 64); /* the name is at most 31 (tested above) */
		l->v[l->n].path[64] = '/';
		memcpy(l->v[l->n].path + 65, de->d_name, strlen(de->d_name) + 1);
		l->bytes += (uint64_t)st.st_size;
		l->n++;
	}
	closedir(d);
	return 0;
}

static int older_first(const void *a, const void *b)
{
	const struct cached *x = a, *y = b;

	if (x->used.tv_sec != y->used.tv_sec)
		return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
	if (x->used.tv_nsec != y->used.tv_nsec)
		return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
	return 0;
}

long upager__chunk_cache_trim(struct upager__chunk_cache *cc)
{
	struct listing l = { 0 };
	long removed = 0;
	struct dirent *de;
	int lock, fd, ret = 0;
	DIR *d;

	lock = open_made(cc->dirfd, ".trim", O_RDONLY, cc->file_mode);
	if (lock < 0)
		return -errno;
	if (flock(lock, LOCK_EX | LOCK_NB) < 0) {
		ret = errno == EWOULDBLOCK ? 0 : -errno; /* another process trims: enough */
		close(lock);
		return ret;
	}
	cc->since_trim = 0;
	fd = openat(cc->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		ret = -errno;
		if (fd >= 0)
			close(fd);
		close(lock);
		return ret;
	}
	while (!ret && (de = readdir(d)))
		if (is_key(de->d_name))
			ret = list_key(cc, de->d_name, &l, &removed);
	closedir(d);
	if (!ret && l.bytes > cc->max_bytes) {
		uint64_t target = cc->max_bytes - cc->max_bytes / 8;

		char open_key[65] = "";
		int keyfd = -1;

		qsort(l.v, l.n, sizeof(*l.v), older_first);
		for (size_t i = 0; i < l.n && l.bytes > target; i++) {
			/* Through the key directory's own descriptor, opened O_NOFOLLOW: a key
			 * swapped for a symlink since the listing leads nowhere else. */
			if (keyfd < 0 || memcmp(open_key, l.v[i].path, 64)) {
				if (keyfd >= 0)
					close(keyfd);
				memcpy(open_key, l.v[i].path, 64);
				open_key[64] = 0;
				keyfd = openat(cc->dirfd, open_key,
					       O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
			}
			if (keyfd >= 0 && unlinkat(keyfd, l.v[i].path + 65, 0) == 0)
				removed++;
			l.bytes -= l.v[i].bytes; /* gone either way: someone else removed it */
		}
		if (keyfd >= 0)
			close(keyfd);
	}
	free(l.v);
	close(lock);
	return ret ? ret : removed;
}
