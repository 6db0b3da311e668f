"""Decoded frames to RGB: OpenCV's I420 conversion must agree with swscale's rgb24 (issue 23)."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from bridge.demo.scene import astronaut
from bridge.media.videofile import to_rgb

pytestmark = pytest.mark.unit


def _yuv_frame(width: int, height: int) -> av.VideoFrame:
    rgb = cv2.resize(astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def test_limited_range_420_matches_swscale_within_a_few_levels() -> None:
    frame = _yuv_frame(640, 480)
    ours, swscale = to_rgb(frame).astype(int), frame.to_ndarray(format="rgb24").astype(int)
    assert ours.shape == (480, 640, 3)
    diff = np.abs(ours - swscale)
    # chroma upsampling differs at colour edges only: the mean stays within ~1 level of 255
    assert diff.mean() < 2.0, diff.mean()
    assert np.percentile(diff, 99) <= 12


def test_odd_sizes_and_other_formats_go_through_swscale() -> None:
    odd = av.VideoFrame.from_ndarray(np.zeros((31, 33, 3), np.uint8), format="rgb24").reformat(format="yuv444p")
    out = to_rgb(odd)
    assert out.shape == (31, 33, 3)
    assert np.array_equal(out, odd.to_ndarray(format="rgb24"))
