"""One place that turns the model cache into the models an analyzer needs."""

from __future__ import annotations

from pathlib import Path

from bridge.config import Settings
from bridge.errors import MicroCueError
from bridge.models.store import ensure_models
from inference.analyzer import FaceModels
from inference.models import ModelError, ModelSet
from inference.runtime import RuntimeChoice


def load_face_models(model_dir: Path, *, threads: int = 1, prefer_gpu: bool = True,
                     gaze: bool = True, emotion: bool = True, runtime: RuntimeChoice | None = None) -> FaceModels:
    """Fetch lazily (with a progress line) on first use, then open verified models, each on the
    runtime that is fastest for it on this device. ``runtime`` forces one (parity checks);
    None takes ``MICROCUE_MODEL_RUNTIME``."""
    if runtime is None:
        runtime = Settings().model_runtime
    try:
        ensure_models(model_dir)
        models = ModelSet(model_dir, threads=threads, prefer_gpu=prefer_gpu, runtime=runtime)
        return FaceModels(
            detector=models.model("face_detector"),
            landmarks=models.model("face_landmarks"),
            iris=models.model("iris") if gaze else None,
            emotion=models.model("emotion") if emotion else None,
        )
    except ModelError as exc:
        raise MicroCueError(str(exc)) from exc
