/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: upagerd's config file parser (daemon/options.h, read
 * by --config). The first byte picks the command (serve or handle), the
 * rest is the file, handed over as /proc/self/fd/N of a memfd. What parses
 * must leave every string setting terminated within its field. upagerd
 * prints why a file is refused: run with -close_fd_mask=2 to keep quiet.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "options.h"

static int memfd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	memfd = memfd_create("upagerd.conf", MFD_CLOEXEC);
	if (memfd < 0)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	return 0;
}

#define TERMINATED(field) (memchr((field), 0, sizeof(field)) != NULL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct options o;
	char cmd[] = "serve", flag[] = "--config";
	char *argv[] = { cmd, flag, path, NULL };
	int mode, ret;

	if (size < 1)
		return 0;
	mode = data[0] & 1 ? MODE_HANDLE : MODE_SERVE;
	if (ftruncate(memfd, 0) < 0 || pwrite(memfd, data + 1, size - 1, 0) != (ssize_t)(size - 1))
		abort();
	ret = options_parse(&o, mode, 3, argv);
	if (ret != 0 && ret != 1 && ret != 2)
		abort();
	if (ret == 0) {
		if (!TERMINATED(o.root) || !TERMINATED(o.socket) || !TERMINATED(o.mem_file) ||
		    !TERMINATED(o.log_file) || !TERMINATED(o.secret_file) || o.nlisten < (mode == MODE_SERVE) ||
		    o.nlisten > MAX_LISTEN)
			abort();
		for (int i = 0; i < o.nlisten; i++)
			if (!TERMINATED(o.listen[i]))
				abort();
	}
	return 0;
}
