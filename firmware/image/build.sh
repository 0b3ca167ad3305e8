#!/bin/bash
# Build a Raspberry Pi OS (Lite, 64-bit) image with edgeface installed, using pi-gen in Docker.
#
#   firmware/image/build.sh [PI_GEN_DIR]
#
# PI_GEN_DIR: a pi-gen checkout (default: ./pi-gen-arm64, cloned at PI_GEN_REF). Needs Docker.
# The image boots with edgeface installed and enabled but not provisioned: run
# /opt/edgeface/bin/edgeface-provision on each unit (docs/field-unit.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
PI_GEN_REF="${PI_GEN_REF:-2024-11-19-raspios-bookworm-arm64}"
pigen="${1:-${here}/pi-gen-arm64}"
stage="${here}/pi-gen/stage-edgeface"
files="${stage}/01-edgeface/files"

if [ ! -d "${pigen}" ]; then
	git clone --depth 1 --branch "${PI_GEN_REF}" https://github.com/RPi-Distro/pi-gen.git "${pigen}"
fi

# The wheel (models and sample data inside), the wheels the project builds for what PyPI has only as
# source (firmware/wheels: annoy; checked against SHA256SUMS), and the firmware files the stage installs.
rm -f "${files}"/*.whl "${files}/SHA256SUMS"
python3 -m pip wheel --no-deps --wheel-dir "${files}" "${repo}"
(cd "${repo}/firmware/wheels" && sha256sum --quiet -c SHA256SUMS)
cp "${repo}"/firmware/wheels/*.whl "${repo}/firmware/wheels/SHA256SUMS" "${files}/"
cp "${repo}/firmware/systemd/edgeface.service" "${repo}/firmware/systemd/edgeface.sysusers" \
	"${repo}/firmware/systemd/edgeface.tmpfiles" "${repo}/firmware/systemd/watchdog.conf" \
	"${repo}/firmware/systemd/tpm-credential.conf" "${repo}/firmware/pi/config.txt" \
	"${repo}/firmware/provision/edgeface-provision" "${repo}/firmware/image/install-edgeface.sh" "${files}/"

# pi-gen wants the stage inside its tree (Docker mounts only that).
rm -rf "${pigen}/stage-edgeface"
cp -r "${stage}" "${pigen}/stage-edgeface"
EDGEFACE_STAGE=stage-edgeface envsubst < "${here}/pi-gen/config.example" > "${pigen}/config"
touch "${pigen}/stage2/SKIP_IMAGES"  # only the final image is exported
cd "${pigen}" && ./build-docker.sh
ls -l "${pigen}/deploy/"
