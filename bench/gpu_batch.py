"""Batched face models: face-frames/s and 15-fps participants per device at batch 1, 8, 32, 128.

Each face model gets a dynamic batch axis (``bridge.models.convert.batch``) and runs in
onnxruntime: on the CUDA provider with I/O binding (inputs copied to the GPU once per batch,
outputs left there until read) where a GPU works, else on the CPU provider. A face-frame is
what the live tracker spends per analysed frame: one FaceMesh crop, two iris crops every
third frame, the detector once a second and the emotion CNN three times a second
(``inference.tracking``, ``inference.analyzer``); participants per device = face-frames/s / 15.
Also checks that each batched output matches batch 1 within 1e-4.

``--scheduler 1,4,16`` then measures what a worker gets: that many participant threads each
calling FaceMesh one crop at a time, (a) on the model the worker uses without batching (LiteRT
on the CPU, onnxruntime CUDA on a GPU) and (b) through the per-worker scheduler
(``bridge.models.batching``, ``MICROCUE_BATCHING=on``), side by side in one run: crops/s and
the mean batch the scheduler formed.

    .venv/bin/python -m bench.gpu_batch [--batches 1,8,32,128] [--seconds 3] [--cpu] [--scheduler 1,4,16]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import numpy as np
import onnx
import onnxruntime as ort

from bridge.config import Settings
from bridge.models.batching import BatchingModel, load_batched
from bridge.models.convert.batch import dynamic_batch
from bridge.models.store import ensure_models
from inference.models import MODEL_FILES, ModelSet, available_providers
from inference.runtime import Model, OrtModel

#: model -> calls per analysed frame at 15 fps (iris: 2 eyes every 3rd frame; detector: 1/s;
#: emotion: ~3 Hz sentiment), from inference.tracking and inference.analyzer.
CALLS_PER_FRAME: dict[str, float] = {"face_landmarks": 1.0, "iris": 2 / 3, "face_detector": 1 / 15, "emotion": 1 / 5}
PARITY = 1e-4
FPS = 15.0


def session(model: onnx.ModelProto, cuda: bool) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    return ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=providers)


def per_item_seconds(sess: ort.InferenceSession, x: np.ndarray, seconds: float, cuda: bool) -> float:
    """Seconds per item at batch ``len(x)``, I/O-bound on the GPU, plain run() on the CPU."""
    name = sess.get_inputs()[0].name
    outputs = [o.name for o in sess.get_outputs()]
    if cuda:
        binding = sess.io_binding()

        def call() -> None:
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
            for o in outputs:
                binding.bind_output(o, "cuda")
            sess.run_with_iobinding(binding)
            binding.copy_outputs_to_cpu()
    else:

        def call() -> None:
            sess.run(outputs, {name: x})

    for _ in range(3):
        call()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        n += 1
    return (time.perf_counter() - start) / (n * len(x))


def threaded_crops_per_s(model: Model, threads: int, seconds: float) -> float:
    """Crops/s when ``threads`` participants each call ``model`` with one crop after another."""
    rng = np.random.default_rng(1)
    crops = [rng.uniform(0, 1, (1, *model.input_shape[1:])).astype(np.float32) for _ in range(threads)]
    for crop in crops:  # warm every engine (LiteRT: one interpreter per thread, made on first call)
        model(crop)
    counts = [0] * threads
    stop = time.perf_counter() + seconds
    barrier = threading.Barrier(threads + 1)

    def participant(i: int) -> None:
        barrier.wait()
        while time.perf_counter() < stop:
            model(crops[i])
            counts[i] += 1

    workers = [threading.Thread(target=participant, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    began = time.perf_counter()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - began)


def scheduler_table(model_dir: os.PathLike[str], thread_counts: list[int], seconds: float, cuda: bool) -> None:
    """FaceMesh from N participant threads: the worker's unbatched model, onnxruntime at batch 1
    (the scheduler's own engine without it), and the batching scheduler."""
    models = ModelSet(model_dir, prefer_gpu=cuda)  # type: ignore[arg-type]
    plain = models.model("face_landmarks")
    ort_one = OrtModel("face_landmarks", models.session("face_landmarks"))
    engine = "CUDA" if cuda else "CPU"
    print(f"\nFaceMesh crops/s from N participant threads, one crop per call (load average {os.getloadavg()[0]:.2f})")
    print(
        f"| participants | unbatched ({plain.runtime}) | onnxruntime {engine} batch 1 | scheduler (onnxruntime "
        f"{engine} batch N) | scheduler / batch 1 | mean batch |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for n in thread_counts:
        direct = threaded_crops_per_s(plain, n, seconds)
        one = threaded_crops_per_s(ort_one, n, seconds) if plain.runtime != "onnxruntime" else direct
        batched: BatchingModel = load_batched(models, "face_landmarks")
        through = threaded_crops_per_s(batched, n, seconds)
        mean = batched.items / max(1, batched.batches)
        print(f"| {n} | {direct:,.0f} | {one:,.0f} | {through:,.0f} | {through / one:.2f} | {mean:.1f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,8,32,128")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per model and batch size")
    parser.add_argument("--cpu", action="store_true", help="the CPU even where a GPU works")
    parser.add_argument(
        "--scheduler",
        default="",
        metavar="N,N,...",
        help="also compare FaceMesh from this many participant threads, batched and not",
    )
    args = parser.parse_args(argv)

    model_dir = Settings().model_dir.expanduser()
    ensure_models(model_dir)
    cuda = not args.cpu and "CUDAExecutionProvider" in available_providers(True)
    batches = [int(b) for b in args.batches.split(",")]
    rng = np.random.default_rng(0)
    per_item: dict[str, dict[int, float]] = {}
    print(
        f"device: {'CUDA (' + ort.get_device() + ')' if cuda else 'CPU, one thread'}; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    for name, calls in CALLS_PER_FRAME.items():
        base = onnx.load(str(model_dir / MODEL_FILES[name]))
        model = base if name == "emotion" else dynamic_batch(base)  # the emotion CNN is batched already
        sess, ref_sess = session(model, cuda), session(base, cuda=False)
        shape = [d if isinstance(d, int) else 1 for d in ref_sess.get_inputs()[0].shape]
        x_all = rng.uniform(0, 1, (max(batches), *shape[1:])).astype(np.float32)
        ref_name = ref_sess.get_inputs()[0].name
        ref = [
            np.concatenate(o)
            for o in zip(
                *[ref_sess.run(None, {ref_name: x_all[i : i + 1]}) for i in range(min(8, len(x_all)))], strict=True
            )
        ]
        got = sess.run(None, {sess.get_inputs()[0].name: x_all[:8]})
        worst = max(float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True))
        status = "ok" if worst <= PARITY else "MISMATCH"
        per_item[name] = {b: per_item_seconds(sess, x_all[:b], args.seconds, cuda) for b in batches}
        cells = " | ".join(f"{1 / per_item[name][b]:,.0f}/s" for b in batches)
        print(
            f"| {name} ({calls:.2f} per face-frame) | {cells} | batch 8 vs batch 1: {worst:.1e} {status} |", flush=True
        )
    print(
        "| face-frames/s (all four models) | "
        + " | ".join(f"{1 / sum(CALLS_PER_FRAME[n] * per_item[n][b] for n in per_item):,.0f}" for b in batches)
        + " |"
    )
    print(
        "| 15-fps participants | "
        + " | ".join(f"{1 / sum(CALLS_PER_FRAME[n] * per_item[n][b] for n in per_item) / FPS:,.0f}" for b in batches)
        + " |"
    )
    print(f"(columns: batch {', '.join(map(str, batches))})")
    if args.scheduler:
        scheduler_table(model_dir, [int(n) for n in args.scheduler.split(",")], args.seconds, cuda)
    return 0


if __name__ == "__main__":
    sys.exit(main())
