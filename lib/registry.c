/* SPDX-License-Identifier: MIT */
/*
 * The registry: which addresses belong to which region, at which region
 * offset. It owns the pager's `maps` (a sorted array of mappings) and the
 * ring of mremap moves whose UNMAP is still to come. A region starts as one
 * mapping; the program's munmap and mremap of parts of it trim, split and
 * move mappings (UFFD_EVENT_UNMAP/REMAP, applied by events.c); release
 * takes a region's mappings out. Everything here runs under the pager's
 * rwlock: shared for lookups, exclusive for changes. Layer: below the
 * public calls, the handler, the fills, the prefetch queue and the events;
 * it calls only the resident bitmap (region_state.c, the layer below) when
 * a range leaves it.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "upager-int.h"
#include "registry.h"
#include "region_state.h"


/* Index of the first mapping that ends after addr. */
static size_t map_search(const upager_t *p, uintptr_t addr)
{
	size_t lo = 0, hi = p->nmaps;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (p->maps[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct upager__mapping *upager__lookup(upager_t *p, uintptr_t addr)
{
	size_t i = map_search(p, addr);

	if (i < p->nmaps && p->maps[i].start <= addr)
		return &p->maps[i];
	return NULL;
}

int upager__map_insert(upager_t *p, const struct upager__mapping *m)
{
	size_t i;

	if (p->nmaps == p->capmaps) {
		size_t cap = p->capmaps ? p->capmaps * 2 : 16;
		struct upager__mapping *n = realloc(p->maps, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		p->maps = n;
		p->capmaps = cap;
	}
	i = map_search(p, m->start);
	memmove(&p->maps[i + 1], &p->maps[i], (p->nmaps - i) * sizeof(*m));
	p->maps[i] = *m;
	p->nmaps++;
	return 0;
}

int upager__map_cut(upager_t *p, uintptr_t start, uintptr_t end, bool clear_resident)
{
	size_t i = map_search(p, start);

	while (i < p->nmaps && p->maps[i].start < end) {
		struct upager__mapping *m = &p->maps[i];
		uintptr_t cs = m->start > start ? m->start : start;
		uintptr_t ce = m->end < end ? m->end : end;

		if (clear_resident)
			upager__region_clear_resident(m->region, m->roff + (cs - m->start),
						      ce - cs);
		if (cs == m->start && ce == m->end) {
			memmove(m, m + 1, (p->nmaps - i - 1) * sizeof(*m));
			p->nmaps--;
		} else if (cs == m->start) {
			m->roff += ce - m->start;
			m->start = ce;
			i++;
		} else if (ce == m->end) {
			m->end = cs;
			i++;
		} else { /* a hole in the middle: split in two */
			struct upager__mapping tail = *m;
			int ret;

			tail.roff += ce - m->start;
			tail.start = ce;
			m->end = cs;
			ret = upager__map_insert(p, &tail);
			if (ret < 0)
				return ret;
			i += 2;
		}
	}
	return 0;
}

int upager__map_move(upager_t *p, uintptr_t from, uintptr_t to, size_t len)
{
	size_t first = map_search(p, from), n = 0, i;
	struct upager__mapping *moved;
	int ret;

	while (first + n < p->nmaps && p->maps[first + n].start < from + len)
		n++;
	if (n == 0)
		return upager__map_cut(p, to, to + len, true);
	moved = malloc(n * sizeof(*moved));
	if (!moved)
		return -ENOMEM;
	/* Collect the pieces first: cutting reorders the array. */
	for (i = 0; i < n; i++) {
		const struct upager__mapping *m = &p->maps[first + i];
		uintptr_t cs = m->start > from ? m->start : from;
		uintptr_t ce = m->end < from + len ? m->end : from + len;

		moved[i].region = m->region;
		moved[i].roff = m->roff + (cs - m->start);
		moved[i].start = to + (cs - from);
		moved[i].end = to + (ce - from);
	}
	ret = upager__map_cut(p, from, from + len, false);
	/* mremap replaced whatever was mapped at the target. */
	if (ret == 0)
		ret = upager__map_cut(p, to, to + len, true);
	for (i = 0; i < n && ret == 0; i++)
		ret = upager__map_insert(p, &moved[i]);
	free(moved);
	return ret;
}

/*
 * mremap sends REMAP and then an UNMAP of the old range, which the REMAP has
 * emptied already. By the time that UNMAP is read, the program's next mremap
 * may have moved another region into the old range (same-sized regions fit
 * exactly); cutting there would take that region out of the registry, to be
 * zero-filled. So the old range is remembered and its UNMAP ignored.
 */
int upager__map_remap(upager_t *p, uintptr_t from, uintptr_t to, size_t len)
{
	unsigned n = sizeof(p->moved_from) / sizeof(p->moved_from[0]);

	p->moved_from[p->nmoved_from++ % n] = (struct upager__ev_range){ .start = from, .end = from + len };
	return upager__map_move(p, from, to, len);
}

int upager__map_unmap(upager_t *p, uintptr_t start, uintptr_t end)
{
	unsigned n = sizeof(p->moved_from) / sizeof(p->moved_from[0]);

	for (unsigned i = 0; i < n; i++)
		if (p->moved_from[i].start == start && p->moved_from[i].end == end) {
			p->moved_from[i] = (struct upager__ev_range){ .start = 0 };
			return 0;
		}
	return upager__map_cut(p, start, end, true);
}

/* A move whose UNMAP never came (MREMAP_DONTUNMAP) must not make a later
 * munmap of a region registered there be ignored. */
void upager__map_forget_moves(upager_t *p, uintptr_t start, uintptr_t end)
{
	unsigned n = sizeof(p->moved_from) / sizeof(p->moved_from[0]);

	for (unsigned i = 0; i < n; i++)
		if (p->moved_from[i].start < end && p->moved_from[i].end > start)
			p->moved_from[i] = (struct upager__ev_range){ .start = 0 };
}

/*
 * Takes every mapping of r out of the registry (upager_release), and hands
 * them back in *minep (*np of them; the caller frees the array): where the
 * program's mremap moved the region's pages, and what its munmap left.
 * -ENOMEM leaves the registry as it was.
 */
int upager__map_remove_region(upager_t *p, const upager_region_t *r,
			      struct upager__mapping **minep, size_t *np)
{
	struct upager__mapping *mine;
	size_t n = 0;

	for (size_t i = 0; i < p->nmaps; i++)
		n += p->maps[i].region == r;
	mine = malloc((n ? n : 1) * sizeof(*mine));
	if (!mine)
		return -ENOMEM;
	n = 0;
	for (size_t i = 0; i < p->nmaps;) {
		if (p->maps[i].region == r) {
			mine[n++] = p->maps[i];
			memmove(&p->maps[i], &p->maps[i + 1], (p->nmaps - i - 1) * sizeof(*mine));
			p->nmaps--;
		} else {
			i++;
		}
	}
	*minep = mine;
	*np = n;
	return 0;
}

/* upager_destroy, once no region is left. */
void upager__registry_free(upager_t *p)
{
	free(p->maps);
	p->maps = NULL;
	p->nmaps = p->capmaps = 0;
}
