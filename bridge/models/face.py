"""One place that turns the model cache into the models an analyzer needs."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

from bridge.config import Settings
from bridge.errors import MicroCueError
from bridge.models.batching import BatchingChoice, batching_on, load_batched
from bridge.models.store import ensure_models
from inference.analyzer import FaceModels
from inference.models import ModelError, ModelSet
from inference.runtime import Model, RuntimeChoice

log = logging.getLogger(__name__)


def load_face_models(
    model_dir: Path,
    *,
    threads: int = 1,
    prefer_gpu: bool = True,
    gaze: bool = True,
    emotion: bool = True,
    runtime: RuntimeChoice | None = None,
    batching: BatchingChoice | None = None,
) -> FaceModels:
    """Fetch lazily (with a progress line) on first use, then open verified models, each on the
    runtime that is fastest for it on this device. ``runtime`` forces one (parity checks);
    None takes ``MICROCUE_MODEL_RUNTIME``. With batching on (``batching``, or
    ``MICROCUE_BATCHING`` when None) every model is a batch-N onnxruntime graph behind one
    scheduler shared by all the analyzers that get these models (``bridge.models.batching``)."""
    settings = Settings()
    runtime = settings.model_runtime if runtime is None else runtime
    batching = settings.batching if batching is None else batching
    try:
        ensure_models(model_dir)
        models = ModelSet(model_dir, threads=threads, prefer_gpu=prefer_gpu, runtime=runtime)
        if batching_on(batching, models.device):
            log.info("face models batched across participants on %s (MICROCUE_BATCHING=%s)", models.device, batching)
            load: Callable[[str], Model] = functools.partial(load_batched, models)
        else:
            load = models.model
        return FaceModels(
            detector=load("face_detector"),
            landmarks=load("face_landmarks"),
            iris=load("iris") if gaze else None,
            emotion=load("emotion") if emotion else None,
        )
    except ModelError as exc:
        raise MicroCueError(str(exc)) from exc
