/* SPDX-License-Identifier: MIT */
/*
 * Starting upager's own threads (handlers, a remote source's connection, a
 * snapshot's readahead). They block every signal the program may send or
 * queue, so that a signal meant for the program's threads is never taken by
 * one of ours: the fallback's SIGBUS goes to the process where the kernel
 * cannot say which thread faulted, and a program's handler that longjmps
 * must run on a thread of its own (check_hostile saw SIGSEGV: a queued
 * SIGBUS taken by a handler thread, whose program handler longjmp'd to
 * nowhere). A fault of our own (SIGSEGV, SIGBUS...) in such a thread is not
 * held back by the mask: the kernel forces it, and the process dies of it.
 */
#include "config.h"

#include <pthread.h>
#include <signal.h>

#include "thread.h"

int upager__thread_start(pthread_t *thread, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int ret;

	sigfillset(&all);
	/* The new thread inherits the mask it is created under. */
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(thread, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -ret;
}
