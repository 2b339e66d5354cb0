/* SPDX-License-Identifier: MIT */
/*
 * upagerd, the real binary, on temporary sockets and loopback ports: data
 * end to end with every byte and checksum checked, many clients, and
 * hostile clients, each refused while a well-behaved one keeps working.
 */
#include "config.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/fanotify.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "le.h"
#include "protocol.h"

#define FILE_SIZE (3u << 20) /* + a ragged tail below */
#define TAIL 1234

static char dir[64], unix_path[128], tcp_port[16];
static pid_t daemon_pid;

/* ---- the daemon ---- */

static pid_t start_daemon(const char *extra1, const char *extra2)
{
	char root[128];
	int port;
	pid_t pid;

	snprintf(root, sizeof(root), "%s/root", dir);
	pid = upt_daemon_start(root, unix_path, extra1, extra2, &port);
	snprintf(tcp_port, sizeof(tcp_port), "%d", port);
	return pid;
}

static void setup(void)
{
	char path[256];
	uint8_t *buf = malloc(FILE_SIZE + TAIL);
	int fd;

	snprintf(dir, sizeof(dir), "/tmp/upagerd-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/root", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/root/sub", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/root/sub/disk.img", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	upt_fill(buf, FILE_SIZE + TAIL, 0, 77);
	ck_assert_int_eq(write(fd, buf, FILE_SIZE + TAIL), FILE_SIZE + TAIL);
	close(fd);
	free(buf);
	snprintf(path, sizeof(path), "%s/secret", dir); /* outside the root */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_eq(write(fd, "secret", 6), 6);
	close(fd);
	snprintf(path, sizeof(path), "%s/root/escape", dir);
	ck_assert_int_eq(symlink("../secret", path), 0);
	snprintf(unix_path, sizeof(unix_path), "%s/upagerd.sock", dir);
	daemon_pid = start_daemon(NULL, NULL);
}

static void teardown(void)
{
	char cmd[128];

	upt_daemon_kill(daemon_pid);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0) {
		/* best effort: the next run uses a new directory anyway */
	}
}

/* ---- a small client ---- */

static int connect_unix(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, unix_path);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static int connect_tcp(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(tcp_port)) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void send_all(int fd, const void *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		ck_assert_int_gt(n, 0);
		p = (const uint8_t *)p + n;
		len -= (size_t)n;
	}
}

static void send_frame(int fd, uint8_t type, uint32_t id, const void *payload, size_t len)
{
	uint8_t h[UPP_HDR_SIZE];

	upp_put_hdr(h, type, id, (uint32_t)len);
	send_all(fd, h, sizeof(h));
	if (len)
		send_all(fd, payload, len);
}

/* Reads one frame (payload into *buf, malloc'd); -1 if the server closed. */
static int recv_frame(int fd, struct upp_hdr *h, uint8_t **buf)
{
	uint8_t hb[UPP_HDR_SIZE];
	size_t got = 0;

	while (got < sizeof(hb)) {
		ssize_t n = recv(fd, hb + got, sizeof(hb) - got, 0);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	ck_assert_int_eq(upp_get_hdr(hb, sizeof(hb), UPP_MAX_READ + 4096, h), 0);
	*buf = malloc(h->length + 1);
	for (got = 0; got < h->length;) {
		ssize_t n = recv(fd, *buf + got, h->length - got, 0);
		if (n <= 0) {
			free(*buf);
			return -1;
		}
		got += (size_t)n;
	}
	return 0;
}

/* True once the server has closed the connection (EOF within 5 s). */
static bool closed_by_server(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint8_t b[256];

	for (int i = 0; i < 50; i++) {
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = recv(fd, b, sizeof(b), 0);
		if (n <= 0)
			return true; /* EOF or reset */
	}
	return false;
}

/* HELLO; the features the server offers. */
static uint32_t hello(int fd)
{
	struct upp_hello h = { 1, 1, 0 };
	struct upp_hello_reply r;
	struct upp_hdr hdr;
	uint8_t p[8], *buf;

	send_frame(fd, UPP_HELLO, 0, p, upp_put_hello(p, &h));
	ck_assert_int_eq(recv_frame(fd, &hdr, &buf), 0);
	ck_assert_uint_eq(hdr.type, UPP_HELLO | UPP_REPLY);
	ck_assert_int_eq(upp_get_hello_reply(buf, hdr.length, &r), 0);
	ck_assert_uint_eq(r.version, 1);
	ck_assert_uint_eq(r.max_read, UPP_MAX_READ);
	free(buf);
	return r.features;
}

/* OPEN or OPEN_IMAGE (type): the handle, or -errno from an ERROR reply. */
static long open_as(int fd, uint8_t type, const char *path, uint64_t *size)
{
	uint8_t p[2 + UPP_MAX_PATH], *buf;
	struct upp_hdr h;
	uint32_t handle;
	long ret;

	send_frame(fd, type, 5, p, upp_put_open(p, path, (uint16_t)strlen(path)));
	ck_assert_int_eq(recv_frame(fd, &h, &buf), 0);
	ck_assert_uint_eq(h.id, 5);
	if (h.type == UPP_ERROR) {
		struct upp_error e;
		ck_assert_int_eq(upp_get_error(buf, h.length, &e), 0);
		ret = -(long)e.code;
	} else {
		ck_assert_uint_eq(h.type, type | UPP_REPLY);
		ck_assert_int_eq(upp_get_opened(buf, h.length, &handle, size), 0);
		ret = handle;
	}
	free(buf);
	return ret;
}

static long open_obj(int fd, const char *path, uint64_t *size)
{
	return open_as(fd, UPP_OPEN, path, size);
}

/* READ of len bytes at off of an image (all of them there) into out. */
static void read_image(int fd, uint32_t handle, uint64_t off, uint32_t len, uint8_t *out)
{
	uint8_t q[8 + 16 * UPP_MAX_RANGES], *buf;
	struct upp_read rd = { .handle = handle, .n = 1 };
	const uint8_t *data;
	struct upp_hdr h;
	uint32_t got;

	rd.r[0] = (struct upp_range){ off, len };
	send_frame(fd, UPP_READ, 21, q, upp_put_read(q, &rd));
	ck_assert_int_eq(recv_frame(fd, &h, &buf), 0);
	ck_assert_uint_eq(h.type, UPP_READ | UPP_REPLY);
	ck_assert_int_eq(upp_get_data(buf, h.length, 1, &len, &got, &data), 0);
	ck_assert_uint_eq(got, len);
	memcpy(out, data, len);
	free(buf);
}

/* READs ranges and checks every byte against the file's pattern. */
static void read_check(int fd, uint32_t handle, uint32_t id, const struct upp_range *r, uint32_t n)
{
	struct upp_read rd = { .handle = handle, .n = n };
	uint8_t p[8 + 16 * UPP_MAX_RANGES], *buf;
	uint32_t wanted[UPP_MAX_RANGES], got[UPP_MAX_RANGES];
	const uint8_t *data;
	struct upp_hdr h;

	memcpy(rd.r, r, n * sizeof(*r));
	send_frame(fd, UPP_READ, id, p, upp_put_read(p, &rd));
	ck_assert_int_eq(recv_frame(fd, &h, &buf), 0);
	ck_assert_uint_eq(h.type, UPP_READ | UPP_REPLY);
	ck_assert_uint_eq(h.id, id);
	for (uint32_t i = 0; i < n; i++)
		wanted[i] = r[i].length;
	ck_assert_int_eq(upp_get_data(buf, h.length, n, wanted, got, &data), 0);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t end = FILE_SIZE + TAIL;
		uint64_t expect = r[i].offset >= end ? 0
			: (end - r[i].offset < r[i].length ? end - r[i].offset : r[i].length);
		ck_assert_uint_eq(got[i], expect);
		ck_assert_int_eq(upt_check_pattern(data, got[i], r[i].offset, 77), -1);
		data += got[i];
	}
	free(buf);
}

/* A well-behaved client: hello, open, a few reads, every byte checked. */
static void good_client(int (*conn)(void))
{
	struct upp_range r[3] = { { 0, 4096 }, { 1 << 20, 65536 }, { FILE_SIZE, 8192 } };
	uint64_t size;
	int fd = conn();
	long h;

	hello(fd);
	h = open_obj(fd, "sub/disk.img", &size);
	ck_assert_int_ge(h, 0);
	ck_assert_uint_eq(size, FILE_SIZE + TAIL);
	read_check(fd, (uint32_t)h, 9, r, 3);
	close(fd);
}

/* ---- tests ---- */

START_TEST(test_end_to_end_unix_and_tcp)
{
	int (*conns[2])(void) = { connect_unix, connect_tcp };

	for (int k = 0; k < 2; k++) {
		struct upp_range r[UPP_MAX_RANGES];
		uint8_t p[8], *buf;
		struct upp_hdr h;
		uint64_t size;
		int fd = conns[k]();
		long hd;

		hello(fd);
		hd = open_obj(fd, "sub/disk.img", &size);
		ck_assert_int_ge(hd, 0);
		/* The whole file, 8 MiB at most per READ, in 64 ranges of 48 KiB. */
		for (uint64_t off = 0; off < FILE_SIZE + TAIL; off += UPP_MAX_RANGES * 49152) {
			for (uint32_t i = 0; i < UPP_MAX_RANGES; i++)
				r[i] = (struct upp_range){ off + i * 49152, 49152 };
			read_check(fd, (uint32_t)hd, 100, r, UPP_MAX_RANGES);
		}
		/* Past the end: zero bytes. Over 8 MiB: a protocol error, tested below. */
		r[0] = (struct upp_range){ 1ull << 40, 4096 };
		read_check(fd, (uint32_t)hd, 101, r, 1);
		/* An unknown handle: an ERROR for that request; the connection stays. */
		{
			struct upp_read rd = { .handle = 200, .n = 1, .r = { { 0, 4096 } } };
			uint8_t q[24];
			struct upp_error e;

			send_frame(fd, UPP_READ, 103, q, upp_put_read(q, &rd));
			ck_assert_int_eq(recv_frame(fd, &h, &buf), 0);
			ck_assert(h.type == UPP_ERROR && h.id == 103);
			ck_assert_int_eq(upp_get_error(buf, h.length, &e), 0);
			ck_assert_uint_eq(e.code, EBADF);
			free(buf);
		}
		send_frame(fd, UPP_CLOSE, 104, p, upp_put_handle(p, (uint32_t)hd));
		ck_assert_int_eq(recv_frame(fd, &h, &buf), 0);
		ck_assert(h.type == (UPP_CLOSE | UPP_REPLY) && h.id == 104);
		free(buf);
		send_frame(fd, UPP_STATS, 105, NULL, 0);
		ck_assert_int_eq(recv_frame(fd, &h, &buf), 0);
		ck_assert(h.type == (UPP_STATS | UPP_REPLY));
		buf[h.length] = '\0';
		ck_assert_ptr_nonnull(strstr((char *)buf, "clients="));
		free(buf);
		close(fd);
	}
}
END_TEST

/* Many READs sent before any reply is read: all answered, ids matched. */
START_TEST(test_pipelining)
{
	int fd = connect_unix();
	uint8_t p[8 + 16], *buf;
	bool seen[64] = { false };
	uint64_t size;
	long hd;

	hello(fd);
	hd = open_obj(fd, "sub/disk.img", &size);
	for (uint32_t id = 0; id < 64; id++) {
		struct upp_read rd = { .handle = (uint32_t)hd, .n = 1, .r = { { id * 40960, 40960 } } };
		send_frame(fd, UPP_READ, 1000 + id, p, upp_put_read(p, &rd));
	}
	for (int k = 0; k < 64; k++) {
		uint32_t wanted = 40960, got;
		const uint8_t *data;
		struct upp_hdr h;

		ck_assert_int_eq(recv_frame(fd, &h, &buf), 0);
		ck_assert(h.id >= 1000 && h.id < 1064 && !seen[h.id - 1000]);
		seen[h.id - 1000] = true;
		ck_assert_int_eq(upp_get_data(buf, h.length, 1, &wanted, &got, &data), 0);
		ck_assert_int_eq(upt_check_pattern(data, got, (h.id - 1000) * 40960ull, 77), -1);
		free(buf);
	}
	close(fd);
}
END_TEST

static void *client_thread(void *arg)
{
	good_client((intptr_t)arg % 2 ? connect_tcp : connect_unix);
	return NULL;
}

START_TEST(test_64_clients)
{
	pthread_t t[64];

	for (intptr_t i = 0; i < 64; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, client_thread, (void *)i), 0);
	for (int i = 0; i < 64; i++)
		pthread_join(t[i], NULL);
}
END_TEST

static long daemon_rss_kib(void)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)daemon_pid);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kib = atol(line + 6);
	if (f)
		fclose(f);
	return kib;
}

/* A client that asks for 64 MiB and never reads: it is paused at its
 * bounds, the daemon's memory stays bounded, and others are served. */
START_TEST(test_slow_client)
{
	uint8_t p[8 + 16];
	uint64_t size;
	long hd, rss;
	int fd = connect_unix();

	hello(fd);
	hd = open_obj(fd, "sub/disk.img", &size);
	for (uint32_t id = 0; id < 64; id++) {
		struct upp_read rd = { .handle = (uint32_t)hd, .n = 1, .r = { { 0, 1 << 20 } } };
		send_frame(fd, UPP_READ, id, p, upp_put_read(p, &rd));
	}
	usleep(300 * 1000);
	for (int i = 0; i < 5; i++)
		good_client(i % 2 ? connect_tcp : connect_unix);
	rss = daemon_rss_kib();
	/* 16 MiB of output queue and what is in flight, not 64 MiB of replies. */
	ck_assert_msg(rss > 0 && rss < 48 * 1024, "daemon RSS %ld KiB", rss);
	printf("note: test_slow_client: daemon RSS %ld KiB with 64 MiB of replies unread\n", rss);
	close(fd);
	good_client(connect_unix);
}
END_TEST

/* Each hostile client is refused, and a good client works right after. */
START_TEST(test_hostile_clients)
{
	static const char garbage[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	uint8_t h[UPP_HDR_SIZE], p[2 + UPP_MAX_PATH];
	uint64_t size;
	int fd;

	/* Garbage. */
	fd = connect_tcp();
	send_all(fd, garbage, sizeof(garbage) - 1);
	ck_assert(closed_by_server(fd));
	close(fd);
	good_client(connect_tcp);

	/* Half a frame, then gone. */
	fd = connect_unix();
	upp_put_hdr(h, UPP_HELLO, 0, 8);
	send_all(fd, h, 10);
	close(fd);
	good_client(connect_unix);

	/* A frame claiming 4 GiB: refused before anything is buffered. */
	fd = connect_unix();
	hello(fd);
	upp_put_hdr(h, UPP_READ, 1, 0xFFFFFFFFu);
	send_all(fd, h, sizeof(h));
	ck_assert(closed_by_server(fd));
	close(fd);
	good_client(connect_unix);

	/* A READ for more than 8 MiB. */
	fd = connect_unix();
	hello(fd);
	{
		struct upp_read rd = { .handle = 0, .n = 1, .r = { { 0, UPP_MAX_READ + 1 } } };
		uint8_t q[24];
		send_frame(fd, UPP_READ, 1, q, upp_put_read(q, &rd));
	}
	ck_assert(closed_by_server(fd));
	close(fd);

	/* Anything but HELLO first. */
	fd = connect_unix();
	send_frame(fd, UPP_OPEN, 1, p, upp_put_open(p, "sub/disk.img", 12));
	ck_assert(closed_by_server(fd));
	close(fd);

	/* An unknown frame type after HELLO. */
	fd = connect_unix();
	hello(fd);
	send_frame(fd, 0x42, 1, NULL, 0);
	ck_assert(closed_by_server(fd));
	close(fd);

	/* Paths out of the root: refused, and the connection stays usable. */
	fd = connect_unix();
	hello(fd);
	ck_assert_int_eq(open_obj(fd, "../secret", &size), -EACCES);
	ck_assert_int_eq(open_obj(fd, "sub/../../secret", &size), -EACCES);
	ck_assert_int_eq(open_obj(fd, "escape", &size), -EACCES); /* symlink out */
	{
		char abs[200];
		snprintf(abs, sizeof(abs), "%s/secret", dir);
		ck_assert_int_eq(open_obj(fd, abs, &size), -EACCES);
	}
	ck_assert_int_eq(open_obj(fd, "nonexistent", &size), -ENOENT);
	ck_assert_int_eq(open_obj(fd, "sub", &size), -EINVAL); /* a directory */
	ck_assert_int_ge(open_obj(fd, "sub/disk.img", &size), 0);
	close(fd);
	good_client(connect_tcp);
	/* The daemon is still the one we started. */
	ck_assert_int_eq(waitpid(daemon_pid, NULL, WNOHANG), 0);
}
END_TEST

/* A frame that never completes is closed after --read-timeout; a silent
 * client after --idle-timeout. */
START_TEST(test_timeouts)
{
	uint8_t h[UPP_HDR_SIZE];
	int fd;

	upt_daemon_kill(daemon_pid);
	daemon_pid = start_daemon("--read-timeout=1", "--idle-timeout=2");
	fd = connect_unix();
	upp_put_hdr(h, UPP_HELLO, 0, 8);
	send_all(fd, h, sizeof(h)); /* the payload never comes */
	ck_assert(closed_by_server(fd)); /* within 5 s */
	close(fd);
	fd = connect_unix();
	hello(fd);
	ck_assert(closed_by_server(fd));
	close(fd);
	good_client(connect_unix);
}
END_TEST

/* With --secret-file, a TCP client that skips AUTH or forges it is refused. */
START_TEST(test_auth_required)
{
	char secret[128], flag[160];
	uint8_t p[2 + UPP_MAX_PATH], q[UPP_NONCE + UPP_MAC] = { 0 }, *buf;
	struct upp_hello hh = { 1, 1, 0 };
	struct upp_hello_reply r;
	struct upp_hdr h;
	FILE *f;
	int fd;

	snprintf(secret, sizeof(secret), "%s/secret", dir);
	f = fopen(secret, "w");
	fprintf(f, "s3cret\n");
	fclose(f);
	chmod(secret, 0600);
	upt_daemon_kill(daemon_pid);
	snprintf(flag, sizeof(flag), "--secret-file=%s", secret);
	daemon_pid = start_daemon(flag, NULL);

	/* The challenge comes with the HELLO reply; OPEN instead of AUTH: closed. */
	fd = connect_tcp();
	send_frame(fd, UPP_HELLO, 0, p, upp_put_hello(p, &hh));
	ck_assert_int_eq(recv_frame(fd, &h, &buf), 0);
	ck_assert_int_eq(upp_get_hello_reply(buf, h.length, &r), 0);
	ck_assert(r.features & UPP_FEAT_AUTH);
	free(buf);
	send_frame(fd, UPP_OPEN, 1, p, upp_put_open(p, "sub/disk.img", 12));
	ck_assert(closed_by_server(fd));
	close(fd);

	/* A forged proof: ERROR EACCES, closed. */
	fd = connect_tcp();
	send_frame(fd, UPP_HELLO, 0, p, upp_put_hello(p, &hh));
	ck_assert_int_eq(recv_frame(fd, &h, &buf), 0);
	free(buf);
	send_frame(fd, UPP_AUTH, 2, q, sizeof(q));
	ck_assert_int_eq(recv_frame(fd, &h, &buf), 0);
	ck_assert_uint_eq(h.type, UPP_ERROR);
	free(buf);
	ck_assert(closed_by_server(fd));
	close(fd);

	/* Unix sockets: no challenge. */
	good_client(connect_unix);
}
END_TEST

/* --log-file, then SIGHUP after the file was moved away: logging goes on in
 * a new file at the old path (what logrotate needs). */
START_TEST(test_sighup_reopens_log)
{
	char log[128], moved[128], flag[160];
	struct stat st;

	snprintf(log, sizeof(log), "%s/upagerd.log", dir);
	snprintf(moved, sizeof(moved), "%s/upagerd.log.1", dir);
	snprintf(flag, sizeof(flag), "--log-file=%s", log);
	upt_daemon_kill(daemon_pid);
	daemon_pid = start_daemon(flag, "--log-level=info");
	ck_assert_int_eq(stat(log, &st), 0);
	ck_assert_int_eq(rename(log, moved), 0);
	ck_assert_int_eq(kill(daemon_pid, SIGHUP), 0);
	for (int i = 0; i < 200 && stat(log, &st) != 0; i++)
		usleep(10000);
	ck_assert_int_eq(stat(log, &st), 0);
	good_client(connect_unix); /* its connect and close are logged there */
	usleep(100000);
	ck_assert_int_eq(stat(log, &st), 0);
	ck_assert_int_gt(st.st_size, 0);
}
END_TEST

/* SIGTERM: exit 0, socket removed. */
START_TEST(test_sigterm)
{
	int status;

	good_client(connect_unix);
	ck_assert_int_eq(kill(daemon_pid, SIGTERM), 0);
	ck_assert_int_eq(waitpid(daemon_pid, &status, 0), daemon_pid);
	daemon_pid = 0;
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
	ck_assert_int_eq(access(unix_path, F_OK), -1);
}
END_TEST

/* Bad flags and config files stop the daemon before it serves, saying where. */
static int run_daemon(const char *a1, const char *a2, char *err, size_t errlen)
{
	int pfd[2], status;
	ssize_t n;
	pid_t pid;

	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 2);
		execl("daemon/upagerd", "upagerd", "serve", "--root", "/", a1, a2, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	n = read(pfd[0], err, errlen - 1);
	err[n > 0 ? n : 0] = '\0';
	close(pfd[0]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(test_bad_config)
{
	char conf[128], err[1024];
	FILE *f;

	ck_assert_int_eq(run_daemon("--max-clients=0", NULL, err, sizeof(err)), 2);
	ck_assert_ptr_nonnull(strstr(err, "max-clients"));
	ck_assert_int_eq(run_daemon("--listen", "ftp:x", err, sizeof(err)), 2);
	ck_assert_int_eq(run_daemon("--listen", "tcp:8.8.8.8:1", err, sizeof(err)), 1);
	ck_assert_ptr_nonnull(strstr(err, "--allow-remote"));
	snprintf(conf, sizeof(conf), "%s/bad.conf", dir);
	f = fopen(conf, "w");
	fprintf(f, "# comment\nidle-timeout = 5\nno-such-setting = 1\n");
	fclose(f);
	ck_assert_int_eq(run_daemon("--config", conf, err, sizeof(err)), 1);
	ck_assert_ptr_nonnull(strstr(err, "bad.conf:3"));
}
END_TEST

/* OPEN_IMAGE: a snapshot served decoded, a raw file as itself, pages whole. */
START_TEST(test_open_image)
{
	char path[256];
	uint8_t q[8 + 16 * UPP_MAX_RANGES], *buf, *m, *data = malloc(4 * UPT_PAGE);
	struct upp_read rd = { .n = 1 };
	struct upp_hdr h;
	struct upp_error e;
	uint64_t size;
	long handle;
	int fd = connect_unix();

	m = mmap(NULL, 4 * UPT_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	upt_fill(m, UPT_PAGE, 0, 77);
	memset(m + UPT_PAGE, 0, UPT_PAGE); /* zero; page 2 never touched: absent */
	upt_fill(m + 3 * UPT_PAGE, UPT_PAGE, 3 * UPT_PAGE, 77);
	snprintf(path, sizeof(path), "%s/root/vm.snap", dir);
	ck_assert_int_eq(upager_snapshot_save(m, 4 * UPT_PAGE, path), 0);
	munmap(m, 4 * UPT_PAGE);

	ck_assert(hello(fd) & UPP_FEAT_IMAGE);

	/* A raw file is its own image. */
	ck_assert_int_ge(open_as(fd, UPP_OPEN_IMAGE, "sub/disk.img", &size), 0);
	ck_assert_uint_eq(size, FILE_SIZE + TAIL);

	handle = open_as(fd, UPP_OPEN_IMAGE, "vm.snap", &size);
	ck_assert_int_ge(handle, 0);
	ck_assert_uint_eq(size, 4 * UPT_PAGE); /* the memory, not the file */
	rd.handle = (uint32_t)handle;

	/* Part of a page: refused (a page is checked whole), the connection lives on. */
	rd.r[0] = (struct upp_range){ 1, (uint32_t)UPT_PAGE };
	send_frame(fd, UPP_READ, 9, q, upp_put_read(q, &rd));
	ck_assert_int_eq(recv_frame(fd, &h, &buf), 0);
	ck_assert_uint_eq(h.type, UPP_ERROR);
	ck_assert_int_eq(upp_get_error(buf, h.length, &e), 0);
	ck_assert_uint_eq(e.code, EINVAL);
	free(buf);

	read_image(fd, (uint32_t)handle, 0, 4 * (uint32_t)UPT_PAGE, data);
	ck_assert_int_eq(upt_check_pattern(data, UPT_PAGE, 0, 77), -1);
	ck_assert_int_eq(upt_check_zero(data + UPT_PAGE, 2 * UPT_PAGE), -1);
	ck_assert_int_eq(upt_check_pattern(data + 3 * UPT_PAGE, UPT_PAGE, 3 * UPT_PAGE, 77), -1);
	free(data);
	close(fd);
}
END_TEST

/*
 * Open snapshot page maps: one copy per file however often it is opened, by
 * however many clients; bounded per client (distinct files) and in all.
 */
START_TEST(test_open_image_memory_bound)
{
	const size_t len = 17ull << 30; /* 4.5 M pages: a 68 MiB page map */
	enum { CLIENTS = 20 };
	char path[256], name[16];
	uint64_t size;
	int fd = connect_unix(), many[CLIENTS];
	void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	ck_assert_ptr_ne(m, MAP_FAILED);
	for (int i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/root/big%d.snap", dir, i);
		ck_assert_int_eq(upager_snapshot_save(m, len, path), 0); /* absent: the map only */
	}
	munmap(m, len);
	hello(fd);
	for (int i = 0; i < 8; i++) { /* the same file: held once */
		ck_assert_int_ge(open_as(fd, UPP_OPEN_IMAGE, "big0.snap", &size), 0);
		ck_assert_uint_eq(size, len);
	}
	ck_assert_int_ge(open_as(fd, UPP_OPEN_IMAGE, "big1.snap", &size), 0);
	ck_assert_int_ge(open_as(fd, UPP_OPEN_IMAGE, "big2.snap", &size), 0);
	/* 3 × 68 MiB fit in a client's 256 MiB, a 4th does not. */
	ck_assert_int_eq(open_as(fd, UPP_OPEN_IMAGE, "big3.snap", &size), -ENOMEM);
	/* 20 more clients on big0: one copy in all (a copy each would pass 1 GiB). */
	for (int i = 0; i < CLIENTS; i++) {
		many[i] = connect_unix();
		hello(many[i]);
		ck_assert_int_ge(open_as(many[i], UPP_OPEN_IMAGE, "big0.snap", &size), 0);
	}
	for (int i = 0; i < CLIENTS; i++)
		close(many[i]);
	good_client(connect_unix); /* and the daemon serves on */
	close(fd);
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "big%d.snap", i);
		snprintf(path, sizeof(path), "%s/root/%s", dir, name);
		unlink(path);
	}
}
END_TEST

/* A snapshot saved again over its name: new opens get the new one, open handles keep the old. */
START_TEST(test_open_image_replaced)
{
	uint8_t *m = mmap(NULL, UPT_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *page = malloc(UPT_PAGE);
	int a = connect_unix(), b = connect_unix();
	long ha, ha2, hb;
	uint64_t size;
	char path[256];

	snprintf(path, sizeof(path), "%s/root/vm2.snap", dir);
	upt_fill(m, UPT_PAGE, 0, 1);
	ck_assert_int_eq(upager_snapshot_save(m, UPT_PAGE, path), 0);
	hello(a);
	hello(b);
	ha = open_as(a, UPP_OPEN_IMAGE, "vm2.snap", &size);
	ck_assert_int_ge(ha, 0);
	upt_fill(m, UPT_PAGE, 0, 2);
	ck_assert_int_eq(upager_snapshot_save(m, UPT_PAGE, path), 0);
	hb = open_as(b, UPP_OPEN_IMAGE, "vm2.snap", &size);
	ck_assert_int_ge(hb, 0);
	ha2 = open_as(a, UPP_OPEN_IMAGE, "vm2.snap", &size);
	ck_assert_int_ge(ha2, 0);
	read_image(b, (uint32_t)hb, 0, (uint32_t)UPT_PAGE, page);
	ck_assert_int_eq(upt_check_pattern(page, UPT_PAGE, 0, 2), -1);
	read_image(a, (uint32_t)ha2, 0, (uint32_t)UPT_PAGE, page);
	ck_assert_int_eq(upt_check_pattern(page, UPT_PAGE, 0, 2), -1);
	read_image(a, (uint32_t)ha, 0, (uint32_t)UPT_PAGE, page);
	ck_assert_int_eq(upt_check_pattern(page, UPT_PAGE, 0, 1), -1);
	close(a);
	close(b);
	free(page);
	munmap(m, UPT_PAGE);
	unlink(path);
}
END_TEST

/* Replies within `seconds` or recv fails: a server stuck in an open never answers. */
static void recv_timeout(int fd, int seconds)
{
	struct timeval tv = { .tv_sec = seconds };

	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
}

/* Two pages saved at base, and an incremental snapshot of them at child (parent: base). */
static void save_pair(const char *base, const char *child)
{
	uint8_t *m = mmap(NULL, 2 * UPT_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			  -1, 0);

	ck_assert_ptr_ne(m, MAP_FAILED);
	upt_fill(m, 2 * UPT_PAGE, 0, 5);
	ck_assert_int_eq(upager_snapshot_save(m, 2 * UPT_PAGE, base), 0);
	upt_fill(m, UPT_PAGE, 0, 6); /* page 1 stays the parent's */
	ck_assert_int_eq(upager_snapshot_save_incremental(m, 2 * UPT_PAGE, base, child), 0);
	munmap(m, 2 * UPT_PAGE);
}

/* A FIFO or a device node in the root is refused at once: the server never
 * blocks in its open, and other clients are served. */
START_TEST(test_open_fifo)
{
	char path[256];
	uint64_t size;
	int fd = connect_unix(), other;
	bool nodes;

	snprintf(path, sizeof(path), "%s/root/fifo", dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	snprintf(path, sizeof(path), "%s/root/null", dir);
	nodes = mknod(path, S_IFCHR | 0600, makedev(1, 3)) == 0; /* as root only */
	recv_timeout(fd, 5);
	hello(fd);
	ck_assert_int_eq(open_obj(fd, "fifo", &size), -EINVAL);
	ck_assert_int_eq(open_as(fd, UPP_OPEN_IMAGE, "fifo", &size), -EINVAL);
	if (nodes)
		ck_assert_int_eq(open_obj(fd, "null", &size), -EINVAL);
	other = connect_unix();
	recv_timeout(other, 5);
	hello(other);
	close(other);
	close(fd);
	good_client(connect_unix);
}
END_TEST

/* A snapshot whose parent's name is a FIFO: refused at once, not a hang. */
START_TEST(test_open_image_parent_fifo)
{
	char base[256], child[256];
	uint64_t size;
	int fd = connect_unix();

	snprintf(base, sizeof(base), "%s/root/base.snap", dir);
	snprintf(child, sizeof(child), "%s/root/child.snap", dir);
	save_pair(base, child);
	ck_assert_int_eq(unlink(base), 0);
	ck_assert_int_eq(mkfifo(base, 0600), 0);
	recv_timeout(fd, 5);
	hello(fd);
	ck_assert_int_eq(open_as(fd, UPP_OPEN_IMAGE, "child.snap", &size), -EBADMSG);
	close(fd);
	good_client(connect_unix);
}
END_TEST

/* An incremental snapshot's parent is found beside it, below the root: in
 * a subdirectory it works; a parent name that is a symlink out of the root
 * is refused, and nothing outside is read. */
START_TEST(test_open_image_parent_beneath)
{
	char base[256], child[256], link[256];
	uint8_t *page = malloc(2 * UPT_PAGE);
	uint64_t size;
	long h;
	int fd = connect_unix();

	snprintf(base, sizeof(base), "%s/root/sub/base.snap", dir);
	snprintf(child, sizeof(child), "%s/root/sub/child.snap", dir);
	save_pair(base, child);
	hello(fd);
	h = open_as(fd, UPP_OPEN_IMAGE, "sub/child.snap", &size);
	ck_assert_int_ge(h, 0);
	read_image(fd, (uint32_t)h, 0, 2 * (uint32_t)UPT_PAGE, page);
	ck_assert_int_eq(upt_check_pattern(page, UPT_PAGE, 0, 6), -1);
	ck_assert_int_eq(upt_check_pattern(page + UPT_PAGE, UPT_PAGE, UPT_PAGE, 5), -1);

	/* The pair saved outside the root, the child moved in, its parent's
	 * name a symlink out. */
	snprintf(base, sizeof(base), "%s/out.snap", dir);
	snprintf(child, sizeof(child), "%s/child2.snap", dir);
	save_pair(base, child);
	snprintf(link, sizeof(link), "%s/root/child2.snap", dir);
	ck_assert_int_eq(rename(child, link), 0);
	ck_assert_int_eq(open_as(fd, UPP_OPEN_IMAGE, "child2.snap", &size), -ENOENT);
	snprintf(link, sizeof(link), "%s/root/out.snap", dir);
	ck_assert_int_eq(symlink("../out.snap", link), 0);
	ck_assert_int_lt(open_as(fd, UPP_OPEN_IMAGE, "child2.snap", &size), 0);
	close(fd);
	free(page);
}
END_TEST

/* How many clients the daemon has, by STATS on fd (fd itself included). */
static unsigned daemon_clients(int fd)
{
	struct upp_hdr h;
	unsigned n = 0;
	uint8_t *buf;

	send_frame(fd, UPP_STATS, 7, NULL, 0);
	ck_assert_int_eq(recv_frame(fd, &h, &buf), 0);
	ck_assert_uint_eq(h.type, UPP_STATS | UPP_REPLY);
	buf[h.length] = '\0';
	ck_assert_int_eq(sscanf((char *)buf, "clients=%u", &n), 1);
	free(buf);
	return n;
}

/* Clients that ask for a lot and never read are closed once their replies
 * make no progress for --send-timeout seconds, their memory freed. */
START_TEST(test_send_timeout)
{
	enum { STUCK = 3 };
	int stuck[STUCK], watch;
	unsigned n = 0;
	uint64_t size;

	upt_daemon_kill(daemon_pid);
	daemon_pid = start_daemon("--send-timeout=2", "--idle-timeout=2");
	for (int k = 0; k < STUCK; k++) {
		uint8_t p[8 + 16];
		long hd;

		stuck[k] = connect_unix();
		hello(stuck[k]);
		hd = open_obj(stuck[k], "sub/disk.img", &size);
		ck_assert_int_ge(hd, 0);
		/* 16 MiB: the output limit, so that nothing waits unparsed in
		 * its receive buffer (the read timeout does not apply). */
		for (uint32_t id = 0; id < 16; id++) {
			struct upp_read rd = { .handle = (uint32_t)hd, .n = 1, .r = { { 0, 1 << 20 } } };
			send_frame(stuck[k], UPP_READ, id, p, upp_put_read(p, &rd));
		}
	}
	watch = connect_unix();
	recv_timeout(watch, 5);
	hello(watch);
	for (int i = 0; i < 60 && (n = daemon_clients(watch)) > 1; i++)
		usleep(200 * 1000); /* 12 s; the watcher's own STATS keep it from idling */
	ck_assert_msg(n == 1, "%u clients still connected 12 s after they stopped reading", n - 1);
	close(watch);
	for (int k = 0; k < STUCK; k++)
		close(stuck[k]);
	good_client(connect_unix);
}
END_TEST

static long daemon_status_kib(const char *field)
{
	char path[64], line[256];
	size_t len = strlen(field);
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)daemon_pid);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, field, len) && line[len] == ':')
			kib = atol(line + len + 1);
	if (f)
		fclose(f);
	return kib;
}

/*
 * A crafted snapshot whose header claims a 1.5 GiB page map (a sparse file
 * that passes every size check): refused by its header's page count against
 * the page-map budget, before anything is allocated or read.
 */
START_TEST(test_open_image_map_budget)
{
	const uint64_t npages = 3ull << 25, map_off = 1 << 20; /* 16 bytes each: 1.5 GiB */
	uint8_t hdr[4096];
	char path[256];
	long before, after, ret;
	uint64_t size;
	int fd = connect_unix(), f;
	void *m = mmap(NULL, UPT_PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	snprintf(path, sizeof(path), "%s/root/huge.snap", dir);
	ck_assert_int_eq(upager_snapshot_save(m, UPT_PAGE, path), 0); /* one absent page */
	munmap(m, UPT_PAGE);
	f = open(path, O_RDWR);
	ck_assert_int_eq(pread(f, hdr, sizeof(hdr), 0), sizeof(hdr));
	put64(hdr + 16, npages * UPT_PAGE);
	put64(hdr + 24, npages);
	put64(hdr + 48, map_off);
	memset(hdr + 64, 0, 4);
	put32(hdr + 64, upp_crc32c(0, hdr, sizeof(hdr)));
	ck_assert_int_eq(pwrite(f, hdr, sizeof(hdr), 0), sizeof(hdr));
	ck_assert_int_eq(ftruncate(f, (off_t)(map_off + npages * 16)), 0);
	close(f);

	hello(fd);
	before = daemon_status_kib("VmHWM");
	ret = open_as(fd, UPP_OPEN_IMAGE, "huge.snap", &size);
	after = daemon_status_kib("VmHWM");
	printf("note: test_open_image_map_budget: daemon VmHWM %ld KiB before, %ld KiB after\n",
	       before, after);
	ck_assert_msg(after < before + 64 * 1024, "VmHWM %ld KiB -> %ld KiB", before, after);
	ck_assert_int_eq(ret, -ENOMEM);
	close(fd);
	unlink(path);
	good_client(connect_unix);
}
END_TEST

/* The daemon's open descriptors. */
static int daemon_fds(void)
{
	char path[64];
	struct dirent *e;
	int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)daemon_pid);
	d = opendir(path);
	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/*
 * The jail without openat2 (UPAGER_DISABLE=openat2, as on kernels before
 * 5.6 or under seccomp profiles that refuse it): the same refusals, no
 * symlinks at all, and no descriptor left behind by a refused path.
 */
START_TEST(test_jail_fallback)
{
	char path[256];
	uint64_t size;
	int fd, base;

	upt_daemon_kill(daemon_pid);
	setenv("UPAGER_DISABLE", "openat2", 1);
	daemon_pid = start_daemon(NULL, NULL);
	unsetenv("UPAGER_DISABLE");
	snprintf(path, sizeof(path), "%s/root/inside", dir);
	ck_assert_int_eq(symlink("sub/disk.img", path), 0);
	snprintf(path, sizeof(path), "%s/root/fifo", dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	base = daemon_fds();
	fd = connect_unix();
	recv_timeout(fd, 5);
	hello(fd);
	ck_assert_int_eq(open_obj(fd, "inside", &size), -EACCES); /* openat2 would follow it */
	for (int i = 0; i < 300; i++)
		ck_assert_int_eq(open_obj(fd, "/etc/passwd", &size), -EACCES);
	ck_assert_int_eq(open_obj(fd, "../secret", &size), -EACCES);
	ck_assert_int_eq(open_obj(fd, "sub/../../secret", &size), -EACCES);
	ck_assert_int_eq(open_obj(fd, "escape", &size), -EACCES);
	ck_assert_int_eq(open_obj(fd, "nonexistent", &size), -ENOENT);
	ck_assert_int_eq(open_obj(fd, "sub", &size), -EINVAL);
	ck_assert_int_eq(open_obj(fd, "fifo", &size), -EINVAL);
	ck_assert_int_ge(open_obj(fd, "sub/disk.img", &size), 0);
	close(fd);
	for (int i = 0; i < 50 && daemon_fds() > base; i++)
		usleep(100 * 1000);
	ck_assert_msg(daemon_fds() <= base, "%d descriptors before the client, %d after it left",
		      base, daemon_fds());
	good_client(connect_unix);
}
END_TEST

/* The daemon's descriptor open on path, or -1. */
static int daemon_fd_on(const char *path)
{
	char dpath[64], fpath[320], target[256];
	struct dirent *e;
	int found = -1;
	DIR *d;

	snprintf(dpath, sizeof(dpath), "/proc/%d/fd", (int)daemon_pid);
	d = opendir(dpath);
	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d))) {
		ssize_t n;

		snprintf(fpath, sizeof(fpath), "%s/%s", dpath, e->d_name);
		n = readlink(fpath, target, sizeof(target) - 1);
		if (n > 0 && (target[n] = '\0', !strcmp(target, path)))
			found = atoi(e->d_name);
	}
	closedir(d);
	return found;
}

/* SIGHUP puts the new log file on the old one's descriptor number in one
 * step (dup3), so that no other thread's line can reach a descriptor that
 * was closed and reused in between. */
START_TEST(test_sighup_log_same_fd)
{
	char log[128], moved[128], flag[160];
	int before;

	snprintf(log, sizeof(log), "%s/upagerd.log", dir);
	snprintf(moved, sizeof(moved), "%s/upagerd.log.1", dir);
	snprintf(flag, sizeof(flag), "--log-file=%s", log);
	upt_daemon_kill(daemon_pid);
	daemon_pid = start_daemon(flag, "--log-level=info");
	before = daemon_fd_on(log);
	ck_assert_int_ge(before, 0);
	ck_assert_int_eq(rename(log, moved), 0);
	ck_assert_int_eq(kill(daemon_pid, SIGHUP), 0);
	for (int i = 0; i < 200 && daemon_fd_on(log) < 0; i++)
		usleep(10000);
	ck_assert_int_eq(daemon_fd_on(log), before);
	ck_assert_int_eq(daemon_fd_on(moved), -1); /* the old file is let go */
	good_client(connect_unix);
}
END_TEST

/*
 * Under a seccomp profile that answers openat2 with EPERM (as container
 * runtimes that do not know it do), the daemon takes the jail's fallback
 * instead of refusing every OPEN. The filter is this test process's (Check
 * forks one per test), inherited by the daemon it starts.
 */
START_TEST(test_jail_openat2_eperm)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_openat2, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
	char path[256];
	uint64_t size;
	int fd;

	upt_daemon_kill(daemon_pid);
	ck_assert_int_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	ck_assert_int_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
	daemon_pid = start_daemon(NULL, NULL);
	snprintf(path, sizeof(path), "%s/root/inside", dir);
	ck_assert_int_eq(symlink("sub/disk.img", path), 0);
	fd = connect_unix();
	hello(fd);
	ck_assert_int_ge(open_obj(fd, "sub/disk.img", &size), 0);
	ck_assert_int_eq(open_obj(fd, "inside", &size), -EACCES); /* the fallback's rule */
	ck_assert_int_eq(open_obj(fd, "../secret", &size), -EACCES);
	close(fd);
	good_client(connect_unix);
}
END_TEST

/*
 * A client that pipelines more than its output limit and reads its replies
 * slowly, but steadily: its frames wait in the receive buffer while it is
 * paused, which is the server's doing, not a frame that fails to arrive,
 * so --read-timeout does not close it.
 */
START_TEST(test_slow_reader_kept)
{
	enum { READS = 40 };
	uint8_t p[8 + 16], *buf;
	uint64_t size;
	long hd;
	int fd;

	upt_daemon_kill(daemon_pid);
	daemon_pid = start_daemon("--read-timeout=1", NULL);
	fd = connect_unix();
	recv_timeout(fd, 5);
	hello(fd);
	hd = open_obj(fd, "sub/disk.img", &size);
	ck_assert_int_ge(hd, 0);
	for (uint32_t id = 0; id < READS; id++) {
		struct upp_read rd = { .handle = (uint32_t)hd, .n = 1, .r = { { 0, 1 << 20 } } };
		send_frame(fd, UPP_READ, id, p, upp_put_read(p, &rd));
	}
	for (int k = 0; k < READS; k++) { /* 4 s in all */
		struct upp_hdr h;

		usleep(100 * 1000);
		ck_assert_msg(recv_frame(fd, &h, &buf) == 0, "closed after %d of %d replies", k,
			      READS);
		ck_assert_uint_eq(h.type, UPP_READ | UPP_REPLY);
		free(buf);
	}
	close(fd);
}
END_TEST

/*
 * The served root on a mount detached after start (umount -l): the
 * kernel names the daemon's files "/child.snap" in /proc, so a parent
 * found by re-walking that name was looked up in the real "/", outside the
 * root. Parents are opened beside the child through the jail instead. In a
 * mount namespace of this test process's own (the daemon inherits it).
 */
START_TEST(test_open_image_parent_detached_root)
{
	char root[128], name[64], base[256], child[256], escaped[128], cmd[1200];
	uint64_t size;
	long ret;
	int fd;

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		printf("SKIP test_open_image_parent_detached_root: no mount namespace (%s)\n",
		       strerror(errno));
		return;
	}
	snprintf(root, sizeof(root), "%s/root", dir);
	snprintf(name, sizeof(name), "upager-escape-%d.snap", (int)getpid());
	snprintf(base, sizeof(base), "%s/%s", dir, name);
	snprintf(child, sizeof(child), "%s/child.snap", dir);
	snprintf(escaped, sizeof(escaped), "/%s", name);
	save_pair(base, child);
	upt_daemon_kill(daemon_pid);
	ck_assert_int_eq(mount("tmpfs", root, "tmpfs", 0, "size=1m"), 0);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s/' && cp '%s' '%s'", child, root, base, escaped);
	ck_assert_int_eq(system(cmd), 0);
	daemon_pid = start_daemon(NULL, NULL);
	ck_assert_int_eq(umount2(root, MNT_DETACH), 0);
	fd = connect_unix();
	hello(fd);
	/* The parent is not beside the child in the root; one is in "/". */
	ret = open_as(fd, UPP_OPEN_IMAGE, "child.snap", &size);
	unlink(escaped);
	ck_assert_int_eq(ret, -ENOENT);
	close(fd);
}
END_TEST


/*
 * A valid snapshot of npages absent pages whose map is all there is to it,
 * sparse on disk (a hole reads as zeros, the map of absent pages): its map
 * costs the reader npages * 16 bytes read, checksummed and walked. With
 * parent, an incremental snapshot of a parent by that name that is not
 * there: the map is read and checked before the parent is looked for.
 */
static void craft_map_snap(const char *path, uint64_t npages, const char *parent)
{
	static const uint8_t zeros[1 << 16];
	uint64_t map_len = npages * 16;
	uint8_t hdr[4096] = { 0 };
	uint32_t crc = 0;
	int f;

	for (uint64_t done = 0; done < map_len; done += sizeof(zeros))
		crc = upp_crc32c(crc, zeros, sizeof(zeros));
	memcpy(hdr, "UPGSNAP1", 8);
	put32(hdr + 8, 1);
	put32(hdr + 12, (uint32_t)UPT_PAGE);
	put64(hdr + 16, npages * UPT_PAGE);
	put64(hdr + 24, npages);
	put64(hdr + 40, 4096); /* data_off; nothing stored */
	put64(hdr + 48, 4096); /* the map */
	put32(hdr + 60, crc);
	if (parent) {
		put32(hdr + 56, 1);
		hdr[76] = (uint8_t)strlen(parent);
		memcpy(hdr + 128, parent, strlen(parent));
	}
	put32(hdr + 64, upp_crc32c(0, hdr, sizeof(hdr)));
	f = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(f, 0);
	ck_assert_int_eq(pwrite(f, hdr, sizeof(hdr), 0), sizeof(hdr));
	ck_assert_int_eq(ftruncate(f, (off_t)(4096 + map_len)), 0);
	close(f);
}

/*
 * Clients that keep the server loading big page maps (OPEN_IMAGE then
 * CLOSE of a snapshot with a 240 MiB map, again and again; OPEN_IMAGE of
 * one whose parent is missing) do not stall anybody else: another client's
 * HELLO, OPEN and READ are answered within 2 s, and a client reading its
 * replies as fast as it can is never closed by --send-timeout meanwhile.
 */
START_TEST(test_open_image_no_stall)
{
	enum { PAIRS = 32, ORPHANS = 64, READS = 24 };
	const uint64_t npages = 15ull << 20; /* a 240 MiB page map */
	struct upp_range r[1] = { { 1 << 20, 65536 } };
	uint8_t q[2 + UPP_MAX_PATH], p[8 + 16], hb[4], *buf;
	char path[256];
	int reader, loop, orphan, other;
	struct upp_hdr h;
	uint64_t size;
	struct timeval t0, t1;
	long hd;

	snprintf(path, sizeof(path), "%s/root/bigmap.snap", dir);
	craft_map_snap(path, npages, NULL);
	snprintf(path, sizeof(path), "%s/root/orphan.snap", dir);
	craft_map_snap(path, npages, "gone.snap");
	upt_daemon_kill(daemon_pid);
	daemon_pid = start_daemon("--send-timeout=3", NULL);

	/* Its replies queued when the others start: 24 MiB, past its 16 MiB limit. */
	reader = connect_unix();
	hello(reader);
	hd = open_obj(reader, "sub/disk.img", &size);
	ck_assert_int_ge(hd, 0);
	for (uint32_t id = 0; id < READS; id++) {
		struct upp_read rd = { .handle = (uint32_t)hd, .n = 1, .r = { { 0, 1 << 20 } } };
		send_frame(reader, UPP_READ, id, p, upp_put_read(p, &rd));
	}
	loop = connect_unix();
	hello(loop);
	put32(hb, 0); /* the handle each OPEN_IMAGE gets: the first free one */
	for (uint32_t i = 0; i < PAIRS; i++) {
		send_frame(loop, UPP_OPEN_IMAGE, 100 + i, q, upp_put_open(q, "bigmap.snap", 11));
		send_frame(loop, UPP_CLOSE, 200 + i, hb, 4);
	}
	orphan = connect_unix();
	hello(orphan);
	for (uint32_t i = 0; i < ORPHANS; i++)
		send_frame(orphan, UPP_OPEN_IMAGE, 300 + i, q, upp_put_open(q, "orphan.snap", 11));
	usleep(200 * 1000);

	gettimeofday(&t0, NULL);
	other = connect_unix();
	recv_timeout(other, 2);
	hello(other);
	hd = open_obj(other, "sub/disk.img", &size);
	ck_assert_int_ge(hd, 0);
	read_check(other, (uint32_t)hd, 9, r, 1);
	gettimeofday(&t1, NULL);
	printf("note: test_open_image_no_stall: another client served in %ld ms\n",
	       (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000));
	close(other);

	recv_timeout(reader, 20);
	for (int k = 0; k < READS; k++) {
		ck_assert_msg(recv_frame(reader, &h, &buf) == 0, "reader closed after %d of %d replies",
			      k, READS);
		ck_assert_uint_eq(h.type, UPP_READ | UPP_REPLY);
		free(buf);
	}
	close(reader);
	recv_timeout(loop, 40);
	for (int k = 0; k < 2 * PAIRS; k++) {
		ck_assert_int_eq(recv_frame(loop, &h, &buf), 0);
		ck_assert_uint_eq(h.type, (k % 2 ? UPP_CLOSE : UPP_OPEN_IMAGE) | UPP_REPLY);
		free(buf);
	}
	close(loop);
	recv_timeout(orphan, 40);
	for (int k = 0; k < ORPHANS; k++) {
		struct upp_error e;

		ck_assert_int_eq(recv_frame(orphan, &h, &buf), 0);
		ck_assert_uint_eq(h.type, UPP_ERROR);
		ck_assert_int_eq(upp_get_error(buf, h.length, &e), 0);
		ck_assert_uint_eq(e.code, ENOENT);
		free(buf);
	}
	close(orphan);
	snprintf(path, sizeof(path), "%s/root/bigmap.snap", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/root/orphan.snap", dir);
	unlink(path);
}
END_TEST

/* Whether the suite runs with the jail's fallback (make check-fallback):
 * symlinks are then refused, always. */
static bool no_openat2(void)
{
	const char *e = getenv("UPAGER_DISABLE");

	return e && strstr(e, "openat2");
}

/*
 * A file whose open fails with EPERM (an on-access scanner's verdict: here
 * fanotify FAN_DENY, in a child of this test) is that file's answer: the
 * daemon keeps openat2, and symlinks within the root still work.
 */
START_TEST(test_jail_eperm_one_file)
{
	char path[256], link[256];
	int pfd[2], fd;
	uint64_t size;
	pid_t denier;
	char c;

	snprintf(path, sizeof(path), "%s/root/flagged", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	close(fd);
	snprintf(link, sizeof(link), "%s/root/inside", dir);
	ck_assert_int_eq(symlink("sub/disk.img", link), 0);
	ck_assert_int_eq(pipe(pfd), 0);
	denier = fork();
	ck_assert_int_ge(denier, 0);
	if (denier == 0) {
		int fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, O_RDONLY);

		if (fan < 0 || fanotify_mark(fan, FAN_MARK_ADD, FAN_OPEN_PERM, AT_FDCWD, path) < 0)
			_exit(1);
		if (write(pfd[1], "r", 1) != 1)
			_exit(1);
		for (;;) {
			char ev[4096];
			ssize_t n = read(fan, ev, sizeof(ev));
			struct fanotify_event_metadata *m = (void *)ev;

			for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
				struct fanotify_response resp = { m->fd, FAN_DENY };

				if (write(fan, &resp, sizeof(resp)) < 0)
					_exit(1);
				close(m->fd);
			}
		}
	}
	close(pfd[1]);
	if (read(pfd[0], &c, 1) != 1) {
		close(pfd[0]);
		upt_daemon_kill(denier);
		printf("SKIP test_jail_eperm_one_file: no fanotify permission events\n");
		return;
	}
	close(pfd[0]);
	fd = connect_unix();
	recv_timeout(fd, 5);
	hello(fd);
	if (no_openat2())
		ck_assert_int_eq(open_obj(fd, "inside", &size), -EACCES);
	else
		ck_assert_int_ge(open_obj(fd, "inside", &size), 0);
	ck_assert_int_eq(open_obj(fd, "flagged", &size), -EPERM);
	upt_daemon_kill(denier);
	if (no_openat2())
		ck_assert_int_eq(open_obj(fd, "inside", &size), -EACCES);
	else
		ck_assert_int_ge(open_obj(fd, "inside", &size), 0);
	close(fd);
	good_client(connect_unix);
}
END_TEST

/*
 * An incremental snapshot opened through a symlink in another directory
 * (latest.snap -> snaps/day2.snap) finds its parent beside the real file,
 * as the library does, whether or not anyone has the real file open: on a
 * cold daemon, and with it opened first by its own name. (Without openat2:
 * refused in both cases.)
 */
START_TEST(test_open_image_through_symlink)
{
	char base[256], child[256], link[256];
	uint8_t *page = malloc(2 * UPT_PAGE);
	uint64_t size;
	long h;
	int fd;

	snprintf(base, sizeof(base), "%s/root/snaps", dir);
	ck_assert_int_eq(mkdir(base, 0700), 0);
	snprintf(base, sizeof(base), "%s/root/snaps/base.snap", dir);
	snprintf(child, sizeof(child), "%s/root/snaps/day2.snap", dir);
	save_pair(base, child);
	snprintf(link, sizeof(link), "%s/root/latest.snap", dir);
	ck_assert_int_eq(symlink("snaps/day2.snap", link), 0);
	for (int order = 0; order < 2; order++) {
		upt_daemon_kill(daemon_pid);
		daemon_pid = start_daemon(NULL, NULL);
		fd = connect_unix();
		hello(fd);
		if (order == 1)
			ck_assert_int_ge(open_as(fd, UPP_OPEN_IMAGE, "snaps/day2.snap", &size), 0);
		h = open_as(fd, UPP_OPEN_IMAGE, "latest.snap", &size);
		if (no_openat2()) { /* refused, whatever is open */
			ck_assert_int_eq(h, -EACCES);
			close(fd);
			continue;
		}
		ck_assert_msg(h >= 0, "latest.snap (%s): %s", order ? "real file open" : "cold",
			      strerror((int)-h));
		read_image(fd, (uint32_t)h, 0, 2 * (uint32_t)UPT_PAGE, page);
		ck_assert_int_eq(upt_check_pattern(page, UPT_PAGE, 0, 6), -1);
		ck_assert_int_eq(upt_check_pattern(page + UPT_PAGE, UPT_PAGE, UPT_PAGE, 5), -1);
		close(fd);
	}
	free(page);
}
END_TEST

/*
 * SIGHUP with a FIFO, then a symlink, where the log file was: neither is
 * opened (the server does not block in the FIFO's open, nor write where
 * the symlink points); the old log is kept and says why.
 */
START_TEST(test_sighup_log_not_fifo_or_symlink)
{
	char log[128], moved[128], target[128], flag[160], text[8192];
	ssize_t n;
	int fd, f;

	snprintf(log, sizeof(log), "%s/upagerd.log", dir);
	snprintf(moved, sizeof(moved), "%s/upagerd.log.1", dir);
	snprintf(target, sizeof(target), "%s/elsewhere", dir);
	snprintf(flag, sizeof(flag), "--log-file=%s", log);
	upt_daemon_kill(daemon_pid);
	daemon_pid = start_daemon(flag, "--log-level=info");
	ck_assert_int_eq(rename(log, moved), 0);
	ck_assert_int_eq(mkfifo(log, 0600), 0);
	ck_assert_int_eq(kill(daemon_pid, SIGHUP), 0);
	usleep(200 * 1000);
	fd = connect_unix();
	recv_timeout(fd, 5);
	hello(fd);
	close(fd);
	ck_assert_int_eq(unlink(log), 0);
	ck_assert_int_eq(symlink(target, log), 0);
	ck_assert_int_eq(kill(daemon_pid, SIGHUP), 0);
	usleep(200 * 1000);
	good_client(connect_unix);
	ck_assert_int_eq(access(target, F_OK), -1);
	ck_assert_int_ge(daemon_fd_on(moved), 0); /* still logging there */
	f = open(moved, O_RDONLY);
	n = read(f, text, sizeof(text) - 1);
	close(f);
	text[n > 0 ? n : 0] = '\0';
	ck_assert_msg(strstr(text, "cannot reopen the log"), "log: %s", text);
}
END_TEST

/*
 * Started with descriptors 0-2 closed: the log file does not take one of
 * them (for stderr), so a SIGHUP lets the rotated file go; 0-2 are
 * /dev/null.
 */
START_TEST(test_log_std_fds_closed)
{
	char log[128], moved[128], root[128], listen[160], ready[64], target[64], link[64];
	int pfd[2];
	ssize_t n = 0;

	snprintf(log, sizeof(log), "%s/upagerd.log", dir);
	snprintf(moved, sizeof(moved), "%s/upagerd.log.1", dir);
	snprintf(root, sizeof(root), "%s/root", dir);
	snprintf(listen, sizeof(listen), "unix:%s", unix_path);
	upt_daemon_kill(daemon_pid);
	ck_assert_int_eq(pipe(pfd), 0);
	daemon_pid = fork();
	ck_assert_int_ge(daemon_pid, 0);
	if (daemon_pid == 0) {
		if (dup2(pfd[1], 9) < 0)
			_exit(127);
		close(0);
		close(1);
		close(2);
		execl("daemon/upagerd", "upagerd", "serve", "--root", root, "--listen", listen,
		      "--log-file", log, "--ready-fd", "9", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	for (int tries = 0; tries < 500 && n <= 0; tries++) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		if (poll(&p, 1, 10) > 0)
			n = read(pfd[0], ready, sizeof(ready) - 1);
	}
	close(pfd[0]);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(rename(log, moved), 0);
	ck_assert_int_eq(kill(daemon_pid, SIGHUP), 0);
	for (int i = 0; i < 200 && daemon_fd_on(log) < 0; i++)
		usleep(10000);
	ck_assert_int_ge(daemon_fd_on(log), 0);
	ck_assert_msg(daemon_fd_on(moved) == -1, "the rotated log is still open on fd %d",
		      daemon_fd_on(moved));
	for (int i = 0; i < 3; i++) {
		snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)daemon_pid, i);
		n = readlink(link, target, sizeof(target) - 1);
		ck_assert_int_gt(n, 0);
		target[n] = '\0';
		ck_assert_str_eq(target, "/dev/null");
	}
	good_client(connect_unix);
}
END_TEST

/*
 * Clients that ask for much and read slowly (here: never) cannot take the
 * daemon's memory together: past --queue-limit, the READs of clients
 * holding queued replies wait, whatever the number of clients.
 */
START_TEST(test_queue_limit)
{
	enum { HOLDERS = 8 };
	int holders[HOLDERS];
	uint8_t p[8 + 16];
	uint64_t size;
	long before, rss;

	upt_daemon_kill(daemon_pid);
	daemon_pid = start_daemon("--queue-limit=16", NULL);
	good_client(connect_unix);
	before = daemon_rss_kib();
	for (int k = 0; k < HOLDERS; k++) {
		long hd;

		holders[k] = connect_unix();
		hello(holders[k]);
		hd = open_obj(holders[k], "sub/disk.img", &size);
		ck_assert_int_ge(hd, 0);
		for (uint32_t id = 0; id < 16; id++) {
			struct upp_read rd = { .handle = (uint32_t)hd, .n = 1, .r = { { 0, 1 << 20 } } };
			send_frame(holders[k], UPP_READ, id, p, upp_put_read(p, &rd));
		}
	}
	usleep(500 * 1000);
	rss = daemon_rss_kib();
	printf("note: test_queue_limit: daemon RSS %ld KiB -> %ld KiB with %d clients holding\n",
	       before, rss, HOLDERS);
	/* 16 MiB (and a quarter more for clients holding nothing, and one
	 * READ), not 8 x 16 MiB. */
	ck_assert_msg(rss - before < 40 * 1024, "daemon RSS %ld KiB -> %ld KiB", before, rss);
	for (int k = 0; k < HOLDERS; k++)
		close(holders[k]);
	good_client(connect_unix);
}
END_TEST

/* An OPEN: the ERROR's code (negated) and message, or the handle. */
static long open_msg(int fd, const char *path, char *msg, size_t msglen)
{
	uint8_t p[2 + UPP_MAX_PATH], *buf;
	struct upp_hdr h;
	long ret = 0;

	msg[0] = '\0';
	send_frame(fd, UPP_OPEN, 6, p, upp_put_open(p, path, (uint16_t)strlen(path)));
	ck_assert_int_eq(recv_frame(fd, &h, &buf), 0);
	if (h.type == UPP_ERROR) {
		struct upp_error e;

		ck_assert_int_eq(upp_get_error(buf, h.length, &e), 0);
		snprintf(msg, msglen, "%.*s", (int)e.msg_len, e.msg);
		ret = -(long)e.code;
	}
	free(buf);
	return ret;
}

/*
 * The jail with and without openat2 agrees: "file/" is no directory
 * (ENOTDIR), and a symlink the fallback refuses is said to be one, not to
 * lead outside the root.
 */
START_TEST(test_jail_modes_agree)
{
	char path[256], msg[256];
	int fd;

	snprintf(path, sizeof(path), "%s/root/inside", dir);
	ck_assert_int_eq(symlink("sub/disk.img", path), 0);
	for (int mode = 0; mode < 2; mode++) {
		upt_daemon_kill(daemon_pid);
		if (mode)
			setenv("UPAGER_DISABLE", "openat2", 1);
		daemon_pid = start_daemon(NULL, NULL);
		unsetenv("UPAGER_DISABLE");
		fd = connect_unix();
		hello(fd);
		ck_assert_msg(open_msg(fd, "sub/disk.img/", msg, sizeof(msg)) == -ENOTDIR,
			      "%s: \"sub/disk.img/\": %s", mode ? "fallback" : "openat2", msg);
		ck_assert_int_eq(open_msg(fd, "../secret", msg, sizeof(msg)), -EACCES);
		ck_assert_str_eq(msg, "outside the served root");
		if (mode) {
			ck_assert_int_eq(open_msg(fd, "inside", msg, sizeof(msg)), -EACCES);
			ck_assert_msg(strstr(msg, "symlink"), "symlink refused: \"%s\"", msg);
		}
		close(fd);
	}
}
END_TEST

/* --help says who must prove the secret: TCP clients, and any that ask. */
START_TEST(test_help_secret)
{
	char out[8192], cmd[64];
	FILE *f;
	size_t n;

	snprintf(cmd, sizeof(cmd), "daemon/upagerd --help");
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	pclose(f);
	out[n] = '\0';
	ck_assert_msg(strstr(out, "Unix-socket clients that ask"), "%s", out);
}
END_TEST

/* `upagerd serve --help` and `upagerd handle --help` print the usage and
 * succeed, as `upagerd --help` does (they said "unrecognized option" and
 * exited 2). */
START_TEST(test_help_after_mode)
{
	static const char *const modes[] = { "serve", "handle" };

	for (size_t i = 0; i < 2; i++) {
		char out[8192], cmd[64];
		FILE *f;
		size_t n;
		int status;

		snprintf(cmd, sizeof(cmd), "daemon/upagerd %s --help 2>&1", modes[i]);
		f = popen(cmd, "r");
		ck_assert_ptr_nonnull(f);
		n = fread(out, 1, sizeof(out) - 1, f);
		status = pclose(f);
		out[n] = '\0';
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: status %#x: %s",
			      modes[i], status, out);
		ck_assert_msg(strstr(out, "usage: upagerd serve") && !strstr(out, "unrecognized"),
			      "%s: %s", modes[i], out);
	}
}
END_TEST

/*
 * A planned restart of serve (SIGTERM, then the new daemon): the replies to
 * READs already received are all sent, every byte right, before it exits;
 * it accepts nobody meanwhile. Here the client reads them only after the
 * signal, so they are still queued in the daemon when it comes (the
 * drain in serve_loop.c; it gives up after 10 s).
 */
START_TEST(test_sigterm_drains_reads)
{
	int fd = connect_unix(), status;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint8_t p[8 + 16];
	uint64_t size;
	long hd;
	int s2;

	hello(fd);
	hd = open_obj(fd, "sub/disk.img", &size);
	for (uint32_t id = 0; id < 64; id++) {
		struct upp_read rd = { .handle = (uint32_t)hd, .n = 1, .r = { { id * 40960, 40960 } } };
		send_frame(fd, UPP_READ, 2000 + id, p, upp_put_read(p, &rd));
	}
	usleep(100 * 1000);
	ck_assert_int_eq(kill(daemon_pid, SIGTERM), 0);
	usleep(300 * 1000);
	ck_assert_int_eq(waitpid(daemon_pid, &status, WNOHANG), 0); /* waits for our replies */
	/* A new client is refused meanwhile (closed at once, if its connect got
	 * through before the listener's last accept was cancelled). */
	s2 = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	strcpy(sa.sun_path, unix_path);
	ck_assert(connect(s2, (struct sockaddr *)&sa, sizeof(sa)) != 0 || closed_by_server(s2));
	close(s2);
	for (int k = 0; k < 64; k++) {
		uint32_t wanted = 40960, got;
		const uint8_t *data;
		struct upp_hdr h;
		uint8_t *buf;

		ck_assert_int_eq(recv_frame(fd, &h, &buf), 0);
		ck_assert(h.id >= 2000 && h.id < 2064);
		ck_assert_int_eq(upp_get_data(buf, h.length, 1, &wanted, &got, &data), 0);
		ck_assert_uint_eq(got, 40960);
		ck_assert_int_eq(upt_check_pattern(data, got, (h.id - 2000) * 40960ull, 77), -1);
		free(buf);
	}
	close(fd);
	ck_assert_int_eq(waitpid(daemon_pid, &status, 0), daemon_pid);
	daemon_pid = 0;
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("daemon");
	TCase *tc = upt_tcase(s, "upagerd");

	tcase_add_checked_fixture(tc, setup, teardown);
	upt_add(tc, test_end_to_end_unix_and_tcp, 0, "");
	upt_add(tc, test_pipelining, 0, "");
	upt_add(tc, test_64_clients, 0, "");
	upt_add(tc, test_hostile_clients, 0, "");
	upt_add(tc, test_slow_client, 0, "");
	upt_add(tc, test_timeouts, 0, "");
	upt_add(tc, test_sigterm, 0, "");
	upt_add(tc, test_auth_required, 0, "");
	upt_add(tc, test_sighup_reopens_log, 0, "");
	upt_add(tc, test_bad_config, 0, "");
	upt_add(tc, test_open_image, 0, "");
	upt_add(tc, test_open_image_memory_bound, 0, "");
	upt_add(tc, test_open_image_replaced, 0, "");
	upt_add(tc, test_open_fifo, 0, "");
	upt_add(tc, test_open_image_parent_fifo, 0, "");
	upt_add(tc, test_open_image_parent_beneath, 0, "");
	upt_add(tc, test_send_timeout, 0, "");
	upt_add(tc, test_open_image_map_budget, 0, "");
	upt_add(tc, test_jail_fallback, 0, "");
	upt_add(tc, test_sighup_log_same_fd, 0, "");
	upt_add(tc, test_jail_openat2_eperm, 0, "");
	upt_add(tc, test_slow_reader_kept, 0, "");
	upt_add(tc, test_open_image_parent_detached_root, 0, "");
	upt_add(tc, test_open_image_no_stall, 0, "");
	upt_add(tc, test_jail_eperm_one_file, 0, "");
	upt_add(tc, test_open_image_through_symlink, 0, "");
	upt_add(tc, test_sighup_log_not_fifo_or_symlink, 0, "");
	upt_add(tc, test_log_std_fds_closed, 0, "");
	upt_add(tc, test_queue_limit, 0, "");
	upt_add(tc, test_jail_modes_agree, 0, "");
	upt_add(tc, test_help_secret, 0, "");
	upt_add(tc, test_help_after_mode, 0, "");
	upt_add(tc, test_sigterm_drains_reads, 0, "");
	return s;
}

/* No userfaultfd needed here: run whatever the machine allows. */
int main(void)
{
	SRunner *sr = srunner_create(make());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
