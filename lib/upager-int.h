/* SPDX-License-Identifier: MIT */
/*
 * Internal interfaces shared by the files of lib/. Nothing here is ABI.
 * The objects (pager, handler, fill, region, mapping, source) and what the
 * sources, snapshots and the upager tool use. Each layer of the core
 * declares its calls in a header of its own, so that a file's includes say
 * which layers it calls: handler.h (the handler threads, for the public
 * calls), fill.h, prefetch.h, events.h, registry.h, region_state.h, and
 * place.h (the placement core, shared with upagerd handle).
 */
#ifndef UPAGER_INT_H
#define UPAGER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <liburing.h>

#include "upager.h"
#include "place.h"
#include "uring.h"

#define UPAGER__EXPORT __attribute__((visibility("default")))
#define UPAGER__PRINTF(a, b) __attribute__((format(printf, a, b)))

/* ---- statistics (stats.c) ---- */
/* Log-linear latency histogram: 16 sub-buckets per power of two (~6% error). */
#define UPAGER__HIST_SUB 16
#define UPAGER__HIST_BUCKETS (UPAGER__HIST_SUB + 44 * UPAGER__HIST_SUB)

struct upager__counters {
	atomic_uint_fast64_t faults, read_faults, write_faults, coalesced;
	atomic_uint_fast64_t pages_filled, bytes_filled, pages_zero, fill_errors, pages_prefetched;
	/* Budget and write-back (evict.c). */
	atomic_uint_fast64_t pages_evicted, pages_written, bytes_written, write_errors;
	atomic_int_fast64_t pages_resident;
	atomic_uint_fast64_t lat_n, lat_min, lat_max;
	atomic_uint_fast64_t lat[UPAGER__HIST_BUCKETS];
};

void upager__counters_init(struct upager__counters *c);
void upager__lat_record(struct upager__counters *c, uint64_t ns);
void upager__counters_read(const struct upager__counters *c, upager_stats_t *out);
uint64_t upager__now_ns(void);

#define UPAGER__ADD(c, field, n) atomic_fetch_add_explicit(&(c)->field, (n), memory_order_relaxed)

/* ---- sources (source.c and source_*.c) ---- */
struct upager__fill;
struct upager__inline_req;

/* What a source's fill/complete returns, besides a negative errno. */
enum {
	UPAGER__FILL_DATA = 0,    /* fill->buf holds fill->len bytes */
	UPAGER__FILL_ZERO = 1,    /* the range is all zero: buf untouched */
	UPAGER__FILL_PENDING = 2, /* I/O submitted; complete() runs on its CQE */
};

struct upager__source_ops {
	const char *name;
	/*
	 * Start filling fill->len bytes of region offset fill->roff into
	 * fill->buf. May submit SQEs on ring with user_data = fill and return
	 * PENDING; the handler submits them.
	 */
	int (*fill)(upager_source_t *src, struct upager__fill *fill, struct io_uring *ring);
	/* A CQE for fill arrived with result res: DATA, ZERO, PENDING or -errno. */
	int (*complete)(upager_source_t *src, struct upager__fill *fill, int res,
			struct io_uring *ring);
	void (*destroy)(upager_source_t *src);
	/* Reads ahead of sequential streams pay off (I/O that overlaps the
	 * program); not for sources that answer at once or block the loop. */
	bool readahead;
	/* Pages around a random fault worth filling with it (1: just the page).
	 * A file's neighbours cost little once read; zeros would cost memory. */
	unsigned fault_around;
	/*
	 * A larger block for a random fault whose neighbours are already in
	 * memory (a file in the page cache): cached_around pages when cached()
	 * says the block of len bytes at region offset roff is there without
	 * waiting (async-signal-safe, it may run inline). 0/NULL: none.
	 */
	unsigned cached_around;
	bool (*cached)(upager_source_t *src, size_t roff, size_t len);
	/*
	 * Inline pagers: fill len bytes of region offset roff into buf from the
	 * faulting thread's SIGBUS handler. Async-signal-safe: no allocation,
	 * no locks. DATA, ZERO or -errno; PENDING: not from here, this time
	 * (the fault goes to the handler threads, as with NULL). NULL: the
	 * handler threads fill every fault (inline_queue.c). inline_reads: it
	 * needs buf.
	 */
	int (*fill_inline)(upager_source_t *src, size_t roff, void *buf, size_t len);
	bool inline_reads;
	/*
	 * Writable sources (evict.c writes back): store len bytes of buf at
	 * region offset roff, synchronously, from the evictor or a upager_sync
	 * caller; 0 or -errno. sync: make what was written durable (fdatasync).
	 * NULL: read-only. Only called when src->writable.
	 */
	int (*write)(upager_source_t *src, size_t roff, const void *buf, size_t len);
	int (*sync)(upager_source_t *src);
};

struct upager_source {
	const struct upager__source_ops *ops;
	atomic_int refs;
	/* A snapshot's contents (its header CRC is snap_id): regions of it
	 * track writes where the kernel can, for incremental saves. */
	bool track_writes;
	uint32_t snap_id;
	bool writable; /* opened for write-back (ops->write) */
};

void upager__source_init(upager_source_t *src, const struct upager__source_ops *ops);
/*
 * The block a random fault at page pg of src fills, in pages: the
 * source's fault-around, or its cached_around when that block is cached.
 * Async-signal-safe (the inline handler asks it too).
 */
unsigned upager__source_around(upager_source_t *src, size_t pg, size_t page_size);
void upager__source_ref(upager_source_t *src);
void upager__source_unref(upager_source_t *src);
/*
 * For sources whose I/O completes on a thread of their own (fill returned
 * PENDING without an SQE): hands the fill back to its handler with its
 * result (DATA, ZERO or -errno). Callable from any thread.
 */
void upager__fill_complete(struct upager__fill *fill, int result);

/* user_data of SQEs whose completions nobody waits for (cancels, advice). */
#define UPAGER__TAG_IGNORE 3

/* ---- regions (region.c) ---- */
struct upager__extent {
	size_t start, end; /* region offsets, [start, end) */
};

#define UPAGER__DECOMMIT_LOG 8 /* decommits a fill in flight tells apart */

struct upager_region {
	upager_t *pager;
	upager_source_t *src;
	uintptr_t base;
	size_t size;
	/* Guarded by pager->lock: */
	atomic_bool dead; /* set under the lock; also read without it */
	struct upager__extent *commits; /* sorted, disjoint, merged */
	size_t ncommits, capcommits;
	/* One bit per page placed by upager and not dropped since. */
	atomic_uint_fast64_t *resident;
	size_t resident_bytes;
	atomic_int refs; /* the user's handle + one per fill in flight or queued prefetch */
	atomic_int advice;
	bool wp; /* registered for async write-protect: fills place pages protected */
	/* Sequential detection (racy by design: a hint, not state): the page a
	 * sequential stream would fault on next, and its current window. */
	atomic_size_t ra_next;
	atomic_uint ra_win;
	atomic_size_t ra_fault; /* page of the stream's last fault: readahead runs ahead of it */
	/* Inline pagers only (inline.c): a bit per committed page, which fills
	 * in faulting threads read without the lock, and how many such fills
	 * are between that check and their placement, counted by the parity of
	 * the drain epoch they began in (decommit waits for the old one only:
	 * region_state.c). */
	atomic_uint_fast64_t *committed;
	atomic_uint inline_epoch;
	atomic_uint inline_busy[2];
	/* Budgeted pagers and writable sources (evict.c): a bit per page
	 * evicted and not filled since (a refault earns a second chance), and
	 * a bit per page moved out for write-back (its fault waits); the
	 * first write-back error not yet returned by upager_sync. */
	atomic_uint_fast64_t *shadow, *wb;
	/* Budgets without UFFDIO_MOVE (evict.c): pages are placed
	 * write-protected and a write's fault is answered by us (wp_sync): a
	 * bit per page written since placed or written back, and a bit per
	 * page being dropped (its write faults wait, its fills are stale). */
	atomic_uint_fast64_t *dirty, *dropping;
	bool wp_sync;
	atomic_int wb_err;
	atomic_uint evict_gen; /* a page of a writable region evicted: fills read before are stale */
	bool track_dirty; /* wp is for write-back: written pages are dirty */
	struct upager__counters st;
	/* Decommits so far and the ranges of the last UPAGER__DECOMMIT_LOG,
	 * written under pager->lock (fill.c): a handler's fill places nothing
	 * over a range decommitted since it began, even if committed again by
	 * then, for what it read is not what the range holds now. */
	atomic_uint_fast64_t decommits;
	struct {
		size_t off, end;
	} decommit_log[UPAGER__DECOMMIT_LOG];
};

/*
 * The registry: which addresses belong to which region at which offset.
 * A region starts as one mapping; munmap and mremap of parts of it by the
 * program split and move mappings (UFFD_EVENT_UNMAP/REMAP).
 */
struct upager__mapping {
	uintptr_t start, end;
	upager_region_t *region;
	size_t roff; /* region offset of start */
};

/* ---- the pager (pager.c), handlers (handler.c), fills (fill.c) ---- */
#define UPAGER__SLOTS 64         /* fills in flight per handler */
#define UPAGER__RA_DEPTH 4       /* windows read ahead at a sequential fault */
#define UPAGER__RA_AHEAD 16      /* windows readahead keeps going to, past the last fault */
#define UPAGER__FAULT_RESERVE 8  /* slots prefetching leaves for faults */

struct upager__fill {
	struct upager__handler *h;
	upager_region_t *region;
	uintptr_t addr;   /* where the fill lands */
	size_t roff, len; /* region offset and length */
	uintptr_t fault_addr; /* the page that faulted (within the window) */
	bool sequential;  /* part of a sequential stream (sources may read around otherwise) */
	void *buf;
	size_t done;      /* bytes a source has produced so far */
	size_t placed;    /* bytes mapped so far (EAGAIN retries) */
	int result;       /* DATA / ZERO / -errno, once known */
	uint64_t deadline_ns; /* sources that wait on others: fail by then */
	/* Events read up to this number (pager->ev_reads) must be handled
	 * before the fill places anything (0: not looked at yet). */
	uint64_t ev_bound;
	bool ev_deferred; /* a fault put off for events: wake its thread to fault again */
	size_t skipped;   /* pages another fill had placed first */
	/* Pages of the window this fill set the resident bit of: it counts
	 * and places those (and the faulting page), other fills the rest. */
	uint64_t claim[UPAGER__MAX_WINDOW / 64];
	uint32_t tid;
	bool write;
	bool prefetch;    /* nobody waits for it: no latency, no SIGBUS */
	bool readahead;   /* a prefetch of a sequential stream: its completion reads on */
	uint64_t t0;
	struct upager__fill *next; /* free list, retry list, in-flight chain */
	struct upager__fill *next_done; /* the handler's list of fills completed elsewhere */
	struct upager__fill *src_next;  /* the source's own queue (next is the handler's) */
	bool src_solo;    /* remote: ask for it alone (a batch it was in failed) */
	/* Inline pagers: the faulting threads waiting for this fill to end
	 * (inline_queue.c), and whether the faulting page's failed, which its
	 * waiters take to the program's SIGBUS handler. */
	struct upager__inline_req *waiters;
	bool inline_failed;
	/* A fault came for a page of this prefetch (or readahead) fill and
	 * waits for it: a source serves it as a fault's (url_conn.c). */
	atomic_bool fault_joined;
	uint64_t decommits; /* the region's, when the fill was planned */
	unsigned evict_gen; /* the region's when planned (writable sources, evict.c) */
};

/* The addresses an event read but not yet handled is about. */
struct upager__ev_range {
	uintptr_t start, end;
	bool unmapped; /* UNMAP or REMAP: the range may be another region's now */
};

struct upager__handler {
	upager_t *pager;
	unsigned idx;
	pthread_t thread;
	struct io_uring ring;
	struct upager__fill slots[UPAGER__SLOTS];
	void *bufs;
	struct upager__fill *free;
	unsigned nfree;
	struct upager__fill *retry;    /* placements that got EAGAIN */
	struct upager__fill *inflight; /* fills with I/O pending (coalescing) */
	struct uffd_msg *backlog;      /* fault messages waiting for a slot */
	size_t nbacklog, capbacklog;
	/* Write-protect faults on pages being dropped (evict.c): asked again
	 * every loop, their threads waiting meanwhile. */
	struct uffd_msg *wp_wait;
	size_t nwp_wait, capwp_wait;
	int wake_fd; /* eventfd: stop, cancel, or completions from other threads */
	pthread_mutex_t done_lock;
	struct upager__fill *done; /* completed by another thread (upager__fill_complete) */
	bool poll_armed, uffd_ready, stopping;
	/* Events of the batch this handler has read and not yet handled, under
	 * pager->ev_lock: its number in pager->ev_reads (0: none) and ranges. */
	uint64_t ev_seq;
	struct upager__ev_range ev_ranges[2 * UPAGER__MSG_BATCH];
	size_t nev_ranges;
	uint64_t last_fault_ns; /* spinning continues this long after a fault */
};

/* A upager_prefetch() request, queued for the handlers. */
struct upager__prefetch {
	upager_region_t *region;
	size_t off, end;
	struct upager__prefetch *next;
};

struct upager {
	int uffd;
	atomic_bool stopping;
	pthread_mutex_t idle_lock; /* release waits here for its fills to end */
	pthread_cond_t idle_cond;
	atomic_uint releasing; /* releases waiting: the last fill of a region wakes them */
	uint64_t features;
	uint64_t enabled_kernel_features; /* UFFD_FEATURE_* asked of UFFDIO_API (so enabled) */
	size_t page_size;
	void *zero_buf; /* UPAGER__MAX_WINDOW pages of zeros (the zero page, read-only) */
	uint64_t spin_ns;
	uint64_t handler_cpus;
	bool inline_faults; /* UPAGER_FAULT_INLINE: faults come as SIGBUS (inline.c) */
	/* Inline faults posted for the handlers and not yet taken (inline_queue.c). */
	atomic_uint inline_posted;
	/* Inline fills of this pager placing pages (one copy each), and its
	 * handlers reading events: no copy starts then (inline_table.c). */
	atomic_uint inline_copying, inline_reading;

	pthread_mutex_t pf_lock; /* the prefetch queue */
	struct upager__prefetch *pf_head, *pf_tail;
	atomic_uint pf_next_handler;

	/*
	 * Events read but not yet handled. The kernel lets munmap, mremap and
	 * madvise return the moment a handler has read their event, before the
	 * registry changes; handlers read the uffd under ev_lock and note the
	 * batch's events before they let go of it, so whoever takes ev_lock
	 * after such a call returned sees its event, handled or noted.
	 */
	pthread_mutex_t ev_lock;
	pthread_cond_t ev_cond;  /* a batch of events handled (CLOCK_MONOTONIC) */
	uint64_t ev_reads;       /* batches with events read so far */
	atomic_uint ev_pending;  /* handlers with a batch of events not yet handled */
	/* A page of ours, registered and filled: UFFDIO_COPY onto it fails with
	 * EAGAIN while an event is on its way (the kernel's mmap_changing), with
	 * EEXIST otherwise, and changes nothing. 0 without events. */
	uintptr_t ev_probe;

	pthread_rwlock_t lock; /* registry, commit extents, region liveness */
	struct upager__mapping *maps;
	size_t nmaps, capmaps;
	/* Old ranges of mremap moves handled, whose UNMAP is still to come
	 * (see upager__map_unmap); a ring, the oldest overwritten. */
	struct upager__ev_range moved_from[16];
	unsigned nmoved_from;
	upager_region_t **regions;
	size_t nregions, capregions;

	unsigned nthreads;
	struct upager__handler *handlers;

	upager_log_fn log;
	void *log_arg;
	int log_level;

	/* The memory budget and its evictor (evict.c); NULL without one. */
	struct upager__budget *budget;
	uint64_t mem_budget; /* bytes; 0: none */

	struct upager__counters st;
};

/* log.c: the caller's log callback, above its level. */
void upager__log(const upager_t *p, int level, const char *fmt, ...) UPAGER__PRINTF(3, 4);

/* userfaultfd (uffd.c) */
/* also: UFFD_FEATURE_* asked for besides the usual ones, where the kernel has them
 * (UFFD_FEATURE_SIGBUS for an inline pager: it changes how faults arrive).
 * *kfeaturesp: the UFFD_FEATURE_* asked for, which a handshake that
 * succeeds has enabled (UFFDIO_API itself answers with all it knows). */
int upager__uffd_open(unsigned methods, uint64_t disable, uint64_t also, int *fdp,
		      uint64_t *featuresp, uint64_t *kfeaturesp, char *why, size_t whylen);
uint64_t upager__disable_from_env(void);
/* MISSING mode, and WP too when wp (false in *wp when the kernel refuses it). */
int upager__uffd_register(int uffd, uintptr_t start, size_t len, bool *wp);
int upager__uffd_unregister(int uffd, uintptr_t start, size_t len);

/* pagemap.c: which pages are populated, and (written) which are clean: placed
 * write-protected by a fill of a tracked region and not written since. */
#define UPAGER__PM_POPULATED 1
#define UPAGER__PM_CLEAN 2
bool upager__pagemap_scan_works(void);
int upager__pagemap(uintptr_t addr, size_t npages, size_t ps, uint8_t *out, size_t stride,
		    bool written);
/* Write-back (evict.c), fd an open /proc/self/pagemap: which pages of
 * [addr, addr + npages * ps) were written since placed or since taken (out[i]
 * true), and with take, write-protects those again in the same walk, so a
 * later write shows again. -errno where PAGEMAP_SCAN cannot. */
int upager__pagemap_written(int fd, uintptr_t addr, size_t npages, size_t ps, bool *out,
			    bool take);
int upager__pagemap_open(void);
/* Is the page at addr populated (present or swapped), by /proc/self/pagemap
 * open as fd: 1, 0 or -errno. */
int upager__pagemap_populated(int fd, uintptr_t addr, size_t ps);
/* Regions restored from the snapshot whose header CRC is id, writes tracked. */
int upager__track_add(uintptr_t base, size_t size, uint32_t id);
void upager__track_del(uintptr_t base);
bool upager__track_covers(uintptr_t addr, size_t len, uint32_t id);

/* prefetch.c: prefetch of many ranges at once (snapshot working sets) */
int upager__prefetch_list(upager_region_t *r, const size_t *offs, const size_t *lens, size_t n);

#endif
