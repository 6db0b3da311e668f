"""Shared fixtures. Every test module must carry one category marker (unit, integration, e2e)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.config import Settings
from bridge.models.face import load_face_models
from inference.analyzer import FaceModels

# Helpers and fixture modules shared by the tests: their asserts report like the tests' own
# (before any test module imports them).
pytest.register_assert_rewrite("tests.support")

CATEGORIES = ("unit", "integration", "e2e")
REPO = Path(__file__).resolve().parent.parent
TEST_DATA = REPO / "tests" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = sorted(
        {item.nodeid.split("::")[0] for item in items if not any(item.get_closest_marker(c) for c in CATEGORIES)}
    )
    if missing:
        raise pytest.UsageError(f"test modules without a category marker {CATEGORIES}: {missing}")


@pytest.fixture(scope="session")
def test_data() -> Path:
    """The real face clips kept in tests/data (sources and licences in its README)."""
    if not (TEST_DATA / "single_face.mp4").exists():
        pytest.fail(f"real face clips not found under {TEST_DATA}; the checkout is incomplete")
    return TEST_DATA


_MEASUREMENTS: list[str] = []


@pytest.fixture
def report() -> Callable[[str], None]:
    """Tests that measure something (landmark jitter, detection rate) print it in the summary."""
    return _MEASUREMENTS.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _MEASUREMENTS:
        terminalreporter.section("MicroCue measurements")
        for line in _MEASUREMENTS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def face_models() -> FaceModels:
    """Real ONNX face models from the model cache (fetched by `make models` / on first use)."""

    return load_face_models(Settings().model_dir, prefer_gpu=False)
