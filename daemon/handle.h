/* SPDX-License-Identifier: MIT */
#ifndef UPAGERD_HANDLE_H
#define UPAGERD_HANDLE_H

#include "options.h"

/* upagerd handle: serves other processes' userfaultfds until signalled; the exit status.
 * argv: the command line, which a supervisor runs its workers with. */
int handle_run(const struct options *o, char **argv);

#endif
