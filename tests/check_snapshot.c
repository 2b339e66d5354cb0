/* SPDX-License-Identifier: MIT */
/* Snapshots: round trips with every byte checked, saving without faulting,
 * and hostile files (corrupt, truncated, crafted), each refused cleanly. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "protocol.h"
#include "snapfmt.h"

static char dir[64], path[128];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/upager-snap-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/mem.snap", dir);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0) {
		/* best effort */
	}
}

/* Pages: 'p' pattern, 'z' written zero, '.' untouched. */
static uint8_t *make_memory(const char *layout)
{
	size_t n = strlen(layout);
	uint8_t *a = mmap(NULL, n * UPT_PAGE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(a, MAP_FAILED);
	for (size_t i = 0; i < n; i++) {
		if (layout[i] == 'p')
			upt_fill(a + i * UPT_PAGE, UPT_PAGE, i * UPT_PAGE, 17);
		else if (layout[i] == 'z')
			memset(a + i * UPT_PAGE, 0, UPT_PAGE); /* populated, all zero */
	}
	return a;
}

static void check_restored(upager_region_t *r, const char *layout)
{
	const uint8_t *b = upager_region_addr(r);

	ck_assert_uint_eq(upager_region_size(r), strlen(layout) * UPT_PAGE);
	for (size_t i = 0; layout[i]; i++) {
		if (layout[i] == 'p')
			ck_assert_int_eq(upt_check_pattern(b + i * UPT_PAGE, UPT_PAGE, i * UPT_PAGE, 17), -1);
		else
			ck_assert_int_eq(upt_check_zero(b + i * UPT_PAGE, UPT_PAGE), -1);
	}
}

START_TEST(test_round_trips)
{
	static const char *layouts[] = {
		"pppppppppzzzzzzzzz..........ppppppppppppppppppppp.p.z.p",
		"p", "z", ".", "pzp", "....................", "zzzzzzzzzzzzzzzz",
		"pppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp",
	};
	upager_t *p = upt_pager(1, 0);

	for (size_t k = 0; k < sizeof(layouts) / sizeof(layouts[0]); k++) {
		const char *l = layouts[k];
		uint8_t *a = make_memory(l);
		size_t stored = 0;
		upager_region_t *r;
		struct stat st;

		for (size_t i = 0; l[i]; i++)
			stored += l[i] == 'p';
		ck_assert_int_eq(upager_snapshot_save(a, strlen(l) * UPT_PAGE, path), 0);
		ck_assert_int_eq(stat(path, &st), 0);
		/* Only pattern pages take room: zero and untouched ones do not. */
		ck_assert_uint_eq((size_t)st.st_size, 4096 + stored * UPT_PAGE + strlen(l) * 16);
		munmap(a, strlen(l) * UPT_PAGE);
		ck_assert_int_eq(upager_snapshot_map(p, path, 0, &r), 0);
		check_restored(r, l);
		upager_release(r);
	}
	upager_destroy(p);
}
END_TEST

/* Saving a upager region reads only populated pages: no faults. */
static int fill_cb(void *arg, uint64_t off, void *buf, size_t len)
{
	upt_fill(buf, len, off, 17);
	return 0;
}

START_TEST(test_save_lazy_region)
{
	upager_t *p = upt_pager(1, 0);
	upager_source_t *s;
	upager_region_t *r, *back;
	upager_stats_t st;
	const char *layout = "p...p...pppp....";
	uint8_t *a;

	ck_assert_int_eq(upager_source_callback(fill_cb, NULL, NULL, &s), 0);
	ck_assert_int_eq(upager_map(p, 16 * UPT_PAGE, s, &r), 0);
	upager_source_release(s);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0);
	a = upager_region_addr(r);
	for (int i = 0; layout[i]; i++)
		if (layout[i] == 'p')
			ck_assert_uint_eq(a[i * UPT_PAGE], upt_byte(i * UPT_PAGE, 17));
	ck_assert_int_eq(upager_snapshot_save(a, 16 * UPT_PAGE, path), 0);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.faults, 6); /* the six touched; saving added none */
	ck_assert_int_eq(upager_snapshot_map(p, path, 0, &back), 0);
	check_restored(back, layout); /* untouched pages were absent: zero */
	upager_destroy(p);
}
END_TEST

START_TEST(test_arguments)
{
	upager_t *p = upt_pager(1, 0);
	upager_region_t *r;
	upager_source_t *s;
	uint8_t *a = make_memory("pp");

	ck_assert_int_eq(upager_snapshot_save(NULL, UPT_PAGE, path), -EINVAL);
	ck_assert_int_eq(upager_snapshot_save(a, 0, path), -EINVAL);
	ck_assert_int_eq(upager_snapshot_save(a + 1, UPT_PAGE, path), -EINVAL);
	ck_assert_int_eq(upager_snapshot_save(a, UPT_PAGE + 1, path), -EINVAL);
	ck_assert_int_eq(upager_snapshot_save(a, UPT_PAGE, NULL), -EINVAL);
	ck_assert_int_eq(upager_snapshot_save(a, UPT_PAGE, ""), -EINVAL);
	ck_assert_int_eq(upager_snapshot_save(a, UPT_PAGE, "/nonexistent/dir/x.snap"), -ENOENT);
	ck_assert_int_eq(upager_snapshot_map(NULL, path, 0, &r), -EINVAL);
	ck_assert_int_eq(upager_snapshot_map(p, path, 0, NULL), -EINVAL);
	ck_assert_int_eq(upager_snapshot_map(p, "/nonexistent.snap", 0, &r), -ENOENT);
	ck_assert_int_eq(upager_source_snapshot(NULL, NULL, &s), -EINVAL);
	ck_assert_int_eq(upager_source_snapshot("/", NULL, &s), -EISDIR);
	munmap(a, 2 * UPT_PAGE);
	upager_destroy(p);
}
END_TEST

/* ---- hostile files ---- */

static void patch(const char *file, off_t off, const void *bytes, size_t n)
{
	int fd = open(file, O_WRONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, bytes, n, off), (ssize_t)n);
	close(fd);
}

static void get(const char *file, off_t off, void *bytes, size_t n)
{
	int fd = open(file, O_RDONLY);

	ck_assert_int_eq(pread(fd, bytes, n, off), (ssize_t)n);
	close(fd);
}

/* Recomputes both checksums after a crafted change, so that only the
 * field checks can catch it. npages: the real page map's length. */
static void reseal(const char *file, uint64_t npages)
{
	uint8_t hdr[4096], *map;
	uint64_t map_off;
	uint32_t crc;

	get(file, 0, hdr, sizeof(hdr));
	memcpy(&map_off, hdr + 48, 8);
	map = malloc(npages * 16);
	get(file, (off_t)map_off, map, npages * 16);
	crc = upp_crc32c(0, map, npages * 16);
	memcpy(hdr + 60, &crc, 4);
	memset(hdr + 64, 0, 4);
	crc = upp_crc32c(0, hdr, sizeof(hdr));
	memcpy(hdr + 64, &crc, 4);
	patch(file, 0, hdr, sizeof(hdr));
	free(map);
}

static void save_layout(const char *layout)
{
	uint8_t *a = make_memory(layout);

	ck_assert_int_eq(upager_snapshot_save(a, strlen(layout) * UPT_PAGE, path), 0);
	munmap(a, strlen(layout) * UPT_PAGE);
}

static int open_err(void)
{
	upager_source_t *s;
	int ret = upager_source_snapshot(path, NULL, &s);

	if (ret == 0)
		upager_source_release(s);
	return ret;
}

START_TEST(test_hostile_files)
{
	const char *layout = "pppp..zzpp";
	uint8_t b, v8[8];
	uint64_t map_off, big;
	int fd;

	save_layout(layout);
	ck_assert_int_eq(open_err(), 0);

	/* One flipped bit in the header. */
	get(path, 20, &b, 1);
	b ^= 4;
	patch(path, 20, &b, 1);
	ck_assert_int_eq(open_err(), -EBADMSG);

	/* Truncated. */
	save_layout(layout);
	ck_assert_int_eq(truncate(path, 4096 + 3 * UPT_PAGE), 0);
	ck_assert_int_eq(open_err(), -EBADMSG);
	ck_assert_int_eq(truncate(path, 100), 0);
	ck_assert_int_eq(open_err(), -EBADMSG);
	ck_assert_int_eq(truncate(path, 0), 0);
	ck_assert_int_eq(open_err(), -EBADMSG);

	/* A flipped bit in the page map. */
	save_layout(layout);
	get(path, 48, &map_off, 8);
	get(path, (off_t)map_off + 3 * 16 + 8, &b, 1);
	b ^= 1;
	patch(path, (off_t)map_off + 3 * 16 + 8, &b, 1);
	ck_assert_int_eq(open_err(), -EBADMSG);

	/* Crafted, checksums resealed: a stored page pointing past the data. */
	save_layout(layout);
	get(path, 48, &map_off, 8);
	big = 1000;
	patch(path, (off_t)map_off + 0 * 16 + 8, &big, 8);
	reseal(path, strlen(layout));
	ck_assert_int_eq(open_err(), -EBADMSG);

	/* Crafted: a page count that would put the map past the end of the file. */
	save_layout(layout);
	big = 1ull << 40;
	patch(path, 24, &big, 8);
	big <<= 12;
	patch(path, 16, &big, 8);
	reseal(path, strlen(layout));
	ck_assert_int_eq(open_err(), -EBADMSG);

	/* Crafted: an unknown kind of page. */
	save_layout(layout);
	get(path, 48, &map_off, 8);
	b = 7;
	patch(path, (off_t)map_off + 4 * 16, &b, 1);
	reseal(path, strlen(layout));
	ck_assert_int_eq(open_err(), -EBADMSG);

	/* Another page size: refused, as -EINVAL. */
	save_layout(layout);
	memset(v8, 0, 8);
	v8[1] = 0x40; /* 16 KiB */
	patch(path, 12, v8, 4);
	reseal(path, strlen(layout));
	ck_assert_int_eq(open_err(), -EINVAL);

	/* Not a snapshot at all. */
	fd = open(path, O_WRONLY | O_TRUNC);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(write(fd, "this is not a snapshot, honest.\n", 32), 32);
	close(fd);
	ck_assert_int_eq(open_err(), -EBADMSG);
}
END_TEST

/* A damaged stored page: its access gets SIGBUS; the others read right. */
static void corrupt_child(void *arg)
{
	const char *layout = "pppppp";
	upager_region_t *r;
	upager_t *p;
	const uint8_t *a;

	if (upager_create(&p, NULL) || upager_snapshot_map(p, path, 0, &r))
		_exit(2);
	upager_region_advise(r, UPAGER_ADV_RANDOM);
	a = upager_region_addr(r);
	for (int i = 0; i < 6; i++)
		if (i != 3 && upt_check_pattern(a + i * UPT_PAGE, UPT_PAGE, i * UPT_PAGE, 17) != -1)
			_exit(3);
	(void)layout;
	_exit(a[3 * UPT_PAGE + 100] == 0 ? 4 : 5); /* must not get here */
}

START_TEST(test_corrupt_page)
{
	uint8_t b;
	int status;

	save_layout("pppppp");
	get(path, 4096 + 3 * UPT_PAGE + 100, &b, 1);
	b ^= 0x80;
	patch(path, 4096 + 3 * UPT_PAGE + 100, &b, 1);
	ck_assert_int_eq(open_err(), 0); /* pages are checked when read */
	status = upt_child(corrupt_child, NULL, 20);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "status %#x", status);
}
END_TEST

/* The saver killed mid-write: nothing under the final name. */
static void big_saver(void *arg)
{
	const size_t len = 512u << 20;
	uint8_t *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	for (size_t off = 0; off < len; off += UPT_PAGE)
		a[off] = (uint8_t)(off >> 12) | 1;
	if (write(*(int *)arg, "x", 1) != 1)
		_exit(2);
	upager_snapshot_save(a, len, path);
	_exit(0);
}

START_TEST(test_crash_during_save)
{
	int pfd[2], status;
	char c;
	pid_t pid;

	ck_assert_int_eq(pipe(pfd), 0);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		big_saver(&pfd[1]);
	}
	close(pfd[1]);
	ck_assert_int_eq(read(pfd[0], &c, 1), 1); /* memory ready: saving starts */
	usleep(30 * 1000);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	close(pfd[0]);
	ck_assert(WIFSIGNALED(status)); /* it was killed mid-save, not finished */
	ck_assert_int_eq(access(path, F_OK), -1);
	ck_assert_int_eq(errno, ENOENT);
}
END_TEST

/* Records a working set of 40 pages touched in a scrambled order; returns it in order[]. */
static void record_ws(upager_t *p, const char *layout, uint64_t *order)
{
	char wspath[160];
	upager_region_t *r;
	const uint8_t *a;

	ck_assert_int_eq(upager_snapshot_map(p, path, UPAGER_SNAP_RECORD, &r), 0);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0);
	a = upager_region_addr(r);
	for (int i = 0; i < 40; i++) {
		order[i] = (uint64_t)(i * 97 + 13) % 512;
		ck_assert_uint_eq(a[order[i] * UPT_PAGE + 1],
				  layout[order[i]] == 'p' ? upt_byte(order[i] * UPT_PAGE + 1, 17) : 0);
	}
	snprintf(wspath, sizeof(wspath), "%s.ws", path);
	ck_assert_int_eq(access(wspath, F_OK), -1); /* written at release */
	ck_assert_int_eq(upager_release(r), 0);
	ck_assert_int_eq(access(wspath, F_OK), 0);
}

/* Waits (3 s at most) until n pages of r were prefetched; *st: the stats then. */
static void wait_prefetched(upager_region_t *r, uint64_t n, upager_stats_t *st)
{
	for (int i = 0; i < 3000; i++) {
		ck_assert_int_eq(upager_region_stats(r, st), 0);
		if (st->pages_prefetched >= n)
			break;
		usleep(1000);
	}
}

/* Record the working set, then restore with it prefetched in that order. */
START_TEST(test_working_set)
{
	char layout[513], wspath[160];
	uint64_t order[40], hdr[4], got[40];
	upager_t *p = upt_pager(1, 0);
	upager_region_t *r;
	upager_stats_t st;
	const uint8_t *a;
	uint8_t b;
	int fd;

	memset(layout, 'p', 512);
	layout[512] = '\0';
	save_layout(layout);
	snprintf(wspath, sizeof(wspath), "%s.ws", path);
	ck_assert_int_eq(upager_snapshot_map(p, path, 1u << 7, &r), -EINVAL);

	/* Record: pages touched in a scrambled order, one fault each. */
	record_ws(p, layout, order);
	fd = open(wspath, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, hdr, 32), 32);
	ck_assert_uint_eq(hdr[1], 40); /* count */
	ck_assert_uint_eq(hdr[2], 512); /* npages */
	ck_assert_int_eq(read(fd, got, sizeof(got)), (ssize_t)sizeof(got));
	close(fd);
	for (int i = 0; i < 40; i++)
		ck_assert_uint_eq(got[i], order[i]);

	/* Restore with prefetch: the working set is there before it is touched. */
	ck_assert_int_eq(upager_snapshot_map(p, path, UPAGER_SNAP_PREFETCH, &r), 0);
	wait_prefetched(r, 40, &st);
	ck_assert_uint_eq(st.pages_prefetched, 40);
	a = upager_region_addr(r);
	for (int i = 0; i < 40; i++)
		ck_assert_int_eq(upt_check_pattern(a + order[i] * UPT_PAGE, UPT_PAGE,
						   order[i] * UPT_PAGE, 17), -1);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.faults, 0);
	check_restored(r, layout); /* and the rest by faults, all right */
	upager_release(r);

	/* A damaged working set: restore works, without prefetch. */
	get(wspath, 40, &b, 1);
	b ^= 1;
	patch(wspath, 40, &b, 1);
	ck_assert_int_eq(upager_snapshot_map(p, path, UPAGER_SNAP_PREFETCH, &r), 0);
	usleep(200 * 1000);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.pages_prefetched, 0);
	check_restored(r, layout);
	upager_destroy(p);
}
END_TEST

/* The working set laid out first, in order; the same bytes restored; damage refused. */
START_TEST(test_reorder)
{
	char layout[513];
	uint64_t order[40];
	upager_t *p = upt_pager(1, 0);
	upager_region_t *r;
	upager_stats_t st;
	struct upp_snap f;
	struct stat st0, st1;
	uint8_t b;
	int fd;

	memset(layout, 'p', 512);
	for (int i = 0; i < 512; i += 7)
		layout[i] = i % 2 ? 'z' : '.'; /* zero and absent pages too */
	layout[512] = '\0';
	save_layout(layout);
	ck_assert_int_eq(upager_snapshot_reorder(NULL), -EINVAL);
	ck_assert_int_eq(upager_snapshot_reorder(path), -ENOENT); /* no working set yet */
	record_ws(p, layout, order);
	ck_assert_int_eq(upager_snapshot_reorder(path), 0);

	fd = open(path, O_RDONLY);
	ck_assert_int_eq(upp_snap_open(fd, UPT_PAGE, &f), 0);
	for (uint64_t i = 0, k = 0; i < 40; i++) {
		if (layout[order[i]] != 'p')
			continue;
		int sfd;

		ck_assert_uint_eq(upp_snap_locate(&f, order[i], &sfd), UPP_SNAP_HDR + k * UPT_PAGE);
		k++;
	}
	upp_snap_close(&f);
	close(fd);

	ck_assert_int_eq(upager_snapshot_map(p, path, 0, &r), 0);
	check_restored(r, layout);
	upager_release(r);
	ck_assert_int_eq(upager_snapshot_map(p, path, UPAGER_SNAP_PREFETCH, &r), 0);
	wait_prefetched(r, 40, &st);
	ck_assert_uint_eq(st.pages_prefetched, 40); /* PATH.ws still fits */
	check_restored(r, layout);
	upager_release(r);

	/* A damaged page: refused, and the file is left as it was. */
	get(path, UPP_SNAP_HDR + 3 * (off_t)UPT_PAGE + 9, &b, 1);
	b ^= 0x10;
	patch(path, UPP_SNAP_HDR + 3 * (off_t)UPT_PAGE + 9, &b, 1);
	ck_assert_int_eq(stat(path, &st0), 0);
	ck_assert_int_eq(upager_snapshot_reorder(path), -EBADMSG);
	ck_assert_int_eq(stat(path, &st1), 0);
	ck_assert_uint_eq(st0.st_ino, st1.st_ino);
	upager_destroy(p);
}
END_TEST

/* ---- incremental snapshots ---- */

struct counts {
	uint64_t stored, zero, parent;
	char parent_name[256];
};

/* What file's own page map holds. */
static void count_kinds(const char *file, struct counts *c)
{
	struct upp_snap f;
	int fd = open(file, O_RDONLY);

	memset(c, 0, sizeof(*c));
	ck_assert_int_eq(upp_snap_open(fd, UPT_PAGE, &f), 0);
	for (uint64_t i = 0; i < f.npages; i++) {
		c->stored += upp_snap_own_kind(&f, i) == UPP_SNAP_STORED;
		c->zero += upp_snap_own_kind(&f, i) == UPP_SNAP_ZERO;
		c->parent += upp_snap_own_kind(&f, i) == UPP_SNAP_PARENT;
	}
	snprintf(c->parent_name, sizeof(c->parent_name), "%s", f.parent ? f.parent_name : "");
	upp_snap_close(&f);
	close(fd);
}

/* Restores path into a fresh region, checking it holds expect (npages pages). */
static void check_file_holds(upager_t *p, const char *file, const uint8_t *expect, size_t npages)
{
	upager_region_t *r;

	ck_assert_int_eq(upager_snapshot_map(p, file, 0, &r), 0);
	ck_assert_uint_eq(upager_region_size(r), npages * UPT_PAGE);
	ck_assert_int_eq(memcmp(upager_region_addr(r), expect, npages * UPT_PAGE), 0);
	upager_release(r);
}

START_TEST(test_incremental)
{
	const char *layout = "pppppppppp..zzpppppppppppppppppppppppppppppppp"; /* 46 pages */
	size_t n = strlen(layout);
	char child[160], grand[160], other[160];
	struct counts in;
	upager_t *p = upt_pager(1, 0);
	upager_region_t *r;
	uint8_t *a, *expect = malloc(n * UPT_PAGE);
	struct stat st0, st1;

	snprintf(child, sizeof(child), "%s/child.snap", dir);
	snprintf(grand, sizeof(grand), "%s/grand.snap", dir);
	save_layout(layout);
	ck_assert_int_eq(upager_snapshot_save_incremental(NULL, n * UPT_PAGE, path, child), -EINVAL);

	/* Restore, change three pages, read one, zero one; save what changed. */
	ck_assert_int_eq(upager_snapshot_map(p, path, 0, &r), 0);
	upager_region_advise(r, UPAGER_ADV_RANDOM);
	a = upager_region_addr(r);
	upt_fill(a + 3 * UPT_PAGE, UPT_PAGE, 0, 99);
	upt_fill(a + 11 * UPT_PAGE, UPT_PAGE, 0, 98); /* was absent */
	a[30 * UPT_PAGE + 5] ^= 1;
	memset(a + 20 * UPT_PAGE, 0, UPT_PAGE);
	(void)*(volatile uint8_t *)(a + 40 * UPT_PAGE); /* read, not written */
	ck_assert_int_eq(upager_snapshot_save_incremental(a, n * UPT_PAGE - UPT_PAGE, path, child),
			 -EINVAL); /* not the parent's length */
	ck_assert_int_eq(upager_snapshot_save_incremental(a, n * UPT_PAGE, path, "/proc/x.snap"),
			 -EXDEV); /* not beside its parent */
	ck_assert_int_eq(upager_snapshot_save_incremental(a, n * UPT_PAGE, path, path),
			 -EINVAL); /* over its own parent */
	ck_assert_int_eq(upager_snapshot_save_incremental(a, n * UPT_PAGE, path, child), 0);
	memcpy(expect, a, n * UPT_PAGE);
	upager_release(r);

	count_kinds(child, &in);
	ck_assert_uint_eq(in.stored, 3); /* pages 3, 11, 30: only what differs */
	ck_assert_uint_eq(in.zero, 1);   /* page 20 */
	ck_assert_uint_eq(in.parent, n - 4);
	ck_assert_str_eq(in.parent_name, "mem.snap");
	ck_assert_int_eq(stat(path, &st0), 0);
	ck_assert_int_eq(stat(child, &st1), 0);
	ck_assert_int_lt(st1.st_size, st0.st_size / 4);
	check_file_holds(p, child, expect, n);

	/* A chain: a grandchild of a restore of the child. */
	ck_assert_int_eq(upager_snapshot_map(p, child, 0, &r), 0);
	a = upager_region_addr(r);
	upt_fill(a + 45 * UPT_PAGE, UPT_PAGE, 7, 97);
	ck_assert_int_eq(upager_snapshot_save_incremental(a, n * UPT_PAGE, child, grand), 0);
	memcpy(expect, a, n * UPT_PAGE);
	upager_release(r);
	count_kinds(grand, &in);
	ck_assert_uint_eq(in.stored, 1);
	check_file_holds(p, grand, expect, n);

	/* Read through the format's reader (as upagerd and the tool do): the same bytes. */
	{
		uint8_t *page = malloc(UPT_PAGE);
		struct upp_snap f;
		int fd = open(grand, O_RDONLY);

		ck_assert_int_eq(upp_snap_open(fd, UPT_PAGE, &f), 0);
		for (size_t i = 0; i < n; i++) {
			ck_assert_int_ge(upp_snap_read(&f, i, page), 0);
			ck_assert_int_eq(memcmp(page, expect + i * UPT_PAGE, UPT_PAGE), 0);
		}
		upp_snap_close(&f);
		close(fd);
		free(page);
	}

	/* A parent saved again (changed) or gone: its children are refused. */
	snprintf(other, sizeof(other), "%s/child.moved", dir);
	ck_assert_int_eq(rename(child, other), 0);
	ck_assert_int_eq(upager_snapshot_map(p, grand, 0, &r), -ENOENT);
	ck_assert_int_eq(rename(other, child), 0);
	check_file_holds(p, grand, expect, n);
	layout = "pppppppppp..zzpppppppppppppppppppppppppppppppz";
	save_layout(layout); /* mem.snap, but not the one child.snap was made against */
	ck_assert_int_eq(upager_snapshot_map(p, child, 0, &r), -EBADMSG);
	ck_assert_int_eq(upager_snapshot_map(p, grand, 0, &r), -EBADMSG);
	free(expect);
	upager_destroy(p);
}
END_TEST

/* ---- incremental snapshots with writes tracked (WP_ASYNC + PAGEMAP_SCAN) ---- */

#define TRACK_LAYOUT "ppppppppppppppppppppppppppppppp.zzpppppp" /* 40 pages */

static void *write_page(void *arg)
{
	upt_fill(arg, UPT_PAGE, 0, 91);
	return NULL;
}

/*
 * Every way a program writes to restored memory, the same in each call.
 * user_only: the pager's userfaultfd handles user-mode faults only
 * (UFFD_USER_MODE_ONLY, unprivileged), where the kernel's own write into a
 * page not yet there fails with EFAULT, as upager(7) says; the program then
 * writes it itself.
 */
static void mutate(uint8_t *a, bool user_only)
{
	const size_t pg = UPT_PAGE;
	uint8_t buf[64];
	pthread_t t;
	int pfd[2], mem;

	(void)*(volatile uint8_t *)(a + 1 * pg); /* read, then write */
	a[1 * pg + 9] ^= 0x5a;
	a[2 * pg + 17] = 0xee; /* written first */
	ck_assert_int_eq(pipe(pfd), 0); /* written by the kernel, touched first or not */
	memset(buf, 0x3c, sizeof(buf));
	ck_assert_int_eq(write(pfd[1], buf, sizeof(buf)), (ssize_t)sizeof(buf));
	if (user_only) {
		ck_assert_int_eq(read(pfd[0], a + 3 * pg + 100, sizeof(buf)), -1);
		ck_assert_int_eq(errno, EFAULT);
		ck_assert_int_eq(read(pfd[0], buf, sizeof(buf)), (ssize_t)sizeof(buf));
		memcpy(a + 3 * pg + 100, buf, sizeof(buf));
	} else {
		ck_assert_int_eq(read(pfd[0], a + 3 * pg + 100, sizeof(buf)), (ssize_t)sizeof(buf));
	}
	(void)*(volatile uint8_t *)(a + 4 * pg);
	ck_assert_int_eq(write(pfd[1], buf, sizeof(buf)), (ssize_t)sizeof(buf));
	ck_assert_int_eq(read(pfd[0], a + 4 * pg + 7, sizeof(buf)), (ssize_t)sizeof(buf));
	close(pfd[0]);
	close(pfd[1]);
	a[5 * pg + 3] = *(volatile uint8_t *)(a + 5 * pg + 3); /* written, unchanged */
	a[6 * pg] ^= 1; /* written, then dropped: it comes back as in the parent */
	ck_assert_int_eq(madvise(a + 6 * pg, pg, MADV_DONTNEED), 0);
	(void)*(volatile uint8_t *)(a + 6 * pg);
	upt_fill(a + 7 * pg, 9 * pg, 0, 92); /* one write over nine pages */
	memset(a + 16 * pg, 0, pg); /* zeroed */
	ck_assert_int_eq(pthread_create(&t, NULL, write_page, a + 17 * pg), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	for (size_t i = 20; i <= 30; i++) /* read only */
		(void)*(volatile uint8_t *)(a + i * pg);
	a[31 * pg + 1] = 1; /* absent in the parent */
	(void)*(volatile uint8_t *)(a + 32 * pg); /* zero there, read */
	a[33 * pg] = 2;                           /* zero there, written */
	/* Through /proc/self/mem, as a debugger writes (FOLL_FORCE). */
	(void)*(volatile uint8_t *)(a + 34 * pg);
	mem = open("/proc/self/mem", O_RDWR);
	ck_assert_int_ge(mem, 0);
	ck_assert_int_eq(pwrite(mem, buf, 8, (off_t)(uintptr_t)(a + 34 * pg + 40)), 8);
	close(mem);
}

/* Restores path in p, mutates it, saves it against path as child; its bytes in expect. */
static void restore_mutate_save(upager_t *p, const char *child, uint8_t *expect)
{
	size_t len = strlen(TRACK_LAYOUT) * UPT_PAGE;
	upager_region_t *r;

	ck_assert_int_eq(upager_snapshot_map(p, path, 0, &r), 0);
	upager_region_advise(r, UPAGER_ADV_RANDOM);
	mutate(upager_region_addr(r), upager_features(p) & UPAGER_FEAT_USER_ONLY);
	ck_assert_int_eq(upager_snapshot_save_incremental(upager_region_addr(r), len, path, child),
			 0);
	memcpy(expect, upager_region_addr(r), len);
	upager_release(r);
}

static uint8_t *slurp(const char *file, size_t *len)
{
	struct stat st;
	uint8_t *b;

	ck_assert_int_eq(stat(file, &st), 0);
	b = malloc((size_t)st.st_size);
	get(file, 0, b, (size_t)st.st_size);
	*len = (size_t)st.st_size;
	return b;
}

/*
 * With writes tracked, clean pages are not compared; the file must be the
 * very one that comparing every page gives, and hold every byte written.
 */
START_TEST(test_incremental_tracked)
{
	size_t n = strlen(TRACK_LAYOUT), l1, l2;
	uint8_t *e1 = malloc(n * UPT_PAGE), *e2 = malloc(n * UPT_PAGE), *f1, *f2;
	upager_t *tracked = upt_pager(1, 0), *compared = upt_pager(1, UPAGER_FEAT_WP_ASYNC);
	char c1[160], c2[160];
	struct counts in;

	snprintf(c1, sizeof(c1), "%s/tracked.snap", dir);
	snprintf(c2, sizeof(c2), "%s/compared.snap", dir);
	save_layout(TRACK_LAYOUT);
	restore_mutate_save(tracked, c1, e1);
	restore_mutate_save(compared, c2, e2);
	ck_assert_int_eq(memcmp(e1, e2, n * UPT_PAGE), 0);
	f1 = slurp(c1, &l1);
	f2 = slurp(c2, &l2);
	ck_assert_uint_eq(l1, l2);
	ck_assert_int_eq(memcmp(f1, f2, l1), 0);
	count_kinds(c1, &in);
	ck_assert_uint_eq(in.stored, 17); /* 1-4, 7-15, 17, 31, 33, 34 */
	ck_assert_uint_eq(in.zero, 2);    /* 16, 32 */
	ck_assert_uint_eq(in.parent, n - 19);
	check_file_holds(tracked, c1, e1, n);
	free(f1);
	free(f2);
	free(e1);
	free(e2);
	upager_destroy(tracked);
	upager_destroy(compared);
}
END_TEST

/*
 * Proof that tracking is in effect: once the restore has placed a page, the
 * parent's copy of it is not read again by the save when it was not written.
 * Damage the parent's stored copy of a read-only page after it is placed:
 * the tracked save never looks at it; comparing finds the damage.
 */
START_TEST(test_incremental_tracked_reads_less)
{
	const char *layout = "pppppppppppppppp";
	size_t n = strlen(layout), len = n * UPT_PAGE;
	upager_t *tracked = upt_pager(1, 0), *compared = upt_pager(1, UPAGER_FEAT_WP_ASYNC);
	upager_region_t *rt, *rc;
	uint8_t *at, *ac, b;
	uint64_t data_off;
	char child[160];
	struct counts in;

	snprintf(child, sizeof(child), "%s/child.snap", dir);
	save_layout(layout);
	ck_assert_int_eq(upager_snapshot_map(tracked, path, 0, &rt), 0);
	ck_assert_int_eq(upager_snapshot_map(compared, path, 0, &rc), 0);
	at = upager_region_addr(rt);
	ac = upager_region_addr(rc);
	for (size_t i = 0; i < n; i++) {
		ck_assert_int_eq(at[i * UPT_PAGE + 1], ac[i * UPT_PAGE + 1]);
		(void)*(volatile uint8_t *)(ac + i * UPT_PAGE);
	}
	at[0] ^= 1;
	ac[0] ^= 1;
	get(path, 40, &data_off, 8);
	get(path, (off_t)(data_off + 5 * UPT_PAGE + 9), &b, 1);
	b ^= 0x80;
	patch(path, (off_t)(data_off + 5 * UPT_PAGE + 9), &b, 1);

	ck_assert_int_eq(upager_snapshot_save_incremental(ac, len, path, child), -EBADMSG);
	ck_assert_int_eq(upager_snapshot_save_incremental(at, len, path, child), 0);
	count_kinds(child, &in);
	ck_assert_uint_eq(in.stored, 1);
	ck_assert_uint_eq(in.parent, n - 1);

	/* Saved against another snapshot than the one restored from (page 7
	 * differs there), a clean page is not taken as the parent's. */
	{
		uint8_t *m = make_memory(layout), *expect = malloc(len);
		char other[160];

		snprintf(other, sizeof(other), "%s/other.snap", dir);
		m[7 * UPT_PAGE + 3] ^= 0x11;
		ck_assert_int_eq(upager_snapshot_save(m, len, other), 0);
		munmap(m, len);
		ck_assert_int_eq(upager_snapshot_save_incremental(at, len, other, child), 0);
		count_kinds(child, &in);
		ck_assert_uint_eq(in.stored, 2); /* pages 0 and 7 */
		memcpy(expect, at, len);
		check_file_holds(tracked, child, expect, n);
		free(expect);
	}
	upager_release(rt);
	upager_release(rc);
	upager_destroy(tracked);
	upager_destroy(compared);
}
END_TEST

/*
 * Which pages are populated, found by PAGEMAP_SCAN and by reading
 * /proc/self/pagemap, gives the same file: a checkerboard of 1500 runs (a
 * scan returns at most 256 at a time), a shared zero page, and a hole in
 * the range (unmapped: recorded absent, as never touched).
 */
START_TEST(test_save_scan_and_pagemap_agree)
{
	size_t n = 3001, len = n * UPT_PAGE, l1, l2;
	uint8_t *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char other[160];
	uint8_t *f1, *f2;
	upager_region_t *r;
	upager_t *p = upt_pager(1, 0);
	const char *old = getenv("UPAGER_DISABLE");
	char *saved = old ? strdup(old) : NULL;

	ck_assert_ptr_ne(a, MAP_FAILED);
	for (size_t i = 0; i < n; i += 2)
		upt_fill(a + i * UPT_PAGE, UPT_PAGE, i * UPT_PAGE, 23);
	(void)*(volatile uint8_t *)(a + 1001 * UPT_PAGE); /* the shared zero page */
	ck_assert_int_eq(munmap(a + 2000 * UPT_PAGE, 11 * UPT_PAGE), 0);
	ck_assert_int_eq(upager_snapshot_save(a, len, path), 0);
	snprintf(other, sizeof(other), "%s/pagemap.snap", dir);
	setenv("UPAGER_DISABLE", "pagemap_scan", 1);
	ck_assert_int_eq(upager_snapshot_save(a, len, other), 0);
	if (saved)
		setenv("UPAGER_DISABLE", saved, 1);
	else
		unsetenv("UPAGER_DISABLE");
	free(saved);
	f1 = slurp(path, &l1);
	f2 = slurp(other, &l2);
	ck_assert_uint_eq(l1, l2);
	ck_assert_int_eq(memcmp(f1, f2, l1), 0);
	ck_assert_int_eq(upager_snapshot_map(p, path, 0, &r), 0);
	ck_assert_int_eq(memcmp(upager_region_addr(r), a, 2000 * UPT_PAGE), 0);
	ck_assert_int_eq(upt_check_zero((uint8_t *)upager_region_addr(r) + 2000 * UPT_PAGE,
					11 * UPT_PAGE), -1);
	ck_assert_int_eq(memcmp((uint8_t *)upager_region_addr(r) + 2011 * UPT_PAGE,
				a + 2011 * UPT_PAGE, (n - 2011) * UPT_PAGE), 0);
	upager_release(r);
	munmap(a, 2000 * UPT_PAGE);
	munmap(a + 2011 * UPT_PAGE, (n - 2011) * UPT_PAGE);
	free(f1);
	free(f2);
	upager_destroy(p);
}
END_TEST

/* A full snapshot at path, crafted into one naming name as its parent (checksums resealed). */
static void craft_parent(const char *name)
{
	uint8_t hdr[4096];
	uint32_t flags = 1;

	save_layout("pppp");
	get(path, 0, hdr, sizeof(hdr));
	memcpy(hdr + 56, &flags, 4);
	hdr[76] = (uint8_t)strlen(name);
	memcpy(hdr + 128, name, strlen(name));
	patch(path, 0, hdr, sizeof(hdr));
	reseal(path, 4);
}

/* Crafted parents: a name with a slash, a PARENT page in a snapshot without one. */
START_TEST(test_incremental_hostile)
{
	uint8_t zero[12] = { 0 }, b = 3; /* PARENT */
	uint64_t map_off;

	craft_parent("../x.snap");
	ck_assert_int_eq(open_err(), -EBADMSG);
	craft_parent("nothere.snap");
	ck_assert_int_eq(open_err(), -ENOENT);
	/* Itself as its parent: the parent checksum recorded (0) cannot be its own. */
	craft_parent("mem.snap");
	ck_assert_int_eq(open_err(), -EBADMSG);

	/* A PARENT page (crc and index 0, as the kind wants) in a snapshot without one. */
	save_layout("pppp");
	get(path, 48, &map_off, 8);
	patch(path, (off_t)map_off + 16, &b, 1);
	patch(path, (off_t)map_off + 16 + 4, zero, 12);
	reseal(path, 4);
	ck_assert_int_eq(open_err(), -EBADMSG);
}
END_TEST

/* A FIFO where the working set would be: the restore does not wait on it. */
START_TEST(test_working_set_fifo)
{
	char wspath[160];
	upager_t *p = upt_pager(1, 0);
	upager_region_t *r;

	save_layout("pppp");
	snprintf(wspath, sizeof(wspath), "%s.ws", path);
	ck_assert_int_eq(mkfifo(wspath, 0600), 0);
	alarm(10); /* an open that blocks ends the test here */
	ck_assert_int_eq(upager_snapshot_map(p, path, UPAGER_SNAP_PREFETCH, &r), 0);
	alarm(0);
	check_restored(r, "pppp");
	upager_release(r);
	upager_destroy(p);
}
END_TEST

/*
 * A page map over 2 GiB (a region of 512 GiB and more) is read whole: one
 * read(2) stops at 0x7ffff000 bytes. Crafted: the header of a one-page
 * snapshot made to claim 2^27 + 1 pages, over a sparse map of absent pages
 * (in the test's directory on disk, removed by the fixture).
 */
START_TEST(test_map_over_2gib)
{
	const uint64_t npages = (1ull << 27) + 1, map_off = 1 << 20, map_len = npages * 16;
	const size_t chunk = 1 << 20;
	uint8_t hdr[4096], *zeros = calloc(1, chunk);
	upager_source_t *src;
	uint64_t len = 0, v;
	uint32_t crc = 0;
	int fd;

	save_layout(".");
	for (uint64_t done = 0; done < map_len; done += chunk)
		crc = upp_crc32c(crc, zeros, map_len - done < chunk ? map_len - done : chunk);
	free(zeros);
	get(path, 0, hdr, sizeof(hdr));
	v = npages * UPT_PAGE;
	memcpy(hdr + 16, &v, 8);
	memcpy(hdr + 24, &npages, 8);
	memcpy(hdr + 48, &map_off, 8);
	memcpy(hdr + 60, &crc, 4);
	memset(hdr + 64, 0, 4);
	crc = upp_crc32c(0, hdr, sizeof(hdr));
	memcpy(hdr + 64, &crc, 4);
	patch(path, 0, hdr, sizeof(hdr));
	fd = open(path, O_WRONLY);
	ck_assert_int_eq(ftruncate(fd, (off_t)(map_off + map_len)), 0);
	close(fd);
	ck_assert_int_eq(upager_source_snapshot(path, &len, &src), 0);
	ck_assert_uint_eq(len, npages * UPT_PAGE);
	upager_source_release(src);
	unlink(path);
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("snapshot");
	TCase *tc = upt_tcase(s, "snapshot");

	tcase_add_checked_fixture(tc, setup, teardown);
	upt_add(tc, test_round_trips, 0, "");
	upt_add(tc, test_save_lazy_region, 0, "");
	upt_add(tc, test_arguments, 0, "");
	upt_add(tc, test_hostile_files, 0, "");
	if (UPT_TSAN) /* 2 GiB of map read and checked, and TSan shadows every byte */
		printf("SKIP test_map_over_2gib: under ThreadSanitizer a 2 GiB page map outlasts the test's timeout\n");
	else
		upt_add(tc, test_map_over_2gib, 0, "");
	upt_add(tc, test_working_set_fifo, 0, "");
	upt_add(tc, test_corrupt_page, 0, "");
	upt_add(tc, test_crash_during_save, 0, "");
	upt_add(tc, test_working_set, 0, "");
	upt_add(tc, test_reorder, 0, "");
	upt_add(tc, test_incremental, 0, "");
	upt_add(tc, test_incremental_hostile, 0, "");
	upt_add(tc, test_save_scan_and_pagemap_agree, 0, "");
	upt_add(tc, test_incremental_tracked, UPAGER_FEAT_WP_ASYNC | UPAGER_FEAT_PAGEMAP_SCAN,
		"UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN (Linux 6.7) for write tracking");
	upt_add(tc, test_incremental_tracked_reads_less, UPAGER_FEAT_WP_ASYNC | UPAGER_FEAT_PAGEMAP_SCAN,
		"UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN (Linux 6.7) for write tracking");
	return s;
}

int main(void)
{
	return upt_main(make);
}
