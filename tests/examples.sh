#!/bin/sh
# Runs the examples small, as make check does: each must succeed.
set -e
dir=$(dirname "$0")/../examples
"$dir/lazy-file" --size 16 >/dev/null
"$dir/arena" >/dev/null
echo "examples: lazy-file and arena ran"
