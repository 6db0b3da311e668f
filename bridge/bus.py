"""Event bus interface: every cue leaves a worker through here.

Implementations: ``InProcessBus`` (default, bounded queue per subscriber) and
``MqttBus`` (aiomqtt, QoS 1, topic ``microcue/meetings/{id}/cues``), chosen by
``create_bus(settings)``. Consumers (dashboard hub, store writer, CLI printer)
only see this Protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from inference.cues import Cue


@runtime_checkable
class Subscription(Protocol):
    """An async stream of cues for one consumer; closing it frees its queue."""

    def __aiter__(self) -> AsyncIterator[Cue]: ...

    async def aclose(self) -> None: ...

    @property
    def dropped(self) -> int:
        """Cues this subscriber lost because it fell behind (bounded queue)."""
        ...


@runtime_checkable
class EventBus(Protocol):
    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def publish(self, cue: Cue) -> None:
        """Never blocks the caller on a slow consumer; the cue must carry meeting_id."""
        ...

    def subscribe(self, meeting_id: str | None = None) -> Subscription:
        """All cues of one meeting, or of every meeting when ``meeting_id`` is None."""
        ...
