/* SPDX-License-Identifier: MIT */
/*
 * The page server's snapshot images: their page maps, held once per file
 * however many clients and handles open it, bounded per client and in all
 * and kept a while after the last handle; loads that failed, remembered a
 * while per unchanged file; and a READ of an image planned (absent and zero
 * pages zeroed, runs of stored pages read as one) and checked page by page
 * against the CRC32Cs before it is sent.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "metrics.h"
#include "log.h"
#include "serve.h"
#include "snapfmt.h"

/* The daemon's page maps in all, of every client. */
#define SNAP_TOTAL_LIMIT (1024u << 20)
/* A map no handle holds is kept this long (within the limit above), so
 * that OPEN_IMAGE and CLOSE in a loop do not load it again each time. */
#define SNAP_KEEP_SECONDS 10
/* A snapshot that failed to load, unchanged since (same inode, size,
 * mtime and ctime), is refused again without loading for this long. */
#define SNAP_FAILED_SECONDS 2
#define SNAP_FAILED_SLOTS 16

static struct {
	struct shared_snap *shared_snaps;
	size_t snap_bytes; /* every open snapshot's page maps */
	struct failed_open {
		dev_t dev;
		ino_t ino;
		off_t size;
		struct timespec mtim, ctim;
		time_t at;
		int err;
	} failed_loads[SNAP_FAILED_SLOTS];
	unsigned failed_loads_next;
} images;

/* Memory a snapshot's page maps (its chain's) take. */
static size_t snap_map_bytes(const struct upp_snap *sn)
{
	size_t n = 0;

	for (; sn; sn = sn->parent)
		n += sn->npages * UPP_SNAP_ENTRY;
	return n;
}

/* How many of c's handles hold ss. */
unsigned client_holds(const struct client *c, const struct shared_snap *ss)
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
struct shared_snap *shared_find(int fd, const struct stat *st)
{
	for (struct shared_snap *ss = images.shared_snaps; ss; ss = ss->next)
		if (ss->dev == st->st_dev && ss->ino == st->st_ino && upp_snap_unchanged(&ss->sn, fd)) {
			ss->refs++;
			return ss;
		}
	return NULL;
}

static void shared_free(struct shared_snap *ss)
{
	struct shared_snap **pp;

	for (pp = &images.shared_snaps; *pp != ss; pp = &(*pp)->next)
		;
	*pp = ss->next;
	images.snap_bytes -= ss->bytes;
	upp_snap_close(&ss->sn);
	close(ss->sn.fd);
	free(ss);
}

void shared_put(struct shared_snap *ss)
{
	if (--ss->refs == 0)
		ss->unused_since = now_s();
}

/* Lets maps no handle holds go: those kept longer than SNAP_KEEP_SECONDS,
 * and all of them if room for need bytes of maps is wanted. */
void shared_trim(size_t need)
{
	time_t now = now_s();

	for (struct shared_snap *ss = images.shared_snaps, *next; ss; ss = next) {
		next = ss->next;
		if (!ss->refs && (now - ss->unused_since > SNAP_KEEP_SECONDS ||
				  need > SNAP_TOTAL_LIMIT - images.snap_bytes))
			shared_free(ss);
	}
}

/* Room for up to want bytes of new maps: maps no handle holds let go if
 * need be, and no more than the daemon's limit leaves. */
size_t shared_room(size_t want)
{
	shared_trim(want);
	if (want > SNAP_TOTAL_LIMIT - images.snap_bytes)
		want = SNAP_TOTAL_LIMIT - images.snap_bytes;
	return want;
}

/*
 * A map loaded for the file st describes (l->sn, on l->fd): shared from
 * now on, with one handle, in *out. If another load of the same file came
 * first, that one instead; -ENOMEM past the daemon's limit. Either way l's
 * map and descriptor are taken.
 */
int shared_add(struct snap_load *l, const struct stat *st, struct shared_snap **out)
{
	struct shared_snap *ss = shared_find(l->fd, st);
	size_t bytes = snap_map_bytes(&l->sn);

	if (!ss)
		shared_trim(bytes);

	if (ss || bytes > SNAP_TOTAL_LIMIT - images.snap_bytes || !(ss = calloc(1, sizeof(*ss)))) {
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
	ss->next = images.shared_snaps;
	images.shared_snaps = ss;
	images.snap_bytes += bytes;
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
int load_failed_lately(const struct stat *st)
{
	for (unsigned i = 0; i < SNAP_FAILED_SLOTS; i++) {
		const struct failed_open *f = &images.failed_loads[i];

		if (f->err && same_file(f, st) && now_s() - f->at <= SNAP_FAILED_SECONDS)
			return f->err;
	}
	return 0;
}

void load_failed_remember(const struct stat *st, int err)
{
	struct failed_open *f =
		&images.failed_loads[images.failed_loads_next++ % SNAP_FAILED_SLOTS];

	*f = (struct failed_open){ st->st_dev, st->st_ino, st->st_size, st->st_mtim, st->st_ctim,
				   now_s(), err };
}

/* Every stored page of a snapshot image read is checked before it is sent. */
void image_check_pages(struct read_request *rq)
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
				server.errors++;
				METRIC_ADD(errors, 1);
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
int image_plan_read(struct read_request *rq)
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
