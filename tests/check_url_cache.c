/* SPDX-License-Identifier: MIT */
/*
 * The URL source's chunk cache (cache_dir), against a real nginx on
 * loopback, counting the range requests in its access log: processes
 * restoring one object at once fetch each chunk once; a second restore
 * (an object, a snapshot) fetches nothing; damaged chunk files (flipped,
 * truncated, another chunk's) are refetched, never mapped; the bound
 * holds with the least recently used chunks out; a half-written file
 * left by a killed writer is never read and is removed once stale; a peer
 * that holds a chunk's claim and never finishes is waited for a quarter
 * of the deadline, not forever; another version of the object never
 * reads the old one's chunks; bad settings are errors at open.
 */
#define _GNU_SOURCE
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "nginx.h"

#define SEED 53
#define NEW_SEED 0xBEEF0000u
#define CHUNK (256u << 10)
#define NCHUNKS 24
#define OBJ_SIZE ((size_t)NCHUNKS * CHUNK - 300) /* a ragged last chunk */
#define HDR 64                                    /* a chunk file's header (lib/chunk_cache.c) */

static struct upt_nginx ngx;
static const char *no_nginx;
static char url[160], cache[128];

/* Every test's cache is under one directory the runner removes, even after a failed test. */
static char top[64];

static void make_top(void)
{
	snprintf(top, sizeof(top), "/tmp/upager-cache-test.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(top));
}

static void remove_top(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", top);
}

static void setup(void)
{
	static unsigned n;

	snprintf(cache, sizeof(cache), "%s/%u-%d", top, n++, (int)getpid());
	ck_assert_int_eq(mkdir(cache, 0700), 0);
	no_nginx = upt_nginx_start(&ngx);
	if (no_nginx)
		return;
	upt_nginx_put(&ngx, "mem.img", OBJ_SIZE, SEED, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/mem.img", ngx.port);
}

static void teardown(void)
{
	upt_nginx_stop(&ngx);
}



static void options(upager_url_options_t *o, uint64_t bound)
{
	upager_url_options_init(o);
	o->chunk_size = CHUNK;
	o->cache_dir = cache;
	o->cache_bytes = bound;
	o->log = upt_keep_log;
	o->log_level = UPAGER_LOG_INFO;
}

/*
 * Maps url with o and reads every byte, page by page from the end (so the
 * source's own read-ahead does not decide which chunks are asked for):
 * -1 when each is the object's (seed), else the first wrong offset, or
 * -2 - errno when it cannot open.
 */
static long restore(const upager_url_options_t *o, unsigned seed)
{
	upager_t *p = NULL;
	upager_source_t *s;
	upager_region_t *r;
	upager_options_t po;
	long bad = -1;
	int ret;

	upager_options_init(&po);
	po.nthreads = 2;
	po.log = upt_keep_log;
	if (upager_create(&p, &po) < 0)
		return -2 - ENOMEM;
	ret = upager_source_url(url, o, &s);
	if (ret < 0) {
		upager_destroy(p);
		return -2 + ret;
	}
	ret = upager_map(p, OBJ_SIZE, s, &r);
	upager_source_release(s);
	if (ret < 0) {
		upager_destroy(p);
		return -2 + ret;
	}
	upager_region_advise(r, UPAGER_ADV_RANDOM);
	const uint8_t *a = upager_region_addr(r);
	for (size_t page = OBJ_SIZE / UPT_PAGE + 1; page-- > 0 && bad < 0;) {
		size_t off = page * UPT_PAGE, n = OBJ_SIZE - off < UPT_PAGE ? OBJ_SIZE - off : UPT_PAGE;

		bad = upt_check_pattern(a + off, n, off, seed);
		if (bad >= 0)
			bad += (long)off;
	}
	upager_release(r);
	upager_destroy(p);
	return bad;
}

static size_t ranges(void)
{
	return upt_nginx_requests(&ngx, 206);
}

/* The one key directory under the cache (KEY: 64 hex digits), into out. */
static void key_dir(char *out, size_t len)
{
	DIR *d = opendir(cache);
	struct dirent *de;
	int found = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)))
		if (strlen(de->d_name) == 64) {
			snprintf(out, len, "%s/%s", cache, de->d_name);
			found++;
		}
	closedir(d);
	ck_assert_int_eq(found, 1);
}

static void chunk_path(char *out, size_t len, unsigned idx)
{
	char key[160];

	key_dir(key, sizeof(key));
	snprintf(out, len, "%s/%016x.chunk", key, idx);
}

/* Bytes in chunk files under the cache, and how many. */
static uint64_t cached_bytes(unsigned *count)
{
	char key[160], path[256];
	uint64_t total = 0;
	struct dirent *de;
	struct stat st;
	DIR *d;

	key_dir(key, sizeof(key));
	d = opendir(key);
	ck_assert_ptr_nonnull(d);
	*count = 0;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);

		if (n < 6 || strcmp(de->d_name + n - 6, ".chunk"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", key, de->d_name);
		ck_assert_int_eq(stat(path, &st), 0);
		total += (uint64_t)st.st_size;
		(*count)++;
	}
	closedir(d);
	return total;
}

struct racer {
	int go[2]; /* the start signal: its write end closed (by every process) */
	uint64_t bound;
};

static void racer_child(void *arg)
{
	struct racer *rc = arg;
	upager_url_options_t o;
	char c;

	close(rc->go[1]);
	while (read(rc->go[0], &c, 1) < 0 && errno == EINTR)
		;
	options(&o, rc->bound);
	o.log = NULL;
	o.deadline_ms = 120000; /* peers wait up to 30 s for each other, even on a loaded CI */
	_exit(restore(&o, SEED) == -1 ? 0 : 1);
}

#define RACERS 12

/* RACERS processes read the object at once through a cache bounded at bound: 0 if all were right. */
static void race(uint64_t bound)
{
	struct racer rc = { .bound = bound };
	pid_t pid[RACERS];
	int left = RACERS;

	ck_assert_int_eq(pipe(rc.go), 0);
	fflush(NULL);
	for (int i = 0; i < RACERS; i++) {
		pid[i] = fork();
		ck_assert_int_ge(pid[i], 0);
		if (pid[i] == 0)
			racer_child(&rc);
	}
	close(rc.go[1]); /* and off they go, together */
	close(rc.go[0]);
	for (int waited = 0; left && waited < 60 * 100; waited++) {
		for (int i = 0; i < RACERS; i++) {
			int status;

			if (pid[i] <= 0 || waitpid(pid[i], &status, WNOHANG) != pid[i])
				continue;
			ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
				      "racer %d: wrong bytes, or died (status %#x)", i, status);
			pid[i] = 0;
			left--;
		}
		usleep(10 * 1000);
	}
	for (int i = 0; i < RACERS; i++)
		if (pid[i] > 0) {
			kill(pid[i], SIGKILL);
			waitpid(pid[i], NULL, 0);
		}
	ck_assert_msg(!left, "%d racers hung", left);
}

START_TEST(test_processes_fetch_each_chunk_once)
{
	UPT_NEED_NGINX(no_nginx);
	race(1ull << 30);
	ck_assert_uint_eq(ranges(), NCHUNKS); /* 12 processes, each chunk fetched once */
	ck_assert_uint_eq(upt_nginx_requests(&ngx, 200), RACERS); /* each opened it (HEAD) */
}
END_TEST

/* The same under a bound of four chunks: chunks trimmed while others read them, never a wrong byte. */
START_TEST(test_processes_under_a_tiny_bound)
{
	UPT_NEED_NGINX(no_nginx);
	race(4 * (CHUNK + HDR)); /* each racer checks every byte */
	ck_assert_uint_ge(ranges(), NCHUNKS);
}
END_TEST

START_TEST(test_second_restore_fetches_nothing)
{
	upager_url_options_t o;
	unsigned count;

	UPT_NEED_NGINX(no_nginx);
	options(&o, 1ull << 30);
	ck_assert_int_eq(restore(&o, SEED), -1);
	ck_assert_uint_eq(ranges(), NCHUNKS);
	ck_assert_uint_eq(cached_bytes(&count), (uint64_t)NCHUNKS * HDR + OBJ_SIZE);
	ck_assert_uint_eq(count, NCHUNKS);
	ck_assert_ptr_nonnull(strstr(upt_logged, "chunk cache"));
	ck_assert_int_eq(restore(&o, SEED), -1);
	ck_assert_uint_eq(ranges(), NCHUNKS);
	/* Through the environment, as a daemon's operator sets it. */
	o.cache_dir = NULL;
	o.cache_bytes = 0;
	setenv("UPAGER_CACHE_DIR", cache, 1);
	setenv("UPAGER_CACHE_BYTES", "1G", 1);
	ck_assert_int_eq(restore(&o, SEED), -1);
	ck_assert_uint_eq(ranges(), NCHUNKS);
	setenv("UPAGER_CACHE_BYTES", "lots", 1);
	ck_assert_int_eq(restore(&o, SEED), -2 - EINVAL);
	ck_assert_ptr_nonnull(strstr(upt_logged, "UPAGER_CACHE_BYTES=lots"));
	unsetenv("UPAGER_CACHE_DIR");
	unsetenv("UPAGER_CACHE_BYTES");
	ck_assert_int_eq(restore(&o, SEED), -1); /* no cache: fetched again */
	ck_assert_uint_eq(ranges(), 2 * NCHUNKS);
}
END_TEST

static void flip_byte(const char *path, off_t at)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &b, 1, at), 1);
	b ^= 0x40;
	ck_assert_int_eq(pwrite(fd, &b, 1, at), 1);
	close(fd);
}

START_TEST(test_damaged_chunks_refetched)
{
	upager_url_options_t o;
	char path[256], other[256];
	struct stat st;
	unsigned count;

	UPT_NEED_NGINX(no_nginx);
	options(&o, 1ull << 30);
	ck_assert_int_eq(restore(&o, SEED), -1);
	ck_assert_uint_eq(ranges(), NCHUNKS);
	chunk_path(path, sizeof(path), 3); /* a bit flipped in its bytes */
	flip_byte(path, HDR + 5000);
	chunk_path(path, sizeof(path), 7); /* cut short */
	ck_assert_int_eq(truncate(path, HDR + CHUNK / 2), 0);
	chunk_path(path, sizeof(path), 9); /* chunk 10's file under 9's name */
	chunk_path(other, sizeof(other), 10);
	ck_assert_int_eq(link(other, path) == 0 || (unlink(path) == 0 && link(other, path) == 0), 1);
	chunk_path(path, sizeof(path), 12); /* its header's checksum */
	flip_byte(path, 33);
	upt_logged[0] = 0;
	ck_assert_int_eq(restore(&o, SEED), -1); /* every byte right */
	ck_assert_uint_eq(ranges(), NCHUNKS + 4);  /* exactly the four damaged ones again */
	ck_assert_ptr_nonnull(strstr(upt_logged, "was damaged"));
	chunk_path(path, sizeof(path), 7);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, HDR + CHUNK); /* replaced by a good one */
	ck_assert_uint_eq(cached_bytes(&count), (uint64_t)NCHUNKS * HDR + OBJ_SIZE);
	ck_assert_int_eq(restore(&o, SEED), -1);
	ck_assert_uint_eq(ranges(), NCHUNKS + 4);
}
END_TEST

START_TEST(test_bound_keeps_recent)
{
	const uint64_t bound = 6 * (CHUNK + HDR);
	upager_url_options_t o;
	char path[256], tmp[300], fresh[300];
	struct timespec old[2] = { { time(NULL) - 3600, 0 }, { time(NULL) - 3600, 0 } };
	unsigned count;
	int fd;

	UPT_NEED_NGINX(no_nginx);
	options(&o, bound);
	ck_assert_int_eq(restore(&o, SEED), -1); /* from the end: chunk 0 is used last */
	ck_assert_uint_eq(ranges(), NCHUNKS);
	ck_assert_uint_le(cached_bytes(&count), bound);
	ck_assert_uint_ge(count, 4);
	chunk_path(path, sizeof(path), 0); /* the most recently used are kept */
	ck_assert_int_eq(access(path, F_OK), 0);
	chunk_path(path, sizeof(path), NCHUNKS - 1);
	ck_assert_int_eq(access(path, F_OK), -1);

	/* A writer killed midway leaves a temporary file: never read as a chunk,
	 * removed by the next trim once a minute old (a young one may be a
	 * writer still at work). */
	key_dir(path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s/.tmp-99999-0-0", path);
	snprintf(fresh, sizeof(fresh), "%s/.tmp-99999-1-0", path);
	fd = open(tmp, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "UPGCHNK1", 8), 8);
	ck_assert_int_eq(futimens(fd, old), 0);
	close(fd);
	fd = open(fresh, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(restore(&o, SEED), -1);
	ck_assert_int_eq(access(tmp, F_OK), -1);
	ck_assert_int_eq(access(fresh, F_OK), 0);
	ck_assert_uint_le(cached_bytes(&count), bound);
}
END_TEST

/* Opens the object with the cache and lets go: its key directory is made, nothing fetched. */
static void open_only(const upager_url_options_t *o)
{
	upager_source_t *s;

	ck_assert_int_eq(upager_source_url(url, o, &s), 0);
	upager_source_release(s);
}

/* A peer that claimed every chunk and never finishes (a stopped process):
 * waited for a quarter of the deadline, then fetched here. */
START_TEST(test_stuck_peer_not_waited_forever)
{
	upager_url_options_t o;
	char key[160], path[256], c;
	int ready[2], status;
	pid_t peer;

	UPT_NEED_NGINX(no_nginx);
	options(&o, 1ull << 30);
	o.deadline_ms = 2000;
	open_only(&o);
	key_dir(key, sizeof(key));
	snprintf(path, sizeof(path), "%s/fetching", key);
	ck_assert_int_eq(pipe(ready), 0);
	peer = fork();
	ck_assert_int_ge(peer, 0);
	if (peer == 0) { /* claims chunks 0..NCHUNKS-1 as the library does, and hangs */
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0,
				    .l_len = NCHUNKS };
		int fd = open(path, O_RDWR);

		if (fd < 0 || fcntl(fd, F_OFD_SETLK, &fl) < 0)
			_exit(1);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(ready[1]);
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	close(ready[0]);
	upt_logged[0] = 0;
	ck_assert_int_eq(restore(&o, SEED), -1);
	ck_assert_ptr_nonnull(strstr(upt_logged, "another process has been fetching"));
	ck_assert_uint_eq(ranges(), NCHUNKS);
	kill(peer, SIGKILL);
	ck_assert_int_eq(waitpid(peer, &status, 0), peer);
	ck_assert(WIFSIGNALED(status));
}
END_TEST

static unsigned key_dirs(void)
{
	DIR *d = opendir(cache);
	struct dirent *de;
	unsigned n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)))
		n += strlen(de->d_name) == 64;
	closedir(d);
	return n;
}

/* The object replaced (another ETag): another key, its own chunks, never the old ones. */
START_TEST(test_new_version_never_reads_old_chunks)
{
	upager_url_options_t o;

	UPT_NEED_NGINX(no_nginx);
	options(&o, 1ull << 30);
	ck_assert_int_eq(restore(&o, SEED), -1);
	upt_nginx_put(&ngx, "mem.img", OBJ_SIZE, NEW_SEED, 5);
	ck_assert_int_eq(restore(&o, NEW_SEED), -1);
	ck_assert_uint_eq(ranges(), 2 * NCHUNKS);
	ck_assert_uint_eq(key_dirs(), 2);
}
END_TEST

/* Where the cache cannot be, or must not be trusted: said, and read without it. */
START_TEST(test_unusable_cache_read_without)
{
	upager_url_options_t o;
	upager_source_t *s;
	char file[160];
	int fd;

	UPT_NEED_NGINX(no_nginx);
	snprintf(file, sizeof(file), "%s/a-file", cache);
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	options(&o, 1ull << 30);
	o.cache_dir = file;
	upt_logged[0] = 0;
	ck_assert_int_eq(restore(&o, SEED), -1);
	ck_assert_ptr_nonnull(strstr(upt_logged, "a-file"));
	ck_assert_ptr_nonnull(strstr(upt_logged, "reading without it"));
	ck_assert_uint_eq(ranges(), NCHUNKS);
	/* Others may write it: anyone could put bytes in front of our faults. */
	ck_assert_int_eq(chmod(cache, 0777), 0);
	o.cache_dir = cache;
	upt_logged[0] = 0;
	ck_assert_int_eq(restore(&o, SEED), -1);
	ck_assert_ptr_nonnull(strstr(upt_logged, "others may write it"));
	ck_assert_int_eq(restore(&o, SEED), -1);
	ck_assert_uint_eq(ranges(), 3 * NCHUNKS); /* nothing cached */
	ck_assert_int_eq(chmod(cache, 0700), 0);
	/* A bound under four chunks is refused. */
	o.cache_bytes = 3 * CHUNK;
	ck_assert_int_eq(upager_source_url(url, &o, &s), -EINVAL);
}
END_TEST

/* A FIFO in a chunk's place (someone who may write the directory) must not
 * stall the transfers: it is a damaged chunk, replaced. */
START_TEST(test_fifo_in_place_of_chunk)
{
	upager_url_options_t o;
	char path[256];
	struct stat st;

	UPT_NEED_NGINX(no_nginx);
	options(&o, 1ull << 30);
	o.deadline_ms = 5000;
	open_only(&o);
	chunk_path(path, sizeof(path), 2);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	ck_assert_int_eq(restore(&o, SEED), -1);
	ck_assert_uint_eq(ranges(), NCHUNKS);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
}
END_TEST

/* A group-shared directory (2770) under a umask of 022: what is made in it is the group's too. */
START_TEST(test_group_shared_modes)
{
	upager_url_options_t o;
	char key[160], path[256];
	struct stat st;
	mode_t old = umask(022);

	UPT_NEED_NGINX(no_nginx);
	ck_assert_int_eq(chmod(cache, 02770), 0);
	options(&o, 1ull << 30);
	ck_assert_int_eq(restore(&o, SEED), -1);
	umask(old);
	key_dir(key, sizeof(key));
	ck_assert_int_eq(stat(key, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 02770);
	snprintf(path, sizeof(path), "%s/fetching", key);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0660);
	chunk_path(path, sizeof(path), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0660);
}
END_TEST

struct touches {
	uint64_t bound;
	const unsigned *chunks;
	unsigned n;
};

/* Reads the first page of each of t's chunks, in order, a tick apart (mtimes differ). */
static void touch_child(void *arg)
{
	const struct touches *t = arg;
	upager_url_options_t o;
	upager_source_t *s;
	upager_region_t *r;
	upager_t *p = NULL;

	options(&o, t->bound);
	o.log = NULL;
	if (upager_create(&p, NULL) < 0 || upager_source_url(url, &o, &s) < 0)
		_exit(2);
	if (upager_map(p, OBJ_SIZE, s, &r) < 0)
		_exit(3);
	upager_source_release(s);
	upager_region_advise(r, UPAGER_ADV_RANDOM); /* no read-ahead: just these chunks */
	for (unsigned i = 0; i < t->n; i++) {
		size_t off = (size_t)t->chunks[i] * CHUNK;

		if (upt_check_pattern((const uint8_t *)upager_region_addr(r) + off, UPT_PAGE, off,
				      SEED) != -1)
			_exit(4);
		usleep(30 * 1000);
	}
	upager_destroy(p);
	_exit(0);
}

static void touch_chunks(uint64_t bound, const unsigned *chunks, unsigned n)
{
	struct touches t = { bound, chunks, n };
	int status = upt_child(touch_child, &t, 60);

	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "touching: status %#x", status);
}

/* A hit makes a chunk recent: the trim takes the least recently used, not the oldest written. */
START_TEST(test_hit_makes_recent)
{
	const uint64_t bound = 6 * (CHUNK + HDR); /* trimmed to 5.25 chunks */
	static const unsigned first[] = { 0, 1, 2, 3, 4 }, then[] = { 0, 5, 6 };
	char path[256];

	UPT_NEED_NGINX(no_nginx);
	touch_chunks(bound, first, 5);
	ck_assert_uint_eq(ranges(), 5);
	touch_chunks(bound, then, 3); /* 0 from the cache, 5 and 6 fetched: 7 > 6, trimmed */
	ck_assert_uint_eq(ranges(), 7);
	for (unsigned idx = 0; idx <= 6; idx++) {
		chunk_path(path, sizeof(path), idx);
		ck_assert_msg(access(path, F_OK) == (idx == 1 || idx == 2 ? -1 : 0),
			      "chunk %u: %s", idx, idx == 1 || idx == 2 ? "kept" : "removed");
	}
}
END_TEST

static Suite *cache_suite(void)
{
	Suite *s = suite_create("url_cache");
	TCase *tc = upt_tcase(s, "nginx");

	tcase_add_unchecked_fixture(tc, make_top, remove_top);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_processes_fetch_each_chunk_once);
	tcase_add_test(tc, test_processes_under_a_tiny_bound);
	tcase_add_test(tc, test_second_restore_fetches_nothing);
	tcase_add_test(tc, test_damaged_chunks_refetched);
	tcase_add_test(tc, test_bound_keeps_recent);
	tcase_add_test(tc, test_stuck_peer_not_waited_forever);
	tcase_add_test(tc, test_new_version_never_reads_old_chunks);
	tcase_add_test(tc, test_unusable_cache_read_without);
	tcase_add_test(tc, test_fifo_in_place_of_chunk);
	tcase_add_test(tc, test_group_shared_modes);
	tcase_add_test(tc, test_hit_makes_recent);
	return s;
}

int main(void)
{
	return upt_main_url(cache_suite);
}
