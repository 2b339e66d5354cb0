/* SPDX-License-Identifier: MIT */
/*
 * upagerd handle's private header: the memory file, and a client as the
 * handshake (handle_session.c) sets it up for the fault loop (handle.c).
 */
#ifndef UPAGERD_HANDLE_SESSION_H
#define UPAGERD_HANDLE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "options.h"
#include "snapfmt.h"

#define MAX_PAGE (1ull << 30)

/* The memory file, shared read-only by every client thread. */
struct image {
	const char *path;
	int fd;
	bool snap;
	struct upp_snap snapshot; /* snap: the checked page map */
	const uint8_t *map; /* raw: the file, mapped */
	uint64_t len;      /* bytes of memory it describes */
	const uint8_t *zero; /* MAX_PAGE of zeros (untouched anonymous memory) */
	size_t ps;
	bool no_poison;    /* UPAGER_DISABLE=poison: test the fallback */
	/* A memory file at a URL (handle_url.c): read through this object
	 * (NULL: it could not be opened as pinned, url_err says why), and
	 * fd is the memfd its pinned version is kept in. */
	bool is_url;
	struct upager__url_object *url;
	int url_err;
	char shown[512];   /* the URL as logs may say it: no user info, no query */
};

struct region {
	uint64_t base, size, offset, psz;
	uint8_t *removed; /* a bit per psz page: discarded by the client, reads zero */
	uint64_t bitmap_off; /* where removed is in the client's state memfd */
};

struct client {
	struct client *next, **pprev;
	int sock, uffd;
	int pidfd;         /* the client process, for SIGBUS; -1: none could be had */
	bool can_poison;   /* UFFDIO_POISON works: no signal is ever needed */
	pid_t pid;
	uid_t uid;
	char name[64];
	time_t since;
	struct region *regions; /* sorted by base; in the state memfd once served */
	int state;         /* the state memfd (handle_state.c); -1: none yet */
	uint8_t *state_map;
	size_t state_len;
	uint64_t id;       /* the supervisor's name for it */
	bool adopted;      /* taken over from a worker before this one */
	size_t nregions;
	uint64_t features;
	uint8_t *buf; /* a snapshot page being assembled */
	uint64_t *deferred; /* faults to retry: a remove was pending (EAGAIN) */
	size_t ndeferred, capdeferred;
	bool garbage_logged;
	uint64_t next_fault, window; /* sequential detection (fault_window()) */
	/* Counters (read by the stats line from another thread: atomics). */
	uint64_t faults, pages, zero_pages, removes, failed, retries;
};


extern struct image image;

/* handle_url.c: a --mem-file that is a URL. */
bool image_is_url(const char *path);
/* At start, before the socket: opens the object at url and returns a memfd
 * holding its version (ETag, length, kind), for image_url_open in each
 * worker; or -1, said on stderr in one line naming the URL as shown. keep:
 * the object stays open for this process's own image_url_open. */
int image_url_pin(const char *url, const struct options *o, bool keep);
/* Opens image from url: pinfd >= 0 (from image_url_pin): that version, else
 * its faults fail (logged); pinfd < 0: what is there now, pinned into a new
 * memfd (image.fd). 0, or -1 said on stderr. */
int image_url_open(const char *url, int pinfd, const struct options *o);
/* (o: --url-deadline, --url-memory.)
 * len bytes of memory at off into buf, within --url-deadline: 1 (bytes), 0
 * (zeros), or -errno with *why for the log (the access then gets SIGBUS). */
int image_url_read(uint64_t off, size_t len, void *buf, const char **why);

/*
 * Reads the client's one message (its regions and its userfaultfd) within
 * read_timeout seconds, checks the regions against the memory file and that
 * a fault that cannot be served can end in SIGBUS, and sorts the regions.
 * 0, or -1 with the reason logged.
 */
int client_handshake(struct client *c, long read_timeout);

/*
 * An adopted client (its uffd, regions and pidfd set) checked as at the
 * handshake: the descriptor is a userfaultfd, the regions fit the memory
 * file, a fault that cannot be served can end. NULL, or what is wrong.
 */
const char *client_adopt_check(struct client *c, char *why, size_t whylen);

/* handle_state.c: moves c's regions into a new state memfd (c->state) that
 * outlives the worker. 0, or -1 with why. */
int client_state_create(struct client *c, char *why, size_t whylen);
/* Maps the state memfd fd of an adopted client (owned by c from now on):
 * its regions, removed pages, pid, uid. 0, or -1 with why. */
int client_state_adopt(struct client *c, int fd, char *why, size_t whylen);
void client_state_free(struct client *c);

/* Sorts c's regions by address (after an mremap moved some). */
void client_sort_regions(struct client *c);

/* The peer of a just-accepted socket as a pidfd, for signals; -1: none. */
int client_pidfd(int sock, pid_t pid);

#endif
