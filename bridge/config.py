"""Service settings: every ``MICROCUE_*`` variable, read once, validated.

Nothing else in the code reads ``os.environ`` for configuration; the CLI turns
each setting into a flag of the same name (``MICROCUE_PORT`` is ``--port``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridge.confidence import DEFAULT_MIN_CONFIDENCE
from bridge.cpus import auto_analysis_processes

#: Upper bound of MICROCUE_ANALYSIS_PROCESSES (a sanity limit: each process holds its own models).
MAX_ANALYSIS_PROCESSES = 64


def _user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "microcue"


def _user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "microcue"


class Settings(BaseSettings):
    """Embedded defaults: loopback, SQLite file, in-process bus, CPU."""

    model_config = SettingsConfigDict(env_prefix="MICROCUE_", env_ignore_empty=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    data_dir: Path = Field(default_factory=_user_data_dir)
    model_dir: Path = Field(default_factory=lambda: _user_cache_dir() / "models")
    database_url: str = ""
    mqtt_url: str = ""
    api_key: str = ""
    policy: Literal["default", "unrestricted"] = "default"
    # 15 fps: a 0.36-0.40 s micro-expression still spans 5-6 frames (docs/sources.md).
    analysis_fps: float = Field(default=15.0, gt=0, le=60)
    # Expression signals below this confidence are hidden from presenters (dashboard, live feed,
    # reports) and counted instead; the default is defined (and argued) in bridge/confidence.py.
    min_confidence: float = Field(default=DEFAULT_MIN_CONFIDENCE, ge=0.0, le=1.0)
    join_allow: str = ""
    public_url: str = ""
    log_level: str = "INFO"
    # Which engine runs the face models: "auto" picks the fastest measured for each model on
    # this device (inference.runtime.CPU_PREFERENCE; CUDA -> onnxruntime); the others force one.
    model_runtime: Literal["auto", "onnxruntime", "openvino", "litert"] = "auto"
    # One inference scheduler per process merges all participants' face crops into batches
    # (bridge.models.batching): "auto" batches on a GPU (CUDA) only, where one call per crop
    # leaves the device idle; on the CPU LiteRT at batch 1 is faster than any onnxruntime
    # batch (docs/benchmarks.md "Batched face models"). "on"/"off" force it.
    batching: Literal["auto", "on", "off"] = "auto"
    # Threads of the inference pool (bridge.executor); 0: one per core. With batching on a GPU
    # the crops of one batch come from this many participants at most, so set it to the
    # participants a worker serves (MICROCUE_WORKER_CAPACITY), up to 128.
    inference_threads: int = Field(default=0, ge=0, le=1024)
    # Analyse participants in this many worker processes (bridge.media.analysis_pool): in one
    # process the GIL, held mostly by aiortc's event loop, serialises the analyzers' Python glue
    # (docs/benchmarks.md "Bridge load"). 0 analyses in-process. "auto": one per core this
    # process may use (affinity and cgroup quota, bridge.cpus), none on a single core
    # (docs/benchmarks.md "Issue 23").
    analysis_processes: int | Literal["auto"] = Field(default="auto")
    # Bridge workers (``microcue worker``): how many participants one worker analyses at once.
    # One participant costs ~0.25 core at 15 analysed fps (docs/benchmarks.md), so 8 fills two
    # cores; size it to the worker's CPU (or GPU) limit.
    worker_capacity: int = Field(default=8, ge=1, le=10_000)
    # Name of this worker in leases and heartbeats; empty: host name and process id.
    worker_id: str = ""
    # Where the web role reaches this worker's built-in room signalling (http://POD_IP:PORT);
    # empty: http://HOST:PORT of this process.
    worker_url: str = ""
    # --- hard limits (docs/privacy.md "Limits"); each refusal is a 4xx or a websocket close code
    #: Meetings not yet ended that one service runs at once.
    max_meetings: int = Field(default=200, ge=1)
    #: Signalling sockets open per built-in meeting: 8 participants (the room cap), each
    #: with one reconnect in flight.
    max_signal_sockets: int = Field(default=16, ge=1)
    #: Seconds a signalling socket may take from connect to its first offer.
    join_timeout_s: float = Field(default=30.0, gt=0)
    #: Requests per minute and client address: meeting creation, joins (signalling sockets
    #: and join pages), and token checks (API, dashboard, live feed).
    rate_create_per_min: int = Field(default=30, ge=1)
    rate_join_per_min: int = Field(default=60, ge=1)
    rate_token_per_min: int = Field(default=600, ge=1)
    #: Networks (CIDRs) a participant's ICE candidates may point at besides public addresses
    #: (bridge/rooms/ice.py); the default is the private LAN ranges, "" allows public only.
    ice_allow: str = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
    # --- the Janus bot
    #: ``announced``: everyone is analysed once the bot has announced itself by name and in
    #: the room's chat; ``required``: nobody is analysed (tracks are only drained).
    janus_consent: Literal["required", "announced"] = "announced"
    # --- MQTT over TLS (``mqtts://``): CA to trust, and this client's certificate and key
    mqtt_ca: Path | None = None
    mqtt_cert: Path | None = None
    mqtt_key: Path | None = None

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, v: str) -> str:
        """Accept the plain scheme users copy from elsewhere; we always run async drivers."""
        if v.startswith("postgres://"):
            v = "postgresql://" + v[len("postgres://") :]
        if v.startswith("postgresql://"):
            v = "postgresql+asyncpg://" + v[len("postgresql://") :]
        if v.startswith("sqlite:///"):
            v = "sqlite+aiosqlite:///" + v[len("sqlite:///") :]
        return v

    @field_validator("analysis_processes")
    @classmethod
    def _processes_range(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 0 <= v <= MAX_ANALYSIS_PROCESSES:
            raise ValueError(f"must be auto or 0..{MAX_ANALYSIS_PROCESSES}")
        return v

    @property
    def effective_analysis_processes(self) -> int:
        """Analysis processes to start: the number set, or for "auto" one per usable core."""
        if self.analysis_processes == "auto":
            return auto_analysis_processes()
        return self.analysis_processes

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'microcue.db'}"

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"

    @property
    def effective_worker_url(self) -> str:
        return self.worker_url.rstrip("/") or f"http://{self.host}:{self.port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings; tests build their own ``Settings(...)`` instead."""
    return Settings()
