"""MicroCue inference: frames and audio in as numpy arrays, cues out as dataclasses.

Pure by contract (``pyproject.toml``: no event loop, sockets, video I/O or SQL), so every stage
runs the same in the bridge, in ``microcue analyze`` and in the benchmarks. The public API:

* :class:`ParticipantAnalyzer` turns one participant's frames into :class:`AnalysisStep` s and
  :class:`Cue` s, with the :class:`FaceModels` that ``ModelSet`` loads (``ModelError`` says what
  is missing); its :class:`Spotter` finds micro- and macro-expressions (:class:`Spot`) under
  a :class:`SpotterParams` (``DEFAULT_PARAMS`` is what ships);
* :class:`SileroVad` is the voice activity model the voice stream runs; a
  :class:`SpeechUpdate` tells an analyzer when its person talks (``ParticipantAnalyzer.hear``);
* :class:`Cue` is the one cue schema (``docs/contracts.md``), ``CUE_TYPES`` its kinds and
  ``EMOTION_CUE_TYPES`` those a meeting's purpose may withhold.

Each name loads its module on first use: importing any ``inference.*`` module runs this file
first, and the analyzer's modules bring OpenCV and the model runtimes (``microcue --help``
imports the cue schema, never those).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.analyzer import AnalysisStep, FaceModels, ParticipantAnalyzer
    from inference.cues import CUE_TYPES, EMOTION_CUE_TYPES, Cue
    from inference.models import ModelError, ModelSet
    from inference.speech import SpeechUpdate
    from inference.spotting import Spot, Spotter
    from inference.spotting_params import DEFAULT_PARAMS, SpotterParams
    from inference.voice import SileroVad

__all__ = [
    "CUE_TYPES",
    "DEFAULT_PARAMS",
    "EMOTION_CUE_TYPES",
    "AnalysisStep",
    "Cue",
    "FaceModels",
    "ModelError",
    "ModelSet",
    "ParticipantAnalyzer",
    "SileroVad",
    "SpeechUpdate",
    "Spot",
    "Spotter",
    "SpotterParams",
]

#: Where each name lives.
_LAZY = {
    "CUE_TYPES": "inference.cues",
    "EMOTION_CUE_TYPES": "inference.cues",
    "Cue": "inference.cues",
    "AnalysisStep": "inference.analyzer",
    "FaceModels": "inference.analyzer",
    "ParticipantAnalyzer": "inference.analyzer",
    "ModelError": "inference.models",
    "ModelSet": "inference.models",
    "Spot": "inference.spotting",
    "Spotter": "inference.spotting",
    "DEFAULT_PARAMS": "inference.spotting_params",
    "SpotterParams": "inference.spotting_params",
    "SileroVad": "inference.voice",
    "SpeechUpdate": "inference.speech",
}


def __getattr__(name: str) -> Any:
    """PEP 562: ``inference.ParticipantAnalyzer`` imports its module the first time it is asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
