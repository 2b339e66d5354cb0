/* SPDX-License-Identifier: MIT */
/* Snapshot calls for the upager tool (lib/snapshot_tool.c). Internal. */
#ifndef UPAGER_SNAPSHOT_TOOL_H
#define UPAGER_SNAPSHOT_TOOL_H

#include <stdint.h>

struct upager__snap_info {
	uint64_t page_size, length, npages, nstored, nzero, nabsent, file_size;
	uint64_t nparent; /* pages as in the parent (incremental snapshots) */
	char parent[256]; /* its file name, beside this one; "" if none */
};
int upager__snap_inspect(const char *path, struct upager__snap_info *info);
int upager__snap_verify(const char *path, int raw_fd, void (*progress)(uint64_t, uint64_t),
			uint64_t *bad_page);
int upager__snap_from_raw(const char *raw, const char *path);
int upager__ws_inspect(const char *ws_path, uint64_t npages, uint64_t *count, uint64_t **pages);

#endif
