/* SPDX-License-Identifier: MIT */
/*
 * upagerd handle's supervisor: a small process that outlives its worker.
 * It holds a duplicate of every descriptor a client's service needs (its
 * socket, its userfaultfd, its state memfd, its pidfd), the listening
 * socket and the memory file; when the worker dies it starts another (this
 * binary, re-executed: a planned restart on SIGHUP runs the binary now
 * installed) and hands everything over, and the new worker wakes every
 * region so that no fault the dead one had read is lost (handle.c).
 *
 * It does nothing that can fail on a client's input: it reads only the
 * worker's fixed-size messages (supervise.h), never a client's bytes, and
 * holds at most --max-clients clients.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "listen.h"
#include "log.h"
#include "spin.h"
#include "supervise.h"

#define QUICK_DEATH_MS 5000	/* a worker dying sooner counts toward the backoff */
#define BACKOFF_FIRST_MS 50
#define BACKOFF_MAX_MS 5000
#define IMMEDIATE_RESTARTS 5	/* quick deaths in a row restarted at once */

int chan_send(int ch, uint32_t type, uint64_t id, const int *fds, uint32_t nfds)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(CHAN_MAX_FDS * sizeof(int))];
	} ctl;
	struct chan_msg m = { type, nfds, id };
	struct iovec iov = { &m, sizeof(m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = &ctl;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	while (sendmsg(ch, &mh, MSG_NOSIGNAL) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

int chan_recv(int ch, struct chan_msg *m, int fds[CHAN_MAX_FDS], int flags)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(CHAN_MAX_FDS * sizeof(int))];
	} ctl;
	struct iovec iov = { m, sizeof(*m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
			     .msg_controllen = sizeof(ctl) };
	uint32_t n = 0;
	ssize_t got;

	do
		got = recvmsg(ch, &mh, MSG_CMSG_CLOEXEC | flags);
	while (got < 0 && errno == EINTR);
	if (got < 0)
		return -errno;
	if (got == 0)
		return 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
			for (size_t k = 0; k < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++)
				memcpy(&fds[n < CHAN_MAX_FDS ? n++ : n], CMSG_DATA(cm) + k * sizeof(int),
				       sizeof(int));
	if (got != sizeof(*m) || m->nfds != n || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		for (uint32_t k = 0; k < n; k++)
			close(fds[k]);
		return -EBADMSG;
	}
	return 1;
}

/* ---- the supervisor ---- */

struct held {
	uint64_t id;
	int fds[CHAN_MAX_FDS];
	uint32_t nfds;
};

static struct {
	const struct options *o;
	char exe[4096];
	char **argv;
	int lfd, memfd;
	bool passed;
	struct held *held;
	size_t nheld, capheld;
	uint64_t next_id;
	pid_t worker;
	int worker_pidfd, ch;
	uint64_t started_ns;
	bool ready_said, stopping, planned;
	int status;
	unsigned quick; /* quick deaths in a row */
	uint64_t restart_at_ns;
	/* The next worker, started in advance and waiting for its start
	 * message: a takeover costs no fork and exec (the most of a kill's
	 * pause). Its binary is the one of when it started: SIGHUP (an
	 * upgrade) replaces it. */
	pid_t standby;
	int standby_pidfd, standby_ch;
	uint64_t standby_at_ns; /* when to start one, if none */
} sup = { .worker = -1, .worker_pidfd = -1, .ch = -1, .next_id = 1,
	  .standby = -1, .standby_pidfd = -1, .standby_ch = -1 };

#define STANDBY_DELAY_MS 100 /* after a takeover: the new worker's CPU first */

static void held_close(struct held *h)
{
	for (uint32_t k = 0; k < h->nfds; k++)
		close(h->fds[k]);
}

static void on_message(const struct chan_msg *m, int *fds)
{
	size_t i;

	switch (m->type) {
	case CHAN_HOLD:
		if (m->nfds < 3 || sup.nheld >= (size_t)sup.o->max_clients) {
			/* Not held: this client would not survive the worker. */
			LOG(LOG_ERR, "supervisor: cannot hold client %llu (%u descriptors, %zu held): "
				     "it is not failed over", (unsigned long long)m->id, m->nfds, sup.nheld);
			for (uint32_t k = 0; k < m->nfds; k++)
				close(fds[k]);
			return;
		}
		if (sup.nheld == sup.capheld) {
			size_t cap = sup.capheld ? sup.capheld * 2 : 16;
			struct held *h = realloc(sup.held, cap * sizeof(*h));

			if (!h) {
				LOG(LOG_ERR, "supervisor: out of memory holding client %llu: it is not "
					     "failed over", (unsigned long long)m->id);
				for (uint32_t k = 0; k < m->nfds; k++)
					close(fds[k]);
				return;
			}
			sup.held = h;
			sup.capheld = cap;
		}
		sup.held[sup.nheld] = (struct held){ .id = m->id, .nfds = m->nfds };
		memcpy(sup.held[sup.nheld].fds, fds, m->nfds * sizeof(int));
		sup.nheld++;
		if (m->id >= sup.next_id)
			sup.next_id = m->id + 1;
		return;
	case CHAN_DROP:
		for (i = 0; i < sup.nheld && sup.held[i].id != m->id; i++)
			;
		if (i < sup.nheld) {
			held_close(&sup.held[i]);
			sup.held[i] = sup.held[--sup.nheld];
		}
		break;
	case CHAN_READY:
		if (!sup.ready_said && sup.o->ready_fd >= 0) {
			char line[300], where[280];

			if (listen_name(sup.lfd, where, sizeof(where)) < 0)
				snprintf(where, sizeof(where), "unix:%s", sup.o->socket);
			snprintf(line, sizeof(line), "ready %s\n", where);
			if (write((int)sup.o->ready_fd, line, strlen(line)) < 0)
				LOG(LOG_WARN, "cannot write to --ready-fd: %s", strerror(errno));
			close((int)sup.o->ready_fd);
		}
		sup.ready_said = true;
		break;
	default:
		LOG(LOG_WARN, "supervisor: message of unknown type %u from the worker: ignored",
		    m->type);
		break;
	}
	for (uint32_t k = 0; k < m->nfds; k++)
		close(fds[k]);
}

/* Reads what the worker sent; false once its end is closed. */
static bool read_channel(void)
{
	for (;;) {
		struct chan_msg m;
		int fds[CHAN_MAX_FDS], ret = chan_recv(sup.ch, &m, fds, MSG_DONTWAIT);

		if (ret == -EAGAIN)
			return true;
		if (ret == 0 || (ret < 0 && ret != -EBADMSG))
			return false;
		if (ret == 1)
			on_message(&m, fds);
	}
}

/* Forks and executes a worker, which waits for its start message on *chp:
 * 0, or -1 said in the log. */
static int spawn(pid_t *pidp, int *pidfdp, int *chp)
{
	int sv[2];
	char num[16];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		LOG(LOG_ERR, "supervisor: socketpair: %s: retrying", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		sigset_t none;

		/* The worker's descriptors come over the channel; nothing else
		 * of the supervisor's is inherited (all CLOEXEC). */
		snprintf(num, sizeof(num), "%d", sv[1]);
		fcntl(sv[1], F_SETFD, 0);
		setenv(WORKER_ENV, num, 1);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(sup.exe, sup.argv);
		_exit(127);
	}
	close(sv[1]);
	if (pid < 0) {
		LOG(LOG_ERR, "supervisor: fork: %s: retrying", strerror(errno));
		close(sv[0]);
		return -1;
	}
	*pidp = pid;
	*pidfdp = (int)syscall(SYS_pidfd_open, pid, 0);
	*chp = sv[0];
	return 0;
}

/* Stops the standby worker (it has been told nothing: nothing is lost). */
static void standby_stop(void)
{
	if (sup.standby <= 0)
		return;
	kill(sup.standby, SIGKILL);
	while (waitpid(sup.standby, NULL, 0) < 0 && errno == EINTR)
		;
	close(sup.standby_ch);
	if (sup.standby_pidfd >= 0)
		close(sup.standby_pidfd);
	sup.standby = -1;
	sup.standby_ch = sup.standby_pidfd = -1;
}

/* A standby worker, where the kernel has pidfds to watch it with. */
static void standby_start(void)
{
	if (spawn(&sup.standby, &sup.standby_pidfd, &sup.standby_ch) < 0) {
		sup.standby_at_ns = upager__mono_ns() + BACKOFF_MAX_MS * 1000000ull;
		return;
	}
	if (sup.standby_pidfd < 0) {
		standby_stop(); /* no way to see it die: start workers when needed */
		sup.standby_at_ns = UINT64_MAX;
	}
}

/* Starts a worker (the standby, if one waits) and hands it everything held. */
static void start_worker(void)
{
	int fds[2] = { sup.lfd, sup.memfd };
	bool ahead = sup.standby > 0;

	if (ahead) {
		sup.worker = sup.standby;
		sup.worker_pidfd = sup.standby_pidfd;
		sup.ch = sup.standby_ch;
		sup.standby = -1;
		sup.standby_ch = sup.standby_pidfd = -1;
		sup.standby_at_ns = upager__mono_ns() + STANDBY_DELAY_MS * 1000000ull;
	} else if (spawn(&sup.worker, &sup.worker_pidfd, &sup.ch) < 0) {
		sup.restart_at_ns = upager__mono_ns() + BACKOFF_MAX_MS * 1000000ull;
		return;
	}
	sup.started_ns = upager__mono_ns();
	LOG(LOG_INFO, "supervisor: worker pid %d %s, handing it %zu clients", (int)sup.worker,
	    ahead ? "(started in advance) takes over" : "started", sup.nheld);
	/* Blocking sends: a worker that died meanwhile makes them fail
	 * (EPIPE), and its death is seen below. */
	if (chan_send(sup.ch, CHAN_START, sup.passed, fds, 2) < 0)
		return;
	for (size_t i = 0; i < sup.nheld; i++)
		if (chan_send(sup.ch, CHAN_ADOPT, sup.held[i].id, sup.held[i].fds, sup.held[i].nfds) < 0)
			return;
	if (chan_send(sup.ch, CHAN_GO, sup.next_id, NULL, 0) < 0)
		return;
	fcntl(sup.ch, F_SETFL, O_NONBLOCK);
	if (sup.stopping)
		kill(sup.worker, SIGTERM);
}

/* The worker is gone: reads what it had sent, reaps it, and says how it
 * ended. true: start another (when restart_at_ns comes). */
static bool worker_died(void)
{
	uint64_t lived_ms = (upager__mono_ns() - sup.started_ns) / 1000000;
	int st = 0;

	if (sup.ch >= 0) {
		fcntl(sup.ch, F_SETFL, O_NONBLOCK);
		while (read_channel()) {
			struct pollfd p = { .fd = sup.ch, .events = POLLIN };

			/* Its end closes when the last of its threads is gone. */
			if (poll(&p, 1, 1000) <= 0)
				break;
		}
		close(sup.ch);
		sup.ch = -1;
	}
	while (waitpid(sup.worker, &st, 0) < 0 && errno == EINTR)
		;
	if (sup.worker_pidfd >= 0)
		close(sup.worker_pidfd);
	sup.worker_pidfd = -1;
	sup.worker = -1;
	if (sup.stopping && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return false;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 1 && !sup.ready_said) {
		LOG(LOG_ERR, "supervisor: the worker could not start (exit 1): giving up");
		sup.status = 1;
		return false;
	}
	sup.quick = !sup.planned && lived_ms < QUICK_DEATH_MS ? sup.quick + 1 : 0;
	{
		uint64_t delay = 0;

		if (sup.quick > IMMEDIATE_RESTARTS) {
			delay = BACKOFF_FIRST_MS;
			for (unsigned k = IMMEDIATE_RESTARTS + 1; k < sup.quick && delay < BACKOFF_MAX_MS; k++)
				delay *= 2;
			delay = delay > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay;
		}
		sup.restart_at_ns = upager__mono_ns() + delay * 1000000;
		if (WIFSIGNALED(st))
			LOG(sup.planned ? LOG_INFO : LOG_ERR,
			    "supervisor: worker %s (signal %d) after %llu ms with %zu clients: "
			    "restarting it%s%llu ms", sup.planned ? "stopped for the restart" : "killed",
			    WTERMSIG(st), (unsigned long long)lived_ms, sup.nheld,
			    delay ? " in " : ", waited ", (unsigned long long)delay);
		else
			LOG(LOG_ERR, "supervisor: worker exited (status %d) after %llu ms with %zu "
				     "clients: restarting it%s%llu ms", WEXITSTATUS(st),
			    (unsigned long long)lived_ms, sup.nheld, delay ? " in " : ", waited ",
			    (unsigned long long)delay);
	}
	sup.planned = false;
	return true;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	/* Each client is 4 descriptors here, 4 in the worker and 4 in flight
	 * while handed over (the kernel counts those against this limit). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int supervise_run(const struct options *o, char **argv, int lfd, bool passed, int memfd)
{
	ssize_t n;
	int sfd;

	sup.o = o;
	sup.argv = argv;
	sup.lfd = lfd;
	sup.passed = passed;
	n = readlink("/proc/self/exe", sup.exe, sizeof(sup.exe) - 1);
	if (n <= 0) {
		fprintf(stderr, "upagerd: cannot find its own binary: %s\n", strerror(errno));
		return 1;
	}
	sup.exe[n] = '\0';
	if (n > 10 && !strcmp(sup.exe + n - 10, " (deleted)"))
		sup.exe[n - 10] = '\0'; /* replaced by an upgrade: run the new one */
	sup.memfd = memfd >= 0 ? memfd : open(o->mem_file, O_RDONLY | O_CLOEXEC);
	if (sup.memfd < 0) {
		fprintf(stderr, "upagerd: cannot open memory file %s: %s\n", o->mem_file,
			strerror(errno));
		return 1;
	}
	if (o->ready_fd >= 0)
		fcntl((int)o->ready_fd, F_SETFD, FD_CLOEXEC);
	raise_fd_limit();
	sfd = signal_fd();
	if (sfd < 0) {
		fprintf(stderr, "upagerd: signalfd: %s\n", strerror(errno));
		return 1;
	}
	LOG(LOG_INFO, "supervisor pid %d: running workers of %s (--no-supervisor: none)",
	    (int)getpid(), sup.exe);
	start_worker();
	unsetenv("UPAGERD_TEST_KILL_AFTER_FAULT"); /* handle.c: the first worker's alone */
	sup.standby_at_ns = upager__mono_ns() + STANDBY_DELAY_MS * 1000000ull;
	for (;;) {
		struct pollfd pf[4] = { { .fd = sfd, .events = POLLIN },
					{ .fd = sup.worker_pidfd, .events = POLLIN },
					{ .fd = sup.ch, .events = POLLIN },
					{ .fd = sup.standby_pidfd, .events = POLLIN } };
		uint64_t now = upager__mono_ns();
		int wait = -1;

		if (sup.worker < 0) {
			if (now >= sup.restart_at_ns) {
				start_worker();
				continue;
			}
			wait = (int)((sup.restart_at_ns - now) / 1000000) + 1;
		}
		if (sup.standby < 0 && !sup.stopping && sup.standby_at_ns != UINT64_MAX) {
			if (now >= sup.standby_at_ns) {
				standby_start();
				continue;
			}
			if (wait < 0 || (sup.standby_at_ns - now) / 1000000 + 1 < (uint64_t)wait)
				wait = (int)((sup.standby_at_ns - now) / 1000000) + 1;
		}
		if (poll(pf, 4, wait) < 0 && errno != EINTR)
			break;
		if (pf[3].revents && sup.standby > 0) {
			/* It died waiting (killed by hand, the OOM killer): another later. */
			LOG(LOG_WARN, "supervisor: the standby worker pid %d died: another in %d s",
			    (int)sup.standby, BACKOFF_MAX_MS / 1000);
			standby_stop();
			sup.standby_at_ns = upager__mono_ns() + BACKOFF_MAX_MS * 1000000ull;
		}
		if (pf[2].revents && !read_channel()) {
			/* Its end closes as it dies (all read: nothing is lost). */
			close(sup.ch);
			sup.ch = -1;
			if (sup.worker_pidfd < 0 && sup.worker > 0) {
				/* No pidfd (an old kernel): the channel stands for it. */
				kill(sup.worker, SIGKILL);
				pf[1].revents = POLLIN;
			}
		}
		if (pf[1].revents && sup.worker > 0 && !worker_died())
			break;
		if (pf[0].revents & POLLIN) {
			int sig = signal_next(sfd);

			if (!sig)
				continue;
			if (sig == SIGHUP) {
				log_reopen();
				/* The standby runs the binary of before: a new one
				 * is started from the path (an upgrade). */
				standby_stop();
				sup.standby_at_ns = upager__mono_ns() + STANDBY_DELAY_MS * 1000000ull;
				if (sup.worker > 0) {
					/* All its state is held here: a kill loses nothing
					 * (the new worker wakes every region). */
					LOG(LOG_INFO, "supervisor: SIGHUP: handing %zu clients over to a "
						      "new worker (%s)", sup.nheld, sup.exe);
					sup.planned = true;
					kill(sup.worker, SIGKILL);
				}
			} else if (sig == SIGUSR1) {
				LOG(LOG_INFO, "supervisor: %zu clients held, worker pid %d",
				    sup.nheld, (int)sup.worker);
				if (sup.worker > 0)
					kill(sup.worker, SIGUSR1);
			} else {
				/* The worker drains (serves its clients until they
				 * leave) or, told twice, exits at once. */
				sup.stopping = true;
				standby_stop();
				if (sup.worker > 0)
					kill(sup.worker, sig);
			}
		}
	}
	standby_stop();
	for (size_t i = 0; i < sup.nheld; i++)
		held_close(&sup.held[i]);
	LOG(LOG_INFO, "supervisor: exiting");
	return sup.status;
}
