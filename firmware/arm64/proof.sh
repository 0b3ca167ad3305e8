#!/bin/bash
# The arm64 proof: edgeface installs and runs on a 64-bit ARM Debian with no compiler, and its embeddings
# there agree with x86. Emulated (qemu-user-static), so it proves the install and the arithmetic, not speed.
#
#   sudo firmware/arm64/proof.sh [--worktree] [--out DIR]
#
# 1. an arm64 Debian root (debootstrap, cached in $ARM64_CACHE: common.sh) with the image stage's
#    packages that Debian has (Raspberry Pi OS-only ones are named and skipped), checked to hold no compiler;
# 2. the wheels as firmware/image/build.sh puts them in the image (edgeface's, built here, and
#    firmware/wheels/), installed with the image's own firmware/image/install-edgeface.sh;
# 3. `edgeface run` (the embedded demo), `edgeface doctor --json` where this version has it, and
#    `edgeface embed --json` of the test photos, compared with x86;
# 4. the fidelity fixture chips embedded on both (firmware/arm64/embeddings.py: min cosine >= 0.97);
# 5. a test subset run there (ARM64_TESTS overrides it).
# The source is the committed HEAD (git archive), or the working tree with --worktree. Figures and
# outputs go to DIR (default $ARM64_CACHE/proof), summary.json last. Exit 1 if any step fails.
set -euo pipefail
# shellcheck source=firmware/arm64/common.sh
. "$(dirname "$0")/common.sh"

t0=$(date +%s)
out="${ARM64_CACHE}/proof"
from=HEAD
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out="$2" && shift 2 ;;
	--worktree) from=worktree && shift ;;
	*) die "usage: $0 [--worktree] [--out DIR]" ;;
	esac
done
TESTS="${ARM64_TESTS:-tests/vision/test_fidelity_mobilefacenet.py tests/gallery/test_bundle.py tests/core/test_api_verbs.py}"
PY="${PYTHON:-${REPO}/.venv/bin/python}"
[ -x "${PY}" ] || PY=python3
"${PY}" -c "import numpy, edgeface" 2>/dev/null || die "${PY} lacks edgeface's dependencies; set PYTHON to a venv that has them"

need_host_tools
setup_binfmt
rm -rf "${out}" && mkdir -p "${out}"
exec > >(tee "${out}/proof.log") 2>&1

t=$(date +%s)
cached=true && [ -e "${ARM64_CACHE}/base-${SUITE}/.edgeface-base-complete" ] || cached=false
base_root >/dev/null
debootstrap_s=$(($(date +%s) - t))
log "base root: ${SUITE} arm64 (cached: ${cached}, ${debootstrap_s} s)"

root="${ARM64_CACHE}/unit-${SUITE}"
trap 'umount_root "${root}"; [ -z "${layer:-}" ] || umount_root "${layer}"' EXIT

# The source: one tree for the arm64 install, its tests and the x86 reference.
src="${ARM64_CACHE}/src"
rm -rf "${src}" && mkdir -p "${src}"
if [ "${from}" = HEAD ]; then
	git -C "${REPO}" archive HEAD | tar -x -C "${src}"
	commit="$(git -C "${REPO}" rev-parse HEAD)"
else
	git -C "${REPO}" ls-files -z --cached --others --exclude-standard | (cd "${REPO}" && tar --null -T - -cf - 2>/dev/null) | tar -x -C "${src}"
	commit="$(git -C "${REPO}" rev-parse HEAD)+worktree"
fi
log "source: ${commit}"

# 1. The image stage's packages (firmware/image/pi-gen/stage-edgeface/00-packages), installed once into
#    a cached layer named by the list's hash (dpkg under emulation is the slow part); each run copies it.
# python3-picamera2 brings the OS's numpy into the venv's view (--system-site-packages); Debian has no
# picamera2, so Debian's numpy stands in for that part of it: pip then resolves as on a Pi.
standins="python3-numpy"
t=$(date +%s)
wanted="$(grep -hvE '^\s*(#|$)' "${src}"/firmware/image/pi-gen/stage-edgeface/00-packages/00-packages | tr -s ' \n' '\n')"
key="$(printf '%s\n' ${wanted} ${standins} | sha256sum | cut -c1-12)"
layer="${ARM64_CACHE}/packages-${SUITE}-${key}"
if [ ! -e "${layer}/.edgeface-layer-complete" ]; then
	fresh_root "${layer}"
	in_root "${layer}" apt-get update -qq || die "apt-get update in the arm64 root failed"
	have="" skipped=""
	for p in ${wanted}; do
		if in_root "${layer}" apt-cache show "${p}" >/dev/null 2>&1; then have="${have} ${p}"; else skipped="${skipped} ${p}"; fi
	done
	# shellcheck disable=SC2086
	in_root "${layer}" apt-get install -y -qq ${have} ${standins} >/dev/null || die "apt-get install${have} failed in the arm64 root"
	in_root "${layer}" apt-get clean
	printf '%s\n' "${skipped# }" >"${layer}/.edgeface-skipped"
	umount_root "${layer}"
	touch "${layer}/.edgeface-layer-complete"
fi
skipped="$(cat "${layer}/.edgeface-skipped")"
log "image packages installed from Debian; Raspberry Pi OS only, skipped: ${skipped:-none}"
fresh_root "${root}" "${layer}"
rm -f "${root}/.edgeface-layer-complete"
apt_s=$(($(date +%s) - t))
compilers="$(compilers_in_root "${root}")"
[ -z "${compilers}" ] || die "the unit root has a compiler (${compilers}); the proof needs none"
headers="$(in_root "${root}" sh -c 'ls /usr/include/python3*/Python.h 2>/dev/null || true')"
[ -z "${headers}" ] || die "the unit root has Python headers (${headers})"
log "no compiler (checked: cc gcc g++ c++ clang aarch64-linux-gnu-gcc/g++) and no Python.h in the root"

# 2. The wheels, as build.sh stages them, installed by the image's own script.
wheels="${root}/opt/edgeface/wheels"
install -d "${wheels}" "${root}/opt/edgeface/bin"
"${PY}" -m pip wheel -q --isolated --no-deps --wheel-dir "${wheels}" "${src}" >/dev/null || die "building the edgeface wheel failed"
cp "${src}"/firmware/wheels/*.whl "${src}/firmware/wheels/SHA256SUMS" "${wheels}/"
install -m 0755 "${src}/firmware/image/install-edgeface.sh" "${root}/opt/edgeface/bin/install-edgeface"
t=$(date +%s)
in_root "${root}" /opt/edgeface/bin/install-edgeface /opt/edgeface/wheels /opt/edgeface/venv 2>&1 |
	tee "${out}/install.log" || die "install-edgeface failed in the arm64 root: see ${out}/install.log"
install_s=$(($(date +%s) - t))
if grep -qiE 'building wheel|running setup.py|building extension|sdist' "${out}/install.log"; then
	die "pip built something from source: see ${out}/install.log"
fi
in_root "${root}" /opt/edgeface/venv/bin/pip list --format=freeze >"${out}/pip-freeze.txt"
numpy_os="$(in_root "${root}" python3 -c 'import numpy; print(numpy.__version__)')"
numpy_venv="$(in_root "${root}" /opt/edgeface/venv/bin/python -c 'import numpy; print(numpy.__version__, numpy.__file__)')"
log "numpy: the OS's ${numpy_os}; the venv imports ${numpy_venv}"
# The README's route for an ARM unit, from the source tree: binary wheels only, annoy from firmware/wheels
# (ARM64_README_ROUTE=0 skips it: a second install, minutes emulated).
cp -r "${src}" "${root}/opt/edgeface/src"
readme_install_s=null
if [ "${ARM64_README_ROUTE:-1}" = 1 ]; then
t=$(date +%s)
in_root "${root}" sh -c "cd /opt/edgeface/src && python3 -m venv .venv && .venv/bin/pip install --only-binary :all: --find-links firmware/wheels ." \
	>"${out}/install-readme.log" 2>&1 || die "the README's install failed in the arm64 root: see ${out}/install-readme.log"
readme_install_s=$(($(date +%s) - t))
if grep -qiE 'building wheel for (annoy|numpy|opencv)|running setup.py' "${out}/install-readme.log"; then
	die "the README's install built a dependency from source: see ${out}/install-readme.log"
fi
log "README route installed in ${readme_install_s} s (binary wheels only)"
fi
grep -E '^(annoy|ai-edge-litert|ai_edge_litert|numpy|opencv-python-headless)==' "${out}/pip-freeze.txt" >&2 || true

# 3. The demo, doctor, and the whole chain on the test photos (installed wheel, arm64).
t=$(date +%s)
demo_rc=0
in_root "${root}" /opt/edgeface/venv/bin/edgeface run >"${out}/demo.txt" 2>"${out}/demo.log" || demo_rc=$?
demo_s=$(($(date +%s) - t))
cat "${out}/demo.txt"
[ "${demo_rc}" -eq 0 ] || die "edgeface run exited ${demo_rc} in the arm64 root: see ${out}/demo.log"
if [ "${readme_install_s}" != null ]; then
	in_root "${root}" env HOME=/tmp/readme-home /opt/edgeface/src/.venv/bin/edgeface run >"${out}/demo-readme.txt" 2>&1 ||
		die "edgeface run from the README's venv failed: see ${out}/demo-readme.txt"
fi
demo_home="$(mktemp -d)"
(cd "${src}" && HOME="${demo_home}" PYTHONPATH="${src}" "${PY}" -m edgeface run) >"${out}/demo-x86.txt" 2>/dev/null ||
	log "note: edgeface run on x86 failed; demo decisions not compared"
rm -rf "${demo_home}"
doctor_rc="absent"
if in_root "${root}" /opt/edgeface/venv/bin/edgeface doctor --help >/dev/null 2>&1; then
	doctor_rc=0
	in_root "${root}" /opt/edgeface/venv/bin/edgeface doctor --json >"${out}/doctor.json" 2>"${out}/doctor.log" || doctor_rc=$?
	log "edgeface doctor --json: exit ${doctor_rc} (a chroot has no camera, service or broker)"
else
	log "edgeface doctor: not in this version; skipped"
fi
photos="$(cd "${src}" && ls tests/images/*.jpg)"
# shellcheck disable=SC2086
in_root "${root}" sh -c "cd /opt/edgeface/src && /opt/edgeface/venv/bin/edgeface embed --json ${photos//$'\n'/ }" >"${out}/embed-arm64.jsonl" 2>/dev/null ||
	die "edgeface embed failed in the arm64 root"
# shellcheck disable=SC2086
(cd "${src}" && PYTHONPATH="${src}" "${PY}" -m edgeface embed --json ${photos}) >"${out}/embed-x86.jsonl" 2>/dev/null ||
	die "edgeface embed failed on x86"

# 4. The fidelity fixture chips, both machines, same source.
in_root "${root}" env PYTHONPATH=/opt/edgeface/src /opt/edgeface/venv/bin/python \
	/opt/edgeface/src/firmware/arm64/embeddings.py /tmp/fixtures-arm64.json || die "embedding the fixtures on arm64 failed"
cp "${root}/tmp/fixtures-arm64.json" "${out}/"
PYTHONPATH="${src}" "${PY}" "${src}/firmware/arm64/embeddings.py" "${out}/fixtures-x86.json"
agree_rc=0
PYTHONPATH="${src}" "${PY}" "${src}/firmware/arm64/embeddings.py" --compare "${out}/fixtures-x86.json" \
	"${out}/fixtures-arm64.json" --pipeline "${out}/embed-x86.jsonl" "${out}/embed-arm64.jsonl" >"${out}/agreement.json" || agree_rc=$?
cat "${out}/agreement.json"

# 5. The test subset, on the arm64 root's Python and wheels (pytest from its wheel).
t=$(date +%s)
in_root "${root}" /opt/edgeface/venv/bin/pip install -q --only-binary :all: pytest >/dev/null || die "pip install pytest failed"
tests_rc=0
# shellcheck disable=SC2086
in_root "${root}" sh -c "cd /opt/edgeface/src && /opt/edgeface/venv/bin/python -m pytest -q -p no:cacheprovider ${TESTS}" |
	tee "${out}/tests.txt" || tests_rc=$?
tests_s=$(($(date +%s) - t))

wall_s=$(($(date +%s) - t0))
"${PY}" - "${out}" <<EOF
import json, pathlib, re, sys
out = pathlib.Path(sys.argv[1])
def lines(path):  # the per-photo lines and the count line; the state folder differs by machine
    text = path.read_text().splitlines() if path.exists() else []
    return [l for l in text if l.startswith("  ") or l.startswith("processed")]
def decisions(path):  # photo, verdict, who (scores compared apart: the last digit may round either way)
    return [re.sub(r"\d\.\d{3}", "#", l).split() for l in lines(path)]
def scores(path):
    return [float(x) for l in lines(path) for x in re.findall(r"\d\.\d{3}", l)]
tail = [l for l in (out / "tests.txt").read_text().splitlines() if l.strip()]
summary = {
    "source": "${commit}", "suite": "${SUITE}", "machine": "aarch64 (qemu-user-static)",
    "debootstrap_cached": ${cached^}, "seconds": {"debootstrap": ${debootstrap_s}, "apt": ${apt_s},
    "install": ${install_s}, "install_readme": ${readme_install_s/null/None}, "demo": ${demo_s}, "tests": ${tests_s}, "wall": ${wall_s}},
    "skipped_packages": "${skipped}".split(), "standins": "${standins}".split(), "compiler": None,
    "numpy": {"os": "${numpy_os}", "venv": "${numpy_venv}"},
    "installed": [l for l in (out / "pip-freeze.txt").read_text().split() if "==" in l],
    "demo": [l.strip() for l in (out / "demo.txt").read_text().splitlines() if l.strip()],
    "demo_same_as_x86": decisions(out / "demo.txt") == decisions(out / "demo-x86.txt"),
    "demo_max_score_difference": max((abs(a - b) for a, b in zip(scores(out / "demo.txt"), scores(out / "demo-x86.txt"))), default=None),
    "demo_readme_route_same": decisions(out / "demo.txt") == decisions(out / "demo-readme.txt") if ${readme_install_s/null/None} else None,
    "doctor_exit": "${doctor_rc}", "tests": "${TESTS}", "tests_result": tail[-1] if tail else "",
    "agreement": json.loads((out / "agreement.json").read_text()),
}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
EOF
[ "${tests_rc}" -eq 0 ] || die "the test subset failed on arm64: see ${out}/tests.txt"
[ "${agree_rc}" -eq 0 ] || die "arm64 embeddings disagree with x86 beyond the tolerance: see ${out}/agreement.json"
log "arm64 proof passed in ${wall_s} s (summary: ${out}/summary.json)"
