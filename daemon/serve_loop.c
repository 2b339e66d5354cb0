/* SPDX-License-Identifier: MIT */
/*
 * upagerd's page server: one thread, one io_uring. This file owns the ring
 * and its loop: start-up (the secret, the jail, the listeners, the signalfd,
 * the snapshot loader), handing each completion to its owner by the kind
 * tagged in its user data, the one-second tick that judges clients'
 * timeouts and lets unused snapshot maps go, the signals (SIGTERM/SIGINT
 * drain, SIGHUP reopens the log, SIGUSR1 logs the stats), the drain, and
 * the stats line.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "jail.h"
#include "listen.h"
#include "metrics.h"
#include "log.h"
#include "serve.h"
#include "server.h"
#include "service.h"
#include "uring.h"

#define DRAIN_SECONDS 10

struct server server;

/* The counters as one line, the same in a STATS reply and in the log. */
int server_stats_line(char *line, size_t cap)
{
	return snprintf(line, cap,
			"clients=%u accepted=%llu refused=%llu requests=%llu bytes_out=%llu "
			"errors=%llu protocol_errors=%llu",
			server.nclients, (unsigned long long)server.accepted,
			(unsigned long long)server.refused, (unsigned long long)server.requests,
			(unsigned long long)server.bytes_out,
			(unsigned long long)server.errors, (unsigned long long)server.proto_errors);
}

static void log_stats(void)
{
	char line[256];

	server_stats_line(line, sizeof(line));
	LOG(LOG_INFO, "stats: %s", line);
}

static void arm_timer(void)
{
	struct io_uring_sqe *sqe = upp_get_sqe(&server.ring);

	if (!sqe)
		return;
	io_uring_prep_timeout(sqe, &server.tick_interval, 0, 0);
	io_uring_sqe_set_data(sqe, op_tag(NULL, OP_TIMER));
}

void arm_map_loaded(void)
{
	struct io_uring_sqe *sqe = upp_get_sqe(&server.ring);

	if (!sqe)
		return;
	io_uring_prep_read(sqe, server.loaded_efd, &server.loaded_count,
			   sizeof(server.loaded_count), 0);
	io_uring_sqe_set_data(sqe, op_tag(NULL, OP_MAP_LOADED));
}

/* READs that waited past --queue-limit: tried again once bytes have gone. */
static void wake_waiting_reads(void)
{
	if (!server.read_waits || server.queued >= server.queued_at_wait)
		return;
	server.read_waits = false;
	for (struct client *c = server.clients, *next; c; c = next) {
		next = c->next;
		if (!c->closing && c->rlen) {
			parse_frames(c);
			post_recv(c);
		}
	}
}

static void arm_signal(void)
{
	struct io_uring_sqe *sqe = upp_get_sqe(&server.ring);

	if (!sqe)
		return;
	io_uring_prep_read(sqe, server.sigfd, &server.siginfo, sizeof(server.siginfo), 0);
	io_uring_sqe_set_data(sqe, op_tag(NULL, OP_SIGNAL));
}

static void start_drain(const char *why)
{
	if (server.draining)
		return;
	server.draining = true;
	server.drain_deadline = now_s() + DRAIN_SECONDS;
	LOG(LOG_INFO, "%s: draining requests in flight, then exiting", why);
	service_stopping("draining requests in flight, then exiting");
	for (int i = 0; i < server.nlisteners; i++) {
		close(server.listeners[i].fd); /* pending accepts complete with an error */
		server.listeners[i].fd = -1;
	}
}

/*
 * Runs after the other completions of its batch: a client is judged on its
 * own progress, which those may show. Nor is it blamed for time the loop
 * itself was held up (a tick late by that much): its clocks move on by it.
 */
static void on_timer(void)
{
	time_t now = now_s(), stall = server.last_tick ? now - server.last_tick - 1 : 0;

	server.last_tick = now;
	shared_trim(0);
	for (struct client *c = server.clients, *next; c; c = next) {
		next = c->next;
		if (c->closing)
			continue;
		if (stall > 0) {
			c->last_request += stall;
			c->send_progress += stall;
			if (c->frame_since)
				c->frame_since += stall;
		}
		if (c->frame_since && now - c->frame_since > server.opts->read_timeout)
			client_close(c, "frame not completed within the read timeout");
		else if (c->outq && now - c->send_progress > server.opts->send_timeout) {
			/* It does not read: its replies would hold memory for ever. */
			char why[96];

			snprintf(why, sizeof(why), "send timeout: none of %zu queued bytes taken in %ld s",
				 c->out_bytes, server.opts->send_timeout);
			client_close(c, why);
		} else if (!c->inflight && !c->outq && !c->loading && !c->rlen &&
			   now - c->last_request > server.opts->idle_timeout)
			client_close(c, "idle timeout");
	}
	if (server.opts->stats_interval && now >= server.next_stats) {
		log_stats();
		server.next_stats = now + server.opts->stats_interval;
	}
	arm_timer();
}

static void on_signal(void)
{
	switch (server.siginfo.ssi_signo) {
	case SIGTERM:
	case SIGINT:
		start_drain(server.siginfo.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
		break;
	case SIGHUP:
		log_reopen();
		break;
	case SIGUSR1:
		log_stats();
		break;
	}
	arm_signal();
}

/* Nothing left to send or read for anyone? */
static bool drained(void)
{
	for (struct client *c = server.clients; c; c = c->next)
		if (!c->closing && (c->inflight || c->outq || c->loading))
			return false;
	return true;
}

/* The secret of --secret-file, or of --secret-credential from the directory
 * systemd's LoadCredential= fills: 0, or 1 said on stderr. */
static int read_secret(const struct options *o)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char path[4400];
	mode_t mode;
	int ret;

	if (o->secret_credential[0]) {
		if (strchr(o->secret_credential, '/') || !strcmp(o->secret_credential, ".") ||
		    !strcmp(o->secret_credential, "..")) {
			fprintf(stderr, "upagerd: --secret-credential %s: a credential's name, not a "
					"path\n", o->secret_credential);
			return 1;
		}
		if (!dir || !*dir) {
			fprintf(stderr, "upagerd: --secret-credential %s: $CREDENTIALS_DIRECTORY is "
					"not set (LoadCredential=%s:PATH in the unit)\n",
				o->secret_credential, o->secret_credential);
			return 1;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, o->secret_credential);
	} else {
		snprintf(path, sizeof(path), "%s", o->secret_file);
	}
	ret = upp_read_secret(path, server.secret, sizeof(server.secret), &server.secret_len,
			      &mode);
	if (ret == -EINVAL) {
		fprintf(stderr, "upagerd: %s: the secret must be 1 to 4095 bytes\n", path);
		return 1;
	}
	if (ret < 0) {
		fprintf(stderr, "upagerd: cannot read secret %s: %s\n", path, strerror(-ret));
		return 1;
	}
	if (mode & 077)
		LOG(LOG_WARN, "secret file %s is readable by others (chmod 600 it)", path);
	return 0;
}

/* The sockets systemd passed, or else those of --listen: 0, or 1 said on stderr. */
static int open_listeners(const struct options *o)
{
	struct passed_socket passed[MAX_LISTEN];
	int n = service_listen_fds(passed, MAX_LISTEN, true, o->allow_remote), ret;

	if (n < 0)
		return 1;
	if (n > 0) {
		if (!o->listen_default)
			LOG(LOG_INFO, "--listen ignored: serving on the %d sockets systemd passed", n);
		for (int i = 0; i < n; i++) {
			server.listeners[i].fd = passed[i].fd;
			snprintf(server.listeners[i].name, sizeof(server.listeners[i].name), "%s",
				 passed[i].name);
		}
		server.nlisteners = n;
		server.listeners_passed = true;
		return 0;
	}
	for (int i = 0; i < o->nlisten; i++) {
		struct listener *l = &server.listeners[i];

		if (!strncmp(o->listen[i], "unix:", 5)) {
			ret = listen_unix(o->listen[i] + 5, (unsigned)o->socket_mode, &l->fd);
			snprintf(l->name, sizeof(l->name), "%s", o->listen[i]);
		} else {
			ret = listen_tcp(o->listen[i] + 4, o->allow_remote, &l->fd, l->name,
					 sizeof(l->name));
		}
		if (ret < 0)
			return 1;
		server.nlisteners++;
	}
	return 0;
}

int server_run(const struct options *o)
{
	char ready[MAX_LISTEN * 300 + 16] = "ready";
	uint64_t watchdog_ms;
	int ret;

	server.opts = o;
	server.queue_limit = (size_t)o->queue_limit << 20;
	server.page_size = (size_t)sysconf(_SC_PAGESIZE);
	server.tick_interval.tv_sec = 1;
	service_init();
	/* The tick is what wakes an idle loop: often enough for the watchdog. */
	watchdog_ms = service_watchdog_ms();
	if (watchdog_ms && watchdog_ms < 1000) {
		server.tick_interval.tv_sec = 0;
		server.tick_interval.tv_nsec = (long long)watchdog_ms * 1000000;
	}
	if ((o->secret_file[0] || o->secret_credential[0]) && read_secret(o))
		return 1;
	ret = jail_init(o->root);
	if (ret < 0) {
		fprintf(stderr, "upagerd: cannot open root %s: %s\n", o->root, strerror(-ret));
		return 1;
	}
	if (open_listeners(o))
		return 1;
	server.sigfd = signal_fd(); /* before the loader thread: it inherits the mask */
	if (o->metrics[0] && metrics_start(o->metrics, o->allow_remote, "serve", NULL) < 0)
		return 1;
	ret = io_uring_queue_init(1024, &server.ring, 0);
	if (server.sigfd < 0 || ret < 0) {
		fprintf(stderr, "upagerd: cannot set up io_uring: %s\n",
			strerror(ret < 0 ? -ret : errno));
		return 1;
	}
	server.loaded_efd = snapload_start();
	if (server.loaded_efd < 0) {
		fprintf(stderr, "upagerd: cannot start the snapshot loader: %s\n",
			strerror(-server.loaded_efd));
		return 1;
	}
	for (int i = 0; i < server.nlisteners; i++) {
		on_client_accept(&server.listeners[i], -EAGAIN); /* arms the first accept */
		LOG(LOG_INFO, "listening on %s, serving %s", server.listeners[i].name, o->root);
		strcat(ready, " ");
		strcat(ready, server.listeners[i].name);
	}
	arm_timer();
	arm_signal();
	arm_map_loaded();
	server.next_stats = now_s() + o->stats_interval;
	/* READY=1 and the --ready-fd line at the same moment: once listening. */
	service_ready(ready + 6, server.nclients);
	if (o->ready_fd >= 0) {
		strcat(ready, "\n");
		if (write((int)o->ready_fd, ready, strlen(ready)) < 0)
			LOG(LOG_WARN, "cannot write to --ready-fd: %s", strerror(errno));
		close((int)o->ready_fd);
	}

	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		bool tick = false;

		if (server.draining && (drained() || now_s() > server.drain_deadline))
			break;
		ret = io_uring_submit_and_wait(&server.ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
			LOG(LOG_ERR, "io_uring: %s", strerror(-ret));
			break;
		}
		io_uring_for_each_cqe(&server.ring, head, cqe) {
			uintptr_t d = (uintptr_t)io_uring_cqe_get_data(cqe);
			void *p = (void *)(d & ~(uintptr_t)7);

			switch (d & 7) {
			case OP_ACCEPT: on_client_accept(p, cqe->res); break;
			case OP_RECV: on_client_recv(p, cqe->res); break;
			case OP_SEND: on_client_send(p, cqe->res); break;
			case OP_READ: on_file_read(p, cqe->res); break;
			case OP_TIMER: tick = true; break;
			case OP_SIGNAL: on_signal(); break;
			case OP_MAP_LOADED: on_map_loaded(); break;
			}
			seen++;
		}
		io_uring_cq_advance(&server.ring, seen);
		wake_waiting_reads();
		if (tick)
			on_timer();
		service_tick(server.nclients);
	}
	log_stats();
	LOG(LOG_INFO, "exiting%s", drained() ? "" : " (drain deadline passed)");
	for (int i = 0; i < o->nlisten && !server.listeners_passed; i++)
		if (!strncmp(o->listen[i], "unix:", 5))
			unlink(o->listen[i] + 5);
	return 0;
}
