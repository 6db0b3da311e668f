"""`microcue analyze` against MediaPipe FaceMesh+iris: same clips, same core, same run.

MediaPipe's legacy ``solutions.face_mesh`` (0.10.21, with ``refine_landmarks=True``) bundles
the same BlazeFace, FaceMesh and iris models that microcue runs, so it is the tracker a user
would otherwise pick; ``microcue analyze`` does that tracking plus optical flow, spotting,
the emotion CNN and the engagement streams. Both are run as separate processes pinned to the
same core, alternating (ABBA) for a few rounds, each timing first frame to last with PyAV
decoding included; the per-clip figure is the median over rounds and the ratio is
microcue / MediaPipe. On a machine shared with other work, the load average is printed with
the figures: compare ratios, not absolute times.

mediapipe is a benchmark-only extra (``[project.optional-dependencies] peers``) that pins
numpy<2 and brings opencv-contrib, so it is installed into its own venv, ``.venv-peers``, on
first use (pip, from the package index) and never into the project's.

    .venv/bin/python -m bench.peers [--rounds 3] [--core 1] [--all] [CLIP ...]

Without clips: the real talking head at 640x480, 30 fps, face 25 % of the width
(``bench.talking_clip``, issue 23's figure); ``--all`` adds the still synthetic face
(``bridge.demo.scene``, 640x480 15 fps, 20 s) and the real clips in tests/data. Per clip it
prints the median and the worst of the rounds, and the threads, cores and load it ran with.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from statistics import median

from bench import talking_clip
from bridge.cpus import usable_cores
from bridge.demo.scene import Pose, frames_for, write_video

REPO = Path(__file__).resolve().parent.parent
PEERS_VENV = REPO / ".venv-peers"
MEDIAPIPE_SCRIPT = REPO / "bench" / "peers_mediapipe.py"
REAL_CLIPS = ("single_face.mp4", "WolfgangLanger_Pexels.mp4")
#: issue 23's goal: analyze at most 1.5x MediaPipe's time per frame on one core (issue 13 had 2x),
#: and >= 130 frames/s at 640x480.
GOAL_RATIO = 1.5
GOAL_FPS_640x480 = 130.0
RUN_TIMEOUT_S = 600


def peers_requirements() -> list[str]:
    """The ``peers`` extra of pyproject.toml: the one place its pins are written."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return list(data["project"]["optional-dependencies"]["peers"])


def ensure_peers_venv() -> Path:
    """``.venv-peers/bin/python`` with mediapipe importable, created with pip when missing."""
    python = PEERS_VENV / "bin" / "python"
    check = [str(python), "-c", "import mediapipe, av"]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    base = getattr(sys, "_base_executable", sys.executable)
    print(f"creating {PEERS_VENV.name} with {' '.join(peers_requirements())}", file=sys.stderr, flush=True)
    subprocess.run([base, "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *peers_requirements()], check=True)
    subprocess.run(check, check=True)
    return python


def synthetic_clip(directory: Path) -> Path:

    def sway(t: float) -> Pose:
        return Pose(dx=40 * math.sin(t * 1.3), dy=10 * math.sin(t * 0.7), angle=8 * math.sin(t))

    path = directory / "face_640x480_15fps.mp4"
    write_video(path, frames_for(sway, seconds=20.0, fps=15.0, noise=3.0), fps=15.0)
    return path


def _pinned(core: int) -> None:
    os.sched_setaffinity(0, {core})


def run_mediapipe(python: Path, clip: Path, core: int) -> dict[str, float]:
    proc = subprocess.run(
        [str(python), str(MEDIAPIPE_SCRIPT), str(clip)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        preexec_fn=lambda: _pinned(core),
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"mediapipe on {clip} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_microcue(clip: Path, core: int, out: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "web.cli", "analyze", str(clip), "--json", str(out), "--quiet"]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=REPO,
        preexec_fn=lambda: _pinned(core),
        check=False,
    )
    if proc.returncode not in (0, 5):  # 5: no face found (still timed)
        raise RuntimeError(f"microcue analyze on {clip} failed:\n{proc.stderr[-2000:]}")
    data = json.loads(out.read_text())
    return {
        "frames": data["frames"],
        "ms_per_frame": data["analysis"]["ms_per_frame"],
        "cpu_ms_per_frame": data["analysis"]["cpu_ms_per_frame"],
        "face_frames": round(data["participants"][0]["face_present_ratio"] * data["frames"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="*", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--core", type=int, default=1, help="the one core both run on (issue 23 used taskset -c 1)")
    parser.add_argument("--all", action="store_true", help="also the synthetic face and the clips in tests/data")
    args = parser.parse_args(argv)
    python = ensure_peers_venv()
    with tempfile.TemporaryDirectory(prefix="microcue-peers-") as tmp:
        tmpdir = Path(tmp)
        clips = list(args.clips) or [talking_clip.make(tmpdir / "talking_640x480_30fps.mp4")]
        if args.all:
            clips += [synthetic_clip(tmpdir)] + [
                p for name in REAL_CLIPS if (p := REPO / "tests" / "data" / name).is_file()
            ]
        load0 = os.getloadavg()
        rows = []
        for clip in clips:
            wall: dict[str, list[float]] = {"mp": [], "mc": []}
            cpu: dict[str, list[float]] = {"mp": [], "mc": []}
            faces = {}
            for r in range(args.rounds):
                order = ("mp", "mc") if r % 2 == 0 else ("mc", "mp")  # ABBA: drift hits both alike
                for side in order:
                    res = (
                        run_mediapipe(python, clip, args.core)
                        if side == "mp"
                        else run_microcue(clip, args.core, tmpdir / "out.json")
                    )
                    wall[side].append(res["ms_per_frame"])
                    cpu[side].append(res["cpu_ms_per_frame"])
                    faces[side] = (res["face_frames"], res["frames"])
                print(
                    f"{clip.name} round {r + 1}: mediapipe {wall['mp'][-1]:.2f} ms ({cpu['mp'][-1]:.2f} CPU), "
                    f"microcue {wall['mc'][-1]:.2f} ms ({cpu['mc'][-1]:.2f} CPU) per frame "
                    f"(load {os.getloadavg()[0]:.2f})",
                    file=sys.stderr,
                    flush=True,
                )
            ratio = median(c / m for c, m in zip(wall["mc"], wall["mp"], strict=True))
            cpu_ratio = median(c / m for c, m in zip(cpu["mc"], cpu["mp"], strict=True))
            rows.append((clip, wall, cpu, ratio, cpu_ratio, faces))
        load1 = os.getloadavg()
    print(
        f"one core (#{args.core}) for both, {args.rounds} rounds alternating, PyAV decode included, first "
        f"frame timed apart; microcue: 1 process, models 1 thread each (LiteRT/onnxruntime), OpenCV on "
        f"the 1 core it may use; cores seen by this process {usable_cores()} (os.cpu_count {os.cpu_count()}); "
        f"load average {load0[0]:.2f} before, {load1[0]:.2f} after"
    )
    print(
        "| clip | frames | MediaPipe FaceMesh+iris ms/frame (wall / CPU) | microcue analyze ms/frame (wall / CPU) "
        "| ratio wall / CPU: median (worst) | microcue frames/s on one core (wall / CPU) "
        "| face found (MediaPipe / microcue) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for clip, wall, cpu, ratio, cpu_ratio, faces in rows:
        (mf, n), (cf, _) = faces["mp"], faces["mc"]
        mc_wall, mc_cpu, mp_wall, mp_cpu = (median(v) for v in (wall["mc"], cpu["mc"], wall["mp"], cpu["mp"]))
        worst_wall = max(c / m for c, m in zip(wall["mc"], wall["mp"], strict=True))
        worst_cpu = max(c / m for c, m in zip(cpu["mc"], cpu["mp"], strict=True))
        print(
            f"| {clip.name} | {n} | {mp_wall:.2f} / {mp_cpu:.2f} | {mc_wall:.2f} / {mc_cpu:.2f} "
            f"| {ratio:.2f}x ({worst_wall:.2f}x) / {cpu_ratio:.2f}x ({worst_cpu:.2f}x) "
            f"| {1000 / mc_wall:.0f} / {1000 / mc_cpu:.0f} | {mf} / {cf} |"
        )
    first = rows[0]
    print(
        f"goal (issue 23, {first[0].name}): median wall ratio <= {GOAL_RATIO:g}x: "
        f"{'met' if first[3] <= GOAL_RATIO else 'not met'} ({first[3]:.2f}x); "
        f">= {GOAL_FPS_640x480:g} frames/s on one core for 640x480"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
