/* SPDX-License-Identifier: MIT */
/*
 * upager: user-controlled demand paging on Linux through userfaultfd.
 *
 * A pager owns one userfaultfd and one or more handler threads. A region is
 * a reserved range of virtual memory bound to a source; committed parts of
 * it are filled from the source, a page at a time, the first time a thread
 * touches them.
 *
 * Conventions: every function that can fail returns 0 (or a non-negative
 * value where documented) on success and a negative errno value on failure;
 * upager_strerror() names it. No function prints, aborts or exits; the
 * library reports detail through the optional log callback.
 */
#ifndef UPAGER_H
#define UPAGER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UPAGER_VERSION_MAJOR 0
#define UPAGER_VERSION_MINOR 1
#define UPAGER_VERSION_PATCH 0

/* Opaque handles. */
typedef struct upager upager_t;               /* a pager: uffd + handler threads */
typedef struct upager_region upager_region_t; /* a reserved range */
typedef struct upager_source upager_source_t; /* where page contents come from */

/* ---- kernel features (upager_features) ---------------------------------- */
#define UPAGER_FEAT_ZEROPAGE      (1ull << 0)  /* UFFDIO_ZEROPAGE */
#define UPAGER_FEAT_POISON        (1ull << 1)  /* UFFDIO_POISON (Linux 6.6) */
#define UPAGER_FEAT_MOVE          (1ull << 2)  /* UFFDIO_MOVE (Linux 6.8) */
#define UPAGER_FEAT_EVENT_REMOVE  (1ull << 3)  /* madvise(DONTNEED) events */
#define UPAGER_FEAT_EVENT_UNMAP   (1ull << 4)  /* munmap events */
#define UPAGER_FEAT_EVENT_REMAP   (1ull << 5)  /* mremap events */
#define UPAGER_FEAT_THREAD_ID     (1ull << 6)  /* faulting thread id in messages */
#define UPAGER_FEAT_WP_ASYNC      (1ull << 7)  /* async write-protect (Linux 6.7) */
#define UPAGER_FEAT_EVENT_FORK    (1ull << 8)  /* fork events (unused: see upager(7)) */
#define UPAGER_FEAT_PAGEMAP_SCAN  (1ull << 9)  /* PAGEMAP_SCAN ioctl (Linux 6.7) */
#define UPAGER_FEAT_SIGBUS        (1ull << 10) /* UFFD_FEATURE_SIGBUS: inline faults */
#define UPAGER_FEAT_WP            (1ull << 11) /* write-protect faults (anonymous: Linux 5.7) */
/* How the userfaultfd was opened (exactly one is set). */
#define UPAGER_FEAT_OPEN_DEV      (1ull << 32) /* /dev/userfaultfd */
#define UPAGER_FEAT_OPEN_SYSCALL  (1ull << 33) /* userfaultfd(2) */
#define UPAGER_FEAT_USER_ONLY     (1ull << 34) /* userfaultfd(2), UFFD_USER_MODE_ONLY */

/* upager_options.open_method: which ways to try, in this fixed order. */
#define UPAGER_OPEN_DEV        (1u << 0)
#define UPAGER_OPEN_SYSCALL    (1u << 1)
#define UPAGER_OPEN_USER_ONLY  (1u << 2)
#define UPAGER_OPEN_ANY        (UPAGER_OPEN_DEV | UPAGER_OPEN_SYSCALL | UPAGER_OPEN_USER_ONLY)

/* Log levels for upager_options.log. */
enum upager_log_level {
	UPAGER_LOG_ERROR = 0,
	UPAGER_LOG_WARN = 1,
	UPAGER_LOG_INFO = 2,
	UPAGER_LOG_DEBUG = 3,
};

typedef void (*upager_log_fn)(void *arg, int level, const char *msg);

/*
 * Pager options. Initialise with upager_options_init() before setting
 * fields, so that fields added later get their defaults.
 */
typedef struct upager_options {
	unsigned nthreads;         /* handler threads; default 1, at most 64 */
	unsigned open_method;      /* UPAGER_OPEN_* mask; default UPAGER_OPEN_ANY */
	uint64_t disable_features; /* UPAGER_FEAT_* to treat as absent (testing
	                              fallbacks); also env UPAGER_DISABLE */
	upager_log_fn log;         /* NULL: silent */
	void *log_arg;
	int log_level;             /* highest level passed to log; default WARN */
	uint64_t handler_cpus;     /* CPUs (bit n = CPU n) handler threads may run
	                              on; 0: wherever the scheduler puts them */
	unsigned spin_us;          /* after handling a fault, a handler polls this
	                              long for the next before it sleeps; default
	                              UPAGER_SPIN_DEFAULT_US, 0 never spins */
	unsigned fault_mode;       /* UPAGER_FAULT_*; default UPAGER_FAULT_THREADS */
	/* Memory budget (upager_create(3)): at most about this many bytes of
	 * pages resident in the pager's regions; 0: no budget, unless env
	 * UPAGER_MEM_BUDGET (bytes, K/M/G suffixes) sets one. Past high_pct
	 * of it (default 90) pages are evicted until low_pct (default 70);
	 * 0 means the default. evict_policy: UPAGER_EVICT_*. */
	uint64_t mem_budget;
	uint8_t mem_high_pct, mem_low_pct, evict_policy, pad_[5]; /* pad_: zero */
	uint64_t reserved[4];      /* zero */
} upager_options_t;

#define UPAGER_SPIN_DEFAULT_US 50

/*
 * upager_options.fault_mode: who resolves a fault.
 * THREADS: the faulting thread sleeps in the kernel while a handler thread
 *   fills and places the page (every source; kernel-mode accesses such as
 *   read(2) into an untouched page are served too).
 * INLINE: the faulting thread resolves it itself, in a SIGBUS handler that
 *   upager installs once per process (UFFD_FEATURE_SIGBUS and the UNMAP and
 *   REMAP events; -ENOTSUP from upager_create without them). Zero, file and
 *   snapshot sources fill in the handler (a random fault fills its page
 *   alone, sequential faults a
 *   growing window, no readahead); callback and remote sources, and a
 *   snapshot recording its working set or a page failing its checksum, hand
 *   the fault to the pager's handler threads, which fill it as in THREADS mode
 *   (windows, readahead, the remote deadline), while the thread waits in
 *   the handler (a source callback that touches an inline region: the
 *   process dies of SIGBUS, handler threads block it). Limits: a system
 *   call that touches an untouched page fails with EFAULT (call
 *   upager_prefetch first); a thread that blocks SIGBUS is killed by the
 *   kernel on a fault; a signal handler touching an inline region while it
 *   interrupted a upager call on the same pager can stall while other
 *   threads munmap/mremap that pager's regions without pause; SIGBUS at addresses that are not upager's, and fill
 *   errors, go to the handler the program had installed (upager_create(3)),
 *   and so do faults at registered addresses in no region (the old range
 *   of an mremap with MREMAP_DONTUNMAP, the part an mremap grows a region
 *   by), which the threaded mode zero-fills.
 *   At most 1000 inline mappings in the process (upager_reserve: -ENOSPC),
 *   of a table of 65536 that keeps room for munmap's splits and mremap
 *   (more than vm.max_map_count's default 65530 mappings a process).
 */
#define UPAGER_FAULT_THREADS 0u
#define UPAGER_FAULT_INLINE  1u

/* ---- errors ------------------------------------------------------------- */
const char *upager_strerror(int err);

/* ---- probing ------------------------------------------------------------ */
/*
 * Open a userfaultfd the way upager_create() would and close it again.
 * On success stores the UPAGER_FEAT_* mask in *features (may be NULL).
 * On failure returns -errno and, if why is not NULL, writes a sentence
 * saying what to change (sysctl, device permissions, kernel config).
 * open_method is a UPAGER_OPEN_* mask, 0 meaning UPAGER_OPEN_ANY.
 */
int upager_probe(unsigned open_method, uint64_t *features, char *why, size_t whylen);

/* ---- pager -------------------------------------------------------------- */
void upager_options_init(upager_options_t *opts);
/* Creates a pager and starts its handler threads. opts may be NULL. */
int upager_create(upager_t **pagerp, const upager_options_t *opts);
/*
 * Releases every region still reserved (threads blocked on their faults
 * wake and see the memory gone: SIGSEGV on access), stops the handler
 * threads and frees the pager. Callable from any thread but a handler
 * thread (-EDEADLK there).
 */
int upager_destroy(upager_t *pager);
/* UPAGER_FEAT_* in effect for this pager. */
uint64_t upager_features(const upager_t *pager);
/* The page size regions of this pager use. */
size_t upager_page_size(const upager_t *pager);

/* ---- sources ------------------------------------------------------------ */
/*
 * Sources are reference counted. The constructors return a source holding
 * one reference, owned by the caller; upager_reserve() takes its own. Call
 * upager_source_release() when you no longer need yours.
 */

/* Every page reads as zero. */
int upager_source_zero(upager_source_t **srcp);

/*
 * Pages come from a file, like a MAP_PRIVATE mapping of it: region offset
 * X reads file offset (offset + X); writes stay in memory; bytes past the
 * end of the file read as zero. fd is duplicated (the caller keeps and may
 * close its own); it must be open for reading. offset must be page-aligned.
 * Reads are issued through io_uring on the handler threads.
 */
int upager_source_file(int fd, uint64_t offset, upager_source_t **srcp);
/* The same, opening path read-only. */
int upager_source_path(const char *path, uint64_t offset, upager_source_t **srcp);

/*
 * Pages come from a function of yours. It runs on a handler thread and
 * must fill len bytes at buf with the contents of region offset off (both
 * page-aligned), then return 0; or return a negative errno, and the access
 * that faulted ends in SIGBUS (see upager_source_callback(3)). It must not
 * call upager_decommit/release/destroy (they return -EDEADLK there).
 * destroy, if not NULL, is called with arg when the source is freed.
 */
typedef int (*upager_fill_fn)(void *arg, uint64_t off, void *buf, size_t len);
int upager_source_callback(upager_fill_fn fill, void *arg, void (*destroy)(void *arg),
			   upager_source_t **srcp);

/*
 * Pages come from upagerd (docs/PROTOCOL.md): uri is "unix:/path" or
 * "tcp:host:port", object a path below the server's root. Connects and
 * opens the object now (so a wrong address or name is an error here). Reads
 * are pipelined and batched by a connection thread; each reply's CRC32C is
 * checked before its bytes are mapped. A lost connection is re-established
 * with backoff and unanswered reads are sent again; a fault that gets no
 * answer within deadline_ms fails, and its access gets SIGBUS. opts may be
 * NULL for the defaults.
 */
typedef struct upager_remote_options {
	unsigned connect_timeout_ms; /* per attempt, whole; default 5000 */
	unsigned deadline_ms;        /* a fault's longest wait; default 30000 */
	const char *secret_file;     /* the shared secret of a server started with
	                                --secret-file; read once, here; the server
	                                must prove it (-EACCES); NULL: none */
	uint64_t flags;              /* UPAGER_REMOTE_* */
	uint64_t reserved[4];        /* zero */
} upager_remote_options_t;
/* The object is a upager snapshot: serve the memory it describes (the server
 * checks each page's CRC32C before sending it; a damaged page fails only the
 * access that needs it, with SIGBUS). Needs a server that offers it. */
#define UPAGER_REMOTE_SNAPSHOT (1u << 0)
void upager_remote_options_init(upager_remote_options_t *opts);
int upager_source_remote(const char *uri, const char *object,
			 const upager_remote_options_t *opts, upager_source_t **srcp);

/* Drops one reference. */
int upager_source_release(upager_source_t *src);

/* ---- regions ------------------------------------------------------------ */
/* upager_reserve() flags */
#define UPAGER_RESERVE_COMMIT  (1u << 0) /* commit the whole region at once */

/*
 * Reserves len bytes (rounded up to the page size) of address space bound
 * to src. Nothing is accessible until committed; nothing is resident
 * until touched. Any size the address space allows costs no memory.
 */
int upager_reserve(upager_t *pager, size_t len, upager_source_t *src, unsigned flags,
		   upager_region_t **regionp);
/* upager_reserve() with UPAGER_RESERVE_COMMIT. */
int upager_map(upager_t *pager, size_t len, upager_source_t *src, upager_region_t **regionp);

/*
 * Makes [off, off+len) readable and writable; pages are filled from the
 * source on first touch. -EEXIST if any page of it is already committed.
 */
int upager_commit(upager_region_t *region, size_t off, size_t len);
/*
 * Drops the pages of [off, off+len) (resident memory goes down) and makes
 * the range inaccessible again; a later commit and touch fills them from
 * the source afresh. -ENOENT if any page of it is not committed.
 */
int upager_decommit(upager_region_t *region, size_t off, size_t len);
/* Unmaps the region and frees it; from any thread but a handler thread. */
int upager_release(upager_region_t *region);

void *upager_region_addr(const upager_region_t *region);
size_t upager_region_size(const upager_region_t *region);

/*
 * How the region will be accessed, like madvise(2). NORMAL (the default)
 * fills one page per fault and grows a window of neighbours (up to 1 MiB)
 * while faults run sequentially, reading further ahead for file sources;
 * SEQUENTIAL fills the largest window at once and reads ahead; RANDOM fills
 * only the faulting page.
 */
#define UPAGER_ADV_NORMAL     0
#define UPAGER_ADV_SEQUENTIAL 1
#define UPAGER_ADV_RANDOM     2
int upager_region_advise(upager_region_t *region, int advice);

/*
 * Starts filling the committed, not yet resident pages of [off, off+len)
 * in the background, so that touching them later does not fault. Returns
 * at once; pages a thread touches first are filled on its fault as usual.
 */
int upager_prefetch(upager_region_t *region, size_t off, size_t len);
/*
 * Completes a lazy restore, so that its source can go away: fills every
 * committed page of region not yet there (in the background, behind what is
 * queued, faults first, as upager_prefetch), waits until each is placed,
 * then lets go of the region: unregistered, its source released, and its
 * memory left mapped as the program's own anonymous memory (a page it
 * discards from then on reads zero; parts not committed stay PROT_NONE;
 * munmap it when done). The handle is gone after 0: pass it to no call.
 * -ETIMEDOUT: not every page was placed within timeout_ms (-1: no bound;
 *   a page whose fill fails never is): the region is served as before.
 * -EBUSY: a pager with a memory budget or a writable source (pages may
 *   leave again). -EDEADLK: from a source callback.
 */
int upager_complete(upager_region_t *region, int timeout_ms);

/* ---- snapshots (docs/SNAPSHOT.md) --------------------------------------- */
/*
 * Saves [addr, addr+len) (page-aligned) to path, atomically: populated pages
 * only (pages never touched are recorded absent and not read, so saving a
 * upager region does not fault it in), all-zero pages as zero, each stored
 * page with a CRC32C. The range must not change while it is saved.
 */
int upager_snapshot_save(const void *addr, size_t len, const char *path);
/*
 * An incremental snapshot: [addr, addr+len) was restored from the snapshot
 * parent (upager_snapshot_map) or otherwise holds its contents where it was
 * not written since. Only pages that differ from parent's (compared byte
 * for byte) are stored; the rest are recorded "as in the parent". parent
 * must be in path's directory (-EXDEV otherwise) and stay there unchanged:
 * it is named by its file name and its header checksum, and a restore of
 * path opens it too (refusing a changed one with -EBADMSG, a missing one
 * with -ENOENT). Chains of up to 16 are followed. Atomic, as the full save.
 */
int upager_snapshot_save_incremental(const void *addr, size_t len, const char *parent,
				     const char *path);
/*
 * A source serving a snapshot file, whose every field is checked first
 * (-EBADMSG when any is wrong). Each page's checksum is checked again when
 * a fault reads it; a mismatch ends that access in SIGBUS, never wrong data.
 * *lenp (may be NULL) receives the length of memory it describes.
 */
int upager_source_snapshot(const char *path, uint64_t *lenp, upager_source_t **srcp);
/*
 * A committed region of the snapshot's length backed by it: restore is
 * constant time, pages arrive on first touch. flags:
 *   UPAGER_SNAP_RECORD    record the pages faulted, in first-touch order, and
 *                         write them to PATH.ws when the region is released;
 *   UPAGER_SNAP_PREFETCH  if PATH.ws exists, fill its pages in the background,
 *                         in recorded order (faults still go first). A missing
 *                         or damaged PATH.ws only means no prefetch.
 *   UPAGER_SNAP_COMPLETE  then fill every other page in the background too,
 *                         at the same low priority (faults go first), so that
 *                         upager_complete() finds the restore done soon.
 */
#define UPAGER_SNAP_RECORD   (1u << 0)
#define UPAGER_SNAP_PREFETCH (1u << 1)
#define UPAGER_SNAP_COMPLETE (1u << 2)
int upager_snapshot_map(upager_t *pager, const char *path, unsigned flags,
			upager_region_t **regionp);
/*
 * Rewrites the snapshot at path (atomically, every page checked) so that
 * the pages of its working set (PATH.ws) come first in the file, in
 * recorded order: a prefetching restore then reads them sequentially, in
 * large reads, instead of one scattered page at a time. Contents and
 * PATH.ws stay valid. -ENOENT: no PATH.ws; -EBADMSG: a damaged file.
 */
int upager_snapshot_reorder(const char *path);
/*
 * upager_snapshot_map() of a snapshot served by upagerd: object is its path
 * below the server's root, uri and opts as for upager_source_remote() (with
 * UPAGER_REMOTE_SNAPSHOT implied). The region has the snapshot's length;
 * pages come over the connection on first touch. UPAGER_SNAP_PREFETCH
 * fetches OBJECT.ws from the server and prefetches it (pipelined, batched
 * reads); UPAGER_SNAP_RECORD gives -EOPNOTSUPP (the server is read-only:
 * record on a local restore and put PATH.ws beside the snapshot).
 */
int upager_snapshot_map_remote(upager_t *pager, const char *uri, const char *object,
			       const upager_remote_options_t *opts, unsigned flags,
			       upager_region_t **regionp);

/* ---- pages from a URL (HTTP range requests) ---------------------------- */
/*
 * Pages come from an object on an HTTP server (http:// or https://) or in an
 * S3-compatible store (s3://BUCKET/KEY, see the s3_* options): region
 * offset X reads the object's byte X; bytes past its end read as zero.
 * Opening asks for the object's headers (HEAD) and pins its length and its
 * ETag (-ENOENT: 404; -EACCES: 401/403; -EPROTO: no length or strong ETag,
 * or a redirect refused; each said in the log with the URL and status, never
 * its user info or query). A source thread reads the object in aligned
 * chunks of chunk_size, several range requests in flight over kept-alive
 * connections, each with If-Match: an object replaced since (412) fails
 * every later fault (SIGBUS) rather than mix versions. 5xx, 429 and broken
 * connections are retried with backoff within a fault's deadline_ms; a fault
 * not answered by then gets SIGBUS, and a transfer that stalls is cut.
 * Redirects are followed at open only, to the same scheme and host unless
 * UPAGER_URL_ANY_REDIRECT. -ENOTSUP: built without libcurl.
 */
typedef struct upager_url_options {
	unsigned connect_timeout_ms; /* opening, and each connection; default 5000 */
	unsigned deadline_ms;        /* a fault's longest wait, retries included; default 30000 */
	uint32_t chunk_size;         /* bytes per range request: a power of two from
	                                64 KiB to 256 MiB; default 4 MiB */
	unsigned max_requests;       /* range requests in flight; default 8 */
	unsigned mem_chunks;         /* chunks held in memory at most (> max_requests);
	                                default 2 * max_requests */
	upager_log_fn log;           /* what opening has to say; NULL: silent. Later,
	                                the log of the pager whose fault is concerned */
	void *log_arg;
	int log_level;               /* default UPAGER_LOG_WARN */
	uint64_t flags;              /* UPAGER_URL_* */
	/* s3://BUCKET/KEY URLs (an S3-compatible store, requests signed with
	 * AWS Signature Version 4 when there are keys). Each NULL: from the
	 * environment, as the AWS tools read it. */
	const char *s3_endpoint;      /* the store's base URL, path-style requests (Ceph RGW,
	                                 MinIO...); NULL: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL,
	                                 else AWS itself (https://BUCKET.s3.REGION.amazonaws.com) */
	const char *s3_region;        /* NULL: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1 */
	const char *s3_access_key;    /* NULL: AWS_ACCESS_KEY_ID; none: unsigned requests */
	const char *s3_secret_key;    /* NULL: AWS_SECRET_ACCESS_KEY */
	const char *s3_session_token; /* NULL: AWS_SESSION_TOKEN (temporary credentials) */
	/* A chunk cache on local disk, shared by every process on the host
	 * that reads the same object version (upager_source_url(3)). */
	const char *cache_dir;        /* NULL: UPAGER_CACHE_DIR; unset or "": no cache */
	uint64_t cache_bytes;         /* its bound (4 chunks or more); 0: UPAGER_CACHE_BYTES ("8G"), else 4 GiB */
	const char *ca_file;          /* https: the CA certificates (PEM) to check the server
	                                 with; NULL: CURL_CA_BUNDLE, else libcurl's default */
	uint64_t reserved[1];         /* zero */
} upager_url_options_t;
/* Follow redirects at open to any http(s) host, not only the URL's own. */
#define UPAGER_URL_ANY_REDIRECT (1u << 0)
void upager_url_options_init(upager_url_options_t *opts);
int upager_source_url(const char *url, const upager_url_options_t *opts, upager_source_t **srcp);
/*
 * upager_snapshot_map() of a snapshot at url (docs/SNAPSHOT.md): its header
 * and page map are fetched once, here, with the object's ETag pinned, and
 * checked as a file's are (-EBADMSG); stored pages come in chunks from the
 * data area as above, each checked against its CRC32C before it is placed
 * (a mismatch: SIGBUS). UPAGER_SNAP_PREFETCH prefetches URL.ws (beside it,
 * when url has no query) chunk by chunk in object order (each chunk fetched
 * once; faults first); UPAGER_SNAP_RECORD gives
 * -EOPNOTSUPP; an incremental snapshot -EXDEV.
 */
int upager_snapshot_map_url(upager_t *pager, const char *url, const upager_url_options_t *opts,
			    unsigned flags, upager_region_t **regionp);

/* ---- memory budget and write-back ------------------------------------- */
/*
 * upager_options.evict_policy (env UPAGER_EVICT_POLICY=clock|fifo):
 * CLOCK (the default): fill order with a second chance for pages that were
 *   evicted before and faulted back, and for pages written since placed;
 * FIFO: fill order alone.
 * Eviction takes a page away with UFFDIO_MOVE (Linux 6.8), so that a write
 * racing it is never lost; without it, with write-protect faults (a page's
 * writes wait while it is dropped; UPAGER_FEAT_WP, WP_ASYNC off). Neither,
 * or UPAGER_FAULT_INLINE: upager_create returns -ENOTSUP for a budget. See
 * upager_create(3).
 */
#define UPAGER_EVICT_CLOCK 0u
#define UPAGER_EVICT_FIFO  1u
/*
 * upager_region_advise(): the region's pages go first when the pager is
 * over its budget (its fills work as under NORMAL).
 */
#define UPAGER_ADV_EVICT 3
/*
 * A file source whose written pages are written back to the file (a
 * MAP_SHARED-like mapping): when evicted, by upager_sync and at
 * upager_release. The fd must be open for reading and writing.
 */
int upager_source_file_rw(int fd, uint64_t offset, upager_source_t **srcp);
/* The same, opening path read-write (it must exist). */
int upager_source_path_rw(const char *path, uint64_t offset, upager_source_t **srcp);
/*
 * Writes the pages of [off, off+len) of a region written since their last
 * write-back to its writable source, and waits for them, like msync(2)
 * with MS_SYNC (and fdatasync). Returns 0, -EROFS for a read-only source,
 * or the first write-back error of the region since the last call (its
 * evictions' too), as -errno.
 */
int upager_sync(upager_region_t *region, size_t off, size_t len);

/* ---- statistics --------------------------------------------------------- */
typedef struct upager_stats {
	uint64_t faults;           /* page-fault messages handled */
	uint64_t read_faults;
	uint64_t write_faults;
	uint64_t coalesced;        /* faults joined to a fill already in flight */
	uint64_t pages_filled;     /* pages placed by upager */
	uint64_t bytes_filled;
	uint64_t pages_zero;       /* of which resolved as zero pages */
	uint64_t fill_errors;      /* fills that failed: the access got SIGBUS */
	uint64_t pages_resident;   /* pages upager placed that are still mapped */
	uint64_t lat_samples;      /* fault service latency: from reading the */
	uint64_t lat_min_ns;       /* fault message to the page being mapped */
	uint64_t lat_p50_ns;
	uint64_t lat_p99_ns;
	uint64_t lat_max_ns;
	uint64_t pages_prefetched; /* of pages_filled, placed ahead of any fault */
	/* Memory budget and write-back (upager_sync(3)): */
	uint64_t pages_evicted;    /* pages dropped to stay under the budget */
	uint64_t pages_written;    /* pages written back to a writable source */
	uint64_t bytes_written;
	uint64_t write_errors;     /* failed write-backs (upager_sync returns them) */
	uint64_t mem_budget;       /* the pager's budget in bytes (0: none) */
	uint64_t reserved[4];
} upager_stats_t;

int upager_region_stats(const upager_region_t *region, upager_stats_t *stats);
int upager_stats(const upager_t *pager, upager_stats_t *stats);

#ifdef __cplusplus
}
#endif
#endif /* UPAGER_H */
