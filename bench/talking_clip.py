"""The real talking-head clip the speed benchmarks run on: 640x480, 30 fps, face ~25 % of the width.

Issue 23 measured ``microcue analyze`` on a real talking head at 640x480 and 30 fps with the face
about a quarter of the frame wide (a laptop webcam at arm's length); the still synthetic face of
``bench.peers`` moves too little and hides what tracking a moving, talking face costs. This
module makes such a clip from the real footage kept in the repository, so that anyone can make
the same bytes without a download: ``tests/data/WolfgangLanger_Pexels.mp4`` (an actress talking,
laughing and crying with head turns; Pexels licence, tests/data/README.md), 640x360 at 23.98 fps.

- scaled by ``SCALE`` so her face (FaceMesh's landmark box, median 229 px wide in the source)
  is ~160 px, 25 % of 640;
- placed on a 640x480 canvas, face centred horizontally, the border filled by repeating the
  edge pixels (no mirrored second face for the detector to find);
- every frame kept and re-stamped at 30 fps (plays 1.25x faster): each frame still differs from
  the one before by real motion, where duplicating frames to reach 30 fps would give the optical
  flow and the tracker every fifth frame for free;
- no audio: the comparison with MediaPipe (video only) is about the video pipeline; what the
  voice analysis costs ``microcue analyze`` reports apart (``audio_cpu_ms_per_frame``).

    .venv/bin/python -m bench.talking_clip OUT.mp4
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from bridge.demo.scene import write_video

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "tests" / "data" / "WolfgangLanger_Pexels.mp4"
WIDTH, HEIGHT, FPS = 640, 480, 30
#: 160 px wanted / 229 px median landmark-box width in the source (measured with FaceTracker).
SCALE = 0.70
#: The face's median centre in the source, x (px), from the same measurement.
FACE_CX = 447.0
#: libx264 quality: visually clean at 640x480 (what a webcam call's sender would send or better).
CRF = 20


def _place(rgb: np.ndarray) -> np.ndarray:
    """Scale the source frame and put it on the 640x480 canvas, face centred horizontally."""
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (round(w * SCALE), round(h * SCALE)), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    left = round(WIDTH / 2 - FACE_CX * SCALE)
    left = max(0, min(WIDTH - sw, left))
    top = (HEIGHT - sh) // 2
    return cv2.copyMakeBorder(small, top, HEIGHT - sh - top, left, WIDTH - sw - left, borderType=cv2.BORDER_REPLICATE)


def frames(source: Path = SOURCE) -> Iterator[np.ndarray]:
    """The source's frames, scaled and placed on the 640x480 canvas, in order."""
    with av.open(str(source)) as src:
        for frame in src.decode(video=0):
            yield _place(frame.to_ndarray(format="rgb24"))


def make(out: Path, source: Path = SOURCE) -> Path:
    """Write the clip to ``out`` (H.264, yuv420p, 30 fps: every source frame, re-stamped) and return it."""
    write_video(out, frames(source), fps=FPS, crf=CRF)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    print(make(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
