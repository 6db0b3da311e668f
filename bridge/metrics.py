"""Prometheus metrics (``GET /metrics``): one registry, small functions to update it.

Two kinds of figures:

* Events the analysis workers, peers and the live hub report as they happen
  (frames analysed or dropped, cues seen, websocket clients, participants): module-level
  metrics in ``REGISTRY``, updated through the functions below so callers never
  touch metric objects or label names.
* State that already lives in an object (bus lag and drops, store writer counts):
  read at scrape time by a ``ServiceCollector`` that the service registers in its
  own registry, so several apps in one process (tests) never collide.

No metric carries a meeting or participant label: ids are unbounded and would
grow the registry forever (and they are personal data).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: The process-wide registry; ``/metrics`` renders it plus each app's own collector.
REGISTRY = CollectorRegistry(auto_describe=True)

PARTICIPANTS = Gauge(
    "microcue_participants", "Participants currently connected and analysed by this process", registry=REGISTRY
)
ANALYSED_FRAMES = Counter(
    "microcue_analysed_frames", "Frames that went through inference (rate() gives analysed fps)", registry=REGISTRY
)
ANALYSIS_FPS = Gauge(
    "microcue_analysis_fps", "Frames analysed per second over all participants, as last measured", registry=REGISTRY
)
DROPPED_FRAMES = Counter(
    "microcue_dropped_frames",
    "Frames skipped before inference (stale, over the target fps, or no consent)",
    ["reason"],
    registry=REGISTRY,
)
CUES = Counter("microcue_cues", "Cues received from the event bus by this process", ["type"], registry=REGISTRY)
WEBSOCKET_CLIENTS = Gauge(
    "microcue_websocket_clients", "Presenter websocket connections currently open", registry=REGISTRY
)
WEBSOCKET_SKIPPED = Counter(
    "microcue_websocket_skipped_cues",
    "Cues a slow presenter connection skipped (oldest dropped from its bounded send queue)",
    registry=REGISTRY,
)
WEBSOCKET_CLOSED_SLOW = Counter(
    "microcue_websocket_closed_slow", "Presenter connections closed because they stayed stuck", registry=REGISTRY
)
WEBSOCKET_REFUSED = Counter(
    "microcue_websocket_refused", "Websocket connections refused, by reason", ["reason"], registry=REGISTRY
)

INFERENCE_BATCHES = Counter(
    "microcue_inference_batches",
    "Batched model calls run by the inference scheduler (MICROCUE_BATCHING), by model",
    ["model"],
    registry=REGISTRY,
)
INFERENCE_BATCHED_CROPS = Counter(
    "microcue_inference_batched_crops",
    "Crops served through the inference scheduler, by model (divided by batches: the mean batch size)",
    ["model"],
    registry=REGISTRY,
)

#: Reasons ``frame_dropped`` accepts; a fixed set keeps the label bounded.
DROP_REASONS = frozenset({"stale", "rate", "no_consent", "no_face", "error"})


def participant_joined() -> None:
    PARTICIPANTS.inc()


def participant_left() -> None:
    PARTICIPANTS.dec()


def frames_analysed(n: int = 1) -> None:
    ANALYSED_FRAMES.inc(n)


def set_analysis_fps(fps: float) -> None:
    ANALYSIS_FPS.set(fps)


def frames_dropped(n: int = 1, *, reason: str = "stale") -> None:
    if reason not in DROP_REASONS:
        raise ValueError(f"drop reason must be one of {sorted(DROP_REASONS)}, got {reason!r}")
    DROPPED_FRAMES.labels(reason=reason).inc(n)


def batch_run(model: str, crops: int) -> None:
    """One batch of ``crops`` through ``model``'s scheduler (model names are the fixed five)."""
    INFERENCE_BATCHES.labels(model=model).inc()
    INFERENCE_BATCHED_CROPS.labels(model=model).inc(crops)


def cue_seen(cue_type: str) -> None:
    CUES.labels(type=cue_type).inc()


def websocket_opened() -> None:
    WEBSOCKET_CLIENTS.inc()


def websocket_closed() -> None:
    WEBSOCKET_CLIENTS.dec()


def websocket_skipped(n: int) -> None:
    WEBSOCKET_SKIPPED.inc(n)


def websocket_closed_slow() -> None:
    WEBSOCKET_CLOSED_SLOW.inc()


def websocket_refused(reason: str) -> None:
    WEBSOCKET_REFUSED.labels(reason=reason).inc()


class ServiceCollector(Collector):
    """Reads live objects at scrape time: ``sources`` maps a metric name to a callable.

    Each callable returns ``(kind, help, value)`` with kind ``"gauge"`` or
    ``"counter"``; a source that raises is skipped, so one broken part never
    takes the whole scrape down.
    """

    def __init__(self, sources: Mapping[str, Callable[[], tuple[str, str, float]]]) -> None:
        self._sources = dict(sources)

    def collect(self) -> Iterable[Metric]:
        for name, source in self._sources.items():
            try:
                kind, help_text, value = source()
            except Exception:
                continue
            if kind == "counter":
                yield CounterMetricFamily(name, help_text, value=value)
            else:
                yield GaugeMetricFamily(name, help_text, value=value)


def bus_sources(bus: object) -> dict[str, Callable[[], tuple[str, str, float]]]:
    """The event bus's figures for a ``ServiceCollector``: the same names in every role's /metrics."""
    return {
        "microcue_bus_lag_seconds": lambda: (
            "gauge",
            "Age of the oldest cue the bus has not delivered to the broker (0 for the in-process bus)",
            float(getattr(bus, "lag_seconds", 0.0)),
        ),
        "microcue_bus_dropped_cues": lambda: (
            "counter",
            "Cues the bus dropped (full outbox or slow local subscriber)",
            float(getattr(bus, "dropped", 0)),
        ),
        "microcue_bus_published_cues": lambda: (
            "counter",
            "Cues published on this process's bus",
            float(getattr(bus, "published", 0)),
        ),
        "microcue_bus_acked_cues": lambda: (
            "counter",
            "Cues the broker acknowledged (PUBACK; 0 for the in-process bus)",
            float(getattr(bus, "acked", 0)),
        ),
    }


def render(*extra: CollectorRegistry) -> bytes:
    """The exposition text of the process registry followed by each extra registry."""
    return b"".join([generate_latest(REGISTRY), *(generate_latest(r) for r in extra)])
