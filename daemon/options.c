/* SPDX-License-Identifier: MIT */
/*
 * One table describes every setting: its flag, its config-file key (the
 * same name), bounds and default. A bad flag or line stops the daemon
 * before it serves anything, naming the flag or file:line.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "options.h"

enum kind { K_STR, K_LONG, K_FLAG, K_LEVEL, K_LISTEN, K_MODE };

#define S MODE_SERVE
#define H MODE_HANDLE
#define B (MODE_SERVE | MODE_HANDLE)
#define SZ(field) sizeof(((struct options *)0)->field)

static const struct setting {
	const char *name;
	int modes; /* the commands that take it */
	enum kind kind;
	size_t off, size;
	long min, max, def;
	const char *help;
} settings[] = {
	{ "root", S, K_STR, offsetof(struct options, root), SZ(root), 0, 0, 0,
	  "DIR       serve the files below DIR (required; nothing outside it is reachable)" },
	{ "socket", H, K_STR, offsetof(struct options, socket), SZ(socket),
	  0, 0, 0, "PATH    the Unix socket VM monitors connect to (required, unless\n"
	  "                        systemd passes it: LISTEN_FDS)" },
	{ "mem-file", H, K_STR, offsetof(struct options, mem_file),
	  SZ(mem_file), 0, 0, 0,
	  "PATH  serve faults from PATH: a raw memory file, or a upager snapshot\n"
	  "                        (told apart by its first bytes; required). Or a URL,\n"
	  "                        http://, https:// or s3://BUCKET/KEY (AWS_* credentials),\n"
	  "                        read in chunks (UPAGER_CACHE_DIR: shared on-disk cache),\n"
	  "                        its version (ETag) pinned at start for every worker" },
	{ "url-deadline", H, K_LONG, offsetof(struct options, url_deadline), 0, 1, 3600, 30,
	  "S  a fault waits at most S seconds for a --mem-file URL's bytes,\n"
	  "                        retries included, then its access gets SIGBUS\n"
	  "                        (default 30)" },
	{ "url-memory", H, K_LONG, offsetof(struct options, url_memory), 0, 64, 4096, 256,
	  "MIB  a --mem-file URL's 4 MiB chunks held in memory at most: a\n"
	  "                        guest touching more than this at random fetches\n"
	  "                        chunks again (default 256; UPAGER_CACHE_DIR keeps\n"
	  "                        them on disk too)" },
	{ "listen", S, K_LISTEN, 0, 0, 0, 0, 0,
	  "ADDR    unix:/path or tcp:HOST:PORT; repeatable, up to 8\n"
	  "                        (default unix:/run/upagerd.sock; ignored when\n"
	  "                        systemd passes sockets: LISTEN_FDS)" },
	{ "socket-mode", B, K_MODE, offsetof(struct options, socket_mode), 0, 0, 0777, 0660,
	  "MODE the Unix sockets upagerd creates get MODE, in octal, whatever\n"
	  "                        the umask (default 0660: owner and group)" },
	{ "allow-remote", S, K_FLAG, offsetof(struct options, allow_remote), 0, 0, 1, 0,
	  "        let tcp: listen on addresses other than loopback" },
	{ "max-clients", B, K_LONG, offsetof(struct options, max_clients), 0, 1, 65536, 256,
	  "N   clients at once (default 256)" },
	{ "idle-timeout", S, K_LONG, offsetof(struct options, idle_timeout), 0, 1, 86400, 300,
	  "S  close a client silent for S seconds (default 300)" },
	{ "send-timeout", S, K_LONG, offsetof(struct options, send_timeout), 0, 1, 86400, 60,
	  "S  close a client that takes none of its queued replies for S seconds\n"
	  "                        (default 60)" },
	{ "queue-limit", S, K_LONG, offsetof(struct options, queue_limit), 0, 1, 65536, 256,
	  "MIB reply bytes queued for all clients at once: past it, clients that\n"
	  "                        hold replies send no more READs until they drain\n"
	  "                        (default 256)" },
	{ "read-timeout", B, K_LONG, offsetof(struct options, read_timeout), 0, 1, 3600, 10,
	  "S  close a client whose frame (handle: handshake) takes longer than S\n"
	  "                        seconds (default 10)" },
	{ "spin-us", H, K_LONG, offsetof(struct options, spin_us), 0, 0, 1000000, 0,
	  "US      after serving a fault, poll the client's userfaultfd for US more\n"
	  "                        microseconds before sleeping: a fault that comes\n"
	  "                        meanwhile costs no wakeup, at the price of a busy\n"
	  "                        CPU per busy client (default 0: never spin)" },
	{ "no-supervisor", H, K_FLAG, offsetof(struct options, no_supervisor), 0, 0, 1, 0,
	  "       run as one process: a crash or restart of upagerd then strands\n"
	  "                        its clients' faults. By default a small supervisor\n"
	  "                        holds every client's descriptors and state, restarts\n"
	  "                        the worker that serves them when it dies (SIGHUP:\n"
	  "                        re-executes it, for upgrades) and hands them over:\n"
	  "                        clients see a pause. Under systemd (NOTIFY_SOCKET)\n"
	  "                        there is none" },
	{ "metrics", B, K_STR, offsetof(struct options, metrics), SZ(metrics), 0, 0, 0,
	  "ADDR   serve counters in the Prometheus text format at\n"
	  "                        http://ADDR/metrics: PORT (127.0.0.1:PORT) or\n"
	  "                        HOST:PORT, loopback only (serve: unless\n"
	  "                        --allow-remote). Off by default" },
	{ "stats-interval", S, K_LONG, offsetof(struct options, stats_interval), 0, 0, 86400, 0,
	  "S log a stats line every S seconds (default 0: only on SIGUSR1)" },
	{ "ready-fd", B, K_LONG, offsetof(struct options, ready_fd), 0, -1, 65535, -1,
	  "FD      write \"ready\" to FD once listening (for supervisors and tests)" },
	{ "secret-file", S, K_STR, offsetof(struct options, secret_file),
	  SZ(secret_file), 0, 0, 0,
	  "PATH  TCP clients, and Unix-socket clients that ask, must prove they\n"
	  "                        know the secret in PATH (challenge-response,\n"
	  "                        HMAC-SHA256; the server proves it too); read once\n"
	  "                        at start" },
	{ "secret-credential", S, K_STR, offsetof(struct options, secret_credential),
	  SZ(secret_credential), 0, 0, 0,
	  "NAME the same, from the systemd credential NAME\n"
	  "                        ($CREDENTIALS_DIRECTORY/NAME: LoadCredential=)" },
	{ "log-file", B, K_STR, offsetof(struct options, log_file),
	  SZ(log_file), 0, 0, 0,
	  "PATH    log here instead of stderr (reopened on SIGHUP)" },
	{ "log-level", B, K_LEVEL, offsetof(struct options, log_level), 0, 0, 3, LOG_INFO,
	  "L      error, warn, info (default) or debug" },
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

void options_usage(FILE *f)
{
	fprintf(f, "usage: upagerd serve --root DIR [options]\n"
		   "       upagerd handle --socket PATH --mem-file PATH|URL [options]\n"
		   "       upagerd [serve | handle] --help\n"
		   "       upagerd --version\n\n"
		   "serve: serves read-only page ranges of the files below DIR to upager's\n"
		   "remote source (protocol: docs/PROTOCOL.md).\n"
		   "handle: resolves the page faults of processes that hand it their\n"
		   "userfaultfd and guest regions over PATH, as VM monitors do for snapshot\n"
		   "restore (Firecracker's UFFD handshake: docs/HANDLE.md).\n");
	for (int m = MODE_SERVE; m <= MODE_HANDLE; m <<= 1) {
		fprintf(f, "\n%s options (also as \"name = value\" lines in --config FILE):\n",
			m == MODE_SERVE ? "serve" : "handle");
		for (size_t i = 0; i < NSETTINGS; i++) {
			/* help is "ARG   text": aligned here, not by hand */
			const char *h = settings[i].help, *text = h + strcspn(h, " ");
			char flag[48];

			if (!(settings[i].modes & m))
				continue;
			snprintf(flag, sizeof(flag), "--%s %.*s", settings[i].name,
				 (int)(text - h), h);
			fprintf(f, "  %-21s %s\n", flag, text + strspn(text, " "));
		}
		fprintf(f, "  %-21s %s\n", "--config PATH",
			"read settings from PATH; flags after it override it");
	}
	fprintf(f, "\nUnder systemd: Type=notify (READY=1, STATUS=, STOPPING=1, WATCHDOG=1),\n"
		   "socket activation (LISTEN_FDS) and credentials (--secret-credential);\n"
		   "see upagerd(8). This build: %s.\n",
#ifdef HAVE_LIBSYSTEMD
		   "with libsystemd"
#else
		   "without libsystemd (no notifications, passed sockets refused)"
#endif
	);
	fprintf(f, "\nsignals: SIGTERM/SIGINT: serve drains requests in flight and exits 0;\n"
		   "handle stops accepting, serves its clients until they leave, then exits 0\n"
		   "(a second signal exits at once). SIGHUP reopens the log file (handle with\n"
		   "its supervisor: and re-executes the worker, handing its clients over);\n"
		   "SIGUSR1 logs a stats line.\n");
}

static int apply(struct options *o, const struct setting *s, const char *val, const char *where)
{
	char *end;
	long v;

	switch (s->kind) {
	case K_FLAG:
		if (val && strcmp(val, "yes") && strcmp(val, "true") && strcmp(val, "1")) {
			if (strcmp(val, "no") && strcmp(val, "false") && strcmp(val, "0"))
				goto bad;
			*(bool *)((char *)o + s->off) = false;
			return 0;
		}
		*(bool *)((char *)o + s->off) = true;
		return 0;
	case K_STR:
		if (!val || !*val || strlen(val) >= s->size)
			goto bad;
		strcpy((char *)o + s->off, val);
		return 0;
	case K_LISTEN:
		if (!val || (strncmp(val, "unix:", 5) && strncmp(val, "tcp:", 4)) ||
		    strlen(val) >= sizeof(o->listen[0]))
			goto bad;
		if (o->nlisten == MAX_LISTEN) {
			fprintf(stderr, "upagerd: %s: at most %d listen addresses\n", where, MAX_LISTEN);
			return 1;
		}
		strcpy(o->listen[o->nlisten++], val);
		return 0;
	case K_LEVEL:
		for (int l = 0; l < 4; l++)
			if (val && !strcmp(val, (const char *[]){ "error", "warn", "info", "debug" }[l])) {
				*(int *)((char *)o + s->off) = l;
				return 0;
			}
		goto bad;
	case K_LONG:
	case K_MODE:
		if (!val || !*val)
			goto bad;
		errno = 0;
		v = strtol(val, &end, s->kind == K_MODE ? 8 : 10);
		if (errno || *end || v < s->min || v > s->max)
			goto bad;
		*(long *)((char *)o + s->off) = v;
		return 0;
	}
bad:
	fprintf(stderr, "upagerd: %s: bad value for %s: '%s'\n", where, s->name, val ? val : "");
	return 1;
}

static const struct setting *find(const char *name, int mode)
{
	for (size_t i = 0; i < NSETTINGS; i++)
		if (!strcmp(settings[i].name, name) && (settings[i].modes & mode))
			return &settings[i];
	return NULL;
}

static int read_config(struct options *o, const char *path)
{
	char line[8192], where[4200];
	FILE *f = fopen(path, "r");
	int lineno = 0, ret = 0;

	if (!f) {
		fprintf(stderr, "upagerd: cannot read config %s: %s\n", path, strerror(errno));
		return 1;
	}
	while (!ret && fgets(line, sizeof(line), f)) {
		char *k = line, *v, *e;
		const struct setting *s;

		lineno++;
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		if (!strchr(line, '\n') && !feof(f)) {
			fprintf(stderr, "upagerd: %s: line too long\n", where);
			ret = 1;
			break;
		}
		k += strspn(k, " \t");
		if (*k == '#' || *k == '\n' || *k == '\0')
			continue;
		v = strchr(k, '=');
		if (!v) {
			fprintf(stderr, "upagerd: %s: expected 'name = value'\n", where);
			ret = 1;
			break;
		}
		for (e = v; e > k && (e[-1] == ' ' || e[-1] == '\t'); e--)
			;
		*e = '\0';
		v++;
		v += strspn(v, " \t");
		for (e = v + strlen(v); e > v && strchr(" \t\r\n", e[-1]); e--)
			;
		*e = '\0';
		s = find(k, o->mode);
		if (!s) {
			fprintf(stderr, "upagerd: %s: unknown setting '%s' for upagerd %s\n", where, k,
				o->mode == MODE_SERVE ? "serve" : "handle");
			ret = 1;
			break;
		}
		ret = apply(o, s, v, where);
	}
	fclose(f);
	return ret;
}

int options_parse(struct options *o, int mode, int argc, char **argv)
{
	struct option lo[NSETTINGS + 3];
	size_t nlo = 0;
	int c, idx;

	memset(o, 0, sizeof(*o));
	o->mode = mode;
	for (size_t i = 0; i < NSETTINGS; i++) {
		if (settings[i].kind == K_LONG || settings[i].kind == K_MODE)
			*(long *)((char *)o + settings[i].off) = settings[i].def;
		if (settings[i].kind == K_LEVEL)
			*(int *)((char *)o + settings[i].off) = (int)settings[i].def;
		if (!(settings[i].modes & mode))
			continue; /* not a flag of this command */
		lo[nlo++] = (struct option){ settings[i].name,
					     settings[i].kind == K_FLAG ? optional_argument
									: required_argument,
					     NULL, (int)(1000 + i) };
	}
	lo[nlo++] = (struct option){ "config", required_argument, NULL, 'c' };
	lo[nlo++] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[nlo] = (struct option){ 0, 0, 0, 0 };
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, &idx)) != -1) {
		char where[64];

		if (c == 'c') {
			if (read_config(o, optarg))
				return 1;
			continue;
		}
		if (c == 'h') {
			options_usage(stdout);
			return -1;
		}
		if (c < 1000) {
			options_usage(stderr);
			return 2;
		}
		snprintf(where, sizeof(where), "--%s", settings[c - 1000].name);
		if (apply(o, &settings[c - 1000], optarg, where))
			return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "upagerd: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (mode == MODE_SERVE && !o->root[0]) {
		fprintf(stderr, "upagerd: --root is required\n");
		return 2;
	}
	/* A socket systemd passes stands for --socket (checked when it is taken). */
	if (mode == MODE_HANDLE && ((!o->socket[0] && !getenv("LISTEN_FDS")) || !o->mem_file[0])) {
		fprintf(stderr, "upagerd: handle needs --socket (or a socket passed by systemd) "
				"and --mem-file\n");
		return 2;
	}
	if (o->secret_file[0] && o->secret_credential[0]) {
		fprintf(stderr, "upagerd: --secret-file and --secret-credential: one or the other\n");
		return 2;
	}
	if (mode == MODE_SERVE && o->nlisten == 0) {
		strcpy(o->listen[o->nlisten++], "unix:/run/upagerd.sock");
		o->listen_default = true;
	}
	return 0;
}
