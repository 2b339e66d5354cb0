/* SPDX-License-Identifier: MIT */
/*
 * upagerd's page server: one thread, one io_uring.
 *
 * Each client has a receive buffer that holds at most one frame (a header
 * and UPP_MAX_FRAME bytes: lengths are checked before anything is buffered),
 * a bounded output queue, and at most UPP_MAX_INFLIGHT READs in flight. When
 * either limit is reached the server stops receiving from that client until
 * it drains: a slow client holds its own memory, not the server's. Every
 * malformed frame gets one ERROR frame and a closed connection; other
 * clients never notice.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/openat2.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "env.h"
#include "fileio.h"
#include "jail.h"
#include "listen.h"
#include "log.h"
#include "net.h"
#include "options.h"
#include "protocol.h"
#include "server.h"
#include "sha256.h"
#include "snapfmt.h"
#include "snapload.h"
#include "uring.h"

/* Reply bytes a client may hold, queued or being read into, before it is
 * paused: a client that never reads costs at most this plus one READ. */
#define OUT_LIMIT (16u << 20)
#define DRAIN_SECONDS 10

enum { T_ACCEPT = 1, T_RECV, T_SEND, T_READ, T_TIMER, T_SIGNAL, T_LOADED };

struct out_buf {
	struct out_buf *next;
	size_t len, off;
	uint8_t data[];
};

struct client;

struct range_op {
	struct request *req;
	uint32_t i;
} __attribute__((aligned(8)));

/*
 * Page maps of open snapshot images held in memory (16 bytes per page):
 * one copy per file however many clients and handles open it, charged once
 * to each client that holds it and once in all.
 */
#define SNAP_CLIENT_LIMIT (256u << 20)
#define SNAP_TOTAL_LIMIT (1024u << 20)
/* A map no handle holds is kept this long (within the limit above), so
 * that OPEN_IMAGE and CLOSE in a loop do not load it again each time. */
#define SNAP_KEEP_SECONDS 10
/* A snapshot that failed to load, unchanged since (same inode, size,
 * mtime and ctime), is refused again without loading for this long. */
#define SNAP_FAILED_SECONDS 2
#define SNAP_FAILED_SLOTS 16

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

struct request { /* a READ in flight */
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

static struct {
	struct io_uring ring;
	const struct options *o;
	struct listener ls[MAX_LISTEN];
	int nls;
	struct client *clients;
	unsigned nclients, serial;
	int sigfd;
	struct signalfd_siginfo si;
	struct __kernel_timespec tick;
	bool draining;
	time_t drain_deadline, next_stats;
	uint64_t accepted, requests, bytes_out, errors, proto_errors, refused;
	size_t page_size;
	size_t snap_bytes; /* every open snapshot's page maps */
	struct shared_snap *shared;
	struct failed_open {
		dev_t dev;
		ino_t ino;
		off_t size;
		struct timespec mtim, ctim;
		time_t at;
		int err;
	} failed[SNAP_FAILED_SLOTS];
	unsigned failed_next;
	int load_efd;
	uint64_t load_count;
	size_t queued, queue_limit; /* reply bytes of all clients (theirs: out_bytes + pending_bytes) */
	bool read_waits;            /* a READ waits for queued bytes to go */
	size_t queued_at_wait;
	time_t last_tick;
	uint8_t secret[4096];
	size_t secret_len; /* 0: no authentication */
} S;

/* Seconds, for timeouts: never set back, unlike the wall clock. */
static time_t now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void *tag(void *p, unsigned t)
{
	if ((uintptr_t)p & 7)
		abort(); /* a misaligned struct: a programming error, caught in tests */
	return (void *)((uintptr_t)p | t);
}

/* ---- clients ---- */

/* Memory a snapshot's page maps (its chain's) take. */
static size_t snap_bytes(const struct upp_snap *sn)
{
	size_t n = 0;

	for (; sn; sn = sn->parent)
		n += sn->npages * UPP_SNAP_ENTRY;
	return n;
}

/* How many of c's handles hold ss. */
static unsigned client_holds(const struct client *c, const struct shared_snap *ss)
{
	unsigned n = 0;

	for (int h = 0; h < UPP_MAX_HANDLES; h++)
		n += c->snaps[h] == ss;
	return n;
}

/*
 * The snapshot open on fd (whose stat is st), if a handle has it open or
 * had it lately: same inode, and a header that still says what it said (a
 * file rewritten in place is loaded afresh; a rename puts a new inode
 * there). Taken by one more handle.
 */
static struct shared_snap *shared_find(int fd, const struct stat *st)
{
	for (struct shared_snap *ss = S.shared; ss; ss = ss->next)
		if (ss->dev == st->st_dev && ss->ino == st->st_ino && upp_snap_unchanged(&ss->sn, fd)) {
			ss->refs++;
			return ss;
		}
	return NULL;
}

static void shared_free(struct shared_snap *ss)
{
	struct shared_snap **pp;

	for (pp = &S.shared; *pp != ss; pp = &(*pp)->next)
		;
	*pp = ss->next;
	S.snap_bytes -= ss->bytes;
	upp_snap_close(&ss->sn);
	close(ss->sn.fd);
	free(ss);
}

static void shared_put(struct shared_snap *ss)
{
	if (--ss->refs == 0)
		ss->unused_since = now_s();
}

/* Lets maps no handle holds go: those kept longer than SNAP_KEEP_SECONDS,
 * and all of them if room for need bytes of maps is wanted. */
static void shared_trim(size_t need)
{
	time_t now = now_s();

	for (struct shared_snap *ss = S.shared, *next; ss; ss = next) {
		next = ss->next;
		if (!ss->refs && (now - ss->unused_since > SNAP_KEEP_SECONDS ||
				  need > SNAP_TOTAL_LIMIT - S.snap_bytes))
			shared_free(ss);
	}
}

/*
 * A map loaded for the file st describes (l->sn, on l->fd): shared from
 * now on, with one handle, in *out. If another load of the same file came
 * first, that one instead; -ENOMEM past the daemon's limit. Either way l's
 * map and descriptor are taken.
 */
static int shared_add(struct snap_load *l, const struct stat *st, struct shared_snap **out)
{
	struct shared_snap *ss = shared_find(l->fd, st);
	size_t bytes = snap_bytes(&l->sn);

	if (!ss)
		shared_trim(bytes);

	if (ss || bytes > SNAP_TOTAL_LIMIT - S.snap_bytes || !(ss = calloc(1, sizeof(*ss)))) {
		upp_snap_close(&l->sn);
		close(l->fd);
		*out = ss;
		return ss ? 0 : -ENOMEM;
	}
	ss->sn = l->sn;
	ss->bytes = bytes;
	ss->dev = st->st_dev;
	ss->ino = st->st_ino;
	ss->refs = 1;
	ss->next = S.shared;
	S.shared = ss;
	S.snap_bytes += bytes;
	*out = ss;
	return 0;
}

static bool same_file(const struct failed_open *f, const struct stat *st)
{
	return f->dev == st->st_dev && f->ino == st->st_ino && f->size == st->st_size &&
	       f->mtim.tv_sec == st->st_mtim.tv_sec && f->mtim.tv_nsec == st->st_mtim.tv_nsec &&
	       f->ctim.tv_sec == st->st_ctim.tv_sec && f->ctim.tv_nsec == st->st_ctim.tv_nsec;
}

/* How the load of this file failed, if it did lately and the file is as it
 * was; else 0. (A parent put in place meanwhile is seen when this expires.) */
static int failed_lately(const struct stat *st)
{
	for (unsigned i = 0; i < SNAP_FAILED_SLOTS; i++) {
		const struct failed_open *f = &S.failed[i];

		if (f->err && same_file(f, st) && now_s() - f->at <= SNAP_FAILED_SECONDS)
			return f->err;
	}
	return 0;
}

static void failed_remember(const struct stat *st, int err)
{
	struct failed_open *f = &S.failed[S.failed_next++ % SNAP_FAILED_SLOTS];

	*f = (struct failed_open){ st->st_dev, st->st_ino, st->st_size, st->st_mtim, st->st_ctim,
				   now_s(), err };
}

static void handle_close(struct client *c, uint32_t h)
{
	struct shared_snap *ss = c->snaps[h];

	close(c->handles[h]);
	c->handles[h] = -1;
	if (ss) {
		c->snaps[h] = NULL;
		if (!client_holds(c, ss))
			c->snap_bytes -= ss->bytes;
		shared_put(ss);
	}
}

static void client_free(struct client *c)
{
	for (int i = 0; i < UPP_MAX_HANDLES; i++)
		if (c->handles[i] >= 0)
			handle_close(c, (uint32_t)i);
	while (c->outq) {
		struct out_buf *b = c->outq;
		c->outq = b->next;
		free(b);
	}
	S.queued -= c->out_bytes;
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		S.clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	S.nclients--;
	LOG(LOG_INFO, "client %u (%s) gone; %u connected", c->serial, c->peer, S.nclients);
	free(c->rbuf);
	free(c);
}

/* Ends a client. Its SQEs still in flight complete (shutdown ends the
 * socket ones at once); the memory goes with the last. */
static void client_close(struct client *c, const char *why)
{
	if (c->closing)
		return;
	c->closing = true;
	LOG(LOG_INFO, "client %u (%s): closing: %s", c->serial, c->peer, why);
	shutdown(c->fd, SHUT_RDWR);
	if (c->ops == 0)
		client_free(c);
}

static void op_done(struct client *c)
{
	if (--c->ops == 0 && c->closing)
		client_free(c);
}

static void post_send(struct client *c)
{
	struct io_uring_sqe *sqe;

	if (c->send_posted || !c->outq || c->closing)
		return;
	sqe = upp_get_sqe(&S.ring);
	if (!sqe)
		return;
	io_uring_prep_send(sqe, c->fd, c->outq->data + c->outq->off, c->outq->len - c->outq->off,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data(sqe, tag(c, T_SEND));
	c->send_posted = true;
	c->ops++;
}

static void queue_out(struct client *c, struct out_buf *b)
{
	b->next = NULL;
	b->off = 0;
	if (!c->outq)
		c->send_progress = now_s();
	if (c->outq_tail)
		c->outq_tail->next = b;
	else
		c->outq = b;
	c->outq_tail = b;
	c->out_bytes += b->len;
	S.queued += b->len;
	post_send(c);
}

static void reply_small(struct client *c, uint8_t type, uint32_t id, const uint8_t *payload,
			size_t len)
{
	struct out_buf *b = malloc(sizeof(*b) + UPP_HDR_SIZE + len);

	if (!b) {
		client_close(c, "out of memory");
		return;
	}
	b->len = UPP_HDR_SIZE + len;
	upp_put_hdr(b->data, type, id, (uint32_t)len);
	if (len)
		memcpy(b->data + UPP_HDR_SIZE, payload, len);
	queue_out(c, b);
}

static void reply_error(struct client *c, uint32_t id, int err, const char *msg)
{
	uint8_t p[6 + 256];
	size_t n = strlen(msg) > 250 ? 250 : strlen(msg);

	S.errors++;
	reply_small(c, UPP_ERROR, id, p, upp_put_error(p, (uint32_t)err, msg, (uint16_t)n));
}

/* A framing error: one ERROR frame, a log line with a sample of the bytes, close. */
static void protocol_error(struct client *c, int err, const char *what)
{
	char sample[33];

	S.proto_errors++;
	log_sanitize(sample, sizeof(sample), c->rbuf, c->rlen < 32 ? c->rlen : 32);
	LOG(LOG_WARN, "client %u (%s): protocol error: %s (first bytes: \"%s\")", c->serial,
	    c->peer, what, sample);
	reply_error(c, 0, err, what);
	c->close_after_send = true;
}

static bool may_receive(const struct client *c)
{
	return !c->closing && !c->close_after_send && !S.draining &&
	       c->inflight < UPP_MAX_INFLIGHT && c->out_bytes + c->pending_bytes < OUT_LIMIT &&
	       c->rlen < UPP_HDR_SIZE + UPP_MAX_FRAME;
}

static void post_recv(struct client *c)
{
	struct io_uring_sqe *sqe;

	if (c->recv_posted || !may_receive(c))
		return;
	sqe = upp_get_sqe(&S.ring);
	if (!sqe)
		return;
	io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rlen, UPP_HDR_SIZE + UPP_MAX_FRAME - c->rlen, 0);
	io_uring_sqe_set_data(sqe, tag(c, T_RECV));
	c->recv_posted = true;
	c->ops++;
}

/* ---- requests ---- */

static void parse(struct client *c);
static void arm_loaded(void);

/* What an ERROR reply to an OPEN says: its code and why. */
static const char *open_refusal(int *err)
{
	switch (*err) {
	case ELOOP:
		*err = EACCES; /* the jail's refusal, as for "..", whichever the cause */
		return jail_has_openat2() ? "a symlink loop or a magic link"
				      : "a symlink: followed only where openat2 is available";
	case EACCES:
		return "outside the served root";
	case EBADMSG:
		return "not a valid upager snapshot";
	case ENOMEM:
		return "snapshot page maps over their memory limit";
	default:
		return strerror(*err);
	}
}

/*
 * The end of an OPEN: handle h on fd, of size bytes or, for a snapshot
 * image, ss's (which it holds from now on); or the error ret (fd, if not
 * -1, closed). Page maps are bounded per client and in all, or clients
 * opening many big snapshots could take the daemon's memory.
 */
static void open_done(struct client *c, uint32_t id, uint32_t h, int fd, uint64_t size,
		      struct shared_snap *ss, int ret, const char *shown, bool image)
{
	uint8_t out[12];

	if (ret == 0 && ss && !client_holds(c, ss)) {
		if (c->snap_bytes + ss->bytes > SNAP_CLIENT_LIMIT) {
			shared_put(ss);
			ret = -ENOMEM;
		} else {
			c->snap_bytes += ss->bytes;
		}
	}
	if (ret < 0) {
		int err = -ret;
		const char *why = open_refusal(&err);

		if (fd >= 0)
			close(fd);
		LOG(LOG_INFO, "client %u (%s): open \"%s\" refused: %s", c->serial, c->peer, shown,
		    why);
		reply_error(c, id, err, why);
		return;
	}
	if (ss) {
		c->snaps[h] = ss;
		size = ss->sn.len;
	}
	c->handles[h] = fd;
	c->sizes[h] = size;
	c->closed[h] = false;
	LOG(LOG_DEBUG, "client %u: open%s \"%s\" -> handle %u, %llu bytes", c->serial,
	    ss ? " snapshot image" : "", shown, h, (unsigned long long)size);
	reply_small(c, (image ? UPP_OPEN_IMAGE : UPP_OPEN) | UPP_REPLY, id, out,
		    upp_put_opened(out, h, size));
}

/*
 * OPEN_IMAGE of the snapshot on fd: its map shared if a handle holds it
 * (or did lately), refused at once if it failed lately, else loaded by the
 * worker while the loop serves the others. Until then this client's next
 * frames wait: one load in flight per client.
 */
static void open_image(struct client *c, uint32_t id, uint32_t h, int fd, const char *path,
		       uint16_t plen, const char *shown)
{
	struct shared_snap *ss;
	struct map_wait *w = NULL;
	size_t budget = SNAP_CLIENT_LIMIT - c->snap_bytes;
	int ret, dir = -1, own = -1;

	if (!(w = calloc(1, sizeof(*w)))) {
		ret = -ENOMEM;
		goto fail;
	}
	if (fstat(fd, &w->st) < 0) {
		ret = -errno;
		goto fail;
	}
	if ((ss = shared_find(fd, &w->st)) != NULL) {
		free(w);
		open_done(c, id, h, fd, 0, ss, 0, shown, true);
		return;
	}
	if ((ret = failed_lately(&w->st)) < 0)
		goto fail;
	if ((ret = dir = jail_dir_of(path, plen)) < 0)
		goto fail;
	/* The shared map keeps a descriptor of its own: this handle may close first. */
	if ((own = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		ret = -errno;
		goto fail;
	}
	shared_trim(budget);
	if (budget > SNAP_TOTAL_LIMIT - S.snap_bytes)
		budget = SNAP_TOTAL_LIMIT - S.snap_bytes;
	w->load = (struct snap_load){ .dirfd = dir, .fd = own, .ps = S.page_size,
				      .max_maps = budget };
	w->c = c;
	w->id = id;
	w->h = h;
	w->fd = fd;
	snprintf(w->shown, sizeof(w->shown), "%s", shown);
	c->loading = true;
	c->ops++; /* the client's memory stays until its load is back */
	snapload_submit(&w->load);
	return;
fail:
	if (dir >= 0)
		close(dir);
	free(w);
	open_done(c, id, h, fd, 0, NULL, ret, shown, true);
}

/* Loads done by the worker: each OPEN_IMAGE answered, its client's frames parsed on. */
static void on_loaded(void)
{
	struct snap_load *l = snapload_done(), *next;

	for (; l; l = next) {
		struct map_wait *w = (struct map_wait *)l;
		struct shared_snap *ss = NULL;
		struct client *c = w->c;
		int ret = l->ret;

		next = l->next;
		close(l->dirfd);
		if (ret == 0) {
			ret = shared_add(l, &w->st, &ss);
		} else {
			close(l->fd);
			if (ret != -ENOMEM) /* (that one depends on the budget left) */
				failed_remember(&w->st, ret);
		}
		c->loading = false;
		if (c->closing) {
			close(w->fd);
			if (ss)
				shared_put(ss);
		} else {
			open_done(c, w->id, w->h, w->fd, 0, ss, ret, w->shown, true);
			parse(c);
			post_recv(c);
		}
		free(w);
		op_done(c);
	}
	arm_loaded();
}

/*
 * OPEN, or OPEN_IMAGE: the memory a file describes. A upager snapshot
 * (docs/SNAPSHOT.md) is then served decoded: its map checked at open, each
 * stored page's CRC32C checked before it is sent, absent and zero pages as
 * zeros. Any other file is its own image.
 */
static void do_open(struct client *c, uint32_t id, const uint8_t *p, size_t len, bool image)
{
	const char *path;
	uint16_t plen;
	uint64_t size = 0;
	char shown[128];
	int h, fd = -1, ret;

	if (upp_get_open(p, len, &path, &plen) < 0) {
		protocol_error(c, EPROTO, "malformed OPEN");
		return;
	}
	log_sanitize(shown, sizeof(shown), path, plen);
	for (h = 0; h < UPP_MAX_HANDLES && c->handles[h] >= 0; h++)
		; /* a closed handle with reads in flight is not free yet */
	if (h == UPP_MAX_HANDLES) {
		reply_error(c, id, EMFILE, "too many open handles");
		return;
	}
	ret = jail_open(path, plen, &fd, &size);
	if (ret == 0 && image && upp_snap_is(fd))
		open_image(c, id, (uint32_t)h, fd, path, plen, shown);
	else
		open_done(c, id, (uint32_t)h, ret == 0 ? fd : -1, size, NULL, ret, shown, image);
}

static void seg_submit(struct request *rq, uint32_t i)
{
	struct io_uring_sqe *sqe = upp_get_sqe(&S.ring);
	struct seg *sg = &rq->segs[i];

	if (!sqe) {
		rq->err = ENOMEM;
		return;
	}
	io_uring_prep_read(sqe, sg->fd, rq->reply->data + sg->pos + sg->got, sg->len - sg->got,
			   sg->off + sg->got);
	io_uring_sqe_set_data(sqe, tag(&rq->segops[i], T_READ));
	rq->pending++;
	rq->c->ops++;
}

/* Every stored page of a snapshot image read is checked before it is sent. */
static void check_image(struct request *rq)
{
	const struct upp_snap *sn = rq->snap;

	for (uint32_t i = 0; i < rq->n && !rq->err; i++)
		for (uint64_t k = 0; k < rq->got[i] / sn->ps; k++) {
			uint64_t page = rq->off[i] / sn->ps + k;

			if (upp_snap_kind(sn, page) == UPP_SNAP_STORED &&
			    upp_crc32c(0, rq->reply->data + rq->pos[i] + k * sn->ps, sn->ps) !=
				    upp_snap_crc(sn, page)) {
				LOG(LOG_ERR, "client %u: snapshot page %llu fails its checksum: not sent",
				    rq->c->serial, (unsigned long long)page);
				S.errors++;
				rq->err = EBADMSG;
				break;
			}
		}
}

/*
 * A READ of a snapshot image: zero and absent pages are zeroed in the reply,
 * runs of stored pages consecutive in the file become one read each.
 * 0, or an errno for the reply.
 */
static int image_plan(struct request *rq)
{
	const struct upp_snap *sn = rq->snap;
	size_t cap = 0;

	for (uint32_t i = 0; i < rq->n; i++) {
		if (rq->off[i] % sn->ps || rq->wanted[i] % sn->ps)
			return EINVAL; /* pages are checked whole */
		cap += rq->wanted[i] / sn->ps;
	}
	rq->segs = calloc(cap ? cap : 1, sizeof(*rq->segs));
	rq->segops = calloc(cap ? cap : 1, sizeof(*rq->segops));
	if (!rq->segs || !rq->segops)
		return ENOMEM;
	for (uint32_t i = 0; i < rq->n; i++) {
		for (uint64_t k = 0; k < rq->wanted[i] / sn->ps; k++) {
			int fd = -1;
			uint64_t page = rq->off[i] / sn->ps + k, off = upp_snap_locate(sn, page, &fd);
			size_t pos = rq->pos[i] + k * sn->ps;
			struct seg *last = rq->nsegs ? &rq->segs[rq->nsegs - 1] : NULL;

			if (off == UINT64_MAX)
				memset(rq->reply->data + pos, 0, sn->ps);
			else if (last && last->fd == fd && last->off + last->len == off &&
				 last->pos + last->len == pos)
				last->len += (uint32_t)sn->ps;
			else
				rq->segs[rq->nsegs++] = (struct seg){ off, (uint32_t)sn->ps, 0, pos, fd };
		}
		rq->got[i] = rq->wanted[i];
	}
	for (uint32_t j = 0; j < rq->nsegs; j++)
		rq->segops[j] = (struct range_op){ rq, j };
	return 0;
}

static void read_submit(struct request *rq, uint32_t i)
{
	struct io_uring_sqe *sqe = upp_get_sqe(&S.ring);

	if (!sqe) {
		rq->err = ENOMEM;
		return;
	}
	io_uring_prep_read(sqe, rq->fd, rq->reply->data + rq->pos[i] + rq->got[i],
			   rq->wanted[i] - rq->got[i], rq->off[i] + rq->got[i]);
	io_uring_sqe_set_data(sqe, tag(&rq->ops[i], T_READ));
	rq->pending++;
	rq->c->ops++;
}

static void read_finish(struct request *rq)
{
	struct client *c = rq->c;
	size_t head = UPP_HDR_SIZE + 8 + 4 * (size_t)rq->n, at = head, total;
	uint32_t crc;

	c->inflight--;
	c->pending_bytes -= rq->reply_size;
	S.queued -= rq->reply_size;
	if (rq->snap && !rq->err)
		check_image(rq);
	if (--c->busy[rq->handle] == 0 && c->closed[rq->handle])
		handle_close(c, rq->handle);
	free(rq->segs);
	free(rq->segops);
	if (rq->err) {
		free(rq->reply);
		if (!c->closing)
			reply_error(c, rq->id, rq->err, strerror(rq->err));
		free(rq);
		return;
	}
	/* Ranges cut short by the end of the file: close the gaps. */
	for (uint32_t i = 0; i < rq->n; i++) {
		if (at != rq->pos[i])
			memmove(rq->reply->data + at, rq->reply->data + rq->pos[i], rq->got[i]);
		at += rq->got[i];
	}
	total = at;
	upp_put_data_head(rq->reply->data + UPP_HDR_SIZE, 0, rq->n, rq->got);
	crc = upp_crc32c(0, rq->reply->data + UPP_HDR_SIZE + 8, total - UPP_HDR_SIZE - 8);
	upp_put_data_head(rq->reply->data + UPP_HDR_SIZE, crc, rq->n, rq->got);
	upp_put_hdr(rq->reply->data, UPP_READ | UPP_REPLY, rq->id, (uint32_t)(total - UPP_HDR_SIZE));
	rq->reply->len = total;
	S.bytes_out += total - head;
	if (c->closing)
		free(rq->reply);
	else
		queue_out(c, rq->reply);
	free(rq);
}

static void do_read(struct client *c, uint32_t id, const uint8_t *p, size_t len)
{
	struct upp_read rd;
	struct request *rq;
	size_t at;
	int ret = upp_get_read(p, len, &rd);

	if (ret < 0) {
		protocol_error(c, ret == -EMSGSIZE ? EMSGSIZE : EPROTO,
			       ret == -EMSGSIZE ? "READ asks for more than 8 MiB" : "malformed READ");
		return;
	}
	if (rd.handle >= UPP_MAX_HANDLES || c->handles[rd.handle] < 0 || c->closed[rd.handle]) {
		reply_error(c, id, EBADF, "no such handle");
		return;
	}
	rq = calloc(1, sizeof(*rq));
	if (!rq) {
		client_close(c, "out of memory");
		return;
	}
	rq->c = c;
	rq->id = id;
	rq->n = rd.n;
	rq->handle = rd.handle;
	rq->fd = c->handles[rd.handle];
	at = UPP_HDR_SIZE + 8 + 4 * (size_t)rd.n;
	for (uint32_t i = 0; i < rd.n; i++) {
		uint64_t size = c->sizes[rd.handle], o = rd.r[i].offset;

		if (o > (uint64_t)INT64_MAX - rd.r[i].length) {
			free(rq);
			reply_error(c, id, EINVAL, "range overflows");
			return;
		}
		rq->off[i] = o;
		/* Past the end of the file as it was opened: nothing to read. */
		rq->wanted[i] = o >= size ? 0 : (uint32_t)(size - o < rd.r[i].length ? size - o
										 : rd.r[i].length);
		rq->pos[i] = at;
		rq->ops[i] = (struct range_op){ rq, i };
		at += rq->wanted[i];
	}
	rq->reply = malloc(sizeof(*rq->reply) + at);
	if (!rq->reply) {
		free(rq);
		client_close(c, "out of memory");
		return;
	}
	rq->reply_size = at;
	rq->snap = c->snaps[rd.handle] ? &c->snaps[rd.handle]->sn : NULL;
	if (rq->snap && (ret = image_plan(rq)) != 0) {
		free(rq->segs);
		free(rq->segops);
		free(rq->reply);
		free(rq);
		reply_error(c, id, ret, ret == EINVAL ? "image reads are whole pages" : strerror(ret));
		return;
	}
	c->pending_bytes += at;
	S.queued += at;
	c->inflight++;
	c->busy[rd.handle]++;
	for (uint32_t i = 0; i < (rq->snap ? rq->nsegs : rd.n); i++)
		if (rq->snap)
			seg_submit(rq, i);
		else if (rq->wanted[i])
			read_submit(rq, i);
	if (rq->pending == 0)
		read_finish(rq);
}

/* The counters as one line, the same in a STATS reply and in the log. */
static int stats_line(char *line, size_t cap)
{
	return snprintf(line, cap,
			"clients=%u accepted=%llu refused=%llu requests=%llu bytes_out=%llu "
			"errors=%llu protocol_errors=%llu",
			S.nclients, (unsigned long long)S.accepted, (unsigned long long)S.refused,
			(unsigned long long)S.requests, (unsigned long long)S.bytes_out,
			(unsigned long long)S.errors, (unsigned long long)S.proto_errors);
}

static void do_stats(struct client *c, uint32_t id)
{
	char line[256];
	int n = stats_line(line, sizeof(line));

	reply_small(c, UPP_STATS | UPP_REPLY, id, (const uint8_t *)line, (size_t)n);
}

static void handle_frame(struct client *c, const struct upp_hdr *h, const uint8_t *p)
{
	S.requests++;
	c->last_request = now_s();
	if (!c->hello) {
		struct upp_hello hello;
		struct upp_hello_reply r = { UPP_VERSION, UPP_FEAT_IMAGE, UPP_MAX_FRAME, UPP_MAX_READ,
					     UPP_MAX_INFLIGHT, UPP_MAX_HANDLES, { 0 } };
		uint8_t out[24 + UPP_NONCE];

		if (h->type != UPP_HELLO || upp_get_hello(p, h->length, &hello) < 0) {
			protocol_error(c, EPROTO, "expected HELLO");
			return;
		}
		if (hello.version_min > UPP_VERSION || hello.version_max < UPP_VERSION) {
			reply_error(c, 0, EPROTONOSUPPORT, "no common protocol version");
			c->close_after_send = true;
			return;
		}
		c->hello = true;
		/* TCP clients must prove the secret; so must any client that asks
		 * to be challenged (it has the secret and wants our proof). */
		c->authed = !((c->tcp || (hello.features & UPP_FEAT_AUTH)) && S.secret_len);
		if (!c->authed) {
			if (getrandom(c->nonce, UPP_NONCE, 0) != UPP_NONCE) {
				client_close(c, "no randomness for a challenge");
				return;
			}
			r.features |= UPP_FEAT_AUTH;
			memcpy(r.nonce, c->nonce, UPP_NONCE);
		}
		reply_small(c, UPP_HELLO | UPP_REPLY, h->id, out, upp_put_hello_reply(out, &r));
		return;
	}
	if (!c->authed) {
		uint8_t cnonce[UPP_NONCE], mac[UPP_MAC], want[UPP_MAC];

		if (h->type != UPP_AUTH || upp_get_auth(p, h->length, cnonce, mac) < 0) {
			protocol_error(c, EACCES, "expected AUTH");
			return;
		}
		upp_auth_mac(S.secret, S.secret_len, 0, c->nonce, cnonce, want);
		if (!upp_equal32(mac, want)) {
			S.errors++;
			LOG(LOG_WARN, "client %u (%s): authentication failed", c->serial, c->peer);
			reply_error(c, h->id, EACCES, "authentication failed");
			c->close_after_send = true;
			return;
		}
		c->authed = true;
		upp_auth_mac(S.secret, S.secret_len, 1, c->nonce, cnonce, mac);
		reply_small(c, UPP_AUTH | UPP_REPLY, h->id, mac, upp_put_auth(want, NULL, mac));
		LOG(LOG_INFO, "client %u (%s): authenticated", c->serial, c->peer);
		return;
	}
	switch (h->type) {
	case UPP_OPEN:
	case UPP_OPEN_IMAGE:
		do_open(c, h->id, p, h->length, h->type == UPP_OPEN_IMAGE);
		break;
	case UPP_READ:
		do_read(c, h->id, p, h->length);
		break;
	case UPP_CLOSE: {
		uint32_t handle;

		if (upp_get_handle(p, h->length, &handle) < 0) {
			protocol_error(c, EPROTO, "malformed CLOSE");
		} else if (handle >= UPP_MAX_HANDLES || c->handles[handle] < 0 || c->closed[handle]) {
			reply_error(c, h->id, EBADF, "no such handle");
		} else {
			if (c->busy[handle])
				c->closed[handle] = true; /* the last READ closes it */
			else
				handle_close(c, handle);
			reply_small(c, UPP_CLOSE | UPP_REPLY, h->id, NULL, 0);
		}
		break;
	}
	case UPP_STATS:
		if (h->length)
			protocol_error(c, EPROTO, "malformed STATS");
		else
			do_stats(c, h->id);
		break;
	default:
		protocol_error(c, EPROTO, "unknown frame type");
		break;
	}
}

/*
 * Whether a READ from c may go now. Past --queue-limit in all, a client
 * holding replies waits for them to go; one holding none may go on to a
 * quarter past it. The daemon's replies take at most 1.25 times the limit
 * and one READ, however many clients hold them.
 */
static bool read_may_go(const struct client *c)
{
	return S.queued < S.queue_limit ||
	       (c->out_bytes + c->pending_bytes == 0 && S.queued < S.queue_limit + S.queue_limit / 4);
}

/* Consumes the complete frames in the receive buffer, as far as limits allow. */
static void parse(struct client *c)
{
	bool partial = false; /* stopped for bytes still to come, not for our limits */

	while (!c->closing && !c->close_after_send && !c->loading &&
	       c->inflight < UPP_MAX_INFLIGHT && c->out_bytes + c->pending_bytes < OUT_LIMIT) {
		struct upp_hdr h;
		size_t whole;
		int ret = upp_get_hdr(c->rbuf, c->rlen, UPP_MAX_FRAME, &h);

		if (ret == -EAGAIN) {
			partial = c->rlen > 0;
			break;
		}
		if (ret < 0) {
			protocol_error(c, ret == -EMSGSIZE ? EMSGSIZE : EPROTO,
				       ret == -EMSGSIZE ? "frame longer than 64 KiB" : "bad frame header");
			c->rlen = 0;
			break;
		}
		whole = UPP_HDR_SIZE + h.length;
		if (c->rlen < whole) {
			partial = true;
			break;
		}
		if (h.type == UPP_READ && c->authed && !read_may_go(c)) {
			if (!S.read_waits || S.queued < S.queued_at_wait)
				S.queued_at_wait = S.queued;
			S.read_waits = true;
			break;
		}
		handle_frame(c, &h, c->rbuf + UPP_HDR_SIZE);
		if (c->closing || c->close_after_send) {
			c->rlen = 0; /* nothing more is read from this client */
			break;
		}
		memmove(c->rbuf, c->rbuf + whole, c->rlen - whole);
		c->rlen -= whole;
	}
	/* Frames waiting while we do not read from it (paused at its limits)
	 * are not late: the read timeout runs only while we wait for bytes. */
	c->frame_since = partial ? (c->frame_since ? c->frame_since : now_s()) : 0;
}

/* ---- completions ---- */

static void on_accept(struct listener *l, int res)
{
	struct io_uring_sqe *sqe;

	if (res >= 0) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct client *c;

		if (S.nclients >= (unsigned)S.o->max_clients || S.draining) {
			S.refused++;
			LOG(LOG_WARN, "refusing a client on %s: %s", l->name,
			    S.draining ? "shutting down" : "max-clients reached");
			close(res);
		} else if (!(c = calloc(1, sizeof(*c))) ||
			   !(c->rbuf = malloc(UPP_HDR_SIZE + UPP_MAX_FRAME))) {
			free(c);
			close(res);
			LOG(LOG_ERR, "out of memory accepting a client");
		} else {
			int one = 1;

			c->fd = res;
			c->serial = ++S.serial;
			for (int i = 0; i < UPP_MAX_HANDLES; i++)
				c->handles[i] = -1;
			getpeername(res, (struct sockaddr *)&ss, &sl);
			if (ss.ss_family == AF_UNIX) {
				struct ucred cr;
				socklen_t cl = sizeof(cr);
				if (getsockopt(res, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0)
					snprintf(c->peer, sizeof(c->peer), "unix pid %d uid %u",
						 (int)cr.pid, (unsigned)cr.uid);
				else
					snprintf(c->peer, sizeof(c->peer), "unix");
			} else {
				char host[64] = "?", port[16] = "?";
				getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port,
					    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
				snprintf(c->peer, sizeof(c->peer), "tcp %s:%s", host, port);
				c->tcp = true;
				setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			}
			c->last_request = now_s();
			c->next = S.clients;
			if (S.clients)
				S.clients->prev = c;
			S.clients = c;
			S.nclients++;
			S.accepted++;
			LOG(LOG_INFO, "client %u (%s) connected on %s; %u connected", c->serial,
			    c->peer, l->name, S.nclients);
			post_recv(c);
		}
	} else if (res != -EINTR && res != -ECONNABORTED && res != -EAGAIN && !S.draining) {
		/* (While draining, the listeners were closed under their accepts.) */
		LOG(LOG_ERR, "accept on %s: %s", l->name, strerror(-res));
	}
	if (S.draining || l->fd < 0)
		return;
	sqe = upp_get_sqe(&S.ring);
	if (sqe) {
		io_uring_prep_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
		io_uring_sqe_set_data(sqe, tag(l, T_ACCEPT));
	}
}

static void on_recv(struct client *c, int res)
{
	c->recv_posted = false;
	if (!c->closing) {
		if (res == 0) {
			client_close(c, c->rlen ? "disconnected in the middle of a frame"
						: "disconnected");
		} else if (res < 0) {
			if (res != -EINTR && res != -EAGAIN)
				client_close(c, strerror(-res));
		} else {
			c->rlen += (size_t)res;
			parse(c);
		}
	}
	if (!c->closing)
		post_recv(c);
	op_done(c);
}

static void on_send(struct client *c, int res)
{
	c->send_posted = false;
	if (!c->closing) {
		if (res < 0 && res != -EINTR && res != -EAGAIN) {
			client_close(c, strerror(-res));
		} else if (res > 0) {
			struct out_buf *b = c->outq;

			c->send_progress = now_s();
			b->off += (size_t)res;
			if (b->off == b->len) {
				c->outq = b->next;
				if (!c->outq)
					c->outq_tail = NULL;
				c->out_bytes -= b->len;
				S.queued -= b->len;
				free(b);
			}
		}
	}
	if (!c->closing) {
		if (!c->outq && c->close_after_send) {
			client_close(c, "after a protocol error");
		} else {
			post_send(c);
			parse(c); /* room again: frames waiting in the buffer may go */
			post_recv(c);
		}
	}
	op_done(c);
}

static void on_read(struct range_op *op, int res)
{
	struct request *rq = op->req;
	struct client *c = rq->c;

	rq->pending--;
	if (rq->snap) {
		struct seg *sg = &rq->segs[op->i];

		if (res == -EINTR || res == -EAGAIN)
			seg_submit(rq, op->i);
		else if (res <= 0) /* the snapshot shrank under us: never zeros instead */
			rq->err = res < 0 ? -res : EIO;
		else if ((sg->got += (uint32_t)res) < sg->len && !rq->err)
			seg_submit(rq, op->i);
	} else if (res < 0 && res != -EINTR && res != -EAGAIN) {
		rq->err = -res;
	} else if (res > 0) {
		rq->got[op->i] += (uint32_t)res;
		if (rq->got[op->i] < rq->wanted[op->i] && !rq->err)
			read_submit(rq, op->i); /* short read: the rest */
	} else if (res == 0) {
		/* The file shrank since it was opened: the rest is past its end. */
	} else {
		read_submit(rq, op->i);
	}
	if (rq->pending == 0) {
		read_finish(rq);
		if (!c->closing) {
			parse(c);
			post_recv(c);
		}
	}
	op_done(c);
}

static void log_stats(void)
{
	char line[256];

	stats_line(line, sizeof(line));
	LOG(LOG_INFO, "stats: %s", line);
}

static void arm_timer(void)
{
	struct io_uring_sqe *sqe = upp_get_sqe(&S.ring);

	if (!sqe)
		return;
	io_uring_prep_timeout(sqe, &S.tick, 0, 0);
	io_uring_sqe_set_data(sqe, tag(NULL, T_TIMER));
}

static void arm_loaded(void)
{
	struct io_uring_sqe *sqe = upp_get_sqe(&S.ring);

	if (!sqe)
		return;
	io_uring_prep_read(sqe, S.load_efd, &S.load_count, sizeof(S.load_count), 0);
	io_uring_sqe_set_data(sqe, tag(NULL, T_LOADED));
}

/* READs that waited past --queue-limit: tried again once bytes have gone. */
static void wake_waiting_reads(void)
{
	if (!S.read_waits || S.queued >= S.queued_at_wait)
		return;
	S.read_waits = false;
	for (struct client *c = S.clients, *next; c; c = next) {
		next = c->next;
		if (!c->closing && c->rlen) {
			parse(c);
			post_recv(c);
		}
	}
}

static void arm_signal(void)
{
	struct io_uring_sqe *sqe = upp_get_sqe(&S.ring);

	if (!sqe)
		return;
	io_uring_prep_read(sqe, S.sigfd, &S.si, sizeof(S.si), 0);
	io_uring_sqe_set_data(sqe, tag(NULL, T_SIGNAL));
}

static void start_drain(const char *why)
{
	if (S.draining)
		return;
	S.draining = true;
	S.drain_deadline = now_s() + DRAIN_SECONDS;
	LOG(LOG_INFO, "%s: draining requests in flight, then exiting", why);
	for (int i = 0; i < S.nls; i++) {
		close(S.ls[i].fd); /* pending accepts complete with an error */
		S.ls[i].fd = -1;
	}
}

/*
 * Runs after the other completions of its batch: a client is judged on its
 * own progress, which those may show. Nor is it blamed for time the loop
 * itself was held up (a tick late by that much): its clocks move on by it.
 */
static void on_timer(void)
{
	time_t now = now_s(), stall = S.last_tick ? now - S.last_tick - 1 : 0;

	S.last_tick = now;
	shared_trim(0);
	for (struct client *c = S.clients, *next; c; c = next) {
		next = c->next;
		if (c->closing)
			continue;
		if (stall > 0) {
			c->last_request += stall;
			c->send_progress += stall;
			if (c->frame_since)
				c->frame_since += stall;
		}
		if (c->frame_since && now - c->frame_since > S.o->read_timeout)
			client_close(c, "frame not completed within the read timeout");
		else if (c->outq && now - c->send_progress > S.o->send_timeout) {
			/* It does not read: its replies would hold memory for ever. */
			char why[96];

			snprintf(why, sizeof(why), "send timeout: none of %zu queued bytes taken in %ld s",
				 c->out_bytes, S.o->send_timeout);
			client_close(c, why);
		} else if (!c->inflight && !c->outq && !c->loading && !c->rlen &&
			   now - c->last_request > S.o->idle_timeout)
			client_close(c, "idle timeout");
	}
	if (S.o->stats_interval && now >= S.next_stats) {
		log_stats();
		S.next_stats = now + S.o->stats_interval;
	}
	arm_timer();
}

static void on_signal(void)
{
	switch (S.si.ssi_signo) {
	case SIGTERM:
	case SIGINT:
		start_drain(S.si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
		break;
	case SIGHUP:
		log_reopen();
		break;
	case SIGUSR1:
		log_stats();
		break;
	}
	arm_signal();
}

/* Nothing left to send or read for anyone? */
static bool drained(void)
{
	for (struct client *c = S.clients; c; c = c->next)
		if (!c->closing && (c->inflight || c->outq || c->loading))
			return false;
	return true;
}

int server_run(const struct options *o)
{
	char ready[MAX_LISTEN * 300 + 16] = "ready";
	int ret;

	S.o = o;
	S.queue_limit = (size_t)o->queue_limit << 20;
	S.page_size = (size_t)sysconf(_SC_PAGESIZE);
	S.tick.tv_sec = 1;
	if (o->secret_file[0]) {
		mode_t mode;

		ret = upp_read_secret(o->secret_file, S.secret, sizeof(S.secret), &S.secret_len,
				      &mode);
		if (ret == -EINVAL) {
			fprintf(stderr, "upagerd: %s: the secret must be 1 to 4095 bytes\n",
				o->secret_file);
			return 1;
		}
		if (ret < 0) {
			fprintf(stderr, "upagerd: cannot read secret %s: %s\n", o->secret_file,
				strerror(-ret));
			return 1;
		}
		if (mode & 077)
			LOG(LOG_WARN, "secret file %s is readable by others (chmod 600 it)",
			    o->secret_file);
	}
	ret = jail_init(o->root);
	if (ret < 0) {
		fprintf(stderr, "upagerd: cannot open root %s: %s\n", o->root, strerror(-ret));
		return 1;
	}
	for (int i = 0; i < o->nlisten; i++) {
		if (!strncmp(o->listen[i], "unix:", 5)) {
			ret = listen_unix(o->listen[i] + 5, &S.ls[i].fd);
			snprintf(S.ls[i].name, sizeof(S.ls[i].name), "%s", o->listen[i]);
		} else {
			ret = listen_tcp(o->listen[i] + 4, o->allow_remote, &S.ls[i].fd, S.ls[i].name,
					 sizeof(S.ls[i].name));
		}
		if (ret < 0)
			return 1;
		S.nls++;
	}
	S.sigfd = signal_fd(); /* before the loader thread: it inherits the mask */
	ret = io_uring_queue_init(1024, &S.ring, 0);
	if (S.sigfd < 0 || ret < 0) {
		fprintf(stderr, "upagerd: cannot set up io_uring: %s\n",
			strerror(ret < 0 ? -ret : errno));
		return 1;
	}
	S.load_efd = snapload_start();
	if (S.load_efd < 0) {
		fprintf(stderr, "upagerd: cannot start the snapshot loader: %s\n",
			strerror(-S.load_efd));
		return 1;
	}
	for (int i = 0; i < S.nls; i++) {
		on_accept(&S.ls[i], -EAGAIN); /* arms the first accept */
		LOG(LOG_INFO, "listening on %s, serving %s", S.ls[i].name, o->root);
		strcat(ready, " ");
		strcat(ready, S.ls[i].name);
	}
	arm_timer();
	arm_signal();
	arm_loaded();
	S.next_stats = now_s() + o->stats_interval;
	if (o->ready_fd >= 0) {
		strcat(ready, "\n");
		if (write((int)o->ready_fd, ready, strlen(ready)) < 0)
			LOG(LOG_WARN, "cannot write to --ready-fd: %s", strerror(errno));
		close((int)o->ready_fd);
	}

	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		bool tick = false;

		if (S.draining && (drained() || now_s() > S.drain_deadline))
			break;
		ret = io_uring_submit_and_wait(&S.ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
			LOG(LOG_ERR, "io_uring: %s", strerror(-ret));
			break;
		}
		io_uring_for_each_cqe(&S.ring, head, cqe) {
			uintptr_t d = (uintptr_t)io_uring_cqe_get_data(cqe);
			void *p = (void *)(d & ~(uintptr_t)7);

			switch (d & 7) {
			case T_ACCEPT: on_accept(p, cqe->res); break;
			case T_RECV: on_recv(p, cqe->res); break;
			case T_SEND: on_send(p, cqe->res); break;
			case T_READ: on_read(p, cqe->res); break;
			case T_TIMER: tick = true; break;
			case T_SIGNAL: on_signal(); break;
			case T_LOADED: on_loaded(); break;
			}
			seen++;
		}
		io_uring_cq_advance(&S.ring, seen);
		wake_waiting_reads();
		if (tick)
			on_timer();
	}
	log_stats();
	LOG(LOG_INFO, "exiting%s", drained() ? "" : " (drain deadline passed)");
	for (int i = 0; i < o->nlisten; i++)
		if (!strncmp(o->listen[i], "unix:", 5))
			unlink(o->listen[i] + 5);
	return 0;
}
