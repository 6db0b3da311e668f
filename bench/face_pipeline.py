"""Face pipeline cost on the CPU at batch 1: detector, landmarks, the whole per-frame pipeline,
and the pipeline's overhead over the model calls it makes; PyAV decode speed as the ceiling.

    python -m bench.face_pipeline [--video PATH] [--seconds 10] [--threads 1,2]

Overhead = pipeline wall time / time spent inside onnxruntime for the calls that pipeline made
(measured by wrapping each session), so it is the share of work outside the models.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from bridge.config import Settings
from bridge.demo.scene import Pose, frames_for, write_video
from bridge.models.store import ensure_models
from inference.faces import FaceDetector
from inference.landmarks import FaceMesh, IrisModel, roi_from_detection
from inference.models import ModelSet
from inference.tracking import FaceTracker


class TimedSession:
    """An onnxruntime session that adds up the time spent in ``run``."""

    def __init__(self, session: Any) -> None:
        self._s = session
        self.seconds = 0.0
        self.calls = 0

    def get_inputs(self) -> Any:
        return self._s.get_inputs()

    def get_outputs(self) -> Any:
        return self._s.get_outputs()

    def run(self, names: Any, feed: Any) -> Any:
        t = time.perf_counter()
        out = self._s.run(names, feed)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return out


def decode(path: Path) -> tuple[list[np.ndarray], float]:
    t = time.perf_counter()
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return frames, len(frames) / (time.perf_counter() - t)


def bench(frames: list[np.ndarray], models: ModelSet, gaze: bool) -> dict[str, float]:
    det_s, mesh_s = TimedSession(models.session("face_detector")), TimedSession(models.session("face_landmarks"))
    iris_s = TimedSession(models.session("iris"))
    detector, mesh = FaceDetector(det_s), FaceMesh(mesh_s)
    # bare calls: one detector pass (all tiles) and one landmark pass per frame
    det_times, mesh_times = [], []
    roi = roi_from_detection(detector(frames[0])[0])
    for f in frames:
        t = time.perf_counter()
        detector(f)
        det_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        mesh(f, roi)
        mesh_times.append(time.perf_counter() - t)
    for s in (det_s, mesh_s, iris_s):
        s.seconds, s.calls = 0.0, 0
    tracker = FaceTracker(detector, mesh, IrisModel(iris_s) if gaze else None)
    per_frame = []
    for i, f in enumerate(frames):
        t = time.perf_counter()
        tracker.update(f, i / 15.0)
        per_frame.append(time.perf_counter() - t)
    model_time = det_s.seconds + mesh_s.seconds + iris_s.seconds
    return {
        "detector_ms": 1000 * statistics.median(det_times),
        "landmarks_ms": 1000 * statistics.median(mesh_times),
        "pipeline_ms": 1000 * statistics.median(per_frame),
        "pipeline_mean_ms": 1000 * sum(per_frame) / len(per_frame),
        "model_mean_ms": 1000 * model_time / len(frames),
        "overhead_ratio": sum(per_frame) / model_time,
        "vs_det_plus_mesh": (sum(per_frame) / len(frames)) / (statistics.mean(det_times) + statistics.mean(mesh_times)),
        "detector_runs": tracker.detector_runs,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=None, help="default: a synthetic 640x480 15 fps face clip")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args(argv)
    model_dir = Settings().model_dir
    ensure_models(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video
        if video is None:
            video = Path(tmp) / "face.mp4"
            write_video(
                video,
                frames_for(
                    lambda t: Pose(dx=60 * math.sin(t), angle=8 * math.sin(0.7 * t)), args.seconds, 15.0, noise=3.0
                ),
                15.0,
            )
        frames, decode_fps = decode(video)
    h, w = frames[0].shape[:2]
    print(
        f"video: {video.name if args.video else 'synthetic'} {w}x{h}, {len(frames)} frames; "
        f"PyAV decode alone: {decode_fps:.0f} frames/s (ceiling)"
    )
    print(
        f"{'threads':>7} {'gaze':>5} {'detector':>9} {'landmarks':>9} {'pipeline':>9} {'models':>7} "
        f"{'overhead':>8} {'vs det+lm':>9} {'det runs':>8}"
    )
    for n in (int(x) for x in args.threads.split(",")):
        models = ModelSet(model_dir, threads=n, prefer_gpu=False)
        for gaze in (False, True):
            r = bench(frames, models, gaze)
            print(
                f"{n:>7} {gaze!s:>5} {r['detector_ms']:8.2f}  {r['landmarks_ms']:8.2f}  "
                f"{r['pipeline_mean_ms']:8.2f}  "
                f"{r['model_mean_ms']:6.2f}  {r['overhead_ratio']:7.2f}x {r['vs_det_plus_mesh']:8.2f}x "
                f"{r['detector_runs']:>8}"
            )
    print(
        "ms are per frame (median for single models, mean for the pipeline); 'models' is the mean time inside "
        "onnxruntime per frame; overhead = pipeline / models; 'vs det+lm' = pipeline / (detector + landmarks "
        "run every frame)."
    )


if __name__ == "__main__":
    main()
