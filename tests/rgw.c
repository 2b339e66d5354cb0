/* SPDX-License-Identifier: MIT */
/* A real Ceph RADOS Gateway (S3) on loopback for the URL tests (tests/rgw.h). */
#include "config.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "rgw.h"

#ifndef RGW_DEADLINE_MS
#define RGW_DEADLINE_MS 55000 /* the whole start, every attempt included */
#endif
#ifndef RGW_MEMSTORE
/* The OSD's memory: a full one (95%) makes writes wait, not fail; it holds
 * about twice the bytes stored. */
#define RGW_MEMSTORE (512u << 20)
#endif

static const char *tool(const char *name)
{
	static const char *const dirs[] = { "/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin" };
	static char path[16][64];
	static unsigned next;
	char *p = path[next++ % 16];

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(p, sizeof(path[0]), "%s/%s", dirs[i], name);
		if (access(p, X_OK) == 0)
			return p;
	}
	return NULL;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static int random_bytes(void *buf, size_t len)
{
	for (size_t got = 0; got < len;) {
		ssize_t r = getrandom((char *)buf + got, len - got, 0);

		if (r < 0 && errno != EINTR)
			return -1;
		if (r > 0)
			got += (size_t)r;
	}
	return 0;
}

/* len characters of set, NUL-terminated (buf has len + 1 bytes). */
static int random_text(char *buf, size_t len, const char *set)
{
	size_t n = strlen(set);

	if (random_bytes(buf, len))
		return -1;
	for (size_t i = 0; i < len; i++)
		buf[i] = set[(unsigned char)buf[i] % n];
	buf[len] = 0;
	return 0;
}

static int random_uuid(char out[37])
{
	uint8_t b[16];

	if (random_bytes(b, sizeof(b)))
		return -1;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
	return 0;
}

/*
 * A cephx secret as ceph-authtool --gen-key writes it: base64 of
 * { le16 type = 1 (AES), le32 sec, le32 nsec, le16 length = 16, 16 random bytes }.
 */
static int cephx_key(char out[41])
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint8_t k[28];
	uint32_t sec = (uint32_t)time(NULL);
	size_t o = 0;

	memset(k, 0, sizeof(k));
	k[0] = 1;
	for (int i = 0; i < 4; i++)
		k[2 + i] = (uint8_t)(sec >> (8 * i));
	k[10] = 16;
	if (random_bytes(k + 12, 16))
		return -1;
	for (size_t i = 0; i < sizeof(k); i += 3) {
		uint32_t v = (uint32_t)k[i] << 16;

		if (i + 1 < sizeof(k))
			v |= (uint32_t)k[i + 1] << 8;
		if (i + 2 < sizeof(k))
			v |= k[i + 2];
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = i + 1 < sizeof(k) ? b64[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < sizeof(k) ? b64[v & 63] : '=';
	}
	out[o] = 0;
	return 0;
}

static int connect_to(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons((uint16_t)port) };
	struct timeval tv = { 1, 0 }; /* connect too: a full backlog must not hang us */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) ||
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
			connect(fd, (struct sockaddr *)&a, sizeof(a)))) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static int listening(int port)
{
	int fd = connect_to(port);

	if (fd >= 0)
		close(fd);
	return fd >= 0;
}

/* Whether an HTTP server on port answers GET / (with anything) within a second. */
static int http_answers(int port)
{
	static const char req[] = "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
	char buf[16];
	ssize_t n = 0;
	int fd = connect_to(port);

	if (fd < 0)
		return 0;
	if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) == (ssize_t)sizeof(req) - 1)
		n = recv(fd, buf, sizeof(buf), 0);
	close(fd);
	return n >= 7 && !memcmp(buf, "HTTP/1.", 7);
}

/* Forks argv[0] with stdout and stderr appended to dir/log, stdin /dev/null,
 * no other descriptor, killed when the calling thread goes. */
static pid_t spawn(const struct upt_rgw *g, const char *log, const char *const argv[])
{
	extern char **environ;
	pid_t parent = getpid(), pid;
	size_t n = 0, k = 0;
	char path[128], **env;

	/* Only our ceph.conf: no CEPH_ARGS or CEPH_CONF (made here: the child
	 * of a threaded process may only make async-signal-safe calls). */
	while (environ[n])
		n++;
	env = malloc((n + 1) * sizeof(*env));
	if (!env)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "CEPH_ARGS=", 10) && strncmp(environ[i], "CEPH_CONF=", 10))
			env[k++] = environ[i];
	env[k] = NULL;
	snprintf(path, sizeof(path), "%s/%s", g->dir, log);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY), out;

		if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
			_exit(126);
		out = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (null < 0 || out < 0)
			_exit(126);
		dup2(null, 0);
		dup2(out, 1);
		dup2(out, 2);
#ifdef SYS_close_range
		if (syscall(SYS_close_range, 3U, ~0U, 0U))
#endif
			for (int fd = 3; fd < 1024; fd++)
				close(fd);
		execve(argv[0], (char *const *)argv, env);
		_exit(127);
	}
	free(env);
	return pid;
}

/* Whether *pid still runs; -1 in *pid once reaped. */
static int alive(pid_t *pid)
{
	if (*pid <= 0)
		return 0;
	if (waitpid(*pid, NULL, WNOHANG) == *pid) {
		*pid = -1;
		return 0;
	}
	return 1;
}

static void reap(pid_t *pid)
{
	if (*pid > 0) {
		kill(*pid, SIGKILL);
		while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	*pid = -1;
}

/* Waits for a tool spawned earlier, killed past end: 0 if it exited 0. */
static int finish(pid_t pid, long long end)
{
	int status;

	if (pid < 0)
		return -1;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
		if (r < 0 && errno != EINTR)
			return -1;
		if (now_ms() >= end) {
			reap(&pid);
			return -1;
		}
		nap_ms(5);
	}
}

/* Runs a tool to its end, killed past timeout_ms (and past the deadline): 0 if it exited 0. */
static int run(const struct upt_rgw *g, const char *log, const char *const argv[],
	       long long timeout_ms, long long deadline)
{
	long long end = now_ms() + timeout_ms;

	return finish(spawn(g, log, argv), end < deadline ? end : deadline);
}

/* Why it failed, with the last line of dir/log (read before dir goes). */
static const char *why(const struct upt_rgw *g, const char *what, const char *log)
{
	static char reason[384];
	char path[128], line[256], last[256] = "";
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", g->dir, log);
	f = fopen(path, "r");
	if (f) {
		while (fgets(line, sizeof(line), f))
			if (line[0] != '\n' && line[0])
				snprintf(last, sizeof(last), "%s", line);
		fclose(f);
	}
	last[strcspn(last, "\n")] = 0;
	snprintf(reason, sizeof(reason), "%s%s%s", what, last[0] ? ": " : "", last);
	return reason;
}

static int write_file(const struct upt_rgw *g, const char *name, const char *text)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", g->dir, name);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static int write_conf(const struct upt_rgw *g, const char *fsid, int mon_port)
{
	char text[2048];

	snprintf(text, sizeof(text),
		 "[global]\n"
		 "fsid = %2$s\n"
		 "mon host = 127.0.0.1:%3$d\n"
		 "auth cluster required = cephx\n"
		 "auth service required = cephx\n"
		 "auth client required = cephx\n"
		 "keyring = %1$s/keyring\n"
		 "log file = %1$s/$name.log\n"
		 "admin socket = %1$s/$name.asok\n"
		 "pid file = %1$s/$name.pid\n"
		 "run dir = %1$s\n"
		 "crash dir = %1$s/crash\n"
		 "osd pool default size = 1\n"
		 "osd pool default min size = 1\n"
		 "osd pool default pg num = 8\n"
		 "osd pool default pgp num = 8\n"
		 "mon allow pool size one = true\n"
		 "mon warn on pool no redundancy = false\n"
		 "osd crush chooseleaf type = 0\n"
		 "objecter tick interval = 0.2\n"
		 "[mon]\n"
		 "mon data = %1$s/mon\n"
		 "paxos propose interval = 0.05\n"
		 "mon data avail crit = 0\n"
		 "[osd]\n"
		 "osd data = %1$s/osd\n"
		 "osd objectstore = memstore\n"
		 "memstore device bytes = %5$u\n"
		 "public addr = 127.0.0.1\n"
		 "cluster addr = 127.0.0.1\n"
		 "[client.rgw]\n"
		 "rgw data = %1$s/rgw\n"
		 "rgw frontends = beast endpoint=127.0.0.1:%4$d tcp_nodelay=1\n"
		 "rgw thread pool size = 64\n",
		 g->dir, fsid, mon_port, g->port, RGW_MEMSTORE);
	return write_file(g, "ceph.conf", text);
}

/* Every key in one keyring, the daemons' and the tools': a throwaway cluster. */
static int write_keyring(const struct upt_rgw *g)
{
	static const struct {
		const char *name, *caps;
	} ent[] = {
		{ "mon.", "\tcaps mon = \"allow *\"\n" },
		{ "client.admin", "\tcaps mon = \"allow *\"\n\tcaps osd = \"allow *\"\n"
				  "\tcaps mgr = \"allow *\"\n" },
		{ "osd.0", "\tcaps mon = \"allow profile osd\"\n\tcaps osd = \"allow *\"\n"
			   "\tcaps mgr = \"allow profile osd\"\n" },
		{ "client.rgw", "\tcaps mon = \"allow rw\"\n\tcaps osd = \"allow rwx\"\n"
				"\tcaps mgr = \"allow rw\"\n" },
	};
	char text[2048], key[41];
	size_t o = 0;

	for (size_t i = 0; i < sizeof(ent) / sizeof(ent[0]); i++) {
		if (cephx_key(key))
			return -1;
		o += (size_t)snprintf(text + o, sizeof(text) - o, "[%s]\n\tkey = %s\n%s", ent[i].name,
				      key, ent[i].caps);
		if (o >= sizeof(text))
			return -1;
	}
	return write_file(g, "keyring", text);
}

static void kill_all(struct upt_rgw *g)
{
	reap(&g->rgw);
	reap(&g->osd);
	reap(&g->mon);
}

static void remove_dir(struct upt_rgw *g)
{
	char cmd[128];

	if (g->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g->dir);
		if (system(cmd) != 0) {
			/* best effort */
		}
	}
	g->dir[0] = 0;
}

/* Removes the directories of earlier runs whose process is gone (killed
 * before it could stop them: its daemons died with it). */
static void sweep(void)
{
	DIR *d = opendir("/tmp");
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char path[128], cmd[160];
		FILE *f;
		int pid = 0;

		if (strncmp(e->d_name, "upager-rgw-", 11) || strlen(e->d_name) != 17)
			continue;
		snprintf(path, sizeof(path), "/tmp/%s/owner", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue; /* not ours, or just being made */
		if (fscanf(f, "%d", &pid) == 1 && pid > 0 && kill(pid, 0) && errno == ESRCH) {
			snprintf(cmd, sizeof(cmd), "rm -rf '/tmp/%s'", e->d_name);
			if (system(cmd) != 0) {
				/* best effort */
			}
		}
		fclose(f);
	}
	closedir(d);
}

/* One try in a new directory; NULL, or why not with *again set if another try may do. */
/* *osd_mkfs: ceph-osd --mkfs while it runs, for the caller to reap if this fails. */
static const char *attempt(struct upt_rgw *g, long long deadline, int *again, pid_t *osd_mkfs)
{
	const char *mon = tool("ceph-mon"), *osd = tool("ceph-osd"), *rgw = tool("radosgw");
	const char *admin = tool("radosgw-admin"), *ceph = tool("ceph");
	const char *monmaptool = tool("monmaptool");
	static const char *const subdirs[] = { "mon", "osd", "rgw" };
	char conf[96], keyring[96], monmap[96], mon_addr[64], fsid[37], osd_uuid[37];
	char ak[80], sk[80], sub[96];
	int mon_port, mkfs_failed;

	*again = 0;
	snprintf(g->dir, sizeof(g->dir), "/tmp/upager-rgw-XXXXXX");
	if (!mkdtemp(g->dir)) {
		g->dir[0] = 0;
		return "cannot make a directory for ceph under /tmp";
	}
	snprintf(conf, sizeof(conf), "%s/ceph.conf", g->dir);
	snprintf(keyring, sizeof(keyring), "%s/keyring", g->dir);
	snprintf(monmap, sizeof(monmap), "%s/monmap", g->dir);
	for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		snprintf(sub, sizeof(sub), "%s/%s", g->dir, subdirs[i]);
		mkdir(sub, 0700);
	}

	mon_port = upt_free_port();
	do
		g->port = upt_free_port();
	while (g->port == mon_port && g->port > 0);
	if (mon_port < 0 || g->port < 0)
		return "no free loopback port";
	snprintf(g->endpoint, sizeof(g->endpoint), "http://127.0.0.1:%d", g->port);
	if (random_uuid(fsid) || random_uuid(osd_uuid) ||
	    random_text(g->access_key, 20, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") ||
	    random_text(g->secret_key, 40,
			"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))
		return "no random bytes";
	snprintf(sub, sizeof(sub), "%d\n", (int)getpid());
	if (write_file(g, "owner", sub) || write_conf(g, fsid, mon_port) || write_keyring(g))
		return "cannot write ceph.conf or its keyring";

	{
		/* Needs no monitor: meanwhile. */
		const char *const argv[] = { osd, "-c", conf, "-i", "0", "--mkfs", "--osd-uuid",
					     osd_uuid, NULL };

		*osd_mkfs = spawn(g, "osd-mkfs.out", argv);
	}
	snprintf(mon_addr, sizeof(mon_addr), "127.0.0.1:%d", mon_port);
	{
		const char *const argv[] = { monmaptool, "--create", "--add", "a", mon_addr, "--fsid",
					     fsid, monmap, NULL };

		if (run(g, "setup.out", argv, 10000, deadline))
			return why(g, "monmaptool --create failed", "setup.out");
	}
	{
		const char *const argv[] = { mon, "-c", conf, "--mkfs", "-i", "a", "--monmap", monmap,
					     "--keyring", keyring, NULL };

		if (run(g, "setup.out", argv, 15000, deadline))
			return why(g, "ceph-mon --mkfs failed", "setup.out");
	}
	{
		const char *const argv[] = { mon, "-f", "-i", "a", "-c", conf, NULL };

		g->mon = spawn(g, "mon.out", argv);
		if (g->mon < 0)
			return "cannot fork";
	}
	while (!listening(mon_port)) {
		if (!alive(&g->mon)) {
			*again = 1; /* its port taken, most likely */
			return why(g, "ceph-mon exited", "mon.a.log");
		}
		if (now_ms() >= deadline)
			return why(g, "ceph-mon did not listen in time", "mon.a.log");
		nap_ms(5);
	}
	{
		const char *const argv[] = { ceph, "-c", conf, "--connect-timeout", "20",
					     "osd", "new", osd_uuid, "0", NULL };

		if (run(g, "setup.out", argv, 25000, deadline)) {
			if (alive(&g->mon))
				return why(g, "ceph osd new failed", "setup.out");
			*again = 1; /* it lost its port after all */
			return why(g, "ceph-mon exited", "mon.a.log");
		}
	}
	mkfs_failed = finish(*osd_mkfs, deadline);
	*osd_mkfs = -1; /* reaped */
	if (mkfs_failed)
		return why(g, "ceph-osd --mkfs failed", "osd-mkfs.out");
	{
		const char *const argv[] = { osd, "-f", "-i", "0", "-c", conf, NULL };

		g->osd = spawn(g, "osd.out", argv);
		if (g->osd < 0)
			return "cannot fork";
	}
	{
		const char *const argv[] = { rgw, "-f", "-n", "client.rgw", "-c", conf, NULL };

		g->rgw = spawn(g, "rgw.out", argv);
		if (g->rgw < 0)
			return "cannot fork";
	}
	while (!http_answers(g->port)) {
		if (!alive(&g->mon))
			return why(g, "ceph-mon exited", "mon.a.log");
		if (!alive(&g->osd))
			return why(g, "ceph-osd exited", "osd.0.log");
		if (!alive(&g->rgw)) {
			*again = 1;
			return why(g, "radosgw exited", "client.rgw.log");
		}
		if (now_ms() >= deadline)
			return why(g, "radosgw did not answer in time", "client.rgw.log");
		nap_ms(10);
	}
	snprintf(ak, sizeof(ak), "--access-key=%s", g->access_key);
	snprintf(sk, sizeof(sk), "--secret=%s", g->secret_key);
	{
		const char *const argv[] = { admin, "-c", conf, "-n", "client.admin", "user", "create",
					     "--uid=upt", "--display-name=upt", ak, sk, NULL };

		if (run(g, "admin.out", argv, 25000, deadline))
			return why(g, "radosgw-admin user create failed", "admin.out");
	}
	return NULL;
}

const char *upt_rgw_start(struct upt_rgw *g)
{
	static const char *const need[] = { "ceph-mon", "ceph-osd", "radosgw", "radosgw-admin",
					    "ceph", "monmaptool" };
	long long deadline = now_ms() + RGW_DEADLINE_MS;
	const char *err = NULL;
	int again = 1;

	memset(g, 0, sizeof(*g));
	g->mon = g->osd = g->rgw = -1;
	sweep();
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (!tool(need[i]))
			return "ceph not installed (Debian: apt-get install --no-install-recommends "
			       "ceph-mon ceph-osd radosgw ceph-common)";
	for (int i = 0; i < 3 && again && now_ms() < deadline; i++) {
		pid_t osd_mkfs = -1;

		err = attempt(g, deadline, &again, &osd_mkfs);
		if (!err)
			return NULL;
		reap(&osd_mkfs);
		kill_all(g);
		remove_dir(g);
	}
	return err ? err : "ceph did not start in time";
}

void upt_rgw_stop(struct upt_rgw *g)
{
	kill_all(g);
	remove_dir(g);
}

struct put_body {
	size_t size, off;
	unsigned seed;
};

static size_t put_read(char *buf, size_t size, size_t n, void *arg)
{
	struct put_body *b = arg;
	size_t len = size * n;

	if (len > b->size - b->off)
		len = b->size - b->off;
	upt_fill(buf, len, b->off, b->seed);
	b->off += len;
	return len;
}

static size_t put_discard(char *buf, size_t size, size_t n, void *arg)
{
	(void)buf;
	(void)arg;
	return size * n;
}

/* A signed PUT of url with body (NULL: empty); the HTTP status, or -1. */
static long s3_put(const struct upt_rgw *g, const char *url, struct put_body *body)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL, *h2;
	struct put_body empty = { 0, 0, 0 };
	char userpwd[128];
	long code = -1;

	if (!c)
		return -1;
	if (!body)
		body = &empty;
	snprintf(userpwd, sizeof(userpwd), "%s:%s", g->access_key, g->secret_key);
	/* libcurl 7.88 neither adds nor signs a payload hash; radosgw wants one. */
	h2 = curl_slist_append(h, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	if (h2) {
		h = h2;
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:s3");
		curl_easy_setopt(c, CURLOPT_USERPWD, userpwd);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, put_read);
		curl_easy_setopt(c, CURLOPT_READDATA, body);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)body->size);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, put_discard);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
		/* Stalled (a full OSD makes writes wait): given up after 15 s. */
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 15L);
		curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
		if (curl_easy_perform(c) == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return code;
}

int upt_rgw_bucket(const struct upt_rgw *g, const char *bucket)
{
	char url[256];
	long code;

	snprintf(url, sizeof(url), "%s/%s", g->endpoint, bucket);
	code = s3_put(g, url, NULL);
	/* 409: it exists already (radosgw answers 200 to its owner re-making it). */
	return code == 200 || code == 409 ? 0 : -1;
}

int upt_rgw_put(const struct upt_rgw *g, const char *bucket, const char *key, size_t size,
		unsigned seed)
{
	struct put_body body = { size, 0, seed };
	char url[512];

	if (upt_rgw_bucket(g, bucket))
		return -1;
	snprintf(url, sizeof(url), "%s/%s/%s", g->endpoint, bucket, key);
	return s3_put(g, url, &body) == 200 ? 0 : -1;
}
