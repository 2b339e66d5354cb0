/* SPDX-License-Identifier: MIT */
/* UPAGER_DISABLE, read the same way by the library and upagerd. Internal. */
#ifndef UPAGER_ENV_H
#define UPAGER_ENV_H

#include <stdbool.h>
#include <stdint.h>

/* Whether UPAGER_DISABLE (a list like "poison,move", separated by commas or
 * spaces) names the token what: tests take the fallback paths with it. */
bool upp_env_disables(const char *what);

/* "512M", "4G", "1048576" (K, M, G, T: powers of 1024; a B may follow): bytes, or 0 if
 * s is not a size. */
uint64_t upp_parse_size(const char *s);

#endif
