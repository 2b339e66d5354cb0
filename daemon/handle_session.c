/* SPDX-License-Identifier: MIT */
/*
 * upagerd handle: a client's session until its first fault. The handshake
 * (one message: the JSON regions and the userfaultfd), what is checked
 * before serving (the descriptor is a userfaultfd, the regions fit the
 * memory file and this kernel's page sizes, a fault that cannot be served
 * can end in SIGBUS), and the client process as a pidfd.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "compat.h"
#include "handle_session.h"
#include "json.h"
#include "log.h"
#include "place.h"

#define HS_MAX 65536     /* handshake bytes: 4096 regions fit easily */

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  /* Linux 6.5 */
#endif

/* The features the client's uffd was opened with, from fdinfo ("API:\tapi:features:ioctls"). */
static int uffd_features(int fd, uint64_t *features)
{
	char path[64], line[256];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long long api, feat;

		if (sscanf(line, "API:\t%llx:%llx:", &api, &feat) == 2) {
			*features = feat;
			found = true;
		}
	}
	fclose(f);
	return found ? 0 : -EINVAL;
}

static bool is_uffd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0)
		return false;
	target[n] = '\0';
	return !strcmp(target, "anon_inode:[userfaultfd]");
}

/*
 * Whether memory in pages of psz bytes can exist: the base page, or a
 * hugetlb size with a pool or overcommit now. Anything else would only make
 * each fault read and copy psz bytes (1 GiB) for nothing.
 */
static bool kernel_page_size(uint64_t psz)
{
	static const char *const counts[] = { "nr_hugepages", "nr_overcommit_hugepages" };

	if (psz == image.ps)
		return true;
	if (psz < image.ps || psz > MAX_PAGE || (psz & (psz - 1)))
		return false;
	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		char path[128];
		unsigned long n = 0;
		FILE *f;

		snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%llukB/%s",
			 (unsigned long long)(psz >> 10), counts[k]);
		f = fopen(path, "re");
		if (!f)
			return false;
		if (fscanf(f, "%lu", &n) != 1)
			n = 0;
		fclose(f);
		if (n)
			return true;
	}
	return false;
}

/*
 * A fault that cannot be served ends in SIGBUS: UFFDIO_POISON where the
 * kernel has it, else a signal to the client (fail_page). A client that
 * could be sent neither is refused now, before it has a fault to wait on:
 * signalling anything else (its pid is 0 seen from another pid namespace;
 * kill(0) would hit upagerd's own group) is not an option. NULL if fine.
 */
static const char *check_can_fail(struct client *c, char *why, size_t whylen)
{
	int err;

	c->can_poison = !image.no_poison && upager__place_can_poison(c->uffd);
	if (c->can_poison)
		return NULL;
	if (c->pidfd < 0)
		err = ESRCH;
	else if (syscall(SYS_pidfd_send_signal, c->pidfd, 0, NULL, 0) == 0)
		return NULL;
	else
		err = errno;
	snprintf(why, whylen, "without UFFDIO_POISON a fault that cannot be served ends in a "
		 "SIGBUS to the client, and it cannot be sent SIGBUS (%s)",
		 err == ESRCH ? "no pidfd for it: its pid is not visible in upagerd's pid namespace"
		 : err == EINVAL ? "it is outside upagerd's pid namespace"
				 : strerror(err));
	return why;
}

static int cmp_region(const void *a, const void *b)
{
	const struct region *x = a, *y = b;

	return x->base < y->base ? -1 : x->base > y->base;
}

void client_sort_regions(struct client *c)
{
	qsort(c->regions, c->nregions, sizeof(*c->regions), cmp_region);
}

/* What is wrong with the regions, or NULL. */
static const char *check_regions(struct client *c, char *why, size_t whylen)
{
	for (size_t i = 0; i < c->nregions; i++) {
		const struct region *r = &c->regions[i];

		if (!kernel_page_size(r->psz))
			snprintf(why, whylen, "region %zu: page size %llu is not one this kernel has "
				 "memory in (%zu, or a huge page size with pages in "
				 "/sys/kernel/mm/hugepages)", i, (unsigned long long)r->psz, image.ps);
		else if (!r->size || r->base % r->psz || r->size % r->psz || r->offset % image.ps)
			snprintf(why, whylen, "region %zu: empty or not aligned to its page size", i);
		else if (r->base + r->size < r->base || r->base + r->size > (1ull << 57))
			snprintf(why, whylen, "region %zu: past the end of the address space", i);
		else if (r->offset > image.len || r->size > image.len - r->offset)
			snprintf(why, whylen, "region %zu: [%llu, +%llu) is past the end of the "
				 "memory file (%llu bytes)", i, (unsigned long long)r->offset,
				 (unsigned long long)r->size, (unsigned long long)image.len);
		else
			continue;
		return why;
	}
	client_sort_regions(c);
	for (size_t i = 1; i < c->nregions; i++)
		if (c->regions[i].base < c->regions[i - 1].base + c->regions[i - 1].size) {
			snprintf(why, whylen, "regions overlap");
			return why;
		}
	return NULL;
}

/* What kind of descriptor fd is, for the log: "userfaultfd", "guest_memfd",
 * "memfd" or "other". */
static const char *fd_kind(int fd)
{
	char path[64], target[128];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = '\0';
	if (!strcmp(target, "anon_inode:[userfaultfd]"))
		return "userfaultfd";
	if (strstr(target, "kvm-gmem"))
		return "guest_memfd";
	if (!strncmp(target, "/memfd:", 7))
		return "memfd";
	return "other";
}

/*
 * Reads the one message: JSON, with exactly one descriptor, a userfaultfd.
 * A stream socket may deliver it in pieces; the descriptor comes with the
 * first. 0, or -1 with the reason logged.
 */
int client_handshake(struct client *c, long read_timeout)
{
	char *buf = malloc(HS_MAX), why[160];
	struct json_region *jr = calloc(JSON_MAX_REGIONS, sizeof(*jr));
	struct json_reader rd;
	size_t len = 0;
	bool extra = false; /* more than one descriptor came */
	char kinds[96] = ""; /* of the first few, for the log */
	int nfds = 0;
	int n = -EAGAIN;
	time_t deadline = time(NULL) + read_timeout;

	if (!buf || !jr) {
		LOG(LOG_ERR, "%s: out of memory", c->name);
		goto bad;
	}
	json_reader_init(&rd);
	while (n == -EAGAIN) {
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(8 * sizeof(int))];
		} ctl;
		struct iovec iov = { buf + len, HS_MAX - len };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
				     .msg_controllen = sizeof(ctl) };
		struct pollfd pf = { .fd = c->sock, .events = POLLIN };
		ssize_t got;
		int left = (int)(deadline - time(NULL));

		if (left <= 0 || poll(&pf, 1, left * 1000) == 0) {
			LOG(LOG_WARN, "%s: no handshake within %lds: closed", c->name,
			    read_timeout);
			goto bad;
		}
		got = recvmsg(c->sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (got < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		for (struct cmsghdr *cm = got >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; cm;
		     cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t k = 0; k < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++) {
				int fd;

				memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
				if (nfds++ < 4)
					snprintf(kinds + strlen(kinds), sizeof(kinds) - strlen(kinds),
						 "%s%s", nfds > 1 ? ", " : "", fd_kind(fd));
				if (c->uffd < 0 && !extra)
					c->uffd = fd;
				else
					close(fd), extra = true;
			}
		}
		if (got <= 0) {
			LOG(LOG_WARN, "%s: %s before the handshake was complete", c->name,
			    got == 0 ? "closed" : strerror(errno));
			goto bad;
		}
		if (mh.msg_flags & MSG_CTRUNC) {
			LOG(LOG_WARN, "%s: too many descriptors sent: closed", c->name);
			goto bad;
		}
		len += (size_t)got;
		n = json_reader_feed(&rd, buf, len, jr, JSON_MAX_REGIONS, why, sizeof(why));
		if (n == -EAGAIN && len == HS_MAX) {
			LOG(LOG_WARN, "%s: handshake longer than %d bytes: closed", c->name, HS_MAX);
			goto bad;
		}
	}
	if (n < 0) {
		char shown[48];

		log_sanitize(shown, sizeof(shown), buf, len);
		LOG(LOG_WARN, "%s: bad region list (%s; starts \"%s\"): closed", c->name, why, shown);
		goto bad;
	}
	if (c->uffd < 0 || extra) {
		/* Firecracker's guest_memfd restore (Secret Freedom) sends the
		 * guest_memfd and a bitmap memfd too, and wants minor faults
		 * resolved with UFFDIO_CONTINUE: not a protocol upagerd speaks. */
		LOG(LOG_WARN, "%s: %s (%d: %s%s): closed", c->name,
		    extra ? "more than one descriptor came with the regions, upagerd takes a "
			    "userfaultfd alone" : "no userfaultfd came with the regions",
		    nfds, nfds ? kinds : "none", nfds > 4 ? ", ..." : "");
		goto bad;
	}
	if (!is_uffd(c->uffd) || uffd_features(c->uffd, &c->features) < 0) {
		LOG(LOG_WARN, "%s: the descriptor sent is not a userfaultfd: closed", c->name);
		goto bad;
	}
	c->regions = calloc((size_t)n, sizeof(*c->regions));
	if (!c->regions)
		goto bad;
	c->nregions = (size_t)n;
	for (int i = 0; i < n; i++)
		c->regions[i] = (struct region){ jr[i].base, jr[i].size, jr[i].offset, jr[i].page_size,
					   NULL, 0 };
	if (check_regions(c, why, sizeof(why)) || check_can_fail(c, why, sizeof(why))) {
		LOG(LOG_WARN, "%s: %s: closed", c->name, why);
		goto bad;
	}
	/* The description is shared with the client, which does not read it. */
	if (fcntl(c->uffd, F_SETFL, fcntl(c->uffd, F_GETFL) | O_NONBLOCK) < 0)
		goto bad;
	free(buf);
	free(jr);
	return 0;
bad:
	free(buf);
	free(jr);
	return -1;
}

const char *client_adopt_check(struct client *c, char *why, size_t whylen)
{
	if (!is_uffd(c->uffd) || uffd_features(c->uffd, &c->features) < 0) {
		snprintf(why, whylen, "the descriptor held for it is not a userfaultfd");
		return why;
	}
	if (check_regions(c, why, whylen) || check_can_fail(c, why, whylen))
		return why;
	if (fcntl(c->uffd, F_SETFL, fcntl(c->uffd, F_GETFL) | O_NONBLOCK) < 0) {
		snprintf(why, whylen, "its userfaultfd: %s", strerror(errno));
		return why;
	}
	return NULL;
}

/* ---- the client process ---- */

/*
 * The client process as a pidfd, for signals: the socket's own (SO_PEERPIDFD,
 * Linux 6.5), else one opened on its pid now (racing only with the client
 * exiting between connect and accept and its pid being reused). A pid of 0
 * is a client in a pid namespace upagerd cannot see: -1.
 */
int client_pidfd(int sock, pid_t pid)
{
	socklen_t len = sizeof(int);
	int fd = -1;

	if (getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &fd, &len) < 0 || fd < 0)
		fd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
	if (fd >= 0)
		fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}

