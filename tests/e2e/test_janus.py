"""The Janus VideoRoom bot against a real Janus (Debian's ``janus``) with real aiortc publishers.

Everything runs inside a private network namespace (``netns`` fixture): Janus listens
on 10.254.0.1:8188, publishers stream the synthetic face (VP8) into room 1234, and
``microcue join`` runs as the real CLI, its stdout parsed as JSON lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bridge.bus import InProcessBus
from bridge.rooms import AdapterContext
from bridge.rooms.janus import JanusAdapter, JanusError
from inference.cues import Cue
from inference.models import ModelSet
from inference.voice import SileroVad
from tests.support.fakes.analyzers import FakeAnalyzer
from tests.support.janus import REPO, ROOM, JanusServer, Publisher, make_janus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
pytest_plugins = ["tests.fixtures_models", "tests.support.janus"]  # the verified model cache (model_dir), for the VAD

#: How long to wait for the first cues of a publisher (connect + 1 s engagement window).
CUE_TIMEOUT_S = 30.0


class BotProcess:
    """``microcue join`` as a child process; its stdout cues collected as they arrive."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.cues: list[Cue] = []
        self.stderr: list[str] = []
        self._changed = asyncio.Event()
        self._tasks = [asyncio.create_task(self._read_stdout()), asyncio.create_task(self._read_stderr())]

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.cues.append(Cue.from_dict(json.loads(line)))  # every stdout line must be a cue
            self._changed.set()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace").rstrip())
            self._changed.set()

    async def wait_for(self, what: str, predicate: Any, within: float = CUE_TIMEOUT_S) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if self.proc.returncode is not None:
                raise AssertionError(f"bot exited {self.proc.returncode} waiting for {what}:\n" + self.tail())
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {within} s waiting for {what}:\n" + self.tail())
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    def presence_of(self, participant: str, after: float = -1.0, value: float = 1.0) -> bool:
        return any(
            c.participant_id == participant and c.type == "presence" and c.value == value and c.t > after
            for c in self.cues
        )

    def tail(self) -> str:
        return "\n".join(self.stderr[-40:])

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        for t in self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 5)
        assert self.proc.returncode is not None
        return self.proc.returncode


async def test_bot_follows_publishers_and_resubscribes_after_janus_restart(
    janus: JanusServer, publishers: list[Publisher], face_yuv: list[np.ndarray]
) -> None:
    alice = Publisher(janus.url, 101, "Alice", face_yuv)
    publishers.append(alice)
    await alice.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "web.cli",
        "join",
        "--context",
        "customer",
        "--janus",
        janus.url,
        "--room",
        str(ROOM),
        "--meeting-id",
        "m-janus",
        "--no-voice",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "MICROCUE_ANALYSIS_FPS": "10"},
    )
    bot = BotProcess(proc)
    try:
        await bot.wait_for("Alice's presence cue", lambda: bot.presence_of("101"))
        # a second participant joins: the one subscriber handle is updated, not replaced
        bob = Publisher(janus.url, 102, "Bob", face_yuv)
        publishers.append(bob)
        await bob.start()
        await bot.wait_for("Bob's presence cue", lambda: bot.presence_of("102"))
        assert all(c.meeting_id == "m-janus" for c in bot.cues)
        # Alice leaves: the bot says so (presence 0) and follows the renegotiation
        await alice.stop()
        await bot.wait_for("Alice's departure", lambda: bot.presence_of("101", value=0.0))

        # Janus crashes and comes back; the participants publish again (as browsers would)
        last_t = max(c.t for c in bot.cues if c.participant_id == "102")
        await bob.stop()
        janus.kill()
        await bot.wait_for("the bot to notice", lambda: bot.presence_of("102", after=last_t, value=0.0), 15)
        janus.start()
        bob2 = Publisher(janus.url, 102, "Bob", face_yuv)
        publishers.append(bob2)
        await bob2.start()
        await bot.wait_for("Bob's cues after the restart", lambda: bot.presence_of("102", after=last_t))
        assert any("(connection 2)" in line for line in bot.stderr), bot.tail()
        seqs = [c.seq for c in bot.cues if c.participant_id == "102"]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "Bob's cue order must survive the restart"
    finally:
        rc = await bot.stop()
    assert rc == 0, bot.tail()


async def test_keepalive_keeps_the_session_and_a_dropped_socket_reconnects(netns: str, tmp_path: Path) -> None:

    gen = make_janus(netns, tmp_path, session_timeout=2)  # Janus forgets idle sessions after 2 s
    server = next(gen)
    bus = InProcessBus()
    ctx = AdapterContext(
        meeting_id="m-keepalive",
        bus=bus,
        analyzer_factory=lambda: FakeAnalyzer(refuse_frames="no publisher in this test"),
    )
    adapter = JanusAdapter(server.url, ROOM, ctx, keepalive_s=1.0)
    runner = asyncio.create_task(adapter.run())
    try:
        await asyncio.wait_for(adapter.connected.wait(), 10)
        await asyncio.sleep(6)  # > timeout + the 2 s watchdog period: only keepalives keep it
        assert adapter.connections == 1 and adapter.connected.is_set()
        assert "Timeout expired" not in server.log(), server.log()
        # the socket drops (server side): the adapter reconnects by itself
        server.kill()
        server.start()
        deadline = time.monotonic() + 15
        while adapter.connections < 2:
            assert time.monotonic() < deadline, "no reconnect after the socket dropped"
            await asyncio.sleep(0.1)
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await adapter.aclose()
        await bus.aclose()
        with contextlib.suppress(StopIteration):
            next(gen)
    assert len(adapter.peers) == 0


async def test_unknown_room_is_a_clear_fatal_error(janus: JanusServer) -> None:

    ctx = AdapterContext(
        meeting_id="m-noroom",
        bus=InProcessBus(),
        analyzer_factory=lambda: FakeAnalyzer(refuse_frames="no publisher in this test"),
    )
    adapter = JanusAdapter(janus.url, 999999, ctx)
    try:
        with pytest.raises(JanusError, match=r"(?i)no such room") as info:
            await asyncio.wait_for(adapter.run(), 10)
        assert info.value.code == 426
    finally:
        await adapter.aclose()


def test_only_decodable_streams_are_subscribed() -> None:
    publisher = {
        "id": 7,
        "streams": [
            {"type": "video", "mid": "0", "codec": "vp9"},  # aiortc has no VP9 decoder
            {"type": "audio", "mid": "1", "codec": "opus"},
            {"type": "video", "mid": "2", "codec": "h264"},
            {"type": "data", "mid": "3"},
            {"type": "video", "mid": "4", "codec": "vp8", "disabled": True},
        ],
    }
    assert JanusAdapter._decodable_streams(publisher) == [{"feed": 7, "mid": "1"}, {"feed": 7, "mid": "2"}]
    assert JanusAdapter._decodable_streams({"id": 8}) == [{"feed": 8}]


@pytest.fixture
def spoken_wav(tmp_path: Path) -> Path:
    """A real spoken sentence (espeak-ng), ~4.5 s, with no silence after it: the file just stops,
    as a microphone that is muted mid-word would."""
    if shutil.which("espeak-ng") is None:
        subprocess.run(["bash", "scripts/system-deps.sh", "espeak-ng"], cwd=REPO, check=True, timeout=300)
    wav = tmp_path / "hello.wav"
    sentence = "Hello everyone, thanks for joining, let us get started with the quarterly numbers."
    subprocess.run(["espeak-ng", "-w", str(wav), sentence], check=True, timeout=60)
    return wav


async def test_bot_reports_who_speaks(
    janus: JanusServer, publishers: list[Publisher], face_yuv: list[np.ndarray], model_dir: Path, spoken_wav: Path
) -> None:
    """Audio goes through the same multistream subscription: a real spoken sentence from one
    publisher becomes that participant's speaking start and end cues."""

    bus = InProcessBus()
    sub = bus.subscribe("m-speak")
    vad = SileroVad(ModelSet(model_dir, prefer_gpu=False).session("vad"))
    ctx = AdapterContext(meeting_id="m-speak", bus=bus, analyzer_factory=lambda: FakeAnalyzer(cues=False), vad=vad)
    adapter = JanusAdapter(janus.url, ROOM, ctx)
    runner = asyncio.create_task(adapter.run())
    cues: list[Cue] = []
    try:
        await asyncio.wait_for(adapter.connected.wait(), 10)
        carol = Publisher(janus.url, 301, "Carol", face_yuv, audio=spoken_wav)
        publishers.append(carol)
        await carol.start()

        async def collect() -> None:
            async for cue in sub:
                cues.append(cue)
                if cue.type == "speaking" and cue.value == 0.0:
                    return

        await asyncio.wait_for(collect(), 30)
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await adapter.aclose()
        await sub.aclose()
        await bus.aclose()
    speaking = [c for c in cues if c.type == "speaking"]
    assert [c.value for c in speaking] == [1.0, 0.0], cues
    assert all(c.participant_id == "301" for c in speaking)
    assert speaking[1].t - speaking[0].t > 2.0, "the sentence lasts ~4 s"
