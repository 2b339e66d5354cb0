/* SPDX-License-Identifier: MIT */
/*
 * lazy-file: a large file viewed as memory; pages load on first touch.
 *
 * It answers the same 2000 random record lookups three times: after reading
 * the whole file into memory (what a program without demand paging does);
 * through a upager region backed by the file, with the default advice (a
 * fault fills the 64 KiB around it, as the kernel's fault-around does); and
 * with UPAGER_ADV_RANDOM, the right advice for sparse lookups, where only the
 * touched pages are read. It prints faults, bytes read and times.
 *
 *   lazy-file [FILE]        use FILE (read-only; never modified)
 *   lazy-file --size MIB    make a temporary file of MIB MiB (default 512)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <upager.h>

#define RECORD 64
#define LOOKUPS 2000

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int make_file(size_t mib, char *path, size_t pathlen)
{
	static uint64_t buf[1 << 17]; /* 1 MiB */
	uint64_t x = 88172645463325252ull;
	int fd;

	snprintf(path, pathlen, "%s/upager-lazy-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	unlink(path);
	for (size_t m = 0; m < mib; m++) {
		for (size_t i = 0; i < sizeof(buf) / sizeof(buf[0]); i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			buf[i] = x;
		}
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
			close(fd);
			return -EIO;
		}
	}
	return fd;
}

static uint64_t lookups(const uint8_t *data, size_t size)
{
	uint64_t x = 42, sum = 0;

	for (int i = 0; i < LOOKUPS; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		size_t rec = (size_t)(x >> 11) % (size / RECORD);
		uint64_t v;

		memcpy(&v, data + rec * RECORD, sizeof(v));
		sum += v;
	}
	return sum;
}

int main(int argc, char **argv)
{
	size_t mib = 512, size;
	upager_source_t *src;
	upager_region_t *region;
	upager_stats_t st;
	upager_t *pager;
	char path[256], why[512];
	double t0, t_eager, t_lazy;
	uint64_t s_eager, s_lazy;
	struct stat sb;
	uint8_t *copy;
	int fd, ret;

	if (argc == 3 && strcmp(argv[1], "--size") == 0) {
		mib = strtoul(argv[2], NULL, 10);
		if (mib == 0) {
			fprintf(stderr, "lazy-file: --size wants a number of MiB\n");
			return 2;
		}
	} else if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		printf("usage: lazy-file [FILE | --size MIB]\n");
		return 0;
	} else if (argc > 2) {
		fprintf(stderr, "usage: lazy-file [FILE | --size MIB]\n");
		return 2;
	}
	if (upager_probe(0, NULL, why, sizeof(why)) < 0) {
		fprintf(stderr, "lazy-file: userfaultfd unavailable: %s\n", why);
		return 77;
	}
	if (argc == 2)
		fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	else
		fd = make_file(mib, path, sizeof(path));
	if (fd < 0 || fstat(fd, &sb) < 0 || sb.st_size < RECORD) {
		fprintf(stderr, "lazy-file: cannot use the file: %s\n",
			fd < 0 ? strerror(fd == -1 ? errno : -fd) : "too small");
		return 1;
	}
	size = (size_t)sb.st_size;
	printf("file: %zu MiB, %d random %d-byte record lookups\n\n", size >> 20, LOOKUPS, RECORD);

	/* Eager: read it all, then look up. */
	t0 = now_ms();
	copy = malloc(size);
	if (!copy) {
		fprintf(stderr, "lazy-file: cannot allocate %zu bytes\n", size);
		return 1;
	}
	for (size_t off = 0; off < size;) {
		ssize_t n = pread(fd, copy + off, size - off, (off_t)off);
		if (n <= 0) {
			fprintf(stderr, "lazy-file: read: %s\n", n < 0 ? strerror(errno) : "short");
			return 1;
		}
		off += (size_t)n;
	}
	s_eager = lookups(copy, size);
	t_eager = now_ms() - t0;
	free(copy);

	/* Lazy: map it through upager and look up; only what faults is read. */
	printf("%-26s %10s %12s %10s\n", "", "time (ms)", "bytes read", "faults");
	printf("%-26s %10.1f %12zu %10s\n", "read whole file", t_eager, size, "-");
	for (int advice = UPAGER_ADV_NORMAL; advice <= UPAGER_ADV_RANDOM; advice += 2) {
		t0 = now_ms();
		if ((ret = upager_create(&pager, NULL)) < 0 ||
		    (ret = upager_source_file(fd, 0, &src)) < 0 ||
		    (ret = upager_map(pager, size, src, &region)) < 0 ||
		    (ret = upager_region_advise(region, advice)) < 0) {
			fprintf(stderr, "lazy-file: %s\n", upager_strerror(ret));
			return 1;
		}
		s_lazy = lookups(upager_region_addr(region), size);
		t_lazy = now_ms() - t0;
		upager_region_stats(region, &st);
		printf("%-26s %10.1f %12" PRIu64 " %10" PRIu64 "   %.2f%% of the file, %.1f%% of the time%s\n",
		       advice == UPAGER_ADV_RANDOM ? "upager, ADV_RANDOM" : "upager, default advice",
		       t_lazy, st.bytes_filled, st.faults,
		       100.0 * (double)st.bytes_filled / (double)size, 100.0 * t_lazy / t_eager,
		       s_lazy == s_eager ? "" : "  ANSWERS DIFFER");
		if (s_lazy != s_eager)
			return 1;
		if (advice == UPAGER_ADV_RANDOM)
			break;
		upager_release(region);
		upager_source_release(src);
		upager_destroy(pager);
	}
	printf("\nanswers identical; fault service latency with ADV_RANDOM: p50 %.1f us, p99 %.1f us "
	       "(handler side)\n", (double)st.lat_p50_ns / 1e3, (double)st.lat_p99_ns / 1e3);

	upager_release(region);
	upager_source_release(src);
	upager_destroy(pager);
	close(fd);
	return 0;
}
