"""Connection settings from the configuration, identity checks, and the reconnect backoff."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from edgeface.config import load_config
from edgeface.errors import ConfigError
from edgeface.mqtt import Publisher
from edgeface.mqtt.link import Backoff, LinkSettings, check_identity, device_id_from
from edgeface.outbox import Outbox


def test_backoff_doubles_with_jitter_up_to_the_ceiling_and_resets() -> None:
    b = Backoff(0.5, 8.0, random.Random(1))
    delays = [b.next_delay() for _ in range(10)]
    ceilings = [min(8.0, 0.5 * 2**n) for n in range(10)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len({round(d, 6) for d in delays[5:]}) > 1  # jitter: not the same value at the ceiling
    b.reset()
    assert 0.25 <= b.next_delay() <= 0.5
    with pytest.raises(ValueError):
        Backoff(0, 1)


def test_settings_from_config_check_files_and_combinations(tmp_path: Path, pki: dict[str, Path]) -> None:
    def cfg(**kw: str) -> LinkSettings:
        sets = [f"mqtt.{k}={v}" for k, v in kw.items()]
        return LinkSettings.from_config(load_config(overrides=sets).mqtt, "unit-a")

    with pytest.raises(ConfigError, match="mqtt.host"):
        cfg()
    with pytest.raises(ConfigError, match="mqtt.ca_file"):
        cfg(host="h", ca_file=str(tmp_path / "missing.crt"))
    with pytest.raises(ConfigError, match="go together"):
        cfg(host="h", cert_file=str(pki["unit-a.crt"]))
    with pytest.raises(ConfigError, match="need TLS"):
        cfg(host="h", tls="false", cert_file=str(pki["unit-a.crt"]), key_file=str(pki["unit-a.key"]))
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    s = cfg(host="h", username="unit-a", password_file=str(pw))
    assert s.password == "s3cret" and s.port == 8883 and s.tls
    assert cfg(host="h", tls="false").port == 1883


def test_identity_must_match_the_certificate_cn_or_username(pki: dict[str, Path]) -> None:
    with_cert = LinkSettings(host="h", port=1, client_id="x", cert_file=pki["unit-a.crt"], key_file=pki["unit-a.key"])
    check_identity("unit-a", with_cert)
    with pytest.raises(ConfigError, match="CN is 'unit-a'"):
        check_identity("unit-b", with_cert)
    with pytest.raises(ConfigError, match="mqtt.username"):
        check_identity("unit-b", LinkSettings(host="h", port=1, client_id="x", username="unit-a"))


def test_device_id_defaults_to_a_valid_host_name_and_rejects_bad_ids() -> None:
    assert device_id_from("")  # the host name, made valid
    assert device_id_from("unit-7") == "unit-7"
    for bad in ("a/b", "+", "#", "x" * 65, "-lead"):
        with pytest.raises(ConfigError, match="device.id"):
            device_id_from(bad)


def test_the_publisher_takes_every_mqtt_setting_from_the_configuration(tmp_path: Path) -> None:
    overrides = [
        "device.id=unit-a",
        "mqtt.host=broker.example",
        "mqtt.tls=false",
        "mqtt.inflight=17",
        "mqtt.heartbeat_s=45",
        "mqtt.ack_timeout_s=33",
        "mqtt.reconnect_min_s=0.5",
        "mqtt.reconnect_max_s=9",
        "mqtt.require_subscriber=false",
    ]
    config = load_config(overrides=overrides)
    box = Outbox(tmp_path / "outbox.sqlite3")
    try:
        pub = Publisher.from_config(config.mqtt, config.device, box, model_id="m-1")
        assert pub.device_id == "unit-a" and pub.settings.client_id == "unit-a"  # one session per unit
        assert pub.settings.host == "broker.example" and pub.settings.port == 1883 and not pub.settings.tls
        assert (pub.window, pub.heartbeat_s, pub.ack_timeout_s) == (17, 45.0, 33.0)
        assert (pub._backoff.min_s, pub._backoff.max_s) == (0.5, 9.0)
        assert (pub._hold_backoff.min_s, pub._hold_backoff.max_s) == (0.5, 9.0)
        assert pub.require_subscriber is False and pub.model_id == "m-1" and pub.outbox is box
        named = load_config(overrides=[*overrides, "mqtt.client_id=unit-a-cam2"])
        assert Publisher.from_config(named.mqtt, named.device, box).settings.client_id == "unit-a-cam2"
        defaults = Publisher.from_config(load_config(overrides=overrides[:3]).mqtt, config.device, box)
        assert defaults.require_subscriber is True and defaults.window == 100
    finally:
        box.close()
