/* SPDX-License-Identifier: MIT */
/* Inline faults (inline.c): the process's SIGBUS handler for inline pagers. */
#ifndef UPAGER_INLINE_H
#define UPAGER_INLINE_H

#include "upager-int.h"

/* Installs the handler once per process (the program's handler of the
 * moment is kept and chained to) and the page buffers: 0 or -errno. */
int upager__inline_install(void);

#endif
