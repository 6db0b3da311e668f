"""Manifest verification, sessions and the models CLI on tiny hand-made models (no network)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from bridge.cli import main
from inference.models import (
    MANIFEST,
    MODEL_FILES,
    ModelError,
    ModelSet,
    available_providers,
    create_session,
    verify_models,
)

pytestmark = pytest.mark.unit


def _tiny_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7).SerializeToString()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A cache whose five 'models' are the same tiny graph, with a correct manifest."""
    data = _tiny_model()
    entries = {}
    for name, file in MODEL_FILES.items():
        (tmp_path / file).write_bytes(data)
        entries[name] = {"file": file, "sha256": hashlib.sha256(data).hexdigest(), "source": "pkg==1:x"}
    (tmp_path / MANIFEST).write_text(json.dumps({"models": entries, "created": "2026-01-01T00:00:00+00:00"}))
    return tmp_path


def test_verify_returns_all_paths(cache: Path) -> None:
    paths = verify_models(cache)
    assert paths == {name: cache / file for name, file in MODEL_FILES.items()}
    assert verify_models(cache, ["vad"]) == {"vad": cache / "silero_vad.onnx"}


def test_corrupt_file_is_named_with_the_fix(cache: Path) -> None:
    target = cache / MODEL_FILES["emotion"]
    target.write_bytes(target.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ModelError, match=r"emotion_mini_xception\.onnx is corrupt.*delete .*fetch again"):
        verify_models(cache)
    verify_models(cache, ["face_detector"])  # the others still verify one by one


def test_missing_file_and_manifest(cache: Path) -> None:
    (cache / MODEL_FILES["iris"]).unlink()
    with pytest.raises(ModelError, match=r"iris_landmark\.onnx is missing.*microcue models fetch"):
        verify_models(cache)
    (cache / MANIFEST).unlink()
    with pytest.raises(ModelError, match="run `microcue models fetch`"):
        verify_models(cache)


def test_bad_manifest_and_unknown_name(cache: Path) -> None:
    with pytest.raises(ModelError, match="unknown model"):
        verify_models(cache, ["nope"])
    (cache / MANIFEST).write_text("{not json")
    with pytest.raises(ModelError, match=r"unreadable.*microcue models fetch"):
        verify_models(cache)
    (cache / MANIFEST).write_text(json.dumps({"models": {}}))
    with pytest.raises(ModelError, match="no entry for 'face_detector'"):
        verify_models(cache)


def test_providers_never_offer_broken_cuda() -> None:
    assert available_providers(prefer_gpu=False) == ["CPUExecutionProvider"]
    providers = available_providers(prefer_gpu=True)
    assert providers[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert providers == ["CPUExecutionProvider"]


def test_session_options_and_gpu_fallback(cache: Path) -> None:
    # prefer_gpu=True must work on a machine with onnxruntime-gpu but no usable GPU.
    session = create_session(cache / MODEL_FILES["vad"], threads=2, prefer_gpu=True)
    assert "CPUExecutionProvider" in session.get_providers()
    opts = session.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (2, 1)
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    x = np.array([[-1.0, 0.0, 2.0]], np.float32)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], [[0.0, 0.0, 2.0]])


def test_unloadable_file_names_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(ModelError, match=r"bad\.onnx.*delete"):
        create_session(bad, prefer_gpu=False)


def test_model_set_verifies_lazily_and_caches(cache: Path) -> None:
    models = ModelSet(cache, prefer_gpu=False)
    (cache / MODEL_FILES["vad"]).write_bytes(b"tampered")  # never asked for, so never an error
    first = models.session("face_detector")
    assert models.session("face_detector") is first
    with pytest.raises(ModelError, match=r"silero_vad\.onnx is corrupt"):
        models.session("vad")


def test_cli_verify(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model-dir", str(cache), "models", "verify"]) == 0
    out = capsys.readouterr()
    assert f"face_detector\t{cache / 'face_detection_short_range.onnx'}" in out.out
    (cache / MODEL_FILES["face_landmarks"]).write_bytes(b"x")
    assert main(["--model-dir", str(cache), "models", "verify"]) == 1
    assert "face_landmark.onnx is corrupt" in capsys.readouterr().err
    (cache / MANIFEST).unlink()
    assert main(["--model-dir", str(cache), "models", "verify"]) == 1
    assert "microcue models fetch" in capsys.readouterr().err


def test_cli_requires_an_action() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["models"])
    assert exc.value.code == 2
