/* SPDX-License-Identifier: MIT */
/*
 * upagerd handle: resolves the page faults of other processes (VM
 * monitors) from one memory file, speaking Firecracker's UFFD handshake
 * (docs/HANDLE.md). A client connects to the Unix socket and sends, in one
 * message, a JSON array of its guest regions with its userfaultfd attached
 * (SCM_RIGHTS); then it keeps the socket open and sends nothing more. Its
 * faults are served until it closes the socket (or dies).
 *
 * One thread per client: a client whose pages come slowly off the disk, or
 * whose address space is being torn down, holds up nobody else; and a
 * client's state is the thread's, so a client that dies takes nothing but
 * its own thread with it.
 *
 * Here: the memory file, the fault loop and the listener. The handshake and
 * what is checked before serving are handle_session.c's; every page is
 * placed (copied, zeroed, poisoned, woken) by lib/place.c, under the rules
 * the library's own fault loop follows.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "env.h"
#include "handle.h"
#include "handle_session.h"
#include "log.h"
#include "metrics.h"
#include "place.h"
#include "listen.h"
#include "service.h"
#include "snapfmt.h"
#include "spin.h"
#include "supervise.h"

#define LOG_FAILS 8      /* failed pages logged per client; the rest counted */

/* The memory file, shared read-only by every client thread. */
struct image image;

static struct {
	pthread_mutex_t lock;
	struct client *clients;
	long nclients;
	const struct options *options;
	int chan;	   /* to the supervisor; -1: none (--no-supervisor, or it died) */
	bool store;	   /* under systemd: clients kept in its FD store instead */
	uint64_t next_id;  /* for a new client, from the supervisor */
} handler = { .lock = PTHREAD_MUTEX_INITIALIZER, .chan = -1, .next_id = 1 };

#define BUMP(c, field) __atomic_add_fetch(&(c)->field, 1, __ATOMIC_RELAXED)
#define READ(c, field) __atomic_load_n(&(c)->field, __ATOMIC_RELAXED)

/* ---- the memory file ---- */

/* path, or the descriptor the supervisor holds (fd >= 0) for it (for a
 * URL: the memfd of its pinned version). */
static int image_open(const char *path, int fd, const struct options *o)
{
	struct stat st;
	int ret;

	image.path = path;
	image.ps = (size_t)sysconf(_SC_PAGESIZE);
	image.no_poison = upp_env_disables("poison");
	image.zero = mmap(NULL, MAX_PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (image.zero == MAP_FAILED) {
		fprintf(stderr, "upagerd: cannot map zeros: %s\n", strerror(errno));
		return -1;
	}
	if (image_is_url(path)) {
		image.is_url = true;
		return image_url_open(path, fd, o);
	}
	image.fd = fd >= 0 ? fd : open(path, O_RDONLY | O_CLOEXEC);
	if (image.fd < 0 || fstat(image.fd, &st) < 0) {
		fprintf(stderr, "upagerd: cannot open memory file %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		fprintf(stderr, "upagerd: %s is not a file\n", path);
		return -1;
	}
	if (upp_snap_is(image.fd)) {
		ret = upp_snap_open(image.fd, image.ps, &image.snapshot);
		if (ret < 0) {
			fprintf(stderr, "upagerd: %s: %s\n", path,
				ret == -EBADMSG ? "not a valid upager snapshot (damaged or crafted)"
				: ret == -EINVAL ? "a snapshot of another page size"
						 : strerror(-ret));
			return -1;
		}
		image.snap = true;
		image.len = image.snapshot.len;
	} else {
		image.len = S_ISBLK(st.st_mode) ? (uint64_t)lseek(image.fd, 0, SEEK_END) : (uint64_t)st.st_size;
		if (image.len == 0 || image.len > SIZE_MAX) {
			fprintf(stderr, "upagerd: %s is empty\n", path);
			return -1;
		}
		/* Faults copy straight from the page cache through this mapping. */
		image.map = mmap(NULL, (size_t)image.len, PROT_READ, MAP_SHARED, image.fd, 0);
		if (image.map == MAP_FAILED) {
			fprintf(stderr, "upagerd: cannot map %s: %s\n", path, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* ---- serving ---- */

static struct region *region_at(struct client *c, uint64_t addr)
{
	size_t lo = 0, hi = c->nregions;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (addr < c->regions[mid].base)
			hi = mid;
		else if (addr >= c->regions[mid].base + c->regions[mid].size)
			lo = mid + 1;
		else
			return &c->regions[mid];
	}
	return NULL;
}

static bool page_removed(const struct region *r, uint64_t page)
{
	uint64_t k = (page - r->base) / r->psz;

	return r->removed[k / 8] & (1u << (k % 8));
}

/*
 * The signal that ends the client: SIGBUS, but SIGKILL for the init of a pid
 * namespace that does not catch SIGBUS (as a VM monitor under a jailer may
 * be): the kernel drops any other signal to it, and its fault would wait for
 * ever. The pidfd's fdinfo gives its pid here and in its own namespace.
 */
static int fatal_signal(struct client *c)
{
	char path[64], line[256];
	long pid = 0, inner = 0;
	unsigned long long caught = 0;
	bool known = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", c->pidfd);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f)) {
		char *p = line + 6;

		if (!strncmp(line, "Pid:", 4))
			pid = strtol(line + 4, NULL, 10);
		else if (!strncmp(line, "NSpid:", 6))
			while (*p && *p != '\n')
				inner = strtol(p, &p, 10);
	}
	if (f)
		fclose(f);
	if (inner != 1)
		return SIGBUS;
	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	f = pid > 0 ? fopen(path, "re") : NULL;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "SigCgt:\t%llx", &caught) == 1)
			known = true;
	if (f)
		fclose(f);
	return known && (caught & (1ull << (SIGBUS - 1))) ? SIGBUS : SIGKILL;
}

static void defer(struct client *c, uint64_t addr)
{
	if (c->ndeferred == c->capdeferred) {
		size_t cap = c->capdeferred ? c->capdeferred * 2 : 64;
		uint64_t *d = realloc(c->deferred, cap * sizeof(*d));

		if (!d) {
			/* Out of memory: wake the thread instead, so that its access
			 * runs again and faults anew, a message we read later. */
			upager__place_wake(c->uffd, addr & ~(uint64_t)(image.ps - 1), image.ps);
			return;
		}
		c->deferred = d;
		c->capdeferred = cap;
	}
	c->deferred[c->ndeferred++] = addr;
}

/* A page whose access fails: counted, and the first LOG_FAILS logged. */
static void count_failed(struct client *c, uint64_t page, const char *why)
{
	uint64_t n = BUMP(c, failed);

	METRIC_ADD(errors, 1);
	if (n <= LOG_FAILS)
		LOG(LOG_ERR, "%s: page 0x%llx: %s: the access gets SIGBUS%s", c->name,
		    (unsigned long long)page, why, n == LOG_FAILS ? " (no more of these logged)" : "");
}

struct failure {
	struct client *c;
	const char *why;
	bool signalled; /* signal_client ran: its answer is the outcome */
};

/*
 * upager__place_fail's fallback where the page cannot be poisoned: the whole
 * client gets SIGBUS, through the pidfd taken at accept (never a pid: it may
 * be 0 or reused). 0: sent; -ESRCH: it exited; another -errno: it cannot be
 * sent the signal (logged: its session ends).
 */
static int signal_client(void *arg, uintptr_t page)
{
	struct failure *f = arg;
	struct client *c = f->c;
	int err = EBADF;

	f->signalled = true;
	count_failed(c, page, f->why);
	if (c->pidfd >= 0) {
		if (syscall(SYS_pidfd_send_signal, c->pidfd, fatal_signal(c), NULL, 0) == 0)
			return 0;
		if (errno == ESRCH)
			return -ESRCH; /* it exited */
		err = errno;
	}
	LOG(LOG_ERR, "%s: cannot send it SIGBUS (%s): its session ends", c->name,
	    c->pidfd < 0 ? "no pidfd" : strerror(err));
	return -err;
}

/*
 * A fault that cannot be served right (no region, unreadable file, bad
 * checksum) must not be served wrong: the access gets SIGBUS. UFFDIO_POISON
 * (Linux 6.6) makes it exact; before it, the whole client gets SIGBUS
 * (signal_client). 1: done; 0: deferred (a remove is pending); -1: the
 * client is gone, or cannot be signalled after all (its session ends).
 */
static int fail_page(struct client *c, uint64_t addr, uint64_t psz, const char *why)
{
	struct failure f = { .c = c, .why = why };
	uint64_t page = addr & ~(psz - 1);
	int ret = upager__place_fail(c->uffd, page, psz, c->can_poison, signal_client, &f);

	if (f.signalled)
		return ret == 0 ? 1 : -1;
	switch (ret) {
	case 0: /* poisoned */
		count_failed(c, page, why);
		return 1;
	case 1: /* filled meanwhile: its waiters were woken */
		return 1;
	case -EAGAIN: /* a remove is pending: retried after the events */
		BUMP(c, retries);
		defer(c, addr);
		return 0;
	case -ENOENT: /* the mapping went away: nothing waits */
	case -EFAULT:
		return 1;
	default: /* -ESRCH: the client is exiting */
		return -1;
	}
}

/* The bytes of [page, page+psz) of region r into a buffer, or NULL (why set). */
static const void *page_bytes(struct client *c, const struct region *r, uint64_t page,
			  bool *zero, const char **why)
{
	uint64_t off = r->offset + (page - r->base);
	bool any = false;

	*zero = false;
	if (page_removed(r, page)) {
		*zero = true;
		return image.zero;
	}
	if (!image.snap && !image.is_url)
		return image.map + off;
	if (!c->buf) { /* as large as the client's largest page */
		uint64_t max = 0;

		for (size_t i = 0; i < c->nregions; i++)
			max = c->regions[i].psz > max ? c->regions[i].psz : max;
		c->buf = malloc(max);
		if (!c->buf) {
			*why = "out of memory";
			return NULL;
		}
	}
	if (image.is_url) { /* a raw image or a snapshot: the object's reader tells */
		int got = image_url_read(off, r->psz, c->buf, why);

		if (got < 0)
			return NULL;
		*zero = got == 0;
		return got ? c->buf : image.zero;
	}
	for (uint64_t k = 0; k < r->psz / image.ps; k++) {
		int kind = upp_snap_read(&image.snapshot, off / image.ps + k, c->buf + k * image.ps);

		if (kind < 0) {
			*why = kind == -EBADMSG ? "snapshot page fails its checksum"
						: "cannot read the snapshot";
			return NULL;
		}
		any |= kind == UPP_SNAP_STORED;
	}
	*zero = !any;
	return any ? c->buf : image.zero;
}

/*
 * How many pages from page on to fill with one copy. A fault right after the
 * last window doubles it (up to UPAGER__MAX_WINDOW), any other fault fills its page
 * alone: a guest streaming through memory pays one round trip per window,
 * one touching it at random gets nothing it did not ask for. Only raw files
 * (the bytes are contiguous in the mapping), and never across a page the
 * client discarded (that one reads zero).
 */
static uint64_t fault_window(struct client *c, const struct region *r, uint64_t page, bool zero)
{
	uint64_t n = 1, max = (r->base + r->size - page) / r->psz;

	if (image.snap || image.is_url || zero || r->psz != image.ps)
		return 1;
	c->window = page == c->next_fault ? upager__window_grow(c->window) : 1;
	while (n < c->window && n < max && !page_removed(r, page + n * r->psz))
		n++;
	c->next_fault = page + n * r->psz;
	return n;
}

/*
 * Places the page of the fault at addr, with its window (upager__place_range:
 * a page found already there is woken and passed over, the rest placed).
 * 1: served (or nothing to do); 0: deferred; -1: the client's memory is gone.
 */
static int serve_fault(struct client *c, uint64_t addr)
{
	struct region *r = region_at(c, addr);
	struct upager__placement pl;
	uint64_t page, placed;
	const char *why = "";
	const void *src;
	bool zero;
	int ret;

	if (!r)
		return fail_page(c, addr, image.ps, "outside every region it described");
	page = addr & ~(r->psz - 1);
	src = page_bytes(c, r, page, &zero, &why);
	if (!src)
		return fail_page(c, page, r->psz, why);
	pl = (struct upager__placement){ .uffd = c->uffd, .dst = page, .page_size = r->psz,
					 .len = fault_window(c, r, page, zero) * r->psz,
					 .src = src };
	if (zero && r->psz == image.ps) {
		pl.flags = UPAGER__PLACE_ZEROPAGE;
		pl.src = NULL;
	}
	ret = upager__place_range(&pl);
	/* Each page there from now on reads zero if it ever faults again: only
	 * a discard (or an unmap) takes a placed page away. Recorded in the
	 * state memfd after the copy, so a worker taking over knows it even if
	 * this one read the discard's REMOVE and died before recording it. */
	for (uint64_t k = (page - r->base) / r->psz; k < (page - r->base + pl.done) / r->psz; k++)
		__atomic_or_fetch(&r->removed[k / 8], (uint8_t)(1u << (k % 8)), __ATOMIC_RELAXED);
	placed = pl.done / r->psz - pl.present;
	METRIC_ADD(pages, placed);
	METRIC_ADD(bytes, placed * r->psz);
	__atomic_add_fetch(&c->pages, placed, __ATOMIC_RELAXED);
	if (zero)
		__atomic_add_fetch(&c->zero_pages, placed, __ATOMIC_RELAXED);
	/* The faulting page (the window's first) is there and woken: the rest
	 * is read-ahead, and a thread waiting there has its own fault to come. */
	if (ret == 0 || (ret == -EAGAIN && pl.done > 0))
		return 1;
	switch (ret) {
	case -EAGAIN: /* the client's layout is changing (a remove): events first */
		BUMP(c, retries);
		defer(c, addr);
		return 0;
	case -ENOENT: /* the mapping went away under the fault: nothing waits */
		return 1;
	case -ESRCH: /* the address space is gone: the client exited */
		return -1;
	default: /* -EFAULT from a copy: the memory file could not be read */
		return fail_page(c, page, r->psz, strerror(-ret));
	}
}

/*
 * Pages of [start, end) the client discarded (REMOVE) or unmapped read zero
 * from now on: recorded in the state memfd, where a worker started after
 * this one finds them, before any later fault is served.
 */
static void mark_removed(struct client *c, uint64_t start, uint64_t end)
{
	BUMP(c, removes);
	for (size_t i = 0; i < c->nregions; i++) {
		struct region *r = &c->regions[i];
		uint64_t s = start > r->base ? start : r->base;
		uint64_t e = end < r->base + r->size ? end : r->base + r->size;

		if (s >= e)
			continue;
		for (uint64_t k = (s - r->base) / r->psz; k < (e - r->base + r->psz - 1) / r->psz; k++)
			r->removed[k / 8] |= (uint8_t)(1u << (k % 8));
	}
}

static void follow_mremap(struct client *c, uint64_t from, uint64_t to, uint64_t len)
{
	for (size_t i = 0; i < c->nregions; i++) {
		struct region *r = &c->regions[i];

		if (r->base >= from && r->base + r->size <= from + len) {
			r->base = r->base - from + to;
		} else if (r->base < from + len && from < r->base + r->size) {
			/* Part of a region moved: its new place is not followed, and
			 * faults there are failed rather than guessed. */
			LOG(LOG_WARN, "%s: part of region 0x%llx was moved by mremap: its moved "
				      "pages are not served", c->name, (unsigned long long)r->base);
		}
	}
	client_sort_regions(c);
}

/* Reads what the uffd has. 1: more may come; -1: the client is gone. */
/*
 * UPAGERD_TEST_KILL_AFTER_FAULT=N (tests only; the supervisor gives it to its
 * first worker alone): that worker SIGKILLs itself right after reading its
 * Nth fault, before answering it: the case a random kill seldom hits, which
 * only the new worker's UFFDIO_WAKE resolves.
 */
static long test_kill_after;

static int read_uffd(struct client *c)
{
	struct uffd_msg m[UPAGER__MSG_BATCH];
	long n;

	while ((n = upager__uffd_read(c->uffd, m, UPAGER__MSG_BATCH)) > 0) {
		for (long i = 0; i < n; i++) {
			if (test_kill_after && m[i].event == UFFD_EVENT_PAGEFAULT &&
			    __atomic_sub_fetch(&test_kill_after, 1, __ATOMIC_RELAXED) == 0)
				raise(SIGKILL);
			switch (m[i].event) {
			case UFFD_EVENT_PAGEFAULT: {
				uint64_t t0 = upager__mono_ns();

				BUMP(c, faults);
				METRIC_ADD(faults, 1);
				if (serve_fault(c, m[i].arg.pagefault.address) < 0)
					return -1;
				metrics_latency(upager__mono_ns() - t0);
				break;
			}
			case UFFD_EVENT_REMOVE:
			case UFFD_EVENT_UNMAP:
				mark_removed(c, m[i].arg.remove.start, m[i].arg.remove.end);
				break;
			case UFFD_EVENT_REMAP:
				follow_mremap(c, m[i].arg.remap.from, m[i].arg.remap.to,
					      m[i].arg.remap.len);
				break;
			case UFFD_EVENT_FORK:
				/* A child's copy of the memory: not served (docs/HANDLE.md). */
				LOG(LOG_WARN, "%s: forked; the child's faults are not served", c->name);
				close((int)m[i].arg.fork.ufd);
				break;
			default:
				break;
			}
		}
	}
	return n < 0 ? -1 : 1;
}

/*
 * --spin-us: after serving faults, keeps reading the uffd for spin_us more
 * (from the last fault served) instead of sleeping in poll: a vCPU's next
 * fault then costs no cross-CPU wakeup. 1, or -1 as read_uffd.
 */
static int spin_uffd(struct client *c)
{
	uint64_t spin_ns = (uint64_t)handler.options->spin_us * 1000, until;
	uint64_t seen = READ(c, faults);

	if (!spin_ns)
		return 1;
	until = upager__mono_ns() + spin_ns;
	while (upager__mono_ns() < until) {
		if (read_uffd(c) < 0)
			return -1;
		if (READ(c, faults) != seen) {
			seen = READ(c, faults);
			until = upager__mono_ns() + spin_ns;
		}
		upager__cpu_relax();
	}
	return 1;
}

/* 0, or -1: the client's session is over. */
static int retry_deferred(struct client *c)
{
	size_t n = c->ndeferred;

	c->ndeferred = 0;
	for (size_t i = 0; i < n; i++)
		if (serve_fault(c, c->deferred[i]) < 0)
			return -1;
	return 0;
}

static void client_free(struct client *c)
{
	if (c->uffd >= 0)
		close(c->uffd);
	if (c->pidfd >= 0)
		close(c->pidfd);
	close(c->sock);
	if (!c->state_map)
		free(c->regions);
	client_state_free(c);
	free(c->buf);
	free(c->deferred);
	free(c);
}

static void client_line(struct client *c, const char *what)
{
	LOG(LOG_INFO, "%s: %s: %llus, %llu faults, %llu pages (%llu zero), %llu removes, "
		      "%llu retried, %llu failed", c->name, what,
	    (unsigned long long)(time(NULL) - c->since), (unsigned long long)READ(c, faults),
	    (unsigned long long)READ(c, pages), (unsigned long long)READ(c, zero_pages),
	    (unsigned long long)READ(c, removes), (unsigned long long)READ(c, retries),
	    (unsigned long long)READ(c, failed));
}

/* The names of a client's descriptors in systemd's FD store, in
 * CHAN_HOLD's order: upagerd-c<id>-<kind>. */
static const char *const stored_kind[4] = { "sock", "uffd", "state", "pidfd" };

/* Its session is over: what the supervisor or systemd held for it goes. */
static void client_release(struct client *c)
{
	if (!c->id)
		return;
	if (handler.store) {
		for (int k = 0; k < 4; k++) {
			char name[64];

			snprintf(name, sizeof(name), "upagerd-c%llu-%s", (unsigned long long)c->id,
				 stored_kind[k]);
			service_unstore(name);
		}
	} else if (handler.chan >= 0) {
		chan_send(handler.chan, CHAN_DROP, c->id, NULL, 0);
	}
}

/*
 * A new client, its handshake done: its state goes into a memfd and its
 * descriptors to the supervisor (or systemd's FD store), before its first fault is served, so that
 * from then on it survives this worker. 0, or -1 (logged: closed).
 */
static int client_keep(struct client *c)
{
	int chan = __atomic_load_n(&handler.chan, __ATOMIC_RELAXED), ret;
	int fds[4] = { c->sock, c->uffd, -1, c->pidfd };
	char why[160];

	if (client_state_create(c, why, sizeof(why)) < 0) {
		LOG(LOG_ERR, "%s: %s: closed", c->name, why);
		return -1;
	}
	if (chan < 0 && !handler.store)
		return 0;
	fds[2] = c->state;
	c->id = __atomic_fetch_add(&handler.next_id, 1, __ATOMIC_RELAXED);
	if (handler.store) {
		ret = 0;
		for (int k = 0; k < 4 && ret == 0; k++) {
			char name[64];

			snprintf(name, sizeof(name), "upagerd-c%llu-%s", (unsigned long long)c->id,
				 stored_kind[k]);
			ret = fds[k] >= 0 ? service_store(name, fds[k]) : 0;
		}
	} else {
		ret = chan_send(chan, CHAN_HOLD, c->id, fds, c->pidfd >= 0 ? 4 : 3);
	}
	if (ret < 0) {
		LOG(LOG_WARN, "%s: the supervisor cannot hold it (%s): it would not survive this "
			      "worker", c->name, strerror(-ret));
		c->id = 0;
	}
	return 0;
}

static void client_serve(struct client *c)
{
	const char *end = "closed its socket";

	for (;;) {
		struct pollfd pf[2] = { { .fd = c->uffd, .events = POLLIN },
					{ .fd = c->sock, .events = POLLIN | POLLRDHUP } };
		char junk[256];

		if (poll(pf, 2, c->ndeferred ? 1 : -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents) {
			ssize_t n = recv(c->sock, junk, sizeof(junk), MSG_DONTWAIT);

			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				break;
			if (n > 0 && !c->garbage_logged) {
				/* The protocol has nothing after the handshake;
				 * stopping would strand the client's faults. */
				LOG(LOG_WARN, "%s: sent bytes after the handshake: ignored", c->name);
				c->garbage_logged = true;
			}
		}
		if (pf[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
			end = "its userfaultfd failed";
			break;
		}
		if (read_uffd(c) < 0 || retry_deferred(c) < 0 ||
		    (pf[0].revents & POLLIN && spin_uffd(c) < 0)) {
			end = "its memory is gone, or it cannot be sent SIGBUS";
			break;
		}
	}
	client_line(c, end);
}

static void *client_thread(void *arg)
{
	struct client *c = arg;
	uint64_t total = 0;

	if (c->adopted) {
		client_serve(c);
	} else if (client_handshake(c, handler.options->read_timeout) == 0) {
		for (size_t i = 0; i < c->nregions; i++)
			total += c->regions[i].size;
		LOG(LOG_INFO, "%s: %zu regions, %llu MiB, uffd features 0x%llx%s", c->name, c->nregions,
		    (unsigned long long)(total >> 20), (unsigned long long)c->features,
		    c->features & UFFD_FEATURE_EVENT_REMOVE ? "" : " (no EVENT_REMOVE: "
		    "discarded pages would be served from the file again)");
		if (client_keep(c) == 0)
			client_serve(c);
	}
	pthread_mutex_lock(&handler.lock);
	/* Said while still counted: the supervisor holds at most
	 * --max-clients. */
	client_release(c);
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	handler.nclients--;
	METRIC_ADD(clients, -1);
	pthread_mutex_unlock(&handler.lock);
	client_free(c);
	return NULL;
}

/* Links c in and starts its thread (c is the thread's from then on);
 * called with handler.lock held. */
static void client_start(struct client *c)
{
	pthread_attr_t attr;
	pthread_t tid;

	c->next = handler.clients;
	c->pprev = &handler.clients;
	if (handler.clients)
		handler.clients->pprev = &c->next;
	handler.clients = c;
	handler.nclients++;
	METRIC_ADD(clients, 1);
	if (!c->adopted)
		METRIC_ADD(clients_total, 1);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 << 10);
	if (pthread_create(&tid, &attr, client_thread, c)) {
		handler.clients = c->next;
		if (c->next)
			c->next->pprev = &handler.clients;
		handler.nclients--;
		METRIC_ADD(clients, -1);
		LOG(LOG_ERR, "%s: cannot start a thread for it: closed", c->name);
		client_release(c);
		client_free(c);
	}
	pthread_attr_destroy(&attr);
}

/* ---- the listener ---- */
static void on_accept(int lfd)
{
	struct ucred cr = { 0 };
	socklen_t cl = sizeof(cr);
	struct client *c;
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl);
	pthread_mutex_lock(&handler.lock);
	if (handler.nclients >= handler.options->max_clients) {
		pthread_mutex_unlock(&handler.lock);
		LOG(LOG_WARN, "client pid %d uid %u: refused, %ld clients already", (int)cr.pid,
		    (unsigned)cr.uid, handler.options->max_clients);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		pthread_mutex_unlock(&handler.lock);
		close(fd);
		return;
	}
	c->sock = fd;
	c->uffd = -1;
	c->state = -1;
	c->pidfd = client_pidfd(fd, cr.pid);
	c->pid = cr.pid;
	c->uid = cr.uid;
	c->since = time(NULL);
	snprintf(c->name, sizeof(c->name), "client pid %d uid %u", (int)cr.pid, (unsigned)cr.uid);
	/* Said now: once the thread runs, c is the thread's, and may be gone. */
	LOG(LOG_INFO, "%s: connected", c->name);
	client_start(c);
	pthread_mutex_unlock(&handler.lock);
}

/* ---- failover: a worker taking over from the one before ---- */

/*
 * A client the supervisor held for the dead worker: its state memfd is
 * mapped and checked as a handshake is, then every region is woken: a
 * thread whose fault the dead worker had read but not answered runs its
 * access again and faults anew, a message this worker reads. No fault is
 * lost. fds: socket, uffd, state memfd[, pidfd].
 */
static void adopt(uint64_t id, const int *fds, uint32_t nfds)
{
	struct client *c = calloc(1, sizeof(*c));
	char why[200];

	if (!c) {
		for (uint32_t k = 0; k < nfds; k++)
			close(fds[k]);
		LOG(LOG_ERR, "client %llu: out of memory adopting it", (unsigned long long)id);
		return;
	}
	c->sock = fds[0];
	c->uffd = fds[1];
	c->pidfd = nfds > 3 ? fds[3] : -1;
	c->id = id;
	c->adopted = true;
	if (client_state_adopt(c, fds[2], why, sizeof(why)) < 0 ||
	    client_adopt_check(c, why, sizeof(why))) {
		LOG(LOG_ERR, "client %llu: cannot be adopted: %s: closed", (unsigned long long)id, why);
		client_release(c);
		client_free(c);
		return;
	}
	snprintf(c->name, sizeof(c->name), "client pid %d uid %u", (int)c->pid, (unsigned)c->uid);
	for (size_t i = 0; i < c->nregions; i++)
		upager__place_wake(c->uffd, c->regions[i].base, c->regions[i].size);
	LOG(LOG_INFO, "%s: adopted (%zu regions), its waiting faults woken", c->name, c->nregions);
	pthread_mutex_lock(&handler.lock);
	client_start(c);
	pthread_mutex_unlock(&handler.lock);
}

/*
 * Under systemd: the clients a worker before this one put in the FD store,
 * given back with LISTEN_FDS (service_stored_fds), adopted as from the
 * supervisor; and the memory file (*memfd), if it was stored.
 */
static void adopt_stored(void)
{
	const int *fds;
	char *const *names;
	int n = service_stored_fds(&fds, &names);
	bool *used = calloc((size_t)n + 1, 1);

	for (int i = 0; used && i < n; i++) {
		unsigned long long id, other;
		int g[4] = { -1, -1, -1, -1 };
		char kind[16];

		if (used[i] || !strcmp(names[i], "upagerd-memfile"))
			continue;
		if (sscanf(names[i], "upagerd-c%llu-%15s", &id, kind) != 2) {
			LOG(LOG_WARN, "FD store: %s is not a descriptor upagerd knows: dropped", names[i]);
			close(fds[i]);
			service_unstore(names[i]);
			continue;
		}
		/* This client's descriptors, in any order. */
		for (int j = i; j < n; j++) {
			int k = 0;

			if (used[j] || sscanf(names[j], "upagerd-c%llu-%15s", &other, kind) != 2 ||
			    other != id)
				continue;
			used[j] = true;
			while (k < 4 && strcmp(kind, stored_kind[k]))
				k++;
			if (k < 4 && g[k] < 0)
				g[k] = fds[j];
			else
				close(fds[j]); /* a duplicate, or unknown */
		}
		if (id >= handler.next_id)
			handler.next_id = id + 1;
		if (g[0] < 0 || g[1] < 0 || g[2] < 0) {
			struct client gone = { .id = id };

			LOG(LOG_ERR, "client %llu: the FD store lacks its socket, uffd or state: not "
				     "adopted", id);
			for (int k = 0; k < 4; k++)
				if (g[k] >= 0)
					close(g[k]);
			client_release(&gone);
			continue;
		}
		adopt(id, g, g[3] >= 0 ? 4 : 3);
	}
	free(used);
}

/* The memory file a worker before this one stored, or -1. */
static int stored_memfile(void)
{
	const int *fds;
	char *const *names;
	int n = service_stored_fds(&fds, &names);

	for (int i = 0; i < n; i++)
		if (!strcmp(names[i], "upagerd-memfile"))
			return fds[i];
	return -1;
}

/* The supervisor's first message: the listener and the memory file. */
static int worker_begin(int *lfd, int *memfd, bool *passed)
{
	struct chan_msg m;
	int fds[CHAN_MAX_FDS], ret = chan_recv(handler.chan, &m, fds, 0);

	if (ret != 1 || m.type != CHAN_START || m.nfds != 2) {
		fprintf(stderr, "upagerd: worker: no start message from the supervisor\n");
		return -1;
	}
	*lfd = fds[0];
	*memfd = fds[1];
	*passed = m.id != 0;
	return 0;
}

/* Then the clients to adopt, until CHAN_GO. */
static int worker_adopt_all(void)
{
	for (;;) {
		struct chan_msg m;
		int fds[CHAN_MAX_FDS], ret = chan_recv(handler.chan, &m, fds, 0);

		if (ret != 1) {
			LOG(LOG_ERR, "worker: the supervisor went away while handing over");
			return -1;
		}
		if (m.type == CHAN_GO) {
			handler.next_id = m.id;
			return chan_send(handler.chan, CHAN_READY, 0, NULL, 0) < 0 ? -1 : 0;
		}
		if (m.type == CHAN_ADOPT && m.nfds >= 3)
			adopt(m.id, fds, m.nfds);
		else
			for (uint32_t k = 0; k < m.nfds; k++)
				close(fds[k]);
	}
}

/* --metrics: each client's counters, labelled with its pid and uid. */
static void client_metrics(FILE *f)
{
	static const char *const what[] = { "faults", "pages", "zero_pages", "removes", "failed" };

	pthread_mutex_lock(&handler.lock);
	for (size_t k = 0; k < sizeof(what) / sizeof(what[0]); k++) {
		fprintf(f, "# TYPE upagerd_handle_client_%s_total counter\n", what[k]);
		for (struct client *c = handler.clients; c; c = c->next) {
			uint64_t v = k == 0 ? READ(c, faults) : k == 1 ? READ(c, pages)
				   : k == 2 ? READ(c, zero_pages) : k == 3 ? READ(c, removes)
				   : READ(c, failed);

			fprintf(f, "upagerd_handle_client_%s_total{pid=\"%d\",uid=\"%u\"} %llu\n",
				what[k], (int)c->pid, (unsigned)c->uid, (unsigned long long)v);
		}
	}
	pthread_mutex_unlock(&handler.lock);
}

static void stats_line(void)
{
	pthread_mutex_lock(&handler.lock);
	LOG(LOG_INFO, "stats: %ld clients", handler.nclients);
	for (struct client *c = handler.clients; c; c = c->next)
		client_line(c, "serving");
	pthread_mutex_unlock(&handler.lock);
}

/* The socket systemd passed, or else --socket: 0, or -1 said on stderr. */
static int open_listener(const struct options *o, int *lfd, char *name, size_t len,
			 bool *passed)
{
	struct passed_socket ps;
	int n = service_listen_fds(&ps, 1, false, false);

	if (n < 0)
		return -1;
	*passed = n > 0;
	if (n > 0) {
		if (o->socket[0])
			LOG(LOG_INFO, "--socket ignored: using the socket systemd passed");
		*lfd = ps.fd;
		snprintf(name, len, "%s", ps.name);
		return 0;
	}
	if (!o->socket[0]) { /* LISTEN_FDS was set, but not for us */
		fprintf(stderr, "upagerd: handle needs --socket: no socket passed by systemd "
				"(LISTEN_PID is another process)\n");
		return -1;
	}
	snprintf(name, len, "unix:%s", o->socket);
	return listen_unix(o->socket, (unsigned)o->socket_mode, lfd);
}

int handle_run(const struct options *o, char **argv)
{
	char ready[4200], where[300];
	const char *worker = getenv(WORKER_ENV);
	int lfd, sfd, memfd = -1;
	bool draining = false, full_logged = false, passed;

	handler.options = o;
	service_init();
	if (worker) {
		/* Started by the supervisor: everything comes from it. */
		handler.chan = atoi(worker);
		unsetenv(WORKER_ENV);
		if (getenv("UPAGERD_TEST_KILL_AFTER_FAULT"))
			test_kill_after = atol(getenv("UPAGERD_TEST_KILL_AFTER_FAULT"));
		if (worker_begin(&lfd, &memfd, &passed) < 0)
			return 1;
		if (listen_name(lfd, where, sizeof(where)) < 0)
			snprintf(where, sizeof(where), "unix:%s", o->socket);
	} else {
		/* A URL is opened, its version pinned, before the socket is: one
		 * that cannot be is said, and no client connects in vain. Under
		 * systemd the socket is systemd's, and the version pinned at the
		 * first start is in the FD store (below). */
		if (image_is_url(o->mem_file) && !getenv("NOTIFY_SOCKET") &&
		    (memfd = image_url_pin(o->mem_file, o, o->no_supervisor)) < 0)
			return 1;
		if (open_listener(o, &lfd, where, sizeof(where), &passed) < 0)
			return 1;
		/* Under systemd its FD store keeps the clients and Restart=
		 * restarts us; otherwise a supervisor does (docs/HANDLE.md). */
		handler.store = !o->no_supervisor && service_can_store();
		if (!o->no_supervisor && !getenv("NOTIFY_SOCKET"))
			return supervise_run(o, argv, lfd, passed, memfd);
		if (handler.store)
			memfd = stored_memfile();
	}
	if (image_open(o->mem_file, memfd, o) < 0)
		return 1;
	/* The same file for the clients after a restart, whatever is at the
	 * path by then. */
	if (handler.store && memfd < 0 && service_store("upagerd-memfile", image.fd) < 0)
		LOG(LOG_WARN, "cannot put the memory file in systemd's FD store");
	sfd = signal_fd();
	if (sfd < 0) {
		fprintf(stderr, "upagerd: signalfd: %s\n", strerror(errno));
		return 1;
	}
	/* The worker's, with a supervisor: counters start again at a restart. */
	if (o->metrics[0] && metrics_start(o->metrics, false, "handle", client_metrics) < 0)
		return 1;
	if (handler.chan >= 0 && worker_adopt_all() < 0)
		return 1;
	if (handler.store)
		adopt_stored();
	LOG(LOG_INFO, "handling faults on %s from %s (%s%s, %llu MiB)", where, image.path,
	    image.snap ? "upager snapshot" : "raw memory file", image.is_url ? " at a URL" : "",
	    (unsigned long long)(image.len >> 20));
	/* READY=1 and the --ready-fd line at the same moment: once listening. */
	service_ready(where, 0);
	if (o->ready_fd >= 0 && handler.chan < 0) { /* else the supervisor's */
		snprintf(ready, sizeof(ready), "ready %s\n", where);
		if (write((int)o->ready_fd, ready, strlen(ready)) < 0)
			LOG(LOG_WARN, "cannot write to --ready-fd: %s", strerror(errno));
		close((int)o->ready_fd);
	}
	for (;;) {
		struct pollfd pf[3] = { { .fd = sfd, .events = POLLIN }, { .fd = lfd, .events = POLLIN },
					{ .fd = handler.chan, .events = POLLIN } };
		bool listening;
		long n;
		int wait;

		pthread_mutex_lock(&handler.lock);
		n = handler.nclients;
		pthread_mutex_unlock(&handler.lock);
		if (draining && n == 0)
			break;
		/*
		 * At --max-clients, new clients wait in the socket's backlog until
		 * one leaves. Accepting and closing them would be worse: a client
		 * that has sent its uffd can be told nothing, and would wait on its
		 * faults for ever instead of until there is room.
		 */
		listening = !draining && n < handler.options->max_clients;
		if (!draining && !listening && !full_logged)
			LOG(LOG_WARN, "%ld clients, the most allowed (--max-clients): new ones wait",
			    n);
		full_logged = !listening;
		/* Client threads come and go without waking us: the status is
		 * looked at whenever the service manager wants word from us. */
		wait = service_tick((unsigned long)n);
		if (!listening && (wait < 0 || wait > 100))
			wait = 100;
		if (!listening)
			pf[1].fd = -1;
		if (poll(pf, 3, wait) < 0 && errno != EINTR)
			break;
		if (pf[2].revents) {
			/* The supervisor died: nobody would restart this worker or
			 * hold new clients. Those here are served until they leave;
			 * the socket is left for the next upagerd to replace. */
			LOG(LOG_ERR, "the supervisor is gone: serving the %ld clients present until "
				     "they leave, accepting no more, without failover", n);
			__atomic_store_n(&handler.chan, -1, __ATOMIC_RELAXED);
			if (!draining)
				close(lfd);
			draining = passed = true;
			continue;
		}
		if (pf[0].revents & POLLIN) {
			int sig = signal_next(sfd);

			if (!sig)
				continue;
			if (sig == SIGHUP) {
				log_reopen();
				if (handler.store && !draining) {
					/* A planned restart under systemd: everything is in
					 * its FD store, and the unit's
					 * RestartForceExitStatus=75 starts us again. */
					LOG(LOG_INFO, "SIGHUP: exiting (status 75) for systemd to restart "
						      "upagerd with the %ld clients in its FD store", n);
					service_stopping("restarting: clients kept in the FD store");
					_exit(75);
				}
			} else if (sig == SIGUSR1) {
				stats_line();
			} else if (draining) {
				LOG(LOG_WARN, "exiting with %ld clients: their faults will not be "
					      "served", n);
				break;
			} else {
				/* Exiting would strand the clients' faults: new
				 * clients are refused, those here are served to the end. */
				draining = true;
				close(lfd);
				if (!passed)
					unlink(o->socket);
				LOG(LOG_INFO, "stopping: %ld clients still served (signal again to "
					      "exit now)", n);
				service_stopping("stopping: serving the clients present until they "
						 "leave");
			}
		}
		if (listening && (pf[1].revents & POLLIN))
			on_accept(lfd);
	}
	if (!draining) {
		service_stopping("exiting");
		if (!passed)
			unlink(o->socket);
	}
	LOG(LOG_INFO, "exiting");
	return 0;
}
