/* SPDX-License-Identifier: MIT */
/*
 * The inline table (inline_table.c): the mappings of inline pagers, readable
 * from a SIGBUS handler without locks or allocation.
 */
#ifndef UPAGER_INLINE_TABLE_H
#define UPAGER_INLINE_TABLE_H

#include "upager-int.h"

/* Mappings of every inline pager in the process, together: more than the
 * kernel lets a process map by default (vm.max_map_count, 65530), so the
 * mappings a munmap splits regions into and mremap's moves always find a
 * slot (without one their faults would be the program's SIGBUS; 1024 slots
 * were too few for one region split 1025 times). Static, zero until used:
 * it costs the pages of the slots in use (56 bytes each). */
#define UPAGER__INLINE_SLOTS 65536
/* upager_reserve stops here: every fault scans the slots in use. */
#define UPAGER__INLINE_RESERVE_MAX 1000

/* What a lookup found; held (the slot cannot change) until leave. */
struct upager__inline_hit {
	unsigned slot;
	upager_region_t *region;
	uintptr_t start, end; /* the mapping's addresses */
	size_t roff;     /* its region offset */
	/* A miss: the table's version it was true of (even), or
	 * UPAGER__INLINE_UNSETTLED if the table never stood still. Two misses
	 * at one address say the same only with one version between them. */
	uint_fast64_t version;
};
#define UPAGER__INLINE_UNSETTLED 1

/*
 * Makes the table's entries of p what p->maps says (under p->lock held
 * exclusively). An entry taken out is waited for: when this returns, no
 * fill that found it is still running. -ENOSPC: no room for a mapping (its
 * faults then go to the program as SIGBUS); the rest is published.
 */
int upager__inline_sync(upager_t *p);

/* The longest a miss waits for the table to settle (see enter). */
#define UPAGER__INLINE_MISS_WAIT_NS (2 * 1000000000ull)

/* May one more region be reserved (fewer than UPAGER__INLINE_RESERVE_MAX
 * slots in use)? */
bool upager__inline_has_room(void);

/* Async-signal-safe. Finds the mapping of addr and holds it; false: none,
 * once no sync runs and no inline event is read and not applied (the
 * table's version then in hit->version). */
bool upager__inline_enter(uintptr_t addr, struct upager__inline_hit *hit);
void upager__inline_leave(const struct upager__inline_hit *hit);

/*
 * A fill of pager A that found its mapping before the program's munmap or
 * mremap may place its page after the kernel has freed the range, until
 * A's handler applies the event (which waits for the fill): UFFDIO_COPY on
 * A's uffd takes any registered range, so a region another pager
 * registered there meanwhile, or moved there with mremap, would get A's
 * page. The kernel refuses A's copies (EAGAIN) from the event's start
 * until a handler read()s it. So each copy of an inline fill runs between
 * copy_begin and copy_end, and A's handler, before its read() (begin),
 * stops new copies and waits for those running (one ioctl each, never a
 * source's read), and lets them go once it has noted the batch's ranges
 * (events_read): a copy then starts only if its range is in no UNMAP or
 * REMAP read and not applied (false: the fill leaves its slot and the
 * access is retried, bounded). Nothing waits for a fill's read or for the
 * pager's lock. Inline pagers' handlers also count a batch open from
 * before its read() to after its events are applied (end); whoever
 * registers a range first waits for the count to be zero
 * (upager__events_settle_inline). begin: false if the uffd holds nothing
 * to read (nothing counted, nothing stopped).
 */
bool upager__inline_events_begin(upager_t *p);
void upager__inline_events_read(upager_t *p);
void upager__inline_events_end(void);
/* Async-signal-safe; never waits. false: a handler of p is reading (no
 * copy counted in). The caller checks upager__events_unmapped after. */
bool upager__inline_copy_begin(upager_t *p);
void upager__inline_copy_end(upager_t *p);
bool upager__inline_events_open(void);
/* pred(p) for each pager with a mapping in the table, until one is true. */
bool upager__inline_pagers_any(bool (*pred)(const upager_t *p));

/* In a fork's child (pthread_atfork): empties the table, which held the
 * parent's mappings (not mapped in the child, placed through its uffds). */
void upager__inline_forget(void);

#endif
