/* SPDX-License-Identifier: MIT */
/* upagerd's log: one line per event, with a level, to stderr or a file
 * (reopened on SIGHUP). Client-supplied text is sanitised before it is
 * written, so a log line can always be trusted to be one line. */
#ifndef UPAGERD_LOG_H
#define UPAGERD_LOG_H

#include <stddef.h>

enum { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

extern int log_level;

/* Opens /dev/null on whichever of descriptors 0-2 are closed, and notes
 * whether stderr is journald's (JOURNAL_STREAM): first thing at start.
 * Lines to journald's stderr start with their priority, "<3>" to "<7>". */
void log_std_fds(void);
/* NULL: stderr. 0 or -errno: -ELOOP for a symlink, -EINVAL for anything but
 * a regular file; the log in use stays as it was. */
int log_open(const char *path);
/* log_open again on the same path (SIGHUP), saying in the log how it went. */
int log_reopen(void);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copies at most outlen-1 bytes of in, replacing non-printable bytes by '.'. */
void log_sanitize(char *out, size_t outlen, const void *in, size_t inlen);

#define LOG(level, ...)                             \
	do {                                        \
		if ((level) <= log_level)           \
			log_msg((level), __VA_ARGS__); \
	} while (0)

#endif
