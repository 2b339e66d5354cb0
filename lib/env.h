/* SPDX-License-Identifier: MIT */
/* UPAGER_DISABLE, read the same way by the library and upagerd. Internal. */
#ifndef UPAGER_ENV_H
#define UPAGER_ENV_H

#include <stdbool.h>

/* Whether UPAGER_DISABLE (a list like "poison,move", separated by commas or
 * spaces) names the token what: tests take the fallback paths with it. */
bool upp_env_disables(const char *what);

#endif
