/* SPDX-License-Identifier: MIT */
/*
 * upagerd handle: the part of a client's state that changes while it is
 * served (its region list, which mremap moves, and the pages it discarded,
 * which must keep reading zero) lives in a memfd of its own, mapped by the
 * worker and written in place. The memfd is held by the supervisor (or
 * systemd's fd store) with the client's descriptors, so a worker started
 * after a crash maps the same bytes and goes on from them
 * (docs/HANDLE.md, "Failover"). Each write is made before the fault that
 * depends on it is answered: a record a worker made is never lost with it.
 *
 * Layout: a header, the regions (struct region, its pointer recomputed on
 * adoption), then a bitmap per region (a bit per page; sparse: only pages
 * with a discard in them take memory).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "handle_session.h"

#define STATE_MAGIC 0x4554415453505545ull /* "EUPSTATE" */
#define STATE_VERSION 1

struct state_hdr {
	uint64_t magic;
	uint32_t version, nregions;
	int32_t pid;
	uint32_t uid;
	int64_t since;
	uint64_t len; /* bytes of the memfd */
};

#define ALIGN8(x) (((x) + 7) & ~(uint64_t)7)

static uint64_t bitmap_len(const struct region *r)
{
	return ALIGN8((r->size / r->psz + 7) / 8);
}

int client_state_create(struct client *c, char *why, size_t whylen)
{
	uint64_t len = ALIGN8(sizeof(struct state_hdr) + c->nregions * sizeof(struct region));
	struct state_hdr *h;
	struct region *regs;
	uint8_t *map;
	int fd;

	for (size_t i = 0; i < c->nregions; i++) {
		c->regions[i].bitmap_off = len;
		len += bitmap_len(&c->regions[i]);
	}
	fd = memfd_create("upagerd-client-state", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)len) < 0 ||
	    (map = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
		snprintf(why, whylen, "cannot make its state memfd (%llu bytes): %s",
			 (unsigned long long)len, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	regs = (struct region *)(map + sizeof(*h));
	memcpy(regs, c->regions, c->nregions * sizeof(*regs));
	for (size_t i = 0; i < c->nregions; i++)
		regs[i].removed = map + regs[i].bitmap_off;
	h = (struct state_hdr *)map;
	*h = (struct state_hdr){ STATE_MAGIC, STATE_VERSION, (uint32_t)c->nregions, c->pid, c->uid,
				 c->since, len };
	free(c->regions);
	c->regions = regs;
	c->state = fd;
	c->state_map = map;
	c->state_len = (size_t)len;
	return 0;
}

int client_state_adopt(struct client *c, int fd, char *why, size_t whylen)
{
	const struct state_hdr *h;
	struct stat st;
	uint8_t *map;
	uint64_t end;

	c->state = fd;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < sizeof(*h) || (uint64_t)st.st_size > SIZE_MAX ||
	    (map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) ==
		    MAP_FAILED) {
		snprintf(why, whylen, "its state memfd cannot be mapped");
		return -1;
	}
	c->state_map = map;
	c->state_len = (size_t)st.st_size;
	h = (const struct state_hdr *)map;
	if (h->magic != STATE_MAGIC || h->version != STATE_VERSION || h->len != (uint64_t)st.st_size ||
	    h->nregions == 0 || h->nregions > 4096 ||
	    sizeof(*h) + h->nregions * sizeof(struct region) > h->len) {
		snprintf(why, whylen, "its state memfd is not one this upagerd writes (version %u)",
			 h->magic == STATE_MAGIC ? h->version : 0);
		return -1;
	}
	c->regions = (struct region *)(map + sizeof(*h));
	c->nregions = h->nregions;
	c->pid = h->pid;
	c->uid = h->uid;
	c->since = (time_t)h->since;
	for (size_t i = 0; i < c->nregions; i++) {
		struct region *r = &c->regions[i];

		/* Checked again as at the handshake (client_adopt_check) once the
		 * pointers are set: here, only that each bitmap is in the file. */
		if (!r->psz || (r->psz & (r->psz - 1)) ||
		    r->bitmap_off < sizeof(*h) + c->nregions * sizeof(*r) || r->bitmap_off > h->len ||
		    (end = r->bitmap_off + bitmap_len(r)) < r->bitmap_off || end > h->len) {
			snprintf(why, whylen, "its state memfd is damaged (region %zu)", i);
			return -1;
		}
		r->removed = map + r->bitmap_off;
	}
	return 0;
}

void client_state_free(struct client *c)
{
	if (c->state_map) {
		munmap(c->state_map, c->state_len);
		c->regions = NULL; /* they were in it */
	}
	if (c->state >= 0)
		close(c->state);
}
