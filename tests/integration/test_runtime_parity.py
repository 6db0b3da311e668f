"""Every model runtime gives the same answers on real faces (inference.runtime).

onnxruntime on the converted ONNX is the reference; LiteRT runs the .tflite originals and
OpenVINO the ONNX. Bounds (issue 13): detector boxes within 1 px, FaceMesh landmarks and
iris centres within 0.5 px, emotion probabilities within 1e-3. Every runtime is a
dependency of the dev install, so a missing one fails here instead of skipping.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bridge.models.batching import BatchingModel, batching_on
from bridge.models.convert.batch import dynamic_batch
from bridge.models.face import load_face_models
from inference.analyzer import FaceModels
from inference.emotion_cnn import FER_INPUT, EmotionCNN
from inference.faces import FaceDetector
from inference.landmarks import FaceMesh, IrisModel, roi_from_detection
from inference.models import ModelSet
from inference.runtime import LITERT, ONNXRUNTIME, OPENVINO, Model, OrtModel, installed

pytest_plugins = ["tests.fixtures_models"]
pytestmark = pytest.mark.integration

BOX_PX = 1.0
LANDMARK_PX = 0.5
EMOTION_PROB = 1e-3
OTHERS = (LITERT, OPENVINO)
# (clip, take every n-th frame, at most this many): a webcam face and a studio face with
# expressions, head turns and a hand over the mouth.
CLIPS = (("single_face.mp4", 8, 9), ("WolfgangLanger_Pexels.mp4", 40, 12))


@pytest.fixture(scope="module")
def frames(test_data: Path) -> list[np.ndarray]:
    out = []
    for name, every, most in CLIPS:
        taken = 0
        with av.open(str(test_data / name)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if taken >= most:
                    break
                if i % every == 0:
                    out.append(frame.to_ndarray(format="rgb24"))
                    taken += 1
    assert len(out) >= 15
    return out


def _models(model_dir: Path, runtime: str, name: str) -> Model:
    assert installed(runtime), f"{runtime} is a dependency of microcue[dev] and must be installed"
    model = ModelSet(model_dir, prefer_gpu=False, runtime=runtime).model(name)  # type: ignore[arg-type]
    assert model.runtime == runtime
    return model


@pytest.mark.parametrize("runtime", OTHERS)
def test_detector_boxes_agree(
    model_dir: Path, frames: list[np.ndarray], runtime: str, report: Callable[[str], None]
) -> None:
    ref = FaceDetector(_models(model_dir, ONNXRUNTIME, "face_detector"))
    other = FaceDetector(_models(model_dir, runtime, "face_detector"))
    worst, faces = 0.0, 0
    for rgb in frames:
        a, b = ref(rgb), other(rgb)
        assert len(a) == len(b)
        for da, db in zip(a, b, strict=True):
            worst = max(
                worst,
                float(np.abs(np.subtract(da.box, db.box)).max()),
                float(np.abs(da.keypoints - db.keypoints).max()),
            )
            faces += 1
    assert faces >= len(frames) - 2  # a face in (almost) every frame, or the test proves nothing
    report(f"detector {runtime} vs onnxruntime: {faces} faces, worst box/keypoint difference {worst:.1e} px")
    assert worst <= BOX_PX


@pytest.mark.parametrize("runtime", OTHERS)
def test_landmarks_and_iris_agree(
    model_dir: Path, frames: list[np.ndarray], runtime: str, report: Callable[[str], None]
) -> None:
    detector = FaceDetector(_models(model_dir, ONNXRUNTIME, "face_detector"))
    ref_mesh, mesh = (FaceMesh(_models(model_dir, r, "face_landmarks")) for r in (ONNXRUNTIME, runtime))
    ref_iris, iris = (IrisModel(_models(model_dir, r, "iris")) for r in (ONNXRUNTIME, runtime))
    worst_mesh = worst_iris = worst_presence = 0.0
    checked = 0
    for rgb in frames:
        dets = detector(rgb)
        if not dets:
            continue
        roi = roi_from_detection(dets[0])
        (pa, ca), (pb, cb) = ref_mesh(rgb, roi), mesh(rgb, roi)  # the same crop for both
        worst_mesh = max(worst_mesh, float(np.abs(pa[:, :2] - pb[:, :2]).max()))
        worst_presence = max(worst_presence, abs(ca - cb))
        worst_iris = max(worst_iris, float(np.abs(ref_iris(rgb, pa) - iris(rgb, pa)).max()))
        checked += 1
    assert checked >= len(frames) - 2
    report(
        f"FaceMesh {runtime} vs onnxruntime: {checked} faces, worst landmark {worst_mesh:.1e} px, "
        f"iris {worst_iris:.1e} px, presence {worst_presence:.2e}"
    )
    assert worst_mesh <= LANDMARK_PX
    assert worst_iris <= LANDMARK_PX
    assert worst_presence <= EMOTION_PROB


def test_emotion_probabilities_agree(model_dir: Path, frames: list[np.ndarray], report: Callable[[str], None]) -> None:
    detector = FaceDetector(_models(model_dir, ONNXRUNTIME, "face_detector"))
    crops = []
    for rgb in frames:
        for det in detector(rgb)[:1]:
            x0, y0, x1, y1 = (round(v) for v in det.box)
            grey = cv2.cvtColor(rgb[max(0, y0) : y1, max(0, x0) : x1], cv2.COLOR_RGB2GRAY)
            crops.append(cv2.resize(grey, (FER_INPUT, FER_INPUT), interpolation=cv2.INTER_AREA))
    batch = np.stack(crops)
    ref = EmotionCNN(_models(model_dir, ONNXRUNTIME, "emotion"))(batch)
    other = EmotionCNN(_models(model_dir, OPENVINO, "emotion"))(batch)
    worst = float(np.abs(ref - other).max())
    report(f"emotion CNN openvino vs onnxruntime: {len(crops)} faces, worst probability difference {worst:.2e}")
    assert len(crops) >= len(frames) - 2
    assert np.allclose(ref.sum(1), 1.0, atol=1e-4)
    assert worst <= EMOTION_PROB


def test_auto_picks_litert_for_the_face_models_on_the_cpu(model_dir: Path) -> None:
    models = ModelSet(model_dir, prefer_gpu=False)
    assert {n: models.runtime_for(n) for n in ("face_detector", "face_landmarks", "iris", "emotion")} == {
        "face_detector": LITERT,
        "face_landmarks": LITERT,
        "iris": LITERT,
        "emotion": ONNXRUNTIME,
    }


@pytest.mark.parametrize(
    ("name", "file"),
    [
        ("face_detector", "face_detection_short_range.onnx"),
        ("face_landmarks", "face_landmark.onnx"),
        ("iris", "iris_landmark.onnx"),
    ],
)
def test_dynamic_batch_graphs_match_batch_1(model_dir: Path, frames: list[np.ndarray], name: str, file: str) -> None:
    """Issue 14's batching: the batch-N graph gives batch-1's outputs, within 1e-4, on real faces."""

    base = onnx.load(str(model_dir / file))
    one = ort.InferenceSession(base.SerializeToString(), providers=["CPUExecutionProvider"])
    many = ort.InferenceSession(dynamic_batch(base).SerializeToString(), providers=["CPUExecutionProvider"])
    _, _, h, w = one.get_inputs()[0].shape
    batch = np.stack([cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) for rgb in frames])
    x = np.ascontiguousarray((batch.astype(np.float32) / 255.0).transpose(0, 3, 1, 2))
    ref = [
        np.concatenate(o)
        for o in zip(*[one.run(None, {one.get_inputs()[0].name: x[i : i + 1]}) for i in range(len(x))], strict=True)
    ]
    got = many.run(None, {many.get_inputs()[0].name: x})
    assert many.get_inputs()[0].shape[0] == "N" and got[0].shape[0] == len(frames)
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=0)


def test_batching_scheduler_gives_every_participant_its_own_landmarks(
    model_dir: Path, frames: list[np.ndarray]
) -> None:
    """FaceMesh through bridge.models.batching from one thread per face equals each face alone."""

    base = onnx.load(str(model_dir / "face_landmark.onnx"))
    alone = OrtModel(
        "face_landmarks", ort.InferenceSession(base.SerializeToString(), providers=["CPUExecutionProvider"])
    )
    batched = BatchingModel(
        OrtModel(
            "face_landmarks",
            ort.InferenceSession(dynamic_batch(base).SerializeToString(), providers=["CPUExecutionProvider"]),
        ),
        window_s=0.05,
    )
    crops = [
        cv2.resize(rgb, (192, 192), interpolation=cv2.INTER_AREA)[None].astype(np.float32) / 255.0 for rgb in frames
    ]
    with ThreadPoolExecutor(len(crops)) as pool:
        got = list(pool.map(batched, crops))
    for crop, out in zip(crops, got, strict=True):
        ref = alone(crop)
        for key in ref:
            np.testing.assert_allclose(out[key], ref[key], atol=1e-4, rtol=0)
    assert batched.batches < len(crops)  # some crops did share a batch


def _one_face(models: FaceModels, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the tracker and the sentiment stream ask of the four models for one frame."""
    assert models.iris is not None and models.emotion is not None
    det = FaceDetector(models.detector)(rgb)[0]
    points, _ = FaceMesh(models.landmarks)(rgb, roi_from_detection(det))
    iris = IrisModel(models.iris)(rgb, points)
    x0, y0, x1, y1 = (round(v) for v in det.box)
    grey = cv2.cvtColor(rgb[max(0, y0) : y1, max(0, x0) : x1], cv2.COLOR_RGB2GRAY)
    probs = EmotionCNN(models.emotion)(cv2.resize(grey, (FER_INPUT, FER_INPUT), interpolation=cv2.INTER_AREA)[None])
    return det.keypoints, points, iris, probs


def test_batched_face_models_serve_every_participant_as_batch_1_would(
    model_dir: Path, frames: list[np.ndarray]
) -> None:
    """MICROCUE_BATCHING=on: all four models go through one scheduler each, and participants
    calling from their own threads at once get what the unbatched onnxruntime models give."""
    batched = load_face_models(model_dir, prefer_gpu=False, batching="on")
    plain = load_face_models(model_dir, prefer_gpu=False, batching="off", runtime="onnxruntime")
    schedulers = [batched.detector, batched.landmarks, batched.iris, batched.emotion]
    assert all(isinstance(m, BatchingModel) for m in schedulers)
    assert not batching_on("auto", "cpu") and batching_on("auto", "cuda")  # auto: the GPU only
    for m in schedulers:
        assert isinstance(m, BatchingModel)
        m.overlap = 1.0  # as in a busy worker: gather before running
    with ThreadPoolExecutor(len(frames)) as pool:
        got = list(pool.map(lambda rgb: _one_face(batched, rgb), frames))
    for rgb, out in zip(frames, got, strict=True):
        for a, b in zip(_one_face(plain, rgb), out, strict=True):
            np.testing.assert_allclose(b, a, atol=1e-4, rtol=0)
    landmarks = batched.landmarks
    assert isinstance(landmarks, BatchingModel) and landmarks.items == len(frames)
    assert landmarks.batches < len(frames), "no two participants' crops shared a batch"
