/* SPDX-License-Identifier: MIT */
/*
 * upagerd as a systemd service, without systemd as PID 1: notifications
 * to a NOTIFY_SOCKET the test binds (READY=1, STATUS=, STOPPING=1,
 * WATCHDOG=1), sockets passed as systemd passes them (LISTEN_FDS, and
 * through the real systemd-socket-activate when it is installed), the
 * secret from $CREDENTIALS_DIRECTORY, the mode of the sockets it creates,
 * and journald's priority prefixes when JOURNAL_STREAM names its stderr.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define PAGES 64
#define SEED 13

static char base[64], dir[80], root[100], sock[100], notify_path[100], memfile[128];
static int notify_fd = -1;
static pid_t daemon_pid;

/* Every test's files below one directory the runner removes after them
 * all: a failed test's checked teardown does not run. */
static void base_setup(void)
{
	snprintf(base, sizeof(base), "/tmp/upagerd-systemd-XXXXXX");
	if (!mkdtemp(base))
		abort();
}

static void base_teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	if (system(cmd) != 0) {
		/* best effort */
	}
}

static void setup(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint8_t *buf = malloc(PAGES * UPT_PAGE);
	int fd;

	snprintf(dir, sizeof(dir), "%s/t-XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(root, sizeof(root), "%s/root", dir);
	mkdir(root, 0700);
	snprintf(memfile, sizeof(memfile), "%s/mem.img", root);
	fd = open(memfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	upt_fill(buf, PAGES * UPT_PAGE, 0, SEED);
	ck_assert_int_eq(write(fd, buf, PAGES * UPT_PAGE), (ssize_t)(PAGES * UPT_PAGE));
	close(fd);
	free(buf);
	snprintf(sock, sizeof(sock), "%s/upagerd.sock", dir);
	/* The service manager's end: one datagram per sd_notify call. */
	snprintf(notify_path, sizeof(notify_path), "%s/notify", dir);
	strcpy(sa.sun_path, notify_path);
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(bind(notify_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void teardown(void)
{
	char cmd[128];

	upt_daemon_kill(daemon_pid);
	daemon_pid = 0;
	if (notify_fd >= 0)
		close(notify_fd);
	notify_fd = -1;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0) {
		/* best effort: the next run uses a new directory anyway */
	}
}

/*
 * Reads notifications until one holds want (a line of it, "READY=1", or
 * the start of one, "STATUS=1 clients"): true, or false after timeout_ms.
 * Every line read is appended to seen (for the failure message).
 */
static bool notified(const char *want, int timeout_ms, char *seen, size_t seen_len)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p = { .fd = notify_fd, .events = POLLIN };
		char msg[1024];
		long left;
		ssize_t n;

		clock_gettime(CLOCK_MONOTONIC, &t);
		left = timeout_ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return false;
		n = recv(notify_fd, msg, sizeof(msg) - 1, MSG_DONTWAIT);
		if (n <= 0)
			continue;
		msg[n] = '\0';
		if (seen && strlen(seen) + (size_t)n + 2 < seen_len) {
			strcat(seen, msg);
			strcat(seen, "|");
		}
		for (char *line = msg; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
			if (!strncmp(line, want, strlen(want)))
				return true;
	}
}

#define NOTIFIED(want, ms)                                                          \
	do {                                                                        \
		char seen_[4096] = "";                                              \
		ck_assert_msg(notified(want, ms, seen_, sizeof(seen_)),             \
			      "no %s within %d ms; received: %s", want, ms, seen_); \
	} while (0)

/* Waits up to timeout_s for pid to exit: its status, or -1 (it was killed). */
static int wait_exit(pid_t pid, int timeout_s)
{
	int status;

	for (int i = 0; i < timeout_s * 100; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

static bool file_has(const char *path, const char *what)
{
	char buf[16384];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	if (n < 0)
		return false;
	buf[n] = '\0';
	return strstr(buf, what) != NULL;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* mem.img through uri, every byte, with secret_file (or none). */
static int remote_read(const char *uri, const char *secret_file)
{
	upager_remote_options_t o;
	upager_source_t *s;
	upager_region_t *r;
	upager_t *p;
	int ret;

	upager_remote_options_init(&o);
	o.secret_file = secret_file;
	ret = upager_source_remote(uri, "mem.img", &o, &s);
	if (ret)
		return ret;
	p = upt_pager(1, 0);
	ck_assert_int_eq(upager_map(p, PAGES * UPT_PAGE, s, &r), 0);
	upager_source_release(s);
	ck_assert_int_eq(upt_check_pattern(upager_region_addr(r), PAGES * UPT_PAGE, 0, SEED), -1);
	upager_destroy(p);
	return 0;
}

/*
 * upagerd with a socket of the given type at descriptor 3 and LISTEN_FDS=1,
 * as systemd passes it (LISTEN_PID its own pid); stderr into err. The
 * socket: Unix at sock, or with tcp, IPv4 on that address, any port. Started,
 * not waited for.
 */
static pid_t start_with_socket(const char *const *args, int type, bool listening, const char *tcp,
			       const char *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	const char *argv[16] = { "upagerd" };
	int a = 1, fd = socket(tcp ? AF_INET : AF_UNIX, type | SOCK_CLOEXEC, 0);
	pid_t pid;

	while (*args && a < 15)
		argv[a++] = *args++;
	argv[a] = NULL;
	/* Bound before the child runs: a client may connect at once. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	ck_assert_int_ge(fd, 0);
	if (tcp) {
		ck_assert_int_eq(inet_pton(AF_INET, tcp, &sin.sin_addr), 1);
		ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	} else {
		ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	}
	if (listening)
		ck_assert_int_eq(listen(fd, 16), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char n[32];
		int efd = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (efd < 0 || dup2(efd, 2) != 2)
			_exit(126);
		/* At 3 and inherited (dup2 clears FD_CLOEXEC; 3 itself needs fcntl). */
		if (fd == 3 ? fcntl(fd, F_SETFD, 0) < 0 : dup2(fd, 3) != 3)
			_exit(126);
		snprintf(n, sizeof(n), "%d", (int)getpid());
		setenv("LISTEN_PID", n, 1);
		setenv("LISTEN_FDS", "1", 1);
		setenv("LISTEN_FDNAMES", "test.socket", 1);
		execv("daemon/upagerd", (char *const *)argv);
		_exit(127);
	}
	close(fd);
	return pid;
}

#ifdef HAVE_LIBSYSTEMD
static int connect_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, path);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* ---- Type=notify ---- */

/* READY=1 once listening, STATUS= with the client count as it changes (in
 * handle, a connected client counts before its handshake), STOPPING=1 on
 * SIGTERM, then exit 0: serve, then handle. */
START_TEST(test_notify)
{
	char env[200], listen[160], ready[512];
	const char *envs[] = { env, NULL };
	const char *serve[] = { "serve", "--root", root, "--listen", listen, NULL };
	const char *handle[] = { "handle", "--socket", sock, "--mem-file", memfile, NULL };

	snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", notify_path);
	snprintf(listen, sizeof(listen), "unix:%s", sock);
	for (int k = 0; k < 2; k++) {
		int c;

		daemon_pid = upt_upagerd_env(k ? handle : serve, envs, -1, ready, sizeof(ready));
		NOTIFIED("READY=1", 5000);
		c = connect_unix(sock);
		NOTIFIED("STATUS=1 clients", 5000);
		close(c);
		NOTIFIED("STATUS=0 clients", 5000);
		kill(daemon_pid, SIGTERM);
		NOTIFIED("STOPPING=1", 5000);
		ck_assert_int_eq(wait_exit(daemon_pid, 15), 0);
		daemon_pid = 0;
	}
}
END_TEST

/* WATCHDOG_USEC=600 ms: pings at half of it, idle or not, in both modes;
 * none when WATCHDOG_PID names another process (the watchdog is not ours). */
START_TEST(test_watchdog)
{
	char env[200], listen[160], ready[512], other[64];
	const char *serve[] = { "serve", "--root", root, "--listen", listen, NULL };
	const char *handle[] = { "handle", "--socket", sock, "--mem-file", memfile, NULL };

	snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", notify_path);
	snprintf(listen, sizeof(listen), "unix:%s", sock);
	snprintf(other, sizeof(other), "WATCHDOG_PID=%d", (int)getpid());
	for (int k = 0; k < 2; k++) {
		const char *envs[] = { env, "WATCHDOG_USEC=600000", NULL };

		daemon_pid = upt_upagerd_env(k ? handle : serve, envs, -1, ready, sizeof(ready));
		NOTIFIED("READY=1", 5000);
		/* Three pings in a row, each within 2 s of the last (every 300 ms due). */
		for (int i = 0; i < 3; i++)
			NOTIFIED("WATCHDOG=1", 2000);
		upt_daemon_kill(daemon_pid);
		daemon_pid = 0;
	}
	{
		const char *envs[] = { env, "WATCHDOG_USEC=200000", other, NULL };

		daemon_pid = upt_upagerd_env(serve, envs, -1, ready, sizeof(ready));
		NOTIFIED("READY=1", 5000);
		ck_assert_msg(!notified("WATCHDOG=1", 1500, NULL, 0),
			      "pinged a watchdog WATCHDOG_PID gives to another process");
	}
}
END_TEST

/* ---- socket activation ---- */

/* A passed socket that is not a listening stream socket is refused at
 * start: exit 1, saying so, in both modes (not ignored for --listen). */
START_TEST(test_passed_socket_wrong_kind)
{
	char err[160], listen[160];
	const char *serve[] = { "serve", "--root", root, "--listen", listen, NULL };
	const char *handle[] = { "handle", "--mem-file", memfile, NULL };
	const struct {
		const char *const *args;
		int type;
		bool listening;
	} cases[] = {
		{ serve, SOCK_DGRAM, false },
		{ serve, SOCK_STREAM, false }, /* bound, never listen()ed */
		{ handle, SOCK_DGRAM, false },
		{ handle, SOCK_SEQPACKET, true },
	};

	snprintf(err, sizeof(err), "%s/err", dir);
	snprintf(listen, sizeof(listen), "unix:%s/other.sock", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pid_t pid = start_with_socket(cases[i].args, cases[i].type, cases[i].listening,
					      NULL, err);
		int status = wait_exit(pid, 5);

		unlink(sock);
		ck_assert_msg(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 1,
			      "case %zu: did not exit 1 (status %d: -1 is still running after 5 s)", i,
			      status);
		ck_assert_msg(file_has(err, "is not a listening"), "case %zu: no reason given", i);
	}
}
END_TEST

/* A listening Unix socket passed as systemd passes it is served (--listen
 * ignored), and left in place at exit: it is the socket unit's. */
START_TEST(test_passed_socket_served)
{
	char err[160], listen[160], uri[160];
	const char *serve[] = { "serve", "--root", root, "--listen", listen, NULL };
	struct stat st;

	snprintf(err, sizeof(err), "%s/err", dir);
	snprintf(listen, sizeof(listen), "unix:%s/other.sock", dir);
	snprintf(uri, sizeof(uri), "unix:%s", sock);
	daemon_pid = start_with_socket(serve, SOCK_STREAM, true, NULL, err);
	ck_assert_int_eq(remote_read(uri, NULL), 0);
	kill(daemon_pid, SIGTERM);
	ck_assert_int_eq(wait_exit(daemon_pid, 15), 0);
	daemon_pid = 0;
	ck_assert_msg(stat(sock, &st) == 0, "the passed socket's path was removed");
	ck_assert_msg(stat(listen + 5, &st) < 0, "--listen was listened on too");
}
END_TEST

/* A passed TCP socket: one on loopback is served (TCP clients must
 * authenticate, as on --listen tcp:); one on a wildcard address is refused
 * without --allow-remote, as --listen refuses it. */
START_TEST(test_passed_socket_tcp)
{
	char err[160], secret[160], flag[200], uri[64], line[256] = "", listen[160];
	const char *serve[] = { "serve", "--root", root, flag, "--listen", listen, NULL };
	FILE *f;
	int status, port = 0;
	pid_t pid;

	snprintf(err, sizeof(err), "%s/err", dir);
	snprintf(secret, sizeof(secret), "%s/secret", dir);
	write_file(secret, "s3cret", 0600);
	snprintf(flag, sizeof(flag), "--secret-file=%s", secret);
	snprintf(listen, sizeof(listen), "unix:%s/other.sock", dir);
	daemon_pid = start_with_socket(serve, SOCK_STREAM, true, "127.0.0.1", err);
	/* Its port, from the line saying where it listens. */
	for (int i = 0; i < 500 && !port; i++) { /* 5 s */
		usleep(10000);
		f = fopen(err, "re");
		while (f && fgets(line, sizeof(line), f))
			if (strstr(line, "listening on tcp:127.0.0.1:"))
				port = atoi(strstr(line, "tcp:127.0.0.1:") + 14);
		if (f)
			fclose(f);
	}
	ck_assert_msg(port > 0, "it did not say it listens on the passed TCP socket");
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", port);
	ck_assert_int_eq(remote_read(uri, NULL), -EACCES);
	ck_assert_int_eq(remote_read(uri, secret), 0);
	upt_daemon_kill(daemon_pid);
	daemon_pid = 0;

	pid = start_with_socket(serve, SOCK_STREAM, true, "0.0.0.0", err);
	status = wait_exit(pid, 5);
	ck_assert_msg(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 1,
		      "a wildcard TCP socket: status %d, not exit 1 (-1: still running after 5 s)",
		      status);
	ck_assert_msg(file_has(err, "not a loopback address"), "no reason given");
}
END_TEST

static bool have_socket_activate(void)
{
	return system("systemd-socket-activate --version >/dev/null 2>&1") == 0;
}

/*
 * Whether a Unix socket listens at path (/proc/net/unix: flag __SO_ACCEPTCON),
 * not only bound: a client connecting in between is refused. Looked at, not
 * connected to: a connection would start the daemon.
 */
static bool listening(const char *path)
{
	FILE *f = fopen("/proc/net/unix", "re");
	char line[512], want[128];
	bool found = false;

	snprintf(want, sizeof(want), " %s\n", path);
	while (f && !found && fgets(line, sizeof(line), f)) {
		unsigned long flags;

		found = strlen(line) > strlen(want) &&
			!strcmp(line + strlen(line) - strlen(want), want) &&
			sscanf(line, "%*s %*s %*s %lx", &flags) == 1 && (flags & 0x10000);
	}
	if (f)
		fclose(f);
	return found;
}

/*
 * systemd-socket-activate -l sock, NOTIFY_SOCKET passed on, running
 * daemon/upagerd with args (its stderr into dir/err); returns once the
 * tool listens. It starts upagerd on the first connection.
 */
static void socket_activate(const char *const *args)
{
	const char *argv[24] = { "systemd-socket-activate", "-l", sock, "-E", NULL,
				 "daemon/upagerd" };
	char env[200], err[160];
	int a = 6;

	snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", notify_path);
	argv[4] = env;
	while (*args && a < 23)
		argv[a++] = *args++;
	argv[a] = NULL;
	snprintf(err, sizeof(err), "%s/err", dir);
	daemon_pid = fork();
	ck_assert_int_ge(daemon_pid, 0);
	if (daemon_pid == 0) {
		int efd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (efd < 0 || dup2(efd, 2) != 2)
			_exit(126);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 500 && !listening(sock); i++) /* 5 s */
		usleep(10000);
	ck_assert_msg(listening(sock), "systemd-socket-activate did not listen on %s", sock);
}

/* The real tool starts upagerd serve with the socket passed; a remote
 * source reads every byte through it. */
START_TEST(test_socket_activate_serve)
{
	char listen[160], uri[160];
	const char *args[] = { "serve", "--root", root, listen, NULL };

	snprintf(listen, sizeof(listen), "--listen=unix:%s/other.sock", dir);
	socket_activate(args);
	snprintf(uri, sizeof(uri), "unix:%s", sock);
	ck_assert_int_eq(remote_read(uri, NULL), 0);
	ck_assert_msg(access(listen + 14, F_OK) < 0, "--listen was listened on too");
}
END_TEST

/* The same for upagerd handle: it accepts on the passed socket (READY=1
 * names it, a connection counts as a client). */
START_TEST(test_socket_activate_handle)
{
	const char *args[] = { "handle", "--mem-file", memfile, NULL };
	char status[200];
	int c;

	socket_activate(args);
	c = connect_unix(sock);
	snprintf(status, sizeof(status), "STATUS=listening on unix:%s", sock);
	NOTIFIED(status, 5000);
	NOTIFIED("STATUS=1 clients", 5000);
	close(c);
}
END_TEST

#else
/* Built without libsystemd: NOTIFY_SOCKET gets nothing and the log says
 * so; a socket passed in LISTEN_FDS is refused, not ignored. */
START_TEST(test_without_libsystemd)
{
	char env[200], listen[160], ready[512], err[160];
	const char *envs[] = { env, NULL };
	const char *serve[] = { "serve", "--root", root, "--listen", listen, NULL };
	int efd, status;
	pid_t pid;

	snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", notify_path);
	snprintf(listen, sizeof(listen), "unix:%s", sock);
	snprintf(err, sizeof(err), "%s/err", dir);
	efd = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(efd, 0);
	daemon_pid = upt_upagerd_env(serve, envs, efd, ready, sizeof(ready));
	close(efd);
	ck_assert_msg(!notified("READY=1", 1000, NULL, 0), "notified without libsystemd?");
	ck_assert_msg(file_has(err, "without libsystemd"), "NOTIFY_SOCKET ignored silently");
	upt_daemon_kill(daemon_pid);
	daemon_pid = 0;
	unlink(sock);
	snprintf(listen, sizeof(listen), "unix:%s/other.sock", dir);
	pid = start_with_socket(serve, SOCK_STREAM, true, NULL, err);
	status = wait_exit(pid, 5);
	ck_assert_msg(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 1,
		      "a passed socket: status %d, not exit 1 (-1: still running after 5 s)", status);
	ck_assert_msg(file_has(err, "without libsystemd"), "no reason given");
}
END_TEST
#endif

/* ---- sockets upagerd creates: the mode asked for, not the umask's ---- */

static unsigned socket_mode_of(const char *const *args)
{
	char ready[512];
	struct stat st;
	mode_t old = umask(0077); /* a service manager's: no client could connect */

	daemon_pid = upt_upagerd_env(args, NULL, -1, ready, sizeof(ready));
	umask(old);
	ck_assert_int_eq(stat(sock, &st), 0);
	upt_daemon_kill(daemon_pid);
	daemon_pid = 0;
	unlink(sock);
	return st.st_mode & 07777;
}

START_TEST(test_socket_mode)
{
	char listen[160];
	const char *serve_default[] = { "serve", "--root", root, "--listen", listen, NULL };
	const char *serve_666[] = { "serve", "--root", root, "--listen", listen,
				    "--socket-mode=0666", NULL };
	const char *handle_640[] = { "handle", "--socket", sock, "--mem-file", memfile,
				     "--socket-mode", "640", NULL };

	snprintf(listen, sizeof(listen), "unix:%s", sock);
	ck_assert_uint_eq(socket_mode_of(serve_default), 0660);
	ck_assert_uint_eq(socket_mode_of(serve_666), 0666);
	ck_assert_uint_eq(socket_mode_of(handle_640), 0640);
}
END_TEST

/* ---- the secret from systemd's credentials ---- */

START_TEST(test_secret_credential)
{
	char creds[160], env[200], good[160], bad[160], cred[200], ready[512], tcp[64], err[160];
	const char *args[] = { "serve", "--root", root, "--listen", "tcp:127.0.0.1:0",
			       "--secret-credential", "upagerd-secret", NULL };
	const char *envs[] = { env, NULL };
	const char *argv[] = { "upagerd", "serve", "--root", root, "--listen", "tcp:127.0.0.1:0",
			       "--secret-credential", "upagerd-secret", NULL };
	char *p;
	pid_t pid;
	int status;

	snprintf(creds, sizeof(creds), "%s/credentials", dir);
	mkdir(creds, 0700);
	snprintf(cred, sizeof(cred), "%s/upagerd-secret", creds);
	write_file(cred, "correct horse battery staple\n", 0400);
	snprintf(good, sizeof(good), "%s/good", dir);
	write_file(good, "correct horse battery staple", 0600);
	snprintf(bad, sizeof(bad), "%s/bad", dir);
	write_file(bad, "correct horse battery stable", 0600);
	snprintf(env, sizeof(env), "CREDENTIALS_DIRECTORY=%s", creds);

	daemon_pid = upt_upagerd_env(args, envs, -1, ready, sizeof(ready));
	p = strstr(ready, "tcp:127.0.0.1:");
	ck_assert_ptr_nonnull(p);
	snprintf(tcp, sizeof(tcp), "%.*s", (int)strcspn(p, " \n"), p);
	ck_assert_int_eq(remote_read(tcp, good), 0);
	ck_assert_int_eq(remote_read(tcp, bad), -EACCES);
	ck_assert_int_eq(remote_read(tcp, NULL), -EACCES);
	upt_daemon_kill(daemon_pid);
	daemon_pid = 0;

	/* Without $CREDENTIALS_DIRECTORY: it does not start, and says why. */
	snprintf(err, sizeof(err), "%s/err", dir);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int efd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		unsetenv("CREDENTIALS_DIRECTORY");
		if (efd < 0 || dup2(efd, 2) != 2)
			_exit(126);
		execv("daemon/upagerd", (char *const *)argv);
		_exit(127);
	}
	status = wait_exit(pid, 5);
	ck_assert_msg(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 1,
		      "status %d without CREDENTIALS_DIRECTORY", status);
	ck_assert_msg(file_has(err, "CREDENTIALS_DIRECTORY"), "no reason given");
}
END_TEST

/* ---- journald's priorities ---- */

/* Log lines on a stderr that JOURNAL_STREAM names start with their
 * priority ("<6>" info, "<4>" warn); with JOURNAL_STREAM naming another
 * stream (inherited, stderr redirected since), they do not. */
START_TEST(test_journal_priorities)
{
	char err[160], env[200], listen[160], ready[512], secret[160], flag[200];
	const char *args[] = { "serve", "--root", root, "--listen", listen, flag, NULL };
	const char *envs[] = { env, NULL };
	struct stat st;
	int efd;

	snprintf(err, sizeof(err), "%s/err", dir);
	snprintf(listen, sizeof(listen), "unix:%s", sock);
	snprintf(secret, sizeof(secret), "%s/secret", dir);
	write_file(secret, "s3cret", 0644); /* readable by others: a warning */
	snprintf(flag, sizeof(flag), "--secret-file=%s", secret);
	for (int k = 0; k < 2; k++) {
		efd = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		ck_assert_int_ge(efd, 0);
		ck_assert_int_eq(fstat(efd, &st), 0);
		snprintf(env, sizeof(env), "JOURNAL_STREAM=%llu:%llu", (unsigned long long)st.st_dev,
			 (unsigned long long)st.st_ino + (unsigned long long)k);
		daemon_pid = upt_upagerd_env(args, envs, efd, ready, sizeof(ready));
		close(efd);
		kill(daemon_pid, SIGTERM);
		ck_assert_int_eq(wait_exit(daemon_pid, 15), 0);
		daemon_pid = 0;
		if (k == 0) {
			ck_assert_msg(file_has(err, "<6>"), "no <6> prefix on info lines");
			ck_assert_msg(file_has(err, "<4>") && file_has(err, "readable by others"),
				      "no <4> prefix on the warning");
		} else {
			ck_assert_msg(file_has(err, "listening on") && !file_has(err, "<6>") &&
					      !file_has(err, "<4>"),
				      "prefixes on a stderr that is not the journal's");
		}
	}
}
END_TEST

static Suite *make(void)
{
	Suite *s = suite_create("systemd");
	TCase *tc = upt_tcase(s, "systemd");

	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
#ifdef HAVE_LIBSYSTEMD
	upt_add(tc, test_notify, 0, "");
	upt_add(tc, test_watchdog, 0, "");
	upt_add(tc, test_passed_socket_wrong_kind, 0, "");
	upt_add(tc, test_passed_socket_served, 0, "");
	upt_add(tc, test_passed_socket_tcp, 0, "");
	if (have_socket_activate()) {
		upt_add(tc, test_socket_activate_serve, 0, "");
		upt_add(tc, test_socket_activate_handle, 0, "");
	} else {
		printf("SKIP test_socket_activate_*: no systemd-socket-activate here (Debian: "
		       "apt-get install systemd)\n");
	}
#else
	printf("SKIP notify, watchdog and socket activation tests: built without libsystemd "
	       "(test_without_libsystemd instead)\n");
	upt_add(tc, test_without_libsystemd, 0, "");
#endif
	upt_add(tc, test_socket_mode, 0, "");
	upt_add(tc, test_secret_credential, 0, "");
	upt_add(tc, test_journal_priorities, 0, "");
	return s;
}

int main(void)
{
	return upt_main(make);
}
