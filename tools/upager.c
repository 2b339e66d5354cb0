/* SPDX-License-Identifier: MIT */
/*
 * upager: inspect, check and convert snapshots and working sets.
 *
 *   upager snapshot info PATH [--json]
 *   upager snapshot verify PATH [--json]
 *   upager snapshot convert --from-raw RAW PATH
 *   upager snapshot convert --to-raw PATH RAW
 *   upager snapshot reorder PATH [--json]
 *   upager snapshot push PATH URL [--json]
 *   upager ws info PATH.ws --snapshot PATH [--json]
 *
 * Exit status: 0 fine, 1 the file is bad or the operation failed, 2 usage.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapshot_tool.h"
#include "upager.h"

static bool json;

static void usage(FILE *f)
{
	fprintf(f, "usage: upager snapshot info PATH [--json]\n"
		   "       upager snapshot verify PATH [--json]\n"
		   "       upager snapshot convert --from-raw RAW PATH\n"
		   "       upager snapshot convert --to-raw PATH RAW\n"
		   "       upager snapshot reorder PATH [--json]\n"
		   "       upager snapshot push PATH URL [--json]\n"
		   "       upager ws info WS --snapshot PATH [--json]\n"
		   "       upager --help | --version\n"
		   "\nSnapshots are described in docs/SNAPSHOT.md and upager_snapshot_save(3).\n"
		   "info and verify also read a snapshot at an http://, https:// or s3:// URL.\n"
		   "push checks PATH, then sends it (and PATH.ws) to URL with HTTP PUT; to an\n"
		   "s3:// URL a file larger than a part (UPAGER_S3_PART_SIZE, default 64M) goes\n"
		   "as a multipart upload.\n"
		   "Exit status: 0 fine, 1 bad file or failed operation, 2 usage.\n");
}

/* On a terminal, a percentage that rewrites itself; otherwise nothing. */
static void progress(uint64_t done, uint64_t total)
{
	if (!json && isatty(2))
		fprintf(stderr, "\r%3u%% (%llu/%llu pages)", (unsigned)(done * 100 / total),
			(unsigned long long)done, (unsigned long long)total);
	if (!json && isatty(2) && done == total)
		fputc('\n', stderr);
}

/* s as a JSON string: quotes, backslashes and control bytes escaped. */
/*
 * How many bytes of well-formed UTF-8 start at s (1-4), or 0: a byte that
 * starts no character, a cut sequence, an overlong form, a surrogate or a
 * code point past U+10FFFF.
 */
static size_t utf8_len(const unsigned char *s)
{
	size_t n = s[0] < 0x80 ? 1 : s[0] >= 0xc2 && s[0] <= 0xdf ? 2 : s[0] >= 0xe0 && s[0] <= 0xef ? 3
		 : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : 0;

	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
		return 0;
	return n;
}

/* A JSON string: JSON is UTF-8, a file name need not be: each byte that is
 * not part of a well-formed character reads U+FFFD. */
static void json_str(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	putchar('"');
	while (*s) {
		size_t n = utf8_len(s);

		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if (*s < 0x20 || *s == 0x7f)
			printf("\\u%04x", *s);
		else if (n)
			fwrite(s, 1, n, stdout);
		else
			fputs("\\ufffd", stdout);
		s += n ? n : 1;
	}
	putchar('"');
}

/* The start of every --json answer: whether it worked, and the file it is
 * about; the caller adds its fields and the closing brace. */
static void json_begin(bool ok, const char *path)
{
	printf("{\"ok\":%s,\"file\":", ok ? "true" : "false");
	json_str(path);
}

static int fail(const char *what, const char *path, int err)
{
	if (json) {
		json_begin(false, path);
		printf(",\"error\":");
		json_str(strerror(-err));
		printf(",\"errno\":%d}\n", -err);
	} else
		fprintf(stderr, "upager: %s %s: %s\n", what, path,
			err == -EBADMSG ? "not a valid snapshot (corrupt, truncated or foreign)"
					: strerror(-err));
	return 1;
}

static int snapshot_info(const char *path)
{
	struct upager__snap_info in;
	int ret = upager__snap_inspect(path, &in);

	if (ret < 0)
		return fail("info", path, ret);
	if (json) {
		json_begin(true, path);
		printf(",\"version\":1,\"page_size\":%llu,\"length\":%llu,"
		       "\"pages\":%llu,\"stored\":%llu,\"zero\":%llu,\"absent\":%llu,"
		       "\"parent_pages\":%llu,\"file_size\":%llu,\"parent\":",
		       (unsigned long long)in.page_size, (unsigned long long)in.length,
		       (unsigned long long)in.npages, (unsigned long long)in.nstored,
		       (unsigned long long)in.nzero, (unsigned long long)in.nabsent,
		       (unsigned long long)in.nparent, (unsigned long long)in.file_size);
		if (in.parent[0])
			json_str(in.parent);
		else
			printf("null");
		printf("}\n");
	} else {
		printf("%s: upager snapshot, version 1\n"
		       "  memory     %llu bytes, %llu pages of %llu bytes\n"
		       "  stored     %llu pages\n  zero       %llu pages\n  absent     %llu pages\n",
		       path, (unsigned long long)in.length, (unsigned long long)in.npages,
		       (unsigned long long)in.page_size, (unsigned long long)in.nstored,
		       (unsigned long long)in.nzero, (unsigned long long)in.nabsent);
		if (in.parent[0])
			printf("  parent     %llu pages as in %s (incremental)\n",
			       (unsigned long long)in.nparent, in.parent);
		printf("  file size  %llu bytes\n", (unsigned long long)in.file_size);
	}
	return 0;
}

static int snapshot_verify(const char *path, const char *raw)
{
	uint64_t bad = 0;
	int fd = -1, ret;

	if (raw) {
		fd = open(raw, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			return fail("convert", raw, -errno);
	}
	ret = upager__snap_verify(path, fd, progress, &bad);
	if (fd >= 0)
		close(fd);
	if (ret == -EBADMSG && bad) {
		if (raw)
			unlink(raw);
		if (json) {
			json_begin(false, path);
			printf(",\"bad_page\":%llu}\n", (unsigned long long)bad);
		} else
			fprintf(stderr, "upager: %s: page %llu fails its checksum\n", path,
				(unsigned long long)bad);
		return 1;
	}
	if (ret < 0) {
		if (raw)
			unlink(raw);
		return fail(raw ? "convert" : "verify", path, ret);
	}
	if (json) {
		json_begin(true, path);
		printf("}\n");
	} else if (!raw)
		printf("%s: every stored page matches its checksum\n", path);
	return 0;
}

static int ws_info(const char *ws, const char *snap)
{
	struct upager__snap_info in;
	uint64_t count = 0, *pages;
	int ret = upager__snap_inspect(snap, &in);

	if (ret < 0)
		return fail("ws info: snapshot", snap, ret);
	ret = upager__ws_inspect(ws, in.npages, &count, &pages);
	if (ret < 0)
		return fail("ws info", ws, ret);
	if (json) {
		json_begin(true, ws);
		printf(",\"pages\":%llu,\"snapshot_pages\":%llu,\"first\":[", (unsigned long long)count, (unsigned long long)in.npages);
		for (uint64_t i = 0; i < count && i < 16; i++)
			printf("%s%llu", i ? "," : "", (unsigned long long)pages[i]);
		printf("]}\n");
	} else {
		printf("%s: working set of %llu pages (%.1f%% of %llu), first touched:", ws,
		       (unsigned long long)count, in.npages ? 100.0 * (double)count / (double)in.npages : 0,
		       (unsigned long long)in.npages);
		for (uint64_t i = 0; i < count && i < 16; i++)
			printf(" %llu", (unsigned long long)pages[i]);
		printf("%s\n", count > 16 ? " ..." : "");
	}
	free(pages);
	return 0;
}

/* The push's log lines: its errors, on stderr (never the URL's secrets). */
static void push_log(void *arg, int level, const char *msg)
{
	(void)arg, (void)level;
	if (!json)
		fprintf(stderr, "upager: %s\n", msg);
}

static void push_progress(uint64_t done, uint64_t total)
{
	if (!json && isatty(2) && total)
		fprintf(stderr, "\r%3u%% (%llu/%llu MiB)%s", (unsigned)(done * 100 / total),
			(unsigned long long)(done >> 20), (unsigned long long)(total >> 20),
			done == total ? "\n" : "");
}

static int snapshot_push(const char *path, const char *url)
{
	struct upager__push_info info;
	upager_url_options_t o;
	int ret;

	upager_url_options_init(&o);
	o.log = push_log;
	ret = upager__snap_push(path, url, &o, push_progress, &info);
	if (ret == -EXDEV && !json) {
		fprintf(stderr, "upager: push %s: an incremental snapshot: a restore from a URL "
				"cannot reach its parent\n", path);
		return 1;
	}
	if (ret < 0)
		return fail("push", path, ret);
	if (json) {
		json_begin(true, path);
		printf(",\"bytes\":%llu,\"ws_pages\":%llu,\"parts\":%u,\"etag\":",
		       (unsigned long long)info.bytes, (unsigned long long)info.ws_pages, info.parts);
		json_str(info.etag);
		printf("}\n");
	} else {
		printf("%s: checked and pushed, %llu bytes", path, (unsigned long long)info.bytes);
		if (info.parts)
			printf(" in %u parts", info.parts);
		if (info.ws_pages)
			printf(" with its working set (%llu pages)", (unsigned long long)info.ws_pages);
		printf("; the server's ETag %s\n", info.etag);
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *args[4] = { 0 }, *snap = NULL, *from = NULL, *to = NULL;
	int n = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--version")) {
			printf("upager %s\n", PACKAGE_VERSION);
			return 0;
		} else if (!strcmp(argv[i], "--snapshot") && i + 1 < argc) {
			snap = argv[++i];
		} else if (!strcmp(argv[i], "--from-raw") && i + 1 < argc) {
			from = argv[++i];
		} else if (!strcmp(argv[i], "--to-raw")) {
			to = "";
		} else if (argv[i][0] == '-' || n == 4) {
			usage(stderr);
			return 2;
		} else {
			args[n++] = argv[i];
		}
	}
	if (n == 3 && !strcmp(args[0], "snapshot") && !strcmp(args[1], "info"))
		return snapshot_info(args[2]);
	if (n == 3 && !strcmp(args[0], "snapshot") && !strcmp(args[1], "verify"))
		return snapshot_verify(args[2], NULL);
	if (n == 3 && !strcmp(args[0], "snapshot") && !strcmp(args[1], "convert") && from && !to) {
		int ret = upager__snap_from_raw(from, args[2]);
		if (ret < 0)
			return fail("convert", from, ret);
		if (json) {
			json_begin(true, args[2]);
			printf("}\n");
		}
		return 0;
	}
	if (n == 3 && !strcmp(args[0], "snapshot") && !strcmp(args[1], "reorder")) {
		int ret = upager_snapshot_reorder(args[2]);

		if (ret == -ENOENT && !json) {
			fprintf(stderr, "upager: reorder %s: no working set %s.ws (record one with "
					"UPAGER_SNAP_RECORD)\n", args[2], args[2]);
			return 1;
		}
		if (ret < 0)
			return fail("reorder", args[2], ret);
		if (json) {
			json_begin(true, args[2]);
			printf("}\n");
		}
		return 0;
	}
	if (n == 4 && !strcmp(args[0], "snapshot") && !strcmp(args[1], "push"))
		return snapshot_push(args[2], args[3]);
	if (n == 4 && !strcmp(args[0], "snapshot") && !strcmp(args[1], "convert") && to && !from)
		return snapshot_verify(args[2], args[3]);
	if (n == 3 && !strcmp(args[0], "ws") && !strcmp(args[1], "info") && snap)
		return ws_info(args[2], snap);
	usage(stderr);
	return 2;
}
