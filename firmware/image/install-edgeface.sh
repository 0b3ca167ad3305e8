#!/bin/sh
# Install edgeface on a unit: the one command the image stage, a hand-installed Pi and the arm64 proof
# (firmware/arm64/proof.sh) all run.
#
#   install-edgeface.sh WHEEL_DIR [VENV]      (VENV default /opt/edgeface/venv)
#
# WHEEL_DIR holds edgeface-*.whl and the wheels the project builds for what PyPI has only as source
# (firmware/wheels/: annoy). Binary wheels only (--only-binary :all:): a unit has no compiler, so a
# dependency that would need one fails here, at once, naming the package, instead of half-installing.
# --system-site-packages: picamera2, libcamera and gpiozero come from Raspberry Pi OS, not PyPI.
set -eu
wheels="${1:?usage: install-edgeface.sh WHEEL_DIR [VENV]}"
venv="${2:-/opt/edgeface/venv}"
wheel="$(ls "${wheels}"/edgeface-*.whl 2>/dev/null | sort -V | tail -n1)"
[ -n "${wheel}" ] || {
	echo "install-edgeface: no edgeface-*.whl in ${wheels}" >&2
	exit 1
}
if [ -f "${wheels}/SHA256SUMS" ]; then
	(cd "${wheels}" && sha256sum --quiet -c SHA256SUMS) || {
		echo "install-edgeface: a wheel in ${wheels} does not match SHA256SUMS; rebuild or recopy it" >&2
		exit 1
	}
fi
[ -x "${venv}/bin/python" ] || python3 -m venv --system-site-packages "${venv}"
"${venv}/bin/pip" install --no-cache-dir --only-binary :all: --find-links "${wheels}" "${wheel}"
