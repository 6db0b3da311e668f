"""What an app's routes and websockets share, in one typed place: :class:`WebState`.

The app's lifespan (``web/app.py``; ``web/worker_app.py`` for a bridge worker) builds one and
keeps it as ``app.state.web``, the app's only state attribute. Routes take its parts through
the dependencies of ``web/deps.py``; websocket handlers call :func:`web_state`. A part that
only one kind of app has (the live hub, bots, the cluster's room locator) is None in the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from web.hub import DEFAULT_SEND_QUEUE, LiveHub
from web.ratelimit import RateLimiter
from web.ws.sockets import MeetingSockets

if TYPE_CHECKING:  # bridge types only: importing the state must not load aiortc and the models
    from prometheus_client import CollectorRegistry

    from bridge.cluster.web_role import ClusterBots, ClusterRooms
    from bridge.config import Settings
    from bridge.media.analysis import Analysis
    from bridge.rooms.bots import BotManager
    from bridge.rooms.builtin import BuiltinRooms
    from bridge.service import MeetingService


@dataclass(frozen=True, slots=True)
class LiveOptions:
    """Tunables of the live feed (``web/ws/live.py``); tests shorten the timers."""

    #: Seconds between heartbeats: below the 30-60 s idle timeouts of common proxies and load balancers.
    heartbeat_s: float = 15.0
    #: Messages queued per connection before the oldest are skipped.
    send_queue: int = DEFAULT_SEND_QUEUE
    #: Seconds one send may block (the client reads nothing) before the connection is closed.
    stuck_timeout_s: float = 10.0
    #: Largest client message accepted: clients only send tiny control messages.
    max_message_bytes: int = 4096


@dataclass
class WhipSession:
    """One WHIP publisher's session (``web/routes/whip.py``), found by its resource id."""

    meeting_id: str
    participant_id: str
    token_hash: str
    etag: str
    ice_ufrag: str | None
    ice_pwd: str | None


@dataclass
class WebState:
    """One app's shared parts, built by its lifespan."""

    settings: Settings
    service: MeetingService
    #: built-in rooms of this process (a worker's: only the meetings it holds)
    rooms: BuiltinRooms
    #: signalling websockets per meeting (their cap, and closing them when a meeting ends)
    signal_sockets: MeetingSockets = field(default_factory=MeetingSockets)
    #: the presenters' live feeds; None in a worker's app, which has none
    hub: LiveHub | None = None
    live_options: LiveOptions = field(default_factory=LiveOptions)
    #: this app's figures for /metrics (a worker serves its own, bridge.cluster.health)
    metrics_registry: CollectorRegistry | None = None
    #: True from the end of start-up to the start of shutdown (/readyz)
    bus_started: bool = False
    #: the process's models and pool, which the rooms and bots share
    analysis: Analysis | None = None
    #: bots in external meetings: run here, or (web role) asked of the workers
    bots: BotManager | ClusterBots | None = None
    #: the web role's way to the worker that holds a built-in room; None elsewhere
    cluster_rooms: ClusterRooms | None = None
    whip_sessions: dict[str, WhipSession] = field(default_factory=dict)
    #: per-address limits; None where every client is the web role's proxy (a worker)
    rate_limiter: RateLimiter | None = None

    def live_hub(self) -> LiveHub:
        """The hub, in an app that serves live feeds."""
        if self.hub is None:
            raise RuntimeError("this app serves no live feeds (no live hub)")
        return self.hub


def web_state(conn: HTTPConnection) -> WebState:
    """The state of the app serving ``conn`` (a request or a websocket)."""
    state = getattr(conn.app.state, "web", None)
    if not isinstance(state, WebState):
        raise RuntimeError("the app has no WebState: its lifespan has not run")
    return state
