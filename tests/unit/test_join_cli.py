"""``microcue join`` refuses bad arguments with one clear line and the usage exit code, before
loading any model or opening any socket."""

from __future__ import annotations

import pytest

from web.cli import main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["join", "--context", "customer", "--janus", "ws://127.0.0.1:8188"], 2, "--janus needs --room"),
        (["join", "--context", "customer", "--janus", "http://127.0.0.1:8088", "--room", "1"], 2, "WebSocket URL"),
        (
            ["join", "--context", "customer", "--janus", "ws://127.0.0.1:8188", "--room", "1", "--duration", "0"],
            2,
            "--duration",
        ),
        (["join", "--context", "customer", "--whep", "https://example.invalid/whep/1"], 3, "WHEP is not built yet"),
        (["join", "--context", "customer", "--page", "http://localhost/room"], 2, "--page needs --recipe NAME"),
        (
            ["join", "--context", "customer", "--page", "http://localhost/room", "--recipe", "zoom-magic"],
            2,
            "no recipe 'zoom-magic'",
        ),
        (
            ["join", "--context", "customer", "--page", "ftp://localhost/room", "--recipe", "janus-videoroom"],
            2,
            "http(s) URL",
        ),
        (
            ["join", "--context", "customer", "--page", "http://u:p@localhost/", "--recipe", "janus-videoroom"],
            2,
            "user name or password",
        ),
        (
            [
                "join",
                "--context",
                "customer",
                "--janus",
                "ws://127.0.0.1:8188",
                "--room",
                "1",
                "--recipe",
                "janus-videoroom",
            ],
            2,
            "only applies",
        ),
    ],
)
def test_bad_join_arguments(argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_join_needs_a_target() -> None:
    with pytest.raises(SystemExit) as info:
        main(["join", "--room", "1"])
    assert info.value.code == 2


def test_join_requires_a_context(capsys: pytest.CaptureFixture[str]) -> None:
    """No silent ``customer`` default: the purpose decides whether emotions may be inferred."""
    with pytest.raises(SystemExit) as info:
        main(["join", "--janus", "ws://127.0.0.1:8188", "--room", "1"])
    assert info.value.code == 2 and "--context" in capsys.readouterr().err
