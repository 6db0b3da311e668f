"""``mqtts://`` with a CA and client certificates against a real Mosquitto (a private instance
started here with the ACL from docs/privacy.md): only a bridge's certificate may publish cues;
a reader's publishes are refused by the broker, and a client without a certificate cannot connect."""

from __future__ import annotations

import asyncio
import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.bus.mqtt import MqttBus, settings_tls
from bridge.cluster.distributor import JoinPublisher, JoinRequest, WorkerLink
from bridge.config import Settings
from bridge.errors import UsageError
from inference.cues import Cue
from tests.services import services_required

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: The broker ACL of docs/privacy.md (the certificate's CN is the user name), plus the cluster's
#: join requests and worker heartbeats for bridges (docs/cluster.md, "Broker access").
ACL = """\
user bridge
topic readwrite microcue/meetings/#
topic readwrite microcue/join
topic readwrite microcue/workers/#

user reader
topic read microcue/meetings/#
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _cert(cwd: Path, name: str, cn: str, *, san: str | None = None) -> None:
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-subj",
        f"/CN={cn}",
        "-out",
        f"{name}.csr",
        cwd=cwd,
    )
    ext = cwd / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        f"{name}.crt",
        "-extfile",
        str(ext),
        cwd=cwd,
    )


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    if shutil.which("mosquitto") is None or shutil.which("openssl") is None:
        message = "mosquitto and openssl are needed for the MQTT TLS test"
        if services_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    d = tmp_path / "pki"
    d.mkdir()
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-subj",
        "/CN=test-ca",
        "-days",
        "2",
        "-out",
        "ca.crt",
        cwd=d,
    )
    _cert(d, "server", "localhost", san="IP:127.0.0.1,DNS:localhost")
    _cert(d, "bridge", "bridge")
    _cert(d, "reader", "reader")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    (d / "acl").write_text(ACL)
    conf = d / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        f"cafile {d / 'ca.crt'}\ncertfile {d / 'server.crt'}\nkeyfile {d / 'server.key'}\n"
        "require_certificate true\nuse_identity_as_username true\n"
        f"acl_file {d / 'acl'}\npersistence false\n"
        # run as us: started as root, mosquitto would drop to a user that cannot read tmp_path
        f"user {getpass.getuser()}\n"
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)
        yield port, d
    finally:
        proc.terminate()
        proc.wait(10)


def _cue(meeting_id: str, seq: int) -> Cue:
    return Cue(type="engagement", t=float(seq), meeting_id=meeting_id, participant_id="p", seq=seq, value=0.5)


async def test_only_a_bridge_certificate_publishes_cues(tls_broker: tuple[int, Path]) -> None:
    port, d = tls_broker
    url = f"mqtts://127.0.0.1:{port}"
    listener = MqttBus(url, ca_file=d / "ca.crt", cert_file=d / "reader.crt", key_file=d / "reader.key")
    bridge = MqttBus(url, ca_file=d / "ca.crt", cert_file=d / "bridge.crt", key_file=d / "bridge.key")
    intruder = MqttBus(url, ca_file=d / "ca.crt", cert_file=d / "reader.crt", key_file=d / "reader.key")
    for bus in (listener, bridge, intruder):
        await bus.start()
    sub = listener.subscribe("m1")
    try:
        async with asyncio.timeout(15):
            await sub.wait_ready()
        await intruder.publish(_cue("m1", 1))  # a reader's certificate: the ACL refuses it
        await bridge.publish(_cue("m1", 2))
        async with asyncio.timeout(15):
            await bridge.flush()
        got: list[int] = []
        async with asyncio.timeout(10):
            async for cue in sub:
                got.append(cue.seq)
                if cue.seq == 2:
                    break
        await asyncio.sleep(0.5)
        assert got == [2], got
        assert bridge.connected and intruder.connected  # TLS with client certificates worked
    finally:
        for bus in (intruder, bridge, listener):
            await bus.aclose()


async def test_no_client_certificate_no_connection(tls_broker: tuple[int, Path]) -> None:
    port, d = tls_broker
    bus = MqttBus(f"mqtts://127.0.0.1:{port}", ca_file=d / "ca.crt")
    await bus.start()
    try:
        await asyncio.sleep(2.0)
        assert not bus.connected and bus.connects == 0
    finally:
        await bus.aclose()


async def test_cluster_join_requests_travel_with_the_settings_certificates(
    tls_broker: tuple[int, Path], tmp_path: Path
) -> None:
    """A worker's link and the web role's join publisher use MICROCUE_MQTT_CA/CERT/KEY like the
    bus does: with a private CA and client certificates a join request reaches the worker."""
    port, d = tls_broker
    settings = Settings(
        data_dir=tmp_path,
        mqtt_url=f"mqtts://127.0.0.1:{port}",
        mqtt_ca=d / "ca.crt",
        mqtt_cert=d / "bridge.crt",
        mqtt_key=d / "bridge.key",
    )
    taken: asyncio.Queue[JoinRequest] = asyncio.Queue()
    link = WorkerLink(
        settings.mqtt_url, "tls-worker", taken.put, lambda: {"participants": 0}, tls=settings_tls(settings)
    )
    await link.start()
    try:
        async with asyncio.timeout(15):
            await link.subscribed.wait()
        publisher = JoinPublisher(settings.mqtt_url, tls=settings_tls(settings))
        await publisher.publish(JoinRequest(meeting_id="m-tls", kind="janus", url="ws://x", room=1))
        async with asyncio.timeout(15):
            request = await taken.get()
        assert request.meeting_id == "m-tls"
    finally:
        await link.aclose()


def test_certificates_need_mqtts_and_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="mqtts://"):
        MqttBus("mqtt://127.0.0.1:1883", ca_file=tmp_path / "ca.crt")
    with pytest.raises(UsageError, match="go together"):
        MqttBus("mqtts://127.0.0.1:8883", cert_file=tmp_path / "c.crt")
