#!/bin/sh
# Runs the examples small, as make check does: each must succeed.
set -e
dir=examples # tests run from the build directory
"$dir/lazy-file" --size 16 >/dev/null
"$dir/arena" >/dev/null
echo "examples: lazy-file and arena ran"
