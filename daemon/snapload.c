/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "snapload.h"

static struct {
	pthread_mutex_t lock;
	pthread_cond_t more;
	struct snap_load *todo, **todo_tail, *done, **done_tail;
	int efd;
} L = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, &L.todo, NULL, &L.done, -1 };

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		struct snap_load *l;
		uint64_t one = 1;

		pthread_mutex_lock(&L.lock);
		while (!L.todo)
			pthread_cond_wait(&L.more, &L.lock);
		l = L.todo;
		if (!(L.todo = l->next))
			L.todo_tail = &L.todo;
		pthread_mutex_unlock(&L.lock);

		l->ret = upp_snap_open_at(l->dirfd, l->fd, l->ps, l->max_maps, &l->sn);

		pthread_mutex_lock(&L.lock);
		l->next = NULL;
		*L.done_tail = l;
		L.done_tail = &l->next;
		pthread_mutex_unlock(&L.lock);
		if (write(L.efd, &one, sizeof(one)) < 0) {
			/* Only on overflow of the counter, which the loop keeps reading. */
		}
	}
	return NULL;
}

int snapload_start(void)
{
	pthread_t t;
	int ret;

	L.efd = eventfd(0, EFD_CLOEXEC);
	if (L.efd < 0)
		return -errno;
	ret = pthread_create(&t, NULL, worker, NULL);
	if (ret) {
		close(L.efd);
		return -ret;
	}
	pthread_detach(t);
	return L.efd;
}

void snapload_submit(struct snap_load *l)
{
	pthread_mutex_lock(&L.lock);
	l->next = NULL;
	*L.todo_tail = l;
	L.todo_tail = &l->next;
	pthread_cond_signal(&L.more);
	pthread_mutex_unlock(&L.lock);
}

struct snap_load *snapload_done(void)
{
	struct snap_load *l;

	pthread_mutex_lock(&L.lock);
	l = L.done;
	L.done = NULL;
	L.done_tail = &L.done;
	pthread_mutex_unlock(&L.lock);
	return l;
}
