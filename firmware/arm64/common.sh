# shellcheck shell=bash
# Sourced by build-annoy-wheel.sh and proof.sh: an emulated arm64 Debian root (debootstrap +
# qemu-user-static through binfmt_misc), cached so reruns skip the debootstrap, and a chroot runner.
#
# Settings (environment):
#   ARM64_CACHE  where roots are kept (default: arm64root beside the repository, outside it)
#   SUITE        Debian suite of the root (default bookworm: Raspberry Pi OS 12's base, Python 3.11)
#   MIRROR       Debian mirror (default http://deb.debian.org/debian)
#   KEYRING      keyring debootstrap checks the archive's Release signature with

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ARM64_CACHE="${ARM64_CACHE:-$(dirname "${REPO}")/arm64root}"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
KEYRING="${KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
# The chroot's environment: nothing of the host's pip configuration (local indexes, find-links) leaks in.
CHROOT_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
	DEBIAN_FRONTEND=noninteractive PIP_CERT=/etc/ssl/edgeface-host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1)

log() { printf '[arm64 %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# Root, debootstrap and qemu-user-static (Debian packages; installed when missing).
need_host_tools() {
	[ "$(id -u)" -eq 0 ] || die "run as root: debootstrap, chroot and binfmt_misc need it"
	if ! command -v debootstrap >/dev/null || [ ! -e /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
		log "installing debootstrap and qemu-user-static (apt)"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap qemu-user-static >/dev/null ||
			die "apt-get install debootstrap qemu-user-static failed; run apt-get update first"
	fi
	[ -f "${KEYRING}" ] || die "keyring ${KEYRING} missing (apt-get install debian-archive-keyring)"
}

# Debian 12's qemu 7.2 crashes in LiteRT 2.x's allocate_tensors (SIGSEGV; LiteRT 1.4 runs, and so does
# 2.x under qemu 10): the emulator's fault, not the wheel's. So the handler runs Debian 13's qemu-aarch64
# (package qemu-user, fetched once with apt, which checks it against the signed trixie Release file).
QEMU_SUITE="${QEMU_SUITE:-trixie}"
qemu_binary() {
	local dir="${ARM64_CACHE}/qemu-${QEMU_SUITE}" lists
	if [ ! -x "${dir}/usr/bin/qemu-aarch64" ]; then
		log "fetching qemu-user from Debian ${QEMU_SUITE} (apt download; once)"
		lists="${ARM64_CACHE}/apt-${QEMU_SUITE}"
		mkdir -p "${lists}/lists/partial" "${lists}/cache/archives/partial" "${dir}"
		printf 'deb %s %s main\n' "${MIRROR}" "${QEMU_SUITE}" >"${lists}/sources.list"
		local opts=(-o "Dir::Etc::sourcelist=${lists}/sources.list" -o Dir::Etc::sourceparts=/nonexistent
			-o "Dir::State::lists=${lists}/lists" -o "Dir::Cache=${lists}/cache")
		apt-get -qq "${opts[@]}" update || die "apt-get update for Debian ${QEMU_SUITE} failed"
		(cd "${lists}" && apt-get -qq "${opts[@]}" download qemu-user 2>/dev/null) || die "apt-get download qemu-user failed"
		dpkg-deb -x "${lists}"/qemu-user_*.deb "${dir}"
	fi
	printf '%s\n' "${dir}/usr/bin/qemu-aarch64"
}

# The kernel runs aarch64 ELF files through qemu: binfmt_misc mounted, a handler registered with the F
# flag (interpreter opened now, so it works inside a chroot without copying qemu in). Debian's own
# qemu-aarch64 handler is disabled while ours is registered (echo 1 > .../qemu-aarch64 re-enables it).
setup_binfmt() {
	local fs=/proc/sys/fs/binfmt_misc qemu magic
	[ -e "${fs}/register" ] || mount -t binfmt_misc binfmt_misc "${fs}" || die "cannot mount binfmt_misc"
	qemu="$(qemu_binary)"
	if [ -e "${fs}/edgeface-aarch64" ] && ! grep -q "interpreter ${qemu}\$" "${fs}/edgeface-aarch64"; then
		echo -1 >"${fs}/edgeface-aarch64"
	fi
	if [ ! -e "${fs}/edgeface-aarch64" ]; then
		# magic and mask of Debian's qemu-aarch64 entry: an aarch64 ELF executable or shared object
		magic="$(cut -d: -f5,6 /usr/lib/binfmt.d/qemu-aarch64.conf)"
		printf ':edgeface-aarch64:M::%s:%s:F\n' "${magic}" "${qemu}" >"${fs}/register" || die "cannot register ${qemu}"
	fi
	[ ! -e "${fs}/qemu-aarch64" ] || echo 0 >"${fs}/qemu-aarch64"
	grep -q '^enabled' "${fs}/edgeface-aarch64" || die "edgeface-aarch64 binfmt handler is disabled"
}

# The debootstrapped base root for $SUITE (minbase), made once and reused: every run copies it.
base_root() {
	local base="${ARM64_CACHE}/base-${SUITE}"
	if [ ! -e "${base}/.edgeface-base-complete" ]; then
		log "debootstrap ${SUITE} arm64 into ${base} (once; a few minutes)"
		mkdir -p "${ARM64_CACHE}"
		rm -rf "${base}.tmp"
		nice -n 10 debootstrap --arch=arm64 --variant=minbase --keyring="${KEYRING}" \
			"${SUITE}" "${base}.tmp" "${MIRROR}" >"${ARM64_CACHE}/debootstrap-${SUITE}.log" 2>&1 ||
			die "debootstrap failed: see ${ARM64_CACHE}/debootstrap-${SUITE}.log"
		rm -rf "${base}"
		mv "${base}.tmp" "${base}"
		date -u +%FT%TZ >"${base}/.edgeface-base-complete"
	fi
	printf '%s\n' "${base}"
}

# A fresh copy at $1 (anything there before is removed) of the base root, or of the root $2.
fresh_root() {
	local root="$1" base="${2:-}"
	[ -n "${base}" ] || base="$(base_root)"
	umount_root "${root}"
	if grep -q " ${root}/" /proc/self/mounts; then die "${root} still has mounts; not removing it"; fi
	rm -rf --one-file-system "${root}"
	cp -a "${base}" "${root}"
	rm -f "${root}/.edgeface-base-complete"
	# apt: the suite's updates and security archives too, as a maintained unit has them. Debian keeps
	# security updates in a separate archive; Ubuntu's ports mirror (JetPack) has them beside the rest.
	local sec="${MIRROR%/debian}/debian-security" comp=main
	case "${MIRROR}" in *ubuntu*) sec="${MIRROR}" comp="main universe" ;; esac
	printf 'deb %s %s %s\ndeb %s %s-updates %s\ndeb %s %s-security %s\n' "${MIRROR}" "${SUITE}" "${comp}" \
		"${MIRROR}" "${SUITE}" "${comp}" "${sec}" "${SUITE}" "${comp}" >"${root}/etc/apt/sources.list"
	cp /etc/resolv.conf "${root}/etc/resolv.conf"
	# A throwaway root: dpkg need not fsync every file (emulated, that is most of an install's time).
	echo force-unsafe-io >"${root}/etc/dpkg/dpkg.cfg.d/edgeface-unsafe-io"
	# pip inside checks TLS against this machine's CA bundle (the minimal root has none of its own, and
	# the machine's may add a proxy's CA), kept apart from the one the ca-certificates package rewrites.
	install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "${root}/etc/ssl/edgeface-host-ca.crt"
	mount_root "${root}"
}

mount_root() {
	local root="$1"
	mountpoint -q "${root}/proc" || mount -t proc proc "${root}/proc"
	mountpoint -q "${root}/sys" || mount -t sysfs sysfs "${root}/sys"
	mountpoint -q "${root}/dev" || mount --bind /dev "${root}/dev"
	mountpoint -q "${root}/dev/pts" || mount --bind /dev/pts "${root}/dev/pts"
}

umount_root() {
	local root="$1" m
	for m in dev/pts dev sys proc; do
		if mountpoint -q "${root}/${m}" 2>/dev/null; then umount -l "${root}/${m}"; fi
	done
}

# Run a command in the root with a clean environment: in_root ROOT CMD...
in_root() {
	local root="$1"
	shift
	"${CHROOT_ENV[@]}" chroot "${root}" "$@"
}

# apt-get install in the root (with recommends, as pi-gen's 00-packages does).
apt_in_root() {
	local root="$1"
	shift
	in_root "${root}" apt-get update -qq || die "apt-get update in the arm64 root failed"
	in_root "${root}" apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* in the arm64 root failed"
}

# The compilers a pip build would reach for; none may be present on a unit.
compilers_in_root() {
	local root="$1" c found=""
	for c in cc gcc g++ c++ clang aarch64-linux-gnu-gcc aarch64-linux-gnu-g++; do
		if in_root "${root}" sh -c "command -v ${c}" >/dev/null 2>&1; then found="${found} ${c}"; fi
	done
	printf '%s\n' "${found# }"
}
