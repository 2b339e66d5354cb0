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

int listen_unix(const char *path, int *fdp)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

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
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
		fprintf(stderr, "upagerd: cannot listen on unix:%s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*fdp = fd;
	return 0;
}

static bool is_loopback(const struct sockaddr *sa)
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
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
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
	if (!is_loopback(ai->ai_addr) && !allow_remote) {
		fprintf(stderr, "upagerd: %s is not a loopback address: pass --allow-remote to "
				"serve other machines\n", spec);
		freeaddrinfo(ai);
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		fprintf(stderr, "upagerd: cannot listen on tcp:%s: %s\n", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), NULL, 0, NI_NUMERICHOST);
	*fdp = fd;
	snprintf(name, name_size, ss.ss_family == AF_INET6 ? "tcp:[%s]:%u" : "tcp:%s:%u",
		 host, ntohs(((struct sockaddr_in *)&ss)->sin_port));
	return 0;
}
