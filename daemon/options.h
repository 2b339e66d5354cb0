/* SPDX-License-Identifier: MIT */
/* upagerd's configuration: flags, or the same names in a small file. */
#ifndef UPAGERD_OPTIONS_H
#define UPAGERD_OPTIONS_H

#include <stdbool.h>
#include <stdio.h>

#define MAX_LISTEN 8

enum { MODE_SERVE = 1, MODE_HANDLE = 2 };

struct options {
	int mode;
	char root[4096];
	char socket[108];    /* handle: the Unix socket clients hand their uffd to */
	char mem_file[4096]; /* handle: the memory file (raw image or upager snapshot) */
	char listen[MAX_LISTEN][256];
	int nlisten;
	bool listen_default; /* no --listen given: listen[0] is the default */
	long socket_mode;    /* of the Unix sockets upagerd creates */
	bool allow_remote;
	long max_clients;
	long idle_timeout;  /* seconds without a request: the client is closed */
	long read_timeout;  /* seconds a frame may take to arrive whole */
	long send_timeout;  /* seconds queued replies may wait with none taken */
	long queue_limit;   /* MiB of replies queued for all clients at once */
	long stats_interval; /* seconds between stats lines; 0: none */
	long spin_us;        /* handle: microseconds to poll the uffd after a fault */
	long url_deadline;   /* handle: seconds a fault waits for a URL's bytes */
	long url_memory;     /* handle: MiB of a URL's chunks held in memory */
	bool no_supervisor;  /* handle: one process, no failover */
	char metrics[300];   /* HOST:PORT or PORT of the Prometheus exporter; "": none */
	long ready_fd;       /* -1, or a descriptor to write "ready\n" to once listening */
	char log_file[4096];
	char secret_file[4096];
	char secret_credential[256]; /* a name in $CREDENTIALS_DIRECTORY */
	int log_level;
};

/* argv[0] is the command (serve or handle). 0; -1 after printing the usage
 * for --help (exit 0); or prints what is wrong to stderr and returns 2
 * (usage) or 1. */
int options_parse(struct options *o, int mode, int argc, char **argv);
void options_usage(FILE *f);

#endif
