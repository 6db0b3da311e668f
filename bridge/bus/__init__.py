"""Event bus interface: every cue leaves a worker through here.

Implementations: ``InProcessBus`` (default, bounded queue per subscriber,
``bridge.bus.inprocess``) and ``MqttBus`` (aiomqtt, QoS 1, topic
``microcue/meetings/{id}/cues``, ``bridge.bus.mqtt``), chosen by
``create_bus(settings)``. Consumers (dashboard hub, store writer, CLI printer)
only see this Protocol, so the embedded default and a broker-backed deployment
run the same code. Importing this module does not load aiomqtt; ``bridge.bus.mqtt`` does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from bridge.bus.inprocess import (
    DEFAULT_SUBSCRIBER_QUEUE,
    BusClosedError,
    InProcessBus,
    QueueSubscription,
)
from inference.cues import Cue

if TYPE_CHECKING:
    from bridge.config import Settings

__all__ = [
    "DEFAULT_SUBSCRIBER_QUEUE",
    "BusClosedError",
    "EventBus",
    "InProcessBus",
    "QueueSubscription",
    "Subscription",
    "create_bus",
]


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


def create_bus(settings: Settings) -> EventBus:
    """MQTT when ``MICROCUE_MQTT_URL`` is set (several bridges share one broker),
    otherwise the in-process bus of the embedded default. Call ``start()`` next."""
    if settings.mqtt_url:
        # Only a broker-backed deployment loads aiomqtt: importing the protocol stays light.
        from bridge.bus.mqtt import MqttBus  # noqa: PLC0415

        return MqttBus.from_settings(settings)
    return InProcessBus()
