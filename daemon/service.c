/* SPDX-License-Identifier: MIT */
/*
 * upagerd under systemd (man/upagerd.8, SYSTEMD): sd_notify's READY=1,
 * STATUS=, STOPPING=1 and WATCHDOG=1, and the sockets of socket
 * activation. Everything goes through libsystemd, which knows the
 * protocol's corners (abstract and vsock notify sockets, WATCHDOG_PID,
 * LISTEN_PID, the names); built without it, NOTIFY_SOCKET is ignored with
 * a warning and passed sockets are refused, so that a unit that needs them
 * fails at once and says why instead of timing out.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "listen.h"
#include "log.h"
#include "service.h"

#define STATUS_EVERY_MS 1000 /* STATUS= at most this often: clients may come and go in bursts */

static struct {
	bool notify;          /* NOTIFY_SOCKET set, and built with libsystemd */
	bool failed_logged;
	uint64_t watchdog_ms; /* half of WATCHDOG_USEC; 0: no watchdog */
	uint64_t next_ping;   /* CLOCK_MONOTONIC, ms */
	uint64_t status_at;   /* when STATUS= was last sent */
	unsigned long clients; /* as last sent */
	char listening[256];   /* said again with each count */
} svc;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void notify(const char *msg)
{
#ifdef HAVE_LIBSYSTEMD
	int ret;

	if (!svc.notify)
		return;
	ret = sd_notify(0, msg);
	if (ret < 0 && !svc.failed_logged) {
		LOG(LOG_WARN, "sd_notify: %s (no more of these logged)", strerror(-ret));
		svc.failed_logged = true;
	}
#else
	(void)msg;
#endif
}

void service_init(void)
{
	if (!getenv("NOTIFY_SOCKET"))
		return;
#ifdef HAVE_LIBSYSTEMD
	uint64_t usec = 0;

	svc.notify = true;
	/* 0 unless WATCHDOG_PID, when set, is this process. */
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		svc.watchdog_ms = usec / 2000 ? usec / 2000 : 1;
		LOG(LOG_DEBUG, "systemd watchdog: pinging every %llu ms",
		    (unsigned long long)svc.watchdog_ms);
	}
#else
	LOG(LOG_WARN, "NOTIFY_SOCKET is set, but upagerd was built without libsystemd: no "
		      "READY=1, STATUS= or WATCHDOG=1 is sent (use Type=simple units)");
#endif
}

void service_ready(const char *listening, unsigned long clients)
{
	char msg[512];

	if (!svc.notify)
		return;
	snprintf(svc.listening, sizeof(svc.listening), "%s", listening);
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=listening on %s; %lu clients", listening,
		 clients);
	notify(msg);
	svc.clients = clients;
	svc.status_at = svc.next_ping = now_ms();
}

void service_stopping(const char *why)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=%s", why);
	notify(msg);
}

int service_tick(unsigned long clients)
{
	uint64_t now, wait = UINT64_MAX;

	if (!svc.notify)
		return -1;
	now = now_ms();
	if (svc.watchdog_ms) {
		if (now >= svc.next_ping) {
			notify("WATCHDOG=1");
			svc.next_ping = now + svc.watchdog_ms;
		}
		wait = svc.next_ping - now;
	}
	if (clients != svc.clients) {
		if (now >= svc.status_at + STATUS_EVERY_MS) {
			char msg[320];

			snprintf(msg, sizeof(msg), "STATUS=%lu clients; listening on %s", clients,
				 svc.listening);
			notify(msg);
			svc.clients = clients;
			svc.status_at = now;
		} else if (svc.status_at + STATUS_EVERY_MS - now < wait) {
			wait = svc.status_at + STATUS_EVERY_MS - now;
		}
	}
	/* At least once a second: a loop that is not woken when clients come
	 * and go (handle's threads) still reports them. */
	return wait > STATUS_EVERY_MS ? STATUS_EVERY_MS : (int)wait;
}

uint64_t service_watchdog_ms(void)
{
	return svc.watchdog_ms;
}

/* Descriptors upagerd put in the FD store (their names start so), given
 * back among LISTEN_FDS after a restart: not listeners. */
#define STORED_PREFIX "upagerd-"

static struct {
	int *fds;
	char **names;
	int n;
} stored;

static bool take_stored(int fd, const char *name)
{
	int *f;
	char **nm, *copy;

	if (strncmp(name, STORED_PREFIX, strlen(STORED_PREFIX)))
		return false;
	f = realloc(stored.fds, (size_t)(stored.n + 1) * sizeof(*f));
	if (f)
		stored.fds = f;
	nm = f ? realloc(stored.names, (size_t)(stored.n + 1) * sizeof(*nm)) : NULL;
	if (nm)
		stored.names = nm;
	copy = nm ? strdup(name) : NULL;
	if (!copy) {
		close(fd); /* out of memory at start: that client is lost, said below */
		fprintf(stderr, "upagerd: out of memory taking back %s from the FD store\n", name);
		return true;
	}
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	stored.fds[stored.n] = fd;
	stored.names[stored.n++] = copy;
	return true;
}

int service_stored_fds(const int **fds, char *const **names)
{
	*fds = stored.fds;
	*names = stored.names;
	return stored.n;
}

bool service_can_store(void)
{
	return svc.notify;
}

int service_store(const char *name, int fd)
{
#ifdef HAVE_LIBSYSTEMD
	char msg[300];
	int ret;

	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	ret = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
	return ret > 0 ? 0 : ret < 0 ? ret : -ENOSYS;
#else
	(void)name;
	(void)fd;
	return -ENOSYS;
#endif
}

void service_unstore(const char *name)
{
	char msg[300];

	snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	notify(msg);
}

int service_listen_fds(struct passed_socket *out, int max, bool tcp_ok, bool allow_remote)
{
#ifdef HAVE_LIBSYSTEMD
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names), ret = 0;

	if (n < 0) {
		fprintf(stderr, "upagerd: the sockets passed by systemd (LISTEN_FDS): %s\n",
			strerror(-n));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *fdname = names && names[i] ? names[i] : "unknown";
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		if (take_stored(fd, fdname))
			continue;
		if (ret < 0)
			continue;
		if (ret == max) {
			fprintf(stderr, "upagerd: systemd passed more than the %d sockets upagerd %s "
					"takes: refused\n", max, tcp_ok ? "serve" : "handle");
			ret = -1;
			continue;
		}
		if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0 ||
		    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
		    (ss.ss_family != AF_UNIX &&
		     (!tcp_ok || (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)))) {
			fprintf(stderr, "upagerd: socket %d passed by systemd (%s) is not a listening "
					"%s stream socket: refused\n", fd, fdname,
				tcp_ok ? "Unix or TCP" : "Unix");
			ret = -1;
			continue;
		}
		out[ret].fd = fd;
		listen_name(fd, out[ret].name, sizeof(out[ret].name));
		if (ss.ss_family != AF_UNIX && !allow_remote &&
		    !listen_is_loopback((struct sockaddr *)&ss)) {
			fprintf(stderr, "upagerd: socket %d passed by systemd (%s) listens on %s, not "
					"a loopback address: pass --allow-remote to serve other "
					"machines\n", fd, fdname, out[ret].name);
			ret = -1;
			continue;
		}
		ret++;
	}
	for (int i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
	return ret;
#else
	const char *pid = getenv("LISTEN_PID");

	(void)out;
	(void)max;
	(void)tcp_ok;
	(void)allow_remote;
	if (getenv("LISTEN_FDS") && pid && strtol(pid, NULL, 10) == (long)getpid()) {
		fprintf(stderr, "upagerd: systemd passed sockets (LISTEN_FDS), but upagerd was built "
				"without libsystemd: refused\n");
		return -1;
	}
	return 0;
#endif
}
