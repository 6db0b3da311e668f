"""docs/architecture.md names modules, classes and files; every name it cites must exist.

The page drifted before (it named an export the package did not have, a module that had moved),
and a reader who follows a name to nothing stops trusting the page. So every dotted name rooted
in one of our packages is imported and resolved attribute by attribute, and every repository
path it cites must be there.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"
PACKAGES = ("bridge", "web", "inference", "migrations")
#: `bridge.media.worker.ParticipantWorker`, `inference.ParticipantAnalyzer.push`: rooted dotted names.
DOTTED = re.compile(rf"(?<![\w./-])((?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_]\w*)+)")
#: `web/commands/harness.py`, `deploy/k8s/`, `docs/cluster.md`: repository paths.
PATH = re.compile(r"(?<![\w./-])((?:bridge|web|inference|migrations|bench|tests|deploy|docs)/[\w./-]*)")


def cited_names(text: str) -> set[str]:
    return {m.rstrip(".") for m in DOTTED.findall(text)}


def cited_paths(text: str) -> set[str]:
    return {m.rstrip(".") for m in PATH.findall(text)}


def resolves(dotted: str) -> bool:
    """Import the longest module prefix of ``dotted``, then find the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_the_page_cites_something() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert len(cited_names(text)) >= 20 and len(cited_paths(text)) >= 10, "the parser no longer finds the citations"


def test_every_cited_module_and_name_exists() -> None:
    missing = sorted(name for name in cited_names(DOC.read_text(encoding="utf-8")) if not resolves(name))
    assert not missing, f"docs/architecture.md cites names that do not exist: {missing}"


def test_every_cited_path_exists() -> None:
    missing = sorted(p for p in cited_paths(DOC.read_text(encoding="utf-8")) if not (REPO / p).exists())
    assert not missing, f"docs/architecture.md cites paths that do not exist: {missing}"


def test_the_check_catches_a_stale_name() -> None:
    """The resolver must say no to what the page once got wrong."""
    assert resolves("bridge.media.worker.ParticipantWorker")
    assert resolves("inference.ParticipantAnalyzer.push")
    assert not resolves("bridge.rooms.targets.JoinTarget")  # moved to bridge.targets
    assert not resolves("inference.NoSuchAnalyzer")
    assert cited_paths("see `web/commands/harness.py`.") == {"web/commands/harness.py"}
