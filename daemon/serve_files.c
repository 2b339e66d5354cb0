/* SPDX-License-Identifier: MIT */
/*
 * The page server's requests on files: OPEN and OPEN_IMAGE (opened in the
 * jail; a snapshot image's map shared, or loaded by the worker while the
 * loop serves the others), READ (one ring read per range, or per run of
 * stored pages of a snapshot image, answered by one DATA reply with its
 * CRC32C), and a client's handles, whose CLOSE waits for the READs using
 * them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jail.h"
#include "metrics.h"
#include "log.h"
#include "protocol.h"
#include "serve.h"
#include "snapfmt.h"
#include "snapload.h"
#include "uring.h"

void client_close_handle(struct client *c, uint32_t h)
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
	if ((ret = load_failed_lately(&w->st)) < 0)
		goto fail;
	if ((ret = dir = jail_dir_of(path, plen)) < 0)
		goto fail;
	/* The shared map keeps a descriptor of its own: this handle may close first. */
	if ((own = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		ret = -errno;
		goto fail;
	}
	budget = shared_room(budget);
	w->load = (struct snap_load){ .dirfd = dir, .fd = own, .ps = server.page_size,
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
void on_map_loaded(void)
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
				load_failed_remember(&w->st, ret);
		}
		c->loading = false;
		if (c->closing) {
			close(w->fd);
			if (ss)
				shared_put(ss);
		} else {
			open_done(c, w->id, w->h, w->fd, 0, ss, ret, w->shown, true);
			parse_frames(c);
			post_recv(c);
		}
		free(w);
		client_op_done(c);
	}
	arm_map_loaded();
}

/*
 * OPEN, or OPEN_IMAGE: the memory a file describes. A upager snapshot
 * (docs/SNAPSHOT.md) is then served decoded: its map checked at open, each
 * stored page's CRC32C checked before it is sent, absent and zero pages as
 * zeros. Any other file is its own image.
 */
void on_open_frame(struct client *c, uint32_t id, const uint8_t *p, size_t len, bool image)
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

static void seg_submit(struct read_request *rq, uint32_t i)
{
	struct io_uring_sqe *sqe = upp_get_sqe(&server.ring);
	struct seg *sg = &rq->segs[i];

	if (!sqe) {
		rq->err = ENOMEM;
		return;
	}
	io_uring_prep_read(sqe, sg->fd, rq->reply->data + sg->pos + sg->got, sg->len - sg->got,
			   sg->off + sg->got);
	io_uring_sqe_set_data(sqe, op_tag(&rq->segops[i], OP_READ));
	rq->pending++;
	rq->c->ops++;
}

static void read_submit(struct read_request *rq, uint32_t i)
{
	struct io_uring_sqe *sqe = upp_get_sqe(&server.ring);

	if (!sqe) {
		rq->err = ENOMEM;
		return;
	}
	io_uring_prep_read(sqe, rq->fd, rq->reply->data + rq->pos[i] + rq->got[i],
			   rq->wanted[i] - rq->got[i], rq->off[i] + rq->got[i]);
	io_uring_sqe_set_data(sqe, op_tag(&rq->ops[i], OP_READ));
	rq->pending++;
	rq->c->ops++;
}

static void read_finish(struct read_request *rq)
{
	struct client *c = rq->c;
	size_t head = UPP_HDR_SIZE + 8 + 4 * (size_t)rq->n, at = head, total;
	uint32_t crc;

	c->inflight--;
	c->pending_bytes -= rq->reply_size;
	server.queued -= rq->reply_size;
	if (rq->snap && !rq->err)
		image_check_pages(rq);
	if (--c->busy[rq->handle] == 0 && c->closed[rq->handle])
		client_close_handle(c, rq->handle);
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
	server.bytes_out += total - head;
	METRIC_ADD(bytes, total - head);
	if (c->closing)
		free(rq->reply);
	else
		queue_out(c, rq->reply);
	free(rq);
}

void on_read_frame(struct client *c, uint32_t id, const uint8_t *p, size_t len)
{
	struct upp_read rd;
	struct read_request *rq;
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
	if (rq->snap && (ret = image_plan_read(rq)) != 0) {
		free(rq->segs);
		free(rq->segops);
		free(rq->reply);
		free(rq);
		reply_error(c, id, ret, ret == EINVAL ? "image reads are whole pages" : strerror(ret));
		return;
	}
	c->pending_bytes += at;
	server.queued += at;
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

/* CLOSE: a handle with READs in flight is closed by the last of them. */
void on_close_frame(struct client *c, uint32_t id, const uint8_t *p, size_t len)
{
	uint32_t handle;

	if (upp_get_handle(p, len, &handle) < 0) {
		protocol_error(c, EPROTO, "malformed CLOSE");
	} else if (handle >= UPP_MAX_HANDLES || c->handles[handle] < 0 || c->closed[handle]) {
		reply_error(c, id, EBADF, "no such handle");
	} else {
		if (c->busy[handle])
			c->closed[handle] = true; /* the last READ closes it */
		else
			client_close_handle(c, handle);
		reply_small(c, UPP_CLOSE | UPP_REPLY, id, NULL, 0);
	}
}

void on_file_read(struct range_op *op, int res)
{
	struct read_request *rq = op->req;
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
			parse_frames(c);
			post_recv(c);
		}
	}
	client_op_done(c);
}
