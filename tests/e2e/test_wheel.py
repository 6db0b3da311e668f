"""The product stands alone: a wheel built from pyproject.toml, installed into a fresh venv outside
the checkout, runs its console script from another directory.

This is what a user who runs ``pip install microcue`` meets: ``microcue db upgrade`` (migrations
from the package's resources), ``microcue serve`` until ``/healthz`` answers, and
``microcue demo --duration 10`` (its synthetic participant shipped in the wheel, WebRTC in a
network namespace the demo makes) with cues arriving on stdout. Dependencies come from the
package index through pip's cache, so this test is in e2e, never in unit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.config import Settings
from tests.support.netns import require_netns

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
REPO = Path(__file__).resolve().parents[2]
#: Seconds `pip install` of the wheel and its dependencies may take (from pip's cache, or the index).
INSTALL_S = 900
SERVE_UP_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The ``microcue`` console script of a fresh venv holding only the wheel and its dependencies."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(REPO)],
        capture_output=True,
        text=True,
        timeout=INSTALL_S,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("microcue-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=INSTALL_S,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    yield venv / "bin" / "microcue"


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment: their own data folder, the shared model cache, no checkout on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROCUE_", "PYTHON"))}
    env["MICROCUE_DATA_DIR"] = str(tmp_path / "data")
    env["MICROCUE_MODEL_DIR"] = str(Settings().model_dir)  # converted by `make models`; fetch is tested elsewhere
    return env


def test_wheel_carries_what_the_console_script_needs(installed: Path, user_env: dict[str, str], tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The installed package, not the checkout, is what runs.
    where = subprocess.run(
        [str(installed.parent / "python"), "-c", "import bridge; print(bridge.__file__)"],
        cwd=elsewhere,
        env=user_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(REPO) not in where.stdout, where.stdout

    upgrade = subprocess.run(
        [str(installed), "db", "upgrade"],
        cwd=elsewhere,
        env=user_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    assert (tmp_path / "data" / "microcue.db").is_file()

    port = _free_port()
    serve = subprocess.Popen(
        [str(installed), "--port", str(port), "serve"],
        cwd=elsewhere,
        env=user_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + SERVE_UP_S
        health = None
        while time.monotonic() < deadline and serve.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    health = json.loads(r.read())
                    break
            except OSError:
                time.sleep(0.3)
        assert health == {"status": "ok"}, serve.stderr.read() if serve.poll() is not None else "no answer"
        # The dashboard's static files and the templates ship in the wheel too.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/dashboard.js", timeout=5) as r:
            assert r.status == 200
    finally:
        serve.terminate()
        serve.wait(30)


def test_installed_demo_produces_cues(installed: Path, user_env: dict[str, str], tmp_path: Path) -> None:
    require_netns()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    demo = subprocess.run(
        [str(installed), "--port", str(_free_port()), "demo", "--duration", "10", "--netns", "on"],
        cwd=elsewhere,
        env=user_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr[-4000:]
    lines = demo.stdout.splitlines()
    assert "/dashboard?token=" in lines[0], lines[:3]
    cues = [json.loads(line) for line in lines[1:] if line.startswith("{")]
    assert cues, f"no cue in 10 s of demo; stderr:\n{demo.stderr[-4000:]}"
    assert {"presence", "engagement"} & {c["type"] for c in cues}
