"""Three bridge workers, a web role, the real Mosquitto, PostgreSQL and Janus: spread, kill -9, takeover.

Everything runs inside the test's network namespace (``netns``): Janus on 10.254.0.1, an aiortc
publisher streaming the synthetic face into room 1234, a Mosquitto broker of its own on the
namespace's loopback (the host's broker is not reachable from inside; it is the same
``mosquitto`` binary), and PostgreSQL through the host server's Unix socket (a socket file is
not bound to a network namespace), in a fresh database dropped afterwards.

Six meetings each ask for a bot in the room (``POST /api/meetings/{id}/bot`` on the web role,
which publishes join requests). The test checks that each meeting was taken exactly once and
that every worker got some, kills the worker holding the most meetings with SIGKILL, and
measures how long until the orphaned meetings have cues again from another worker. An
independent MQTT observer records every cue the broker accepted; after the meetings end,
each of those must be in the database (an acknowledged cue lost would be a defect).
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
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import httpx
import numpy as np
import pytest
import websockets

from bridge.cluster.distributor import status_topic
from bridge.demo.client import RoomClient, join_room
from bridge.demo.synthetic import SyntheticFaceTrack
from inference.cues import Cue
from tests.services import services_required
from tests.support.janus import PORT, ROOM, JanusServer, Publisher, janus_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
pytest_plugins = ["tests.fixtures_models", "tests.support.janus"]

REPO = Path(__file__).resolve().parents[2]
PG_SOCKET_DIR = "/run/postgresql"
MQTT_PORT = 1883
WEB_PORT = 18080
WORKER_PORTS = (18081, 18082, 18083)
DRAIN_WORKER_PORT = 18084
MEETINGS = 6
#: Participants per worker: 3 workers x 3 = 9 places for 6 one-person meetings, and after one
#: worker dies the two left have exactly the 6 places needed.
CAPACITY = 3
#: The issue's target for a takeover after a worker dies.
TAKEOVER_TARGET_S = 15.0
#: Analysis rate for this test: six bots share one publisher on a shared 2-core machine;
#: takeover is about leases and joining, not frame rate.
ANALYSIS_FPS = "5"
START_TIMEOUT_S = 60.0
FIRST_CUES_TIMEOUT_S = 150.0
#: Waiting bound for the takeover; the measured time is what is judged against the target.
TAKEOVER_WAIT_S = 90.0
#: Connections a built-in room client makes when told 1012 (reconnect) during its handshake.
JOIN_ATTEMPTS = 3


# --- servers ---------------------------------------------------------------------------------


@pytest.fixture
def janus_room(netns: str, tmp_path: Path) -> Iterator[JanusServer]:
    """Janus as in test_janus, with room for six bots and the publisher."""
    folder = tmp_path / "janus"
    janus_config(folder, netns, 60)
    cfg = folder / "janus.plugin.videoroom.jcfg"
    cfg.write_text(cfg.read_text().replace("publishers = 6", "publishers = 20"))
    server = JanusServer(folder, netns)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def broker(netns: str, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.fail("mosquitto is not installed: run `make system-deps`")
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {MQTT_PORT} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port("127.0.0.1", MQTT_PORT, proc)
        yield f"mqtt://127.0.0.1:{MQTT_PORT}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def database(netns: str) -> Iterator[str]:
    """A fresh database on the host's PostgreSQL, over its Unix socket; its name."""
    if not Path(PG_SOCKET_DIR, ".s.PGSQL.5432").exists():
        message = f"PostgreSQL has no socket in {PG_SOCKET_DIR}"
        if services_required():
            pytest.fail(message)
        pytest.skip(message)
    name = f"microcue_failover_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg_admin(statement: str, database: str = "postgres") -> None:
    conn = await asyncpg.connect(host=PG_SOCKET_DIR, user="postgres", database=database, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _wait_port(host: str, port: int, proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.1)


@dataclass
class Role:
    """A ``microcue`` process (web or worker) with its log file."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _start(name: str, argv: list[str], port: int, env: dict[str, str], folder: Path) -> Role:
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "web.cli", *argv], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return Role(name, port, proc, log)


async def _wait_ready(role: Role) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            if role.proc.poll() is not None:
                raise AssertionError(f"{role.name} exited with {role.proc.returncode}:\n{role.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                r = await client.get(f"http://127.0.0.1:{role.port}/readyz")
                if r.status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"{role.name} not ready after {START_TIMEOUT_S} s:\n{role.tail()}")
            await asyncio.sleep(0.3)


@dataclass
class Cluster:
    """The web role and the workers of one test; more workers can join later."""

    env: dict[str, str]
    folder: Path
    roles: dict[str, Role] = field(default_factory=dict)

    def start_worker(self, name: str, port: int) -> Role:
        env = {
            **self.env,
            "MICROCUE_PORT": str(port),
            "MICROCUE_WORKER_ID": name,
            "MICROCUE_WORKER_CAPACITY": str(CAPACITY),
        }
        role = self.roles[name] = _start(name, ["worker"], port, env, self.folder)
        return role

    @property
    def workers(self) -> dict[str, Role]:
        return {name: role for name, role in self.roles.items() if name != "web"}


@pytest.fixture
def cluster(broker: str, database: str, netns: str, tmp_path: Path, model_dir: Path) -> Iterator[Cluster]:
    env = {
        **os.environ,
        "MICROCUE_MQTT_URL": broker,
        "MICROCUE_DATABASE_URL": f"postgresql://postgres@/{database}?host={PG_SOCKET_DIR}",
        "MICROCUE_MODEL_DIR": str(model_dir),
        "MICROCUE_ANALYSIS_FPS": ANALYSIS_FPS,
        "MICROCUE_DATA_DIR": str(tmp_path / "data"),
        "MICROCUE_LOG_LEVEL": "INFO",
        "MICROCUE_JOIN_ALLOW": f"{netns}:{PORT}",  # host:port; the web role checks it, and the workers again
    }
    made = Cluster(env, tmp_path)
    try:
        made.roles["web"] = _start(
            "web",
            ["serve", "--role", "web"],
            WEB_PORT,
            {**env, "MICROCUE_PORT": str(WEB_PORT)},
            tmp_path,
        )
        asyncio.run(_wait_ready(made.roles["web"]))  # it migrates the database; workers never do
        for i, port in enumerate(WORKER_PORTS, start=1):
            made.start_worker(f"w{i}", port)
        yield made
    finally:
        for role in made.roles.values():
            role.stop()


# --- watching the broker and the database ----------------------------------------------------


@dataclass
class Observer:
    """Every cue the broker accepted, with the time it arrived here (time.time())."""

    url: str
    cues: dict[tuple[str, str, int, str, float], float] = field(default_factory=dict)
    by_meeting: dict[str, list[tuple[float, Cue]]] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with aiomqtt.Client(
            "127.0.0.1", MQTT_PORT, protocol=aiomqtt.ProtocolVersion.V5, identifier=f"observer-{uuid.uuid4().hex[:8]}"
        ) as client:
            await client.subscribe("microcue/meetings/+/cues", qos=1)
            self.ready.set()
            async for message in client.messages:
                assert isinstance(message.payload, bytes | bytearray)
                cue = Cue.from_dict(json.loads(message.payload))
                now = time.time()
                key = (cue.meeting_id, cue.participant_id, cue.seq, cue.type, cue.t)
                if key not in self.cues:
                    self.cues[key] = now
                    self.by_meeting.setdefault(cue.meeting_id, []).append((now, cue))


async def _leases(database: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(host=PG_SOCKET_DIR, user="postgres", database=database, timeout=10)
    try:
        return await conn.fetch(
            "SELECT meeting_id, token, holder, extract(epoch FROM acquired_at) AS acquired FROM meeting_leases "
            "ORDER BY meeting_id, token"
        )
    finally:
        await conn.close()


async def _first_cues_of_successors(
    database: str, observer: Observer, meetings: list[str], former: str
) -> dict[str, tuple[float, float]] | None:
    """Meeting -> (new grant's time, first cue arrival after it), once every meeting has a grant
    by a worker other than ``former`` and a cue arrived after that grant (so it is the
    successor's: the former holder stopped before, or died). None while any is missing."""
    newest: dict[str, asyncpg.Record] = {}
    for r in await _leases(database):
        newest[r["meeting_id"]] = r
    out: dict[str, tuple[float, float]] = {}
    for m in meetings:
        grant = newest.get(m)
        if grant is None or grant["holder"] == former:
            return None
        acquired = float(grant["acquired"])
        after = [arrived for arrived, _ in observer.by_meeting.get(m, []) if arrived > acquired]
        if not after:
            return None
        out[m] = (acquired, min(after))
    return out


def _current_holders(grants: list[asyncpg.Record]) -> dict[str, list[str]]:
    """Worker -> meetings, from each meeting's newest grant."""
    newest: dict[str, asyncpg.Record] = {}
    for r in grants:  # ordered by meeting, token
        newest[r["meeting_id"]] = r
    holders: dict[str, list[str]] = {}
    for meeting_id, r in newest.items():
        holders.setdefault(r["holder"], []).append(meeting_id)
    return holders


async def _stored_keys(database: str) -> set[tuple[str, str, int, str, float]]:
    conn = await asyncpg.connect(host=PG_SOCKET_DIR, user="postgres", database=database, timeout=10)
    try:
        rows = await conn.fetch("SELECT meeting_id, participant_id, seq, type, t FROM cues")
    finally:
        await conn.close()
    return {(r["meeting_id"], r["participant_id"], r["seq"], r["type"], r["t"]) for r in rows}


async def _lost_cues(observed: dict[Any, Any], database: str, roles: dict[str, Role]) -> set[Any]:
    """Broker-accepted cues (keys of ``observed``) not in the database once the web role had up
    to 20 s to store them."""

    async def stored_all() -> bool:
        return not set(observed) - await _stored_keys(database)

    with contextlib.suppress(AssertionError):
        await _until("the web role to store every accepted cue", stored_all, 20.0, roles)
    return set(observed) - await _stored_keys(database)


async def _summary(web: str, meeting_id: str, presenter: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=60) as client:
        r = await client.get(
            f"{web}/api/meetings/{meeting_id}/summary", headers={"Authorization": f"Bearer {presenter}"}
        )
    assert r.status_code == 200, r.text
    summary: dict[str, Any] = r.json()["summary"]
    return summary


async def _retained_status(worker_id: str) -> dict[str, Any]:
    async with aiomqtt.Client("127.0.0.1", MQTT_PORT, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(status_topic(worker_id), qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                assert isinstance(message.payload, bytes | bytearray)
                return dict(json.loads(message.payload))
    raise AssertionError("no retained status")


async def _until(what: str, check: Any, within: float, roles: dict[str, Role]) -> None:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {r.name} ---\n{r.tail(25)}" for r in roles.values())
            raise AssertionError(f"timed out after {within} s waiting for {what}\n{logs}")
        await asyncio.sleep(0.2)


# --- the test --------------------------------------------------------------------------------


@pytest.fixture
async def observer(broker: str) -> AsyncIterator[Observer]:
    obs = Observer(broker)
    task = asyncio.create_task(obs.run())
    async with asyncio.timeout(10):
        await obs.ready.wait()
    yield obs
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
        await task


async def test_six_meetings_spread_over_three_workers_survive_a_kill_9(
    janus_room: JanusServer,
    publishers: list[Publisher],
    face_yuv: list[np.ndarray],
    cluster: Cluster,
    observer: Observer,
    database: str,
    report: Any,
) -> None:
    roles, workers = cluster.roles, cluster.workers
    await asyncio.gather(*(_wait_ready(role) for role in workers.values()))
    alice = Publisher(janus_room.url, 101, "Alice", face_yuv)
    publishers.append(alice)
    await alice.start()

    web = f"http://127.0.0.1:{WEB_PORT}"
    meetings: dict[str, str] = {}  # id -> presenter token
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(MEETINGS):
            r = await client.post(f"{web}/api/meetings", json={"title": f"Meeting {i}", "context": "customer"})
            assert r.status_code == 201, r.text
            meetings[r.json()["id"]] = r.json()["presenter_token"]
        for meeting_id, token in meetings.items():
            r = await client.post(
                f"{web}/api/meetings/{meeting_id}/bot",
                json={"janus": janus_room.url, "room": ROOM},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 202, r.text

    # every meeting taken, and analysed (cues from Alice through each meeting's bot)
    await _until(
        "a lease and cues for all six meetings",
        lambda: all(m in observer.by_meeting for m in meetings),
        FIRST_CUES_TIMEOUT_S,
        roles,
    )
    grants = await _leases(database)
    assert sorted(r["meeting_id"] for r in grants) == sorted(meetings), "each meeting taken exactly once"
    assert all(r["token"] == 1 for r in grants)
    holders: dict[str, list[str]] = {}
    for r in grants:
        holders.setdefault(r["holder"], []).append(r["meeting_id"])
    assert set(holders) == set(workers), f"every worker got meetings: {holders}"
    assert all(len(ms) <= CAPACITY for ms in holders.values()), holders
    async with httpx.AsyncClient(timeout=10) as client:
        for name, role in workers.items():
            text = (await client.get(f"http://127.0.0.1:{role.port}/metrics")).text
            assert f"microcue_worker_participants {float(len(holders[name]))}" in text, text

    await asyncio.sleep(3.0)  # cues flow for a while on every worker
    victim = max(holders, key=lambda w: len(holders[w]))
    orphaned = holders[victim]
    killed_at = time.time()
    workers[victim].proc.kill()  # SIGKILL: no drain, no release, no goodbye
    workers[victim].proc.wait(timeout=10)
    victim_cues = sum(len(observer.by_meeting[m]) for m in orphaned)

    firsts: dict[str, tuple[float, float]] = {}

    async def retaken() -> bool:
        found = await _first_cues_of_successors(database, observer, orphaned, victim)
        firsts.update(found or {})
        return found is not None

    await _until("another worker's cues for the orphaned meetings", retaken, TAKEOVER_WAIT_S, roles)
    grants_after = await _leases(database)
    takeover: dict[str, dict[str, float]] = {}
    for m in orphaned:
        rows = [r for r in grants_after if r["meeting_id"] == m]
        assert [r["token"] for r in rows] == [1, 2], rows
        assert rows[1]["holder"] != victim
        takeover[m] = {"lease_s": firsts[m][0] - killed_at, "first_cue_s": firsts[m][1] - killed_at}
    untouched = {r["meeting_id"] for r in grants_after if r["meeting_id"] not in orphaned}
    assert all(r["token"] == 1 for r in grants_after if r["meeting_id"] in untouched), "survivors kept theirs"
    status = await _retained_status(victim)
    assert status["state"] == "down", status  # the broker published the dead worker's will

    # A rolling update: a fresh worker starts and a loaded one gets SIGTERM. It drains at once
    # (releases, passes its requests on); the other survivor is full and passes them on too.
    fresh = cluster.start_worker("w4", DRAIN_WORKER_PORT)
    await _wait_ready(fresh)
    holding = _current_holders(await _leases(database))
    drained = max((w for w in holding if w != victim), key=lambda w: len(holding[w]))
    moving = holding[drained]
    drained_at = time.time()
    workers[drained].proc.send_signal(signal.SIGTERM)
    moves: dict[str, tuple[float, float]] = {}

    async def moved() -> bool:
        found = await _first_cues_of_successors(database, observer, moving, drained)
        moves.update(found or {})
        return found is not None

    await _until("the drained worker's meetings to run elsewhere", moved, TAKEOVER_WAIT_S, roles)
    assert workers[drained].proc.wait(timeout=30) == 0, workers[drained].tail()
    holding = _current_holders(await _leases(database))
    assert drained not in holding and all(len(ms) <= CAPACITY for ms in holding.values()), holding
    assert set(holding.get("w4", [])) == set(moving), holding  # the full survivor passed them on
    drain_lease_s = max(acquired for acquired, _ in moves.values()) - drained_at
    drain_s = max(first for _, first in moves.values()) - drained_at

    await asyncio.sleep(2.0)
    async with httpx.AsyncClient(timeout=60) as client:
        for meeting_id, token in meetings.items():
            r = await client.post(f"{web}/api/meetings/{meeting_id}/end", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text

    async def all_let_go() -> bool:  # the workers learn of the end at their next renewal and leave
        async with httpx.AsyncClient(timeout=10) as client:
            for role in cluster.workers.values():
                if role.proc.poll() is None:
                    text = (await client.get(f"http://127.0.0.1:{role.port}/metrics")).text
                    if "microcue_worker_meetings 0.0" not in text:
                        return False
        return True

    await _until("the workers to leave the ended meetings", all_let_go, 15.0, roles)
    await asyncio.sleep(1.0)  # last cues in flight
    observed = dict(observer.cues)
    lost = await _lost_cues(observed, database, roles)
    coverage = (await _summary(web, orphaned[0], meetings[orphaned[0]]))["coverage"]

    worst_lease = max(t["lease_s"] for t in takeover.values())
    worst_cue = max(t["first_cue_s"] for t in takeover.values())
    load = os.getloadavg()
    report(
        f"failover: 6 meetings over 3 workers {dict((w, len(ms)) for w, ms in holders.items())}; "
        f"killed {victim} holding {len(orphaned)}, after the broker had accepted {victim_cues} cues of them"
    )
    for m, t in takeover.items():
        report(
            f"failover: meeting {m}: new lease {t['lease_s']:.2f} s, first cue {t['first_cue_s']:.2f} s after kill -9"
        )
    report(
        f"failover: worst takeover {worst_cue:.2f} s to cues (lease {worst_lease:.2f} s), target < "
        f"{TAKEOVER_TARGET_S:.0f} s; broker-accepted cues {len(observed)}, lost {len(lost)}; "
        f"summary missing {coverage['missing_s']} s; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    report(
        f"failover: SIGTERM drain of {drained} ({len(moving)} meetings) to w4: last new lease "
        f"{drain_lease_s:.2f} s, last first cue {drain_s:.2f} s after the signal"
    )
    assert not lost, f"{len(lost)} cues the broker accepted are not in the database: {sorted(lost)[:5]}"
    assert worst_cue < TAKEOVER_TARGET_S, takeover
    assert coverage["missing_s"] > 0 and coverage["gaps"], coverage


async def _wait_closed(ws: Any, within: float) -> tuple[int | None, str]:
    """The close code and reason the client got, once its websocket closes."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    return ws.close_code, ws.close_reason or ""


async def test_a_built_in_room_moves_to_another_worker_and_its_client_re_offers(
    face_yuv: list[np.ndarray],
    cluster: Cluster,
    observer: Observer,
    database: str,
    netns: str,
    report: Any,
) -> None:
    roles, workers = cluster.roles, cluster.workers
    await asyncio.gather(*(_wait_ready(role) for role in workers.values()))
    web = f"http://127.0.0.1:{WEB_PORT}"
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{web}/api/meetings", json={"title": "Room", "context": "customer"})
        assert r.status_code == 201, r.text
    meeting_id, presenter = r.json()["id"], r.json()["presenter_token"]
    join_token = r.json()["join_url"].split("token=")[1]
    ws_base = f"ws://127.0.0.1:{WEB_PORT}"

    retries: list[str] = []

    async def join(resume: dict[str, str] | None = None) -> RoomClient:
        """Join as the page does; a 1012 during the handshake means "reconnect", so it does.
        ``resume``: the pair the last connection got, to come back as the same participant."""
        for attempt in range(1, JOIN_ATTEMPTS + 1):
            try:
                return await join_room(
                    ws_base,
                    meeting_id,
                    join_token,
                    name="Alice",
                    consent=True,
                    tracks=[SyntheticFaceTrack(face_yuv, fps=15)],
                    resume=resume,
                )
            except websockets.ConnectionClosed as exc:
                if exc.rcvd is None or exc.rcvd.code != 1012 or attempt == JOIN_ATTEMPTS:
                    raise
                retries.append(exc.rcvd.reason)
        raise AssertionError("unreachable")

    # the proxy refuses a bad token itself, and passes the worker's frames and close codes as they are
    async with websockets.connect(f"{ws_base}/ws/rooms/{meeting_id}/signal?token=wrong") as ws:
        assert (await _wait_closed(ws, 30))[0] == 4401
    async with websockets.connect(f"{ws_base}/ws/rooms/{meeting_id}/signal?token={join_token}") as ws:
        async with asyncio.timeout(60):  # the first connection makes a worker take the room
            first = json.loads(await ws.recv())
        assert isinstance(first, dict) and "type" in first
        await ws.send("not json")
        code, reason = await _wait_closed(ws, 30)
        assert code == 4400 and "not JSON" in reason, (code, reason)

    alice = await join()  # through the web role's proxy to the worker holding the room
    clients = [alice]
    try:
        await _until(
            "Alice's cues from the built-in room",
            lambda: meeting_id in observer.by_meeting,
            FIRST_CUES_TIMEOUT_S,
            roles,
        )
        grants = [r for r in await _leases(database) if r["meeting_id"] == meeting_id]
        assert [r["token"] for r in grants] == [1]
        victim = grants[0]["holder"]
        await asyncio.sleep(2.0)
        killed_at = time.time()
        workers[victim].proc.kill()
        workers[victim].proc.wait(timeout=10)

        code, reason = await alice.closed(10.0)
        closed_after = time.time() - killed_at
        assert code == 1012, (code, reason)  # "service restart": reconnect and offer again
        await alice.aclose()
        # what the join page does on 1012: a new connection, the same participant, new offers
        again = await join(alice.resume)
        clients.append(again)
        assert again.resumed and again.participant_id == alice.participant_id
        rejoined_after = time.time() - killed_at

        firsts: dict[str, tuple[float, float]] = {}

        async def retaken() -> bool:
            found = await _first_cues_of_successors(database, observer, [meeting_id], victim)
            firsts.update(found or {})
            return found is not None

        await _until("cues from the new worker", retaken, TAKEOVER_WAIT_S, roles)
        first_cue = firsts[meeting_id][1] - killed_at
        grants = [r for r in await _leases(database) if r["meeting_id"] == meeting_id]
        assert [r["token"] for r in grants] == [1, 2] and grants[1]["holder"] != victim, grants
        lease_after = float(grants[1]["acquired"]) - killed_at

        # the new holder is drained (SIGTERM): the worker itself closes the signalling with 1012,
        # the proxy passes it on, and the client re-offers to the last worker
        holder = grants[1]["holder"]
        await asyncio.sleep(2.0)
        drained_at = time.time()
        workers[holder].proc.send_signal(signal.SIGTERM)
        code, reason = await again.closed(15.0)
        drain_closed_after = time.time() - drained_at
        assert code == 1012, (code, reason)
        await again.aclose()
        third = await join(again.resume)
        clients.append(third)
        assert third.resumed and third.participant_id == alice.participant_id
        moves: dict[str, tuple[float, float]] = {}

        async def moved() -> bool:
            found = await _first_cues_of_successors(database, observer, [meeting_id], holder)
            moves.update(found or {})
            return found is not None

        await _until("cues from the third worker", moved, TAKEOVER_WAIT_S, roles)
        drain_cue = moves[meeting_id][1] - drained_at
        assert workers[holder].proc.wait(timeout=30) == 0, workers[holder].tail()
    finally:
        for c in clients:
            with contextlib.suppress(Exception):
                await c.aclose()

    async with httpx.AsyncClient(timeout=60) as client:
        r = await client.post(f"{web}/api/meetings/{meeting_id}/end", headers={"Authorization": f"Bearer {presenter}"})
        assert r.status_code == 200, r.text
    await asyncio.sleep(2.0)
    observed = dict(observer.cues)
    lost = await _lost_cues(observed, database, roles)
    # one participant throughout: the summary shows Alice's gaps as missing time, not three people
    summary = await _summary(web, meeting_id, presenter)
    assert [p["participant_id"] for p in summary["participants"]] == [alice.participant_id], summary
    load = os.getloadavg()
    report(
        f"built-in room failover: client closed with 1012 {closed_after:.2f} s after kill -9 of {victim}, "
        f"re-offered and answered {rejoined_after:.2f} s, new lease {lease_after:.2f} s, first cue "
        f"{first_cue:.2f} s; SIGTERM drain of {holder}: 1012 after {drain_closed_after:.2f} s, first cue "
        f"{drain_cue:.2f} s; handshakes retried after 1012: {len(retries)}; accepted cues {len(observed)}, "
        f"lost {len(lost)}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    assert not lost, sorted(lost)[:5]
    assert first_cue < TAKEOVER_TARGET_S
