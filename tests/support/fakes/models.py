"""A model as the analyzers call it (``inference.runtime.Model``), and the onnxruntime session
that ``inference.runtime.as_model`` wraps into one: no weights, answers worked out by hand."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from inference.runtime import Model


class FakeModel:
    """A batch-N model: ``out = 2 * x``, and it records the batch sizes it saw.

    ``call_s``: a device call takes time, so other participants' crops arrive meanwhile.
    ``fail``: every call raises, as a lost device does.
    """

    runtime: str = "fake"
    output_names: tuple[str, ...] = ("y",)

    def __init__(self, name: str = "doubler", *, fail: bool = False, call_s: float = 0.0) -> None:
        self.name = name
        self.input_shape: tuple[int, ...] = (-1, 2, 2, 3)
        self.sizes: list[int] = []
        self.fail = fail
        self.call_s = call_s
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            self.sizes.append(len(x))
        time.sleep(self.call_s)
        if self.fail:
            raise RuntimeError("device lost")
        return {"y": 2 * x}


@dataclass(frozen=True)
class NodeArg:
    """onnxruntime's description of a graph input or output."""

    name: str
    shape: list[int | str] = field(default_factory=list)


class FakeOrtSession:
    """An onnxruntime-like session whose converted graph takes NCHW and sums each channel.

    ``fed`` is the last input it was given, in the layout it was given.
    """

    def __init__(self) -> None:
        self.fed: np.ndarray | None = None

    def get_inputs(self) -> list[NodeArg]:
        return [NodeArg("input_1", [1, 3, 4, 5])]

    def get_outputs(self) -> list[NodeArg]:
        return [NodeArg("out")]

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.fed = feed["input_1"]
        return [feed["input_1"].sum(axis=(2, 3))]


if TYPE_CHECKING:
    _model: Model = FakeModel()
