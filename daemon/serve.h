/* SPDX-License-Identifier: MIT */
/*
 * The page server's private declarations, shared by its files and no one
 * else: the server's state (one per process), a client, a READ in flight,
 * the shared snapshot maps, and what each file offers the others.
 *
 *   serve_loop.c     the ring and its loop: start-up, ticks, signals, drain, stats
 *   serve_session.c  clients: accept, receive, send queue, frames, HELLO/AUTH, dispatch
 *   serve_files.c    OPEN, READ, CLOSE: handles, reads in flight, DATA replies
 *   serve_image.c    snapshot images: shared page maps, failed loads, image reads
 */
#ifndef UPAGERD_SERVE_H
#define UPAGERD_SERVE_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "options.h"
#include "protocol.h"
#include "snapfmt.h"
#include "snapload.h"

/* Reply bytes a client may hold, queued or being read into, before it is
 * paused: a client that never reads costs at most this plus one READ. */
#define OUT_LIMIT (16u << 20)

/* What a completion is for: the low 3 bits of its user data (op_tag). */
enum op_kind { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_READ, OP_TIMER, OP_SIGNAL, OP_MAP_LOADED };

struct out_buf {
	struct out_buf *next;
	size_t len, off;
	uint8_t data[];
};

struct client;

struct range_op {
	struct read_request *req;
	uint32_t i;
} __attribute__((aligned(8)));

/*
 * Page maps of open snapshot images held in memory (16 bytes per page):
 * one copy per file however many clients and handles open it, charged once
 * to each client that holds it (at most this much) and once in all
 * (serve_image.c).
 */
#define SNAP_CLIENT_LIMIT (256u << 20)

struct shared_snap {
	struct shared_snap *next;
	dev_t dev;
	ino_t ino;
	unsigned refs; /* handles; 0: kept a while for the next OPEN_IMAGE */
	time_t unused_since;
	size_t bytes;  /* its chain's page maps */
	struct upp_snap sn; /* on a descriptor of its own: the handle that opened it may close first */
};

/* An OPEN_IMAGE waiting for its snapshot's map to load (snapload.c). */
struct map_wait {
	struct snap_load load;
	struct client *c;
	uint32_t id, h;
	int fd; /* the handle's */
	struct stat st;
	char shown[128];
};

/* A read of a snapshot image: one run of stored pages, consecutive in the file. */
struct seg {
	uint64_t off;  /* in the file */
	uint32_t len, got;
	size_t pos;    /* in the reply */
	int fd;        /* the snapshot's, or a parent's (incremental snapshots) */
};

struct read_request { /* a READ in flight */
	struct client *c;
	uint32_t id, n, pending, handle;
	int fd;
	const struct upp_snap *snap; /* a snapshot image: reads go through segs */
	struct seg *segs;
	struct range_op *segops;
	uint32_t nsegs;
	uint64_t off[UPP_MAX_RANGES];
	uint32_t wanted[UPP_MAX_RANGES], got[UPP_MAX_RANGES];
	size_t pos[UPP_MAX_RANGES]; /* where range i's data goes in reply */
	int err;
	struct out_buf *reply;
	size_t reply_size;
	struct range_op ops[UPP_MAX_RANGES];
};

struct client {
	struct client *next, *prev;
	int fd;
	unsigned serial;
	char peer[96];
	uint8_t *rbuf;
	size_t rlen;
	bool recv_posted, send_posted, closing, close_after_send, hello;
	bool tcp, authed;
	uint8_t nonce[UPP_NONCE]; /* our challenge, when it must authenticate */
	struct out_buf *outq, *outq_tail;
	size_t out_bytes;     /* queued to send */
	size_t pending_bytes; /* reply buffers of READs in flight */
	unsigned inflight; /* READs */
	unsigned ops;      /* SQEs in flight that point at us */
	int handles[UPP_MAX_HANDLES]; /* -1: free */
	uint64_t sizes[UPP_MAX_HANDLES];
	struct shared_snap *snaps[UPP_MAX_HANDLES]; /* OPEN_IMAGE of a snapshot; else NULL */
	size_t snap_bytes; /* the page maps its handles hold, each counted once */
	/* CLOSE while READs use a handle: closed when the last one ends. */
	unsigned busy[UPP_MAX_HANDLES];
	bool closed[UPP_MAX_HANDLES];
	bool loading; /* an OPEN_IMAGE waits for its map: its next frames wait too */
	time_t last_request, frame_since;
	time_t send_progress; /* when it last took reply bytes, or its queue began */
};

/* Completions carry a pointer with the op's kind in its low 3 bits: every
 * struct a completion points at is 8-aligned. */
struct listener {
	int fd;
	char name[300];
} __attribute__((aligned(8)));

/* The server: one per process. */
struct server {
	struct io_uring ring;
	const struct options *opts;
	struct listener listeners[MAX_LISTEN];
	int nlisteners;
	bool listeners_passed; /* by systemd: their paths are not ours to remove */
	struct client *clients;
	unsigned nclients, serial;
	int sigfd;
	struct signalfd_siginfo siginfo;
	struct __kernel_timespec tick_interval;
	bool draining;
	time_t drain_deadline, next_stats;
	uint64_t accepted, requests, bytes_out, errors, proto_errors, refused;
	size_t page_size;
	int loaded_efd;     /* the snapshot loader's eventfd */
	uint64_t loaded_count;
	size_t queued, queue_limit; /* reply bytes of all clients (theirs: out_bytes + pending_bytes) */
	bool read_waits;            /* a READ waits for queued bytes to go */
	size_t queued_at_wait;
	time_t last_tick;
	uint8_t secret[4096];
	size_t secret_len; /* 0: no authentication */
};

extern struct server server;

/* Seconds, for timeouts: never set back, unlike the wall clock. */
static inline time_t now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static inline void *op_tag(void *p, enum op_kind t)
{
	if ((uintptr_t)p & 7)
		abort(); /* a misaligned struct: a programming error, caught in tests */
	return (void *)((uintptr_t)p | t);
}

/* serve_loop.c */
int server_stats_line(char *line, size_t cap);
void arm_map_loaded(void);

/* serve_session.c */
void client_close(struct client *c, const char *why);
void client_op_done(struct client *c);
void queue_out(struct client *c, struct out_buf *b);
void reply_small(struct client *c, uint8_t type, uint32_t id, const uint8_t *payload,
		 size_t len);
void reply_error(struct client *c, uint32_t id, int err, const char *msg);
void protocol_error(struct client *c, int err, const char *what);
void post_recv(struct client *c);
void parse_frames(struct client *c);
void on_client_accept(struct listener *l, int res);
void on_client_recv(struct client *c, int res);
void on_client_send(struct client *c, int res);

/* serve_files.c */
void client_close_handle(struct client *c, uint32_t h);
void on_map_loaded(void);
void on_open_frame(struct client *c, uint32_t id, const uint8_t *p, size_t len, bool image);
void on_read_frame(struct client *c, uint32_t id, const uint8_t *p, size_t len);
void on_close_frame(struct client *c, uint32_t id, const uint8_t *p, size_t len);
void on_file_read(struct range_op *op, int res);

/* serve_image.c */
unsigned client_holds(const struct client *c, const struct shared_snap *ss);
struct shared_snap *shared_find(int fd, const struct stat *st);
void shared_put(struct shared_snap *ss);
void shared_trim(size_t need);
size_t shared_room(size_t want);
int shared_add(struct snap_load *l, const struct stat *st, struct shared_snap **out);
int load_failed_lately(const struct stat *st);
void load_failed_remember(const struct stat *st, int err);
void image_check_pages(struct read_request *rq);
int image_plan_read(struct read_request *rq);

#endif
