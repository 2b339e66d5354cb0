/* SPDX-License-Identifier: MIT */
/*
 * A local cache of an object's chunks, shared by every process on the host
 * that reads the same object version (lib/chunk_cache.c): a directory, one
 * file per chunk, written atomically, checked when read, bounded in size
 * (least recently used first out). Internal; knows nothing of HTTP.
 */
#ifndef UPAGER_CHUNK_CACHE_H
#define UPAGER_CHUNK_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct upager__chunk_cache {
	int dirfd;  /* the cache's directory */
	int keyfd;  /* DIR/KEY: this object version's chunks */
	int lockfd; /* DIR/KEY/fetching: byte idx write-locked (OFD) while a process fetches chunk idx */
	unsigned dir_mode;   /* what key directories are made with: the directory's */
	unsigned file_mode;  /* the directory's mode bits, less x: what files are made with */
	uint64_t max_bytes;  /* the bound, over every object in the directory */
	uint64_t chunk_size;
	uint64_t since_trim; /* bytes this process wrote since it last trimmed */
	uint64_t tmp_seq;
	char key[65];        /* hex SHA-256 of the URL, version, length and chunk size */
	uint8_t digest[16];  /* its first bytes, in every chunk file's header */
};

/*
 * Opens (creating what is missing: the directory with mode 0700, else as
 * it is) the cache at dir for the object url at version etag, size bytes,
 * read in chunks of chunk_size: 0 or -errno (-EPERM: dir, or the object's
 * directory in it, is owned by another user but root, or others may write
 * it). Trims the directory once.
 */
int upager__chunk_cache_open(struct upager__chunk_cache *cc, const char *dir, uint64_t max_bytes,
			     const char *url, const char *etag, uint64_t size, uint64_t chunk_size);
void upager__chunk_cache_close(struct upager__chunk_cache *cc);
/*
 * Chunk idx (len bytes) into buf: 0, -ENOENT (not there), or -EBADMSG (it
 * was there but damaged: its file is removed, so the next get misses).
 * A hit marks the chunk as used now.
 */
int upager__chunk_cache_get(struct upager__chunk_cache *cc, uint64_t idx, void *buf, size_t len);
/*
 * Claims chunk idx for this process to fetch: 0, or -EAGAIN while another
 * process has it (it fetches; ask again later). A process that dies lets
 * go of its claims.
 */
int upager__chunk_cache_claim(struct upager__chunk_cache *cc, uint64_t idx);
void upager__chunk_cache_unclaim(struct upager__chunk_cache *cc, uint64_t idx);
/*
 * Stores chunk idx: written to a file of its own and renamed into place
 * (a reader sees all of it or none; a process killed midway leaves a
 * temporary file the next trim removes). Then trims, when this process
 * has written a sixteenth of the bound since it last did: the directory
 * can pass its bound by that much a writing process. 0 or -errno.
 */
int upager__chunk_cache_put(struct upager__chunk_cache *cc, uint64_t idx, const void *buf,
			    size_t len);
/*
 * Removes the least recently used chunks (every object's) until the
 * directory holds at most seven eighths of max_bytes, and temporary files
 * older than a minute. One process at a time (the others skip). Chunks
 * removed, or -errno.
 */
long upager__chunk_cache_trim(struct upager__chunk_cache *cc);

#endif
