/* SPDX-License-Identifier: MIT */
/*
 * upagerd handle's memory file at a URL (http://, https://, s3://): its
 * bytes come through the library's URL transfers (lib/url_object.c), and
 * its version is pinned. The first process to open it (the supervisor, or
 * upagerd under systemd) writes what it opened, the ETag, the length and
 * the kind, into a small memfd; that memfd goes where a file's descriptor
 * would (to each worker in the supervisor's start message, or into
 * systemd's FD store as upagerd-memfile), so that a worker started later
 * opens that version or none: an object replaced meanwhile fails the
 * faults (SIGBUS, logged) rather than mix versions in a client's memory.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fileio.h"
#include "handle_session.h"
#include "log.h"
#include "snapshot_url.h"
#include "spin.h"
#include "url_object.h"
#ifdef HAVE_LIBCURL
#include "url_http.h"
#endif

#define PIN_MAGIC "upagerd-url-pin 1\n"
#define REOPEN_NS 1000000000ull /* a pinned object that could not be reached: tried again after */
#define SAID_MAX 512

/* What was opened, as the pin memfd says it. */
struct pin {
	char etag[UPAGER__URL_OBJECT_ETAG_MAX];
	uint64_t len;
	bool snap;
};

static struct {
	pthread_mutex_t lock; /* reopening */
	const char *url;      /* as given: never logged (it may hold a signature) */
	struct pin pin;
	upager_url_options_t o;
	uint64_t tried_ns;
	struct upager__url_object *kept; /* image_url_pin's, for image_url_open in this process */
	/* Set while opening at start: the library's error lines, kept for the
	 * one line said on stderr (else they go to the log). */
	char *said;
} u = { .lock = PTHREAD_MUTEX_INITIALIZER };

bool image_is_url(const char *path)
{
	return upager__is_url(path);
}

static void url_log(void *arg, int level, const char *msg)
{
	char *said = __atomic_load_n(&u.said, __ATOMIC_ACQUIRE);

	(void)arg;
	if (said && level == LOG_ERR && !said[0])
		snprintf(said, SAID_MAX, "%s", msg); /* the first: the cause */
	else if (!said)
		LOG(level, "%s", msg);
}

/* What may be said of url: without user info, query or fragment. */
static void shown(const char *url, char *out, size_t len)
{
#ifdef HAVE_LIBCURL
	char *s = upager__url_shown(url);

	snprintf(out, len, "%s", s ? s : "(an invalid URL)");
	free(s);
#else
	snprintf(out, len, "(a URL)");
#endif
}

/* Opens the object (pin: that version, or NULL), saying on stderr why not. */
static int open_said(const char *url, const char *pin, struct upager__url_object **ob)
{
	char said[SAID_MAX] = "", name[sizeof(image.shown)];
	int ret;

	__atomic_store_n(&u.said, said, __ATOMIC_RELEASE);
	ret = upager__url_object_open(ob, url, &u.o, pin);
	__atomic_store_n(&u.said, NULL, __ATOMIC_RELEASE);
	if (ret == 0)
		return 0;
	if (said[0]) {
		fprintf(stderr, "upagerd: memory file %s\n", said);
	} else {
		shown(url, name, sizeof(name));
		fprintf(stderr, "upagerd: cannot open memory file %s: %s\n", name,
			ret == -ENOTSUP ? "upagerd was built without libcurl: no URLs"
			: ret == -EINVAL ? "not a URL upagerd takes" : strerror(-ret));
	}
	return -1;
}

static void options(const struct options *o)
{
	upager_url_options_init(&u.o);
	u.o.deadline_ms = (unsigned)o->url_deadline * 1000u;
	/* A guest restores in any order: the chunks it is between hold still
	 * (allocated as they are first used, so a small guest costs less). */
	u.o.mem_chunks = (unsigned)(((uint64_t)o->url_memory << 20) / u.o.chunk_size);
	u.o.log = url_log;
	u.o.log_level = log_level;
}

/* A memfd saying what ob is, or -1 (said on stderr). */
static int pin_create(const struct upager__url_object *ob)
{
	char text[UPAGER__URL_OBJECT_ETAG_MAX + 64];
	int fd = memfd_create("upagerd-url-pin", MFD_CLOEXEC);
	int n = snprintf(text, sizeof(text), PIN_MAGIC "%s\n%llu\n%d\n", upager__url_object_etag(ob),
			 (unsigned long long)upager__url_object_len(ob),
			 upager__url_object_snapshot(ob));

	if (n < 0 || (size_t)n >= sizeof(text) || fd < 0 ||
	    upp_pwrite_full(fd, text, (size_t)n, 0) < 0) {
		fprintf(stderr, "upagerd: cannot keep the memory file's version: %s\n",
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* The pin memfd fd says: 0, or -1 (said on stderr: not one upagerd wrote). */
static int pin_read(int fd, struct pin *p)
{
	char text[UPAGER__URL_OBJECT_ETAG_MAX + 64], *at, *nl;
	ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
	unsigned long long len;
	int snap;

	if (n < 0)
		n = 0;
	text[n] = '\0';
	at = text + strlen(PIN_MAGIC);
	if (strncmp(text, PIN_MAGIC, strlen(PIN_MAGIC)) || !(nl = strchr(at, '\n')) ||
	    (size_t)(nl - at) >= sizeof(p->etag) ||
	    sscanf(nl + 1, "%llu\n%d\n", &len, &snap) != 2 || !len) {
		fprintf(stderr, "upagerd: the memory file's version handed over is not one upagerd "
				"wrote (%s)\n", n ? "damaged" : "empty");
		return -1;
	}
	memcpy(p->etag, at, (size_t)(nl - at));
	p->etag[nl - at] = '\0';
	p->len = len;
	p->snap = snap;
	return 0;
}

int image_url_pin(const char *url, const struct options *o, bool keep)
{
	struct upager__url_object *ob;
	int fd;

	options(o);
	if (open_said(url, NULL, &ob) < 0)
		return -1;
	fd = pin_create(ob);
	if (keep && fd >= 0)
		u.kept = ob;
	else
		upager__url_object_close(ob);
	return fd;
}

/* Errors that asking again will not change: the pinned version is gone. */
static bool lasting(int err)
{
	return err == -ESTALE || err == -ENOENT || err == -EACCES || err == -EBADMSG ||
	       err == -EXDEV || err == -EPROTO || err == -EINVAL || err == -ENOTSUP;
}

int image_url_open(const char *url, int pinfd, const struct options *o)
{
	struct upager__url_object *ob = NULL;
	int ret;

	options(o);
	u.url = url;
	shown(url, image.shown, sizeof(image.shown));
	image.path = image.shown;
	if (pinfd < 0) {
		/* --no-supervisor, or the first upagerd under systemd: this is
		 * the start, and what it opens is the version from now on. */
		if (open_said(url, NULL, &ob) < 0)
			return -1;
		image.fd = pin_create(ob);
		if (image.fd < 0 || pin_read(image.fd, &u.pin) < 0) {
			upager__url_object_close(ob);
			return -1;
		}
	} else {
		/* A worker after a start: the version pinned then, or none. */
		image.fd = pinfd;
		if (pin_read(pinfd, &u.pin) < 0)
			return -1;
		ob = u.kept; /* pinned by this process a moment ago */
		ret = ob ? 0 : upager__url_object_open(&ob, url, &u.o, u.pin.etag);
		if (ret < 0) {
			LOG(LOG_ERR, "memory file %s: cannot open the version pinned at start "
				     "(ETag %s): %s: %s", image.shown, u.pin.etag, strerror(-ret),
			    lasting(ret) ? "its faults fail (SIGBUS)"
					 : "its faults fail (SIGBUS) until it can be reached");
			ob = NULL;
			image.url_err = ret;
			u.tried_ns = upager__mono_ns();
		}
	}
	image.url = ob;
	image.snap = u.pin.snap;
	image.len = u.pin.len;
	return 0;
}

/* The object, opened again if a worker could not reach it at start. */
static struct upager__url_object *object(int *err)
{
	struct upager__url_object *ob = __atomic_load_n(&image.url, __ATOMIC_ACQUIRE);

	if (ob)
		return ob;
	pthread_mutex_lock(&u.lock);
	ob = image.url;
	if (!ob && !lasting(image.url_err) && upager__mono_ns() - u.tried_ns >= REOPEN_NS) {
		int ret = upager__url_object_open(&ob, u.url, &u.o, u.pin.etag);

		u.tried_ns = upager__mono_ns();
		if (ret == 0) {
			LOG(LOG_INFO, "memory file %s: reached, ETag %s", image.shown, u.pin.etag);
			__atomic_store_n(&image.url, ob, __ATOMIC_RELEASE);
		} else {
			image.url_err = ret;
			ob = NULL;
		}
	}
	*err = image.url_err;
	pthread_mutex_unlock(&u.lock);
	return ob;
}

int image_url_read(uint64_t off, size_t len, void *buf, const char **why)
{
	int err = 0;
	struct upager__url_object *ob = object(&err);
	int ret = ob ? upager__url_object_read(ob, off, len, buf) : err;

	if (ret >= 0)
		return ret;
	*why = ret == -ESTALE ? "the object at the URL is no longer the version pinned at start "
				"(HTTP 412, or another ETag)"
	       : ret == -ENOENT ? "the object at the URL is gone (HTTP 404)"
	       : ret == -EACCES ? "the URL refuses access (HTTP 401/403)"
	       : ret == -ETIMEDOUT ? "no answer from the URL within --url-deadline"
	       : ret == -EBADMSG ? "snapshot page fails its checksum"
				 : "cannot read the URL";
	return ret;
}
