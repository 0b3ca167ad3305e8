#!/bin/bash -e
# pi-gen: install edgeface into the image. Runs on the build host; on_chroot runs inside the image.
# files/ holds the wheels (edgeface's and firmware/wheels', with SHA256SUMS) and this repository's firmware
# files, put there by firmware/image/build.sh.

FILES="$(dirname "$0")/files"
WHEEL="$(cd "${FILES}" && ls edgeface-*.whl | head -n1)"
[ -n "${WHEEL}" ] || { echo "no edgeface wheel in ${FILES}: run firmware/image/build.sh" >&2; exit 1; }

install -d "${ROOTFS_DIR}/opt/edgeface/bin" "${ROOTFS_DIR}/opt/edgeface/wheels"
install -m 0644 "${FILES}"/*.whl "${FILES}/SHA256SUMS" "${ROOTFS_DIR}/opt/edgeface/wheels/"
install -m 0755 "${FILES}/edgeface-provision" "${ROOTFS_DIR}/opt/edgeface/bin/edgeface-provision"
install -m 0755 "${FILES}/install-edgeface.sh" "${ROOTFS_DIR}/opt/edgeface/bin/install-edgeface"
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
# The venv (--system-site-packages: picamera2 comes from the OS) and binary wheels only: the image has
# no compiler, and annoy comes from /opt/edgeface/wheels (PyPI has only its source).
/opt/edgeface/bin/install-edgeface /opt/edgeface/wheels /opt/edgeface/venv
sed -i '1s|.*|#!/opt/edgeface/venv/bin/python|' /opt/edgeface/bin/edgeface-provision
/opt/edgeface/venv/bin/edgeface config defaults > /etc/edgeface/edgeface.toml.defaults
systemctl enable edgeface.service
CHROOT
# The unit is not provisioned in the image: every unit gets its own identity on first boot
# (/opt/edgeface/bin/edgeface-provision), so one image serves a whole fleet. Until then the service is
# skipped at boot (ConditionPathExists=/etc/edgeface/edgeface.toml).
