/* SPDX-License-Identifier: MIT */
/* Address parsing shared by the remote source (dial) and upagerd (listen). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "net.h"

int upp_split_host_port(const char *spec, char *host, size_t cap, const char **port)
{
	size_t len = strlen(spec);
	char *colon;

	if (len >= cap)
		return -EINVAL;
	memcpy(host, spec, len + 1);
	colon = strrchr(host, ':');
	if (!colon || colon == host || !colon[1])
		return -EINVAL;
	*colon = '\0';
	*port = colon + 1;
	if (host[0] == '[' && colon[-1] == ']') { /* [::1]:port */
		colon[-1] = '\0';
		memmove(host, host + 1, strlen(host));
	}
	return 0;
}
