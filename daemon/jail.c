/* SPDX-License-Identifier: MIT */
/*
 * The page server's jail: every path a client names is opened below the
 * served root and never outside it. With openat2, RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS does it (EAGAIN retried); without it (before Linux
 * 5.6, a seccomp profile answering EPERM, or UPAGER_DISABLE=openat2) the
 * path is walked one name at a time with O_NOFOLLOW, refusing "..",
 * absolute paths and every symlink. Only regular files are opened for
 * reading; the directory of a snapshot (for its parents) is found the
 * same way.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "env.h"
#include "jail.h"
#include "log.h"
#include "protocol.h"
#include "snapfmt.h"

static struct {
	int root;          /* the served directory, O_PATH */
	bool have_openat2; /* else paths are walked one name at a time */
} jail = { -1, false };

static bool is_symlink_at(int dir, const char *name)
{
	struct stat st;

	return fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
}

/*
 * Whether openat2 can be used: tried once, at start, on the root itself.
 * ENOSYS: before Linux 5.6; EPERM: what seccomp profiles that do not know
 * it answer. A later EPERM is that file's answer (fanotify, FUSE, CIFS).
 */
static bool openat2_works(void)
{
	struct open_how how = { .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
				.resolve = RESOLVE_BENEATH };
	int fd = (int)syscall(SYS_openat2, jail.root, ".", &how, sizeof(how));

	if (fd >= 0) {
		close(fd);
		return true;
	}
	LOG(LOG_WARN, "openat2: %s: paths are resolved one name at a time, symlinks refused",
	    strerror(errno));
	return false;
}

/*
 * Opens path (NUL-terminated) below the root, never outside it, with flags:
 * a descriptor or -errno (-EACCES: it tried to leave the root; -ELOOP,
 * without openat2: a symlink, never followed).
 */
static int jail_openat(const char *path, int flags)
{
	char p[UPP_MAX_PATH + 1], *save = NULL, *comp;
	size_t len = strlen(path);
	int dir;

	if (jail.have_openat2) {
		struct open_how how = {
			/* (openat2 refuses O_PATH with other flags than these.) */
			.flags = (uint64_t)(flags | O_CLOEXEC | (flags & O_PATH ? 0 : O_NOCTTY)),
			.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
		};
		int fd = -1;

		/* EAGAIN: a rename elsewhere raced the lookup; try again. */
		for (int tries = 0; tries < 4 && fd < 0; tries++)
			if ((fd = (int)syscall(SYS_openat2, jail.root, path, &how,
					       sizeof(how))) < 0 &&
			    errno != EAGAIN)
				break;
		if (fd >= 0)
			return fd;
		return errno == EXDEV ? -EACCES : -errno;
	}
	/* Without openat2: no absolute paths, no "..", no symlinks at all. */
	if (path[0] == '/')
		return -EACCES;
	snprintf(p, sizeof(p), "%s", path);
	dir = fcntl(jail.root, F_DUPFD_CLOEXEC, 0);
	for (comp = strtok_r(p, "/", &save); comp && dir >= 0; comp = strtok_r(NULL, "/", &save)) {
		bool last = save == NULL || *save == '\0';
		int next;

		if (!strcmp(comp, ".."))
			next = -1, errno = EACCES;
		else
			/* "name/" is a directory or nothing, as openat2 has it. */
			next = openat(dir, comp,
				      (last ? flags | (path[len - 1] == '/' ? O_DIRECTORY : 0)
					    : O_PATH | O_DIRECTORY) |
					      O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
		/* O_NOFOLLOW | O_DIRECTORY on a symlink fails with ENOTDIR. */
		if (next < 0 && errno == ENOTDIR && !last && is_symlink_at(dir, comp))
			errno = ELOOP;
		close(dir);
		dir = next;
	}
	return dir < 0 ? -errno : dir;
}

static int jail_open_as(void *path, int flags)
{
	return jail_openat(path, flags);
}

/* Opens path (len bytes) below the root for reading: only a regular file. */
int jail_open(const char *path, uint16_t len, int *fdp, uint64_t *sizep)
{
	char p[UPP_MAX_PATH + 1];
	struct stat st;
	int fd;

	memcpy(p, path, len);
	p[len] = '\0';
	fd = upp_open_regular(jail_open_as, p);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -EINVAL;
	}
	*fdp = fd;
	*sizep = (uint64_t)st.st_size;
	return 0;
}

/* How much of path (len bytes) names its directory: up to its last '/'. */
static size_t dir_len(const char *path, size_t len)
{
	while (len && path[len - 1] == '/')
		len--;
	while (len && path[len - 1] != '/')
		len--;
	return len;
}

/*
 * The directory of the file path names below the root, its final symlinks
 * followed (where an incremental snapshot's parents are, as the library
 * finds them), opened the same way: parents are found beneath it, never
 * by a path walked again outside the jail.
 */
int jail_dir_of(const char *path, uint16_t len)
{
	char p[UPP_MAX_PATH + 1], target[UPP_MAX_PATH + 1];
	size_t n = len;

	memcpy(p, path, len);
	p[len] = '\0';
	/* Without openat2 no symlink was followed: the path is the file's. */
	for (int hops = 0; jail.have_openat2; hops++) {
		int fd = jail_openat(p, O_PATH | O_NOFOLLOW);
		ssize_t tlen;

		if (fd < 0)
			return fd;
		tlen = readlinkat(fd, "", target, sizeof(target));
		close(fd);
		if (tlen < 0 && (errno == ENOENT || errno == EINVAL))
			break; /* not a symlink */
		if (tlen < 0)
			return -errno;
		if (hops == 40)
			return -ELOOP;
		if (target[0] == '/')
			return -EACCES; /* openat2 followed none: the file was replaced */
		n = dir_len(p, strlen(p));
		if (n + (size_t)tlen > UPP_MAX_PATH)
			return -ENAMETOOLONG;
		memcpy(p + n, target, (size_t)tlen);
		p[n + (size_t)tlen] = '\0';
	}
	n = dir_len(p, strlen(p));
	if (n == 0) {
		int fd = fcntl(jail.root, F_DUPFD_CLOEXEC, 0);

		return fd < 0 ? -errno : fd;
	}
	p[n] = '\0';
	return jail_openat(p, O_PATH | O_DIRECTORY);
}

int jail_init(const char *root)
{
	jail.root = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (jail.root < 0)
		return -errno;
	jail.have_openat2 = !upp_env_disables("openat2") && openat2_works();
	return 0;
}

bool jail_has_openat2(void)
{
	return jail.have_openat2;
}
