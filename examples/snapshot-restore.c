/* SPDX-License-Identifier: MIT */
/*
 * snapshot-restore: save a live in-memory hash index, then restore it in a
 * fresh process and answer the same queries, four ways:
 *
 *   eager     read the whole image into memory first (no demand paging);
 *   warm      the same queries again on that fully loaded copy (the floor);
 *   lazy      upager_snapshot_map: pages arrive as the queries touch them;
 *   prefetch  the same, with the working set a recorded run left beside the
 *             snapshot (PATH.ws) prefetched in the background, in order;
 *   reordered the same after upager_snapshot_reorder() laid the working set
 *             out first in the file, so that prefetch reads it in sequence;
 *   update    the same, then changes a few thousand keys and saves only what
 *             changed (upager_snapshot_save_incremental), and checks that;
 *             once with writes tracked by the kernel (WP_ASYNC and
 *             PAGEMAP_SCAN, where it has them), once comparing every page
 *             the queries touched with the parent's copy instead.
 *
 * Every restore runs in a new process (this program, re-executed) with the
 * files dropped from the page cache first, and checks every answer. It
 * prints time to first answer, query time, faults and bytes read from
 * storage, and ratios; --json adds one machine-readable line per figure.
 * The lazy restores run in both fault modes (--mode): faults resolved by
 * upager's handler threads, and inline (UPAGER_FAULT_INLINE: by the faulting
 * thread), alternating; each row says whether the disk or the faults bound
 * it: the share of its query time that reading its bytes at the disk's
 * sequential speed (the eager restore's, same run) would take.
 *
 *   snapshot-restore [--mib N] [--hot-keys N] [--queries N] [--dir DIR]
 *                    [--mode threads|inline|both] [--json]
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <upager.h>

/* A slot of the index: 64 bytes, a cache line. */
struct slot {
	uint64_t key;   /* 0: empty */
	uint64_t value;
	uint64_t payload[6]; /* derived from the key: answers are checked */
};

static struct {
	size_t mib;
	uint64_t hot, queries;
	char dir[200];
	bool json;
	bool modes[2];   /* run the lazy restores with threads, inline */
	bool inline_now; /* this restore's pager is inline (--fault-mode) */
} opt = { 512, 32768, 2000000, "", false, { true, true }, false };

static const char *const mode_names[] = { "threads", "inline" };

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

static uint64_t key_of(uint64_t i)
{
	return mix(i) | 1; /* never 0 */
}

static size_t nslots(void)
{
	return opt.mib * (1u << 20) / sizeof(struct slot);
}

/* 60% full: a few million keys for 512 MiB. */
static uint64_t nkeys(void)
{
	return nslots() / 10 * 6;
}

static void build(struct slot *t)
{
	size_t n = nslots();

	for (uint64_t i = 0; i < nkeys(); i++) {
		uint64_t k = key_of(i);
		size_t s = k % n;

		while (t[s].key)
			s = (s + 1) % n;
		t[s].key = k;
		t[s].value = i;
		for (int j = 0; j < 6; j++)
			t[s].payload[j] = mix(k + (uint64_t)j);
	}
}

/* The slot of key_of(i) (linear probing), or NULL. */
static struct slot *find_slot(const struct slot *t, uint64_t i)
{
	uint64_t k = key_of(i);
	size_t n = nslots(), s = k % n;

	while (t[s].key && t[s].key != k)
		s = (s + 1) % n;
	return t[s].key == k ? (struct slot *)&t[s] : NULL;
}

/* Looks key_of(i) up; 0 if the answer is right. */
static int query(const struct slot *t, uint64_t i)
{
	const struct slot *sl = find_slot(t, i);

	if (!sl || sl->value != i)
		return -1;
	for (int j = 0; j < 6; j++)
		if (sl->payload[j] != mix(sl->key + (uint64_t)j))
			return -1;
	return 0;
}

/* The workload: queries over a hot set of keys (the same sequence every run). */
static uint64_t nth_query(uint64_t q)
{
	return mix(q ^ 0x5DEECE66Dull) % opt.hot * (nkeys() / opt.hot);
}

static void path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", opt.dir, name);
}

/* Bytes this process read from storage (not the page cache). */
static uint64_t read_bytes(void)
{
	char line[128];
	uint64_t v = 0;
	FILE *f = fopen("/proc/self/io", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "read_bytes: %" SCNu64, &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

static void drop_cache(const char *p)
{
	int fd = open(p, O_RDONLY);

	if (fd >= 0) {
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

static int write_all(int fd, const void *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n <= 0)
			return -1;
		buf = (const char *)buf + n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- a restore, in its own process: prints "first query faults bytes" ---- */

struct result {
	double first, query, warm;
	uint64_t faults, kfaults, bytes, prefetched;
	double inc_write;   /* update: the time to change the keys, */
	double inc_save;    /* the incremental save's time... */
	uint64_t inc_bytes; /* ...and its file's size */
};

#define UPDATES 2000 /* keys the "update" restore changes before its incremental save */
#define UPDATED(v) ((v) + 1000000000000ull)

/*
 * After the queries: change UPDATES hot keys' values, save only what changed
 * on top of the snapshot restored (upager_snapshot_save_incremental), and
 * restore that to check it: the new values, and the old ones elsewhere.
 */
static int update_and_save(upager_t *pager, struct slot *t, struct result *r)
{
	char snap[256], v2[256];
	upager_region_t *again;
	struct stat st;
	double t0;
	int ret;

	path(snap, sizeof(snap), "index.snap");
	path(v2, sizeof(v2), "index.v2.snap");
	t0 = now_s();
	for (uint64_t j = 0; j < UPDATES; j++) {
		struct slot *sl = find_slot(t, nth_query(j));

		if (!sl)
			return -1;
		if (sl->value == nth_query(j))
			sl->value = UPDATED(sl->value);
	}
	r->inc_write = now_s() - t0;
	t0 = now_s();
	ret = upager_snapshot_save_incremental(t, opt.mib << 20, snap, v2);
	r->inc_save = now_s() - t0;
	if (ret < 0 || stat(v2, &st) < 0) {
		fprintf(stderr, "snapshot-restore: incremental save: %s\n", upager_strerror(ret));
		return -1;
	}
	r->inc_bytes = (uint64_t)st.st_size;
	ret = upager_snapshot_map(pager, v2, 0, &again);
	if (ret < 0)
		return -1;
	for (uint64_t j = 0; j < UPDATES && ret == 0; j++) {
		struct slot *sl = find_slot(upager_region_addr(again), nth_query(j));

		if (!sl || sl->value != UPDATED(nth_query(j)))
			ret = -1;
	}
	/* Keys off the hot set (never updated): as they were. */
	for (uint64_t j = 0, step = nkeys() / opt.hot; j < 5000 && ret == 0 && step > 1; j++) {
		uint64_t i = (j * 7919) % nkeys();

		if (i % step && query(upager_region_addr(again), i))
			ret = -1;
	}
	upager_release(again);
	unlink(v2);
	if (ret < 0)
		fprintf(stderr, "snapshot-restore: the incremental snapshot restored wrong\n");
	return ret;
}

static int run_queries(const struct slot *t, double t0, struct result *r)
{
	for (uint64_t q = 0; q < opt.queries; q++) {
		if (query(t, nth_query(q))) {
			fprintf(stderr, "snapshot-restore: wrong answer to query %" PRIu64 "\n", q);
			return -1;
		}
		if (q == 0)
			r->first = now_s() - t0;
	}
	r->query = now_s() - t0 - r->first;
	return 0;
}

static int restore(const char *mode)
{
	char snap[256], raw[256];
	struct result r = { 0 };
	struct rusage ru0, ru1;
	uint64_t io0 = read_bytes();
	size_t len = opt.mib << 20;
	double t0 = now_s();
	int ret = 0;

	path(snap, sizeof(snap), "index.snap");
	path(raw, sizeof(raw), "index.raw");
	getrusage(RUSAGE_SELF, &ru0);
	if (!strcmp(mode, "eager")) {
		struct slot *t = mmap(NULL, len, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		int fd = open(raw, O_RDONLY);

		if (t == MAP_FAILED || fd < 0)
			return 1;
		for (size_t off = 0; off < len;) {
			ssize_t n = read(fd, (char *)t + off, len - off < (8u << 20) ? len - off : 8u << 20);

			if (n <= 0)
				return 1;
			off += (size_t)n;
		}
		close(fd);
		ret = run_queries(t, t0, &r);
		r.query += r.first; /* the first query is part of the phase */
		if (ret == 0) { /* again, now that all of it is in memory: the floor */
			double w0 = now_s();
			struct result again;

			ret = run_queries(t, w0, &again);
			r.warm = again.query + again.first;
		}
	} else {
		unsigned flags = !strcmp(mode, "record") ? UPAGER_SNAP_RECORD
				 : !strcmp(mode, "prefetch") || !strncmp(mode, "update", 6)
				 ? UPAGER_SNAP_PREFETCH
				 : 0;
		upager_options_t o;
		upager_region_t *region;
		upager_stats_t st;
		upager_t *pager;

		upager_options_init(&o);
		if (opt.inline_now)
			o.fault_mode = UPAGER_FAULT_INLINE;
		if (!strcmp(mode, "update-compare")) /* no write tracking: pages compared */
			o.disable_features = UPAGER_FEAT_WP_ASYNC;
		ret = upager_create(&pager, &o);
		if (ret == 0)
			ret = upager_snapshot_map(pager, snap, flags, &region);
		if (ret < 0) {
			fprintf(stderr, "snapshot-restore: %s: %s\n", snap, upager_strerror(ret));
			return 1;
		}
		upager_region_advise(region, UPAGER_ADV_RANDOM); /* hash lookups */
		ret = run_queries(upager_region_addr(region), t0, &r);
		r.query += r.first;
		upager_region_stats(region, &st);
		r.faults = st.faults;
		r.prefetched = st.pages_prefetched;
		if (ret == 0 && !strncmp(mode, "update", 6))
			ret = update_and_save(pager, upager_region_addr(region), &r);
		upager_release(region); /* writes PATH.ws when recording */
		upager_destroy(pager);
	}
	getrusage(RUSAGE_SELF, &ru1);
	r.kfaults = (uint64_t)(ru1.ru_minflt - ru0.ru_minflt + ru1.ru_majflt - ru0.ru_majflt);
	r.bytes = read_bytes() - io0;
	printf("%.6f %.6f %.6f %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %.6f %" PRIu64
	       " %.6f\n", r.first, r.query, r.warm, r.faults, r.kfaults, r.bytes, r.prefetched,
	       r.inc_save, r.inc_bytes, r.inc_write);
	return ret ? 1 : 0;
}

/* Runs this program again as "--restore MODE" with cold files, its pager
 * inline or not; its result. */
static int spawn_in(const char *self, const char *mode, bool inl, struct result *r)
{
	char snap[256], raw[256], ws[260], line[256], mib[32], hot[32], nq[32];
	int pfd[2], st;
	ssize_t n;
	pid_t pid;

	path(snap, sizeof(snap), "index.snap");
	path(raw, sizeof(raw), "index.raw");
	snprintf(ws, sizeof(ws), "%s.ws", snap);
	drop_cache(snap);
	drop_cache(raw);
	snprintf(mib, sizeof(mib), "%zu", opt.mib);
	snprintf(hot, sizeof(hot), "%" PRIu64, opt.hot);
	snprintf(nq, sizeof(nq), "%" PRIu64, opt.queries);
	if (pipe(pfd))
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		execl(self, self, "--restore", mode, "--dir", opt.dir, "--mib", mib, "--hot-keys", hot,
		      "--queries", nq, "--fault-mode", mode_names[inl], (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	n = read(pfd[0], line, sizeof(line) - 1);
	close(pfd[0]);
	waitpid(pid, &st, 0);
	if (n <= 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		return -1;
	line[n] = '\0';
	return sscanf(line,
		      "%lf %lf %lf %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %lf %" SCNu64 " %lf",
		      &r->first, &r->query, &r->warm, &r->faults, &r->kfaults, &r->bytes,
		      &r->prefetched, &r->inc_save, &r->inc_bytes, &r->inc_write) == 10
		       ? 0 : -1;
}

static int spawn(const char *self, const char *mode, struct result *r)
{
	return spawn_in(self, mode, false, r);
}

/* The restore MODE in each fault mode asked for, alternating: r[0] threads,
 * r[1] inline. */
static int spawn_modes(const char *self, const char *mode, struct result r[2])
{
	for (int m = 0; m < 2; m++)
		if (opt.modes[m] && spawn_in(self, mode, m == 1, &r[m]))
			return -1;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: snapshot-restore [--mib N] [--hot-keys N] [--queries N] [--dir DIR] "
		   "[--mode threads|inline|both] [--json]\n"
		   "  --mib N       size of the index (default 512)\n"
		   "  --hot-keys N  keys the queries draw from (default 32768)\n"
		   "  --queries N   queries per run (default 2000000)\n"
		   "  --dir DIR     where the snapshot goes (default: a new directory in $TMPDIR)\n"
		   "  --mode M      who resolves the lazy restores' faults: upager's handler\n"
		   "                threads, the faulting thread (inline), or both (default)\n"
		   "  --json        also print a JSON line per figure\n");
}

static const char *const row_titles[] = { "lazy", "lazy, recording ws", "lazy + ws prefetch",
					    "  ... ws laid out first" };
/* JSON names: the eager restore, then the rows above. */
static const char *const row_names[] = { "eager", "lazy", "lazy_record", "lazy_prefetch",
					  "lazy_prefetch_reordered" };

/* The share of r's query time that reading its bytes at the disk's
 * sequential speed would take: near 1, the disk is its floor. */
static double disk_share(const struct result *r, double disk_bps)
{
	return disk_bps > 0 && r->query > 0 ? (double)r->bytes / disk_bps / r->query : 0;
}

static const char *bound(const struct result *r, double disk_bps)
{
	return disk_share(r, disk_bps) >= 0.5 ? "disk" : "faults";
}

int main(int argc, char **argv)
{
	const char *restore_mode = NULL;
	char snap[256], raw[256], ws[260];
	struct result eager, lazy[2], rec[2], pre[2], ord[2], upd, updc;
	double t0, t_raw, t_snap, t_reorder;
	uint64_t feats = 0;
	struct slot *t;
	size_t len;
	int fd, m0;
	bool own_dir = false;
	double disk_bps;
	/* The lazy restores, by kind, then by mode. */
	struct result *const rows[4] = { lazy, rec, pre, ord };

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--json")) {
			opt.json = true;
			continue;
		}
		if (!strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		}
		if (!v) {
			usage(stderr);
			return 2;
		}
		i++;
		if (!strcmp(a, "--mib"))
			opt.mib = strtoul(v, NULL, 10);
		else if (!strcmp(a, "--hot-keys"))
			opt.hot = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--queries"))
			opt.queries = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--dir"))
			snprintf(opt.dir, sizeof(opt.dir), "%s", v);
		else if (!strcmp(a, "--restore"))
			restore_mode = v;
		else if (!strcmp(a, "--fault-mode"))
			opt.inline_now = !strcmp(v, "inline");
		else if (!strcmp(a, "--mode") && (!strcmp(v, "threads") || !strcmp(v, "inline") ||
						  !strcmp(v, "both"))) {
			opt.modes[0] = strcmp(v, "inline") != 0;
			opt.modes[1] = strcmp(v, "threads") != 0;
		}
		else {
			usage(stderr);
			return 2;
		}
	}
	if (opt.mib < 4 || opt.hot == 0 || opt.hot > nkeys() || opt.queries == 0) {
		usage(stderr);
		return 2;
	}
	if (restore_mode)
		return restore(restore_mode);
	if (opt.modes[1]) {
		/* Inline faults need kernel features (upager_create(3)): without
		 * them, the threaded restores alone, saying so. */
		upager_options_t o;
		upager_t *p;
		int ret;

		upager_options_init(&o);
		o.fault_mode = UPAGER_FAULT_INLINE;
		ret = upager_create(&p, &o);
		if (ret == 0) {
			upager_destroy(p);
		} else {
			fprintf(stderr, "snapshot-restore: inline faults unavailable here (%s): "
					"threaded restores only\n", upager_strerror(ret));
			opt.modes[1] = false;
			opt.modes[0] = true;
		}
	}

	if (!opt.dir[0]) {
		snprintf(opt.dir, sizeof(opt.dir), "%s/upager-snapdemo-XXXXXX",
			 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		if (!mkdtemp(opt.dir)) {
			perror("snapshot-restore: mkdtemp");
			return 1;
		}
		own_dir = true;
	}
	path(snap, sizeof(snap), "index.snap");
	path(raw, sizeof(raw), "index.raw");
	snprintf(ws, sizeof(ws), "%s.ws", snap);
	len = opt.mib << 20;

	/* The live state. */
	t0 = now_s();
	t = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (t == MAP_FAILED) {
		perror("snapshot-restore: mmap");
		return 1;
	}
	build(t);
	printf("built a hash index: %" PRIu64 " keys in %zu MiB (%.2f s)\n", nkeys(), opt.mib,
	       now_s() - t0);

	/* The disk's own sequential write speed, now: a raw image, write + fsync. */
	t0 = now_s();
	fd = open(raw, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	if (fd < 0 || write_all(fd, t, len) || fsync(fd)) {
		perror("snapshot-restore: writing the raw image");
		return 1;
	}
	close(fd);
	t_raw = now_s() - t0;
	t0 = now_s();
	fd = upager_snapshot_save(t, len, snap);
	t_snap = now_s() - t0;
	if (fd < 0) {
		fprintf(stderr, "snapshot-restore: save: %s\n", upager_strerror(fd));
		return 1;
	}
	printf("saved: upager_snapshot_save %.0f MiB/s; raw write+fsync (the disk) %.0f MiB/s\n",
	       opt.mib / t_snap, opt.mib / t_raw);
	munmap(t, len);
	unlink(ws);

	if (spawn(argv[0], "eager", &eager) || spawn_modes(argv[0], "lazy", lazy) ||
	    spawn_modes(argv[0], "record", rec) || spawn_modes(argv[0], "prefetch", pre)) {
		fprintf(stderr, "snapshot-restore: a restore failed\n");
		return 1;
	}
	t0 = now_s();
	fd = upager_snapshot_reorder(snap);
	t_reorder = now_s() - t0;
	if (fd < 0 || spawn_modes(argv[0], "prefetch", ord)) {
		fprintf(stderr, "snapshot-restore: reorder: %s\n", upager_strerror(fd));
		return 1;
	}
	if (spawn(argv[0], "update", &upd) || spawn(argv[0], "update-compare", &updc)) {
		fprintf(stderr, "snapshot-restore: the update run failed\n");
		return 1;
	}
	m0 = opt.modes[0] ? 0 : 1; /* the mode of the ratios below */
	/* The disk's sequential read speed, this run: the eager restore reads
	 * the whole image (its first answer is that read and one query). */
	disk_bps = eager.first > 0 ? (double)eager.bytes / eager.first : 0;

	printf("\n%" PRIu64 " queries over %" PRIu64 " hot keys, each restore in a new process, "
	       "files cold:\n", opt.queries, opt.hot);
	printf("%-24s %-7s %14s %12s %10s %10s %12s %6s %s\n", "restore", "mode", "first answer",
	       "queries", "faults", "k-faults", "MiB read", "disk", "bound");
	printf("%-24s %-7s %11.3f ms %10.3f s %10s %10" PRIu64 " %12.1f %5.0f%% %s\n",
	       "eager (read it all)", "-", eager.first * 1e3, eager.query, "-", eager.kfaults,
	       eager.bytes / 1048576.0, 100.0, "disk");
	printf("%-24s %-7s %14s %10.3f s %10s %10s %12s %6s %s\n", "warm (fully loaded)", "-", "-",
	       eager.warm, "-", "-", "-", "-", "memory");
	for (int i = 0; i < 4; i++)
		for (int m = 0; m < 2; m++) {
			const struct result *x = &rows[i][m];

			if (!opt.modes[m])
				continue;
			printf("%-24s %-7s %11.3f ms %10.3f s %10" PRIu64 " %10" PRIu64
			       " %12.1f %5.0f%% %s\n", row_titles[i], mode_names[m], x->first * 1e3,
			       x->query, x->faults, x->kfaults, x->bytes / 1048576.0,
			       100.0 * disk_share(x, disk_bps), bound(x, disk_bps));
		}
	printf("(disk: the share of the query time that reading the row's bytes at the eager "
	       "restore's %.0f MiB/s would take; bound: disk from 50%% on, else faults)\n",
	       disk_bps / 1048576.0);
	printf("(the working set: %" PRIu64 " pages, prefetched in full; upager_snapshot_reorder "
	       "took %.2f s)\n", pre[m0].prefetched, t_reorder);
	printf("incremental save after changing %d keys of a restore: %.1f KiB in %.1f ms "
	       "(the full save: %zu MiB in %.0f ms)\n", UPDATES, upd.inc_bytes / 1024.0,
	       upd.inc_save * 1e3, opt.mib, t_snap * 1e3);
	printf("  %s: %.1f ms; comparing touched pages instead: %.1f KiB in %.1f ms "
	       "(queries %.3f s tracked, %.3f s not; the %d updates %.2f ms, %.2f ms)\n",
	       (upager_probe(0, &feats, NULL, 0) == 0 && (feats & UPAGER_FEAT_WP_ASYNC) &&
		(feats & UPAGER_FEAT_PAGEMAP_SCAN))
		       ? "writes tracked by the kernel"
		       : "no write tracking on this kernel (both compare)",
	       upd.inc_save * 1e3, updc.inc_bytes / 1024.0, updc.inc_save * 1e3, upd.query,
	       updc.query, UPDATES, upd.inc_write * 1e3, updc.inc_write * 1e3);
	printf("\nratios (%s): first answer lazy/eager %.4fx; queries prefetch/warm %.2fx "
	       "(ws laid out first: %.2fx); prefetch/lazy %.2fx (%.2fx); save/disk write %.2fx\n",
	       mode_names[m0], lazy[m0].first / eager.first, pre[m0].query / eager.warm,
	       ord[m0].query / eager.warm, pre[m0].query / lazy[m0].query,
	       ord[m0].query / lazy[m0].query, t_raw / t_snap);
	if (opt.modes[0] && opt.modes[1])
		printf("inline/threads query time: lazy %.2fx, recording %.2fx, ws prefetched %.2fx, "
		       "laid out first %.2fx\n", lazy[1].query / lazy[0].query,
		       rec[1].query / rec[0].query, pre[1].query / pre[0].query,
		       ord[1].query / ord[0].query);
	if (opt.json) {
		for (int i = 0; i < 5; i++)
			for (int m = 0; m < 2; m++) {
				const struct result *x = i ? &rows[i - 1][m] : &eager;

				if (i ? !opt.modes[m] : m)
					continue;
				printf("{\"bench\":\"snapshot\",\"restore\":\"%s\",\"mode\":\"%s\","
				       "\"mib\":%zu,\"queries\":%" PRIu64 ",\"first_answer_s\":%.6f,"
				       "\"query_s\":%.6f,\"upager_faults\":%" PRIu64
				       ",\"kernel_faults\":%" PRIu64 ",\"bytes_read\":%" PRIu64
				       ",\"pages_prefetched\":%" PRIu64 ",\"disk_share\":%.3f,"
				       "\"bound\":\"%s\"}\n",
				       row_names[i], i ? mode_names[m] : "none", opt.mib, opt.queries,
				       x->first, x->query, x->faults, x->kfaults, x->bytes, x->prefetched,
				       i ? disk_share(x, disk_bps) : 1.0, i ? bound(x, disk_bps) : "disk");
			}
		printf("{\"bench\":\"snapshot\",\"restore\":\"warm\",\"mode\":\"none\",\"mib\":%zu,"
		       "\"queries\":%" PRIu64 ",\"query_s\":%.6f}\n", opt.mib, opt.queries, eager.warm);
		printf("{\"bench\":\"snapshot_incremental\",\"keys_changed\":%d,\"save_s\":%.6f,"
		       "\"file_bytes\":%" PRIu64 ",\"full_save_s\":%.6f,\"full_mib\":%zu,"
		       "\"compare_save_s\":%.6f,\"compare_file_bytes\":%" PRIu64
		       ",\"query_tracked_s\":%.6f,\"query_untracked_s\":%.6f"
		       ",\"updates_tracked_s\":%.6f,\"updates_untracked_s\":%.6f}\n", UPDATES,
		       upd.inc_save, upd.inc_bytes, t_snap, opt.mib, updc.inc_save, updc.inc_bytes,
		       upd.query, updc.query, upd.inc_write, updc.inc_write);
		printf("{\"bench\":\"snapshot_ratios\",\"mode\":\"%s\",\"first_answer_lazy_vs_eager\":%.5f,"
		       "\"query_prefetch_vs_warm\":%.3f,\"query_prefetch_vs_lazy\":%.3f,"
		       "\"query_reordered_prefetch_vs_warm\":%.3f,"
		       "\"query_reordered_prefetch_vs_lazy\":%.3f,\"reorder_s\":%.3f,"
		       "\"save_vs_disk_write\":%.3f,\"save_mib_s\":%.1f,\"disk_write_mib_s\":%.1f,"
		       "\"disk_read_mib_s\":%.1f}\n",
		       mode_names[m0], lazy[m0].first / eager.first, pre[m0].query / eager.warm,
		       pre[m0].query / lazy[m0].query, ord[m0].query / eager.warm,
		       ord[m0].query / lazy[m0].query, t_reorder, t_raw / t_snap, opt.mib / t_snap,
		       opt.mib / t_raw, disk_bps / 1048576.0);
		if (opt.modes[0] && opt.modes[1])
			printf("{\"bench\":\"snapshot_modes\",\"query_inline_vs_threads\":{\"lazy\":%.3f,"
			       "\"lazy_record\":%.3f,\"lazy_prefetch\":%.3f,"
			       "\"lazy_prefetch_reordered\":%.3f},\"first_answer_inline_vs_threads\":"
			       "{\"lazy\":%.3f,\"lazy_prefetch\":%.3f}}\n",
			       lazy[1].query / lazy[0].query, rec[1].query / rec[0].query,
			       pre[1].query / pre[0].query, ord[1].query / ord[0].query,
			       lazy[1].first / lazy[0].first, pre[1].first / pre[0].first);
	}
	unlink(raw);
	unlink(snap);
	unlink(ws);
	if (own_dir)
		rmdir(opt.dir);
	return 0;
}
