#!/bin/sh
# lib/ has no call cycle between files: from each object of libupager_core and
# libupager_proto, the global symbols it defines and those it uses; an edge
# A -> B for each symbol A uses that B defines; tsort fails on any loop.
# (Calls through function pointers, a source's ops, are not edges: the
# sources are plugins the fills call down into.) Run from the build dir.
srcdir=${srcdir:-.}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
n=0
for src in "$srcdir"/lib/*.c; do
	f=$(basename "$src" .c)
	for o in lib/libupager_core_la-$f.o lib/.libs/libupager_core_la-$f.o \
		 lib/libupager_proto_la-$f.o lib/.libs/libupager_proto_la-$f.o; do
		[ -f "$o" ] || continue
		nm -g --defined-only "$o" | awk -v f="$f" '$3 != "" { print $3, f }' >>"$tmp/defs"
		nm -u "$o" | awk -v f="$f" '{ print $2, f }' >>"$tmp/uses"
		n=$((n + 1))
		break
	done
done
[ "$n" -gt 0 ] || { echo "layers: no lib objects under $(pwd)/lib: build first"; exit 1; }
sort -u "$tmp/defs" >"$tmp/defs.s"
sort -u "$tmp/uses" >"$tmp/uses.s"
# symbol user definer -> "user definer" for calls between two files
join "$tmp/uses.s" "$tmp/defs.s" | awk '$2 != $3 { print $2, $3 }' | sort -u >"$tmp/edges"
if [ -n "$LAYERS_VERBOSE" ]; then
	cat "$tmp/edges"
fi
if ! tsort "$tmp/edges" >/dev/null 2>"$tmp/loop"; then
	echo "layers: a call cycle between files of lib/:"
	cat "$tmp/loop"
	exit 1
fi
echo "layers: $n objects, $(wc -l <"$tmp/edges") calls between files, no cycle"
