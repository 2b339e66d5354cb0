/* SPDX-License-Identifier: MIT */
/* upagerd: the upager page server (serve) and external fault handler (handle). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "handle.h"
#include "log.h"
#include "options.h"
#include "server.h"

int main(int argc, char **argv)
{
	struct options o;
	int ret;

	log_std_fds();
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		options_usage(stdout);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "--version")) {
		printf("upagerd %s (protocol version 1)\n", PACKAGE_VERSION);
		return 0;
	}
	if (argc < 2 || (strcmp(argv[1], "serve") && strcmp(argv[1], "handle"))) {
		options_usage(stderr);
		return 2;
	}
	ret = options_parse(&o, strcmp(argv[1], "serve") ? MODE_HANDLE : MODE_SERVE, argc - 1,
			    argv + 1);
	if (ret)
		return ret < 0 ? 0 : ret;
	log_level = o.log_level;
	if (o.log_file[0] && (ret = log_open(o.log_file)) < 0) {
		fprintf(stderr, "upagerd: cannot open log %s: %s\n", o.log_file, strerror(-ret));
		return 1;
	}
	return o.mode == MODE_SERVE ? server_run(&o) : handle_run(&o, argv);
}
