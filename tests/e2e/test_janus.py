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
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiortc import RTCSessionDescription
from aiortc.contrib.media import MediaPlayer

from bridge.bus import InProcessBus
from bridge.demo.synthetic import SyntheticFaceTrack, face_loop_frames, to_yuv
from bridge.media.peers import PeerSet, prefer_codec
from bridge.rooms.base import AdapterContext
from bridge.rooms.janus import JanusAdapter, JanusError, JanusSession, plugin_data
from inference.analyzer import AnalysisStep, FrameMetrics
from inference.cues import Cue
from inference.models import ModelSet
from inference.types import FrameFaces
from inference.voice import SileroVad

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
pytest_plugins = ["tests.fixtures_models"]  # the verified model cache (model_dir), for the VAD

ROOM = 1234
PORT = 8188
REPO = Path(__file__).resolve().parents[2]
JANUS_BIN = shutil.which("janus") or "/usr/bin/janus"
PLUGINS_DIR = "/usr/lib/x86_64-linux-gnu/janus"
#: Janus binds and its port answers in well under a second; a 2-core CI box gets 15 s.
START_TIMEOUT_S = 15.0
#: How long to wait for the first cues of a publisher (connect + 1 s engagement window).
CUE_TIMEOUT_S = 30.0
_UNUSED_PLUGINS = (
    "audiobridge",
    "duktape",
    "echotest",
    "lua",
    "nosip",
    "recordplay",
    "sip",
    "streaming",
    "textroom",
    "videocall",
    "voicemail",
)
_UNUSED_TRANSPORTS = ("http", "mqtt", "nanomsg", "pfunix", "rabbitmq")


def janus_config(folder: Path, addr: str, session_timeout: int) -> None:
    """A test-only config: only the VideoRoom plugin and the WebSocket transport, bound to the
    namespace address, ICE on ``mc0`` only, room 1234 with VP8."""
    folder.mkdir(parents=True, exist_ok=True)
    disabled_plugins = ",".join(f"libjanus_{p}.so" for p in _UNUSED_PLUGINS)
    disabled_transports = ",".join(f"libjanus_{t}.so" for t in _UNUSED_TRANSPORTS)
    (folder / "janus.jcfg").write_text(f"""
general: {{
    configs_folder = "{folder}"
    plugins_folder = "{PLUGINS_DIR}/plugins"
    transports_folder = "{PLUGINS_DIR}/transports"
    events_folder = "{PLUGINS_DIR}/events"
    loggers_folder = "{PLUGINS_DIR}/loggers"
    debug_level = 4
    session_timeout = {session_timeout}
}}
media: {{ rtp_port_range = "20000-20999" }}
nat: {{ ice_enforce_list = "mc0" }}
plugins: {{ disable = "{disabled_plugins}" }}
transports: {{ disable = "{disabled_transports}" }}
events: {{ broadcast = false }}
""")
    (folder / "janus.transport.websockets.jcfg").write_text(f"""
general: {{ ws = true  ws_port = {PORT}  ws_ip = "{addr}"  wss = false }}
admin: {{ admin_ws = false }}
""")
    (folder / "janus.plugin.videoroom.jcfg").write_text(f"""
general: {{ }}
room-{ROOM}: {{
    description = "MicroCue test room"
    publishers = 6
    bitrate = 512000
    fir_freq = 10
    videocodec = "vp8"
    audiocodec = "opus"
}}
""")


class JanusServer:
    """A real Janus process in the namespace; ``restart()`` kills it hard, as a crash would."""

    def __init__(self, folder: Path, addr: str) -> None:
        self.folder = folder
        self.addr = addr
        self.url = f"ws://{addr}:{PORT}"
        self.log_path = folder / "janus.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                [JANUS_BIN, "-F", str(self.folder), "-C", str(self.folder / "janus.jcfg"), "-o"],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"janus exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection((self.addr, PORT), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"janus did not listen on {self.url} within {START_TIMEOUT_S} s:\n{self.log()}"
                    ) from None
                time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def make_janus(netns: str, tmp_path: Path, session_timeout: int = 60) -> Iterator[JanusServer]:
    if not Path(JANUS_BIN).exists():
        if os.geteuid() == 0:
            subprocess.run(["bash", "scripts/system-deps.sh", "janus"], cwd=REPO, check=True, timeout=600)
        else:
            pytest.fail("janus is not installed: run `make system-deps`")
    janus_config(tmp_path / "janus", netns, session_timeout)
    server = JanusServer(tmp_path / "janus", netns)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def janus(netns: str, tmp_path: Path) -> Iterator[JanusServer]:
    yield from make_janus(netns, tmp_path)


@pytest.fixture(scope="module")
def face_yuv() -> list[np.ndarray]:
    return to_yuv(face_loop_frames(seconds=2.0, fps=15.0))


class Publisher:
    """An aiortc participant publishing the synthetic face (VP8) into the room under a fixed id."""

    def __init__(self, url: str, feed_id: int, display: str, yuv: list[np.ndarray], audio: Path | None = None) -> None:
        self.url, self.feed_id, self.display, self.yuv, self.audio = url, feed_id, display, yuv, audio
        self.session: JanusSession | None = None
        self.peers = PeerSet()

    async def start(self) -> None:
        self.session = JanusSession(self.url, keepalive_s=20)
        await self.session.open()
        handle = await self.session.attach()
        await self.session.message(
            handle, {"request": "join", "ptype": "publisher", "room": ROOM, "id": self.feed_id, "display": self.display}
        )
        pc = self.peers.create(f"publisher-{self.feed_id}")
        pc.addTrack(SyntheticFaceTrack(self.yuv, fps=15))
        if self.audio is not None:  # a microphone: the file played once in real time (Opus)
            player = MediaPlayer(str(self.audio))
            assert player.audio is not None
            pc.addTrack(player.audio)
        prefer_codec(pc, "video", "video/VP8")
        await pc.setLocalDescription(await pc.createOffer())
        answer = await self.session.message(
            handle,
            {"request": "publish", "audio": self.audio is not None, "video": True},
            jsep={"type": "offer", "sdp": pc.localDescription.sdp},
        )
        assert plugin_data(answer).get("configured") == "ok", answer
        await pc.setRemoteDescription(RTCSessionDescription(**answer["jsep"]))

    async def stop(self) -> None:
        await self.peers.aclose()
        if self.session is not None:
            await self.session.close()
            self.session = None


@pytest.fixture
async def publishers(face_yuv: list[np.ndarray]) -> AsyncIterator[list[Publisher]]:
    made: list[Publisher] = []
    yield made
    for p in made:
        await p.stop()


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


class _NullAnalyzer:
    def push(self, rgb: np.ndarray, t: float) -> Any:
        raise AssertionError("no publisher in this test")

    def reset(self) -> None:
        pass


async def test_keepalive_keeps_the_session_and_a_dropped_socket_reconnects(netns: str, tmp_path: Path) -> None:

    gen = make_janus(netns, tmp_path, session_timeout=2)  # Janus forgets idle sessions after 2 s
    server = next(gen)
    bus = InProcessBus()
    ctx = AdapterContext(meeting_id="m-keepalive", bus=bus, analyzer_factory=_NullAnalyzer)
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

    ctx = AdapterContext(meeting_id="m-noroom", bus=InProcessBus(), analyzer_factory=_NullAnalyzer)
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
    ctx = AdapterContext(meeting_id="m-speak", bus=bus, analyzer_factory=_NoCueAnalyzer, vad=vad)
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


class _NoCueAnalyzer:
    def push(self, rgb: np.ndarray, t: float) -> Any:

        return AnalysisStep(
            faces=FrameFaces(t=t, faces=(), primary=None), metrics=FrameMetrics(t=t, face_present=False, faces=0)
        )

    def reset(self) -> None:
        pass
