/* SPDX-License-Identifier: MIT */
/*
 * The library's one way to say something: the caller's log callback, above
 * its level. Every layer logs, so this sits at the bottom: it calls nothing
 * of the library's.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include "upager-int.h"

void upager__log(const upager_t *p, int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!p->log || level > p->log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	p->log(p->log_arg, level, buf);
}
