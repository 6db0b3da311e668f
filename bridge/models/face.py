"""One place that turns the model cache into the sessions an analyzer needs."""

from __future__ import annotations

from pathlib import Path

from bridge.errors import MicroCueError
from bridge.models.store import ensure_models
from inference.analyzer import FaceModels
from inference.models import ModelError, ModelSet


def load_face_models(model_dir: Path, *, threads: int = 1, prefer_gpu: bool = True,
                     gaze: bool = True, emotion: bool = True) -> FaceModels:
    """Fetch lazily (with a progress line) on first use, then open verified sessions."""
    try:
        ensure_models(model_dir)
        models = ModelSet(model_dir, threads=threads, prefer_gpu=prefer_gpu)
        return FaceModels(
            detector=models.session("face_detector"),
            landmarks=models.session("face_landmarks"),
            iris=models.session("iris") if gaze else None,
            emotion=models.session("emotion") if emotion else None,
        )
    except ModelError as exc:
        raise MicroCueError(str(exc)) from exc
