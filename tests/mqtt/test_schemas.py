"""The JSON Schemas of the MQTT contract, the payload builders, and the light runtime validator."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeface.errors import PayloadError
from edgeface.mqtt import payloads, timestamps
from edgeface.mqtt.validate import SCHEMAS, SUPPORTED, load_schema, schema_errors
from edgeface.testing.mqttload import sample_result

QUALITY = {"score": 0.93, "size_px": 120.4, "sharpness": 80.0, "yaw": -12.5, "pitch": 3.0, "roll": float("nan")}


def validator(name: str) -> jsonschema.Draft202012Validator:
    """The reference implementation, asserting formats as our runtime validator does."""
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    assert "date-time" in checker.checkers, "jsonschema checks date-time only with rfc3339-validator installed"
    return jsonschema.Draft202012Validator(load_schema(name), format_checker=checker)


def samples() -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(5)
    crop = payloads.crop_payload(np.full((120, 100, 3), 128, np.uint8), max_bytes=4096)
    results = [sample_result("unit-a", rng) for _ in range(20)]
    results.append(
        payloads.result_payload(
            device_id="unit-a",
            decision="refused",
            candidates=[],
            threshold=None,
            quality=QUALITY,
            gallery_version=None,
            model_id="m",
            refusal_reasons=["yaw 72 > limit 60"],
        )
    )
    results.append(
        payloads.result_payload(
            device_id="unit-a",
            decision="match",
            candidates=[payloads.Candidate("p1", 0.8, "Jane Doe")],
            threshold=0.6,
            quality=QUALITY,
            gallery_version=3,
            model_id="m",
            crop=crop,
            location={"lat": 48.1, "lon": 11.5, "accuracy_m": 12.0},
        )
    )
    status = [
        payloads.status_payload(
            device_id="unit-a",
            state="online",
            reason="heartbeat",
            uptime_s=12.5,
            software_version="0.1.0",
            gallery_version=4,
            model_id="m",
            outbox={
                "pending": 3,
                "bytes": 900,
                "matches": 1,
                "oldest_age_s": 2.0,
                "quarantined": 0,
                "dropped_overflow": 0,
                "expired": 0,
                "delivered": 7,
            },
            link={"reconnects": 2, "protocol": "mqtt5"},
        ),
        payloads.status_payload(device_id="unit-a", state="offline", reason="connection_lost"),
    ]
    announce = [
        payloads.announce_payload(
            gallery_version=9, url="https://central/g/9", model_id="m", manifest_sha256="ab" * 32, count=1000
        )
    ]
    command = [
        payloads.command_payload("sync_gallery"),
        payloads.command_payload("capture", args={"n": 1}, expires_at=2e9),
    ]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgeface.mqtt import signed

    lock = payloads.command_payload("lock", expires_at=2e9)
    lock.update(device_id="unit-a", seq=7)
    command.append(signed.sign(lock, Ed25519PrivateKey.generate()))
    reply = [
        signed.reply_payload(device_id="unit-a", command=command[-1], outcome="applied", detail="locked (lock)"),
        signed.reply_payload(device_id="unit-a", command={"id": "x"}, outcome="refused", reason="unsigned"),
        signed.reply_payload(
            device_id="unit-a", command=lock, outcome="failed", reason="error", report={"ok": False, "destroyed": []}
        ),
    ]
    return {"result": results, "status": status, "announce": announce, "command": command, "reply": reply}


@pytest.mark.parametrize("name", SCHEMAS)
def test_schema_files_are_valid_draft_2020_12_and_use_only_supported_keywords(name: str) -> None:
    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                assert key in SUPPORTED, f"{name}: keyword {key!r} is not interpreted at run time"
                if key in ("properties", "$defs"):
                    for sub in value.values():
                        walk(sub)
                elif key in ("items",):
                    walk(value)
                elif key == "$ref":
                    assert value.startswith("#/$defs/")

    walk(schema)


@pytest.mark.parametrize("name", SCHEMAS)
def test_built_payloads_follow_the_published_schemas(name: str) -> None:
    for doc in samples()[name]:
        wire = json.loads(payloads.encode(doc, name))
        validator(name).validate(wire)  # the reference implementation
        assert schema_errors(wire, name) == []


def _mutations() -> st.SearchStrategy[Any]:
    json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(10**6), 10**6)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
        | st.sampled_from(
            [
                "match",
                "no_match",
                "refused",
                "jpeg",
                "online",
                "sync_gallery",
                "01890a5d-ac96-774b-bcce-b302099a8057",
                "unit-a",
                "",
            ]
        ),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
        max_leaves=6,
    )
    return st.lists(
        st.tuples(st.sampled_from(["set", "delete", "add"]), st.integers(0, 10**6), json_values), min_size=1, max_size=4
    )


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


def _mutate(doc: Any, ops: list[tuple[str, int, Any]]) -> Any:
    doc = json.loads(json.dumps(doc))
    for op, pick, value in ops:
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = paths[pick % len(paths)]
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        if op == "set":
            parent[last] = value
        elif op == "delete":
            del parent[last]
        elif isinstance(parent, dict):
            parent[f"extra{pick % 7}"] = value
        else:
            parent.append(value)
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(SCHEMAS), which=st.integers(0, 100), ops=_mutations())
def test_runtime_validator_agrees_with_jsonschema(name: str, which: int, ops: list) -> None:
    base = samples_cache[name][which % len(samples_cache[name])]
    doc = _mutate(base, ops)
    ours = schema_errors(doc, name)
    reference = list(validator(name).iter_errors(doc))
    assert (ours == []) == (reference == []), (ours, [e.message for e in reference])


samples_cache = {k: [json.loads(payloads.encode(d, k)) for d in v] for k, v in samples().items()}


def result(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "device_id": "unit-a",
        "decision": "match",
        "threshold": 0.6,
        "quality": QUALITY,
        "gallery_version": 3,
        "model_id": "m",
        "candidates": [payloads.Candidate("p1", 0.8), payloads.Candidate("p2", 0.5)],
    }
    base.update(over)
    return payloads.result_payload(**base)


@pytest.mark.parametrize(
    "doc, problem",
    [
        (result(decision="match", candidates=[payloads.Candidate("p1", 0.5)]), "at or above"),
        (result(decision="match", candidates=[]), "at or above"),
        (result(decision="no_match"), "cannot have a candidate"),
        (result(decision="no_match", threshold=None, candidates=[payloads.Candidate("p1", 0.3)]), "threshold"),
        (result(candidates=[payloads.Candidate("p2", 0.7), payloads.Candidate("p1", 0.9)]), "best first"),
        (result(decision="refused", threshold=None), "no candidates"),
        (result(decision="refused", threshold=None, candidates=[]), "refusal_reasons"),
        (
            result(crop={"format": "jpeg", "width": 4, "height": 4, "data": base64.b64encode(b"GIF89a....").decode()}),
            "not a JPEG",
        ),
    ],
)
def test_contract_rules_beyond_the_schema(doc: dict[str, Any], problem: str) -> None:
    with pytest.raises(PayloadError, match=problem) as e:
        payloads.encode_result(doc)
    assert e.value.kind == "rules"


def test_schema_errors_name_the_field() -> None:
    doc = result()
    doc["quality"]["score"] = "high"
    doc["id"] = "1234"
    with pytest.raises(PayloadError) as e:
        payloads.encode_result(doc)
    assert "$.quality.score" in str(e.value) and "$.id" in str(e.value) and e.value.kind == "schema"


def test_crops_are_size_limited_jpegs_and_off_unless_given() -> None:
    assert "crop" not in result()
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 255, (400, 300, 3), dtype=np.uint8)  # compresses badly
    crop = payloads.crop_payload(noisy, max_bytes=4000)
    jpeg = base64.b64decode(crop["data"])
    assert len(jpeg) <= 4000 and jpeg.startswith(b"\xff\xd8") and max(crop["width"], crop["height"]) <= 160
    with pytest.raises(PayloadError, match="does not fit"):
        payloads.crop_payload(noisy, max_bytes=200)
    big = payloads.encode_result(result(crop=crop), max_bytes=100_000)
    with pytest.raises(PayloadError, match="max_payload_bytes") as e:
        payloads.encode_result(result(crop=crop), max_bytes=2000)
    assert e.value.kind == "too_large" and len(big) > 2000


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"x" * 5000, "too_large"),
        (b"\xff\xfe\x00", "not_utf8"),
        (b"{not json", "not_json"),
        (b'{"a": NaN}', "not_json"),
        (b"[" * 2000 + b"]" * 2000, "not_json|schema"),  # too deep for json before 3.13; not an object after
        (b"[]", "schema"),
        (b'{"schema_version": 1}', "schema"),
    ],
)
def test_decode_classifies_bad_input(data: bytes, kind: str) -> None:
    with pytest.raises(PayloadError) as e:
        payloads.decode(data, "result", max_bytes=4096)
    assert e.value.kind in kind.split("|")


def test_timestamps_round_trip_in_utc() -> None:
    t = 1_700_000_000.123
    text = timestamps.utc_timestamp(t)
    assert text == "2023-11-14T22:13:20.123Z"
    assert abs(timestamps.parse_timestamp(text) - t) < 1e-3
