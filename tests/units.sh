#!/bin/sh
# The systemd units make install ships: generated with this build's paths
# (no @placeholder@ left, ExecStart the installed daemon), and hardened:
# systemd-analyze security --offline rates each service 2.5 or lower
# (SKIP, exit 77, without a systemd-analyze that has --offline).
set -u
limit=2.5
fail() { echo "units.sh: $*"; exit 1; }
for u in daemon/upagerd.service daemon/upagerd-handle@.service; do
	[ -f "$u" ] || fail "$u was not generated (make builds it)"
	grep -q '@[a-z]*@' "$u" && fail "$u: placeholder left: $(grep '@[a-z]*@' "$u" | head -1)"
	grep -Eq '^ExecStart=/[^ ]*/upagerd ' "$u" || fail "$u: ExecStart is not an absolute path to upagerd"
done
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "SKIP: no systemd-analyze here (Debian: apt-get install systemd)"
	exit 77
fi
if ! systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
	echo "SKIP: systemd-analyze $(systemd-analyze --version | head -1) has no --offline (systemd >= 250)"
	exit 77
fi
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
cp daemon/upagerd.service daemon/upagerd-handle@.service "$t/"
cp "${srcdir:-.}/daemon/upagerd.socket" "${srcdir:-.}/daemon/upagerd-handle@.socket" "$t/"
status=0
for unit in upagerd.service upagerd-handle@test.service; do
	out=$(cd "$t" && systemd-analyze security --offline=yes --no-pager "$unit" 2>&1)
	score=$(echo "$out" | sed -n "s/.*Overall exposure level for $unit: \([0-9.]*\).*/\1/p")
	[ -n "$score" ] || fail "$unit: no score from systemd-analyze: $out"
	if awk -v s="$score" -v l="$limit" 'BEGIN { exit !(s > l) }'; then
		echo "$out" | grep '✗'
		echo "units.sh: $unit: exposure $score, above $limit"
		status=1
	else
		echo "units: $unit: exposure $score (at most $limit)"
	fi
done
exit $status
