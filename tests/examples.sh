#!/bin/sh
# Runs the examples small, as make check does: each must succeed (they check
# their own answers), and snapshot-restore must print every row.
set -e
dir=examples # tests run from the build directory
"$dir/lazy-file" --size 16 >/dev/null
"$dir/arena" >/dev/null
out=$("$dir/snapshot-restore" --mib 16 --hot-keys 512 --queries 20000 --json)
for r in eager lazy lazy_record lazy_prefetch lazy_prefetch_reordered warm; do
	echo "$out" | grep -q "\"restore\":\"$r\"" || { echo "snapshot-restore: no $r row"; exit 1; }
done
# The recorded working set was found and prefetched.
echo "$out" | grep '"restore":"lazy_prefetch"' | grep -q '"pages_prefetched":0}' &&
	{ echo "snapshot-restore: nothing prefetched"; exit 1; }
echo "$out" | grep -q '"bench":"snapshot_incremental"' || { echo "snapshot-restore: no incremental save"; exit 1; }
echo "$out" | grep -q '"bench":"snapshot_ratios"' || { echo "snapshot-restore: no ratios"; exit 1; }
echo "examples: lazy-file, arena and snapshot-restore ran"
