#!/bin/sh
# make fuzz: builds each libFuzzer target (tests/fuzz/fuzz_*.c) with clang,
# ASan, UBSan and libFuzzer, straight from the sources it needs, and runs it
# FUZZ_SECONDS (default 60) from its seed corpus (tests/fuzz/corpus/NAME/;
# new inputs go to a scratch copy, not the tree). Fails on any crash, leak,
# timeout or sanitizer report, leaving the input in tests/fuzz/artifacts/.
# Without a clang that links -fsanitize=fuzzer, says why and exits 0
# (configure found none: FUZZ_SKIP). Arguments: target names (default all).
# Environment from make: FUZZ_CC, FUZZ_SKIP, FUZZ_CPPFLAGS, URING_LIBS, srcdir.
# make fuzz-seeds (--seeds) rewrites the seed corpora with tests/fuzz/mkseeds.c.
set -u
: "${srcdir:=.}" "${FUZZ_SECONDS:=60}" "${FUZZ_CPPFLAGS:=}" "${URING_LIBS:=}" "${CC:=cc}"
src=$srcdir/tests/fuzz
out=tests/fuzz
mkdir -p "$out"

if [ "${1:-}" = --seeds ]; then
	$CC -Wall -Wextra $FUZZ_CPPFLAGS -o "$out/mkseeds" "$src/mkseeds.c" \
		"$srcdir/lib/crc32c.c" "$srcdir/lib/protocol.c" "$srcdir/lib/sha256.c" && "$out/mkseeds" "$src"
	exit
fi
if [ -n "${FUZZ_SKIP:-}" ]; then
	echo "fuzz: skipped: ${FUZZ_SKIP}"
	exit 0
fi

flags="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
proto="$srcdir/lib/crc32c.c $srcdir/lib/protocol.c $srcdir/lib/sha256.c"
# The sources each target is built from (the whole library's for the .ws
# parser: lib/workset.c also queues prefetches on regions).
sources() {
	case $1 in
	protocol) echo "$proto" ;;
	snapshot) echo "$proto $srcdir/lib/fileio.c $srcdir/lib/snapfmt.c" ;;
	ws) echo "$srcdir"/lib/*.c ;;
	json) echo "$srcdir/daemon/json.c" ;;
	config) echo "$srcdir/daemon/options.c" ;;
	esac
}

[ $# -gt 0 ] || set -- protocol snapshot ws json config
pass=0 fail=0
for t in "$@"; do
	bin=$out/fuzz_$t
	log=$out/fuzz_$t.log
	# shellcheck disable=SC2046
	if ! $FUZZ_CC $flags $FUZZ_CPPFLAGS -o "$bin" "$src/fuzz_$t.c" $(sources "$t") $URING_LIBS -pthread; then
		echo "fuzz: FAIL $t: does not build"
		fail=$((fail + 1))
		continue
	fi
	work=$out/work/$t
	rm -rf "$work"
	mkdir -p "$work" "$out/artifacts"
	# -close_fd_mask=2: the target's own stderr (upagerd's complaints about
	# bad config lines) is dropped; libFuzzer and the sanitizers report on a
	# copy of it.
	ASAN_OPTIONS="detect_leaks=1:${ASAN_OPTIONS:-}" UBSAN_OPTIONS="print_stacktrace=1:${UBSAN_OPTIONS:-}" \
		"$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -close_fd_mask=2 \
		-print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" "$work" "$src/corpus/$t" >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	if [ "$rc" -ne 0 ] || grep -q "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:\|ERROR: libFuzzer" "$log"; then
		tail -n 60 "$log"
		echo "fuzz: FAIL $t (exit $rc; input: $(ls -t "$out/artifacts/$t-"* 2>/dev/null | head -n 1))"
		fail=$((fail + 1))
	else
		echo "fuzz: PASS $t (${runs:-?} inputs in ${FUZZ_SECONDS} s)"
		pass=$((pass + 1))
	fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
