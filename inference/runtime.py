"""Model runtimes: a model is a callable, and the engine behind it is chosen per model and device.

The face models are TFLite-native (MediaPipe's BlazeFace, FaceMesh, iris). Converted to ONNX
they run 3-4x slower in onnxruntime's CPU provider than in engines that fuse their depthwise
convolutions and PReLUs well (docs/benchmarks.md "Model runtimes", ``bench/runtimes.py``), so
on the CPU each model runs where it measured fastest, and on a GPU everything stays on
onnxruntime's CUDA provider. Every engine sees the same input convention, so the analyzers
do not know which one they call:

- input: one float32 tensor in the TFLite layout, NHWC, batch first;
- output: ``{output name: array}`` with the TFLite graph's output names (the converted ONNX
  graphs keep them).

Engines are imported lazily; one that is not installed is skipped for the next in the
preference list, and ``onnxruntime`` is always there (``ai-edge-litert`` is a dependency
where it has wheels; OpenVINO is the optional extra ``microcue[openvino]``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

log = logging.getLogger(__name__)

ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
LITERT = "litert"
#: Every engine this module can drive; ``auto`` picks per model from the tables below.
RUNTIMES: tuple[str, ...] = (OPENVINO, LITERT, ONNXRUNTIME)
RuntimeChoice = Literal["auto", "onnxruntime", "openvino", "litert"]
Device = Literal["cpu", "cuda"]

#: The file format each engine reads: OpenVINO and onnxruntime the converted ONNX, LiteRT the
#: original .tflite (it cannot read ONNX).
RUNTIME_FORMAT: dict[str, str] = {ONNXRUNTIME: "onnx", OPENVINO: "onnx", LITERT: "tflite"}

#: CPU preference per model, fastest first, from ``python -m bench.runtimes`` on the 2-core
#: AMD EPYC development VM (one thread, batch 1, same run, interleaved; docs/benchmarks.md
#: "Model runtimes"). On the landmark models LiteRT 2.3 (XNNPACK) and OpenVINO 2026.4 are both
#: 3.5-5.5x faster than onnxruntime 1.31; between the two it flips from run to run on a quiet
#: machine, but LiteRT runs on the calling thread while OpenVINO hands each call to a worker
#: thread of its own, which costs it under load (a bridge with 12 participants is always under
#: load), so LiteRT comes first. The emotion CNN is a Keras model (no .tflite) where
#: onnxruntime is fastest. A machine without LiteRT gets the next engine in the list.
CPU_PREFERENCE: dict[str, tuple[str, ...]] = {
    "face_detector": (LITERT, OPENVINO, ONNXRUNTIME),
    "face_landmarks": (LITERT, OPENVINO, ONNXRUNTIME),
    "iris": (LITERT, OPENVINO, ONNXRUNTIME),
    "emotion": (ONNXRUNTIME,),
}
#: On a GPU the CUDA provider runs everything (the GPU path of issue 14 batches there).
CUDA_PREFERENCE: tuple[str, ...] = (ONNXRUNTIME,)


class ModelRuntimeError(RuntimeError):
    """A model cannot be loaded by the engine asked for; the message names the fix."""


class Model(Protocol):
    """What the analyzers call: NHWC float32 in, named outputs out; safe to call from many threads."""

    name: str
    runtime: str
    #: NHWC input shape; the batch axis is -1 when the engine accepts any batch.
    input_shape: tuple[int, ...]
    output_names: tuple[str, ...]

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]: ...


def installed(runtime: str) -> bool:
    """Whether ``runtime``'s Python package imports here (onnxruntime always does).

    The engines are imported where they are used, not at the top: OpenVINO is an optional extra
    and LiteRT has no wheel on some platforms, so a missing engine must cost nothing but itself.
    """
    try:
        if runtime == OPENVINO:
            import openvino  # noqa: F401, PLC0415
        elif runtime == LITERT:
            from ai_edge_litert import interpreter  # noqa: F401, PLC0415
        elif runtime == ONNXRUNTIME:
            import onnxruntime  # noqa: F401, PLC0415
        else:
            return False
    except ImportError:
        return False
    return True


def choose_runtime(
    name: str,
    device: Device,
    *,
    formats: frozenset[str],
    requested: RuntimeChoice = "auto",
    is_installed: Callable[[str], bool] = installed,
) -> str:
    """The engine for model ``name`` on ``device``.

    ``requested`` forces one engine for every model it can read (LiteRT has no file for the
    Keras emotion CNN, which then gets its automatic choice); "auto" takes the fastest engine
    that is installed and whose file format the model cache holds.
    """
    if requested != "auto":
        if requested not in RUNTIMES:
            raise ModelRuntimeError(f"unknown model runtime {requested!r}; choose one of auto, {', '.join(RUNTIMES)}")
        if not is_installed(requested):
            raise ModelRuntimeError(
                f"runtime {requested} is not installed here; reinstall microcue with its dependencies"
            )
        if RUNTIME_FORMAT[requested] in formats:
            return requested
    order = CUDA_PREFERENCE if device == "cuda" else CPU_PREFERENCE.get(name, (ONNXRUNTIME,))
    for runtime in order:
        if RUNTIME_FORMAT[runtime] in formats and is_installed(runtime):
            return runtime
    return ONNXRUNTIME


# ---- engines -------------------------------------------------------------------------------


def _nchw(shape: list[Any]) -> bool:
    """A converted image graph takes NCHW (channels 1 or 3 second, larger spatial axes after)."""
    return len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3)  # noqa: PLR2004


_CUDA_PROVIDER = "CUDAExecutionProvider"


class OrtModel:
    """onnxruntime (CPU or CUDA); the session is shared across threads (onnxruntime allows it).

    On CUDA each call goes through I/O binding: the batch is copied to the GPU once, the outputs
    are allocated there and copied back once, instead of ``run()``'s staging of every tensor.
    An ``IOBinding`` is not thread-safe, so each calling thread keeps its own. ``io_binding``
    forces the choice (tests exercise the bound path on the CPU provider).
    """

    runtime = ONNXRUNTIME

    def __init__(self, name: str, session: Any, *, io_binding: bool | None = None) -> None:
        self.name = name
        self.session = session
        (inp,) = session.get_inputs()
        self._input = inp.name
        shape = list(inp.shape)
        self._transpose = _nchw(shape)
        nhwc = [shape[0], shape[2], shape[3], shape[1]] if self._transpose else shape
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in nhwc)
        self.output_names = tuple(o.name for o in session.get_outputs())
        providers = session.get_providers() if hasattr(session, "get_providers") else []
        self.device: Device = "cuda" if _CUDA_PROVIDER in providers else "cpu"
        self.io_binding = self.device == "cuda" if io_binding is None else io_binding
        self._local = threading.local()

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        feed = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if self._transpose else x
        if self.io_binding:
            return self._run_bound(np.ascontiguousarray(feed, dtype=np.float32))
        outs = self.session.run(list(self.output_names), {self._input: feed})
        return dict(zip(self.output_names, outs, strict=True))

    def _run_bound(self, feed: np.ndarray) -> dict[str, np.ndarray]:
        binding = getattr(self._local, "binding", None)
        if binding is None:
            binding = self._local.binding = self.session.io_binding()
        binding.bind_cpu_input(self._input, feed)
        for name in self.output_names:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        outs = binding.copy_outputs_to_cpu()
        binding.clear_binding_outputs()  # the next call's batch may have another size
        return dict(zip(self.output_names, outs, strict=True))


class LiteRtModel:
    """LiteRT (XNNPACK, one thread). An interpreter is not thread-safe, so each calling thread
    gets its own; they share the read-only model bytes."""

    runtime = LITERT

    def __init__(self, name: str, path: Path, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415 - optional engine (see installed)

        self.name = name
        self._content = Path(path).read_bytes()
        self._threads = max(1, int(threads))
        self._make: Callable[[], Any] = lambda: Interpreter(model_content=self._content, num_threads=self._threads)
        self._local = threading.local()
        first = self._interpreter()  # fail at load time, not on the first frame
        (inp,) = first.get_input_details()
        self.input_shape = tuple(int(d) for d in inp["shape"])
        self.output_names = tuple(d["name"] for d in first.get_output_details())

    def _interpreter(self) -> Any:
        it = getattr(self._local, "it", None)
        if it is None:
            it = self._make()
            it.allocate_tensors()
            self._local.it = it
            self._local.input = it.get_input_details()[0]["index"]
            self._local.outputs = [(d["name"], d["index"]) for d in it.get_output_details()]
        return it

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        it = self._interpreter()
        if x.shape[0] != 1:  # the .tflite graphs are batch 1
            outs = [self(x[i : i + 1]) for i in range(x.shape[0])]
            return {k: np.concatenate([o[k] for o in outs]) for k in self.output_names}
        it.set_tensor(self._local.input, np.ascontiguousarray(x, dtype=np.float32))
        it.invoke()
        return {name: it.get_tensor(index) for name, index in self._local.outputs}  # get_tensor copies


#: OpenVINO CPU settings for many small concurrent calls: one thread and one stream per
#: compiled model, full float32 (the CPU would otherwise pick bf16 on AVX-512-BF16 parts and
#: move landmarks by more than the 0.5 px parity bound), and no core pinning, which would put
#: every pool thread's work on the same core.
OPENVINO_CPU_CONFIG: dict[str, Any] = {
    "INFERENCE_NUM_THREADS": 1,
    "NUM_STREAMS": 1,
    "PERFORMANCE_HINT": "LATENCY",
    "INFERENCE_PRECISION_HINT": "f32",
    "ENABLE_CPU_PINNING": False,
}


class OpenVinoModel:
    """OpenVINO on the CPU. One compiled model per calling thread (each with one stream and one
    thread) scales across a thread pool; a shared one with one stream serialises the pool."""

    runtime = OPENVINO

    def __init__(self, name: str, path: Path, threads: int = 1) -> None:
        import openvino as ov  # noqa: PLC0415 - optional engine (see installed)

        self.name = name
        self._core = ov.Core()
        model = self._core.read_model(str(path))
        shape = list(model.inputs[0].get_partial_shape())
        dims = [d.get_length() if d.is_static else -1 for d in shape]
        if _nchw(dims):  # accept NHWC and fold the transpose into the graph
            ppp = ov.preprocess.PrePostProcessor(model)
            ppp.input().tensor().set_layout(ov.Layout("NHWC"))
            ppp.input().model().set_layout(ov.Layout("NCHW"))
            model = ppp.build()
            dims = [dims[0], dims[2], dims[3], dims[1]]
        self._model = model
        self._config = {**OPENVINO_CPU_CONFIG, "INFERENCE_NUM_THREADS": max(1, int(threads))}
        self._local = threading.local()
        self.input_shape = tuple(dims)
        self.output_names = tuple(o.get_any_name() for o in model.outputs)
        self._request()  # compile now: fail at load time, not on the first frame

    def _request(self) -> Any:
        req = getattr(self._local, "req", None)
        if req is None:
            compiled = self._core.compile_model(self._model, "CPU", self._config)
            req = compiled.create_infer_request()
            self._local.req = req
        return req

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        req = self._request()
        req.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        # The request's output buffers are reused by its next call: copy them out.
        return {name: np.array(req.get_output_tensor(i).data) for i, name in enumerate(self.output_names)}


def load_model(name: str, runtime: str, path: Path, *, threads: int = 1) -> Model:
    """Open ``path`` with OpenVINO or LiteRT (onnxruntime sessions are made by ``inference.models``,
    which owns the CPU/CUDA provider choice, and wrapped in ``OrtModel``)."""
    try:
        if runtime == OPENVINO:
            return OpenVinoModel(name, path, threads)
        if runtime == LITERT:
            return LiteRtModel(name, path, threads)
    except Exception as exc:
        raise ModelRuntimeError(
            f"{runtime} cannot load {path} ({type(exc).__name__}: {exc}); delete {path} and "
            "fetch again (`microcue models fetch --force`)"
        ) from exc
    raise ModelRuntimeError(f"unknown model runtime {runtime!r}")


def as_model(name: str, obj: Model | Any) -> Model:
    """A ``Model`` as is; an onnxruntime-like session (``run``/``get_inputs``) wrapped in one, so
    code and tests that hand the analyzers sessions keep working."""
    if hasattr(obj, "run") and hasattr(obj, "get_inputs"):
        return OrtModel(name, obj)
    return obj


def check_outputs(model: Model, needed: tuple[str, ...]) -> Model:
    """``model`` if it has the outputs this code reads, else a load-time error that says the fix."""
    missing = [n for n in needed if n not in model.output_names]
    if missing:
        raise ModelRuntimeError(
            f"{model.name}: the model has outputs {list(model.output_names)}, not {missing}; the model cache "
            "holds a different model: run `microcue models fetch --force`"
        )
    return model


def describe(models: Mapping[str, Model]) -> str:
    """``face_landmarks=openvino, iris=openvino, ...`` for one log line at load time."""
    return ", ".join(f"{n}={m.runtime}" for n, m in models.items())
