/* SPDX-License-Identifier: MIT */
/* Opening a userfaultfd, negotiating features, and the range ioctls. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compat.h"
#include "env.h"
#include "upager-int.h"

static const struct {
	const char *name;
	uint64_t feat;   /* UPAGER_FEAT_* */
	uint64_t kernel; /* UFFD_FEATURE_* it stands for */
} feature_map[] = {
	{ "poison", UPAGER_FEAT_POISON, UFFD_FEATURE_POISON },
	{ "move", UPAGER_FEAT_MOVE, UFFD_FEATURE_MOVE },
	{ "event_remove", UPAGER_FEAT_EVENT_REMOVE, UFFD_FEATURE_EVENT_REMOVE },
	{ "event_unmap", UPAGER_FEAT_EVENT_UNMAP, UFFD_FEATURE_EVENT_UNMAP },
	{ "event_remap", UPAGER_FEAT_EVENT_REMAP, UFFD_FEATURE_EVENT_REMAP },
	{ "thread_id", UPAGER_FEAT_THREAD_ID, UFFD_FEATURE_THREAD_ID },
	{ "wp_async", UPAGER_FEAT_WP_ASYNC, UFFD_FEATURE_WP_ASYNC },
	{ "event_fork", UPAGER_FEAT_EVENT_FORK, UFFD_FEATURE_EVENT_FORK },
	{ "sigbus", UPAGER_FEAT_SIGBUS, UFFD_FEATURE_SIGBUS },
	{ "zeropage", UPAGER_FEAT_ZEROPAGE, 0 },
	{ "pagemap_scan", UPAGER_FEAT_PAGEMAP_SCAN, 0 },
	/* Reported, never asked for: the kernel sets it where it can write-protect. */
	{ "wp", UPAGER_FEAT_WP, UFFD_FEATURE_PAGEFAULT_FLAG_WP },
};

/* Features we ask the kernel for, when it has them; the rest we only report. */
#define WANTED_KERNEL_FEATURES                                                          \
	(UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMAP | \
	 UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_POISON | UFFD_FEATURE_MOVE |                \
	 UFFD_FEATURE_WP_ASYNC)

#define REQUESTED_FEATS                                                               \
	(UPAGER_FEAT_EVENT_REMOVE | UPAGER_FEAT_EVENT_UNMAP | UPAGER_FEAT_EVENT_REMAP | \
	 UPAGER_FEAT_THREAD_ID | UPAGER_FEAT_POISON | UPAGER_FEAT_MOVE | UPAGER_FEAT_WP_ASYNC)

/* UPAGER_DISABLE=poison,move,... lets a whole test run take the fallback paths. */
uint64_t upager__disable_from_env(void)
{
	uint64_t mask = 0;

	for (size_t i = 0; i < sizeof(feature_map) / sizeof(feature_map[0]); i++)
		if (upp_env_disables(feature_map[i].name))
			mask |= feature_map[i].feat;
	return mask;
}

static int open_dev(int flags)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	int fd;

	if (dev < 0)
		return -errno;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
	fd = fd < 0 ? -errno : fd;
	close(dev);
	return fd;
}

static int open_syscall(int flags)
{
#ifdef __NR_userfaultfd
	int fd = (int)syscall(__NR_userfaultfd, flags);
	return fd < 0 ? -errno : fd;
#else
	return -ENOSYS;
#endif
}

static int open_method(unsigned method)
{
	int flags = O_CLOEXEC | O_NONBLOCK;

	switch (method) {
	case UPAGER_OPEN_DEV:
		return open_dev(flags);
	case UPAGER_OPEN_SYSCALL:
		return open_syscall(flags);
	case UPAGER_OPEN_USER_ONLY:
		return open_syscall(flags | UFFD_USER_MODE_ONLY);
	}
	return -EINVAL;
}

static void explain(char *why, size_t whylen, size_t *used, unsigned method, int err)
{
	const char *what = "";

	if (!why || *used >= whylen)
		return;
	switch (method) {
	case UPAGER_OPEN_DEV:
		if (err == -ENOENT)
			what = "/dev/userfaultfd: no such device node (Linux < 6.1, or not created: "
			       "modprobe/udev)";
		else if (err == -EACCES || err == -EPERM)
			what = "/dev/userfaultfd: permission denied (give this user read-write "
			       "access, e.g. a group or an ACL)";
		else
			what = "/dev/userfaultfd: cannot be used";
		break;
	case UPAGER_OPEN_SYSCALL:
		if (err == -ENOSYS)
			what = "userfaultfd(2): not implemented (kernel built without "
			       "CONFIG_USERFAULTFD)";
		else if (err == -EPERM)
			what = "userfaultfd(2): not permitted (sysctl vm.unprivileged_userfaultfd=0 "
			       "and no CAP_SYS_PTRACE)";
		else
			what = "userfaultfd(2): failed";
		break;
	case UPAGER_OPEN_USER_ONLY:
		if (err == -EINVAL)
			what = "userfaultfd(2) with UFFD_USER_MODE_ONLY: unsupported (Linux < 5.11)";
		else if (err == -ENOSYS)
			what = "userfaultfd(2) with UFFD_USER_MODE_ONLY: not implemented";
		else
			what = "userfaultfd(2) with UFFD_USER_MODE_ONLY: not permitted "
			       "(blocked by seccomp or a security module)";
		break;
	}
	*used += (size_t)snprintf(why + *used, whylen - *used, "%s%s [%s]", *used ? "; " : "",
				  what, strerror(-err));
}

static int api_handshake(int fd, uint64_t want, uint64_t *got)
{
	struct uffdio_api api = { .api = UFFD_API, .features = want };

	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return -errno;
	if (api.api != UFFD_API)
		return -EPROTO;
	*got = api.features;
	return 0;
}

static uint64_t to_upager_features(uint64_t kernel, uint64_t disable)
{
	uint64_t f = UPAGER_FEAT_ZEROPAGE; /* anonymous memory has it on every kernel */

	if (upager__pagemap_scan_works())
		f |= UPAGER_FEAT_PAGEMAP_SCAN;

	for (size_t i = 0; i < sizeof(feature_map) / sizeof(feature_map[0]); i++)
		if (feature_map[i].kernel && (kernel & feature_map[i].kernel))
			f |= feature_map[i].feat;
	return f & ~disable;
}

static uint64_t to_kernel_features(uint64_t upager)
{
	uint64_t k = 0;

	for (size_t i = 0; i < sizeof(feature_map) / sizeof(feature_map[0]); i++)
		if (upager & feature_map[i].feat)
			k |= feature_map[i].kernel;
	return k;
}

int upager__uffd_open(unsigned methods, uint64_t disable, uint64_t also, int *fdp,
		      uint64_t *featuresp, uint64_t *kfeaturesp, char *why, size_t whylen)
{
	static const unsigned order[] = { UPAGER_OPEN_DEV, UPAGER_OPEN_SYSCALL,
					  UPAGER_OPEN_USER_ONLY };
	static const uint64_t how[] = { UPAGER_FEAT_OPEN_DEV, UPAGER_FEAT_OPEN_SYSCALL,
					UPAGER_FEAT_USER_ONLY };
	size_t used = 0;
	int err = -ENOSYS, perm_err = 0;

	if (why && whylen)
		why[0] = '\0';
	if (methods == 0)
		methods = UPAGER_OPEN_ANY;
	if (methods & ~UPAGER_OPEN_ANY)
		return -EINVAL;

	for (size_t i = 0; i < 3; i++) {
		uint64_t supported = 0, granted = 0, wanted;
		int fd;

		if (!(methods & order[i]))
			continue;
		fd = open_method(order[i]);
		if (fd < 0) {
			explain(why, whylen, &used, order[i], fd);
			err = fd;
			if (fd == -EPERM || fd == -EACCES)
				perm_err = -EPERM;
			continue;
		}
		/* UFFDIO_API works once per fd: ask what exists, then reopen to ask for it. */
		err = api_handshake(fd, 0, &supported);
		close(fd);
		if (err < 0)
			break;
		fd = open_method(order[i]);
		if (fd < 0) {
			err = fd;
			break;
		}
		wanted = supported & (WANTED_KERNEL_FEATURES | also) & ~to_kernel_features(disable);
		err = api_handshake(fd, wanted, &granted);
		if (err < 0) {
			close(fd);
			break;
		}
		*fdp = fd;
		/*
		 * UFFDIO_API answers with every feature the kernel has (6.18:
		 * all of them), not what it enabled: a handshake that succeeds
		 * enabled exactly what was asked. Report what the kernel has,
		 * but of what we ask for, what we asked.
		 */
		(void)granted;
		*featuresp = (to_upager_features(supported, disable) & ~REQUESTED_FEATS) |
			     (to_upager_features(wanted, disable) & REQUESTED_FEATS) | how[i];
		*kfeaturesp = wanted;
		return 0;
	}
	if (why && used < whylen)
		snprintf(why + used, whylen - used,
			 "%sfix: run as root, or set sysctl vm.unprivileged_userfaultfd=1, or "
			 "give this user access to /dev/userfaultfd",
			 used ? ". " : "");
	return perm_err ? perm_err : err;
}

UPAGER__EXPORT int upager_probe(unsigned open_method, uint64_t *features, char *why,
				size_t whylen)
{
	uint64_t f, k;
	int fd, ret;

	if (why && whylen == 0)
		return -EINVAL;
	ret = upager__uffd_open(open_method, upager__disable_from_env(), 0, &fd, &f, &k, why,
				whylen);
	if (ret < 0)
		return ret;
	close(fd);
	if (features)
		*features = f;
	return 0;
}

int upager__uffd_register(int uffd, uintptr_t start, size_t len, bool *wp)
{
	struct uffdio_register reg = {
		.range = { .start = start, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING | (wp && *wp ? UFFDIO_REGISTER_MODE_WP : 0),
	};

	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
		if (!(reg.mode & UFFDIO_REGISTER_MODE_WP) || errno != EINVAL)
			return -errno;
		/* Write tracking is an optimisation: without it, pages are compared. */
		*wp = false;
		reg.mode = UFFDIO_REGISTER_MODE_MISSING;
		if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
			return -errno;
	}
	if (!(reg.ioctls & (1ull << _UFFDIO_COPY))) {
		upager__uffd_unregister(uffd, start, len);
		return -EOPNOTSUPP;
	}
	return 0;
}

int upager__uffd_unregister(int uffd, uintptr_t start, size_t len)
{
	struct uffdio_range r = { .start = start, .len = len };

	return ioctl(uffd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}
