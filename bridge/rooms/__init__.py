"""Meeting adapters: how the bot gets into a meeting (docs/architecture.md, ``bridge.rooms.*``).

One module per meeting kind behind the :class:`~bridge.rooms.base.MeetingAdapter`
ABC, chosen by :func:`~bridge.rooms.base.create_adapter` (the shape of aiortc's
``contrib/signaling.py``).
"""

from bridge.rooms.base import AdapterContext, JoinTarget, MeetingAdapter, Participant, create_adapter

__all__ = ["AdapterContext", "JoinTarget", "MeetingAdapter", "Participant", "create_adapter"]
