"""The size the others receive a publisher's video at (bridge/rooms/builtin.py, ``tile_size``):
the whole picture, shape kept, inside the grid's box, never enlarged, with even sides."""

from __future__ import annotations

import pytest

from bridge.rooms.builtin import RELAY_BOX, tile_size

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("camera", "tile"),
    [
        ((640, 480), (320, 240)),  # a desktop camera: QVGA
        ((1280, 720), (320, 180)),  # widescreen: fits by width
        ((360, 640), (136, 240)),  # a phone held upright: fits by height (135 rounded to even)
        ((720, 1280), (136, 240)),
        ((270, 480), (136, 240)),
        ((320, 240), (320, 240)),  # already a tile: untouched
        ((160, 120), (160, 120)),  # smaller: never enlarged
    ],
)
def test_the_tile_fits_the_box_with_the_shape_kept(camera: tuple[int, int], tile: tuple[int, int]) -> None:
    assert RELAY_BOX == (320, 240)
    assert tile_size(*camera, RELAY_BOX) == tile
    width, height = tile
    assert width % 2 == 0 and height % 2 == 0
    assert abs(width / height - camera[0] / camera[1]) < 0.03
