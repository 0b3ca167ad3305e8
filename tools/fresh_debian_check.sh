#!/usr/bin/env bash
# Proof that the README's test command works on a fresh Debian 12: bootstrap a bare bookworm root
# (debootstrap minbase: no Python, no compiler, none of the test's packages), put a clean clone of this
# repository and the LFW faces (read-only) inside, and run `tools/test.sh` there as the README says.
# A second run must install nothing (the command is idempotent) and just run the tests.
#
#   sudo tools/fresh_debian_check.sh [ROOT] [PYTEST ARGS...]    ROOT defaults to /work/freshroot
#
# Needs root, debootstrap and an amd64 host. ROOT must be outside this repository. The root is kept
# between runs (delete it for a fresh one); the clone inside is made anew from this repository's HEAD
# each run. The wall times are printed at the end and written to ROOT/fresh-check.times.
#
# Two things make it a chroot rather than a booted machine, both standard for chroots:
# - /usr/sbin/policy-rc.d forbids package scripts to start daemons (mosquitto, PostgreSQL): in a chroot
#   they would start under sysvinit scripts, on the host's ports, and outlive the run. The tests start
#   their own broker and cluster on free ports and need neither.
# - systemd is installed but not PID 1. The tests need only `systemd-analyze verify` (offline) from it;
#   the watchdog and credential tests stand in for systemd (NOTIFY_SOCKET, CREDENTIALS_DIRECTORY).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${1:-/work/freshroot}"
[ $# -gt 0 ] && shift
lfw="${EDGEFACE_LFW:-$repo/../shared/data/lfw}"

say() { printf 'fresh_debian_check: %s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { say "needs root (debootstrap, chroot, mounts)"; exit 2; }
[ "$(dpkg --print-architecture)" = amd64 ] || { say "amd64 host only (no emulation)"; exit 2; }
case "$(realpath -m "$root")/" in "$repo"/*) say "ROOT must be outside the repository"; exit 2 ;; esac
[ -d "$lfw/images" ] || { say "LFW not found at $lfw (set EDGEFACE_LFW)"; exit 2; }

if [ ! -f "$root/etc/debian_version" ]; then
  command -v debootstrap >/dev/null || { say "apt-get install debootstrap"; exit 2; }
  say "debootstrap bookworm (minbase) into $root"
  t0=$(date +%s)
  debootstrap --arch=amd64 --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
  say "debootstrap took $(($(date +%s) - t0)) s"
fi
# What a Debian 12 installer writes: main, updates and security.
cat >"$root/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A network that intercepts TLS (a proxy's own CA in the host's /usr/local/share/ca-certificates) needs
# that CA on any machine in it: the ca-certificates package (pulled in by the test's packages) adds it
# when it is installed, or here when it already is.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  [ -x "$root/usr/sbin/update-ca-certificates" ] && chroot "$root" /usr/sbin/update-ca-certificates >/dev/null
fi

mounts=()
cleanup() {
  # Processes left inside the root (none expected): the ones this run started there.
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$(realpath "$root")" ] && kill -9 "${p#/proc/}" 2>/dev/null
  done
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[$i]}" 2>/dev/null || umount -l "${mounts[$i]}"; done
}
trap cleanup EXIT
bind() { # bind SRC DST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"
  mounts+=("$2")
  [ "${3:-}" = ro ] && mount -o remount,bind,ro "$2"
  return 0
}
mkdir -p "$root/proc" && mount -t proc proc "$root/proc" && mounts+=("$root/proc")
bind /sys "$root/sys"
bind /dev "$root/dev"
bind /dev/pts "$root/dev/pts"
bind /dev/shm "$root/dev/shm"
# The layout the README describes: the checkout beside shared/data/lfw.
bind "$lfw" "$root/work/shared/data/lfw" ro
rm -rf "$root/work/main"
git clone -q "$repo" "$root/work/main"

# A login-like environment: nothing of this host's shell (PATH, PIP_*, pyenv) leaks in.
in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -c "$1"
}
say "clone of $(git -C "$repo" rev-parse --short HEAD); first run: cd /work/main && tools/test.sh $*"
t0=$(date +%s)
set +e
in_root "cd /work/main && nice -n 10 tools/test.sh $*"
rc1=$?
t1=$(date +%s)
say "second run (must install nothing): tools/test.sh -q tests/firmware"
in_root "cd /work/main && nice -n 10 tools/test.sh -q tests/firmware" 2>"$root/fresh-check.second.err"
rc2=$?
t2=$(date +%s)
set -e
cat "$root/fresh-check.second.err" >&2
installs="$(grep -c '^test.sh: \(installing\|creating\)' "$root/fresh-check.second.err" || true)"
{
  echo "commit: $(git -C "$root/work/main" rev-parse HEAD)"
  echo "first run: rc=$rc1 wall=$((t1 - t0)) s (packages, venv, install, tests)"
  echo "second run: rc=$rc2 wall=$((t2 - t1)) s, set-up steps taken: $installs"
} | tee "$root/fresh-check.times" >&2
[ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ] && [ "$installs" -eq 0 ]
