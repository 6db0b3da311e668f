"""Which engine runs which model (inference.runtime), and what the manifest says each one loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.models import MANIFEST, formats_in_cache, runtime_files
from inference.runtime import (
    LITERT,
    ONNXRUNTIME,
    OPENVINO,
    ModelRuntimeError,
    OrtModel,
    as_model,
    check_outputs,
    choose_runtime,
)
from tests.support.fakes.models import FakeOrtSession

pytestmark = pytest.mark.unit

BOTH = frozenset({"onnx", "tflite"})


def everything(_: str) -> bool:
    return True


def test_auto_takes_the_fastest_installed_engine_with_a_file() -> None:
    assert choose_runtime("face_landmarks", "cpu", formats=BOTH, is_installed=everything) == LITERT
    # no .tflite in an old cache: the next engine that reads ONNX
    assert choose_runtime("face_landmarks", "cpu", formats=frozenset({"onnx"}), is_installed=everything) == OPENVINO
    only_ort = lambda r: r == ONNXRUNTIME  # noqa: E731
    assert choose_runtime("face_landmarks", "cpu", formats=BOTH, is_installed=only_ort) == ONNXRUNTIME
    assert choose_runtime("emotion", "cpu", formats=frozenset({"onnx"}), is_installed=everything) == ONNXRUNTIME


def test_gpu_keeps_every_model_on_onnxruntime_cuda() -> None:
    for name in ("face_detector", "face_landmarks", "iris", "emotion"):
        assert choose_runtime(name, "cuda", formats=BOTH, is_installed=everything) == ONNXRUNTIME


def test_forced_engine_applies_where_it_has_a_file() -> None:
    assert choose_runtime("iris", "cpu", formats=BOTH, requested="onnxruntime", is_installed=everything) == ONNXRUNTIME
    assert choose_runtime("iris", "cuda", formats=BOTH, requested="openvino", is_installed=everything) == OPENVINO
    # LiteRT has no file for the Keras emotion CNN: that model keeps its automatic engine
    emotion = choose_runtime("emotion", "cpu", formats=frozenset({"onnx"}), requested="litert", is_installed=everything)
    assert emotion == ONNXRUNTIME


def test_forced_engine_that_is_missing_or_unknown_is_a_clear_error() -> None:
    with pytest.raises(ModelRuntimeError, match="not installed"):
        choose_runtime("iris", "cpu", formats=BOTH, requested="openvino", is_installed=lambda r: r != OPENVINO)
    with pytest.raises(ModelRuntimeError, match="unknown model runtime 'tvm'"):
        choose_runtime("iris", "cpu", formats=BOTH, requested="tvm")  # type: ignore[arg-type]


def test_manifest_runtimes_and_old_manifests(tmp_path: Path) -> None:
    entry = {
        "file": "iris_landmark.onnx",
        "sha256": "a" * 64,
        "files": {"iris_landmark.onnx": "a" * 64, "iris_landmark.tflite": "b" * 64},
        "runtimes": {
            "onnxruntime": "iris_landmark.onnx",
            "openvino": "iris_landmark.onnx",
            "litert": "iris_landmark.tflite",
        },
    }
    old = {"file": "iris_landmark.onnx", "sha256": "a" * 64}
    assert runtime_files(entry, "iris")["litert"] == "iris_landmark.tflite"
    assert runtime_files(old, "iris") == {"onnxruntime": "iris_landmark.onnx", "openvino": "iris_landmark.onnx"}
    (tmp_path / MANIFEST).write_text(json.dumps({"models": {"iris": entry, "emotion": old}}))
    assert formats_in_cache(tmp_path, "iris") == BOTH
    assert formats_in_cache(tmp_path, "emotion") == frozenset({"onnx"})


def test_sessions_are_wrapped_and_fed_in_their_own_layout() -> None:
    session = FakeOrtSession()
    model = as_model("x", session)
    assert isinstance(model, OrtModel)
    assert model.input_shape == (1, 4, 5, 3)  # callers always pass NHWC
    x = np.arange(60, dtype=np.float32).reshape(1, 4, 5, 3)
    out = model(x)
    assert session.fed is not None and session.fed.shape == (1, 3, 4, 5)
    np.testing.assert_array_equal(out["out"][0], x.sum(axis=(1, 2))[0])
    assert as_model("x", model) is model
    with pytest.raises(ModelRuntimeError, match="run `microcue models fetch --force`"):
        check_outputs(model, ("conv2d_20",))
