"""Model runtimes side by side: each face model on each installed engine, one core, batch 1.

Every engine runs the same model from the same cache (the ONNX conversion, or the .tflite
original for LiteRT), single-threaded, in one process pinned to one core. Rounds are
interleaved (engine A, B, C, A, B, C, ...) so load from other processes on a shared machine
hits every engine alike; the figure is the median over rounds of each round's mean call time.
The fastest engine per model is what ``inference.runtime.CPU_PREFERENCE`` should list first.

    .venv/bin/python -m bench.runtimes [--rounds 15] [--calls 100] [--core 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from bridge.config import Settings
from bridge.models.store import ensure_models
from inference.models import ModelSet
from inference.runtime import RUNTIMES, Model, installed

MODELS = ("face_detector", "face_landmarks", "iris", "emotion")


def load_all(model_dir: str) -> dict[str, dict[str, Model]]:
    """model -> runtime -> loaded model, for every runtime that can read that model here."""
    out: dict[str, dict[str, Model]] = {}
    for name in MODELS:
        out[name] = {}
        for runtime in RUNTIMES:
            if not installed(runtime):
                continue
            model = ModelSet(model_dir, threads=1, prefer_gpu=False, runtime=runtime).model(name)  # type: ignore[arg-type]
            if model.runtime == runtime:  # a forced engine without a file for this model falls back
                out[name][runtime] = model
    return out


def sample_input(model: Model, rng: np.random.Generator) -> np.ndarray:
    shape = tuple(1 if d == -1 else d for d in model.input_shape)
    return rng.uniform(-1, 1, shape).astype(np.float32)


def time_rounds(models: dict[str, Model], rounds: int, calls: int) -> dict[str, float]:
    """Median (over interleaved rounds) of the mean ms per call, per runtime."""
    rng = np.random.default_rng(0)
    inputs = {r: sample_input(m, rng) for r, m in models.items()}
    for r, m in models.items():  # warm up: first calls allocate and compile
        for _ in range(10):
            m(inputs[r])
    per_round: dict[str, list[float]] = {r: [] for r in models}
    for _ in range(rounds):
        for r, m in models.items():
            x = inputs[r]
            t0 = time.perf_counter()
            for _ in range(calls):
                m(x)
            per_round[r].append((time.perf_counter() - t0) / calls * 1000)
    return {r: float(np.median(v)) for r, v in per_round.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=100, help="calls per engine per round")
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin this process to")
    args = parser.parse_args(argv)

    model_dir = Settings().model_dir.expanduser()
    ensure_models(model_dir)
    os.sched_setaffinity(0, {args.core})
    load = os.getloadavg()
    loaded = load_all(str(model_dir))
    auto = ModelSet(model_dir, threads=1, prefer_gpu=False)
    print(
        f"one core (#{args.core}), one thread, batch 1; load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    print("| model | " + " | ".join(RUNTIMES) + " | fastest | auto picks |")
    print("| --- |" + " --- |" * (len(RUNTIMES) + 2))
    for name, models in loaded.items():
        ms = time_rounds(models, args.rounds, args.calls)
        best = min(ms, key=ms.__getitem__)
        base = ms.get("onnxruntime")
        cells = []
        for r in RUNTIMES:
            if r not in ms:
                cells.append("-")
            elif base and r != "onnxruntime":
                cells.append(f"{ms[r]:.3f} ms ({base / ms[r]:.1f}x)")
            else:
                cells.append(f"{ms[r]:.3f} ms")
        print(f"| {name} | " + " | ".join(cells) + f" | {best} | {auto.runtime_for(name)} |", flush=True)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
