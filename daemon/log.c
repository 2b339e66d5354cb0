/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

int log_level = LOG_INFO;
static int log_fd = 2;
static char log_path[4096];
static bool log_journal; /* stderr is journald's stream: lines carry a priority */

/*
 * systemd sets JOURNAL_STREAM to the device and inode of the stream it
 * connected stderr to; it is inherited, so it counts only while stderr is
 * still that very stream (not redirected by a script in between).
 */
static bool stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char end;

	return env && sscanf(env, "%llu:%llu%c", &dev, &ino, &end) == 2 && fstat(2, &st) == 0 &&
	       (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_std_fds(void)
{
	/* A descriptor 0-2 left closed would be taken by the next open (the
	 * log, a socket) and written to as stdout or stderr. */
	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
			break;
	log_journal = stderr_is_journal();
}

int log_open(const char *path)
{
	struct stat st;
	int fd;

	if (!path) {
		log_fd = 2;
		log_path[0] = '\0';
		return 0;
	}
	if (strlen(path) >= sizeof(log_path))
		return -ENAMETOOLONG;
	/* Not through a symlink, and only a regular file: a FIFO put there
	 * would block the open (O_NONBLOCK), or each line, of a daemon whose
	 * one thread serves everyone. */
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY,
		  0640);
	if (fd < 0)
		return errno == ENXIO ? -EINVAL : -errno; /* ENXIO: a FIFO nobody reads */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || fcntl(fd, F_SETFL, O_APPEND) < 0) {
		close(fd);
		return -EINVAL;
	}
	if (log_fd > 2) {
		/* Onto the old number in one step: other threads may be writing
		 * to it, and a number closed first could be reused meanwhile. */
		if (dup3(fd, log_fd, O_CLOEXEC) < 0) {
			int err = errno;

			close(fd);
			return -err;
		}
		close(fd);
	} else {
		log_fd = fd;
	}
	if (path != log_path) /* log_reopen passes our own copy */
		memmove(log_path, path, strlen(path) + 1);
	return 0;
}

int log_reopen(void)
{
	int ret = log_path[0] ? log_open(log_path) : 0;

	if (ret < 0)
		LOG(LOG_ERR, "SIGHUP: cannot reopen the log: %s; logging on to the old one",
		    ret == -ELOOP    ? "it is a symlink"
		    : ret == -EINVAL ? "not a regular file"
				     : strerror(-ret));
	else
		LOG(LOG_INFO, "SIGHUP: log reopened");
	return ret;
}

void log_msg(int level, const char *fmt, ...)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	/* sd-daemon.h's SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG: journald takes
	 * the line's priority from them (and strips them). */
	static const char *priorities[] = { "<3>", "<4>", "<6>", "<7>" };
	bool journal = log_journal && log_fd == 2;
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%s%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ upagerd[%d] %s: ",
		     journal ? priorities[level & 3] : "", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		     tm.tm_sec, ts.tv_nsec / 1000000, (int)getpid(), names[level & 3]);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(log_fd, line, (size_t)n) < 0) {
		/* Nowhere left to say it. */
	}
}

void log_sanitize(char *out, size_t outlen, const void *in, size_t inlen)
{
	const unsigned char *p = in;
	size_t i;

	for (i = 0; i < inlen && i + 1 < outlen; i++)
		out[i] = isprint(p[i]) ? (char)p[i] : '.';
	out[i] = '\0';
}
