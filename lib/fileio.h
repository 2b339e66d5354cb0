/* SPDX-License-Identifier: MIT */
/* Small file helpers shared by the library and upagerd. Internal. */
#ifndef UPAGER_FILEIO_H
#define UPAGER_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether len bytes at p are all zero (any len, any alignment). */
bool upp_all_zero(const void *p, size_t len);

#endif
