/* SPDX-License-Identifier: MIT */
/* A region's references, resident bitmap and commit lookups (region_state.c). */
#ifndef UPAGER_REGION_STATE_H
#define UPAGER_REGION_STATE_H

#include "upager-int.h"

void upager__region_ref(upager_region_t *r);
void upager__region_unref(upager_region_t *r);
bool upager__region_committed(const upager_region_t *r, size_t off);
/* End of the committed extent holding off (which must be committed). */
size_t upager__region_commit_end(const upager_region_t *r, size_t off);
bool upager__region_resident(const upager_region_t *r, size_t off);
/* Marks the page at region offset off resident, counting it once: false
 * if it was already marked. */
bool upager__region_set_resident(upager_region_t *r, size_t off);
void upager__region_clear_resident(upager_region_t *r, size_t off, size_t len);
/* Inline pagers: a bit per committed page, set and cleared by commit and
 * decommit under the lock, read by fills in SIGBUS handlers without it
 * (seq_cst, against the region's inline fill counts). */
int upager__region_commit_bits_init(upager_region_t *r);
void upager__region_mark_committed(upager_region_t *r, size_t off, size_t len, bool on);
bool upager__region_committed_bit(const upager_region_t *r, size_t off);
/*
 * Inline fills between their commit check and their placement: enter
 * before reading the committed bit (returns what leave takes), leave when
 * placed. Drain, after clearing bits, waits for the fills that began
 * before it, not for those that begin meanwhile (which see the bits clear):
 * a stream of faults elsewhere in the region cannot hold it for ever.
 */
unsigned upager__region_inline_enter(upager_region_t *r);
void upager__region_inline_leave(upager_region_t *r, unsigned epoch);
void upager__region_inline_drain(upager_region_t *r);
/* In a fork's child: a parent thread may have been in a drain. */
void upager__region_inline_forget(void);
/* 0, or -EINVAL/-ERANGE for a range of r that public calls refuse. */
int upager__region_check_range(const upager_region_t *r, size_t off, size_t len);

#endif
