"""The packages' public names (``__all__``): each one is there and is the object its module
defines, and ``import inference`` stays light (the CLI imports the cue schema at start-up)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from types import ModuleType

import pytest

import bridge.bus
import bridge.rooms
import inference

pytestmark = pytest.mark.unit


def test_inference_exports_its_public_api() -> None:
    assert {"ParticipantAnalyzer", "Cue", "FaceModels", "Spotter"} <= set(inference.__all__)
    homes = {
        "ParticipantAnalyzer": "inference.analyzer",
        "FaceModels": "inference.analyzer",
        "Cue": "inference.cues",
        "Spotter": "inference.spotting",
        "SpotterParams": "inference.spotting_params",
        "SileroVad": "inference.voice",
    }
    for name, module in homes.items():
        assert getattr(inference, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = inference.Nope


@pytest.mark.parametrize("package", [inference, bridge.bus, bridge.rooms], ids=lambda p: p.__name__)
def test_every_exported_name_exists(package: ModuleType) -> None:
    names = package.__all__
    assert len(names) == len(set(names))
    missing = [n for n in names if not hasattr(package, n)]
    assert not missing


def test_importing_inference_loads_no_analyzer_module() -> None:
    code = "import sys, inference; print(sorted(m for m in ('cv2', 'numpy', 'inference.analyzer') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
