"""The Dockerfile's runtime stage, replayed without Docker (no engine runs on this machine kind).

Same steps, same paths relative to the venv, taken from the Dockerfile itself:
1. build the wheel from exactly the files the builder stage copies (offline, no build isolation);
2. install it into a fresh venv, without the source tree (its dependencies come from the
   test venv through a path entry, so nothing is downloaded);
3. give it a model directory like the baked one: the cache minus what the Dockerfile deletes,
   read-only;
4. run `microcue db upgrade`, `microcue models verify`, then `microcue serve` from that venv, and
   create a meeting and load the dashboard's files over HTTP.
What this does not cover: the base image's system libraries and `docker build` itself.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.config import Settings
from bridge.models.store import ensure_models
from tests.support import dockerfile as df

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = df.REPO
START_TIMEOUT_S = 60.0
API_KEY = "layout-test-key"


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False, **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{shlex.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory laid out like the runtime image's /: the venv and the model dir under it."""
    root = tmp_path_factory.mktemp("image")
    context = root / "context"
    context.mkdir()
    for source, _ in df.copy_sources("builder"):
        src = REPO / source.rstrip("/")
        dest = context / src.name
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest)
    dist = root / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(dist), str(context)])  # fmt: skip
    (wheel,) = dist.glob("microcue-*.whl")

    runtime_env = df.env("runtime")
    venv = root / runtime_env["VIRTUAL_ENV"].lstrip("/")
    run([sys.base_prefix + "/bin/python3", "-m", "venv", "--without-pip", str(venv)])
    run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
         "--no-index", str(wheel)])  # fmt: skip
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    # Dependencies from the test venv, as a plain path entry: its .pth files (the editable
    # install of this checkout among them) are not processed, so `bridge` resolves to the wheel.
    (site / "test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")

    # 3. the baked model directory: the fetched cache minus what the Dockerfile removes, read-only.
    model_dir = root / runtime_env["MICROCUE_MODEL_DIR"].lstrip("/")

    cache = Settings().model_dir.expanduser()
    ensure_models(cache)  # `make models` normally did this already
    shutil.copytree(cache, model_dir, ignore=shutil.ignore_patterns(".fetch.lock"))
    for removed in removed_by_dockerfile():
        shutil.rmtree(model_dir / removed)
    for path in [model_dir, *model_dir.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    yield root
    for path in [model_dir, *model_dir.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)


def removed_by_dockerfile() -> list[str]:
    """The model-dir subfolders the fetch step deletes (`rm -rf "$MICROCUE_MODEL_DIR/x"`)."""
    (fetch,) = [i.value for i in df.instructions() if i.keyword == "RUN" and "models fetch" in i.value]
    words = shlex.split(fetch)
    removed = [w.split("/", 1)[1] for w in words if w.startswith("$MICROCUE_MODEL_DIR/")]
    assert removed, "the fetch step removes nothing: then this test has nothing to check"
    return removed


def image_env(root: Path, **extra: str) -> dict[str, str]:
    runtime_env = df.env("runtime")
    venv = root / runtime_env["VIRTUAL_ENV"].lstrip("/")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROCUE_")}
    env.update(
        PATH=f"{venv / 'bin'}:{os.environ['PATH']}",
        VIRTUAL_ENV=str(venv),
        MICROCUE_MODEL_DIR=str(root / runtime_env["MICROCUE_MODEL_DIR"].lstrip("/")),
        MICROCUE_DATA_DIR=str(workdir(root)),
        **extra,
    )
    return env


def workdir(root: Path) -> Path:
    """The image's WORKDIR: commands never run from the checkout, whose bridge/ would shadow the wheel."""
    (last,) = [i.value for i in df.instructions() if i.keyword == "WORKDIR" and i.stage == "runtime"][-1:]
    path = root / last.lstrip("/")
    path.mkdir(parents=True, exist_ok=True)
    return path


def microcue(root: Path) -> str:
    return str(root / df.env("runtime")["VIRTUAL_ENV"].lstrip("/") / "bin" / "microcue")


def test_installed_wheel_is_not_the_checkout(image_root: Path) -> None:
    venv_python = Path(microcue(image_root)).parent / "python"
    code = "import bridge, web, bridge.store.migrate as m; print(bridge.__file__, web.__file__, m.MIGRATIONS_DIR)"
    out = run([str(venv_python), "-c", code], cwd=workdir(image_root)).stdout
    for line in out.split():
        assert Path(line).is_relative_to(image_root), f"{line} comes from the checkout, not the wheel"


def test_baked_models_verify_read_only(image_root: Path) -> None:
    out = run([microcue(image_root), "models", "verify"], env=image_env(image_root), cwd=workdir(image_root)).stdout
    assert "face_detector" in out and "emotion" in out
    # The lazy load path finds a complete cache and writes nothing (the directory is read-only).
    run([microcue(image_root), "models", "fetch"], env=image_env(image_root), cwd=workdir(image_root))


def test_migrations_run_from_the_installed_wheel(image_root: Path) -> None:
    env = image_env(image_root)
    out = run([microcue(image_root), "db", "upgrade"], env=env, cwd=workdir(image_root)).stdout
    assert "at revision" in out and "none" not in out


def test_serve_from_the_image_layout(image_root: Path) -> None:
    port = free_port()
    env = image_env(image_root, MICROCUE_PORT=str(port), MICROCUE_API_KEY=API_KEY)
    log = image_root / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [microcue(image_root), "serve"], env=env, cwd=workdir(image_root), stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"serve exited {proc.returncode}:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as answer:
                    assert json.load(answer)["status"] == "ready"
                    break
            except OSError:
                assert time.monotonic() < deadline, f"not ready within {START_TIMEOUT_S} s:\n{log.read_text()}"
                time.sleep(0.2)
        request = urllib.request.Request(
            f"{base}/api/meetings",
            data=json.dumps({"title": "layout", "context": "customer"}).encode(),
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 201
            meeting = json.load(answer)
        with urllib.request.urlopen(meeting["dashboard_url"], timeout=10) as answer:
            assert answer.status == 200
            assert "<html" in answer.read().decode().lower()
        with urllib.request.urlopen(f"{base}/static/dashboard.js", timeout=10) as answer:
            assert answer.status == 200, "package data (web/static) missing from the wheel"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
