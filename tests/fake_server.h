/* SPDX-License-Identifier: MIT */
/*
 * A scriptable fake page server for the remote source's tests: slow,
 * dying, lying, erring and impostor servers, scripted per connection and
 * per READ. It runs as a process of its own (tests/fake_server, forked and
 * exec'ed by upt_fake_start), so that no test forks a child beside its
 * threads: under the sanitizers such a child can inherit a runtime lock
 * held (GCC 12's AddressSanitizer deadlocked in malloc that way).
 *
 * The test and the server share one struct upt_fake (a memfd both map):
 * the script, copied in by upt_fake_start, and what the server counted.
 */
#ifndef UPAGER_TEST_FAKE_SERVER_H
#define UPAGER_TEST_FAKE_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* How a connection goes. */
enum upt_fake_mode {
	UPT_FAKE_GOOD,      /* speaks the protocol; READs answered as the read script says */
	UPT_FAKE_DRIP,      /* its HELLO reply one byte every 0.5 s, then as GOOD */
	UPT_FAKE_CLOSE,     /* accepts and closes */
	UPT_FAKE_DIE_HELLO, /* half a HELLO reply, then closes */
	UPT_FAKE_DIE_DATA,  /* a good handshake, then half of the first DATA reply */
	UPT_FAKE_DEAF,      /* a good handshake, then reads nothing more */
};

/* How a READ of the object (not of OBJECT.ws) is answered. */
struct upt_fake_read {
	bool hold;           /* first waits for upt_fake_release */
	bool error;          /* ERROR EIO instead of the data, */
	uint64_t error_from; /* if it asks for this many bytes or more (0: any) */
	int delay_ms;        /* before the ERROR */
};

#define UPT_FAKE_STEPS 8

struct upt_fake_script {
	/* The i-th connection's mode; the last entry for all after (none: GOOD). */
	enum upt_fake_mode conn[UPT_FAKE_STEPS];
	int nconn;
	/* The first connection closes after this many READs (0: never), so
	 * that the client has to connect again. */
	int close_after_reads;
	/* The i-th READ (over all connections); the last for all after (none:
	 * every READ gets its data). */
	struct upt_fake_read read[UPT_FAKE_STEPS];
	int nread;
	/* What OPEN and OPEN_IMAGE answer: an object of size bytes, each
	 * upt_byte(offset, seed). */
	uint64_t size;
	unsigned seed;
	/* Non-NULL: challenges the client and proves itself, as upagerd does;
	 * from connection impostor_from on (0: never) it plays an impostor that
	 * leaves the AUTH bit out. It answers any client proof with its own. */
	const char *secret;
	int impostor_from;
	/* Waits before each HELLO reply and each READ reply of OBJECT.ws (0: none). */
	int hello_delay_ms, ws_read_delay_ms;
	/* OBJECT.ws: its size, 0 if there is none (ERROR ENOENT), and its bytes
	 * (ws_size of them; NULL: zeros). */
	uint64_t ws_size;
	const uint8_t *ws;
};

#define UPT_FAKE_SECRET_MAX 128

/* Shared by the test and the server process. */
struct upt_fake {
	/* The script; its secret and ws bytes are in secret[] and after the struct. */
	struct upt_fake_script script;
	char secret[UPT_FAKE_SECRET_MAX];
	bool has_ws_bytes;
	/* Where it listens: uri for upager_source_remote. */
	char dir[64], path[96], uri[104];
	/* Counted by the server: connections accepted, READs of the object
	 * received (before any hold or delay), answered with ERROR, READs of
	 * OBJECT.ws received. */
	atomic_int conns, reads, errors, ws_reads;
	atomic_bool released;
	/* The test's side. */
	pid_t pid;
	size_t map_len;
};

/*
 * Starts tests/fake_server (as built in this tree: run from the build
 * directory) on a Unix socket in a temporary directory of its own, with a
 * copy of script. Call it from the thread that will stop it: the server
 * dies with that thread. NULL if it could not start (or the script has
 * more than UPT_FAKE_STEPS steps).
 */
struct upt_fake *upt_fake_start(const struct upt_fake_script *script);
/* Lets the READs that hold go on. */
void upt_fake_release(struct upt_fake *fk);
/* Kills and reaps the server, removes its socket and directory, frees fk. */
void upt_fake_stop(struct upt_fake *fk);

#endif
