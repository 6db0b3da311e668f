"""Running past one machine: the web role and bridge workers, which share only the broker and PostgreSQL.

``lease`` (one holder per meeting, fencing tokens), ``distributor`` (join requests on the MQTT v5
shared subscription, heartbeats, wills), ``worker_role`` (what ``microcue worker`` does),
``web_role`` (the web role's bot hook and room locator), ``health`` (the worker's probes and
metrics). See docs/cluster.md.
"""

from __future__ import annotations

from bridge.config import Settings
from bridge.errors import UsageError
from bridge.store import db


def check_settings(settings: Settings, who: str = "a worker") -> None:
    """Workers and the web role meet only on the broker and in PostgreSQL: both must be set."""
    if not settings.mqtt_url:
        raise UsageError(f"{who} needs the MQTT broker: set MICROCUE_MQTT_URL (mqtt://host:1883)")
    if not settings.database_url or db.is_sqlite(settings.effective_database_url):
        raise UsageError(f"{who} needs PostgreSQL for meeting leases: set MICROCUE_DATABASE_URL=postgresql://...")
