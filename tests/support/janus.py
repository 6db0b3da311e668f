"""A real Janus (Debian's ``janus``) for the tests, and aiortc publishers in its VideoRoom.

Used by every test that needs a Janus: the bot tests, the browser-bot and demo-page tests, the
trust and failover tests. Janus runs inside the test's network namespace on the ``netns`` address.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from aiortc import RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.rtcdtlstransport import RTCDtlsTransport

from bridge.demo.synthetic import SyntheticFaceTrack, face_loop_frames, to_yuv
from bridge.media.peers import PeerSet, prefer_codec
from bridge.rooms.janus import JanusSession, plugin_data

ROOM = 1234
PORT = 8188
REPO = Path(__file__).resolve().parents[2]
JANUS_BIN = shutil.which("janus") or "/usr/bin/janus"
PLUGINS_DIR = "/usr/lib/x86_64-linux-gnu/janus"
#: Janus binds and its port answers in well under a second; a 2-core CI box gets 15 s.
START_TIMEOUT_S = 15.0
#: Janus's log level (0-7; 4 = info). Set MICROCUE_JANUS_DEBUG_LEVEL=5 (verbose: every PLI
#: relayed to a publisher, renegotiations) or 6 to diagnose a media problem from janus.log.
DEBUG_LEVEL = int(os.environ.get("MICROCUE_JANUS_DEBUG_LEVEL", "4"))
#: Diagnosis only: the share (0-1) of incoming video RTP (VP8 and its RTX) that every aiortc
#: peer of the test process drops, as a CPU-starved socket does; reproduces loss bugs on demand.
VIDEO_LOSS = float(os.environ.get("MICROCUE_TEST_VIDEO_LOSS", "0"))
_VIDEO_PAYLOAD_TYPES = (96, 97)  # VP8 and its RTX in Janus's offers (room videocodec vp8)
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


def _drop_incoming_video(share: float) -> None:
    """Make every aiortc transport of this process drop ``share`` of its incoming video RTP."""
    handle = RTCDtlsTransport._handle_rtp_data
    chance = random.Random(1)  # seeded: the same loss pattern for the same packets

    async def lossy(self: RTCDtlsTransport, data: bytes, arrival_time_ms: int) -> None:
        if len(data) > 1 and (data[1] & 0x7F) in _VIDEO_PAYLOAD_TYPES and chance.random() < share:
            return
        await handle(self, data, arrival_time_ms)

    RTCDtlsTransport._handle_rtp_data = lossy  # type: ignore[method-assign]


if VIDEO_LOSS > 0:
    _drop_incoming_video(VIDEO_LOSS)


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
    debug_level = {DEBUG_LEVEL}
    debug_timestamps = true
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
