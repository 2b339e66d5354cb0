/* SPDX-License-Identifier: MIT */
/* Listening sockets and the signalfd, for upagerd serve and handle alike. */
#ifndef UPAGERD_LISTEN_H
#define UPAGERD_LISTEN_H

#include <stdbool.h>
#include <stddef.h>

/* A listening Unix socket at path with the given mode (a stale socket there
 * is replaced; the umask does not apply): 0, or -1 said on stderr. */
int listen_unix(const char *path, unsigned mode, int *fdp);
/* A listening TCP socket on spec (HOST:PORT, [v6]:PORT) in *fdp and its
 * address as "tcp:HOST:PORT" in name: 0, or -1 said on stderr. A non-loopback
 * address is refused unless allow_remote. */
int listen_tcp(const char *spec, bool allow_remote, int *fdp, char *name, size_t name_size);
/* A bound socket's address as --listen spells it (unix:PATH, tcp:HOST:PORT,
 * tcp:[V6]:PORT): 0, or -1 (errno; EAFNOSUPPORT for another family). */
int listen_name(int fd, char *name, size_t name_size);
struct sockaddr;
bool listen_is_loopback(const struct sockaddr *sa);
/* SIGPIPE ignored; SIGTERM, SIGINT, SIGHUP, SIGUSR1 blocked and read from
 * the returned signalfd (-1: errno). Call before starting threads. */
int signal_fd(void);
/* The next signal read from it, or 0. */
int signal_next(int sfd);

#endif
