/* SPDX-License-Identifier: MIT */
/*
 * Writes the fuzz targets' seed corpora (tests/fuzz/corpus/TARGET/) with
 * the real encoders, so that each seed is a valid input a target can
 * mutate from. Run by hand when a format changes (make fuzz-seeds); the
 * output is committed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "snapfix.h"

static const char *top;

static void seed(const char *target, const char *name, uint8_t sel, const void *buf, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/corpus/%s", top, target);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		exit(1);
	snprintf(path, sizeof(path), "%s/corpus/%s/%s", top, target, name);
	f = fopen(path, "wb");
	if (!f || fwrite(&sel, 1, 1, f) != 1 || fwrite(buf, 1, len, f) != len || fclose(f))
		exit(1);
}

static void protocol(void)
{
	uint8_t b[4096], nonce[UPP_NONCE], mac[UPP_MAC];
	struct upp_hello h = { 1, 1, UPP_FEAT_AUTH | UPP_FEAT_IMAGE };
	struct upp_hello_reply hr = { 1, UPP_FEAT_AUTH, UPP_MAX_FRAME, UPP_MAX_READ, 16, 64, { 7 } };
	struct upp_read rd = { 3, 2, { { 0, 4096 }, { 1 << 20, 65536 } } };
	uint32_t got[2] = { 3, 2 };
	size_t n;

	memset(nonce, 0xa5, sizeof(nonce));
	memset(mac, 0x5a, sizeof(mac));
	seed("protocol", "hdr", 0, b, upp_put_hdr(b, UPP_READ, 42, 40));
	seed("protocol", "hello", 1, b, upp_put_hello(b, &h));
	seed("protocol", "hello_reply_auth", 2, b, upp_put_hello_reply(b, &hr));
	hr.features = UPP_FEAT_IMAGE;
	seed("protocol", "hello_reply", 2, b, upp_put_hello_reply(b, &hr));
	seed("protocol", "auth", 3, b, upp_put_auth(b, nonce, mac));
	seed("protocol", "auth_reply", 3, b, upp_put_auth(b, NULL, mac));
	seed("protocol", "open", 4, b, upp_put_open(b, "images/vm.snap", 14));
	seed("protocol", "opened", 5, b, upp_put_opened(b, 1, 1 << 30));
	seed("protocol", "read", 6, b, upp_put_read(b, &rd));
	seed("protocol", "handle", 7, b, upp_put_handle(b, 9));
	seed("protocol", "error", 8, b, upp_put_error(b, ENOENT, "no such image", 13));
	/* DATA: n = 2, wanted 8 and 8 (big-endian u16s), then the reply. */
	b[0] = 2, b[1] = 0, b[2] = 8, b[3] = 0, b[4] = 8;
	n = 5 + upp_put_data_head(b + 5, 0, 2, got);
	memcpy(b + n, "abcde", 5);
	put32(b + 5, upp_crc32c(0, b + 5 + 8, n + 5 - 5 - 8));
	seed("protocol", "data", 9, b, n + 5);
}

/*
 * A snapshot of npages pages of 256 bytes with the page kinds in kinds
 * (stored pages numbered in order, filled with their index): into buf,
 * returns its length.
 */
static size_t snapshot(uint8_t *buf, const char *kinds, uint32_t flags)
{
	const size_t ps = 256;
	uint64_t npages = strlen(kinds), nstored = 0;
	size_t data_off = UPP_SNAP_HDR, map_off;

	memset(buf, 0, UPP_SNAP_HDR);
	for (uint64_t i = 0; i < npages; i++)
		if (kinds[i] == 'S')
			memset(buf + data_off + nstored++ * ps, (int)i + 1, ps);
	map_off = data_off + nstored * ps;
	memcpy(buf, UPP_SNAP_MAGIC, 8);
	put32(buf + 8, UPP_SNAP_VERSION);
	put32(buf + 12, ps);
	put64(buf + 16, npages * ps);
	put64(buf + 24, npages);
	put64(buf + 32, nstored);
	put64(buf + 40, data_off);
	put64(buf + 48, map_off);
	put32(buf + 56, flags);
	nstored = 0;
	for (uint64_t i = 0; i < npages; i++) {
		uint8_t *e = buf + map_off + i * UPP_SNAP_ENTRY;

		memset(e, 0, UPP_SNAP_ENTRY);
		e[0] = kinds[i] == 'S' ? UPP_SNAP_STORED : kinds[i] == 'Z' ? UPP_SNAP_ZERO :
		       kinds[i] == 'P' ? UPP_SNAP_PARENT : UPP_SNAP_ABSENT;
		if (kinds[i] == 'S')
			put64(e + 8, nstored++);
	}
	return map_off + npages * UPP_SNAP_ENTRY;
}

static void snapshots(void)
{
	static uint8_t b[2][16384], in[32768];
	size_t clen, plen;
	uint32_t pcrc;

	/* A full snapshot (stored, zero, absent pages), no parent; the same
	 * with the fixup bit clear (its CRCs are right already). */
	clen = snapshot(b[0], "SZ-S", 0);
	fuzz_snap_fix(b[0], clen, 256, 0);
	put32(in, (uint32_t)clen);
	memcpy(in + 4, b[0], clen);
	seed("snapshot", "full", 0, in, 4 + clen);
	seed("snapshot", "full_fixup", 1, in, 4 + clen);
	/* An incremental one on a parent. */
	plen = snapshot(b[1], "SSZ-", 0);
	pcrc = fuzz_snap_fix(b[1], plen, 256, 0);
	clen = snapshot(b[0], "PSPZ", UPP_SNAP_F_PARENT);
	fuzz_snap_fix(b[0], clen, 256, pcrc);
	put32(in, (uint32_t)clen);
	memcpy(in + 4, b[0], clen);
	memcpy(in + 4 + clen, b[1], plen);
	seed("snapshot", "incremental", 0, in, 4 + clen + plen);
	seed("snapshot", "incremental_fixup", 1, in, 4 + clen + plen);
}

static void working_sets(void)
{
	uint8_t b[9 + FUZZ_WS_HDR + 3 * 8] = { 0 };
	uint8_t *ws = b + 8;

	put64(b, 8); /* npages */
	memcpy(ws, "UPGWS001", 8);
	put64(ws + 8, 3);
	put64(ws + 16, 8);
	put64(ws + FUZZ_WS_HDR, 5);
	put64(ws + FUZZ_WS_HDR + 8, 0);
	put64(ws + FUZZ_WS_HDR + 16, 7);
	fuzz_ws_fix(ws, FUZZ_WS_HDR + 3 * 8);
	seed("ws", "three", 0, b, 8 + FUZZ_WS_HDR + 3 * 8);
	seed("ws", "three_fixup", 1, b, 8 + FUZZ_WS_HDR + 3 * 8);
}

static void json(void)
{
	static const char *docs[] = {
		"[{\"base_host_virt_addr\":140737488289792,\"size\":1073741824,\"offset\":0,"
		"\"page_size\":4096}]",
		"[ {\"base_host_virt_addr\": 4096, \"size\": 8192, \"offset\": 0, "
		"\"page_size_kib\": 4},\n  {\"base_host_virt_addr\": 16384, \"size\": 4096, "
		"\"offset\": 8192, \"page_size_kib\": 4, \"extra\": {\"a\": [1, 2.5e3, \"x\\u00e9\", "
		"true, null]}} ]",
		"[]",
	};
	char name[16];

	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		snprintf(name, sizeof(name), "doc%zu", i);
		seed("json", name, 4, docs[i], strlen(docs[i]));
	}
}

static void configs(void)
{
	static const char serve[] =
		"# upagerd serve\nroot = /srv/upager\nlisten = unix:/run/upagerd.sock\n"
		"listen = tcp:127.0.0.1:7070\nallow-remote = yes\nmax-clients = 256\n"
		"idle-timeout = 300\nread-timeout = 10\nstats-interval = 60\nready-fd = -1\n"
		"secret-file = /etc/upagerd.secret\nlog-file = /var/log/upagerd.log\n"
		"log-level = debug\n";
	static const char handle[] =
		"socket = /run/upagerd-handle.sock\n  mem-file\t= /srv/vm.snap \r\n"
		"max-clients = 4\nlog-level = warn\n";

	seed("config", "serve", 0, serve, sizeof(serve) - 1);
	seed("config", "handle", 1, handle, sizeof(handle) - 1);
}

int main(int argc, char **argv)
{
	char path[4096];

	top = argc > 1 ? argv[1] : ".";
	snprintf(path, sizeof(path), "%s/corpus", top);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return 1;
	protocol();
	snapshots();
	working_sets();
	json();
	configs();
	return 0;
}
