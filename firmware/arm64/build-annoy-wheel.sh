#!/bin/bash
# Build the annoy wheel a unit installs, so no unit ever compiles it (PyPI has only annoy's sdist).
#
#   sudo firmware/arm64/build-annoy-wheel.sh           # build twice, check both are identical, write
#                                                       # firmware/wheels/<wheel> and SHA256SUMS, BUILDINFO
#   sudo firmware/arm64/build-annoy-wheel.sh --check   # rebuild and compare with the committed wheel
#
# Built in an emulated arm64 Debian root (common.sh) WITH a compiler, from the PyPI sdist pinned by its
# SHA-256, with pinned build tools, a fixed build path, no debug information and a fixed
# SOURCE_DATE_EPOCH: two builds give the same bytes, so anyone can check the shipped wheel is this source.
# SUITE=bookworm gives the cp311 wheel (Raspberry Pi OS 12), SUITE=trixie the cp313 one (Raspberry Pi OS 13).
set -euo pipefail
# shellcheck source=firmware/arm64/common.sh
. "$(dirname "$0")/common.sh"

ANNOY_VERSION=1.17.3
# PyPI's SHA-256 of annoy-1.17.3.tar.gz (the only file PyPI has for 1.17.3); pip refuses any other bytes.
ANNOY_SDIST_SHA256=9cbfebefe0a5f843eba29c6be4c84d601f4f41ad4ded0486f1b88c3b07739c15
BUILD_TOOLS="setuptools==84.2.1 wheel==0.48.0"
# A fixed time (2023-06-14, the month annoy 1.17.3 was released): every file's timestamp in the wheel.
export SOURCE_DATE_EPOCH=1686700800
WHEELS="${REPO}/firmware/wheels"
mode="${1:-build}"
case "${mode}" in build | --check) ;; *) die "usage: $0 [--check]" ;; esac

need_host_tools
setup_binfmt
root="${ARM64_CACHE}/annoy-builder-${SUITE}"
layer="${ARM64_CACHE}/toolchain-${SUITE}"
trap 'umount_root "${root}"; umount_root "${layer}"' EXIT
# The toolchain layer (compiler and Python headers: never a unit) is installed once and copied per build.
if [ ! -e "${layer}/.edgeface-layer-complete" ]; then
	log "toolchain layer ${layer}: build-essential python3-dev python3-venv (once; dpkg is slow emulated)"
	fresh_root "${layer}"
	apt_in_root "${layer}" build-essential python3-dev python3-venv
	in_root "${layer}" apt-get clean
	umount_root "${layer}"
	touch "${layer}/.edgeface-layer-complete"
fi
log "builder root ${root}"
fresh_root "${root}" "${layer}"

in_root "${root}" sh -euc "
python3 -m venv /build/venv
/build/venv/bin/pip install -q ${BUILD_TOOLS}
echo 'annoy==${ANNOY_VERSION} --hash=sha256:${ANNOY_SDIST_SHA256}' > /build/req.txt
/build/venv/bin/pip download -q --no-deps --no-binary :all: --require-hashes -r /build/req.txt -d /build/sdist
"
build_once() { # $1: output folder in the root
	in_root "${root}" env SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH}" CFLAGS=-g0 sh -euc "
rm -rf /build/annoy-${ANNOY_VERSION} $1 && mkdir -p $1
tar -C /build -xzf /build/sdist/annoy-${ANNOY_VERSION}.tar.gz
cd /build/annoy-${ANNOY_VERSION}
/build/venv/bin/pip wheel -q --no-deps --no-build-isolation --wheel-dir $1 .
"
}
log "building annoy ${ANNOY_VERSION} twice (emulated: minutes each)"
build_once /build/out1
build_once /build/out2
w1="$(cd "${root}/build/out1" && ls annoy-*.whl)"
h1="$(sha256sum "${root}/build/out1/${w1}" | cut -d' ' -f1)"
h2="$(sha256sum "${root}/build/out2/${w1}" | cut -d' ' -f1)"
[ "${h1}" = "${h2}" ] || die "the two builds differ (${h1} vs ${h2}): the build is not reproducible"
log "reproducible: ${w1} ${h1}"

if [ "${mode}" = --check ]; then
	want="$(grep " ${w1}\$" "${WHEELS}/SHA256SUMS" | cut -d' ' -f1 || true)"
	[ -n "${want}" ] || die "${w1} is not in ${WHEELS}/SHA256SUMS"
	[ "${want}" = "${h1}" ] || die "rebuilt ${w1} is ${h1}, SHA256SUMS says ${want}"
	cmp "${root}/build/out1/${w1}" "${WHEELS}/${w1}" || die "rebuilt ${w1} differs from the committed file"
	log "check passed: the committed ${w1} is what this source and toolchain build"
	exit 0
fi

mkdir -p "${WHEELS}"
install -m 0644 "${root}/build/out1/${w1}" "${WHEELS}/${w1}"
touch "${WHEELS}/SHA256SUMS"
{
	grep -v " ${w1}\$" "${WHEELS}/SHA256SUMS" || true
	printf '%s  %s\n' "${h1}" "${w1}"
} | sort -k2 >"${WHEELS}/SHA256SUMS.new"
mv "${WHEELS}/SHA256SUMS.new" "${WHEELS}/SHA256SUMS"
# What the wheel was built from and with, and the newest glibc / libstdc++ symbols it needs.
python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); n = [m for m in z.namelist() if m.endswith(".so")]
sys.stdout.buffer.write(z.read(n[0]))' "${WHEELS}/${w1}" >"${root}/build/lib.so"
needs="$(readelf -V "${root}/build/lib.so" |
	grep -oE '(GLIBC|GLIBCXX|CXXABI)_[0-9.]+' | sort -t_ -k1,1 -k2,2V | awk -F_ '{m[$1]=$0} END {for (k in m) print m[k]}' |
	sort | tr '\n' ' ')"
{
	printf '["%s"]\n' "${w1}"
	printf 'sha256 = "%s"\n' "${h1}"
	printf 'source = "annoy-%s.tar.gz from PyPI, sha256 %s"\n' "${ANNOY_VERSION}" "${ANNOY_SDIST_SHA256}"
	printf 'root = "Debian %s arm64 (debootstrap, %s)"\n' "${SUITE}" "${MIRROR}"
	printf 'toolchain = "%s"\n' "$(in_root "${root}" dpkg-query -W -f '${Package} ${Version}, ' gcc g++ libc6-dev libstdc++6 "python3-dev" | sed 's/, $//')"
	printf 'build_tools = "%s"\n' "${BUILD_TOOLS}"
	printf 'source_date_epoch = %s\n' "${SOURCE_DATE_EPOCH}"
	printf 'cflags = "-g0"\n'
	printf 'needs = "%s"\n\n' "${needs% }"
} >"${root}/build/buildinfo"
python3 - "${WHEELS}/BUILDINFO.toml" "${w1}" "${root}/build/buildinfo" <<'EOF'
import re, sys
path, wheel, new = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
try:
    old = open(path).read()
except FileNotFoundError:
    old = "# firmware/wheels: how each wheel here was built (firmware/arm64/build-annoy-wheel.sh writes this).\n\n"
blocks = re.split(r"(?m)^(?=\[)", old)
kept = [b for b in blocks if not b.startswith(f'["{wheel}"]')]
open(path, "w").write("".join(kept).rstrip("\n") + "\n\n" + new.rstrip("\n") + "\n")
EOF
log "wrote ${WHEELS}/${w1}, SHA256SUMS and BUILDINFO.toml"
