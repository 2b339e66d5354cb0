#!/bin/sh
# Every exported symbol has a man page, and every page names a real symbol.
srcdir=${srcdir:-.}
fail=0
syms=$(sed -n 's/^[[:space:]]*\(upager_[a-z_]*\);$/\1/p' "$srcdir/lib/libupager.map")
for s in $syms; do
	[ -f "$srcdir/man/$s.3" ] || { echo "no man page for $s"; fail=1; }
	grep -q "[^a-z_]$s(" "$srcdir/include/upager.h" || { echo "$s not in upager.h"; fail=1; }
done
for f in "$srcdir"/man/*.3; do
	n=$(basename "$f" .3)
	echo "$syms" | grep -qx "$n" || { echo "man page $n.3 names no exported symbol"; fail=1; }
done
[ "$fail" = 0 ] && echo "docs: $(echo "$syms" | wc -w) symbols, each with a man page"
exit $fail
