#!/bin/sh
# The benchmark runs, prints a JSON line per system and workload with the
# fields its readers rely on, and finds kernel and upager reading the same
# bytes (it fails on a checksum mismatch). Tiny sizes: this checks the tool,
# not the speed.
set -e
top=$PWD
out=$(mktemp)
err=$(mktemp)
dat=$(mktemp -p "${TMPDIR:-/tmp}" upager-bench-XXXXXX)
# The bench makes its page server's directory in the current one: run it in
# an empty one, which must be empty again after (nothing left behind).
cwd=$(mktemp -d)
trap 'rm -f "$out" "$err" "$dat"; rm -rf "$cwd"' EXIT
rm -f "$dat"
(cd "$cwd" && "$top/tests/bench/upager-bench" --upagerd "$top/daemon/upagerd" --reps 1 \
	--zero-mib 8 --file-mib 8 --remote-mib 8 --lat-pages 256 --threads 1,2 --file "$dat") \
	>"$out" 2>"$err"
left=$(ls -A "$cwd")
[ -z "$left" ] || { echo "the bench left behind: $left $(ls -A "$cwd"/* 2>/dev/null)"; exit 1; }
for w in zero_seq zero_rand file_seq_cold file_seq_warm file_rand_cold file_rand_warm \
	latency_same_cpu latency_other_cpu remote_seq_unix remote_rand_tcp handle_seq handle_rand \
	reserve_1tib; do
	grep -q "^{\"bench\":\"upager\",\"workload\":\"$w\"" "$out" || { echo "no row for $w"; exit 1; }
done
for k in system threads pages page_size seconds pages_per_s peak_rss_kib; do
	grep '^{"bench"' "$out" | grep -v reserve_1tib | grep -vq "\"$k\":" && { echo "a row lacks $k"; exit 1; }
done
grep '"system":"upager"' "$out" | grep -v reserve_1tib | grep -vq '"ratio_vs_kernel":' && { echo "an upager row lacks ratio_vs_kernel"; exit 1; }
grep '"system":"upagerd-handle"' "$out" | grep -vq '"ratio_vs_kernel":' && { echo "a handle row lacks ratio_vs_kernel"; exit 1; }
grep '"system":"upager-remote"' "$out" | grep -vq '"ratio_vs_file_source":' && { echo "a remote row lacks ratio_vs_file_source"; exit 1; }
grep -q "^workload .*ratio" "$out" || { echo "no table"; exit 1; }
# Inline rows, unless the bench said this kernel (or UPAGER_DISABLE) cannot.
if ! grep -q "inline mode unavailable here" "$err"; then
	grep -q '"workload":"remote_rand_unix","mode":"inline"' "$out" || { echo "no inline remote row"; exit 1; }
fi
echo "bench: $(grep -c '^{"bench"' "$out") JSON rows and the table"

# The URL bench (nginx behind the delaying proxies), tiny: a row per system,
# workload, thread count and round trip, the restores and the shared cache,
# or a skip line saying why (no nginx); no failed row.
(cd "$cwd" && UPAGER_BENCH_URL_MIB=8 UPAGER_BENCH_URL_RUNS=1 UPAGER_BENCH_URL_TOUCHES=64 \
	UPAGER_BENCH_URL_DELAY_MS=1 UPAGER_BENCH_URL_HOT_MIB=1 UPAGER_BENCH_URL_PROCS=2 \
	"$top/tests/bench/url") >"$out" 2>"$err" || { cat "$err"; exit 1; }
if grep -q '"skipped"' "$out"; then
	echo "url bench: $(grep -m1 -o '"skipped":"[^"]*"' "$out")"
else
	grep '^{"bench"' "$out" | grep -q '"failed"' && { grep '"failed"' "$out"; exit 1; }
	for w in url_seq_read url_rand_read; do
		for th in 1 8; do
			for sys in kernel_local_cold upager_file_local_cold upager_url_4m; do
				grep -q "^{\"bench\":\"$w\",\"system\":\"$sys\",\"mode\":\"threads\",\"threads\":$th," "$out" ||
					{ echo "no $w row for $sys, $th threads"; exit 1; }
			done
		done
		for sys in upager_url_1m upager_url_16m upager_url_4m_cached; do
			grep -q "^{\"bench\":\"$w\",\"system\":\"$sys\"" "$out" || { echo "no $w row for $sys"; exit 1; }
		done
	done
	for sys in snap_local_cold snap_url_cold snap_url_warm_cache; do
		grep -q "^{\"bench\":\"url_snapshot_restore\",\"system\":\"$sys\"" "$out" ||
			{ echo "no restore row for $sys"; exit 1; }
	done
	grep -q '^{"bench":"url_shared_cache","system"' "$out" || { echo "no shared cache row"; exit 1; }
	echo "url bench: $(grep -c '^{"bench"' "$out") JSON rows"
fi
left=$(ls -A "$cwd")
[ -z "$left" ] || { echo "the url bench left behind: $left"; exit 1; }
