"""`edgeface doctor` on a unit built from real parts: the bundled models run, a real TLS mosquitto with the
deploy/ rules, a signed gallery synced over HTTP, a video file through the OpenCV source; and the failures a
technician meets (broker down, a wrong password, a certificate for another device, a tampered model, a stale or
tampered gallery, a missing camera), each with its line and exit status (0 ok, 1 failed, 4 warnings only)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from doctor_helpers import PASSWORD, PASSWORD_UNIT, UNIT, Doctor, mqtt, sync, write_config, write_video

from edgeface.config import load_config
from edgeface.doctor.clock import clock_check
from edgeface.doctor.report import EXIT_FAILED, EXIT_OK, EXIT_WARNINGS
from edgeface.testing.broker import LocalBroker
from edgeface.vision.cards import bundled_models_dir, find_card


def test_a_healthy_unit_passes_every_check(
    doctor: Doctor, unit: dict[str, Any], tls_broker: LocalBroker, pki: dict[str, Path], tmp_path: Path
) -> None:
    unit["mqtt"] = mqtt(tls_broker, pki)
    unit["capture"] = {"source": "opencv"}
    unit["capture.opencv"] = {"device": write_video(tmp_path / "clip.avi")}
    sync(unit, tmp_path / "sync.toml")
    code, checks = doctor(unit)
    for name in ("python", "packages", "model.detector", "model.landmarks", "model.embedder", "camera", "disk"):
        assert checks[name]["status"] == "ok", checks[name]
    assert checks["model.embedder"]["detail"]["backend"] == "cpu"
    assert checks["model.embedder"]["detail"]["ms_p50"] > 0
    assert "1 face in the sample photo" in checks["model.detector"]["summary"]
    assert "3 frames of 160x120" in checks["camera"]["summary"]  # doctor.camera_frames = 3
    assert "not a camera" in checks["camera"]["summary"]  # a video file, said so
    g = checks["gallery"]
    assert g["status"] == "ok", g
    assert "version 1" in g["summary"] and "signature and files verified" in g["summary"]
    assert "confirmed latest until" in g["summary"]
    b = checks["broker"]
    assert b["status"] == "ok", b
    assert "CONNACK" in b["summary"] and f"CN={UNIT}" in b["summary"] and "TLS verified" in b["summary"]
    # the clock and the watchdog depend on the machine (NTP, systemd); neither may fail here
    assert checks["clock"]["status"] in ("ok", "warn") and checks["watchdog"]["status"] in ("ok", "skip", "warn")
    warned = any(c["status"] == "warn" for c in checks.values())
    assert code == (EXIT_WARNINGS if warned else EXIT_OK)


def test_broker_down_fails_with_exit_1(
    doctor: Doctor, unit: dict[str, Any], tls_broker: LocalBroker, pki: dict[str, Path]
) -> None:
    unit["mqtt"] = mqtt(tls_broker, pki)
    tls_broker.kill()
    code, checks = doctor(unit, "--only", "broker")
    assert code == EXIT_FAILED
    assert list(checks) == ["broker"]
    assert checks["broker"]["status"] == "fail"
    assert "cannot connect" in checks["broker"]["summary"] and "broker is up" in checks["broker"]["advice"]


def test_a_wrong_password_is_refused_at_connack(
    doctor: Doctor, unit: dict[str, Any], tls_broker: LocalBroker, pki: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "password").write_text("not the password\n")
    unit["device"] = {"id": PASSWORD_UNIT}
    unit["mqtt"] = {
        "host": "127.0.0.1",
        "port": tls_broker.ports["password"],
        "ca_file": pki["ca"],
        "username": PASSWORD_UNIT,
        "password_file": tmp_path / "password",
        "connect_timeout_s": 5,
    }
    code, checks = doctor(unit, "--only", "broker")
    assert code == EXIT_FAILED
    assert checks["broker"]["status"] == "fail"
    assert f"the broker refused user {PASSWORD_UNIT}" in checks["broker"]["summary"], checks["broker"]
    (tmp_path / "password").write_text(PASSWORD + "\n")
    code, checks = doctor(unit, "--only", "broker")
    assert code == EXIT_OK and f"as user {PASSWORD_UNIT}" in checks["broker"]["summary"]


def test_a_certificate_for_another_device_id_fails_before_connecting(
    doctor: Doctor, unit: dict[str, Any], tls_broker: LocalBroker, pki: dict[str, Path]
) -> None:
    unit["mqtt"] = mqtt(tls_broker, pki)
    unit["device"] = {"id": "unit-z"}
    code, checks = doctor(unit, "--only", "broker")
    assert code == EXIT_FAILED
    assert "identity cannot be used" in checks["broker"]["summary"] and "CN is 'unit-a'" in checks["broker"]["summary"]


def test_a_broker_certificate_from_another_ca_fails_the_tls_check(
    doctor: Doctor, unit: dict[str, Any], tls_broker: LocalBroker, pki: dict[str, Path], tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization

    from edgeface.testing import certs

    other = tmp_path / "other-ca.crt"
    other.write_bytes(certs.make_ca("another CA").cert.public_bytes(serialization.Encoding.PEM))
    unit["mqtt"] = {**mqtt(tls_broker, pki), "ca_file": other}
    code, checks = doctor(unit, "--only", "broker")
    assert code == EXIT_FAILED
    assert "TLS handshake failed" in checks["broker"]["summary"], checks["broker"]


def test_a_tampered_model_file_fails_its_line(doctor: Doctor, unit: dict[str, Any], tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for model_id in ("blazeface-short-range", "mediapipe-face-mesh", "mobilefacenet-v1-int8"):
        card = find_card(model_id)
        shutil.copy(card.path, models / card.path.name)
        shutil.copy(card.model_path, models / card.model_path.name)
    target = models / find_card("mobilefacenet-v1-int8").model_path.name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    unit["models"] = {"dir": models}
    code, checks = doctor(unit, "--only", "models")
    assert code == EXIT_FAILED
    assert checks["model.detector"]["status"] == "ok" and checks["model.landmarks"]["status"] == "ok"
    e = checks["model.embedder"]
    assert e["status"] == "fail" and "mobilefacenet-v1-int8" in e["summary"]
    assert "SHA-256" in e["summary"] and "corrupt or replaced" in e["summary"] and "reinstall" in e["advice"]
    assert checks["models.other"]["summary"] == "no other cards"


def test_a_gallery_never_confirmed_by_a_signed_pointer_is_stale_a_warning(
    doctor: Doctor, unit: dict[str, Any], tmp_path: Path
) -> None:
    sync(unit, tmp_path / "sync.toml")
    (Path(unit["gallery"]["dir"]) / "sync-state.json").unlink()  # as a gallery installed before signed pointers
    code, checks = doctor(unit, "--only", "gallery")
    g = checks["gallery"]
    assert g["status"] == "warn" and g["summary"].startswith("STALE: version 1")
    assert "no signed, unexpired pointer" in g["summary"] and "edgeface gallery refresh" in g["advice"]
    assert code == EXIT_WARNINGS


def test_a_tampered_or_missing_gallery_fails(doctor: Doctor, unit: dict[str, Any], tmp_path: Path) -> None:
    code, checks = doctor(unit, "--only", "gallery")
    assert code == EXIT_FAILED and "no gallery installed" in checks["gallery"]["summary"]
    sync(unit, tmp_path / "sync.toml")
    current = (Path(unit["gallery"]["dir"]) / "current").resolve()
    vectors = current / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    data[-5] ^= 0x01
    vectors.write_bytes(bytes(data))
    code, checks = doctor(unit, "--only", "gallery")
    assert code == EXIT_FAILED
    assert checks["gallery"]["status"] == "fail" and "is refused" in checks["gallery"]["summary"]


def test_a_missing_camera_fails_and_a_folder_is_not_a_camera(doctor: Doctor, unit: dict[str, Any]) -> None:
    code, checks = doctor(unit, "--only", "camera")
    assert code == EXIT_OK and checks["camera"]["status"] == "skip" and "not a camera" in checks["camera"]["summary"]
    unit["capture"] = {"source": "opencv"}
    unit["capture.opencv"] = {"device": "/dev/video99"}
    code, checks = doctor(unit, "--only", "camera")
    assert code == EXIT_FAILED
    assert checks["camera"]["status"] == "fail" and "/dev/video99" in checks["camera"]["summary"]
    assert "ls /dev/video" in checks["camera"]["advice"]
    unit["capture"] = {"source": "picamera2"}
    code, checks = doctor(unit, "--only", "camera")
    assert code == EXIT_FAILED and "python3-picamera2" in checks["camera"]["summary"]


def test_a_clock_before_the_release_or_the_gallery_fails(unit: dict[str, Any], tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "c.toml", unit))
    check = clock_check(config, now=86400.0, ntp=(True, "test"))
    assert (
        check.status == "fail" and check.summary.startswith("1970-01-02") and "this release was built" in check.summary
    )
    sync(unit, tmp_path / "sync.toml")
    ok = clock_check(config, ntp=(True, "test"))
    assert ok.status == "ok" and "NTP synchronised" in ok.summary
    assert "the installed gallery v1 was signed" in ok.detail["floors"]
    unsynced = clock_check(config, ntp=(False, "test"))
    assert unsynced.status == "warn" and "not NTP-synchronised" in unsynced.summary


def test_disk_below_the_limits_warns_then_fails(doctor: Doctor, unit: dict[str, Any]) -> None:
    unit["doctor"] = {"disk_warn_free_mb": 1 << 40, "disk_fail_free_mb": 0}
    code, checks = doctor(unit, "--only", "disk")
    assert code == EXIT_WARNINGS and "doctor.disk_warn_free_mb" in checks["disk"]["summary"]
    unit["doctor"] = {"disk_warn_free_mb": 1 << 40, "disk_fail_free_mb": 1 << 40}
    code, checks = doctor(unit, "--only", "disk")
    assert code == EXIT_FAILED and checks["disk"]["status"] == "fail"


def test_text_output_is_one_line_per_check(tmp_path: Path, unit: dict[str, Any]) -> None:
    from click.testing import CliRunner

    from edgeface.cli import cli

    cfg = write_config(tmp_path / "edgeface.toml", unit)
    r = CliRunner().invoke(cli, ["--config", str(cfg), "doctor", "--only", "python", "--only", "disk"])
    lines = r.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [["OK", "python"], ["OK", "packages"], ["OK", "disk"]]
    assert lines[-1] == "3 ok, 0 warn, 0 fail, 0 skipped (exit 0)" and r.exit_code == 0


def test_the_bundled_models_folder_is_what_the_unit_checks() -> None:
    assert (bundled_models_dir() / "mobilefacenet-v1-int8.toml").is_file()


def test_a_backend_that_cannot_load_falls_back_with_a_warning_or_fails(doctor: Doctor, unit: dict[str, Any]) -> None:
    """No Edge TPU runtime on this machine (libedgetpu.so.1 is absent): the embedder runs on the CPU and its
    line warns with the reason; with runtime.fallback = false the unit refuses to start, and the line fails."""
    unit["runtime"] = {"embedder_backend": "edgetpu"}
    code, checks = doctor(unit, "--only", "models")
    e = checks["model.embedder"]
    assert code == EXIT_WARNINGS and e["status"] == "warn", e
    assert "backend cpu" in e["summary"] and "fell back from edgetpu" in e["summary"] and "libedgetpu" in e["summary"]
    assert checks["model.detector"]["status"] == "ok" and checks["model.detector"]["detail"]["backend"] == "cpu"
    unit["runtime"] = {"embedder_backend": "edgetpu", "fallback": False}
    code, checks = doctor(unit, "--only", "models")
    assert code == EXIT_FAILED and checks["model.embedder"]["status"] == "fail"
    assert "does not run" in checks["model.embedder"]["summary"]
