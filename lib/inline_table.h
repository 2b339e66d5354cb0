/* SPDX-License-Identifier: MIT */
/*
 * The inline table (inline_table.c): the mappings of inline pagers, readable
 * from a SIGBUS handler without locks or allocation.
 */
#ifndef UPAGER_INLINE_TABLE_H
#define UPAGER_INLINE_TABLE_H

#include "upager-int.h"

/* Mappings of every inline pager in the process, together. */
#define UPAGER__INLINE_SLOTS 1024

/* What a lookup found; held (the slot cannot change) until leave. */
struct upager__inline_hit {
	unsigned slot;
	upager_region_t *region;
	uintptr_t start, end; /* the mapping's addresses */
	size_t roff;     /* its region offset */
};

/*
 * Makes the table's entries of p what p->maps says (under p->lock held
 * exclusively). An entry taken out is waited for: when this returns, no
 * fill that found it is still running. -ENOSPC: no room for a mapping (its
 * faults then go to the program as SIGBUS); the rest is published.
 */
int upager__inline_sync(upager_t *p);

/* Async-signal-safe. Finds the mapping of addr and holds it; false: none. */
bool upager__inline_enter(uintptr_t addr, struct upager__inline_hit *hit);
void upager__inline_leave(const struct upager__inline_hit *hit);

/* In a fork's child (pthread_atfork): empties the table, which held the
 * parent's mappings (not mapped in the child, placed through its uffds). */
void upager__inline_forget(void);

#endif
