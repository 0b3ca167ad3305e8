#!/bin/bash -e
# pi-gen: install edgeface into the image. Runs on the build host; on_chroot runs inside the image.
# files/ holds the wheel (put there by firmware/image/build.sh) and this repository's firmware files.

FILES="$(dirname "$0")/files"
WHEEL="$(cd "${FILES}" && ls edgeface-*.whl | head -n1)"
[ -n "${WHEEL}" ] || { echo "no edgeface wheel in ${FILES}: run firmware/image/build.sh" >&2; exit 1; }

install -d "${ROOTFS_DIR}/opt/edgeface/bin" "${ROOTFS_DIR}/opt/edgeface/wheels"
install -m 0644 "${FILES}/${WHEEL}" "${ROOTFS_DIR}/opt/edgeface/wheels/"
install -m 0755 "${FILES}/edgeface-provision" "${ROOTFS_DIR}/opt/edgeface/bin/edgeface-provision"
install -m 0644 "${FILES}/edgeface.service" "${ROOTFS_DIR}/etc/systemd/system/edgeface.service"
install -d "${ROOTFS_DIR}/opt/edgeface/firmware/systemd"
install -m 0644 "${FILES}/tpm-credential.conf" "${ROOTFS_DIR}/opt/edgeface/firmware/systemd/tpm-credential.conf"
install -m 0644 "${FILES}/edgeface.sysusers" "${ROOTFS_DIR}/etc/sysusers.d/edgeface.conf"
install -m 0644 "${FILES}/edgeface.tmpfiles" "${ROOTFS_DIR}/etc/tmpfiles.d/edgeface.conf"
install -d "${ROOTFS_DIR}/etc/systemd/system.conf.d"
install -m 0644 "${FILES}/watchdog.conf" "${ROOTFS_DIR}/etc/systemd/system.conf.d/edgeface-watchdog.conf"

# Boot configuration: camera auto-detection and the hardware watchdog (once, even if the stage re-runs).
if ! grep -q "edgeface field unit" "${ROOTFS_DIR}/boot/firmware/config.txt"; then
	cat "${FILES}/config.txt" >> "${ROOTFS_DIR}/boot/firmware/config.txt"
fi

on_chroot << CHROOT
set -e
systemd-sysusers /etc/sysusers.d/edgeface.conf
systemd-tmpfiles --create /etc/tmpfiles.d/edgeface.conf
# --system-site-packages: picamera2, libcamera and gpiozero come from Raspberry Pi OS, not PyPI.
python3 -m venv --system-site-packages /opt/edgeface/venv
/opt/edgeface/venv/bin/pip install --no-cache-dir /opt/edgeface/wheels/${WHEEL}
sed -i '1s|.*|#!/opt/edgeface/venv/bin/python|' /opt/edgeface/bin/edgeface-provision
/opt/edgeface/venv/bin/edgeface config defaults > /etc/edgeface/edgeface.toml.defaults
systemctl enable edgeface.service
CHROOT
# The unit is not provisioned in the image: every unit gets its own identity on first boot
# (/opt/edgeface/bin/edgeface-provision), so one image serves a whole fleet. Until then the service is
# skipped at boot (ConditionPathExists=/etc/edgeface/edgeface.toml).
