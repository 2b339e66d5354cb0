/* SPDX-License-Identifier: MIT */
/* The file source: io_uring reads into the fill buffer, then UFFDIO_COPY.
 * Copying (rather than mapping the page cache) is what gives MAP_PRIVATE
 * semantics: the program's writes never reach the file, unless it was
 * opened for write-back (upager_source_file_rw: evict.c writes them). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "upager-int.h"
#include "fileio.h"

/*
 * Random misses read around: the first fault in each chunk asks the kernel
 * (IORING_OP_FADVISE, WILLNEED) to bring the whole chunk into the page cache
 * in the background, as its own mmap read-around does, so that the next
 * faults nearby are page-cache copies, not disk reads.
 */
#define READ_AROUND_CHUNK (2u << 20)

struct file_source {
	upager_source_t base;
	int fd;
	uint64_t offset;
	atomic_uint_fast64_t *advised; /* a bit per chunk, NORESERVE: pay as used */
	size_t nchunks;
};

static void read_around(struct file_source *fs, uint64_t at, struct io_uring *ring)
{
	uint64_t chunk = at / READ_AROUND_CHUNK, bit = 1ull << (chunk % 64);
	struct io_uring_sqe *sqe;

	if (!fs->advised || chunk >= fs->nchunks ||
	    (atomic_load_explicit(&fs->advised[chunk / 64], memory_order_relaxed) & bit) ||
	    (atomic_fetch_or(&fs->advised[chunk / 64], bit) & bit))
		return;
	sqe = upp_get_sqe(ring);
	if (!sqe)
		return;
	io_uring_prep_fadvise(sqe, fs->fd, chunk * READ_AROUND_CHUNK, READ_AROUND_CHUNK,
			      POSIX_FADV_WILLNEED);
	io_uring_sqe_set_data64(sqe, UPAGER__TAG_IGNORE);
}

static int file_submit(struct file_source *fs, struct upager__fill *fill, struct io_uring *ring)
{
	struct io_uring_sqe *sqe = upp_get_sqe(ring);
	uint64_t at = fs->offset + fill->roff + fill->done;

	if (at < fs->offset || at > (uint64_t)INT64_MAX)
		return -EOVERFLOW;
	if (!sqe) {
		/* Ring full even after submitting: read in place rather than fail. */
		ssize_t n = pread(fs->fd, (char *)fill->buf + fill->done, fill->len - fill->done,
				  (off_t)at);
		return fs->base.ops->complete(&fs->base, fill, n < 0 ? -errno : (int)n, ring);
	}
	io_uring_prep_read(sqe, fs->fd, (char *)fill->buf + fill->done,
			   (unsigned)(fill->len - fill->done), at);
	io_uring_sqe_set_data(sqe, fill);
	return UPAGER__FILL_PENDING;
}

static int file_fill(upager_source_t *src, struct upager__fill *fill, struct io_uring *ring)
{
	struct file_source *fs = (struct file_source *)src;

	fill->done = 0;
	if (!fill->sequential && fill->len < UPAGER__MAX_WINDOW * 4096u)
		read_around(fs, fs->offset + fill->roff, ring);
	return file_submit(fs, fill, ring);
}

static int file_complete(upager_source_t *src, struct upager__fill *fill, int res,
			 struct io_uring *ring)
{
	struct file_source *fs = (struct file_source *)src;

	if (res == -EAGAIN || res == -EINTR)
		return file_submit(fs, fill, ring);
	if (res < 0)
		return res;
	if (res == 0) { /* end of file: the rest reads as zero */
		if (fill->done == 0)
			return UPAGER__FILL_ZERO;
		memset((char *)fill->buf + fill->done, 0, fill->len - fill->done);
		return UPAGER__FILL_DATA;
	}
	fill->done += (size_t)res;
	if (fill->done < fill->len)
		return file_submit(fs, fill, ring);
	return UPAGER__FILL_DATA;
}

/* Inline pagers: the faulting thread reads the page itself (pread is
 * async-signal-safe). A FIFO or socket fails with ESPIPE: SIGBUS. */
static int file_fill_inline(upager_source_t *src, size_t roff, void *buf, size_t len)
{
	struct file_source *fs = (struct file_source *)src;
	uint64_t at = fs->offset + roff;
	size_t done = 0;

	if (at < fs->offset || at > (uint64_t)INT64_MAX)
		return -EOVERFLOW;
	while (done < len) {
		ssize_t n = pread(fs->fd, (char *)buf + done, len - done, (off_t)(at + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) { /* end of file: the rest reads as zero */
			if (done == 0)
				return UPAGER__FILL_ZERO;
			memset((char *)buf + done, 0, len - done);
			break;
		}
		done += (size_t)n;
	}
	return UPAGER__FILL_DATA;
}

/*
 * Is [roff, roff + len) of the file in the page cache? Its first and last
 * bytes asked for with RWF_NOWAIT (EAGAIN: a read would wait for the
 * disk): two system calls, no read of the rest. Page-cache pages come in
 * readahead groups, so the ends stand for the block. Signal-safe.
 */
static bool file_cached(upager_source_t *src, size_t roff, size_t len)
{
	struct file_source *fs = (struct file_source *)src;
	uint64_t ends[2] = { fs->offset + roff, fs->offset + roff + len - 1 };
	char byte;

	for (int i = 0; i < 2; i++) {
		struct iovec v = { &byte, 1 };

		if (ends[i] > (uint64_t)INT64_MAX || preadv2(fs->fd, &v, 1, (off_t)ends[i], RWF_NOWAIT) < 0)
			return false;
	}
	return true;
}

static void file_destroy(upager_source_t *src)
{
	struct file_source *fs = (struct file_source *)src;

	close(fs->fd);
	if (fs->advised)
		munmap(fs->advised, ((fs->nchunks + 63) / 64) * 8);
	free(fs);
}

static int file_write(upager_source_t *src, size_t roff, const void *buf, size_t len)
{
	struct file_source *fs = (struct file_source *)src;
	uint64_t at = fs->offset + roff;

	if (at < fs->offset || at > (uint64_t)INT64_MAX)
		return -EOVERFLOW;
	return upp_pwrite_full(fs->fd, buf, len, at);
}

static int file_sync(upager_source_t *src)
{
	struct file_source *fs = (struct file_source *)src;

	return fdatasync(fs->fd) < 0 && errno != EINVAL ? -errno : 0;
}

static const struct upager__source_ops file_ops = {
	.name = "file",
	.fill = file_fill,
	.complete = file_complete,
	.destroy = file_destroy,
	.fill_inline = file_fill_inline,
	.inline_reads = true,
	.readahead = true,
	.fault_around = 16, /* 64 KiB, the kernel's fault_around_bytes */
	.cached_around = 64, /* 256 KiB when it is in the page cache (see file_cached) */
	.cached = file_cached,
	.write = file_write,
	.sync = file_sync,
};

static int file_new(int fd, uint64_t offset, bool rw, upager_source_t **srcp)
{
	struct file_source *fs;
	struct stat st;
	int acc;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	acc = fcntl(fd, F_GETFL);
	if (acc < 0)
		return -errno;
	if ((acc & O_ACCMODE) == O_WRONLY || (rw && (acc & O_ACCMODE) != O_RDWR))
		return -EBADF;
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	upager__source_init(&fs->base, &file_ops);
	fs->fd = fd;
	fs->offset = offset;
	fs->base.writable = rw;
	/* Sized for the file as it is now (a file that grows reads around less). */
	if (S_ISREG(st.st_mode) && st.st_size > 0) {
		fs->nchunks = ((uint64_t)st.st_size + READ_AROUND_CHUNK - 1) / READ_AROUND_CHUNK;
		fs->advised = mmap(NULL, ((fs->nchunks + 63) / 64) * 8, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (fs->advised == MAP_FAILED)
			fs->advised = NULL;
	}
	*srcp = &fs->base;
	return 0;
}

static int source_fd(int fd, uint64_t offset, bool rw, upager_source_t **srcp)
{
	long ps = sysconf(_SC_PAGESIZE);
	int dup, ret;

	if (fd < 0 || !srcp || offset % (uint64_t)ps || offset > (uint64_t)INT64_MAX)
		return -EINVAL;
	dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dup < 0)
		return -errno;
	ret = file_new(dup, offset, rw, srcp);
	if (ret < 0)
		close(dup);
	return ret;
}

static int source_path(const char *path, uint64_t offset, bool rw, upager_source_t **srcp)
{
	long ps = sysconf(_SC_PAGESIZE);
	int fd, ret;

	if (!path || !*path || !srcp || offset % (uint64_t)ps || offset > (uint64_t)INT64_MAX)
		return -EINVAL;
	fd = open(path, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = file_new(fd, offset, rw, srcp);
	if (ret < 0)
		close(fd);
	return ret;
}

UPAGER__EXPORT int upager_source_file(int fd, uint64_t offset, upager_source_t **srcp)
{
	return source_fd(fd, offset, false, srcp);
}

UPAGER__EXPORT int upager_source_path(const char *path, uint64_t offset, upager_source_t **srcp)
{
	return source_path(path, offset, false, srcp);
}

UPAGER__EXPORT int upager_source_file_rw(int fd, uint64_t offset, upager_source_t **srcp)
{
	return source_fd(fd, offset, true, srcp);
}

UPAGER__EXPORT int upager_source_path_rw(const char *path, uint64_t offset,
					 upager_source_t **srcp)
{
	return source_path(path, offset, true, srcp);
}
