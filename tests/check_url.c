/* SPDX-License-Identifier: MIT */
/*
 * The URL source against a real nginx on loopback (tests/nginx.c): every
 * byte, many threads, kept-alive connections (counted in nginx's access
 * log), the object replaced mid-restore (412: SIGBUS, never bytes of two
 * versions), nginx killed mid-restore (SIGBUS within the deadline), 403
 * and 404 at open with a log line that names the URL but none of its
 * secrets; and against tests/fake_http for what nginx will not do: a 200
 * with the whole body to a range request, a body that stalls, 503s,
 * a redirect to another host.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "nginx.h"
#ifdef HAVE_LIBCURL
#include "rgw.h"
#endif

#define SEED 71
#define OBJ_SIZE ((size_t)(8u << 20) - 100) /* a ragged end */
#define CHUNK (256u << 10)
/* upt_byte drops a seed's low 29 bits from most bytes: far from SEED */
#define NEW_SEED 0xC0FFEE00u

static struct upt_nginx ngx;
static const char *no_nginx;
static char url[160];

static void setup(void)
{
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



static upager_t *pager(unsigned nthreads)
{
	upager_options_t o;
	upager_t *p = NULL;

	upager_options_init(&o);
	o.nthreads = nthreads;
	o.log = upt_keep_log;
	o.log_level = UPAGER_LOG_WARN;
	ck_assert_int_eq(upager_create(&p, &o), 0);
	return p;
}

static void options(upager_url_options_t *o, unsigned deadline_ms)
{
	upager_url_options_init(o);
	o->chunk_size = CHUNK;
	o->log = upt_keep_log;
	if (deadline_ms)
		o->deadline_ms = deadline_ms;
}

static upager_region_t *url_region(upager_t *p, const char *u, unsigned deadline_ms, int advice)
{
	upager_url_options_t o;
	upager_source_t *s;
	upager_region_t *r;

	options(&o, deadline_ms);
	ck_assert_int_eq(upager_source_url(u, &o, &s), 0);
	/* A page more than the object: past its end reads zero. */
	ck_assert_int_eq(upager_map(p, OBJ_SIZE + 100 + UPT_PAGE, s, &r), 0);
	upager_source_release(s);
	ck_assert_int_eq(upager_region_advise(r, advice), 0);
	return r;
}

static void check_bytes(const uint8_t *a, unsigned seed)
{
	ck_assert_int_eq(upt_check_pattern(a, OBJ_SIZE, 0, seed), -1);
	ck_assert_int_eq(upt_check_zero(a + OBJ_SIZE, 100 + UPT_PAGE), -1);
}

START_TEST(test_every_byte_keepalive)
{
	upager_t *p;
	upager_region_t *r, *q;
	upager_stats_t st;
	const uint8_t *b;
	size_t reqs, conns, npages = (OBJ_SIZE + 100) / UPT_PAGE + 1;

	UPT_NEED_NGINX(no_nginx);
	p = pager(1);
	r = url_region(p, url, 0, UPAGER_ADV_NORMAL);
	q = url_region(p, url, 0, UPAGER_ADV_RANDOM);
	check_bytes(upager_region_addr(r), SEED); /* sequential: windows, readahead */
	b = upager_region_addr(q);
	for (size_t i = 0; i < npages; i++) { /* scattered, page by page */
		size_t off = (i * 389) % npages * UPT_PAGE + 9;

		ck_assert_uint_eq(b[off], off < OBJ_SIZE ? upt_byte(off, SEED) : 0);
	}
	check_bytes(b, SEED);
	ck_assert_int_eq(upager_region_stats(q, &st), 0);
	ck_assert_uint_eq(st.pages_filled, npages);
	ck_assert_uint_eq(st.fill_errors, 0);
	upager_destroy(p);
	/* Two HEADs, then chunks; the random region's fit in memory (16 of
	 * 256 KiB: no), so at least one GET per chunk per region. */
	reqs = upt_nginx_requests(&ngx, 206);
	conns = upt_nginx_connections(&ngx);
	ck_assert_uint_ge(reqs, 2 * (OBJ_SIZE / CHUNK));
	ck_assert_uint_eq(upt_nginx_requests(&ngx, 200), 2);
	/* Kept alive: each source's connections (8 at most) carry all its requests. */
	ck_assert_msg(conns <= 2 * (8 + 1), "%zu connections for %zu requests", conns, reqs);
	ck_assert_uint_eq(upt_nginx_requests(&ngx, 412), 0);
}
END_TEST

/* Thread first of n reads a byte of every n-th page, scattered; or (in_order)
 * every page of its n-th of the object, in order. */
struct toucher {
	const uint8_t *a;
	unsigned first, n;
	bool in_order;
	long bad;
};

static void *touch_pages(void *arg)
{
	struct toucher *t = arg;
	size_t npages = OBJ_SIZE / UPT_PAGE, slice = npages / t->n;
	size_t from = t->in_order ? t->first * slice : t->first;
	size_t to = t->in_order && t->first + 1 < t->n ? from + slice : npages;

	t->bad = -1;
	for (size_t i = from; i < to; i += t->in_order ? 1 : t->n) {
		size_t off = (t->in_order ? i : (i * 7919) % npages) * UPT_PAGE + 17;

		if (t->a[off] != upt_byte(off, SEED)) {
			t->bad = (long)off;
			break;
		}
	}
	return NULL;
}

START_TEST(test_many_threads)
{
	upager_t *p;
	upager_region_t *r;
	struct toucher t[12];
	pthread_t th[12];

	UPT_NEED_NGINX(no_nginx);
	p = pager(4);
	r = url_region(p, url, 0, UPAGER_ADV_RANDOM);
	for (unsigned i = 0; i < 12; i++) {
		t[i] = (struct toucher){ .a = upager_region_addr(r), .first = i, .n = 12 };
		ck_assert_int_eq(pthread_create(&th[i], NULL, touch_pages, &t[i]), 0);
	}
	for (unsigned i = 0; i < 12; i++) {
		pthread_join(th[i], NULL);
		ck_assert_msg(t[i].bad < 0, "thread %u: wrong byte at %ld", i, t[i].bad);
	}
	check_bytes(upager_region_addr(r), SEED);
	upager_destroy(p);
}
END_TEST

/*
 * 8 threads, each reading its eighth of the object in order (a byte a
 * page; then every byte checked), through 48 chunks of memory: 8 streams, each with
 * 1 MiB windows (4 chunks) and 8 chunks read ahead, contend for those
 * slots. Read ahead takes only chunks copied out, never one a stream still
 * reads from (it once took the chunk a fill was about to wait on: wrong
 * bytes, or a crash); fetched chunks are not thrown away unread (at most
 * 1.5 fetches a chunk).
 */
START_TEST(test_sequential_streams)
{
	upager_url_options_t o;
	upager_source_t *s;
	struct toucher t[8];
	pthread_t th[8];
	size_t reqs;
	upager_region_t *r;
	upager_t *p;

	UPT_NEED_NGINX(no_nginx);
	p = pager(2);
	options(&o, 0);
	o.mem_chunks = 48;
	ck_assert_int_eq(upager_source_url(url, &o, &s), 0);
	ck_assert_int_eq(upager_map(p, OBJ_SIZE + 100 + UPT_PAGE, s, &r), 0);
	upager_source_release(s);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_SEQUENTIAL), 0);
	for (unsigned i = 0; i < 8; i++) {
		t[i] = (struct toucher){ .a = upager_region_addr(r), .first = i, .n = 8,
					 .in_order = true };
		ck_assert_int_eq(pthread_create(&th[i], NULL, touch_pages, &t[i]), 0);
	}
	for (unsigned i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		ck_assert_msg(t[i].bad < 0, "stream %u: wrong byte at %ld", i, t[i].bad);
	}
	check_bytes(upager_region_addr(r), SEED);
	upager_destroy(p);
	reqs = upt_nginx_requests(&ngx, 206);
	ck_assert_msg(reqs * 2 <= 3 * (OBJ_SIZE / CHUNK + 1), "%zu range requests for %zu chunks",
		      reqs, OBJ_SIZE / CHUNK + 1);
}
END_TEST

/*
 * The object replaced (new bytes, new mtime: a new ETag) after the first
 * chunks were read: pages read before are the old version; every later
 * fault of a chunk not yet in memory gets SIGBUS (412), never new bytes.
 * In a child, which exits 5 on a byte of the new version.
 */
static void replaced_child(void *arg)
{
	upager_t *p = pager(1);
	upager_region_t *r = url_region(p, url, 10000, UPAGER_ADV_RANDOM);
	const volatile uint8_t *a = upager_region_addr(r);

	(void)arg;
	if (a[0] != upt_byte(0, SEED))
		_exit(3);
	upt_nginx_put(&ngx, "mem.img", OBJ_SIZE, NEW_SEED, 100);
	for (size_t off = OBJ_SIZE / 2; off < OBJ_SIZE; off += UPT_PAGE)
		if (a[off] != upt_byte(off, SEED))
			_exit(5);
	_exit(0);
}

START_TEST(test_replaced_mid_restore)
{
	int status;

	UPT_NEED_NGINX(no_nginx);
	status = upt_child(replaced_child, NULL, 30);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "status %#x", status);
	ck_assert_uint_ge(upt_nginx_requests(&ngx, 412), 1);
}
END_TEST

/* nginx killed after the first chunk: the next fault's SIGBUS comes within the deadline. */
static void killed_child(void *arg)
{
	upager_t *p = pager(1);
	upager_region_t *r = url_region(p, url, 1500, UPAGER_ADV_RANDOM);
	const volatile uint8_t *a = upager_region_addr(r);

	(void)arg;
	if (a[0] != upt_byte(0, SEED))
		_exit(3);
	kill(ngx.pid, SIGKILL);
	_exit(a[OBJ_SIZE / 2] == upt_byte(OBJ_SIZE / 2, SEED) ? 4 : 5);
}

START_TEST(test_server_killed)
{
	struct timespec t0, t1;
	int status;

	UPT_NEED_NGINX(no_nginx);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	status = upt_child(killed_child, NULL, 30);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "status %#x", status);
	/* deadline 1.5 s, plus the open and the first chunk */
	ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 8);
}
END_TEST

START_TEST(test_open_errors)
{
	upager_url_options_t o;
	upager_source_t *s;
	char u[256];

	UPT_NEED_NGINX(no_nginx);
	options(&o, 0);
	upt_logged[0] = 0;
	snprintf(u, sizeof(u), "http://user:PASSWORD1@127.0.0.1:%d/no-such.img?X-Amz-Signature=SECRET2",
		 ngx.port);
	ck_assert_int_eq(upager_source_url(u, &o, &s), -ENOENT);
	ck_assert_msg(strstr(upt_logged, "404") && strstr(upt_logged, "/no-such.img"), "log: %s", upt_logged);
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/forbidden/x.img?token=SECRET3", ngx.port);
	ck_assert_int_eq(upager_source_url(u, &o, &s), -EACCES);
	ck_assert_msg(strstr(upt_logged, "403") && strstr(upt_logged, "/forbidden/x.img"), "log: %s", upt_logged);
	ck_assert_msg(!strstr(upt_logged, "SECRET") && !strstr(upt_logged, "PASSWORD"), "log: %s", upt_logged);
	/* Arguments */
	ck_assert_int_eq(upager_source_url(NULL, NULL, &s), -EINVAL);
	ck_assert_int_eq(upager_source_url(url, NULL, NULL), -EINVAL);
	ck_assert_int_eq(upager_source_url("ftp://127.0.0.1/x", NULL, &s), -EINVAL);
	o.chunk_size = 3 << 20; /* not a power of two */
	ck_assert_int_eq(upager_source_url(url, &o, &s), -EINVAL);
	options(&o, 0);
	o.mem_chunks = o.max_requests;
	ck_assert_int_eq(upager_source_url(url, &o, &s), -EINVAL);
	options(&o, 0);
	o.reserved[0] = 1;
	ck_assert_int_eq(upager_source_url(url, &o, &s), -EINVAL);
	ck_assert_int_eq(upager_source_url("http://127.0.0.1:1/x", NULL, &s), -ECONNREFUSED);
}
END_TEST

/* ---- snapshots at a URL ---- */

#define SNAP_PAGES 1536

/* A snapshot in nginx's www/snap.img: pages of the pattern, every 5th zero, every 7th never touched. */
/* SNAP_PAGES pages saved as a snapshot at path: patterns, zero pages, absent ones. */
static void save_snapshot_to(const char *path)
{
	const size_t len = SNAP_PAGES * UPT_PAGE;
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(m, MAP_FAILED);
	for (size_t i = 0; i < SNAP_PAGES; i++)
		if (i % 7 != 3) {
			if (i % 5 == 1)
				m[i * UPT_PAGE] = 0; /* populated, all zero */
			else
				upt_fill(m + i * UPT_PAGE, UPT_PAGE, i * UPT_PAGE, SEED);
		}
	ck_assert_int_eq(upager_snapshot_save(m, len, path), 0);
	munmap(m, len);
}

static void put_snapshot(void)
{
	char path[160];

	snprintf(path, sizeof(path), "%s/snap.img", ngx.www);
	save_snapshot_to(path);
}

/* A working set of 40 pages recorded for the snapshot at path (PATH.ws). */
static void record_40(upager_t *p, const char *path)
{
	upager_region_t *r;
	uint8_t *a;

	ck_assert_int_eq(upager_snapshot_map(p, path, UPAGER_SNAP_RECORD, &r), 0);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0);
	a = upager_region_addr(r);
	for (size_t i = 0; i < 40; i++)
		(void)*(volatile uint8_t *)(a + (i * 37 % SNAP_PAGES) * UPT_PAGE);
	ck_assert_int_eq(upager_release(r), 0);
}

static long check_snapshot_bytes(const uint8_t *a)
{
	for (size_t i = 0; i < SNAP_PAGES; i++) {
		const uint8_t *p = a + i * UPT_PAGE;
		long bad = i % 7 == 3 || i % 5 == 1 ? upt_check_zero(p, UPT_PAGE)
						    : upt_check_pattern(p, UPT_PAGE, i * UPT_PAGE, SEED);

		if (bad >= 0)
			return (long)(i * UPT_PAGE) + bad;
	}
	return -1;
}

/* The data area's second page: stored page 2 (0 is the first, 1 is zero) is damaged. */
static void damage_snapshot(void)
{
	char path[160];
	uint8_t hdr[64], b;
	uint64_t data_off = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/snap.img", ngx.www);
	fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
	for (int i = 7; i >= 0; i--)
		data_off = data_off << 8 | hdr[40 + i];
	ck_assert_int_eq(pread(fd, &b, 1, (off_t)(data_off + UPT_PAGE + 9)), 1);
	b ^= 0x5a;
	ck_assert_int_eq(pwrite(fd, &b, 1, (off_t)(data_off + UPT_PAGE + 9)), 1);
	close(fd);
}

START_TEST(test_snapshot_every_byte)
{
	upager_url_options_t o;
	upager_region_t *r;
	upager_stats_t st;
	upager_t *p;
	char u[200];

	UPT_NEED_NGINX(no_nginx);
	put_snapshot();
	p = pager(2);
	options(&o, 0);
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/snap.img", ngx.port);
	ck_assert_int_eq(upager_snapshot_map_url(p, u, &o, 0, &r), 0);
	ck_assert_uint_eq(upager_region_size(r), SNAP_PAGES * UPT_PAGE);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0);
	ck_assert_int_eq(check_snapshot_bytes(upager_region_addr(r)), -1);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.fill_errors, 0);
	ck_assert_int_eq(upager_snapshot_map_url(p, u, &o, UPAGER_SNAP_RECORD, &r), -EOPNOTSUPP);
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/mem.img", ngx.port); /* not a snapshot */
	ck_assert_int_eq(upager_snapshot_map_url(p, u, &o, 0, &r), -EBADMSG);
	upager_destroy(p);
}
END_TEST

/*
 * https with HTTP/2, which nginx offers: every byte, the range requests
 * multiplexed on one connection (the transfers' libcurl multi handle; the
 * open's HEAD has a connection of its own); a server certificate no CA we
 * were given signed is refused at open.
 */
START_TEST(test_https_http2)
{
	upager_url_options_t o;
	upager_source_t *s;
	upager_region_t *r;
	upager_t *p;
	char u[200];

	UPT_NEED_NGINX(no_nginx);
	if (!ngx.tls_port) {
		printf("SKIP %s: no openssl to make nginx a certificate\n", __func__);
		return;
	}
	snprintf(u, sizeof(u), "https://127.0.0.1:%d/mem.img", ngx.tls_port);
	options(&o, 0);
	unsetenv("CURL_CA_BUNDLE");
	upt_logged[0] = 0;
	ck_assert_int_eq(upager_source_url(u, &o, &s), -EKEYREJECTED);
	ck_assert_ptr_nonnull(strstr(upt_logged, "127.0.0.1"));
	o.ca_file = ngx.cert;
	p = pager(2);
	ck_assert_msg(upager_source_url(u, &o, &s) == 0, "%s", upt_logged);
	ck_assert_int_eq(upager_map(p, OBJ_SIZE + 100 + UPT_PAGE, s, &r), 0);
	upager_source_release(s);
	check_bytes(upager_region_addr(r), SEED); /* sequential: several chunks in flight */
	ck_assert_int_eq(upager_release(r), 0);
	ck_assert_int_eq(upager_destroy(p), 0);
	/* Every range request over HTTP/2 (some chunks may be asked for twice: the
	 * pager reads ahead further than the source's 16 chunks in memory hold). */
	ck_assert_uint_ge(upt_nginx_requests(&ngx, 206), OBJ_SIZE / CHUNK + 1);
	ck_assert_uint_eq(upt_nginx_requests_h2(&ngx, 206), upt_nginx_requests(&ngx, 206));
	ck_assert_uint_eq(upt_nginx_connections(&ngx), 2); /* the HEAD's, and the one multiplexed */
}
END_TEST

/* Through the chunk cache: a second restore asks for the header and map, no chunk. */
START_TEST(test_snapshot_chunk_cache)
{
	char u[200], dir[64] = "/tmp/upager-snapcache.XXXXXX", cmd[128];
	size_t before, opening, first;
	upager_url_options_t o;
	upager_region_t *r;
	upager_t *p;

	UPT_NEED_NGINX(no_nginx);
	put_snapshot();
	ck_assert_ptr_nonnull(mkdtemp(dir));
	p = pager(2);
	options(&o, 0);
	o.chunk_size = 64u << 10;
	o.cache_dir = dir;
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/snap.img", ngx.port);
	before = upt_nginx_requests(&ngx, 206);
	ck_assert_int_eq(upager_snapshot_map_url(p, u, &o, 0, &r), 0); /* opened, untouched */
	ck_assert_int_eq(upager_release(r), 0);
	opening = upt_nginx_requests(&ngx, 206) - before;
	for (int pass = 0; pass < 2; pass++) {
		before = upt_nginx_requests(&ngx, 206);
		ck_assert_int_eq(upager_snapshot_map_url(p, u, &o, 0, &r), 0);
		ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0);
		ck_assert_int_eq(check_snapshot_bytes(upager_region_addr(r)), -1);
		ck_assert_int_eq(upager_release(r), 0);
		if (pass == 0)
			first = upt_nginx_requests(&ngx, 206) - before;
	}
	ck_assert_uint_gt(first, opening + 5);                            /* chunks came */
	ck_assert_uint_eq(upt_nginx_requests(&ngx, 206) - before, opening); /* from the cache */
	upager_destroy(p);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static void damaged_child(void *arg)
{
	upager_t *p = pager(1);
	upager_region_t *r;
	const volatile uint8_t *a;

	if (upager_snapshot_map_url(p, arg, NULL, 0, &r))
		_exit(2);
	upager_region_advise(r, UPAGER_ADV_RANDOM);
	a = upager_region_addr(r);
	if (a[0] != upt_byte(0, SEED))
		_exit(3); /* an intact page */
	_exit(a[2 * UPT_PAGE + 9] == upt_byte(2 * UPT_PAGE + 9, SEED) ? 4 : 5);
}

/* `upager snapshot ARGS URL`: its exit status, its stdout and stderr in out. */
/* The access log's lines for uri, concatenated (at most len - 1 bytes). */
static void log_lines(const char *uri, char *out, size_t len)
{
	FILE *f = fopen(ngx.log, "r");
	char line[1024];

	out[0] = 0;
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, uri))
			strncat(out, line, len - strlen(out) - 1);
	fclose(f);
}

/*
 * s3://BUCKET/KEY: path-style requests on the endpoint, each signed with
 * SigV4 for the region with the session token's header, never the secret
 * in a request or a log line; the environment as the AWS tools read it;
 * unsigned without keys; bad URLs and half a key pair refused. (nginx does
 * not check signatures; test_s3_rgw does, against Ceph's RADOS Gateway.)
 */
START_TEST(test_s3_addressing)
{
	static const char *const vars[] = { "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION",
					     "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
					     "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN" };
	char dirp[200], from[200], to[220], endpoint[64], lines[16384];
	upager_url_options_t o;
	upager_source_t *s;
	upager_region_t *r;
	upager_t *p;

	UPT_NEED_NGINX(no_nginx);
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	snprintf(dirp, sizeof(dirp), "%s/bkt-1/dir", ngx.www);
	snprintf(from, sizeof(from), "%s/bkt-1", ngx.www);
	ck_assert_int_eq(mkdir(from, 0755), 0);
	ck_assert_int_eq(mkdir(dirp, 0755), 0);
	snprintf(from, sizeof(from), "%s/mem.img", ngx.www);
	snprintf(to, sizeof(to), "%s/obj a.img", dirp);
	ck_assert_int_eq(link(from, to), 0);
	snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d/", ngx.port);
	p = pager(2);

	options(&o, 0);
	o.s3_endpoint = endpoint;
	o.s3_region = "eu-test-1";
	o.s3_access_key = "AKIDUPAGERTEST";
	o.s3_secret_key = "SECRETupagerTEST42";
	o.s3_session_token = "TOKENupagerTEST";
	upt_logged[0] = 0;
	ck_assert_int_eq(upager_source_url("s3://bkt-1/dir/obj a.img", &o, &s), 0);
	ck_assert_int_eq(upager_map(p, OBJ_SIZE + 100, s, &r), 0);
	upager_source_release(s);
	ck_assert_int_eq(upt_check_pattern(upager_region_addr(r), OBJ_SIZE, 0, SEED), -1);
	ck_assert_int_eq(upager_release(r), 0);
	log_lines("/bkt-1/dir/obj a.img", lines, sizeof(lines));
	ck_assert_msg(strstr(lines, "HEAD") && strstr(lines, "GET"), "%s", lines);
	for (char *save, *l = strtok_r(lines, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		ck_assert_msg(strstr(l, "AWS4-HMAC-SHA256 Credential=AKIDUPAGERTEST/") &&
			      strstr(l, "/eu-test-1/s3/aws4_request") &&
			      strstr(l, "token=\"TOKENupagerTEST\""), "not signed: %s", l);
		ck_assert_msg(!strstr(l, "SECRETupagerTEST42"), "the secret was sent: %s", l);
	}
	ck_assert_msg(!strstr(upt_logged, "SECRET"), "the secret was upt_logged: %s", upt_logged);

	/* The same from the environment; no keys: unsigned. */
	setenv("AWS_ENDPOINT_URL", endpoint, 1);
	setenv("AWS_REGION", "eu-env-2", 1);
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "SECRETenv", 1);
	options(&o, 0);
	ck_assert_int_eq(upager_source_url("s3://bkt-1/dir/obj%20a.img", &o, &s), -ENOENT);
	ck_assert_int_eq(upager_source_url("s3://bkt-1/dir/obj a.img", &o, &s), 0);
	upager_source_release(s);
	log_lines("/bkt-1/dir/obj a.img", lines, sizeof(lines));
	ck_assert_msg(strstr(lines, "Credential=AKIDENV/") && strstr(lines, "/eu-env-2/s3/"), "%s", lines);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	ck_assert_int_eq(truncate(ngx.log, 0), 0);
	ck_assert_int_eq(upager_source_url("s3://bkt-1/dir/obj a.img", &o, &s), 0);
	upager_source_release(s);
	log_lines("/bkt-1/dir/obj a.img", lines, sizeof(lines));
	ck_assert_msg(strstr(lines, "auth=\"-\"") && !strstr(lines, "AWS4"), "%s", lines);

	/* Refused before a request. */
	setenv("AWS_ACCESS_KEY_ID", "AKIDHALF", 1); /* no secret: half a pair */
	ck_assert_int_eq(upager_source_url("s3://bkt-1/dir/obj a.img", &o, &s), -EINVAL);
	unsetenv("AWS_ACCESS_KEY_ID");
	ck_assert_int_eq(upager_source_url("s3://bkt-1", &o, &s), -EINVAL);
	ck_assert_int_eq(upager_source_url("s3://bkt-1/", &o, &s), -EINVAL);
	ck_assert_int_eq(upager_source_url("s3://BKT/obj", &o, &s), -EINVAL);
	ck_assert_int_eq(upager_source_url("s3://bkt-1/obj?versionId=1", &o, &s), -EINVAL);
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

/* tools/upager snapshot VERB U [U2]: its exit status, what it printed in out. */
static int tool2(const char *verb, const char *u, const char *u2, char *out, size_t len)
{
	char cmd[600];
	FILE *f;
	size_t n;

	snprintf(cmd, sizeof(cmd), "tools/upager snapshot %s '%s' %s%s%s 2>&1", verb, u, u2 ? "'" : "",
		 u2 ? u2 : "", u2 ? "'" : "");
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(out, 1, len - 1, f);
	out[n] = 0;
	return WEXITSTATUS(pclose(f));
}

static int tool(const char *verb, const char *u, char *out, size_t len)
{
	return tool2(verb, u, NULL, out, len);
}

/* Is the file at a byte for byte the file at b? */
static bool same_file(const char *a, const char *b)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", a, b);
	return system(cmd) == 0;
}

/* The snapshot at u restored with its working set (40 pages) prefetched: every byte right. */
/* Waits (5 s at most) until n pages of r were prefetched. */
static void wait_prefetched(upager_region_t *r, uint64_t n)
{
	upager_stats_t st;

	for (int i = 0; i < 5000; i++) {
		ck_assert_int_eq(upager_region_stats(r, &st), 0);
		if (st.pages_prefetched >= n)
			break;
		usleep(1000);
	}
	ck_assert_uint_ge(st.pages_prefetched, n);
}

static void restore_prefetched(upager_t *p, const char *u)
{
	upager_url_options_t o;
	upager_region_t *r;

	options(&o, 0);
	ck_assert_int_eq(upager_snapshot_map_url(p, u, &o, UPAGER_SNAP_PREFETCH, &r), 0);
	wait_prefetched(r, 40);
	ck_assert_int_eq(check_snapshot_bytes(upager_region_addr(r)), -1);
	ck_assert_int_eq(upager_release(r), 0);
}

/*
 * What a restore asks the server before its first fault: the header, whose
 * 206 also says the object's length and version (no HEAD), then the page
 * map on the same connection (each new one costs a TCP and a TLS
 * handshake: round trips), and the working set in one GET, no HEAD first
 * (a hint needs no pinned version). It took 5 requests on 3 connections,
 * 5 round trips.
 */
START_TEST(test_snapshot_open_requests)
{
	char path[160], u[200], lines[4096], *line, *save = NULL;
	long conn = -1;
	int snap_reqs = 0, ws_reqs = 0;
	upager_t *p;

	UPT_NEED_NGINX(no_nginx);
	put_snapshot();
	p = pager(2);
	snprintf(path, sizeof(path), "%s/snap.img", ngx.www);
	record_40(p, path);
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/snap.img", ngx.port);
	restore_prefetched(p, u);
	ck_assert_int_eq(upager_destroy(p), 0);
	log_lines(" /snap.img ", lines, sizeof(lines));
	for (line = strtok_r(lines, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		long c = strtol(line, NULL, 10);

		ck_assert_msg(!strstr(line, " HEAD "), "%s", line);
		if (snap_reqs == 0)
			ck_assert_msg(strstr(line, " 206 GET ") && strstr(line, "range=bytes=0-4095"),
				      "%s", line);
		if (snap_reqs >= 2)
			continue; /* chunks of the data area, on the transfers' connections */
		ck_assert_msg(conn < 0 || c == conn, "the open's requests on connections %ld and %ld:\n%s",
			      conn, c, line);
		conn = c;
		snap_reqs++;
	}
	ck_assert_int_eq(snap_reqs, 2); /* header, page map */
	log_lines(" /snap.img.ws ", lines, sizeof(lines));
	for (line = strtok_r(lines, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		ck_assert_msg(strstr(line, " 200 GET "), "%s", line);
		ws_reqs++;
	}
	ck_assert_int_eq(ws_reqs, 1);
}
END_TEST

/*
 * A working set scattered over the whole snapshot (recorded: 400 pages far
 * apart, in no order), prefetched through 3 chunks of memory: each chunk
 * of the data area is fetched about once, at most 1.25 times (in recorded
 * order 57 requests for 17 chunks; 20 now, the header and map included).
 */
START_TEST(test_snapshot_prefetch_by_chunk)
{
	char path[160], u[200];
	upager_url_options_t o;
	upager_region_t *r;
	struct stat sb;
	size_t chunks;
	upager_t *p;
	uint8_t *a;

	UPT_NEED_NGINX(no_nginx);
	put_snapshot();
	p = pager(2);
	snprintf(path, sizeof(path), "%s/snap.img", ngx.www);
	ck_assert_int_eq(upager_snapshot_map(p, path, UPAGER_SNAP_RECORD, &r), 0);
	ck_assert_int_eq(upager_region_advise(r, UPAGER_ADV_RANDOM), 0);
	a = upager_region_addr(r);
	for (size_t i = 0; i < 400; i++)
		(void)*(volatile uint8_t *)(a + (i * 619 % SNAP_PAGES) * UPT_PAGE);
	ck_assert_int_eq(upager_release(r), 0);
	ck_assert_int_eq(stat(path, &sb), 0);
	chunks = ((size_t)sb.st_size + CHUNK - 1) / CHUNK;

	snprintf(u, sizeof(u), "http://127.0.0.1:%d/snap.img", ngx.port);
	options(&o, 0);
	o.max_requests = 2;
	o.mem_chunks = 3;
	ck_assert_int_eq(upager_snapshot_map_url(p, u, &o, UPAGER_SNAP_PREFETCH, &r), 0);
	wait_prefetched(r, 400);
	/* the header and the page map, then the chunks */
	ck_assert_msg(upt_nginx_requests(&ngx, 206) <= 2 + chunks + chunks / 4,
		      "%zu range requests for %zu chunks", upt_nginx_requests(&ngx, 206), chunks);
	ck_assert_int_eq(check_snapshot_bytes(upager_region_addr(r)), -1);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

/*
 * upager snapshot push: a snapshot saved here, with its working set, sent to
 * nginx (PUT) and restored from there; refused when the server refuses, when
 * a page is damaged (nothing sent), and for an incremental snapshot.
 */
START_TEST(test_push)
{
	char local[200], u[200], there[240], out[1024];
	upager_t *p;

	UPT_NEED_NGINX(no_nginx);
	put_snapshot();
	snprintf(local, sizeof(local), "%s/snap.img", ngx.www);
	p = pager(2);
	record_40(p, local); /* a working set, recorded on a local restore */

	snprintf(u, sizeof(u), "http://127.0.0.1:%d/up/vm/pushed.snap", ngx.port);
	ck_assert_msg(tool2("push", local, u, out, sizeof(out)) == 0, "push: %s", out);
	ck_assert_msg(strstr(out, "checked and pushed") && strstr(out, "working set (40 pages)"), "%s",
		      out);
	snprintf(there, sizeof(there), "%s/up/vm/pushed.snap", ngx.www);
	ck_assert(same_file(local, there));
	snprintf(there, sizeof(there), "%s/up/vm/pushed.snap.ws", ngx.www);
	snprintf(local, sizeof(local), "%s/snap.img.ws", ngx.www);
	ck_assert(same_file(local, there));
	restore_prefetched(p, u); /* from there, its working set prefetched */
	ck_assert_int_eq(upager_destroy(p), 0);

	/* --json, and where the server refuses. */
	snprintf(local, sizeof(local), "%s/snap.img", ngx.www);
	ck_assert_int_eq(tool2("push --json", local, u, out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "\"ok\":true") && strstr(out, "\"ws_pages\":40"), "%s", out);
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/forbidden/x.snap", ngx.port);
	ck_assert_int_eq(tool2("push", local, u, out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "HTTP 403") && strstr(out, "Permission denied"), "%s", out);
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/static.snap", ngx.port); /* no PUT there */
	ck_assert_int_eq(tool2("push", local, u, out, sizeof(out)), 1);
	ck_assert_int_eq(tool2("push", local, "/tmp/not-a-url", out, sizeof(out)), 1);
	/* To s3:// (nginx as a path-style endpoint) with a part size that is no
	 * size: refused before any request. */
	snprintf(u, sizeof(u), "http://127.0.0.1:%d", ngx.port);
	setenv("AWS_ENDPOINT_URL", u, 1);
	setenv("UPAGER_S3_PART_SIZE", "lots", 1);
	ck_assert_int_eq(tool2("push", local, "s3://upt-bucket/s3.snap", out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "UPAGER_S3_PART_SIZE=lots: not a size"), "%s", out);
	log_lines("/upt-bucket/s3.snap", out, sizeof(out));
	ck_assert_msg(!out[0], "requests were sent: %s", out);
	unsetenv("UPAGER_S3_PART_SIZE");
	unsetenv("AWS_ENDPOINT_URL");
	/* A damaged page: refused before a byte leaves. */
	damage_snapshot();
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/up/bad.snap", ngx.port);
	ck_assert_int_eq(tool2("push", local, u, out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "not a valid snapshot"), "%s", out);
	snprintf(there, sizeof(there), "%s/up/bad.snap", ngx.www);
	ck_assert_int_eq(access(there, F_OK), -1);
}
END_TEST

/* Completed, the restore needs the server no more: nginx killed, every byte right. */
START_TEST(test_snapshot_complete)
{
	upager_url_options_t o;
	upager_region_t *r;
	upager_t *p;
	uint8_t *a;
	char u[200];

	UPT_NEED_NGINX(no_nginx);
	put_snapshot();
	p = pager(2);
	options(&o, 0);
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/snap.img", ngx.port);
	ck_assert_int_eq(upager_snapshot_map_url(p, u, &o, UPAGER_SNAP_COMPLETE, &r), 0);
	a = upager_region_addr(r);
	(void)*(volatile uint8_t *)(a + 5 * UPT_PAGE + 3); /* a fault among the fills */
	ck_assert_int_eq(upager_complete(r, 30000), 0);
	kill(ngx.pid, SIGKILL);
	waitpid(ngx.pid, NULL, 0);
	ngx.pid = -1;
	ck_assert_int_eq(check_snapshot_bytes(a), -1);
	ck_assert_int_eq(munmap(a, SNAP_PAGES * UPT_PAGE), 0);
	ck_assert_int_eq(upager_destroy(p), 0);
}
END_TEST

START_TEST(test_snapshot_damaged_and_tool)
{
	char u[200], out[2048];
	int status;

	UPT_NEED_NGINX(no_nginx);
	put_snapshot();
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/snap.img", ngx.port);
	ck_assert_int_eq(tool("info", u, out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "1536 pages"), "%s", out);
	ck_assert_int_eq(tool("verify", u, out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "every stored page matches"), "%s", out);
	damage_snapshot();
	ck_assert_int_eq(tool("verify", u, out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "page 2 fails its checksum"), "%s", out);
	status = upt_child(damaged_child, u, 30);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "status %#x", status);
}
END_TEST

/* ---- tests/fake_http ---- */

static pid_t fake_pid = -1;

static void fake_start(const char *mode, char *u, size_t len)
{
	fake_pid = upt_fake_http_start(mode, OBJ_SIZE, SEED, u, len);
}

static void fake_teardown(void)
{
	if (fake_pid > 0) {
		kill(fake_pid, SIGKILL);
		waitpid(fake_pid, NULL, 0);
	}
	fake_pid = -1;
}

START_TEST(test_whole_body_to_range)
{
	upager_t *p = pager(2);
	upager_region_t *r;
	char u[96];

	fake_start("whole", u, sizeof(u));
	upt_logged[0] = 0;
	r = url_region(p, u, 0, UPAGER_ADV_NORMAL);
	check_bytes(upager_region_addr(r), SEED);
	ck_assert_msg(strstr(upt_logged, "whole object"), "log: %s", upt_logged);
	upager_destroy(p);
}
END_TEST

START_TEST(test_retries_503)
{
	upager_t *p = pager(1);
	upager_region_t *r;
	char u[96];

	fake_start("flaky", u, sizeof(u));
	upt_logged[0] = 0;
	r = url_region(p, u, 0, UPAGER_ADV_SEQUENTIAL);
	check_bytes(upager_region_addr(r), SEED);
	ck_assert_msg(strstr(upt_logged, "503"), "log: %s", upt_logged);
	upager_destroy(p);
}
END_TEST

static void stall_child(void *arg)
{
	upager_t *p = pager(1);
	upager_region_t *r = url_region(p, arg, 1500, UPAGER_ADV_RANDOM);

	_exit(*(volatile uint8_t *)upager_region_addr(r) == upt_byte(0, SEED) ? 4 : 5);
}

START_TEST(test_stalled_body_cut)
{
	struct timespec t0, t1;
	char u[96];
	int status;

	fake_start("stall", u, sizeof(u));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	status = upt_child(stall_child, u, 30);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "status %#x", status);
	ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 8);
}
END_TEST

START_TEST(test_redirect_elsewhere_refused)
{
	upager_url_options_t o;
	upager_source_t *s;
	char u[96];

	fake_start("redirect", u, sizeof(u));
	options(&o, 0);
	upt_logged[0] = 0;
	ck_assert_int_eq(upager_source_url(u, &o, &s), -EPROTO);
	ck_assert_msg(strstr(upt_logged, "redirect to http://127.0.0.2"), "log: %s", upt_logged);
}
END_TEST

#ifdef HAVE_LIBCURL
/* ---- a real S3 store: Ceph's RADOS Gateway ---- */

static struct upt_rgw rgw;

static void s3_options(upager_url_options_t *o, const char *secret)
{
	options(o, 10000);
	o->s3_endpoint = rgw.endpoint;
	o->s3_access_key = rgw.access_key;
	o->s3_secret_key = secret;
}

/* Replaced in the store after its first chunk was read: SIGBUS, never new bytes. */
static void s3_replaced_child(void *arg)
{
	upager_url_options_t o;
	upager_source_t *s;
	upager_region_t *r;
	upager_t *p = pager(1);
	const volatile uint8_t *a;

	(void)arg;
	s3_options(&o, rgw.secret_key);
	o.chunk_size = 64 << 10;
	if (upager_source_url("s3://upt-bucket/obj", &o, &s) < 0 ||
	    upager_map(p, OBJ_SIZE + 100, s, &r) < 0 || upager_region_advise(r, UPAGER_ADV_RANDOM) < 0)
		_exit(2);
	a = upager_region_addr(r);
	if (a[0] != upt_byte(0, SEED))
		_exit(3);
	if (upt_rgw_put(&rgw, "upt-bucket", "obj", OBJ_SIZE, NEW_SEED) < 0)
		_exit(4);
	for (size_t off = OBJ_SIZE / 2; off < OBJ_SIZE; off += UPT_PAGE)
		if (a[off] != upt_byte(off, SEED))
			_exit(5);
	_exit(0);
}

/*
 * s3:// against a real S3 implementation, which checks what nginx does not:
 * every signed range read right to the byte; a wrong secret and no keys at
 * all refused at open (403: -EACCES); the object replaced mid-restore ends
 * later faults in SIGBUS (412 to If-Match); a snapshot pushed there with
 * upager snapshot push (keys from the environment), restored from it with
 * its working set prefetched, every byte checked.
 */
#define BIG_PAGES 3000 /* 11.7 MiB of stored pages: three parts of 5 MiB */

/*
 * A snapshot larger than a part, pushed to the store as a multipart upload
 * (three parts), restored from it byte for byte; a push to a bucket that
 * does not exist fails, naming the store's error.
 */
static void push_multipart(upager_t *p)
{
	const size_t len = BIG_PAGES * UPT_PAGE;
	char local[200], out[1024];
	upager_url_options_t o;
	upager_region_t *r;
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(m, MAP_FAILED);
	upt_fill(m, len, 0, SEED + 1);
	snprintf(local, sizeof(local), "/tmp/upager-s3-big-%d.img", (int)getpid());
	ck_assert_int_eq(upager_snapshot_save(m, len, local), 0);
	munmap(m, len);
	setenv("UPAGER_S3_PART_SIZE", "5M", 1);
	ck_assert_msg(tool2("push", local, "s3://upt-bucket/vm/big.img", out, sizeof(out)) == 0,
		      "push: %s", out);
	ck_assert_msg(strstr(out, "in 3 parts"), "%s", out);
	ck_assert_msg(strstr(out, "-3\""), "a multipart ETag ends in -3: %s", out);
	ck_assert_int_ne(tool2("push", local, "s3://no-such-bucket/big.img", out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "NoSuchBucket"), "%s", out);
	unsetenv("UPAGER_S3_PART_SIZE");
	unlink(local);
	options(&o, 0);
	ck_assert_int_eq(upager_snapshot_map_url(p, "s3://upt-bucket/vm/big.img", &o, 0, &r), 0);
	ck_assert_uint_eq(upager_region_size(r), len);
	ck_assert_int_eq(upt_check_pattern(upager_region_addr(r), len, 0, SEED + 1), -1);
	ck_assert_int_eq(upager_release(r), 0);
}

START_TEST(test_s3_rgw)
{
	static const char *const vars[] = { "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION",
					     "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
					     "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN" };
	const char *why;
	char local[200], out[1024];
	upager_url_options_t o;
	upager_source_t *s;
	upager_region_t *r;
	upager_stats_t st;
	upager_t *p;
	int status;

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	why = upt_rgw_start(&rgw);
	if (why) {
		printf("SKIP %s: %s\n", __func__, why);
		return;
	}
	ck_assert_int_eq(upt_rgw_put(&rgw, "upt-bucket", "obj", OBJ_SIZE, SEED), 0);
	p = pager(2);
	s3_options(&o, rgw.secret_key);
	ck_assert_msg(upager_source_url("s3://upt-bucket/obj", &o, &s) == 0, "%s", upt_logged);
	ck_assert_int_eq(upager_map(p, OBJ_SIZE + 100, s, &r), 0);
	upager_source_release(s);
	ck_assert_int_eq(upt_check_pattern(upager_region_addr(r), OBJ_SIZE, 0, SEED), -1);
	ck_assert_int_eq(upager_region_stats(r, &st), 0);
	ck_assert_uint_eq(st.fill_errors, 0);
	ck_assert_int_eq(upager_release(r), 0);

	s3_options(&o, "not-the-secret-0123456789");
	ck_assert_int_eq(upager_source_url("s3://upt-bucket/obj", &o, &s), -EACCES);
	ck_assert_msg(!strstr(upt_logged, "not-the-secret"), "a secret in the log: %s", upt_logged);
	options(&o, 0);
	o.s3_endpoint = rgw.endpoint; /* no keys: unsigned */
	ck_assert_int_eq(upager_source_url("s3://upt-bucket/obj", &o, &s), -EACCES);
	s3_options(&o, rgw.secret_key);
	ck_assert_int_eq(upager_source_url("s3://upt-bucket/none", &o, &s), -ENOENT);

	status = upt_child(s3_replaced_child, NULL, 60);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "status %#x", status);

	/* A snapshot and its working set, pushed by the tool, restored from the store. */
	snprintf(local, sizeof(local), "/tmp/upager-s3-snap-%d.img", (int)getpid());
	save_snapshot_to(local);
	record_40(p, local);
	setenv("AWS_ENDPOINT_URL", rgw.endpoint, 1);
	setenv("AWS_ACCESS_KEY_ID", rgw.access_key, 1);
	setenv("AWS_SECRET_ACCESS_KEY", rgw.secret_key, 1);
	ck_assert_msg(tool2("push", local, "s3://upt-bucket/vm/snap.img", out, sizeof(out)) == 0,
		      "push: %s", out);
	ck_assert_msg(strstr(out, "working set (40 pages)"), "%s", out);
	restore_prefetched(p, "s3://upt-bucket/vm/snap.img");
	ck_assert_int_eq(tool("verify", "s3://upt-bucket/vm/snap.img", out, sizeof(out)), 0);
	push_multipart(p);
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	unlink(local);
	snprintf(out, sizeof(out), "%s.ws", local);
	unlink(out);
	ck_assert_int_eq(upager_destroy(p), 0);
	upt_rgw_stop(&rgw);
}
END_TEST

#endif

static Suite *url_suite(void)
{
	Suite *s = suite_create("url");
	TCase *tc = upt_tcase(s, "nginx");
	TCase *fake = upt_tcase(s, "fake_http");
	TCase *s3 = upt_tcase(s, "rgw");

	tcase_set_timeout(s3, 240); /* the store starts in 3-15 s, within 60 */

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_every_byte_keepalive);
	tcase_add_test(tc, test_many_threads);
	tcase_add_test(tc, test_sequential_streams);
	tcase_add_test(tc, test_replaced_mid_restore);
	tcase_add_test(tc, test_server_killed);
	tcase_add_test(tc, test_open_errors);
	tcase_add_test(tc, test_snapshot_every_byte);
	tcase_add_test(tc, test_snapshot_open_requests);
	tcase_add_test(tc, test_snapshot_prefetch_by_chunk);
	tcase_add_test(tc, test_snapshot_chunk_cache);
	tcase_add_test(tc, test_https_http2);
	tcase_add_test(tc, test_snapshot_complete);
	tcase_add_test(tc, test_push);
	tcase_add_test(tc, test_s3_addressing);
	tcase_add_test(tc, test_snapshot_damaged_and_tool);
#ifdef HAVE_LIBCURL
	tcase_add_test(s3, test_s3_rgw);
#endif
	tcase_add_checked_fixture(fake, NULL, fake_teardown);
	tcase_add_test(fake, test_whole_body_to_range);
	tcase_add_test(fake, test_retries_503);
	tcase_add_test(fake, test_stalled_body_cut);
	tcase_add_test(fake, test_redirect_elsewhere_refused);
	return s;
}

int main(void)
{
	return upt_main_url(url_suite);
}
