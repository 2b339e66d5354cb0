/* SPDX-License-Identifier: MIT */
/* Addresses as the library and upagerd write them. Internal. */
#ifndef UPAGER_NET_H
#define UPAGER_NET_H

#include <stddef.h>

/*
 * Splits "HOST:PORT" (HOST may be "[v6]") at its last colon into host (cap
 * bytes, brackets removed, as getaddrinfo wants it) and *port, which points
 * into host. Returns 0, or -EINVAL if HOST or PORT is missing or HOST does
 * not fit.
 */
int upp_split_host_port(const char *spec, char *host, size_t cap, const char **port);

#endif
