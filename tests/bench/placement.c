/* SPDX-License-Identifier: MIT */
/*
 * placement: what it costs to put a page that was just read from a file
 * into a region, by UFFDIO_COPY (a second copy, the buffer reused) versus
 * UFFDIO_MOVE (Linux 6.8: the buffer's page itself is moved, no copy, but
 * the buffer must be faulted in afresh for the next read). Measured per
 * page, in windows of 1 MiB, as the file source works.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
struct uffdio_move {
	__u64 dst, src, len, mode;
	__s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, 0x05, struct uffdio_move)
#endif

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int uffd_open(uint64_t want, uint64_t *have)
{
	struct uffdio_api api = { .api = UFFD_API, .features = want };
	int fd = (int)syscall(__NR_userfaultfd, O_CLOEXEC);

	if (fd < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev < 0)
			return -1;
		fd = ioctl(dev, _IO(0xAA, 0x00), O_CLOEXEC);
		close(dev);
	}
	if (fd < 0 || ioctl(fd, UFFDIO_API, &api) < 0)
		return -1;
	*have = api.features;
	return fd;
}

int main(int argc, char **argv)
{
	const size_t ps = (size_t)sysconf(_SC_PAGESIZE), win = 1 << 20;
	size_t total = (argc > 2 ? strtoul(argv[2], NULL, 10) : 256) << 20;
	const char *path = argc > 1 ? argv[1] : "upager-bench.dat";
	double best[2] = { 1e9, 1e9 };
	uint64_t have = 0;
	int fd = open(path, O_RDONLY), uffd;
	uint8_t *buf;

	if (fd < 0) {
		fprintf(stderr, "placement: %s: %s\n", path, strerror(errno));
		return 1;
	}
	uffd = uffd_open(0, &have);
	if (uffd < 0) {
		fprintf(stderr, "placement: userfaultfd unavailable\n");
		return 77;
	}
	close(uffd);
	if (!(have & UFFD_FEATURE_MOVE)) {
		printf("placement: SKIP: this kernel has no UFFDIO_MOVE (Linux 6.8)\n");
		return 0;
	}
	buf = mmap(NULL, win, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (size_t off = 0; off < total; off += win) /* warm the page cache */
		if (pread(fd, buf, win, (off_t)off) <= 0)
			break;
	for (int rep = 0; rep < 5; rep++) {
		for (int move = 0; move < 2; move++) {
			struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
			uint8_t *dst = mmap(NULL, total, PROT_READ | PROT_WRITE,
					    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			double t0;

			uffd = uffd_open(move ? UFFD_FEATURE_MOVE : 0, &have);
			reg.range.start = (uintptr_t)dst;
			reg.range.len = total;
			if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
				return 1;
			memset(buf, 0, win); /* the buffer starts populated either way */
			t0 = now_s();
			for (size_t off = 0; off < total; off += win) {
				if (pread(fd, buf, win, (off_t)off) != (ssize_t)win)
					return 1;
				if (move) {
					struct uffdio_move mv = { .dst = (uintptr_t)dst + off,
								  .src = (uintptr_t)buf, .len = win };
					if (ioctl(uffd, UFFDIO_MOVE, &mv) < 0) {
						perror("UFFDIO_MOVE");
						return 1;
					}
				} else {
					struct uffdio_copy c = { .dst = (uintptr_t)dst + off,
								 .src = (uintptr_t)buf, .len = win };
					if (ioctl(uffd, UFFDIO_COPY, &c) < 0) {
						perror("UFFDIO_COPY");
						return 1;
					}
				}
			}
			if (now_s() - t0 < best[move])
				best[move] = now_s() - t0;
			{ /* the pages placed must be the file's */
				uint8_t *chk = malloc(win);
				int bad = pread(fd, chk, win, (off_t)(total - win)) != (ssize_t)win ||
					  memcmp(dst + total - win, chk, win) != 0;
				free(chk);
				if (bad) {
					fprintf(stderr, "placement: wrong data placed\n");
					return 1;
				}
			}
			close(uffd);
			munmap(dst, total);
		}
	}
	for (int move = 0; move < 2; move++)
		printf("{\"bench\":\"upager\",\"workload\":\"placement_%s\",\"system\":\"upager\","
		       "\"threads\":1,\"pages\":%zu,\"page_size\":%zu,\"seconds\":%.6f,"
		       "\"pages_per_s\":%.0f,\"ns_per_page\":%.0f}\n",
		       move ? "move" : "copy", total / ps, ps, best[move],
		       (double)(total / ps) / best[move], best[move] * 1e9 / (double)(total / ps));
	printf("placement: read 1 MiB + UFFDIO_COPY: %.0f ns/page; read 1 MiB into a moved-out "
	       "buffer + UFFDIO_MOVE: %.0f ns/page (best of 5)\n",
	       best[0] * 1e9 / (double)(total / ps), best[1] * 1e9 / (double)(total / ps));
	return 0;
}
