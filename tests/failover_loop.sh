#!/bin/sh
# The failover kill test (tests/check_failover.c, worker_killed_five_times)
# FAILOVER_RUNS times in a row (default 20); stops at the first failure.
# Prints the pause every kill cost (the longest fault across it) as p50,
# p99 and max over all kills, and one {"bench":"failover",...} JSON line.
# Run from the build tree: make check-failover-loop [FAILOVER_RUNS=20].
set -u
runs=${FAILOVER_RUNS:-20}
test_bin=${FAILOVER_TEST:-tests/check_failover}
log=$(mktemp "${TMPDIR:-/tmp}/upager-failover.XXXXXX")
trap 'rm -f "$log" "$log.pauses"' EXIT INT TERM
: >"$log.pauses"
start=$(date +%s)
i=1
while [ "$i" -le "$runs" ]; do
	if ! CK_RUN_CASE=kill "$test_bin" >"$log" 2>&1; then
		cat "$log"
		echo "failover-loop: run $i of $runs FAILED (above)"
		exit 1
	fi
	if grep -q '^SKIP\|^[0-9]*%: Checks: 0' "$log"; then
		cat "$log"
		echo "failover-loop: skipped (above)"
		exit 77
	fi
	sed -n 's/^failover: kill [0-9]*: longest fault across it \([0-9]*\) us$/\1/p' "$log" >>"$log.pauses"
	echo "failover-loop: run $i of $runs passed: $(grep '^failover: [0-9]* kills' "$log")"
	i=$((i + 1))
done
sort -n "$log.pauses" | awk -v runs="$runs" -v secs=$(($(date +%s) - start)) '
	{ v[NR] = $1 }
	END {
		if (NR == 0) { print "failover-loop: no pause measured"; exit 1 }
		p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1]; max = v[NR]
		printf "failover-loop: %d runs in a row passed in %d s; %d kills: pause p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", runs, secs, NR, p50 / 1000, p99 / 1000, max / 1000
		printf "{\"bench\":\"failover\",\"runs\":%d,\"kills\":%d,\"pause_p50_us\":%d,\"pause_p99_us\":%d,\"pause_max_us\":%d}\n", runs, NR, p50, p99, max
	}'
