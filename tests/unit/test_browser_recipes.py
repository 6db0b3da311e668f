"""Browser-bot pieces that need no browser: recipes, names a page accepts, page URLs, the camera
card, and the bot request's validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bridge.errors import UsageError
from bridge.rooms.browser import (
    CARD_SIZE,
    RecipeError,
    available_recipes,
    check_page_url,
    init_script,
    load_recipe,
    render_card,
)
from web.schemas import BotRequest

pytestmark = pytest.mark.unit


def test_the_janus_demo_recipe_loads() -> None:
    assert "janus-videoroom" in available_recipes()
    recipe = load_recipe("janus-videoroom")
    assert [s.action for s in recipe.steps] == ["click", "fill", "click", "wait"]
    assert recipe.steps[1].value == "{name}"
    assert (recipe.tile, recipe.participant_name, recipe.ended) == (".panel", ".panel-title .label", ".bootbox.modal")
    assert recipe.chat_input is None  # that page has no chat
    # the demo refuses anything but letters and digits in a name
    assert recipe.display_name("MicroCue notetaker") == "MicroCueNotetaker"
    assert recipe.display_name("   ") == "MicroCue"


@pytest.mark.parametrize(("name", "message"), [("../etc/passwd", "lowercase"), ("nope", "available: janus-videoroom")])
def test_bad_recipe_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(RecipeError, match="recipe") as info:
        load_recipe(name)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/x", "http(s) URL"),
        ("http:///x", "http(s) URL"),
        ("https://a:b@host/", "user name"),
        ("https://host/" + "x" * 3000, "characters"),
    ],
)
def test_page_urls_are_checked(url: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        check_page_url(url)
    assert message in str(info.value)
    assert check_page_url("https://meet.example/room?id=1") == "https://meet.example/room?id=1"


def test_the_card_is_a_still_y4m(tmp_path: Path) -> None:
    card = render_card(tmp_path / "card.y4m")
    data = card.read_bytes()
    header, _, rest = data.partition(b"\n")
    width, height = CARD_SIZE
    assert header.startswith(f"YUV4MPEG2 W{width} H{height}".encode())
    frame = len(b"FRAME\n") + width * height * 3 // 2
    assert len(rest) % frame == 0 and len(rest) // frame >= 1
    y = rest[len(b"FRAME\n") : len(b"FRAME\n") + width * height]
    assert len(set(y)) > 10  # text on the card, not a flat picture


def test_init_script_carries_its_config() -> None:
    recipe = load_recipe("janus-videoroom")
    script = init_script(whip_url="http://127.0.0.1:8080/whip/m1", join_token="tok", recipe=recipe, name="Bot")
    assert script.startswith('window.__MICROCUE_BOT__ = {"whip": "http://127.0.0.1:8080/whip/m1", "token": "tok"')
    assert "RTCPeerConnection" in script


def test_bot_request_takes_a_page_with_a_recipe() -> None:
    ok = BotRequest(page="http://localhost:8000/videoroomtest.html", recipe="janus-videoroom")
    assert ok.host == "localhost"
    for bad, message in [
        ({"page": "http://localhost/"}, "'page' needs 'recipe'"),
        ({"page": "http://localhost/", "recipe": "zoom-magic"}, "no recipe"),
        ({"page": "http://localhost/", "recipe": "janus-videoroom", "janus": "ws://h:1", "room": 1}, "exactly one"),
        ({"janus": "ws://h:1", "room": 1, "recipe": "janus-videoroom"}, "only applies to 'page'"),
        ({"page": "file:///etc/passwd", "recipe": "janus-videoroom"}, "http(s) URL"),
    ]:
        with pytest.raises(ValidationError) as info:
            BotRequest(**bad)
        assert message in str(info.value), bad
