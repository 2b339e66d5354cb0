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
} loader = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
	     NULL, &loader.todo, NULL, &loader.done, -1 };

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		struct snap_load *l;
		uint64_t one = 1;

		pthread_mutex_lock(&loader.lock);
		while (!loader.todo)
			pthread_cond_wait(&loader.more, &loader.lock);
		l = loader.todo;
		if (!(loader.todo = l->next))
			loader.todo_tail = &loader.todo;
		pthread_mutex_unlock(&loader.lock);

		l->ret = upp_snap_open_at(l->dirfd, l->fd, l->ps, l->max_maps, &l->sn);

		pthread_mutex_lock(&loader.lock);
		l->next = NULL;
		*loader.done_tail = l;
		loader.done_tail = &l->next;
		pthread_mutex_unlock(&loader.lock);
		if (write(loader.efd, &one, sizeof(one)) < 0) {
			/* Only on overflow of the counter, which the loop keeps reading. */
		}
	}
	return NULL;
}

int snapload_start(void)
{
	pthread_t t;
	int ret;

	loader.efd = eventfd(0, EFD_CLOEXEC);
	if (loader.efd < 0)
		return -errno;
	ret = pthread_create(&t, NULL, worker, NULL);
	if (ret) {
		close(loader.efd);
		return -ret;
	}
	pthread_detach(t);
	return loader.efd;
}

void snapload_submit(struct snap_load *l)
{
	pthread_mutex_lock(&loader.lock);
	l->next = NULL;
	*loader.todo_tail = l;
	loader.todo_tail = &l->next;
	pthread_cond_signal(&loader.more);
	pthread_mutex_unlock(&loader.lock);
}

struct snap_load *snapload_done(void)
{
	struct snap_load *l;

	pthread_mutex_lock(&loader.lock);
	l = loader.done;
	loader.done = NULL;
	loader.done_tail = &loader.done;
	pthread_mutex_unlock(&loader.lock);
	return l;
}
