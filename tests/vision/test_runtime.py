"""The TFLite runtime layer: loading, quantization at the edges, and backends that explain themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import BackendUnavailable, ConfigError, ModelError
from edgeface.vision.cards import find_card
from edgeface.vision.runtime import TensorSpec, TFLiteModel, runtime_info
from edgeface.vision.runtime.quant import dequantize, quantize
from edgeface.vision.settings import RuntimeConfig


def _spec(dtype: type, scales: list[float], zeros: list[int], axis: int = 0) -> TensorSpec:
    return TensorSpec("t", 0, (1,), dtype, np.array(scales, np.float32), np.array(zeros, np.int64), axis)


def test_quantize_round_trip_per_tensor() -> None:
    spec = _spec(np.int8, [1.0], [-128])
    pixels = np.arange(256, dtype=np.float32)
    q = quantize(pixels, spec)
    assert q.dtype == np.int8 and q.min() == -128 and q.max() == 127
    assert np.array_equal(dequantize(q, spec), pixels)


def test_quantize_saturates_and_rounds() -> None:
    spec = _spec(np.uint8, [0.5], [10])
    q = quantize(np.array([-100.0, 0.26, 1000.0]), spec)
    assert q.tolist() == [0, 11, 255]


def test_per_channel() -> None:
    spec = _spec(np.int8, [0.1, 1.0], [0, 5], axis=1)
    x = np.array([[0.3, 2.0], [-0.2, -3.0]], np.float32)
    q = quantize(x, spec)
    assert q.tolist() == [[3, 7], [-2, 2]]
    assert np.allclose(dequantize(q, spec), x)


def test_float_tensors_pass_through() -> None:
    spec = _spec(np.float32, [0.0], [0])
    x = np.array([1.5, -2.0], np.float32)
    assert np.array_equal(quantize(x, spec), x) and np.array_equal(dequantize(x, spec), x)


def test_runtime_package_found() -> None:
    info = runtime_info()
    assert info.package in ("ai_edge_litert", "tflite_runtime")


def _detector_bytes() -> bytes:
    return find_card("blazeface-short-range").read_model()


def test_model_io_and_shape_check() -> None:
    model = TFLiteModel(_detector_bytes(), RuntimeConfig(num_threads=1), name="short")
    assert model.inputs[0].shape == (1, 128, 128, 3)
    assert model.output_index("classificators") in (0, 1)
    with pytest.raises(ModelError, match="no output tensor named"):
        model.output_index("nope")
    with pytest.raises(ValueError, match="wants shape"):
        model.run(np.zeros((1, 64, 64, 3), np.float32))


def test_xnnpack_off_gives_the_same_answer() -> None:
    x = np.random.default_rng(0).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    on = TFLiteModel(_detector_bytes(), RuntimeConfig(xnnpack=True)).run(x)
    off = TFLiteModel(_detector_bytes(), RuntimeConfig(xnnpack=False)).run(x)
    for a, b in zip(on, off, strict=True):
        assert np.allclose(a, b, atol=1e-3)


def test_garbage_model_refused() -> None:
    with pytest.raises(ModelError, match="cannot load this model"):
        TFLiteModel(b"\x00" * 1000, name="junk.tflite")


def test_edgetpu_absent_says_what_to_do() -> None:
    with pytest.raises(BackendUnavailable, match='No Edge TPU was detected.*runtime.backend = "cpu"'):
        TFLiteModel(_detector_bytes(), RuntimeConfig(backend="edgetpu"))


def test_gpu_absent_says_what_to_do() -> None:
    with pytest.raises(BackendUnavailable, match="GPU delegate"):
        TFLiteModel(_detector_bytes(), RuntimeConfig(backend="gpu"))


def test_external_needs_a_path() -> None:
    with pytest.raises(ConfigError, match="runtime.delegate_path"):
        TFLiteModel(_detector_bytes(), RuntimeConfig(backend="external"))
    with pytest.raises(BackendUnavailable, match="/nonexistent/libvx_delegate.so"):
        TFLiteModel(
            _detector_bytes(), RuntimeConfig(backend="external", delegate_path="/nonexistent/libvx_delegate.so")
        )


def test_the_runtime_start_up_chatter_stays_off_the_terminal_and_nothing_else_is_lost() -> None:
    """`INFO: Created TensorFlow Lite XNNPACK delegate for CPU.` used to open every command's stderr
    (and break the enroll progress bar); a warning written to fd 2 meanwhile must still come through."""
    import subprocess
    import sys

    code = (
        "import os\n"
        "from edgeface.vision.runtime.quiet import native_chatter_filtered\n"
        "with native_chatter_filtered():\n"
        "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
        "    os.write(2, b'WARNING: something the operator must see\\n')\n"
        "import edgeface\n"
        "print(len(edgeface.detect_faces(edgeface.load_image('tests/images/obama.jpg'))))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
    assert "Created TensorFlow Lite" not in r.stderr
    assert "WARNING: something the operator must see" in r.stderr
