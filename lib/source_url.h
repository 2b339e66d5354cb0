/* SPDX-License-Identifier: MIT */
/* What lib/source_url.c shares with the snapshot over HTTP. Internal. */
#ifndef UPAGER_SOURCE_URL_H
#define UPAGER_SOURCE_URL_H

#include <stdbool.h>

#include "upager.h"

/* A chunk cache's bound holds this many chunks at least. */
#define UPAGER__URL_CACHE_MIN_CHUNKS 4u

/* url an http(s) URL, o's fields in range (upager_source_url(3)). */
bool upager__url_options_valid(const char *url, const upager_url_options_t *o);

#endif
