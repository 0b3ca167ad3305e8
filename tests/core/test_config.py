"""The typed configuration: sources in order, and errors that name the key and what is allowed."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest

from edgeface.config import Config, as_dict, load_config, to_toml
from edgeface.errors import ConfigError
from edgeface.vision.settings import DetectConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def test_defaults_are_valid() -> None:
    cfg = load_config(env={})
    assert cfg == Config()
    assert cfg.runtime.backend == "cpu" and cfg.detect.rotations == (0, 90, 270, 180)


def _leaves(section: Any, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every setting of a (nested) section, by its dotted key."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_leaves(value, (*prefix, f.name)))
        else:
            out[".".join((*prefix, f.name))] = value
    return out


def test_documented_defaults_round_trip(tmp_path: Path) -> None:
    text = to_toml(Config())
    assert "# Refuse images with more pixels" in text
    p = tmp_path / "edgeface.toml"
    p.write_text(text)
    notices: list[str] = []
    loaded, default = _leaves(load_config(p, env={}, notices=notices)), _leaves(Config())
    assert loaded.keys() == default.keys() and notices == []
    for key, value in default.items():
        got = loaded[key]
        if isinstance(value, Path) and got != value:  # '~' expanded, a relative path now relative to the file
            assert got == (value.expanduser() if str(value).startswith("~") else tmp_path / value), key
        else:
            assert got == value, key


def test_precedence_file_env_cli(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[runtime]\nnum_threads = 3\nxnnpack = false\n[detect]\nmin_score = 0.4\n")
    env = {"EDGEFACE_RUNTIME__NUM_THREADS": "4", "EDGEFACE_DETECT__ROTATIONS": "[0, 180]"}
    cfg = load_config(p, env=env, overrides=["runtime.num_threads=1"])
    assert cfg.runtime.num_threads == 1  # command line beats environment beats file
    assert cfg.runtime.xnnpack is False  # from the file
    assert cfg.detect.rotations == (0, 180)  # environment, parsed as TOML
    assert cfg.detect.min_score == 0.4


def test_config_path_from_environment(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[logging]\nformat = "json"\n')
    assert load_config(env={"EDGEFACE_CONFIG": str(p)}).logging.format == "json"


def test_unknown_key_is_named_with_the_known_ones(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[detect]\nmin_scor = 0.4\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert "detect.min_scor" in str(e.value) and "min_score" in str(e.value) and str(p) in str(e.value)


def test_unknown_section() -> None:
    with pytest.raises(ConfigError, match=r"unknown config section \[detector\].*known sections"):
        load_config(env={}, overrides=["detector.min_score=1"])


def test_choice_error_lists_allowed_values() -> None:
    with pytest.raises(ConfigError, match=r"runtime.backend = 'tpu' \(from command line\).*'cpu', 'edgetpu'"):
        load_config(env={}, overrides=["runtime.backend=tpu"])


def test_range_and_type_errors() -> None:
    with pytest.raises(ConfigError, match=r"runtime.num_threads = 0 .* in \[1, 64\]"):
        load_config(env={}, overrides=["runtime.num_threads=0"])
    with pytest.raises(ConfigError, match=r"runtime.num_threads = 'many' \(from environment\).*an integer"):
        load_config(env={"EDGEFACE_RUNTIME__NUM_THREADS": "many"})
    with pytest.raises(ConfigError, match="true or false"):
        load_config(env={}, overrides=["runtime.xnnpack=perhaps"])


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[runtime\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p, env={})
    with pytest.raises(ConfigError, match="does not exist.*config defaults"):
        load_config(tmp_path / "missing.toml", env={})


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    p = tmp_path / "etc" / "c.toml"
    p.parent.mkdir()
    p.write_text('[models]\ndir = "../models"\n')
    assert load_config(p, env={}).models.dir == tmp_path / "etc" / "../models"


def test_optional_value_cleared_with_empty_string() -> None:
    cfg = load_config(env={}, overrides=["detect.min_score=0.7"])
    assert cfg.detect.min_score == 0.7
    assert load_config(env={}, overrides=["detect.min_score="]).detect.min_score is None


def test_malformed_override() -> None:
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(env={}, overrides=["num_threads=2"])


def test_as_dict_is_plain() -> None:
    d = as_dict(Config())
    assert d["detect"]["rotations"] == [0, 90, 270, 180]


def test_optional_settings_are_left_out_not_empty() -> None:
    """An unset optional setting is absent from the file: `config defaults` writes it commented out,
    with what leaving it unset means; "" appears only as the value of a string."""
    text = to_toml(Config())
    assert "\n# min_score =   (unset: the detector card's calibrated value)\n" in text
    written = _leaves_of_toml(tomllib.loads(text))
    for key, value in _leaves(Config()).items():
        if value is None:
            assert key not in written and f"# {key.rpartition('.')[2]} =   (unset: " in text, key
        elif written[key] == "":
            assert isinstance(value, str), key
    assert all(f.metadata.get("unset") for f in dataclasses.fields(DetectConfig) if f.default is None)


def _leaves_of_toml(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in table.items():
        if isinstance(v, dict) and k != "delegate_options":
            out.update(_leaves_of_toml(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def test_an_empty_string_is_still_a_string_and_still_wrong_for_a_number(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[mqtt]\nhost = ""\n[runtime]\nnum_threads = ""\n')
    with pytest.raises(ConfigError, match=r"runtime.num_threads = '' .*expected an integer"):
        load_config(p, env={})
