/* SPDX-License-Identifier: MIT */
/*
 * upagerd as a systemd service, for serve and handle alike: readiness,
 * status and stopping (sd_notify), the watchdog, and the listening sockets
 * socket activation passes (LISTEN_FDS). Built without libsystemd, the
 * notifications are off (said once in the log when NOTIFY_SOCKET is set)
 * and passed sockets are refused.
 */
#ifndef UPAGERD_SERVICE_H
#define UPAGERD_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reads NOTIFY_SOCKET and the watchdog (WATCHDOG_USEC, WATCHDOG_PID): call
 * once the log is set up. */
void service_init(void);
/* READY=1, with a first STATUS= line naming what it listens on. */
void service_ready(const char *listening, unsigned long clients);
/* STOPPING=1 with why in STATUS=. */
void service_stopping(const char *why);
/*
 * Call from the event loop, at least as often as it says:
 * pings the watchdog at half its interval, and sends STATUS= with the
 * client count when it changed, at most once a second. The milliseconds
 * until it wants to run again (at most 1000), or -1: no notifications.
 */
int service_tick(unsigned long clients);
/* Half of WATCHDOG_USEC in ms (how often to ping), or 0: no watchdog. */
uint64_t service_watchdog_ms(void);

#define SERVICE_MAX_FDS 8

struct passed_socket {
	int fd;
	char name[300]; /* unix:/path or tcp:HOST:PORT, as --listen spells it */
};

/*
 * The listening sockets systemd passed to this process (LISTEN_FDS,
 * LISTEN_PID, LISTEN_FDNAMES), each checked to be a listening stream
 * socket of AF_UNIX (or also AF_INET/AF_INET6 when tcp_ok; a non-loopback
 * one only when allow_remote). The number passed (0: none), or -1 said on
 * stderr: a socket of the wrong kind, more than max, or built without
 * libsystemd.
 */
int service_listen_fds(struct passed_socket *out, int max, bool tcp_ok, bool allow_remote);

/*
 * systemd's file-descriptor store, where upagerd handle keeps what a client's
 * service needs across its own restart (docs/HANDLE.md, "Failover"): each
 * descriptor under a name starting "upagerd-" (FDSTORE=1, FDNAME=). Those
 * systemd passes back (LISTEN_FDS, with their names) are set aside by
 * service_listen_fds and found with service_stored_fds.
 */
bool service_can_store(void); /* NOTIFY_SOCKET set, built with libsystemd */
int service_store(const char *name, int fd); /* 0, or -errno */
void service_unstore(const char *name); /* FDSTOREREMOVE=1 */
int service_stored_fds(const int **fds, char *const **names);

#endif
