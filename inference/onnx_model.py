"""The smallest interface the face models need from onnxruntime, so tests can pass any runner."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class _NodeArg(Protocol):
    name: str


class Session(Protocol):
    """What ``onnxruntime.InferenceSession`` offers and we use."""

    def get_inputs(self) -> list[Any]: ...

    def get_outputs(self) -> list[Any]: ...

    def run(self, output_names: list[str] | None, input_feed: dict[str, np.ndarray]) -> list[Any]: ...


class SessionError(RuntimeError):
    """A model file does not have the inputs or outputs this code was written for."""


def io_names(session: Session, inputs: int, outputs: int, model: str) -> tuple[list[str], list[str]]:
    """Input and output names, checked by count so a wrong model fails loudly at load time."""
    ins = [i.name for i in session.get_inputs()]
    outs = [o.name for o in session.get_outputs()]
    if len(ins) != inputs or len(outs) != outputs:
        raise SessionError(
            f"{model}: expected {inputs} input(s) and {outputs} output(s), got {ins} and {outs}; "
            "the model cache holds a different model: run `microcue models fetch --force`"
        )
    return ins, outs
