/* SPDX-License-Identifier: MIT */
/* The environment's parsers, for the library and upagerd alike. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
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

uint64_t upp_parse_size(const char *s)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !isdigit((unsigned char)*s))
		return 0;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return 0;
	switch (toupper((unsigned char)*end)) {
	case 'K': shift = 10; end++; break;
	case 'M': shift = 20; end++; break;
	case 'G': shift = 30; end++; break;
	case 'T': shift = 40; end++; break;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end || v > (UINT64_MAX >> shift))
		return 0;
	return (uint64_t)v << shift;
}
