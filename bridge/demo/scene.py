"""Place a real face (the astronaut photograph) into 640x480 frames under a known pose.

Ground truth is exact because we apply the transform: translations and in-plane
rotations of the whole head, used to test detection, tracking, jitter and roll.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import av
import cv2
import numpy as np

FRAME_SIZE = (640, 480)
# Face centre of the astronaut photograph (512x512), between the eyes and the mouth, measured with
# our FaceMesh: used as the point the pose moves.
ASTRONAUT_FACE_CENTRE = (225.0, 128.0)
BACKGROUND = (96, 104, 112)  # a calm grey-blue wall


@lru_cache(maxsize=1)
def astronaut() -> np.ndarray:
    """Eileen Collins, NASA photograph, public domain (the copy scikit-image ships as
    ``skimage.data.astronaut``; see bridge/demo/data/README.md). Read-only RGB, 512x512."""
    raw = np.frombuffer((files("bridge.demo") / "data" / "astronaut.png").read_bytes(), dtype=np.uint8)
    bgr = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if bgr is None:  # pragma: no cover - the file ships with the package
        raise RuntimeError("bridge/demo/data/astronaut.png is missing or damaged; reinstall MicroCue")
    img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    img.setflags(write=False)
    return img


@dataclass(frozen=True, slots=True)
class Pose:
    """Where the face centre goes in the frame (pixels from the frame centre), its in-plane
    rotation (degrees, counter-clockwise as in OpenCV) and scale relative to the source."""

    dx: float = 0.0
    dy: float = 0.0
    angle: float = 0.0
    scale: float = 1.3


def pose_matrix(
    pose: Pose, size: tuple[int, int] = FRAME_SIZE, centre: tuple[float, float] = ASTRONAUT_FACE_CENTRE
) -> np.ndarray:
    m = cv2.getRotationMatrix2D(centre, pose.angle, pose.scale)
    m[0, 2] += size[0] / 2 + pose.dx - centre[0]
    m[1, 2] += size[1] / 2 + pose.dy - centre[1]
    return m


def render(
    pose: Pose,
    source: np.ndarray | None = None,
    size: tuple[int, int] = FRAME_SIZE,
    centre: tuple[float, float] = ASTRONAUT_FACE_CENTRE,
) -> np.ndarray:
    src = astronaut() if source is None else source
    return cv2.warpAffine(
        src,
        pose_matrix(pose, size, centre),
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=BACKGROUND,
    )


def add_noise(frame: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise, as a webcam in indoor light shows it."""
    noisy = frame.astype(np.float32) + rng.normal(0.0, sigma, frame.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def frames_for(
    poses: Callable[[float], Pose], seconds: float, fps: float, noise: float = 0.0, seed: int = 0
) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for i in range(math.ceil(seconds * fps)):
        frame = render(poses(i / fps))
        yield add_noise(frame, noise, rng) if noise > 0 else frame


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float, codec: str = "libx264", crf: int = 18) -> int:
    """Encode RGB frames; returns how many were written. H.264 at crf 18 is visually lossless;
    higher crf imitates a webcam stream."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        if not isinstance(stream, av.VideoStream):
            raise ValueError(f"{codec} is not a video codec")
        stream.pix_fmt = "yuv420p"
        if codec in ("libx264", "h264"):
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        for rgb in frames:
            if n == 0:
                stream.width, stream.height = rgb.shape[1], rgb.shape[0]
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
            n += 1
        for packet in stream.encode():
            out.mux(packet)
    return n
