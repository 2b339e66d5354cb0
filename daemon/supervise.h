/* SPDX-License-Identifier: MIT */
/*
 * upagerd handle's supervisor (supervise.c) and the channel it speaks with
 * its worker: fixed-size messages on a SOCK_SEQPACKET socketpair, each with
 * up to CHAN_MAX_FDS descriptors (SCM_RIGHTS). The supervisor reads nothing
 * but these messages: no byte of a client reaches it.
 */
#ifndef UPAGERD_SUPERVISE_H
#define UPAGERD_SUPERVISE_H

#include <stdint.h>

#include "options.h"

/* The worker's end of the channel, as a number in its environment. */
#define WORKER_ENV "UPAGERD_WORKER_CHANNEL"

enum chan_type {
	/* supervisor to worker, at its start: */
	CHAN_START = 1, /* fds: the listening socket, the memory file */
	CHAN_ADOPT,	/* id; fds: socket, uffd, state memfd[, pidfd] */
	CHAN_GO,	/* id: the first id this worker may give a new client */
	/* worker to supervisor: */
	CHAN_HOLD,	/* id; fds as CHAN_ADOPT: a client to hold from now on */
	CHAN_DROP,	/* id: its session is over, close what is held */
	CHAN_READY,	/* listening, every held client adopted */
};

#define CHAN_MAX_FDS 4

struct chan_msg {
	uint32_t type, nfds;
	uint64_t id;
};

/* 0, or -errno. */
int chan_send(int ch, uint32_t type, uint64_t id, const int *fds, uint32_t nfds);
/* 1: a message (its descriptors in fds, CLOEXEC; m->nfds of them), 0: the
 * other end closed, -errno (-EAGAIN on a non-blocking channel). A message
 * of the wrong size has its descriptors closed and is -EBADMSG. */
int chan_recv(int ch, struct chan_msg *m, int fds[CHAN_MAX_FDS], int flags);

/* upagerd handle's default: holds the listener, the memory file and every
 * client's descriptors, and runs the worker (this binary again, re-executed)
 * until told to stop. memfd: the memory file already opened (a URL's pinned
 * version), or -1: --mem-file is opened here. The exit status. */
int supervise_run(const struct options *o, char **argv, int lfd, bool passed, int memfd);

#endif
