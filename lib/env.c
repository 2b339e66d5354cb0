/* SPDX-License-Identifier: MIT */
/* The one parser of UPAGER_DISABLE, for the library and upagerd alike. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "env.h"

bool upp_env_disables(const char *what)
{
	const char *env = getenv("UPAGER_DISABLE"), *s = env;
	size_t n = strlen(what);

	/* A whole token only: "event_remap" does not name "remap". */
	while (s && (s = strstr(s, what)) != NULL) {
		if ((s == env || s[-1] == ',' || s[-1] == ' ') &&
		    (s[n] == '\0' || s[n] == ',' || s[n] == ' '))
			return true;
		s += n;
	}
	return false;
}
