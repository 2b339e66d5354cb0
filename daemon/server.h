/* SPDX-License-Identifier: MIT */
#ifndef UPAGERD_SERVER_H
#define UPAGERD_SERVER_H

#include "options.h"

/* Serves until SIGTERM/SIGINT; the exit status. */
int server_run(const struct options *o);
/* A listening Unix socket at path (a stale socket there is replaced): 0, or
 * -1 said on stderr. Also used by upagerd handle. */
int listen_unix(const char *path, int *fdp);
/* SIGPIPE ignored; SIGTERM, SIGINT, SIGHUP, SIGUSR1 blocked and read from
 * the returned signalfd (-1: errno). Call before starting threads. */
int signal_fd(void);

#endif
