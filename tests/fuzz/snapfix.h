/* SPDX-License-Identifier: MIT */
/*
 * Makes the checksums of a (mutated) snapshot or working-set file true
 * again, so that a fuzzer reaches the checks behind them instead of dying
 * on the first CRC. Fields are not made sane: only the CRCs (and a
 * parent's name, which must match the file the harness writes) are fixed.
 * Shared by the fuzz targets and the seed generator. Layouts:
 * docs/SNAPSHOT.md.
 */
#ifndef UPAGER_FUZZ_SNAPFIX_H
#define UPAGER_FUZZ_SNAPFIX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "le.h"
#include "protocol.h" /* upp_crc32c */
#include "snapfmt.h"

#define FUZZ_PARENT_NAME "p" /* what the harness names a child's parent */

/*
 * Fixes the page CRCs in the map, the map CRC and the header CRC of the
 * snapshot in buf (size bytes, page size ps); an incremental one is pointed
 * at FUZZ_PARENT_NAME with the header CRC parent_crc. Returns the header
 * CRC (0 if there is no header).
 */
static inline uint32_t fuzz_snap_fix(uint8_t *buf, size_t size, size_t ps, uint32_t parent_crc)
{
	uint64_t npages, nstored, data_off, map_off;
	uint32_t crc;

	if (size < UPP_SNAP_HDR)
		return 0;
	if (get32(buf + 56) & UPP_SNAP_F_PARENT) {
		size_t old = get16(buf + 76);

		memset(buf + 128, 0, old < UPP_SNAP_MAX_NAME ? old : UPP_SNAP_MAX_NAME);
		memcpy(buf + 128, FUZZ_PARENT_NAME, sizeof(FUZZ_PARENT_NAME) - 1);
		put16(buf + 76, sizeof(FUZZ_PARENT_NAME) - 1);
		put32(buf + 72, parent_crc);
	}
	npages = get64(buf + 24);
	nstored = get64(buf + 32);
	data_off = get64(buf + 40);
	map_off = get64(buf + 48);
	if (map_off <= size && npages <= (size - map_off) / UPP_SNAP_ENTRY) {
		uint8_t *map = buf + map_off;

		for (uint64_t i = 0; i < npages; i++) {
			uint8_t *e = map + i * UPP_SNAP_ENTRY;
			uint64_t idx = get64(e + 8);

			if (e[0] == UPP_SNAP_STORED && idx < nstored && data_off <= size &&
			    idx < (size - data_off) / ps)
				put32(e + 4, upp_crc32c(0, buf + data_off + idx * ps, ps));
		}
		put32(buf + 60, upp_crc32c(0, map, npages * UPP_SNAP_ENTRY));
	}
	put32(buf + 64, 0);
	crc = upp_crc32c(0, buf, UPP_SNAP_HDR);
	put32(buf + 64, crc);
	return crc;
}

#define FUZZ_WS_HDR 32 /* lib/workset.c: magic, count, npages, crc of the indices, crc of 0..27 */

/* Fixes both CRCs of the working-set file in buf. */
static inline void fuzz_ws_fix(uint8_t *buf, size_t size)
{
	uint64_t n;

	if (size < FUZZ_WS_HDR)
		return;
	n = get64(buf + 8);
	if (n <= (size - FUZZ_WS_HDR) / 8)
		put32(buf + 24, upp_crc32c(0, buf + FUZZ_WS_HDR, n * 8));
	put32(buf + 28, upp_crc32c(0, buf, 28));
}

#endif
