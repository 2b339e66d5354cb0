#!/bin/sh
# The upager tool: a raw image to a snapshot and back, byte for byte; info
# and verify; a damaged page named; exit statuses.
set -u
ps=$(getconf PAGESIZE)
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail() { echo "tool.sh: $*"; exit 1; }

# 8 data pages, 4 zero pages, 4 data pages.
head -c $((8 * ps)) /dev/urandom >"$t/raw"
head -c $((4 * ps)) /dev/zero >>"$t/raw"
head -c $((4 * ps)) /dev/urandom >>"$t/raw"
# The byte damaged below is known, so that the damage always changes it (a
# random one was 'X' already once in 256 runs).
printf 'A' | dd of="$t/raw" bs=1 seek=$((5 * ps + 7)) conv=notrunc 2>/dev/null

tools/upager snapshot convert --from-raw "$t/raw" "$t/s.snap" || fail "convert from raw"
tools/upager snapshot info "$t/s.snap" --json | grep -q '"pages":16,"stored":12,"zero":4,"absent":0' ||
	fail "info: wrong counts"
tools/upager snapshot info "$t/s.snap" | grep -q "stored     12 pages" || fail "info: text"
tools/upager snapshot verify "$t/s.snap" >/dev/null || fail "verify of a good snapshot"
tools/upager snapshot convert --to-raw "$t/s.snap" "$t/back" || fail "convert to raw"
cmp -s "$t/raw" "$t/back" || fail "raw -> snapshot -> raw differs"

# One byte of stored page 5 damaged: verify says which, exit 1.
printf 'X' | dd of="$t/s.snap" bs=1 seek=$((4096 + 5 * ps + 7)) conv=notrunc 2>/dev/null
tools/upager snapshot verify "$t/s.snap" --json >"$t/out"
[ $? -eq 1 ] || fail "verify of a damaged snapshot did not exit 1"
grep -q '"bad_page":5' "$t/out" || fail "verify did not name page 5"
tools/upager snapshot convert --to-raw "$t/s.snap" "$t/bad" 2>/dev/null && fail "converted a damaged snapshot"
[ -e "$t/bad" ] && fail "left a partial raw image"

# A full snapshot names no parent.
tools/upager snapshot info "$t/s.snap" --json | grep -q '"parent_pages":0,.*"parent":null' ||
	fail "info: a parent where none is"

# Reorder needs a working set, and says so.
tools/upager snapshot reorder "$t/s.snap" 2>"$t/err"
[ $? -eq 1 ] || fail "reorder without a working set did not exit 1"
grep -q "no working set" "$t/err" || fail "reorder did not say why"

# Not a snapshot; a missing working set; bad usage.
tools/upager snapshot info "$t/raw" 2>/dev/null
[ $? -eq 1 ] || fail "info of a raw file did not exit 1"
tools/upager ws info "$t/none.ws" --snapshot "$t/back" 2>/dev/null
[ $? -eq 1 ] || fail "ws info of a missing file did not exit 1"
tools/upager snapshot 2>/dev/null
[ $? -eq 2 ] || fail "usage error did not exit 2"
# --json is JSON whatever a path holds: every subcommand, success and error,
# with quotes, a backslash, a tab, a newline and a control byte in its paths;
# the "file" each names decodes to the path given.
command -v jq >/dev/null || fail "jq not found (./bootstrap installs it)"
d="$t/q\"u\\o	t$(printf '\001')e
d"
mkdir "$d" || fail "mkdir of an odd name"
json_ok() { # expected exit status, expected "file", command...
	want=$1 file=$2
	shift 2
	"$@" --json >"$t/json" 2>/dev/null
	got=$?
	[ "$got" -eq "$want" ] || fail "$*: exit $got, not $want"
	jq -e . "$t/json" >/dev/null 2>&1 || fail "$*: not JSON: $(cat "$t/json")"
	[ "$(jq -j .file "$t/json")" = "$file" ] || fail "$*: \"file\" is not the path"
}
cp "$t/raw" "$d/raw"
json_ok 0 "$d/s.snap" tools/upager snapshot convert --from-raw "$d/raw" "$d/s.snap"
json_ok 1 "$d/none" tools/upager snapshot convert --from-raw "$d/none" "$d/s2.snap"
json_ok 0 "$d/s.snap" tools/upager snapshot info "$d/s.snap"
json_ok 1 "$d/no\"such" tools/upager snapshot info "$d/no\"such"
json_ok 0 "$d/s.snap" tools/upager snapshot verify "$d/s.snap"
json_ok 1 "$d/none" tools/upager snapshot verify "$d/none"
json_ok 0 "$d/s.snap" tools/upager snapshot convert --to-raw "$d/s.snap" "$d/back"
json_ok 1 "$d/s.snap" tools/upager snapshot reorder "$d/s.snap"
json_ok 1 "$d/none.ws" tools/upager ws info "$d/none.ws" --snapshot "$d/s.snap"
json_ok 1 "$d/none" tools/upager ws info "$d/none.ws" --snapshot "$d/none"
cp "$t/s.snap" "$d/bad.snap" # page 5 damaged above
json_ok 1 "$d/bad.snap" tools/upager snapshot verify "$d/bad.snap"
# A name that is not UTF-8 (a byte 0xff, a cut 3-byte sequence) still gives
# JSON, which is UTF-8: each such byte reads U+FFFD; UTF-8 names pass as they are.
u="$t/caf$(printf '\303\251')-$(printf '\377')-$(printf '\342\202')"
tools/upager snapshot info "$u" --json >"$t/json" 2>/dev/null
iconv -f UTF-8 -t UTF-8 "$t/json" >/dev/null 2>&1 || fail "a non-UTF-8 name: not UTF-8 JSON: $(od -c "$t/json" | head -3)"
[ "$(jq -j .file "$t/json")" = "$t/caf$(printf '\303\251')-$(printf '\357\277\275')-$(printf '\357\277\275\357\277\275')" ] ||
	fail "a non-UTF-8 name: \"file\" is $(jq -j .file "$t/json")"
echo "tool: convert, info, verify and errors behave; --json escapes paths"
