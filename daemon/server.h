/* SPDX-License-Identifier: MIT */
#ifndef UPAGERD_SERVER_H
#define UPAGERD_SERVER_H

#include "options.h"

/* Serves until SIGTERM/SIGINT; the exit status. */
int server_run(const struct options *o);

#endif
