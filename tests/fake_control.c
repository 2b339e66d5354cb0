/* SPDX-License-Identifier: MIT */
/* The test's side of the fake page server: start, release, stop. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_server.h"

/* The shared block: the struct, then the .ws bytes if the script has them. */
static struct upt_fake *shared_block(const struct upt_fake_script *script, int *memfd)
{
	size_t ws_len = script->ws ? (size_t)script->ws_size : 0;
	size_t len = sizeof(struct upt_fake) + ws_len;
	struct upt_fake *fk;
	int fd;

	if (script->nconn < 0 || script->nconn > UPT_FAKE_STEPS || script->nread < 0 ||
	    script->nread > UPT_FAKE_STEPS)
		return NULL;
	fd = memfd_create("upager-fake", MFD_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (ftruncate(fd, (off_t)len) < 0 ||
	    (fk = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
		close(fd);
		return NULL;
	}
	fk->script = *script;
	fk->script.secret = NULL;
	fk->script.ws = NULL;
	if (script->secret)
		snprintf(fk->secret, sizeof(fk->secret), "%s", script->secret);
	if (ws_len)
		memcpy(fk + 1, script->ws, ws_len);
	fk->has_ws_bytes = ws_len > 0;
	fk->map_len = len;
	*memfd = fd;
	return fk;
}

static int listen_at(struct upt_fake *fk)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	snprintf(fk->dir, sizeof(fk->dir), "/tmp/upager-fake-XXXXXX");
	if (!mkdtemp(fk->dir))
		return -1;
	snprintf(fk->path, sizeof(fk->path), "%s/s", fk->dir);
	snprintf(fk->uri, sizeof(fk->uri), "unix:%s", fk->path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fk->path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 16) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	unlink(fk->path);
	rmdir(fk->dir);
	return -1;
}

/*
 * The listening socket is made here, before the fork, so that clients can
 * connect as soon as this returns; a pipe closed by exec says the exec
 * worked (a byte on it: it failed).
 */
struct upt_fake *upt_fake_start(const struct upt_fake_script *script)
{
	char lfd_arg[16], map_arg[16], parent_arg[16];
	int memfd = -1, lfd, pfd[2];
	struct upt_fake *fk = shared_block(script, &memfd);
	char failed;
	pid_t pid;

	if (!fk)
		return NULL;
	lfd = listen_at(fk);
	if (lfd < 0 || pipe2(pfd, O_CLOEXEC) < 0) {
		if (lfd >= 0) {
			close(lfd);
			unlink(fk->path);
			rmdir(fk->dir);
		}
		goto fail;
	}
	snprintf(lfd_arg, sizeof(lfd_arg), "%d", lfd);
	snprintf(map_arg, sizeof(map_arg), "%d", memfd);
	snprintf(parent_arg, sizeof(parent_arg), "%d", (int)getpid());
	fflush(NULL);
	pid = fork(); /* fk is shared with the server: the child must not write to it */
	if (pid == 0) {
		/* Only async-signal-safe calls between fork and exec. */
		fcntl(lfd, F_SETFD, 0);
		fcntl(memfd, F_SETFD, 0);
		execl("tests/fake_server", "fake_server", lfd_arg, map_arg, parent_arg, (char *)NULL);
		failed = 1;
		if (write(pfd[1], &failed, 1) < 0) {
			/* the parent sees EOF and a dead child */
		}
		_exit(127);
	}
	close(pfd[1]);
	close(lfd); /* the server has it */
	close(memfd);
	if (pid < 0 || read(pfd[0], &failed, 1) != 0) {
		close(pfd[0]);
		if (pid > 0)
			waitpid(pid, NULL, 0);
		unlink(fk->path);
		rmdir(fk->dir);
		munmap(fk, fk->map_len);
		return NULL;
	}
	close(pfd[0]);
	fk->pid = pid;
	return fk;
fail:
	close(memfd);
	munmap(fk, fk->map_len);
	return NULL;
}

void upt_fake_release(struct upt_fake *fk)
{
	atomic_store(&fk->released, true);
}

void upt_fake_stop(struct upt_fake *fk)
{
	if (!fk)
		return;
	if (fk->pid > 0) { /* never kill(0): the whole process group */
		kill(fk->pid, SIGKILL);
		waitpid(fk->pid, NULL, 0);
	}
	unlink(fk->path);
	rmdir(fk->dir);
	munmap(fk, fk->map_len);
}
