/* SPDX-License-Identifier: MIT */
/*
 * upagerd handle, the real binary, with clients that do what a VM monitor
 * does on snapshot restore (Firecracker's UFFD handshake): an anonymous
 * mapping, a userfaultfd with EVENT_REMOVE registered over it, and one
 * message with the descriptor and a JSON array of regions. Every page is
 * checked, also after MADV_DONTNEED; clients that die, lie or send garbage
 * never stop the daemon serving the others.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "nginx.h"

#define MEM_SIZE (12u << 20) /* the memory file */
#define SEED 7

static char dir[64], sock_path[128], mem_path[128], snap_path[128], log_path[128];
static const char *max_clients = "32";
static const char *spin_us = "0"; /* --spin-us of the next start_handler */
static bool no_supervisor;       /* --no-supervisor for the next start_handler */
static pid_t daemon_pid;
static bool daemon_group; /* daemon_pid leads a process group to kill whole */

/* ---- the daemon ---- */

static pid_t start_handler(const char *mem, const char *env)
{
	const char *args[] = { "handle", "--socket", sock_path, "--mem-file", mem,
			       "--read-timeout", "2", "--max-clients", max_clients,
			       "--spin-us", spin_us, "--log-file", log_path, "--log-level", "info",
			       no_supervisor ? "--no-supervisor" : NULL, NULL };
	char ready[256];

	return upt_upagerd(args, env, ready, sizeof(ready));
}

/* Not reaped: a later waitpid still sees how it ended. */
static bool alive(pid_t pid)
{
	siginfo_t si = { 0 };

	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == 0;
}

static bool log_has(const char *needle)
{
	char buf[1 << 16];
	int fd = open(log_path, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

/* The memory file (and the paths of the rest), without a daemon yet. */
static void make_files(void)
{
	uint8_t *buf = malloc(MEM_SIZE);
	int fd;

	snprintf(dir, sizeof(dir), "/tmp/upagerd-handle-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock_path, sizeof(sock_path), "%s/uffd.sock", dir);
	snprintf(mem_path, sizeof(mem_path), "%s/mem.raw", dir);
	snprintf(snap_path, sizeof(snap_path), "%s/mem.snap", dir);
	snprintf(log_path, sizeof(log_path), "%s/log", dir);
	upt_fill(buf, MEM_SIZE, 0, SEED);
	fd = open(mem_path, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_eq(write(fd, buf, MEM_SIZE), MEM_SIZE);
	close(fd);
	free(buf);
}

/* A line logged right after the poison that ended a client may come after
 * the client's death (seen on a loaded machine, in the url case and in
 * CI's distcheck: memory_file_truncated): waited for, 2 s. Every line a
 * test expects is looked for this way. */
static bool log_has_soon(const char *needle)
{
	for (int i = 0; i < 200 && !log_has(needle); i++)
		usleep(10000);
	return log_has(needle);
}

static void setup(void)
{
	make_files();
	daemon_pid = start_handler(mem_path, NULL);
}

static void teardown(void)
{
	char cmd[128];

	if (daemon_group)
		kill(-daemon_pid, SIGKILL); /* and with it the pid namespace's init */
	daemon_group = false;
	upt_daemon_kill(daemon_pid);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd)) {
		/* best effort */
	}
}

/* ---- a client, as a VM monitor is one ---- */

struct guest {
	uint8_t *mem;      /* both regions, one mapping */
	size_t len;
	int uffd, sock;
};

/*
 * Guest memory of two regions: [0, 4 MiB) backed by file offset 8 MiB and
 * [4 MiB, 12 MiB) by file offset 0, so that a wrong offset shows.
 */
#define R0_LEN (4u << 20)
#define R0_OFF (8u << 20)
#define R1_LEN (8u << 20)
#define R1_OFF 0u

static uint64_t file_off(size_t guest_off)
{
	return guest_off < R0_LEN ? R0_OFF + guest_off : R1_OFF + guest_off - R0_LEN;
}

static int connect_handler(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, sock_path);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		_exit(90);
	return s;
}

/* One message: the JSON and, if fd >= 0, the descriptor. */
static ssize_t send_with_fd(int s, const char *json, size_t len, int fd)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { (void *)json, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = &ctl;
		mh.msg_controllen = sizeof(ctl);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	return sendmsg(s, &mh, MSG_NOSIGNAL);
}

/*
 * The handshake, exactly as described: mapping, uffd with EVENT_REMOVE, one
 * message. extra pages after the regions are registered but not described.
 */
static void guest_start_with(struct guest *g, bool old_field, size_t extra)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	struct uffdio_register reg;
	char json[512];
	int n;

	g->len = R0_LEN + R1_LEN;
	g->mem = mmap(NULL, g->len + extra * UPT_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		      -1, 0);
	if (g->mem == MAP_FAILED)
		_exit(91);
	g->uffd = upt_open_uffd();
	if (g->uffd < 0 || ioctl(g->uffd, UFFDIO_API, &api) < 0)
		_exit(92);
	reg = (struct uffdio_register){ .range = { (uintptr_t)g->mem, g->len + extra * UPT_PAGE },
					.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(g->uffd, UFFDIO_REGISTER, &reg) < 0)
		_exit(93);
	n = snprintf(json, sizeof(json),
		     "[{\"base_host_virt_addr\":%lu,\"size\":%u,\"offset\":%u,\"page_size\":%zu},"
		     " {\"base_host_virt_addr\": %lu, \"size\": %u, \"offset\": %u, \"%s\": %zu}]",
		     (unsigned long)(uintptr_t)g->mem, R0_LEN, R0_OFF, UPT_PAGE,
		     (unsigned long)(uintptr_t)(g->mem + R0_LEN), R1_LEN, R1_OFF,
		     old_field ? "page_size_kib" : "page_size", UPT_PAGE);
	g->sock = connect_handler();
	if (send_with_fd(g->sock, json, (size_t)n, g->uffd) != n)
		_exit(94);
	/* Keep both: the socket is the session; the uffd must outlive it. */
}

static void guest_start(struct guest *g, bool old_field)
{
	guest_start_with(g, old_field, 0);
}

/* 0 if [off, off+len) of guest memory holds the memory file's bytes. */
static int check_file(const struct guest *g, size_t off, size_t len)
{
	for (size_t o = off; o < off + len; o += UPT_PAGE)
		if (upt_check_pattern(g->mem + o, UPT_PAGE, file_off(o), SEED) >= 0)
			return -1;
	return 0;
}


static void client_full(void *arg)
{
	struct guest g;
	size_t half = (R0_LEN + R1_LEN) / 2;

	guest_start(&g, arg != NULL);
	if (check_file(&g, 0, g.len))
		_exit(10);
	/* Discard part of each region; a balloon does this. Written pages too. */
	memset(g.mem + R0_LEN - 3 * UPT_PAGE, 0xAB, 2 * UPT_PAGE);
	if (madvise(g.mem + R0_LEN - 3 * UPT_PAGE, 6 * UPT_PAGE, MADV_DONTNEED) ||
	    madvise(g.mem + half, 64 * UPT_PAGE, MADV_DONTNEED))
		_exit(11);
	if (upt_check_zero(g.mem + R0_LEN - 3 * UPT_PAGE, 6 * UPT_PAGE) >= 0 ||
	    upt_check_zero(g.mem + half, 64 * UPT_PAGE) >= 0)
		_exit(12); /* discarded pages must read zero, not the file */
	if (check_file(&g, 0, R0_LEN - 3 * UPT_PAGE) ||
	    check_file(&g, R0_LEN + 3 * UPT_PAGE, half - R0_LEN - 3 * UPT_PAGE) ||
	    check_file(&g, half + 64 * UPT_PAGE, g.len - half - 64 * UPT_PAGE))
		_exit(13);
	/* And a discarded page written again holds what was written. */
	g.mem[half] = 0x5A;
	if (g.mem[half] != 0x5A || g.mem[half + 1] != 0)
		_exit(14);
	_exit(0);
}

static void expect_ok(void (*fn)(void *), void *arg)
{
	int st = upt_child(fn, arg, 30);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client failed: status 0x%x (exit %d)",
		      st, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

START_TEST(every_page_and_remove)
{
	char line[64];

	expect_ok(client_full, NULL);
	ck_assert(alive(daemon_pid));
	/* The pid it logs is the client's, from SO_PEERCRED. */
	snprintf(line, sizeof(line), "client pid ");
	ck_assert(log_has(line));
	ck_assert(log_has_soon("2 regions, 12 MiB"));
}
END_TEST

START_TEST(old_page_size_kib_field)
{
	expect_ok(client_full, (void *)1);
}
END_TEST

/* Reads the guest as the snapshot_file test laid it out: zero and absent pages zero. */
static void client_snapshot(void *arg)
{
	struct guest g;

	(void)arg;
	guest_start(&g, false);
	for (size_t o = 0; o < g.len; o += UPT_PAGE) {
		uint64_t f = file_off(o);
		bool zero = f == R0_OFF + 5 * UPT_PAGE || (f >= 100 * UPT_PAGE && f < 110 * UPT_PAGE);

		if (zero ? upt_check_zero(g.mem + o, UPT_PAGE) >= 0
			 : upt_check_pattern(g.mem + o, UPT_PAGE, f, SEED) >= 0)
			_exit(20);
	}
	_exit(0);
}

/* snap_path: the memory file as a snapshot, with the zero and absent pages
 * client_snapshot expects. */
static void make_snapshot(void)
{
	uint8_t *img = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);

	upt_fill(img, MEM_SIZE, 0, SEED);
	/* Pages that are zero in the image, and absent from the snapshot, must read zero. */
	memset(img + R0_OFF + 5 * UPT_PAGE, 0, UPT_PAGE);
	madvise(img + 100 * UPT_PAGE, 10 * UPT_PAGE, MADV_DONTNEED);
	ck_assert_int_eq(upager_snapshot_save(img, MEM_SIZE, snap_path), 0);
	munmap(img, MEM_SIZE);
}

/* A snapshot as the memory file: stored, zero and absent pages. */
START_TEST(snapshot_file)
{
	make_snapshot();
	upt_daemon_kill(daemon_pid);
	daemon_pid = start_handler(snap_path, NULL);
	expect_ok(client_snapshot, NULL);
	ck_assert(log_has_soon("upager snapshot"));
}
END_TEST

static void client_region0(void *arg)
{
	struct guest g;

	(void)arg;
	guest_start(&g, false);
	_exit(check_file(&g, 0, R0_LEN) ? 32 : 0);
}

static void client_touch_bad(void *arg)
{
	struct guest g;
	size_t bad = (size_t)(uintptr_t)arg;

	guest_start(&g, false);
	/* Its neighbours read fine... */
	if (check_file(&g, bad - UPT_PAGE, UPT_PAGE) || check_file(&g, bad + UPT_PAGE, UPT_PAGE))
		_exit(30);
	/* ...and the damaged page is never handed over: SIGBUS. */
	(void)*(volatile uint8_t *)(g.mem + bad);
	_exit(31);
}

static struct upt_nginx ngx;
static const char *no_nginx;
static char url_snap[160];

/* snap_path as www/mem.snap of nginx (url_setup's), replaced whole. */
static void url_put_snapshot(void)
{
	char cmd[sizeof(snap_path) + 4 * sizeof(ngx.www) + 64];

	snprintf(cmd, sizeof(cmd), "cp %s %s/.mem.snap && mv %s/.mem.snap %s/mem.snap", snap_path,
		 ngx.www, ngx.www, ngx.www);
	ck_assert_int_eq(system(cmd), 0);
}

/* at_url: the damaged snapshot served from nginx (url_setup's). */
static void corrupt_snapshot_gives_sigbus(const char *env, bool at_url)
{
	uint8_t *img = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0), byte;
	size_t bad = R0_LEN + 7 * UPT_PAGE; /* guest offset: file offset 7 pages */
	int fd, st;

	upt_fill(img, MEM_SIZE, 0, SEED);
	ck_assert_int_eq(upager_snapshot_save(img, MEM_SIZE, snap_path), 0);
	munmap(img, MEM_SIZE);
	/* Stored pages follow the 4 KiB header in order: flip a byte of page 7. */
	fd = open(snap_path, O_RDWR);
	ck_assert_int_eq(pread(fd, &byte, 1, 4096 + 7 * (off_t)UPT_PAGE + 100), 1);
	byte ^= 0x40;
	ck_assert_int_eq(pwrite(fd, &byte, 1, 4096 + 7 * (off_t)UPT_PAGE + 100), 1);
	close(fd);
	upt_daemon_kill(daemon_pid);
	if (at_url)
		url_put_snapshot();
	daemon_pid = start_handler(at_url ? url_snap : snap_path, env);
	st = upt_child(client_touch_bad, (void *)(uintptr_t)bad, 30);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "status 0x%x", st);
	ck_assert(log_has_soon("fails its checksum"));
	ck_assert(alive(daemon_pid));
	expect_ok(client_region0, NULL); /* and it goes on serving the good pages */
}

START_TEST(corrupt_page_sigbus)
{
	corrupt_snapshot_gives_sigbus(NULL, false);
}
END_TEST

START_TEST(corrupt_page_sigbus_fallback)
{
	corrupt_snapshot_gives_sigbus("UPAGER_DISABLE=poison", false);
}
END_TEST

/* n clients at once, each checking every byte (client_full). */
static void run_clients(int n)
{
	pid_t pids[8];

	ck_assert_int_le(n, 8);
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			client_full(NULL);
	}
	for (int i = 0; i < n; i++) {
		int st;

		waitpid(pids[i], &st, 0);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client %d: 0x%x", i, st);
	}
}

/* Many at once. */
START_TEST(many_clients)
{
	run_clients(8);
}
END_TEST

/*
 * --spin-us: a client thread that polls its uffd between faults serves
 * every byte as one that sleeps, with several clients spinning at once
 * (the faults a spin reads, and the events among them, take the same path).
 */
START_TEST(spinning_clients)
{
	upt_daemon_kill(daemon_pid);
	unlink(sock_path);
	spin_us = "2000";
	daemon_pid = start_handler(mem_path, NULL);
	spin_us = "0";
	ck_assert_int_gt(daemon_pid, 0);
	run_clients(4);
	ck_assert(alive(daemon_pid));
}
END_TEST

/* ---- clients that lie, die or send garbage ---- */

static void client_slow_forever(void *arg)
{
	struct guest g;
	int *ready = arg;
	char one = 1;

	guest_start(&g, false);
	for (size_t o = 0;; o = (o + UPT_PAGE) % g.len) {
		if (upt_check_pattern(g.mem + o, 1, file_off(o), SEED) >= 0)
			_exit(40);
		if (o == 64 * UPT_PAGE && write(ready[1], &one, 1) != 1)
			_exit(41);
	}
}

START_TEST(client_killed_mid_restore)
{
	int ready[2], st;
	char c;
	pid_t victim, other;

	ck_assert_int_eq(pipe(ready), 0);
	victim = fork();
	if (victim == 0)
		client_slow_forever(ready);
	ck_assert_int_eq(read(ready[0], &c, 1), 1); /* it is restoring */
	other = fork(); /* another restore, at the same time */
	if (other == 0)
		client_full(NULL);
	kill(victim, SIGKILL);
	waitpid(victim, NULL, 0);
	ck_assert_int_eq(waitpid(other, &st, 0), other);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the other client: 0x%x", st);
	expect_ok(client_full, NULL); /* and one after */
	ck_assert(alive(daemon_pid));
	close(ready[0]);
	close(ready[1]);
}
END_TEST

struct bad {
	const char *json; /* %lu: the mapping's address */
	int fds;          /* 0: none; 1: the uffd; 2: uffd and another; 3: uffd and a memfd;
			     -1: a pipe */
};

static void client_bad(void *arg)
{
	const struct bad *b = arg;
	struct guest g;
	char json[512], junk[16];
	int n, s = connect_handler(), p[2];

	guest_start(&g, false); /* a real one first, to have a uffd and a mapping */
	close(g.sock);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral" /* the table's templates */
	n = snprintf(json, sizeof(json), b->json, (unsigned long)(uintptr_t)g.mem,
		     (unsigned long)(uintptr_t)g.mem);
#pragma GCC diagnostic pop
	if (pipe(p))
		_exit(50);
	if (b->fds >= 2) {
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(2 * sizeof(int))];
		} ctl;
		struct iovec iov = { json, (size_t)n };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
				     .msg_controllen = sizeof(ctl) };
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		int two[2] = { g.uffd, b->fds == 3 ? memfd_create("bitmap", MFD_CLOEXEC) : p[0] };

		memset(&ctl, 0, sizeof(ctl));
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(two));
		memcpy(CMSG_DATA(cm), two, sizeof(two));
		if (sendmsg(s, &mh, MSG_NOSIGNAL) < 0)
			_exit(51);
	} else if (send_with_fd(s, json, (size_t)n, b->fds == 1 ? g.uffd : b->fds < 0 ? p[0] : -1) < 0) {
		_exit(52);
	}
	/* The daemon closes on us (after the 2 s handshake timeout at most). */
	struct pollfd pf = { .fd = s, .events = POLLIN };
	if (poll(&pf, 1, 10000) != 1 || recv(s, junk, sizeof(junk), 0) != 0)
		_exit(53);
	_exit(0);
}

#define OK_REGION "{\"base_host_virt_addr\":%lu,\"size\":4096,\"offset\":0,\"page_size\":4096}"
static const struct bad bads[] = {
	{ "", 1 },                                     /* nothing, then silence */
	{ "[" OK_REGION "]", 0 },                      /* no uffd */
	{ "[" OK_REGION "]", -1 },                     /* a pipe, not a uffd */
	{ "[" OK_REGION "]", 2 },                      /* two descriptors */
	{ "\x01\x02garbage\xff%lu", 1 },
	{ "[]", 1 },
	{ "{}", 1 },
	{ "[" OK_REGION "] trailing", 1 },
	{ "[{\"base_host_virt_addr\":%lu,\"size\":4096,\"offset\":0}]", 1 }, /* no page size */
	{ "[{\"base_host_virt_addr\":%lu,\"size\":4096,\"offset\":0,\"page_size\":4095}]", 1 },
	{ "[{\"base_host_virt_addr\":%lu,\"size\":0,\"offset\":0,\"page_size\":4096}]", 1 },
	{ "[{\"base_host_virt_addr\":%lu,\"size\":4096,\"offset\":12582912,\"page_size\":4096}]", 1 },
	{ "[{\"base_host_virt_addr\":%lu,\"size\":4096,\"offset\":18446744073709551615,"
	  "\"page_size\":4096}]", 1 },
	{ "[{\"base_host_virt_addr\":%lu,\"size\":-4096,\"offset\":0,\"page_size\":4096}]", 1 },
	{ "[{\"base_host_virt_addr\":%lu,\"size\":4096.5,\"offset\":0,\"page_size\":4096}]", 1 },
	{ "[{\"base_host_virt_addr\":%lu,\"size\":99999999999999999999999,\"offset\":0,"
	  "\"page_size\":4096}]", 1 },
	{ "[{\"base_host_virt_addr\":%lu,\"size\":8192,\"offset\":0,\"page_size\":4096},"
	  "{\"base_host_virt_addr\":%lu,\"size\":4096,\"offset\":0,\"page_size\":4096}]", 1 },
	{ "[{\"base_host_virt_addr\":%lu,\"base_host_virt_addr\":0,\"size\":4096,\"offset\":0,"
	  "\"page_size\":4096}]", 1 },
	{ "[{\"base_host_virt_addr\":%lu,\"size\":4096,\"offset\":0,\"page_size\":4096,"
	  "\"page_size_kib\":8192}]", 1 },
	{ "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 1 },
	{ "[{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]"
	  "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]", 1 },
	{ "[" OK_REGION, 1 },                          /* cut short, then silence */
	{ "[{\"base_host_virt_addr\":\"%lu\",\"size\":4096,\"offset\":0,\"page_size\":4096}]", 1 },
};

/*
 * Firecracker's guest_memfd restore (Secret Freedom) hands over the
 * guest_memfd and a bitmap memfd with the uffd: refused, with one line
 * naming what came.
 */
START_TEST(extra_descriptors_named)
{
	static const struct bad b = { "[" OK_REGION "]", 3 };
	int st = upt_child(client_bad, (void *)&b, 30);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
	ck_assert(log_has_soon("more than one descriptor came with the regions, upagerd takes a "
			  "userfaultfd alone (2: userfaultfd, memfd): closed"));
	expect_ok(client_full, NULL);
}
END_TEST

START_TEST(hostile_clients)
{
	int st = upt_child(client_bad, (void *)&bads[_i], 30);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "bad client %d: status 0x%x", _i, st);
	ck_assert_msg(alive(daemon_pid), "upagerd died on bad client %d", _i);
	expect_ok(client_full, NULL);
}
END_TEST

/* Random bytes flipped in a good handshake: whatever it makes of them, it survives. */
static void client_fuzz(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	struct guest g;
	char json[512];
	int n;

	guest_start(&g, false);
	close(g.sock);
	n = snprintf(json, sizeof(json), "[" OK_REGION "," OK_REGION "]",
		     (unsigned long)(uintptr_t)g.mem, (unsigned long)(uintptr_t)g.mem + 4096);
	for (int k = 0; k < 200; k++) {
		char m[512];
		int s = connect_handler(), len = n;

		memcpy(m, json, (size_t)n);
		for (int f = 0; f < 1 + (int)(rand_r(&seed) % 4); f++)
			m[rand_r(&seed) % (unsigned)n] = (char)rand_r(&seed);
		if (rand_r(&seed) % 4 == 0)
			len = (int)(rand_r(&seed) % (unsigned)n);
		send_with_fd(s, m, (size_t)len, g.uffd);
		shutdown(s, SHUT_WR);
		close(s);
	}
	_exit(0);
}

START_TEST(fuzzed_handshakes)
{
	int st = upt_child(client_fuzz, (void *)(uintptr_t)1234, 60);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
	ck_assert(alive(daemon_pid));
	expect_ok(client_full, NULL);
}
END_TEST

static void client_chatty(void *arg)
{
	struct guest g;

	(void)arg;
	guest_start(&g, false);
	if (send(g.sock, "hello?", 6, MSG_NOSIGNAL) != 6)
		_exit(60);
	if (check_file(&g, 0, g.len))
		_exit(61);
	_exit(0);
}

/* The protocol has nothing after the handshake; bytes there are ignored, not fatal. */
START_TEST(bytes_after_handshake)
{
	expect_ok(client_chatty, NULL);
	ck_assert(log_has_soon("bytes after the handshake"));
}
END_TEST

static void client_hold(void *arg)
{
	struct guest g;
	int *p = arg;
	char c;

	guest_start(&g, false);
	if (check_file(&g, 0, R0_LEN))
		_exit(70);
	if (write(p[1], "x", 1) != 1 || read(p[0], &c, 1) != 1) /* hold until told */
		_exit(71);
	if (check_file(&g, R0_LEN, R1_LEN)) /* still served after SIGTERM */
		_exit(72);
	_exit(0);
}

/* SIGTERM: no new clients, the present ones served to the end, then exit 0. */
START_TEST(sigterm_drains)
{
	int up[2], down[2], st, p[2];
	pid_t cl;
	char c;

	ck_assert_int_eq(pipe(up), 0);
	ck_assert_int_eq(pipe(down), 0);
	cl = fork();
	if (cl == 0) {
		p[0] = down[0];
		p[1] = up[1];
		client_hold(p);
	}
	ck_assert_int_eq(read(up[0], &c, 1), 1);
	kill(daemon_pid, SIGTERM);
	for (int i = 0; i < 100 && access(sock_path, F_OK) == 0; i++)
		usleep(10000);
	ck_assert_int_ne(access(sock_path, F_OK), 0); /* no new clients */
	ck_assert(alive(daemon_pid));
	ck_assert_int_eq(write(down[1], "x", 1), 1);
	waitpid(cl, &st, 0);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client: 0x%x", st);
	for (int i = 0; i < 500 && waitpid(daemon_pid, &st, WNOHANG) == 0; i++)
		usleep(10000);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "upagerd: 0x%x", st);
	daemon_pid = -1;
}
END_TEST

/* At --max-clients a new client waits for room, then is served; it is not dropped. */
START_TEST(max_clients_wait)
{
	int up[2], down[2], st, p[2];
	pid_t holder, waiter;
	char c;

	upt_daemon_kill(daemon_pid);
	max_clients = "1";
	daemon_pid = start_handler(mem_path, NULL);
	max_clients = "32";
	ck_assert_int_eq(pipe(up), 0);
	ck_assert_int_eq(pipe(down), 0);
	holder = fork();
	if (holder == 0) {
		p[0] = down[0];
		p[1] = up[1];
		client_hold(p);
	}
	ck_assert_int_eq(read(up[0], &c, 1), 1); /* served, and holding the one place */
	waiter = fork();
	if (waiter == 0)
		client_full(NULL);
	usleep(300 * 1000);
	ck_assert_int_eq(waitpid(waiter, &st, WNOHANG), 0); /* waiting, not failed */
	ck_assert(log_has_soon("new ones wait"));
	ck_assert_int_eq(write(down[1], "x", 1), 1);
	ck_assert_int_eq(waitpid(holder, &st, 0), holder);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "holder: 0x%x", st);
	ck_assert_int_eq(waitpid(waiter, &st, 0), waiter);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "waiter: 0x%x", st);
}
END_TEST

START_TEST(bad_command_lines)
{
	static const char *const cases[][6] = {
		{ "handle", "--socket", "/tmp/x.sock", NULL },               /* no --mem-file */
		{ "handle", "--mem-file", "/nonexistent", "--socket", "/tmp/upagerd-x.sock", NULL },
		{ "handle", "--root", "/tmp", NULL },                         /* a serve flag */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st;
		pid_t pid = fork();

		if (pid == 0) {
			char *argv[8] = { "upagerd" };

			for (int k = 0; cases[i][k]; k++)
				argv[k + 1] = (char *)cases[i][k];
			close(2);
			execv("daemon/upagerd", argv);
			_exit(127);
		}
		waitpid(pid, &st, 0);
		ck_assert_msg(WIFEXITED(st) && (WEXITSTATUS(st) == 1 || WEXITSTATUS(st) == 2),
			      "case %zu: 0x%x", i, st);
	}
}
END_TEST

/*
 * A region moved whole by mremap (UFFD_EVENT_REMAP) is followed: pages not
 * yet touched are served at the new address from the same file offsets. A
 * region unmapped (UFFD_EVENT_UNMAP) and mapped again reads zero, not the
 * file: it is new memory.
 */
static void client_remap(void *arg)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_UNMAP |
					      UFFD_FEATURE_EVENT_REMOVE };
	struct uffdio_register reg;
	const size_t len = 1u << 20;
	uint8_t *m = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *to = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char json[256];
	int uffd, s, n;

	(void)arg;
	uffd = upt_open_uffd();
	if (m == MAP_FAILED || to == MAP_FAILED || uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0)
		_exit(100);
	reg = (struct uffdio_register){ .range = { (uintptr_t)m, 2 * len },
					.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		_exit(101);
	n = snprintf(json, sizeof(json),
		     "[{\"base_host_virt_addr\":%lu,\"size\":%zu,\"offset\":0,\"page_size\":%zu},"
		     "{\"base_host_virt_addr\":%lu,\"size\":%zu,\"offset\":%zu,\"page_size\":%zu}]",
		     (unsigned long)(uintptr_t)m, len, UPT_PAGE, (unsigned long)(uintptr_t)(m + len),
		     len, len, UPT_PAGE);
	s = connect_handler();
	if (send_with_fd(s, json, (size_t)n, uffd) != n)
		_exit(102);
	/* Half of the first region touched, then the region moved whole. */
	if (upt_check_pattern(m, len / 2, 0, SEED) >= 0)
		_exit(103);
	if (mremap(m, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to) != to)
		_exit(104);
	if (upt_check_pattern(to, len, 0, SEED) >= 0)
		_exit(105); /* the moved half, and the untouched half served at its new place */
	/* The second region unmapped, new memory mapped there and registered again:
	 * its faults reach upagerd, which must not serve the file's old bytes. */
	if (munmap(m + len, len) ||
	    mmap(m + len, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
		 0) != m + len)
		_exit(106);
	reg = (struct uffdio_register){ .range = { (uintptr_t)(m + len), len },
					.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		_exit(107);
	if (upt_check_zero(m + len, len) >= 0)
		_exit(108);
	_exit(0);
}

START_TEST(remap_and_unmap)
{
	expect_ok(client_remap, NULL);
	ck_assert(alive(daemon_pid));
}
END_TEST

/* Free 2 MiB huge pages (hugetlbfs), from /proc/meminfo. */
static long free_huge_pages(void)
{
	char line[128];
	long n = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %ld", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

/* Guest memory in 2 MiB huge pages, page_size 2097152: each fault fills a whole one. */
static void client_huge(void *arg)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	struct uffdio_register reg;
	const size_t huge = 2u << 20, len = 4 * huge;
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	char json[256];
	int uffd, s, n;

	(void)arg;
	if (m == MAP_FAILED)
		_exit(80);
	uffd = upt_open_uffd();
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0)
		_exit(81);
	reg = (struct uffdio_register){ .range = { (uintptr_t)m, len },
					.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		_exit(82);
	n = snprintf(json, sizeof(json),
		     "[{\"base_host_virt_addr\":%lu,\"size\":%zu,\"offset\":%zu,\"page_size\":%zu}]",
		     (unsigned long)(uintptr_t)m, len, huge, huge);
	s = connect_handler();
	if (send_with_fd(s, json, (size_t)n, uffd) != n)
		_exit(83);
	for (size_t o = 0; o < len; o += 4096) /* file offset huge + o */
		if (upt_check_pattern(m + o, 4096, huge + o, SEED) >= 0)
			_exit(84);
	/* A discarded huge page reads zero afterwards. */
	if (madvise(m + huge, huge, MADV_DONTNEED) || upt_check_zero(m + huge, huge) >= 0)
		_exit(85);
	_exit(0);
}

START_TEST(huge_pages)
{
	expect_ok(client_huge, NULL);
}
END_TEST

/*
 * A fault the kernel takes on the client's behalf (read(2) into untouched
 * guest memory, as KVM's accesses are): filled from the file first, then
 * the read lands. Not with a user-mode-only uffd (the only kind an
 * unprivileged user may have): the kernel does not report those faults,
 * and the read fails with EFAULT (docs/HANDLE.md: Unprivileged).
 */
static void client_kernel_access(void *arg)
{
	static const char msg[] = "written by the kernel";
	uint8_t *at;
	struct guest g;
	int p[2];

	(void)arg;
	guest_start(&g, false);
	at = g.mem + 5 * UPT_PAGE;
	if (pipe(p) || write(p[1], msg, sizeof(msg)) != (ssize_t)sizeof(msg))
		_exit(160);
	if (read(p[0], at + 100, sizeof(msg)) != (ssize_t)sizeof(msg))
		_exit(161);
	if (memcmp(at + 100, msg, sizeof(msg)) ||
	    upt_check_pattern(at, 100, file_off(5 * UPT_PAGE), SEED) >= 0)
		_exit(162);
	_exit(0);
}

START_TEST(kernel_access)
{
	expect_ok(client_kernel_access, NULL);
}
END_TEST

/* ---- faults that cannot be served ---- */

/* Until the client is closed on (0), or for at most ms (-1). */
static int wait_closed(int s, int ms)
{
	struct pollfd pf = { .fd = s, .events = POLLIN };
	char junk[16];

	return poll(&pf, 1, ms) == 1 && recv(s, junk, sizeof(junk), MSG_DONTWAIT) == 0 ? 0 : -1;
}

static atomic_int balloon_stop; /* set by the client thread, read by the balloon */
static sigjmp_buf bus_jmp;

static void on_bus(int sig)
{
	(void)sig;
	siglongjmp(bus_jmp, 1);
}

/* Discards pages for a second (or until told to stop), as a balloon inflating. */
static void *balloon(void *arg)
{
	uint8_t *mem = arg;
	time_t end = time(NULL) + 2;

	while (!balloon_stop && time(NULL) < end)
		madvise(mem + R0_LEN, 16 * UPT_PAGE, MADV_DONTNEED);
	return NULL;
}

/*
 * A page registered with the uffd but outside every region described, touched
 * 2000 times while another thread discards pages (a balloon): each touch ends
 * in SIGBUS, none waits for ever because a remove was pending when upagerd
 * poisoned it (UFFDIO_POISON refuses with EAGAIN then). While the balloon
 * never pauses, each try may meet the next remove (the kernel's rule); once
 * it does, every waiting fault must end.
 */
static void client_outside_while_removing(void *arg)
{
	struct sigaction sa = { .sa_handler = on_bus, .sa_flags = SA_NODEFER };
	struct guest g;
	volatile uint8_t *outside;
	volatile int bus = 0;
	pthread_t t;

	(void)arg;
	guest_start_with(&g, false, 1);
	outside = g.mem + g.len;
	if (check_file(&g, 0, 64 * UPT_PAGE))
		_exit(110);
	sigaction(SIGBUS, &sa, NULL);
	if (pthread_create(&t, NULL, balloon, g.mem))
		_exit(111);
	while (bus < 2000) {
		if (sigsetjmp(bus_jmp, 1) == 0)
			(void)*outside;
		else
			bus++;
		/* A poisoned page stays poisoned until discarded. */
		madvise((void *)outside, UPT_PAGE, MADV_DONTNEED);
	}
	balloon_stop = 1;
	pthread_join(t, NULL);
	_exit(0);
}

START_TEST(unservable_fault_while_removing)
{
	int st = upt_child(client_outside_while_removing, NULL, 20);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client: status 0x%x", st);
	ck_assert(alive(daemon_pid));
	ck_assert(log_has_soon("outside every region"));
}
END_TEST

/*
 * upagerd in a pid namespace of its own, so that a client outside it has pid
 * 0 in SO_PEERCRED and cannot be signalled from there. Started as
 * wrapper (own process group) -> init of the namespace -> upagerd; the
 * wrapper exits as upagerd did.
 */
static pid_t start_handler_in_pidns(const char *env)
{
	const char *args[] = { "handle", "--socket", sock_path, "--mem-file", mem_path,
			       "--read-timeout", "2", "--log-file", log_path, "--log-level", "info",
			       NULL };
	char ready[256];
	int up[2];
	pid_t wrapper;

	ck_assert_int_eq(pipe(up), 0);
	wrapper = fork();
	ck_assert_int_ge(wrapper, 0);
	if (wrapper == 0) {
		pid_t init;
		int st;

		setpgid(0, 0);
		if (unshare(CLONE_NEWPID) < 0)
			_exit(120);
		init = fork();
		if (init == 0) {
			pid_t d = fork();

			if (d == 0) {
				char line[256];
				pid_t pid = upt_upagerd(args, env, line, sizeof(line));

				if (write(up[1], line, strlen(line)) < 0 || waitpid(pid, &st, 0) != pid)
					_exit(121);
				_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
			}
			while (waitpid(d, &st, 0) < 0 && errno == EINTR)
				;
			_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		}
		if (waitpid(init, &st, 0) != init)
			_exit(122);
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	}
	close(up[1]);
	{
		struct pollfd p = { .fd = up[0], .events = POLLIN };

		ck_assert_msg(poll(&p, 1, 5000) == 1 && read(up[0], ready, sizeof(ready)) > 0,
			      "upagerd in a pid namespace did not become ready");
	}
	close(up[0]);
	return wrapper;
}

/* Handshake, then a fault outside every region; the daemon must close on us. */
static void *touch_outside(void *arg)
{
	(void)*(volatile uint8_t *)arg;
	return NULL;
}

static void client_unsignalable(void *arg)
{
	struct guest g;
	pthread_t t;

	(void)arg;
	guest_start_with(&g, false, 1);
	if (pthread_create(&t, NULL, touch_outside, g.mem + g.len))
		_exit(130);
	_exit(wait_closed(g.sock, 5000) ? 131 : 0);
}

/*
 * Without UFFDIO_POISON a failed fault is a SIGBUS sent to the client. A
 * client upagerd cannot address (pid 0: another pid namespace) is refused at
 * the handshake, with the reason logged; nothing else is ever signalled
 * (kill(0, SIGBUS) would hit upagerd's own process group).
 */
START_TEST(client_in_other_pidns)
{
	int st;

	upt_daemon_kill(daemon_pid);
	daemon_pid = start_handler_in_pidns("UPAGER_DISABLE=poison");
	daemon_group = true;
	st = upt_child(client_unsignalable, NULL, 20);
	ck_assert_msg(alive(daemon_pid), "upagerd's process group was signalled");
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client: status 0x%x", st);
	ck_assert(log_has_soon("client pid 0 "));
	ck_assert(log_has_soon("cannot be sent SIGBUS"));
}
END_TEST

static void client_outside(void *arg)
{
	struct guest g;

	(void)arg;
	guest_start_with(&g, false, 1);
	if (check_file(&g, 0, UPT_PAGE))
		_exit(135);
	(void)*(volatile uint8_t *)(g.mem + g.len);
	_exit(136);
}

/* Waits for pid; 0 if it was killed by sig. */
static int killed_by(pid_t pid, int sig)
{
	int st;

	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFSIGNALED(st) && WTERMSIG(st) == sig ? 0 : -1;
}

/*
 * The client in a pid namespace below upagerd's (as Firecracker's jailer
 * puts it): arg 0, a process in it; 1, the namespace's init, to which the
 * kernel drops a SIGBUS it does not catch (upagerd sends SIGKILL instead).
 */
static void client_below(void *arg)
{
	bool init = arg != NULL;
	pid_t pid;

	if (unshare(CLONE_NEWPID) < 0)
		_exit(137);
	pid = fork();
	if (pid == 0 && init) {
		client_outside(NULL);
	} else if (pid == 0) {
		pid_t in = fork();

		if (in == 0)
			client_outside(NULL);
		_exit(killed_by(in, SIGBUS) ? 138 : 0);
	}
	if (init)
		_exit(killed_by(pid, SIGKILL) ? 139 : 0);
	_exit(pid > 0 && waitpid(pid, &pid, 0) > 0 && WIFEXITED(pid) ? WEXITSTATUS(pid) : 140);
}

/* ...while one in a namespace below it is signalled through its pidfd, as any other. */
START_TEST(client_in_child_pidns_gets_sigbus)
{
	int st;

	upt_daemon_kill(daemon_pid);
	daemon_pid = start_handler(mem_path, "UPAGER_DISABLE=poison");
	st = upt_child(client_below, (void *)(uintptr_t)_i, 20);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client: status 0x%x", st);
	ck_assert(alive(daemon_pid));
	ck_assert(log_has_soon("outside every region"));
}
END_TEST

/* A region declaring a page size the kernel has no memory in is refused, at once. */
struct page_size_case {
	const char *mem;   /* NULL: the 12 MiB file; else a sparse file of size bytes here */
	uint64_t size, page_size;
};

static void client_page_size(void *arg)
{
	const struct page_size_case *pc = arg;
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	struct uffdio_register reg;
	size_t len = (size_t)(2 * pc->size);
	uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uintptr_t base = ((uintptr_t)m + pc->page_size - 1) & ~(uintptr_t)(pc->page_size - 1);
	char json[256];
	int uffd, s, n;

	uffd = upt_open_uffd();
	if (m == MAP_FAILED || uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0)
		_exit(140);
	reg = (struct uffdio_register){ .range = { base, pc->size },
					.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		_exit(141);
	n = snprintf(json, sizeof(json),
		     "[{\"base_host_virt_addr\":%lu,\"size\":%llu,\"offset\":0,\"page_size\":%llu}]",
		     (unsigned long)base, (unsigned long long)pc->size,
		     (unsigned long long)pc->page_size);
	s = connect_handler();
	if (send_with_fd(s, json, (size_t)n, uffd) != n)
		_exit(142);
	_exit(wait_closed(s, 5000) ? 143 : 0);
}

static bool hugetlb_pages(uint64_t size)
{
	char path[128];
	long n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%llukB/nr_hugepages",
		 (unsigned long long)(size >> 10));
	f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = 0;
		fclose(f);
	}
	return n > 0;
}

START_TEST(page_size_not_the_kernels)
{
	static const struct page_size_case cases[] = {
		{ NULL, 64 << 10, 8192 },        /* a power of two, no page size of any kernel */
		{ "big", 1ull << 30, 1ull << 30 }, /* 1 GiB, with no 1 GiB huge pages */
	};
	const struct page_size_case *pc = &cases[_i];
	char line[128];
	int st;

	if (pc->mem) {
		int fd;

		snprintf(mem_path, sizeof(mem_path), "%s/%s", dir, pc->mem);
		fd = open(mem_path, O_CREAT | O_WRONLY, 0600);
		ck_assert_int_eq(ftruncate(fd, (off_t)pc->size), 0);
		close(fd);
		upt_daemon_kill(daemon_pid);
		daemon_pid = start_handler(mem_path, NULL);
	}
	if (hugetlb_pages(pc->page_size)) {
		printf("SKIP page_size_not_the_kernels %d: this machine has %llu-byte huge pages\n",
		       _i, (unsigned long long)pc->page_size);
		return;
	}
	st = upt_child(client_page_size, (void *)pc, 20);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client: status 0x%x", st);
	snprintf(line, sizeof(line), "page size %llu is not", (unsigned long long)pc->page_size);
	ck_assert_msg(log_has(line), "no log line naming page size %llu",
		      (unsigned long long)pc->page_size);
	ck_assert(alive(daemon_pid));
}
END_TEST

/* A handshake that can never become valid closes that client at once, saying why. */
static void client_doomed(void *arg)
{
	struct guest g;
	const char *json = arg;
	int s;

	guest_start(&g, false);
	close(g.sock);
	s = connect_handler();
	if (send_with_fd(s, json, strlen(json), g.uffd) < 0)
		_exit(150);
	/* Closed before the 2 s read timeout. */
	_exit(wait_closed(s, 1500) ? 151 : 0);
}

START_TEST(doomed_handshake_closed_at_once)
{
	static const char *const docs[] = {
		"[{\"size\":4096}",
		"[{\"size\":4096,\"size\":",
		"[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4096,"
		"\"page_size_kib\":8192}",
	};
	int st = upt_child(client_doomed, (void *)docs[_i], 20);

	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client %d: status 0x%x", _i, st);
	ck_assert_msg(!log_has("no handshake within"), "closed at the timeout, not at once");
	ck_assert(log_has(_i == 0 ? "lacks" : _i == 1 ? "twice" : "disagree"));
}
END_TEST

/*
 * SIGHUP in handle mode reopens the log as serve does, and says how it went
 * in the log: a FIFO put at the log's path is refused (it would block the
 * daemon), the old file logs on and says so; a regular file is taken.
 */
START_TEST(sighup_reopens_log)
{
	char moved[160];
	bool said = false;

	snprintf(moved, sizeof(moved), "%s.1", log_path);
	ck_assert_int_eq(rename(log_path, moved), 0);
	ck_assert_int_eq(mkfifo(log_path, 0600), 0);
	ck_assert_int_eq(kill(daemon_pid, SIGHUP), 0);
	for (int i = 0; i < 500 && !said; i++) {
		char text[1 << 14];
		int fd = open(moved, O_RDONLY);
		ssize_t n = fd >= 0 ? read(fd, text, sizeof(text) - 1) : -1;

		if (fd >= 0)
			close(fd);
		text[n > 0 ? n : 0] = '\0';
		said = strstr(text, "cannot reopen the log: not a regular file") != NULL;
		if (!said)
			usleep(10 * 1000);
	}
	ck_assert_msg(said, "no line about the refused reopen in the old log within 5 s");
	ck_assert(alive(daemon_pid));
	ck_assert_int_eq(unlink(log_path), 0);
	ck_assert_int_eq(kill(daemon_pid, SIGHUP), 0);
	for (int i = 0; i < 500 && !log_has("SIGHUP: log reopened"); i++)
		usleep(10 * 1000);
	ck_assert_msg(log_has("SIGHUP: log reopened"), "the new log does not say it was reopened");
}
END_TEST

/*
 * A sequential window that meets a page already there (here one the client
 * placed itself, as another fill may have) wakes its waiters and goes on
 * past it, and the client's counters say what was placed: every page
 * served once, the discarded one as a zero page, the one outside every
 * region as failed. Pages 0, 1, 3, 100, 200 (discarded) and the outside one
 * fault; 1 fills 1-2, 3 fills 3-6 but 5.
 */
static void client_window_past_present(void *arg)
{
	struct sigaction sa = { .sa_handler = on_bus, .sa_flags = SA_NODEFER };
	struct guest g;
	uint8_t *mine = malloc(UPT_PAGE);
	struct uffdio_copy cp;
	unsigned char in_core = 0;

	(void)arg;
	guest_start_with(&g, false, 1);
	if (check_file(&g, 0, UPT_PAGE))
		_exit(120);
	memset(mine, 0xEE, UPT_PAGE);
	cp = (struct uffdio_copy){ .dst = (uintptr_t)(g.mem + 5 * UPT_PAGE),
				   .src = (uintptr_t)mine, .len = UPT_PAGE };
	if (ioctl(g.uffd, UFFDIO_COPY, &cp) < 0)
		_exit(121);
	if (check_file(&g, UPT_PAGE, UPT_PAGE) || check_file(&g, 3 * UPT_PAGE, UPT_PAGE))
		_exit(122);
	/* Woken once pages 3-4 are in, it waits for the rest of that fill
	 * here: upagerd serves this fault only after it. */
	if (check_file(&g, 100 * UPT_PAGE, UPT_PAGE))
		_exit(123);
	if (mincore(g.mem + 6 * UPT_PAGE, UPT_PAGE, &in_core) || !(in_core & 1))
		_exit(124); /* the fill stopped at page 5 */
	if (madvise(g.mem + 200 * UPT_PAGE, UPT_PAGE, MADV_DONTNEED) ||
	    upt_check_zero(g.mem + 200 * UPT_PAGE, UPT_PAGE) >= 0)
		_exit(125);
	if (check_file(&g, 2 * UPT_PAGE, 2 * UPT_PAGE) || check_file(&g, 6 * UPT_PAGE, UPT_PAGE) ||
	    memcmp(g.mem + 5 * UPT_PAGE, mine, UPT_PAGE))
		_exit(126);
	sigaction(SIGBUS, &sa, NULL);
	if (sigsetjmp(bus_jmp, 1) == 0) {
		(void)*(volatile uint8_t *)(g.mem + g.len);
		_exit(127);
	}
	_exit(0);
}

START_TEST(window_past_page_already_there)
{
	const char *line = "6 faults, 8 pages (1 zero), 1 removes, 0 retried, 1 failed";

	expect_ok(client_window_past_present, NULL);
	for (int i = 0; i < 500 && !log_has("closed its socket"); i++)
		usleep(10 * 1000);
	ck_assert_msg(log_has(line), "the client's counters are not \"%s\"", line);
}
END_TEST

static void client_touch_first(void *arg)
{
	struct guest g;

	(void)arg;
	guest_start(&g, false);
	(void)*(volatile uint8_t *)g.mem;
	_exit(130);
}

/*
 * The memory file cut short under upagerd: the copy from its mapping fails
 * (EFAULT, the source unreadable), and the access gets SIGBUS rather than
 * waiting for ever.
 */
START_TEST(memory_file_truncated)
{
	int st;

	ck_assert_int_eq(truncate(mem_path, 0), 0);
	st = upt_child(client_touch_first, NULL, 30);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "status 0x%x", st);
	ck_assert(log_has_soon("Bad address: the access gets SIGBUS"));
	ck_assert(alive(daemon_pid));
}
END_TEST

/* ---- the memory file at a URL: a real nginx on loopback ---- */

/* upt_byte drops a seed's low 29 bits from most bytes: far from SEED */
#define NEW_SEED 0xC0FFEE00u
#define KILL_AFTER 8 /* faults the first worker serves in the failover tests */

static char url_raw[160];

/* nginx's count of answers with status, once it is want (or 2 s passed):
 * its log line may be written after the client has the bytes. */
static size_t nginx_seen(int status, size_t want)
{
	for (int i = 0; i < 200 && upt_nginx_requests(&ngx, status) < want; i++)
		usleep(10000);
	return upt_nginx_requests(&ngx, status);
}

/* The opens nginx saw: each asks for the object's first 4 KiB (its answer
 * pins the version; a snapshot's header). */
static size_t nginx_opens(void)
{
	FILE *f = fopen(ngx.log, "r");
	char line[1024];
	size_t n = 0;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		n += strstr(line, "range=bytes=0-4095") != NULL;
	fclose(f);
	return n;
}

static void url_setup(void)
{
	make_files();
	no_nginx = upt_nginx_start(&ngx);
	if (no_nginx)
		return;
	upt_nginx_put(&ngx, "mem.raw", MEM_SIZE, SEED, 0); /* mem_path's bytes */
	make_snapshot();
	url_put_snapshot();
	snprintf(url_raw, sizeof(url_raw), "http://127.0.0.1:%d/mem.raw", ngx.port);
	snprintf(url_snap, sizeof(url_snap), "http://127.0.0.1:%d/mem.snap", ngx.port);
}

static void url_teardown(void)
{
	teardown();
	if (!no_nginx)
		upt_nginx_stop(&ngx);
}

/* Every byte of a raw image at a URL, and discarded pages zero; with the
 * supervisor, and without (_i 1: the object opened once, at start). */
START_TEST(url_raw_every_byte)
{
	UPT_NEED_NGINX(no_nginx);
	no_supervisor = _i == 1;
	daemon_pid = start_handler(url_raw, NULL);
	expect_ok(client_full, NULL);
	ck_assert(log_has_soon("raw memory file at a URL"));
	ck_assert_uint_ge(nginx_seen(206, 3), 3); /* its 4 MiB chunks */
	ck_assert_uint_eq(upt_nginx_requests(&ngx, 412), 0);
	/* Its opens: the supervisor's pin and the worker's, or one. */
	ck_assert_uint_eq(nginx_opens(), no_supervisor ? 1 : 2);
	ck_assert_uint_eq(upt_nginx_requests(&ngx, 200), 0); /* no HEAD, no whole body */
}
END_TEST

/* A snapshot page at a URL failing its CRC32C: SIGBUS, never its bytes. */
START_TEST(url_corrupt_page_sigbus)
{
	UPT_NEED_NGINX(no_nginx);
	corrupt_snapshot_gives_sigbus(NULL, true);
}
END_TEST

/* A snapshot at a URL: stored pages checked, zero and absent ones zero. */
START_TEST(url_snapshot_every_byte)
{
	UPT_NEED_NGINX(no_nginx);
	daemon_pid = start_handler(url_snap, NULL);
	expect_ok(client_snapshot, NULL);
	ck_assert(log_has_soon("upager snapshot at a URL"));
}
END_TEST

/*
 * Reads the first pages of region 1 (the object's first chunk), replaces
 * the object with other bytes, then touches region 0 (its last chunk, not
 * fetched yet): that access must end in SIGBUS, never in the new bytes.
 */
static void client_object_replaced(void *arg)
{
	struct guest g;

	(void)arg;
	guest_start(&g, false);
	if (check_file(&g, R0_LEN, 4 * UPT_PAGE))
		_exit(40);
	upt_nginx_put(&ngx, "mem.raw", MEM_SIZE, NEW_SEED, 100);
	if (check_file(&g, 0, UPT_PAGE))
		_exit(41); /* bytes, but wrong ones */
	_exit(0); /* bytes of the old version: the object was not asked again */
}

static void expect_sigbus(void (*fn)(void *), void *arg)
{
	int st = upt_child(fn, arg, 60);

	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "client: status 0x%x (exit %d)",
		      st, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

START_TEST(url_object_replaced_sigbus)
{
	UPT_NEED_NGINX(no_nginx);
	daemon_pid = start_handler(url_raw, NULL);
	expect_sigbus(client_object_replaced, NULL);
	ck_assert_uint_ge(nginx_seen(412, 1), 1);
	ck_assert(log_has_soon("no longer the version pinned at start"));
	ck_assert(alive(daemon_pid));
}
END_TEST

/* The first worker dies at its KILL_AFTERth fault; the next serves the rest. */
START_TEST(url_worker_killed_same_version)
{
	char env[64];

	UPT_NEED_NGINX(no_nginx);
	snprintf(env, sizeof(env), "UPAGERD_TEST_KILL_AFTER_FAULT=%d", KILL_AFTER);
	daemon_pid = start_handler(url_raw, env);
	expect_ok(client_full, NULL);
	ck_assert(log_has_soon("adopted"));
	ck_assert_uint_eq(upt_nginx_requests(&ngx, 412), 0);
}
END_TEST

/*
 * The object is replaced, then the worker dies (at the client's
 * KILL_AFTERth fault): the worker the supervisor starts must not serve the
 * new object, whose bytes the client would then read, but fail the fault.
 */
static void client_replaced_then_killed(void *arg)
{
	struct guest g;

	(void)arg;
	guest_start(&g, false);
	if (check_file(&g, R0_LEN, (KILL_AFTER - 1) * UPT_PAGE))
		_exit(50);
	upt_nginx_put(&ngx, "mem.raw", MEM_SIZE, NEW_SEED, 100);
	/* Its first chunk is in the dead worker's memory alone: a new worker
	 * would fetch it again, from the new object. */
	if (check_file(&g, R0_LEN + (KILL_AFTER - 1) * UPT_PAGE, UPT_PAGE))
		_exit(51); /* bytes of the new object */
	_exit(0);
}

START_TEST(url_worker_restarted_keeps_version)
{
	char env[64];

	UPT_NEED_NGINX(no_nginx);
	snprintf(env, sizeof(env), "UPAGERD_TEST_KILL_AFTER_FAULT=%d", KILL_AFTER);
	daemon_pid = start_handler(url_raw, env);
	expect_sigbus(client_replaced_then_killed, NULL);
	ck_assert(log_has_soon("cannot open the version pinned at start"));
	ck_assert(alive(daemon_pid));
}
END_TEST

/*
 * A server that stops sending in the middle of a chunk: the fault waits
 * --url-deadline (1 s), then its access gets SIGBUS; the daemon goes on.
 */
START_TEST(url_stalled_server_sigbus)
{
	char url[160], ready[256];
	const char *args[] = { "handle", "--socket", sock_path, "--mem-file", url,
			       "--url-deadline", "1", "--log-file", log_path, "--log-level", "info",
			       NULL };
	pid_t fake = upt_fake_http_start("stallbig", MEM_SIZE, SEED, url, sizeof(url));

	daemon_pid = upt_upagerd(args, NULL, ready, sizeof(ready));
	expect_sigbus(client_touch_first, NULL);
	ck_assert(log_has_soon("no answer from the URL within --url-deadline"));
	ck_assert(alive(daemon_pid));
	kill(fake, SIGKILL);
	waitpid(fake, NULL, 0);
}
END_TEST

/*
 * A URL that cannot be served (404, 403, nothing listening) is said in one
 * line naming it (as shown: no user info, no query, which may hold
 * secrets), with a non-zero exit, before any client is accepted.
 */
static void url_refused(const char *url, const char *expect)
{
	const char *args[] = { "handle", "--socket", sock_path, "--mem-file", url, NULL };
	char err[4096];
	int pfd[2], st;
	ssize_t n = 0, r;
	pid_t pid;

	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char *argv[8] = { "upagerd" };

		for (int k = 0; args[k]; k++)
			argv[k + 1] = (char *)args[k];
		dup2(pfd[1], 2);
		execv("daemon/upagerd", argv);
		_exit(127);
	}
	close(pfd[1]);
	while (n < (ssize_t)sizeof(err) - 1 && (r = read(pfd[0], err + n, sizeof(err) - 1 - n)) > 0)
		n += r;
	close(pfd[0]);
	err[n] = '\0';
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) != 0, "%s: status 0x%x", url, st);
	ck_assert_msg(strstr(err, expect), "%s: said \"%s\"", url, err);
	ck_assert_msg(!strstr(err, "s3cret"), "a secret said: %s", err);
	ck_assert_msg(strchr(err, '\n') == err + n - 1, "not one line: %s", err);
	ck_assert_int_ne(access(sock_path, F_OK), 0); /* never listened */
}

START_TEST(url_not_there_refused)
{
	char url[200], expect[sizeof(url) + 16];

	UPT_NEED_NGINX(no_nginx);
	snprintf(url, sizeof(url), "http://user:s3cret@127.0.0.1:%d/missing.raw?X-Amz-Signature=s3cret",
		 ngx.port);
	snprintf(expect, sizeof(expect), "http://127.0.0.1:%d/missing.raw: HTTP 404", ngx.port);
	url_refused(url, expect);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/forbidden/mem.raw", ngx.port);
	snprintf(expect, sizeof(expect), "%s: HTTP 403", url);
	url_refused(url, expect);
	/* Nothing listens there. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/mem.raw", upt_free_port());
	url_refused(url, url);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("handle");
	TCase *tc = upt_tcase(s, "handshake");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, every_page_and_remove);
	tcase_add_test(tc, old_page_size_kib_field);
	tcase_add_test(tc, extra_descriptors_named);
	tcase_add_test(tc, snapshot_file);
	upt_add(tc, corrupt_page_sigbus, UPAGER_FEAT_POISON, "UFFDIO_POISON (Linux 6.6)");
	tcase_add_test(tc, corrupt_page_sigbus_fallback);
	tcase_add_test(tc, many_clients);
	tcase_add_test(tc, spinning_clients);
	tcase_add_test(tc, client_killed_mid_restore);
	tcase_add_loop_test(tc, hostile_clients, 0, (int)(sizeof(bads) / sizeof(bads[0])));
	tcase_add_test(tc, fuzzed_handshakes);
	tcase_add_test(tc, bytes_after_handshake);
	tcase_add_test(tc, window_past_page_already_there);
	tcase_add_test(tc, memory_file_truncated);
	tcase_add_test(tc, sigterm_drains);
	tcase_add_test(tc, sighup_reopens_log);
	tcase_add_test(tc, bad_command_lines);
	tcase_add_test(tc, max_clients_wait);
	upt_add(tc, remap_and_unmap, UPAGER_FEAT_EVENT_REMAP | UPAGER_FEAT_EVENT_UNMAP,
		"UFFD_FEATURE_EVENT_REMAP/UNMAP");
	if (upt_features() & UPAGER_FEAT_USER_ONLY)
		printf("SKIP kernel_access: only a user-mode-only userfaultfd here (no access to "
		       "/dev/userfaultfd, vm.unprivileged_userfaultfd=0): faults the kernel takes "
		       "in guest memory (read(2), a VM monitor's KVM) are not reported to upagerd\n");
	else
		tcase_add_test(tc, kernel_access);
	tc = upt_tcase(s, "refusals");
	tcase_add_checked_fixture(tc, setup, teardown);
	upt_add(tc, unservable_fault_while_removing, UPAGER_FEAT_POISON, "UFFDIO_POISON (Linux 6.6)");
	if (geteuid() == 0) {
		tcase_add_test(tc, client_in_other_pidns);
		tcase_add_loop_test(tc, client_in_child_pidns_gets_sigbus, 0, 2);
	} else {
		printf("SKIP client_in_other_pidns, client_in_child_pidns_gets_sigbus: need root for "
		       "a pid namespace\n");
	}
	tcase_add_loop_test(tc, page_size_not_the_kernels, 0, 2);
	tcase_add_loop_test(tc, doomed_handshake_closed_at_once, 0, 3);
	tc = upt_tcase(s, "url");
	tcase_add_checked_fixture(tc, url_setup, url_teardown);
	tcase_add_loop_test(tc, url_raw_every_byte, 0, 2);
	tcase_add_test(tc, url_snapshot_every_byte);
	tcase_add_test(tc, url_corrupt_page_sigbus);
	tcase_add_test(tc, url_object_replaced_sigbus);
	tcase_add_test(tc, url_worker_killed_same_version);
	tcase_add_test(tc, url_worker_restarted_keeps_version);
	tcase_add_test(tc, url_not_there_refused);
	tcase_add_test(tc, url_stalled_server_sigbus);
	tc = upt_tcase(s, "huge");
	tcase_add_checked_fixture(tc, setup, teardown);
	if (free_huge_pages() >= 4)
		tcase_add_test(tc, huge_pages);
	else
		printf("SKIP huge_pages: fewer than 4 free 2 MiB huge pages "
		       "(echo 8 > /proc/sys/vm/nr_hugepages to run it)\n");
	return s;
}

int main(void)
{
	return upt_main(suite);
}
