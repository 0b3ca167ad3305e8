"""firmware/: the systemd unit verified by systemd-analyze, provisioning run into a temp folder, image and
boot files checked where a tool exists here."""

from __future__ import annotations

import dataclasses
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from edgeface.config import load_config
from edgeface.gallery import signing
from edgeface.mqtt.link import LinkSettings, check_identity
from edgeface.testing import certs

REPO = Path(__file__).resolve().parents[2]
FW = REPO / "firmware"
UNIT = FW / "systemd" / "edgeface.service"
PROVISION = FW / "provision" / "edgeface-provision"


def test_unit_passes_systemd_analyze_verify_without_warnings(tmp_path: Path) -> None:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is needed (apt-get install systemd; CI installs it)"
    edgeface = Path(sys.executable).parent / "edgeface"
    unit = tmp_path / "edgeface.service"
    unit.write_text(UNIT.read_text().replace("/opt/edgeface/venv/bin/edgeface", str(edgeface)))
    r = subprocess.run([exe, "verify", "--man=no", str(unit)], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr


def test_unit_is_hardened_notify_with_watchdog_and_restarts() -> None:
    text = UNIT.read_text()
    settings = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in text.splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert settings["Type"] == "notify" and settings["WatchdogSec"] == "60s" and settings["Restart"] == "always"
    assert settings["User"] == "edgeface" and settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict" and settings["PrivateTmp"] == "yes"
    assert settings["ReadWritePaths"] == "/var/lib/edgeface" and settings["DevicePolicy"] == "closed"
    assert "DeviceAllow=char-video4linux rw" in text and settings["CapabilityBoundingSet"] == ""
    assert "--config /etc/edgeface/edgeface.toml" in settings["ExecStart"]
    assert settings["RestartPreventExitStatus"] == "2"  # configuration errors: the CLI's exit code 2


def test_boot_configuration_enables_camera_and_watchdogs() -> None:
    boot = (FW / "pi" / "config.txt").read_text().splitlines()
    assert "camera_auto_detect=1" in boot and "dtparam=watchdog=on" in boot
    wd = (FW / "systemd" / "watchdog.conf").read_text()
    assert "[Manager]" in wd and "RuntimeWatchdogSec=15s" in wd


def test_image_stage_scripts_parse_and_install_what_exists() -> None:
    stage = FW / "image" / "pi-gen" / "stage-edgeface"
    scripts = [FW / "image" / "build.sh", stage / "prerun.sh", stage / "01-edgeface" / "00-run.sh"]
    for s in scripts:
        assert subprocess.run(["bash", "-n", str(s)], check=False).returncode == 0, s
        assert s.stat().st_mode & stat.S_IXUSR, f"{s} must be executable"
    build = (FW / "image" / "build.sh").read_text()
    for name in (
        "edgeface.service",
        "edgeface.sysusers",
        "edgeface.tmpfiles",
        "watchdog.conf",
        "config.txt",
        "edgeface-provision",
    ):
        assert name in build and name in (stage / "01-edgeface" / "00-run.sh").read_text()
    assert "python3-picamera2" in (stage / "00-packages" / "00-packages").read_text()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    certs.make_ca("unit CA").write(d / "ca.crt", d / "ca.key")
    signing.generate_keypair(d / "central.pem", d / "central.pub")
    return {"ca": d / "ca.crt", "ca_key": d / "ca.key", "gallery": d / "central.pub"}


def provision(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROVISION), "--root", str(root), "--tpm", "no", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def mapped(root: Path, p: Path | None) -> Path:
    assert p is not None
    return root / Path(p).relative_to("/")


def test_provisioning_into_a_folder_writes_a_valid_unit(tmp_path: Path, pki: dict[str, Path]) -> None:
    root = tmp_path / "root"
    r = provision(
        root,
        "--device-id",
        "unit-0042",
        "--broker",
        "mqtt.example.org:8883",
        "--ca-cert",
        str(pki["ca"]),
        "--ca-key",
        str(pki["ca_key"]),
        "--gallery-key",
        str(pki["gallery"]),
        "--gallery-url",
        "https://central.example/gallery/",
        "--source",
        "picamera2",
    )
    assert r.returncode == 0, r.stderr
    cfg_path = root / "etc/edgeface/edgeface.toml"
    notices: list[str] = []
    config = load_config(cfg_path, env={}, notices=notices)  # what `edgeface config check` and the daemon do
    assert notices == []  # written in today's names: nothing to rename
    assert config.device.id == "unit-0042" and config.capture.source == "picamera2"
    assert config.capture.folder.path == Path("/var/lib/edgeface/inbox") and config.capture.folder.delete_processed
    assert config.mqtt.host == "mqtt.example.org" and config.mqtt.port == 8883 and config.mqtt.tls
    assert (root / "etc/edgeface/device-id").read_text().strip() == "unit-0042"
    crt = x509.load_pem_x509_certificate(mapped(root, config.mqtt.cert_file).read_bytes())
    assert crt.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "unit-0042"
    ca = x509.load_pem_x509_certificate(pki["ca"].read_bytes())
    crt.verify_directly_issued_by(ca)
    # The link the daemon would open from it: files exist, and the certificate's CN is the device id.
    link_cfg = dataclasses.replace(
        config.mqtt, **{k: mapped(root, getattr(config.mqtt, k)) for k in ("ca_file", "cert_file", "key_file")}
    )
    check_identity(config.device.id, LinkSettings.from_config(link_cfg, config.device.id))
    assert mapped(root, config.gallery.trusted_keys[0]).read_bytes() == pki["gallery"].read_bytes()
    key = mapped(root, config.gallery.key_file)
    assert len(key.read_bytes()) == 32 and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(mapped(root, config.mqtt.key_file).stat().st_mode) == 0o640
    assert stat.S_IMODE(cfg_path.stat().st_mode) == 0o640
    assert config.gallery.sync_url == "https://central.example/gallery/" and config.gallery.encrypt
    assert (root / "var/lib/edgeface/inbox").is_dir()

    # Re-running keeps the identity and keys; the configuration only changes with --force.
    before = {p: p.read_bytes() for p in (key, mapped(root, config.mqtt.key_file), mapped(root, config.mqtt.cert_file))}
    again = provision(root, "--device-id", "unit-0042", "--broker", "mqtt.example.org", "--ca-cert", str(pki["ca"]))
    assert again.returncode == 1 and "--force" in again.stderr
    forced = provision(
        root, "--device-id", "unit-0042", "--broker", "mqtt.example.org", "--ca-cert", str(pki["ca"]), "--force"
    )
    assert forced.returncode == 0, forced.stderr
    assert all(p.read_bytes() == data for p, data in before.items())
    other = provision(root, "--device-id", "unit-0043", "--broker", "m", "--force")
    assert other.returncode == 1 and "already provisioned as another device" in other.stderr


def test_provisioning_without_the_ca_key_writes_a_csr_and_password_mode(tmp_path: Path, pki: dict[str, Path]) -> None:
    root = tmp_path / "csr"
    r = provision(root, "--device-id", "unit-7", "--broker", "mqtt.example.org", "--ca-cert", str(pki["ca"]))
    assert r.returncode == 0 and "certificate request" in r.stdout
    csr = x509.load_pem_x509_csr((root / "etc/edgeface/mqtt/client.csr").read_bytes())
    assert csr.is_signature_valid and csr.subject.rfc4514_string() == "CN=unit-7"
    assert not (root / "etc/edgeface/mqtt/client.crt").exists()
    load_config(root / "etc/edgeface/edgeface.toml", env={})

    root = tmp_path / "pw"
    r = provision(root, "--device-id", "unit-8", "--broker", "mqtt.example.org", "--password-auth")
    assert r.returncode == 0 and "dynsec createClient unit-8 -p" in r.stdout
    config = load_config(root / "etc/edgeface/edgeface.toml", env={})
    assert config.mqtt.username == "unit-8" and mapped(root, config.mqtt.password_file).read_text().strip()


def test_provisioning_refuses_an_invalid_device_id(tmp_path: Path) -> None:
    r = provision(tmp_path / "bad", "--device-id", "bad id!", "--broker", "m")
    assert r.returncode == 2 and "not a valid device id" in r.stderr
    assert not (tmp_path / "bad" / "etc/edgeface/edgeface.toml").exists()
