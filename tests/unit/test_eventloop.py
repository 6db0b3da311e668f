"""Every process that carries media runs on uvloop (bridge/eventloop.py), as uvicorn runs
``microcue serve``: asyncio's own loop drops RTP under load. That loop refuses to start child
processes (uvloop issue 749 can hang the whole bridge); a thread's ``subprocess.run`` still works."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
import uvicorn
import uvloop

from bridge import eventloop

pytestmark = pytest.mark.unit


def test_run_uses_uvloop_and_returns_the_result() -> None:
    async def main() -> type:
        return type(asyncio.get_running_loop())

    assert eventloop.loop_factory() is eventloop.MediaLoop
    loop_type = eventloop.run(main())
    assert issubclass(loop_type, uvloop.Loop)


@pytest.mark.parametrize("spawn", ["exec", "shell"])
def test_the_media_loop_refuses_a_child_process_and_says_why(spawn: str) -> None:
    async def main() -> None:
        if spawn == "exec":
            await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        else:
            await asyncio.create_subprocess_shell("true")

    with pytest.raises(eventloop.SubprocessRefused, match="uvloop issue 749"):
        eventloop.run(main())


def test_a_worker_thread_may_still_run_a_child() -> None:
    async def main() -> str:
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", "print('ok')"], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    assert eventloop.run(main()) == "ok"


def test_uvicorn_serves_on_the_media_loop() -> None:
    factory = uvicorn.Config(app=None, loop=eventloop.UVICORN_LOOP).get_loop_factory()
    assert factory is eventloop.media_loop
    loop = factory()
    try:
        assert isinstance(loop, eventloop.MediaLoop)
    finally:
        loop.close()
