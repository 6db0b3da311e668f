"""The model cache as the analyzers see it: verified files, opened by the runtime that suits them.

Pure on purpose: this module never downloads or converts (that is
``bridge.models.store``); it only trusts files whose SHA-256 matches the manifest
written by the fetch, so a half-written or tampered file fails at load time with
a message that says how to repair the cache, never as a confusing shape error
deep inside inference.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import onnxruntime as ort

from inference.runtime import (
    ONNXRUNTIME,
    RUNTIME_FORMAT,
    RUNTIMES,
    Device,
    Model,
    ModelRuntimeError,
    OrtModel,
    RuntimeChoice,
    choose_runtime,
    describe,
    load_model,
)

log = logging.getLogger(__name__)

#: Model name -> file name in the cache (docs/contracts.md "Models").
MODEL_FILES: dict[str, str] = {
    "face_detector": "face_detection_short_range.onnx",
    "face_landmarks": "face_landmark.onnx",
    "iris": "iris_landmark.onnx",
    "emotion": "emotion_mini_xception.onnx",
    "vad": "silero_vad.onnx",
}

#: The original .tflite kept next to its ONNX conversion, for LiteRT (the face models only: the
#: emotion CNN comes as Keras HDF5 and the VAD as ONNX).
TFLITE_FILES: dict[str, str] = {
    "face_detector": "face_detection_short_range.tflite",
    "face_landmarks": "face_landmark.tflite",
    "iris": "iris_landmark.tflite",
}

#: Written next to the models by ``microcue models fetch``:
#: {"models": {name: {"file", "sha256", "source": "package==version:path",
#:                    "files": {file: sha256}, "runtimes": {runtime: file}}}, "created": iso time}.
#: "file"/"sha256" name the ONNX file (what every runtime can read); "runtimes" records which
#: file each runtime loads. A manifest without "runtimes" (written before LiteRT was added)
#: still serves the ONNX runtimes.
MANIFEST = "manifest.json"

FETCH_HINT = "run `microcue models fetch`"

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
# onnxruntime severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
_SEVERITY_WARNING = 2
_SEVERITY_FATAL = 4
_HASH_CHUNK = 1 << 20

# A 71-byte ONNX graph (y = Identity(x), float[1], opset 13, IR 7), built once with
# onnx.helper and embedded so probing CUDA needs neither the onnx package nor a model file.
_PROBE_MODEL = base64.b64decode(
    "CAcSADo7ChAKAXgSAXkiCElkZW50aXR5EgVwcm9iZVoPCgF4EgoKCAgBEgQKAggBYg8KAXkSCgoICAESBAoCCAFCBAoAEA0="
)


class ModelError(RuntimeError):
    """The model cache is missing, stale or corrupt; the message names the fix."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(model_dir: Path) -> dict[str, dict[str, object]]:
    """The manifest's ``models`` table; an unreadable manifest is the same fix as a missing one."""
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise ModelError(f"no model manifest at {path}: the models have not been fetched; {FETCH_HINT}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        models = data["models"]
        if not isinstance(models, dict):
            raise TypeError("'models' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"model manifest {path} is unreadable ({exc}); {FETCH_HINT} --force") from exc
    return models


def runtime_files(entry: dict[str, object], name: str) -> dict[str, str]:
    """Runtime -> file name for one manifest entry; an entry from before LiteRT serves ONNX only."""
    recorded = entry.get("runtimes")
    if isinstance(recorded, dict):
        return {str(k): str(v) for k, v in recorded.items()}
    return {r: MODEL_FILES[name] for r, fmt in RUNTIME_FORMAT.items() if fmt == "onnx"}


def _file_sha(entry: dict[str, object], file: str) -> str | None:
    files = entry.get("files")
    if isinstance(files, dict) and file in files:
        return str(files[file])
    return str(entry["sha256"]) if entry.get("file", file) == file and "sha256" in entry else None


def verify_models(
    model_dir: Path, names: Iterable[str] | None = None, *, runtime: str = ONNXRUNTIME
) -> dict[str, Path]:
    """Paths of the requested models in the format ``runtime`` reads, each proven identical to
    what the fetch wrote.

    Hashing costs a few milliseconds for all five files, which buys a clear
    error instead of a runtime failing on a truncated file.
    """
    model_dir = Path(model_dir)
    wanted = list(MODEL_FILES) if names is None else list(names)
    unknown = [n for n in wanted if n not in MODEL_FILES]
    if unknown:
        raise ModelError(f"unknown model name(s) {unknown}; known: {sorted(MODEL_FILES)}")
    manifest = read_manifest(model_dir)
    paths: dict[str, Path] = {}
    for name in wanted:
        entry = manifest.get(name)
        if not isinstance(entry, dict) or "sha256" not in entry:
            raise ModelError(f"model manifest in {model_dir} has no entry for {name!r}; {FETCH_HINT} --force")
        file = runtime_files(entry, name).get(runtime)
        expected = _file_sha(entry, file) if file is not None else None
        if file is None or expected is None:
            raise ModelError(
                f"the model cache in {model_dir} has no file of {name!r} for {runtime}; {FETCH_HINT} --force"
            )
        path = model_dir / file
        if not path.is_file():
            raise ModelError(f"model file {path} is missing; {FETCH_HINT}")
        actual = _sha256(path)
        if actual != expected:
            raise ModelError(
                f"model file {path} is corrupt (sha256 {actual[:12]}… does not match the manifest's "
                f"{expected[:12]}…): delete {path} and fetch again (`microcue models fetch`)"
            )
        paths[name] = path
    return paths


def formats_in_cache(model_dir: Path, name: str) -> frozenset[str]:
    """File formats ("onnx", "tflite") the cache's manifest lists for ``name``."""
    entry = read_manifest(Path(model_dir)).get(name)
    if not isinstance(entry, dict):
        return frozenset()
    return frozenset(RUNTIME_FORMAT[r] for r in runtime_files(entry, name) if r in RUNTIME_FORMAT)


def _session_options(threads: int) -> ort.SessionOptions:
    """One predictable thread per session: many participants share few cores, so no spinning pools."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = _SEVERITY_WARNING
    return opts


@lru_cache(maxsize=1)
def _cuda_works() -> bool:
    """Open a tiny session on CUDA once per process.

    onnxruntime-gpu lists CUDA even where its libraries or the GPU are missing,
    and then logs an error and a warning on every session it creates; probing
    once with its default logger muted turns that into one line of ours.
    """
    ort.set_default_logger_severity(_SEVERITY_FATAL)
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = _SEVERITY_FATAL
        session = ort.InferenceSession(_PROBE_MODEL, sess_options=opts, providers=[_CUDA, _CPU])
        works = _CUDA in session.get_providers()
    except Exception as exc:  # any failure to bring CUDA up means "use the CPU"
        log.debug("CUDA probe raised %s", exc)
        works = False
    finally:
        ort.set_default_logger_severity(_SEVERITY_WARNING)
    if not works:
        log.info("onnxruntime lists CUDA but it does not work on this machine; running models on the CPU")
    return works


def available_providers(prefer_gpu: bool = True) -> list[str]:
    """Execution providers to ask for: CUDA first only when it really runs here, CPU always."""
    if prefer_gpu and _CUDA in ort.get_available_providers() and _cuda_works():
        return [_CUDA, _CPU]
    return [_CPU]


def create_session(
    path: Path, *, threads: int = 1, prefer_gpu: bool = True, graph: bytes | None = None
) -> ort.InferenceSession:
    """An inference session tuned for many small concurrent calls rather than one big one.

    ``graph``: serialized ONNX derived from the verified file at ``path`` (the batched graphs of
    ``bridge.models.batching``); ``path`` then only names it in messages.
    """
    path = Path(path)
    source: str | bytes = str(path) if graph is None else graph
    providers = available_providers(prefer_gpu)
    try:
        return ort.InferenceSession(source, sess_options=_session_options(threads), providers=providers)
    except Exception as exc:
        if _CUDA in providers:
            # The probe passed but this graph does not (e.g. out of GPU memory): the CPU still serves.
            log.warning("CUDA session for %s failed (%s); using the CPU", path.name, exc)
            try:
                return ort.InferenceSession(source, sess_options=_session_options(threads), providers=[_CPU])
            except Exception as cpu_exc:
                exc = cpu_exc
        raise ModelError(
            f"onnxruntime cannot load {path} ({exc}); delete {path} and fetch again (`microcue models fetch`)"
        ) from exc


class ModelSet:
    """Models opened on first use, so a worker that never needs the VAD never pays for it.

    ``session(name)`` is an onnxruntime session (the VAD, which keeps recurrent state, and
    tests of the ONNX files); ``model(name)`` is the callable the analyzers use, run by the
    engine ``runtime`` names or, with "auto", the fastest one for the device
    (``inference.runtime.CPU_PREFERENCE``).
    """

    def __init__(
        self, model_dir: Path, threads: int = 1, prefer_gpu: bool = True, runtime: RuntimeChoice = "auto"
    ) -> None:
        self.model_dir = Path(model_dir)
        self.threads = threads
        self.prefer_gpu = prefer_gpu
        self.runtime = runtime
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._models: dict[str, Model] = {}
        self._lock = threading.Lock()

    @property
    def device(self) -> Device:
        return "cuda" if _CUDA in available_providers(self.prefer_gpu) else "cpu"

    def path(self, name: str, runtime: str = ONNXRUNTIME) -> Path:
        """Verified path of one model in the format ``runtime`` reads."""
        return verify_models(self.model_dir, [name], runtime=runtime)[name]

    def session(self, name: str) -> ort.InferenceSession:
        """The cached session for ``name``, verified against the manifest before its first load."""
        with self._lock:
            cached = self._sessions.get(name)
            if cached is None:
                cached = create_session(self.path(name), threads=self.threads, prefer_gpu=self.prefer_gpu)
                self._sessions[name] = cached
            return cached

    def runtime_for(self, name: str) -> str:
        """The engine ``model(name)`` uses here (raises ``ModelError`` when the one asked for cannot)."""
        try:
            return choose_runtime(
                name, self.device, formats=formats_in_cache(self.model_dir, name), requested=self.runtime
            )
        except ModelRuntimeError as exc:
            raise ModelError(str(exc)) from exc

    def model(self, name: str) -> Model:
        """The cached callable for ``name`` (verified file, engine chosen once per process)."""
        runtime = self.runtime_for(name)
        session = self.session(name) if runtime == ONNXRUNTIME else None
        with self._lock:
            cached = self._models.get(name)
            if cached is None:
                if session is not None:
                    cached = OrtModel(name, session)
                else:
                    try:
                        cached = load_model(name, runtime, self.path(name, runtime), threads=self.threads)
                    except ModelRuntimeError as exc:
                        raise ModelError(str(exc)) from exc
                self._models[name] = cached
                log.info("model runtimes: %s", describe(self._models))
            return cached


assert set(RUNTIMES) == set(RUNTIME_FORMAT)
