"""ICE consent (bridge.media.consent): late answers keep a connection, 30 s of silence closes it.

Times are shrunk (a check every 0.05 s, expiry after 0.3 s) but keep their ratios; the fake
pair answers the way aioice's ``CandidatePair.protocol.request`` does."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from aioice import ice, stun

from bridge.media import consent

pytestmark = pytest.mark.unit


@dataclass
class _Protocol:
    answer: bool = True
    late_s: float = 0.0
    calls: list[int | None] = field(default_factory=list)

    async def request(self, request: Any, addr: Any, integrity_key: bytes, retransmissions: int | None = None) -> Any:
        self.calls.append(retransmissions)
        if not self.answer:
            raise stun.TransactionTimeout()
        await asyncio.sleep(self.late_s)
        return request, addr


@dataclass
class _Pair:
    protocol: _Protocol
    remote_addr: tuple[str, int] = ("10.254.0.1", 5000)


class _Connection:
    def __init__(self, protocol: _Protocol) -> None:
        self.remote_password = "secret"
        self._nominated = {1: _Pair(protocol)}
        self._query_consent_task: asyncio.Task[None] | None = None
        self.closed = False

    def build_request(self, pair: _Pair, nominate: bool) -> str:
        assert not nominate
        return "binding request"

    async def close(self) -> None:
        assert self._query_consent_task is None  # cleared first: close() cancels the task it holds
        self.closed = True


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consent, "CONSENT_INTERVAL_S", 0.05)
    monkeypatch.setattr(consent, "CONSENT_TIMEOUT_S", 0.3)


async def test_late_answers_keep_consent(fast: None) -> None:
    # answered 0.1 s late: two intervals, far past aioice's 0.5 s-in-5 s deadline in these units
    protocol = _Protocol(late_s=0.1)
    conn = _Connection(protocol)
    task = asyncio.create_task(consent.query_consent(conn))
    await asyncio.sleep(1.0)
    assert not task.done() and not conn.closed
    assert len(protocol.calls) >= 4 and set(protocol.calls) == {consent.CONSENT_RETRANSMISSIONS}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_consent_expires_after_the_timeout_without_answers(fast: None) -> None:
    protocol = _Protocol(answer=False)
    conn = _Connection(protocol)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(consent.query_consent(conn), timeout=2.0)
    assert conn.closed
    assert loop.time() - started >= 0.3


async def test_consent_expires_when_answers_stop(fast: None) -> None:
    protocol = _Protocol()
    conn = _Connection(protocol)
    task = asyncio.create_task(consent.query_consent(conn))
    await asyncio.sleep(0.4)
    assert not conn.closed
    protocol.answer = False  # the peer went away
    await asyncio.wait_for(task, timeout=2.0)
    assert conn.closed


def test_install_replaces_aioice_consent_and_aioice_has_what_it_uses() -> None:
    consent.install()
    assert ice.Connection.query_consent is consent.query_consent
    connection = ice.Connection(ice_controlling=True)
    assert connection._nominated == {}
    assert callable(connection.build_request)
    assert hasattr(connection, "_query_consent_task")
    assert "retransmissions" in stun.Transaction.__init__.__code__.co_varnames
