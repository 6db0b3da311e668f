"""Role selection and the worker's own guards, without servers: bad set-ups get one clear line."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from bridge.bus import InProcessBus
from bridge.cluster.distributor import JOIN_SUBSCRIPTION, JoinRequest
from bridge.cluster.lease import Lease
from bridge.cluster.worker_role import FencedBus
from bridge.config import Settings
from inference.cues import Cue
from web import cli

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("MICROCUE_")]:
        monkeypatch.delenv(key)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["worker"], "a worker needs the MQTT broker: set MICROCUE_MQTT_URL"),
        (["--mqtt-url", "mqtt://127.0.0.1:1", "worker"], "a worker needs PostgreSQL for meeting leases"),
        (["--mqtt-url", "mqtt://127.0.0.1:1", "--database-url", "sqlite:///x.db", "worker"], "needs PostgreSQL"),
        (["serve", "--role", "worker"], "a worker needs the MQTT broker"),
        (["serve", "--role", "web"], "the web role needs the MQTT broker"),
    ],
)
def test_roles_refuse_a_set_up_they_cannot_run_in(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--data-dir", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code != 0
    assert message in err
    assert "Traceback" not in err


def _free_port() -> int:
    """A local port nobody listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_worker_without_its_database_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port, http_port = _free_port(), _free_port()
    code = cli.main(
        [
            "--data-dir",
            str(tmp_path),
            "--port",
            str(http_port),
            "--mqtt-url",
            "mqtt://127.0.0.1:1",
            "--database-url",
            f"postgresql://postgres@127.0.0.1:{port}/x",
            "worker",
        ]
    )
    err = capsys.readouterr().err
    assert code != 0
    assert "cannot use the database at" in err and "Traceback" not in err


def test_serve_rejects_an_unknown_role(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["serve", "--role", "scheduler"])
    assert "invalid choice: 'scheduler'" in capsys.readouterr().err


def test_worker_capacity_is_a_positive_setting(monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setenv("MICROCUE_WORKER_CAPACITY", "12")
    assert Settings().worker_capacity == 12
    monkeypatch.setenv("MICROCUE_WORKER_CAPACITY", "0")
    with pytest.raises(ValueError, match="worker_capacity"):
        Settings()


def test_the_join_topic_is_the_shared_subscription_of_the_issue() -> None:
    assert JOIN_SUBSCRIPTION == "$share/bridges/microcue/join"


def test_join_requests_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="meeting_id"):
        JoinRequest.from_json(b'{"kind": "janus"}')
    with pytest.raises(ValueError, match="unknown kind"):
        JoinRequest.from_json(b'{"meeting_id": "m", "kind": "zoom"}')
    with pytest.raises(ValueError, match="participants"):
        JoinRequest.from_json(b'{"meeting_id": "m", "kind": "janus", "participants": 0}')
    with pytest.raises(ValueError, match="room"):
        JoinRequest.from_json(b'{"meeting_id": "m", "kind": "janus", "room": "7"}')
    with pytest.raises(ValueError):
        JoinRequest.from_json(b"not json")
    request = JoinRequest(meeting_id="m", kind="janus", url="ws://j", room=3, participants=2)
    assert JoinRequest.from_json(request.to_json()) == request


async def test_a_fenced_meeting_publishes_nothing_after_its_lease_deadline() -> None:
    bus = InProcessBus()
    await bus.start()
    sub = bus.subscribe("m")
    lease = Lease("m", "w1", 1, acquired_at=None, deadline=time.monotonic() + 60, request={})  # type: ignore[arg-type]
    fenced = FencedBus(bus, lease)
    cue = Cue(type="presence", t=1.0, value=1.0, meeting_id="m", participant_id="p", seq=1)
    await fenced.publish(cue)
    lease.deadline = time.monotonic() - 1  # lost: a successor may hold it now
    await fenced.publish(Cue(type="presence", t=2.0, value=0.0, meeting_id="m", participant_id="p", seq=2))
    await bus.aclose()
    got = [c async for c in sub]
    assert [c.seq for c in got] == [1]
    assert fenced.fenced == 1
