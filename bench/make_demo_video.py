"""Make the demo clip: a real face clip from tests/data if given, else a synthetic one.

Usage: python -m bench.make_demo_video OUT.mp4 [SOURCE]
"""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

from bridge.demo.scene import Pose, frames_for, write_video


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    if len(argv) > 1 and argv[1] and Path(argv[1]).is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(argv[1], out)
        print(f"demo clip: {out} (copied from {argv[1]})", file=sys.stderr)
        return 0

    def sway(t: float) -> Pose:
        return Pose(dx=40 * math.sin(t * 1.3), dy=10 * math.sin(t * 0.7), angle=8 * math.sin(t))

    n = write_video(out, frames_for(sway, seconds=6.0, fps=15.0, noise=3.0), fps=15.0)
    print(f"demo clip: {out} ({n} synthetic frames of a real face, 640x480, 15 fps)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
