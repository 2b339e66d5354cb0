/* SPDX-License-Identifier: MIT */
/*
 * Listening sockets and signals for both of upagerd's modes: a Unix socket
 * (a stale one from an earlier run replaced, anything else at the path left
 * alone), a TCP socket on HOST:PORT (loopback only unless remote clients are
 * allowed), and the signalfd that the event loops read SIGTERM, SIGINT,
 * SIGHUP and SIGUSR1 from. Failures are said on stderr: these run at start,
 * before the log may be in use.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listen.h"
#include "net.h"

int signal_fd(void)
{
	sigset_t mask;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR1);
	/* Blocked before any other thread exists, so that all inherit it. */
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	return signalfd(-1, &mask, SFD_CLOEXEC);
}

int signal_next(int sfd)
{
	struct signalfd_siginfo si;

	return read(sfd, &si, sizeof(si)) == sizeof(si) ? (int)si.ssi_signo : 0;
}

int listen_unix(const char *path, unsigned mode, int *fdp)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old_umask;
	int fd, ret;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "upagerd: socket path too long: %s\n", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	/* A stale socket from a previous run is replaced; anything else is not ours. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			fprintf(stderr, "upagerd: %s exists and is not a socket\n", path);
			return -1;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	/*
	 * Connecting takes write permission on the socket, which bind gives as
	 * the umask allows: under a service manager's umask most local clients
	 * were refused. Bound owner-only (no client can connect in between),
	 * then given the mode asked for; start-up is single-threaded, so the
	 * umask is nobody else's meanwhile.
	 */
	old_umask = umask(0177);
	ret = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old_umask);
	if (ret < 0 || chmod(path, (mode_t)mode) < 0 || listen(fd, 128) < 0) {
		fprintf(stderr, "upagerd: cannot listen on unix:%s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		if (ret == 0)
			unlink(path);
		return -1;
	}
	*fdp = fd;
	return 0;
}

bool listen_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return false;
}

int listen_tcp(const char *spec, bool allow_remote, int *fdp, char *name, size_t name_size)
{
	char host[256];
	const char *port;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai;
	int fd, one = 1, ret;

	if (upp_split_host_port(spec, host, sizeof(host), &port)) {
		fprintf(stderr, "upagerd: tcp address wants HOST:PORT: %s\n", spec);
		return -1;
	}
	ret = getaddrinfo(host, port, &hints, &ai);
	if (ret) {
		fprintf(stderr, "upagerd: %s: %s\n", spec, gai_strerror(ret));
		return -1;
	}
	if (!listen_is_loopback(ai->ai_addr) && !allow_remote) {
		fprintf(stderr, "upagerd: %s is not a loopback address: pass --allow-remote to "
				"serve other machines\n", spec);
		freeaddrinfo(ai);
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0 ||
	    listen_name(fd, name, name_size) < 0) {
		fprintf(stderr, "upagerd: cannot listen on tcp:%s: %s\n", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	*fdp = fd;
	return 0;
}

int listen_name(int fd, char *name, size_t name_size)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256];

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return -1;
	if (ss.ss_family == AF_UNIX) {
		const struct sockaddr_un *su = (const struct sockaddr_un *)&ss;
		size_t n = sl > offsetof(struct sockaddr_un, sun_path)
				   ? sl - offsetof(struct sockaddr_un, sun_path) : 0;

		if (n && su->sun_path[0] == '\0') /* abstract: shown with '@', as ss(8) does */
			snprintf(name, name_size, "unix:@%.*s", (int)n - 1, su->sun_path + 1);
		else
			snprintf(name, name_size, "unix:%.*s", (int)strnlen(su->sun_path, n),
				 su->sun_path);
		return 0;
	}
	if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) {
		errno = EAFNOSUPPORT;
		return -1;
	}
	getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), NULL, 0, NI_NUMERICHOST);
	snprintf(name, name_size, ss.ss_family == AF_INET6 ? "tcp:[%s]:%u" : "tcp:%s:%u",
		 host, ntohs(((struct sockaddr_in *)&ss)->sin_port));
	return 0;
}
