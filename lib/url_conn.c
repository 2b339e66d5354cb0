/* SPDX-License-Identifier: MIT */
/*
 * The URL source's transfers: one thread per source drives libcurl's multi
 * interface. The object is read in aligned chunks (one range request
 * each, several in flight, over connections the multi handle keeps alive
 * and reuses); a fill copies from the chunks that hold its range, in
 * memory at most nchunks of them, and waits for the thread when one is
 * missing. A sequential reader keeps ra_depth chunks read ahead of it in
 * flight; what goes out of memory first is what readers are done with
 * (grab says in which order). Every request carries the
 * ETag pinned at open as If-Match, and every answer's ETag and
 * Content-Range are checked before a byte reaches a chunk: an object
 * replaced mid-restore (412, or another ETag) fails every fault from then
 * on rather than mix versions. 5xx, 429 and broken connections are retried
 * with backoff until the chunk's deadline; a fill still waiting at its own
 * deadline fails (the access gets SIGBUS), and a transfer that outlives
 * its chunk's deadline (a stalled server) is cut. Apart from the source
 * because none of this knows what a region is: it moves bytes into fills.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunk_cache.h"
#include "env.h"
#include "source_url.h"
#include "thread.h"
#include "upager-int.h"
#include "url_conn.h"

#define BACKOFF_MIN_NS 10000000ull    /* 10 ms, doubling */
#define BACKOFF_MAX_NS 1000000000ull  /* 1 s */
#define DEFAULT_CACHE_BYTES (4ull << 30)
#define PEER_POLL_NS 2000000ull       /* how often to look whether a peer's fetch is done */

enum { CH_FREE, CH_FETCH, CH_READY };
enum { CC_ASK, CC_FETCH }; /* a CH_FETCH chunk: look in the cache first, or fetch it */

enum { /* conn->logged: said once per source */
	SAID_WHOLE = 1, SAID_RETRY = 2, SAID_TIMEOUT = 4, SAID_STALE = 8, SAID_PROTO = 16,
	SAID_CACHE_BAD = 32, SAID_CACHE_PUT = 64, SAID_PEER = 128,
};

struct upager__url_chunk {
	/* Under conn->lock (handlers copy from READY chunks they pinned): */
	int state;
	uint64_t idx;
	unsigned pins;
	uint64_t lru;
	/* Bytes copied out since fetched: none (read ahead, not yet used), some,
	 * or at least its length (a sequential reader is done with it). */
	atomic_uint_fast64_t copied;
	/* The thread's: */
	struct upager__url_conn *conn;
	struct upager__url_recv rx; /* its bytes (buf: chunk_size, allocated on first use) */
	struct upager__fill *waiters;
	CURL *easy;
	bool running;           /* added to the multi handle */
	uint64_t retry_at, deadline;
	unsigned attempts;
	int cache_step;     /* CC_* */
	bool claimed;       /* this process fetches it for the cache's other users too */
	uint64_t peer_since; /* when another process was first seen fetching it */
	char range[48];
};

static void say(struct upager__url_conn *conn, const struct upager__fill *f, unsigned once,
		int level, const char *fmt, ...) UPAGER__PRINTF(5, 6);

/* Through the log of the pager a fill belongs to (else the options' log). */
static void say(struct upager__url_conn *conn, const struct upager__fill *f, unsigned once,
		int level, const char *fmt, ...)
{
	char buf[400];
	va_list ap;

	if (once && (conn->logged & once))
		return;
	conn->logged |= once;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (f && f->region)
		upager__log(f->region->pager, level, "url %s: %s", conn->t.shown, buf);
	else
		upager__url_log(&conn->t, level, "url %s: %s", conn->t.shown, buf);
}

/*
 * Where f's bytes from f->done on are: true with a run of *n bytes at
 * object offset *obj, or false with *n bytes of zeros (past the object's
 * end, or what conn->locate says are zeros).
 */
static bool locate(const struct upager__url_conn *conn, const struct upager__fill *f,
		   uint64_t *obj, size_t *n)
{
	uint64_t at = f->roff + f->done;

	if (conn->locate)
		return conn->locate(conn->locate_arg, at, f->len - f->done, obj, n);
	*obj = at;
	*n = f->len - f->done;
	if (at >= conn->t.size)
		return false;
	if (*n > conn->t.size - at)
		*n = (size_t)(conn->t.size - at);
	return true;
}

/* Places the zeros due next; true with the object bytes f needs next, false when f is full. */
static bool need(const struct upager__url_conn *conn, struct upager__fill *f, uint64_t *obj,
		 size_t *n)
{
	while (f->done < f->len) {
		if (locate(conn, f, obj, n))
			return true;
		memset((char *)f->buf + f->done, 0, *n);
		f->done += *n;
	}
	return false;
}

/* Copies what ch holds of the run [obj, obj + n) that f needs next. */
static void copy_part(struct upager__fill *f, struct upager__url_chunk *ch, uint64_t obj,
		      size_t n)
{
	uint64_t cend = ch->rx.off + ch->rx.len;

	if (obj + n > cend)
		n = (size_t)(cend - obj);
	memcpy((char *)f->buf + f->done, ch->rx.buf + (obj - ch->rx.off), n);
	f->done += n;
	atomic_fetch_add_explicit(&ch->copied, n, memory_order_relaxed);
}

/* DATA, or what conn->check finds wrong with a full fill. */
static int checked(const struct upager__url_conn *conn, struct upager__fill *f)
{
	return conn->check ? conn->check(conn->locate_arg, f) : UPAGER__FILL_DATA;
}

static struct upager__url_chunk *find(struct upager__url_conn *conn, uint64_t idx)
{
	for (unsigned i = 0; i < conn->nchunks; i++)
		if (conn->chunks[i].state != CH_FREE && conn->chunks[i].idx == idx)
			return &conn->chunks[i];
	return NULL;
}

/* Is the furthest chunk a sequential reader at chunk idx wants read ahead
 * there (fetched, or being fetched)? Then the thread need not look at the
 * others yet (one look at the chunks, not ra_depth). Under conn->lock. */
static bool ahead_there(struct upager__url_conn *conn, uint64_t idx)
{
	uint64_t last = (conn->t.size - 1) / conn->chunk_size;

	return find(conn, idx + conn->ra_depth < last ? idx + conn->ra_depth : last) != NULL;
}

/* Tells the thread that a sequential reader is at chunk idx (it reads
 * ahead of it). Under conn->lock; the caller wakes the thread. */
static void hint_ahead(struct upager__url_conn *conn, uint64_t idx)
{
	for (unsigned i = 0; i < conn->nhints; i++)
		if (conn->hints[i] == idx)
			return;
	if (conn->nhints < UPAGER__URL_HINTS)
		conn->hints[conn->nhints++] = idx;
	else
		conn->hints[idx % UPAGER__URL_HINTS] = idx; /* readers past this many: some wait */
}

int upager__url_conn_fill(struct upager__url_conn *conn, struct upager__fill *f)
{
	uint64_t obj;
	size_t n;
	bool more, wake = false;

	pthread_mutex_lock(&conn->lock);
	while (!conn->stale && (more = need(conn, f, &obj, &n))) {
		struct upager__url_chunk *ch = find(conn, obj / conn->chunk_size);

		if (!ch || ch->state != CH_READY)
			break;
		ch->pins++; /* the thread evicts no pinned chunk: copy without the lock */
		ch->lru = ++conn->clock;
		if (f->sequential && !ahead_there(conn, ch->idx)) {
			hint_ahead(conn, ch->idx);
			wake = true;
		}
		pthread_mutex_unlock(&conn->lock);
		copy_part(f, ch, obj, n);
		pthread_mutex_lock(&conn->lock);
		ch->pins--;
	}
	if (conn->stale || !more) {
		int ret = conn->stale;

		pthread_mutex_unlock(&conn->lock);
		if (wake) /* a stream read from memory: the thread reads on ahead of it */
			curl_multi_wakeup(conn->multi);
		return ret ? ret : checked(conn, f);
	}
	f->src_next = NULL;
	if (conn->queue_tail)
		conn->queue_tail->src_next = f;
	else
		conn->queue = f;
	conn->queue_tail = f;
	pthread_mutex_unlock(&conn->lock);
	curl_multi_wakeup(conn->multi);
	return UPAGER__FILL_PENDING;
}

/* ---- the transfer thread ---- */

static void complete(const struct upager__url_conn *conn, struct upager__fill *f, int result)
{
	if (conn->complete)
		conn->complete(f, result);
	else
		upager__fill_complete(f, result);
}

/* Whether nobody waits for f any more: its region is being released. */
static bool abandoned(const struct upager__fill *f)
{
	return f->region && atomic_load(&f->region->dead);
}

static void fail_list(const struct upager__url_conn *conn, struct upager__fill *f, int err)
{
	while (f) {
		struct upager__fill *next = f->src_next;

		complete(conn, f, err);
		f = next;
	}
}

static void stop_transfer(struct upager__url_conn *conn, struct upager__url_chunk *ch)
{
	if (ch->running) {
		curl_multi_remove_handle(conn->multi, ch->easy);
		ch->running = false;
		conn->active--;
	}
}

/* The chunk's transfer is over for good: its waiters fail, its slot is free. */
static void fail_chunk(struct upager__url_conn *conn, struct upager__url_chunk *ch, int err)
{
	struct upager__fill *w = ch->waiters;

	stop_transfer(conn, ch);
	ch->waiters = NULL;
	if (ch->claimed)
		upager__chunk_cache_unclaim(conn->cache, ch->idx);
	ch->claimed = false;
	pthread_mutex_lock(&conn->lock);
	ch->state = CH_FREE;
	pthread_mutex_unlock(&conn->lock);
	fail_list(conn, w, err);
}

/* How far a READY chunk's bytes have gone, in the order grab takes them
 * (the higher first). */
enum { SOME, NONE_YET, ALL };

static int copied_state(const struct upager__url_chunk *ch)
{
	uint64_t c = atomic_load_explicit(&ch->copied, memory_order_relaxed);

	return !c ? NONE_YET : c < ch->rx.len ? SOME : ALL;
}

/*
 * A slot for chunk idx: a free one, else a READY one nobody copies from:
 * the least recently used of those whose every byte was copied out, else
 * the one read furthest ahead and not yet copied from (needed last), else
 * the least recently used of those partly copied (a stream is in the
 * middle of it, or a window took half of it and the next wants the rest:
 * it went first, and chunks were fetched two and three times). For a read
 * ahead (ahead): only a free one or one copied out, so that what is read
 * ahead stays within the chunks in memory instead of pushing out what
 * readers need sooner.
 */
static struct upager__url_chunk *grab(struct upager__url_conn *conn, uint64_t idx, bool ahead)
{
	struct upager__url_chunk *best = NULL;
	int best_st = SOME;

	pthread_mutex_lock(&conn->lock);
	for (unsigned i = 0; i < conn->nchunks; i++) {
		struct upager__url_chunk *ch = &conn->chunks[i];
		int st;

		if (ch->state == CH_FREE) {
			best = ch;
			break;
		}
		if (ch->state != CH_READY || ch->pins)
			continue;
		st = copied_state(ch);
		if (ahead && st != ALL)
			continue;
		if (!best || st > best_st ||
		    (st == best_st && (st == NONE_YET ? ch->idx > best->idx : ch->lru < best->lru))) {
			best = ch;
			best_st = st;
		}
	}
	if (best) {
		best->state = CH_FETCH;
		best->idx = idx;
		atomic_store_explicit(&best->copied, 0, memory_order_relaxed);
	}
	pthread_mutex_unlock(&conn->lock);
	if (best) {
		best->rx.off = idx * conn->chunk_size;
		best->rx.len = conn->t.size - best->rx.off < conn->chunk_size ? conn->t.size - best->rx.off
									: conn->chunk_size;
		best->waiters = NULL;
		best->attempts = 0;
		best->cache_step = conn->cache ? CC_ASK : CC_FETCH;
		best->claimed = false;
		best->peer_since = 0;
		best->retry_at = 0; /* started by the loop as soon as a transfer may */
		best->deadline = upager__now_ns() + conn->deadline_ns;
	}
	return best;
}

/*
 * The depth chunks after chunk idx, in order, as far as slots allow without
 * dropping a chunk read ahead and not yet used: a sequential reader keeps
 * ra_depth chunks in flight instead of meeting each chunk missing, and a
 * fill that spans two chunks asks for the second with the first. Started
 * after the chunks fills wait for (tend).
 */
static void read_ahead(struct upager__url_conn *conn, uint64_t idx, unsigned depth, bool ahead)
{
	uint64_t last = (conn->t.size - 1) / conn->chunk_size;

	for (uint64_t k = idx + 1; k <= idx + depth && k <= last; k++)
		if (!find(conn, k) && !grab(conn, k, ahead))
			break; /* no room now: asked again by the reader's next fill */
}

static void route(struct upager__url_conn *conn, struct upager__fill *f,
		  struct upager__fill **blocked);

static void deliver(struct upager__url_conn *conn, struct upager__url_chunk *ch,
		    struct upager__fill **blocked)
{
	struct upager__fill *w = ch->waiters;

	ch->waiters = NULL;
	/* Pinned: a waiter routed to its next chunk must not take this one's slot. */
	pthread_mutex_lock(&conn->lock);
	ch->pins++;
	pthread_mutex_unlock(&conn->lock);
	while (w) {
		struct upager__fill *next = w->src_next;

		uint64_t obj;
		size_t n;

		if (need(conn, w, &obj, &n))
			copy_part(w, ch, obj, n); /* ch is the chunk it waited for */
		route(conn, w, blocked); /* done, or its next chunk */
		w = next;
	}
	pthread_mutex_lock(&conn->lock);
	ch->pins--;
	pthread_mutex_unlock(&conn->lock);
}

/* Takes f to the chunk it needs next: copies from it, waits on it, or starts it. */
static void route(struct upager__url_conn *conn, struct upager__fill *f,
		  struct upager__fill **blocked)
{
	f->src_next = NULL;
	if (conn->stale) {
		complete(conn, f, conn->stale);
		return;
	}
	uint64_t obj;
	size_t n;

	while (need(conn, f, &obj, &n)) {
		uint64_t idx = obj / conn->chunk_size;
		struct upager__url_chunk *ch = find(conn, idx);

		if (!ch && !(ch = grab(conn, idx, false))) { /* no slot: wait for one */
			f->src_next = *blocked;
			*blocked = f;
			return;
		}
		bool copied = ch->state == CH_READY;

		if (copied)
			copy_part(f, ch, obj, n); /* only this thread evicts: no pin needed */
		/* After the copy: a read ahead may take a used READY chunk, ch
		 * too (one being fetched, never). */
		if (f->sequential)
			read_ahead(conn, idx, conn->ra_depth, true);
		else if ((obj + n - 1) / conn->chunk_size > idx)
			read_ahead(conn, idx, 1, false); /* the fill needs it: asked for with the first */
		if (copied)
			continue;
		/* A chunk grabbed ahead keeps going as long as its waiters may
		 * wait: its own deadline ran from the grab. */
		if (ch->deadline < f->deadline_ns)
			ch->deadline = f->deadline_ns;
		f->src_next = ch->waiters;
		ch->waiters = f;
		return;
	}
	complete(conn, f, checked(conn, f));
}

/* ch holds its bytes: its waiters copy them, and go on to their next chunks. */
static void ready(struct upager__url_conn *conn, struct upager__url_chunk *ch,
		  struct upager__fill **blocked)
{
	pthread_mutex_lock(&conn->lock);
	ch->state = CH_READY;
	ch->lru = ++conn->clock;
	pthread_mutex_unlock(&conn->lock);
	deliver(conn, ch, blocked);
}

static int chunk_buf(struct upager__url_conn *conn, struct upager__url_chunk *ch)
{
	if (!ch->rx.buf)
		ch->rx.buf = malloc(conn->chunk_size);
	return ch->rx.buf ? 0 : -ENOMEM;
}

/* A fetched chunk into the cache, for the other processes (after its waiters had it). */
static void share(struct upager__url_conn *conn, struct upager__url_chunk *ch)
{
	int ret = upager__chunk_cache_put(conn->cache, ch->idx, ch->rx.buf, (size_t)ch->rx.len);

	if (ret < 0)
		say(conn, NULL, SAID_CACHE_PUT, UPAGER_LOG_WARN,
		    "chunk cache: storing a chunk: %s (chunks are still fetched and used)",
		    strerror(-ret));
	if (ch->claimed)
		upager__chunk_cache_unclaim(conn->cache, ch->idx);
	ch->claimed = false;
}

/*
 * Before ch is fetched: from the cache (1: ready, its waiters served), or
 * -EAGAIN while another process fetches it (look again at ch->retry_at:
 * its file appears when it is done), or 0: this process fetches it, and
 * claims it when it can. A peer that takes more than a quarter of the
 * deadline (stopped, or slow) is not waited for any longer: fetched twice,
 * but never late.
 */
static int from_cache(struct upager__url_conn *conn, struct upager__url_chunk *ch, uint64_t now,
		      struct upager__fill **blocked)
{
	int ret = chunk_buf(conn, ch);

	if (ret < 0)
		return ret;
	for (int pass = 0; pass < 2; pass++) {
		ret = upager__chunk_cache_get(conn->cache, ch->idx, ch->rx.buf, (size_t)ch->rx.len);
		if (ret == -EBADMSG)
			say(conn, ch->waiters, SAID_CACHE_BAD, UPAGER_LOG_WARN,
			    "chunk cache: chunk %" PRIu64 " was damaged: removed, fetched again",
			    ch->idx);
		if (ret == 0) {
			if (ch->claimed)
				upager__chunk_cache_unclaim(conn->cache, ch->idx);
			ch->claimed = false;
			conn->cache_hits++;
			ready(conn, ch, blocked);
			return 1;
		}
		if (pass)
			break;
		/* Missing: fetch it, unless a peer does; then look again, it may just have. */
		ret = upager__chunk_cache_claim(conn->cache, ch->idx);
		if (ret == -EAGAIN) {
			if (!ch->peer_since)
				ch->peer_since = now;
			if (now - ch->peer_since < conn->deadline_ns / 4) {
				ch->retry_at = now + PEER_POLL_NS;
				return -EAGAIN;
			}
			say(conn, ch->waiters, SAID_PEER, UPAGER_LOG_WARN,
			    "chunk cache: another process has been fetching chunk %" PRIu64
			    " for %" PRIu64 " ms: fetching it too",
			    ch->idx, (now - ch->peer_since) / 1000000);
		}
		ch->claimed = ret == 0;
	}
	ch->cache_step = CC_FETCH;
	return 0;
}

static void go_stale(struct upager__url_conn *conn, struct upager__url_chunk *ch, int err,
		     struct upager__fill **blocked)
{
	say(conn, ch->waiters, SAID_STALE, UPAGER_LOG_ERROR,
	    err == -ESTALE ? "HTTP %ld: the object is no longer the one opened (ETag %s): "
			     "its faults fail (SIGBUS)"
			   : "HTTP %ld: the object went away (opened with ETag %s): its faults fail (SIGBUS)",
	    ch->rx.resp.status, conn->t.etag);
	pthread_mutex_lock(&conn->lock);
	conn->stale = err;
	pthread_mutex_unlock(&conn->lock);
	for (unsigned i = 0; i < conn->nchunks; i++)
		if (conn->chunks[i].state == CH_FETCH)
			fail_chunk(conn, &conn->chunks[i], err);
	fail_list(conn, *blocked, err);
	*blocked = NULL;
}

static void finished(struct upager__url_conn *conn, struct upager__url_chunk *ch, CURLcode res,
		     struct upager__fill **blocked)
{
	long st = ch->rx.resp.status;
	uint64_t now = upager__now_ns(), backoff;
	int err;

	stop_transfer(conn, ch);
	if (upager__url_recv_done(&ch->rx, res)) {
		if (ch->rx.whole)
			say(conn, ch->waiters, SAID_WHOLE, UPAGER_LOG_WARN,
			    "the server answers range requests with the whole object: "
			    "reading up to each chunk");
		conn->cache_fetched++;
		ready(conn, ch, blocked);
		if (conn->cache)
			share(conn, ch);
		return;
	}
	err = upager__url_status_errno(st);
	if (ch->rx.bad == -ESTALE || err) {
		go_stale(conn, ch, ch->rx.bad == -ESTALE ? -ESTALE : err, blocked);
		return;
	}
	if (ch->rx.bad) {
		say(conn, ch->waiters, SAID_PROTO, UPAGER_LOG_ERROR,
		    "HTTP %ld: not the bytes %s asked for: those faults fail (SIGBUS)", st, ch->range);
		fail_chunk(conn, ch, ch->rx.bad);
		return;
	}
	if (res == CURLE_OK && st != 200 && st != 206 && st != 429 && st < 500) {
		say(conn, ch->waiters, SAID_PROTO, UPAGER_LOG_ERROR,
		    "HTTP %ld to a range request: its faults fail (SIGBUS)", st);
		fail_chunk(conn, ch, -EIO);
		return;
	}
	/* 5xx, 429, a broken connection or a short body: again, later. */
	backoff = BACKOFF_MIN_NS << (ch->attempts < 7 ? ch->attempts : 7);
	if (backoff > BACKOFF_MAX_NS)
		backoff = BACKOFF_MAX_NS;
	ch->attempts++;
	if (now + backoff >= ch->deadline) {
		say(conn, ch->waiters, SAID_TIMEOUT, UPAGER_LOG_ERROR,
		    "bytes %s: %s after %u attempts: its faults fail (SIGBUS)", ch->range,
		    res != CURLE_OK ? curl_easy_strerror(res) : "no good answer", ch->attempts);
		fail_chunk(conn, ch, -ETIMEDOUT);
		return;
	}
	if (ch->claimed) { /* not ours to hold while we wait: a peer may have better luck */
		upager__chunk_cache_unclaim(conn->cache, ch->idx);
		ch->claimed = false;
		ch->cache_step = CC_ASK;
		ch->peer_since = 0;
	}
	if (res != CURLE_OK)
		say(conn, ch->waiters, SAID_RETRY, UPAGER_LOG_WARN, "bytes %s: %s: retrying", ch->range,
		    curl_easy_strerror(res));
	else
		say(conn, ch->waiters, SAID_RETRY, UPAGER_LOG_WARN, "bytes %s: HTTP %ld: retrying",
		    ch->range, st);
	ch->retry_at = now + backoff;
}

static int start(struct upager__url_conn *conn, struct upager__url_chunk *ch)
{
	if (chunk_buf(conn, ch) < 0)
		return -ENOMEM;
	if (!ch->easy) {
		ch->easy = curl_easy_init();
		if (!ch->easy)
			return -ENOMEM;
		upager__url_easy_common(ch->easy, &conn->t);
		curl_easy_setopt(ch->easy, CURLOPT_URL, conn->t.url);
		curl_easy_setopt(ch->easy, CURLOPT_HTTPHEADER, conn->t.headers);
		curl_easy_setopt(ch->easy, CURLOPT_HEADERFUNCTION, upager__url_header_cb);
		curl_easy_setopt(ch->easy, CURLOPT_HEADERDATA, &ch->rx.resp);
		curl_easy_setopt(ch->easy, CURLOPT_WRITEFUNCTION, upager__url_body_cb);
		curl_easy_setopt(ch->easy, CURLOPT_WRITEDATA, &ch->rx);
		curl_easy_setopt(ch->easy, CURLOPT_PRIVATE, ch);
		/* Over HTTP/2 (https, where the server offers it) requests share one
		 * connection: wait for it rather than open more while it is made. */
		curl_easy_setopt(ch->easy, CURLOPT_PIPEWAIT, 1L);
	}
	snprintf(ch->range, sizeof(ch->range), "%" PRIu64 "-%" PRIu64, ch->rx.off, ch->rx.off + ch->rx.len - 1);
	curl_easy_setopt(ch->easy, CURLOPT_RANGE, ch->range);
	upager__url_recv_reset(&ch->rx);
	if (curl_multi_add_handle(conn->multi, ch->easy) != CURLM_OK)
		return -ENOMEM;
	ch->running = true;
	conn->active++;
	return 0;
}

/*
 * Deadlines: waiters past theirs fail, transfers past their chunk's are
 * cut; chunks due (new, or retrying) start while transfers may. Returns
 * the next time anything here is due.
 */
/* Does a fault wait for ch (a fill not a prefetch's or a readahead
 * window's, or one a fault came to meanwhile)? */
static bool demanded(const struct upager__url_chunk *ch)
{
	for (struct upager__fill *f = ch->waiters; f; f = f->src_next)
		if (!f->prefetch || atomic_load(&f->fault_joined))
			return true;
	return false;
}

static uint64_t tend(struct upager__url_conn *conn, uint64_t now, struct upager__fill **blocked)
{
	uint64_t next = now + 1000000000ull;
	struct upager__fill **pp, *f, *dead = NULL;

	/* Chunks faults wait for first (looked up in the cache, started),
	 * then those only prefetches wait for: a working set prefetched in
	 * chunk order has every transfer busy, and a fault's chunk would
	 * start last. */
	for (unsigned k = 0; k < 2 * conn->nchunks; k++) {
		struct upager__url_chunk *ch = &conn->chunks[k % conn->nchunks];
		int ret;

		if (ch->state != CH_FETCH || (k < conn->nchunks) != demanded(ch))
			continue;
		for (pp = &ch->waiters; (f = *pp);) {
			if (now >= f->deadline_ns || abandoned(f)) {
				*pp = f->src_next;
				f->src_next = dead;
				dead = f;
			} else {
				if (f->deadline_ns < next)
					next = f->deadline_ns;
				pp = &f->src_next;
			}
		}
		if (now >= ch->deadline && !ch->waiters) {
			fail_chunk(conn, ch, -ETIMEDOUT); /* read ahead, not done in time: nobody asked */
			continue;
		}
		if (now >= ch->deadline) {
			say(conn, ch->waiters ? ch->waiters : dead, SAID_TIMEOUT, UPAGER_LOG_ERROR,
			    "bytes %s: no answer within the deadline: cut, its faults fail (SIGBUS)",
			    ch->range);
			fail_chunk(conn, ch, -ETIMEDOUT);
			continue;
		}
		if (ch->deadline < next)
			next = ch->deadline;
		if (ch->running)
			continue;
		/* Nobody waits for it (read ahead): below, when it may start, so
		 * that it claims no chunk other processes would wait for. */
		if (!ch->waiters)
			continue;
		if (ch->retry_at <= now && ch->cache_step == CC_ASK) {
			ret = from_cache(conn, ch, now, blocked);
			if (ret == 1) {
				next = now; /* its waiters may have started chunks behind us */
				continue;
			}
			if (ret < 0 && ret != -EAGAIN) {
				fail_chunk(conn, ch, ret);
				continue;
			}
		}
		if (ch->retry_at > now) {
			if (ch->retry_at < next)
				next = ch->retry_at;
		} else if (ch->waiters && conn->active < conn->max_requests &&
			   (ret = start(conn, ch)) < 0) {
			fail_chunk(conn, ch, ret);
		}
	}
	/* Then the chunks nobody waits for yet (read ahead), nearest first,
	 * leaving one transfer for the next fault. */
	while (conn->active + (conn->max_requests > 1) < conn->max_requests) {
		struct upager__url_chunk *first = NULL;
		int ret;

		for (unsigned i = 0; i < conn->nchunks; i++) {
			struct upager__url_chunk *ch = &conn->chunks[i];

			if (ch->state == CH_FETCH && !ch->running && !ch->waiters &&
			    ch->retry_at <= now && (!first || ch->idx < first->idx))
				first = ch;
		}
		if (!first)
			break;
		if (first->cache_step == CC_ASK) {
			ret = from_cache(conn, first, now, blocked);
			if (ret == 1 || ret == -EAGAIN) {
				if (ret == -EAGAIN && first->retry_at < next)
					next = first->retry_at;
				continue; /* ready, or a peer fetches it: look again */
			}
			if (ret < 0) {
				fail_chunk(conn, first, ret);
				continue;
			}
		}
		if ((ret = start(conn, first)) < 0)
			fail_chunk(conn, first, ret);
	}
	for (pp = blocked; (f = *pp);) {
		if (now >= f->deadline_ns || abandoned(f)) {
			*pp = f->src_next;
			f->src_next = dead;
			dead = f;
		} else {
			pp = &f->src_next;
		}
	}
	while (dead) {
		f = dead;
		dead = f->src_next;
		if (!abandoned(f))
			say(conn, f, SAID_TIMEOUT, UPAGER_LOG_ERROR,
			    "bytes from %zu: no answer within the deadline: the fault fails (SIGBUS)",
			    f->roff + f->done);
		complete(conn, f, abandoned(f) ? -ECANCELED : -ETIMEDOUT);
	}
	return next;
}

static void *conn_thread(void *arg)
{
	struct upager__url_conn *conn = arg;
	struct upager__fill *blocked = NULL;

	for (;;) {
		struct upager__fill *in, *retry;
		uint64_t now, next;
		long wait_ms = -1;
		CURLMsg *m;
		int left, running;
		bool stop;

		uint64_t hints[UPAGER__URL_HINTS];
		unsigned nhints;

		pthread_mutex_lock(&conn->lock);
		stop = conn->stop;
		in = conn->queue;
		conn->queue = conn->queue_tail = NULL;
		nhints = conn->nhints;
		memcpy(hints, conn->hints, nhints * sizeof(hints[0]));
		conn->nhints = 0;
		pthread_mutex_unlock(&conn->lock);
		if (stop) {
			fail_list(conn, in, -ECANCELED);
			break;
		}
		/* The blocked first: they came first. */
		retry = blocked;
		blocked = NULL;
		while (retry) {
			struct upager__fill *f = retry;

			retry = f->src_next;
			route(conn, f, &blocked);
		}
		while (in) {
			struct upager__fill *f = in;

			in = f->src_next;
			route(conn, f, &blocked);
		}
		for (unsigned i = 0; i < nhints; i++)
			read_ahead(conn, hints[i], conn->ra_depth, true);
		now = upager__now_ns();
		next = tend(conn, now, &blocked);
		curl_multi_perform(conn->multi, &running);
		while ((m = curl_multi_info_read(conn->multi, &left))) {
			struct upager__url_chunk *ch = NULL;

			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&ch);
			finished(conn, ch, m->data.result, &blocked);
			next = now; /* new work may be due: retries, blocked fills */
		}
		curl_multi_timeout(conn->multi, &wait_ms);
		now = upager__now_ns();
		if (next <= now)
			wait_ms = 0;
		else if (wait_ms < 0 || (uint64_t)wait_ms > (next - now) / 1000000 + 1)
			wait_ms = (long)((next - now) / 1000000 + 1);
		if (wait_ms > 0)
			curl_multi_poll(conn->multi, NULL, 0, (int)wait_ms, NULL);
	}
	fail_list(conn, blocked, -ECANCELED);
	for (unsigned i = 0; i < conn->nchunks; i++) {
		struct upager__url_chunk *ch = &conn->chunks[i];

		if (ch->state == CH_FETCH)
			fail_chunk(conn, ch, -ECANCELED);
		if (ch->easy)
			curl_easy_cleanup(ch->easy);
		ch->easy = NULL;
	}
	return NULL;
}

/*
 * The chunk cache o, or else the environment, names: none, or opened into
 * conn->cache. A cache that cannot be used (its directory unwritable,
 * full, not ours) is said and done without: the object is still there.
 */
static int open_cache(struct upager__url_conn *conn, const char *url,
		      const upager_url_options_t *o)
{
	const char *dir = o->cache_dir ? o->cache_dir : getenv("UPAGER_CACHE_DIR");
	const char *bytes_env = getenv("UPAGER_CACHE_BYTES");
	uint64_t bytes = o->cache_bytes;
	char *name;
	int ret;

	if (!dir || !*dir)
		return 0;
	if (!bytes && bytes_env && *bytes_env &&
	    ((bytes = upp_parse_size(bytes_env)) < UPAGER__URL_CACHE_MIN_CHUNKS * conn->chunk_size)) {
		upager__url_log(&conn->t, UPAGER_LOG_ERROR,
				"UPAGER_CACHE_BYTES=%s: not a size of %u chunks or more (like 8G)",
				bytes_env, UPAGER__URL_CACHE_MIN_CHUNKS);
		return -EINVAL;
	}
	if (!bytes)
		bytes = DEFAULT_CACHE_BYTES;
	name = upager__url_identity(url, &conn->t);
	conn->cache = malloc(sizeof(*conn->cache));
	if (!name || !conn->cache) {
		free(name);
		free(conn->cache);
		conn->cache = NULL;
		return -ENOMEM;
	}
	ret = upager__chunk_cache_open(conn->cache, dir, bytes, name, conn->t.etag, conn->t.size,
				       conn->chunk_size);
	free(name);
	if (ret < 0) {
		upager__url_log(&conn->t, UPAGER_LOG_WARN,
				"url %s: chunk cache %s: %s%s: reading without it", conn->t.shown, dir,
				strerror(-ret),
				ret == -EPERM ? " (owned by another user, or others may write it)" : "");
		free(conn->cache);
		conn->cache = NULL;
		return 0;
	}
	upager__url_log(&conn->t, UPAGER_LOG_INFO,
			"url %s: chunk cache %s (bound %" PRIu64 " MiB), key %.16s",
			conn->t.shown, dir, bytes >> 20, conn->cache->key);
	return 0;
}

static void close_cache(struct upager__url_conn *conn)
{
	if (conn->cache) {
		upager__chunk_cache_close(conn->cache);
		free(conn->cache);
		conn->cache = NULL;
	}
}

int upager__url_conn_start(struct upager__url_conn *conn, const char *url,
			   const upager_url_options_t *o)
{
	int ret;

	upager__url_target_opened(&conn->t); /* from here on, the thread's connections */
	conn->chunk_size = o->chunk_size;
	conn->max_requests = o->max_requests;
	conn->nchunks = o->mem_chunks;
	/* Half the memory ahead of one stream, as many as may be in flight
	 * but one (a fault's): a 20 ms round trip then costs a stream nothing
	 * once it runs. */
	conn->ra_depth = conn->nchunks / 2 < conn->max_requests - 1 ? conn->nchunks / 2
								      : conn->max_requests - 1;
	if (!conn->ra_depth)
		conn->ra_depth = 1;
	conn->deadline_ns = (uint64_t)o->deadline_ms * 1000000ull;
	ret = open_cache(conn, url, o);
	if (ret < 0)
		return ret;
	conn->chunks = calloc(conn->nchunks, sizeof(*conn->chunks));
	conn->multi = curl_multi_init();
	if (!conn->chunks || !conn->multi) {
		ret = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < conn->nchunks; i++) {
		conn->chunks[i].conn = conn;
		conn->chunks[i].rx.t = &conn->t;
	}
	/* Several requests in flight as parallel HTTP/1.1 connections, kept for reuse. */
	curl_multi_setopt(conn->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conn->max_requests);
	curl_multi_setopt(conn->multi, CURLMOPT_MAXCONNECTS, (long)conn->max_requests);
	curl_multi_setopt(conn->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	pthread_mutex_init(&conn->lock, NULL);
	ret = upager__thread_start(&conn->thread, conn_thread, conn);
	if (ret == 0)
		return 0;
	pthread_mutex_destroy(&conn->lock);
fail:
	if (conn->multi)
		curl_multi_cleanup(conn->multi);
	free(conn->chunks);
	close_cache(conn);
	return ret;
}

void upager__url_conn_stop(struct upager__url_conn *conn)
{
	pthread_mutex_lock(&conn->lock);
	conn->stop = true;
	pthread_mutex_unlock(&conn->lock);
	curl_multi_wakeup(conn->multi);
	pthread_join(conn->thread, NULL);
	curl_multi_cleanup(conn->multi);
	for (unsigned i = 0; i < conn->nchunks; i++)
		free(conn->chunks[i].rx.buf);
	free(conn->chunks);
	pthread_mutex_destroy(&conn->lock);
	close_cache(conn);
	upager__url_target_free(&conn->t);
}
