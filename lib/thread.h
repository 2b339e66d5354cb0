/* SPDX-License-Identifier: MIT */
#ifndef UPAGER_THREAD_H
#define UPAGER_THREAD_H

#include <pthread.h>

/* pthread_create for upager's own threads, with every signal blocked;
 * 0 or -errno. */
int upager__thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

#endif
