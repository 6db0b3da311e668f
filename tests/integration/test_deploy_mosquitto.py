"""The small-install overlay's mosquitto.conf, run by the real Mosquitto 2 broker.

The file is taken from the rendered ConfigMap (deploy/k8s/overlays/small-install), with only
what differs on a test machine changed: the listener port (a free loopback port instead of
1883), the persistence directory (a temporary one) and, when the test runs as root, the user
the broker keeps (instead of dropping to `mosquitto`, which cannot write to that directory).
Then: MQTT v5 shared subscriptions split join requests among workers, each message to exactly
one of them, and retained heartbeats survive a broker restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from tests.services import services_required
from tests.support.kustomize_lite import render

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
SMALL_INSTALL = REPO / "deploy" / "k8s" / "overlays" / "small-install"
JOIN_TOPIC = "microcue/join"
SHARED = f"$share/bridges/{JOIN_TOPIC}"
MESSAGES = 40
START_TIMEOUT_S = 10.0
RECEIVE_TIMEOUT_S = 10.0


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    if services_required():
        pytest.fail("the mosquitto binary is not installed and MICROCUE_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip("the mosquitto binary is not installed")


def shipped_conf() -> str:
    # The overlay's own files (no kubectl needed); test_deploy_manifests compares this render with kubectl's.
    config = next(
        o for o in render(SMALL_INSTALL) if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "mosquitto-config"
    )
    return config["data"]["mosquitto.conf"]


def adapted_conf(conf: str, port: int, data_dir: Path) -> str:
    lines = conf.splitlines()
    for old, new in (
        ("listener 1883", f"listener {port} 127.0.0.1"),
        ("persistence_location ", f"persistence_location {data_dir}/"),
    ):
        hits = [i for i, line in enumerate(lines) if line.startswith(old)]
        assert len(hits) == 1, f"mosquitto.conf should have one `{old}` line, has {len(hits)}"
        lines[hits[0]] = new
    if os.geteuid() == 0:
        lines.append("user root")
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def broker(conf_file: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf_file)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mosquitto exited {proc.returncode} with the shipped config:\n{log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"mosquitto did not listen within {START_TIMEOUT_S} s:\n{log.read_text()}")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()  # SIGTERM: Mosquitto writes its persistence file, then exits
        try:
            proc.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def conf(tmp_path: Path) -> tuple[Path, int, Path]:
    port = free_port()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    conf_file = tmp_path / "mosquitto.conf"
    conf_file.write_text(adapted_conf(shipped_conf(), port, data_dir), encoding="utf-8")
    return conf_file, port, tmp_path / "mosquitto.log"


def client(port: int, name: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1", port, identifier=f"{name}-{uuid.uuid4().hex[:8]}", protocol=aiomqtt.ProtocolVersion.V5
    )


async def test_shared_subscription_gives_each_join_to_exactly_one_worker(conf: tuple[Path, int, Path]) -> None:
    conf_file, port, log = conf
    with broker(conf_file, port, log):
        received: dict[str, list[str]] = {"worker-a": [], "worker-b": []}
        async with client(port, "worker-a") as a, client(port, "worker-b") as b, client(port, "web") as web:
            for worker in (a, b):
                await worker.subscribe(SHARED, qos=1)

            async def collect(name: str, worker: aiomqtt.Client) -> None:
                async for message in worker.messages:
                    received[name].append(bytes(message.payload).decode())
                    if sum(map(len, received.values())) >= MESSAGES:
                        return

            tasks = [asyncio.create_task(collect(n, w)) for n, w in (("worker-a", a), ("worker-b", b))]
            for i in range(MESSAGES):
                await web.publish(JOIN_TOPIC, f"meeting-{i}", qos=1)
            done, pending = await asyncio.wait(tasks, timeout=RECEIVE_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.sleep(0.5)  # a duplicate, were there one, would arrive now
            for task in pending:
                task.cancel()
            assert done, f"only {sum(map(len, received.values()))} of {MESSAGES} join requests arrived"
    delivered = received["worker-a"] + received["worker-b"]
    assert sorted(delivered) == sorted(f"meeting-{i}" for i in range(MESSAGES)), "each request exactly once"
    assert received["worker-a"] and received["worker-b"], f"one worker got everything: {received}"


async def test_retained_heartbeat_survives_a_broker_restart(conf: tuple[Path, int, Path]) -> None:
    conf_file, port, log = conf
    topic = f"microcue/workers/{uuid.uuid4().hex[:8]}/heartbeat"
    with broker(conf_file, port, log):
        async with client(port, "worker") as worker:
            await worker.publish(topic, b'{"participants": 3}', qos=1, retain=True)
    with broker(conf_file, port, log):
        async with client(port, "web") as web:
            await web.subscribe(topic, qos=1)
            async with asyncio.timeout(RECEIVE_TIMEOUT_S):
                message = await anext(aiter(web.messages))
    assert message.retain
    assert bytes(message.payload) == b'{"participants": 3}'
