/* SPDX-License-Identifier: MIT */
/* The registry (registry.c): which addresses belong to which region. */
#ifndef UPAGER_REGISTRY_H
#define UPAGER_REGISTRY_H

#include "upager-int.h"

/* Registry, under p->lock. */
struct upager__mapping *upager__lookup(upager_t *p, uintptr_t addr);
int upager__map_insert(upager_t *p, const struct upager__mapping *m);
/* Removes [start, end) from the registry, trimming and splitting. */
int upager__map_cut(upager_t *p, uintptr_t start, uintptr_t end, bool clear_resident);
int upager__map_move(upager_t *p, uintptr_t from, uintptr_t to, size_t len);
/* UFFD_EVENT_REMAP and UFFD_EVENT_UNMAP: see registry.c. */
int upager__map_remap(upager_t *p, uintptr_t from, uintptr_t to, size_t len);
int upager__map_unmap(upager_t *p, uintptr_t start, uintptr_t end);
/* A region is registered at [start, end): no UNMAP still to come is about it. */
void upager__map_forget_moves(upager_t *p, uintptr_t start, uintptr_t end);
/* Takes r's mappings out (upager_release); the caller frees *minep. */
int upager__map_remove_region(upager_t *p, const upager_region_t *r,
			      struct upager__mapping **minep, size_t *np);
void upager__registry_free(upager_t *p);

#endif
