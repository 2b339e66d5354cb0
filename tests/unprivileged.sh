#!/bin/sh
# make check-unprivileged: the whole suite as an ordinary user who may not
# use userfaultfd's kernel-mode faults: vm.unprivileged_userfaultfd=0 and
# /dev/userfaultfd closed to it (only UFFD_USER_MODE_ONLY is left, as on a
# default Debian or Ubuntu). Run as root: it creates the user (UNPRIV_USER,
# default upager-ci) if missing, copies the tracked tree into a directory
# that user owns (UNPRIV_DIR, default a new one under /tmp, removed after
# unless UNPRIV_KEEP=1), and runs ./bootstrap && make check there as that
# user. The sysctl and the device's mode are put back on exit. Not root:
# says so and exits 0 without testing anything.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
user=${UNPRIV_USER:-upager-ci}
sysctl=/proc/sys/vm/unprivileged_userfaultfd
dev=/dev/userfaultfd

if [ "$(id -u)" -ne 0 ]; then
	echo "check-unprivileged: skipped: must run as root (it adds a user and sets a sysctl)"
	exit 0
fi
if ! id -u "$user" >/dev/null 2>&1; then
	useradd --system --no-create-home --shell /usr/sbin/nologin "$user" ||
		{ echo "check-unprivileged: cannot add user $user"; exit 1; }
fi

old_sysctl=$(cat "$sysctl" 2>/dev/null)
old_mode= old_owner=
[ -e "$dev" ] && old_mode=$(stat -c %a "$dev") && old_owner=$(stat -c %u:%g "$dev")
dir=${UNPRIV_DIR:-}
[ -n "$dir" ] || dir=$(mktemp -d /tmp/upager-unpriv.XXXXXX)
restore() {
	[ -n "$old_sysctl" ] && echo "$old_sysctl" >"$sysctl"
	[ -n "$old_mode" ] && chown "$old_owner" "$dev" && chmod "$old_mode" "$dev"
	[ "${UNPRIV_KEEP:-0}" = 1 ] || rm -rf "$dir"
}
trap restore EXIT
trap 'exit 130' INT TERM

if [ -n "$old_sysctl" ]; then
	echo 0 >"$sysctl" || { echo "check-unprivileged: cannot set $sysctl"; exit 1; }
fi
if [ -n "$old_mode" ]; then
	chown 0:0 "$dev" && chmod 600 "$dev" || { echo "check-unprivileged: cannot close $dev"; exit 1; }
fi

# The tracked files (and new ones not ignored) as they are in the work tree.
mkdir -p "$dir/src"
(cd "$top" && git ls-files -z -c -o --exclude-standard | xargs -0 tar -cf - --no-recursion) |
	tar -xf - -C "$dir/src" || { echo "check-unprivileged: cannot copy the tree"; exit 1; }
chown -R "$user" "$dir"
chmod 755 "$dir"

echo "check-unprivileged: as $user (uid $(id -u "$user")) in $dir/src;" \
	"vm.unprivileged_userfaultfd=$(cat "$sysctl" 2>/dev/null || echo none)," \
	"$dev $(stat -c '%a %U' "$dev" 2>/dev/null || echo absent)"
runuser -u "$user" -- env HOME="$dir" sh -c 'cd "$1" && ./bootstrap && make -j2 check' _ "$dir/src"
rc=$?
if [ "$rc" -ne 0 ]; then
	cat "$dir/src/test-suite.log" 2>/dev/null
	echo "check-unprivileged: make check failed as $user"
fi
exit "$rc"
