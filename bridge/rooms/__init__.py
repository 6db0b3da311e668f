"""Meeting adapters: how the bot gets into a meeting, one module per meeting kind.

``create_adapter`` is the factory (the shape of aiortc's ``contrib/signaling.py``): a
:class:`~bridge.targets.JoinTarget` in, the :class:`~bridge.rooms.base.MeetingAdapter`
that joins it out. Built-in rooms (``builtin``) are not joined but hosted, and the browser bot
(``browser``) forwards a web meeting's people over WHIP into one; ``bots`` runs bots for the
service; ``bridge.targets`` checks where a bot may go.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import NotBuiltYet, UsageError
from bridge.media.analysis import AdapterContext
from bridge.rooms.base import MeetingAdapter, Participant
from bridge.rooms.janus import JanusAdapter
from bridge.targets import JoinTarget

__all__ = ["AdapterContext", "JoinTarget", "MeetingAdapter", "Participant", "create_adapter"]


def create_adapter(target: JoinTarget, ctx: AdapterContext, **options: Any) -> MeetingAdapter:
    """The adapter for ``target``; ``options`` go to its constructor (e.g. keepalive period).

    A target that was checked (``address`` set) is connected to at that address only.
    """
    if target.kind == "janus":
        if target.room is None:
            raise UsageError("--janus needs --room N (the VideoRoom number)")
        if target.address is not None:
            options.setdefault("address", target.address)
        return JanusAdapter(target.url, target.room, ctx, **options)
    if target.kind == "whep":
        raise NotBuiltYet("joining over WHEP is not built yet in this version; use --janus URL --room N")
    raise UsageError(f"a {target.kind!r} target is not joined by a meeting adapter (the browser bot joins pages)")
