"""Reaching the real servers this machine kind runs (PostgreSQL, Mosquitto).

Locally a missing server skips the test with the reason; with
``MICROCUE_REQUIRE_SERVICES=1`` (CI) it fails instead, so CI never goes green
by skipping.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    pass

POSTGRES = ("127.0.0.1", 5432)
MOSQUITTO = ("127.0.0.1", 1883)
POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def services_required() -> bool:
    return os.environ.get("MICROCUE_REQUIRE_SERVICES", "") not in ("", "0", "false")


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, address: tuple[str, int]) -> None:
    """Skip (locally) or fail (CI) when ``name`` does not answer on ``address``."""
    if port_open(*address):
        return
    message = f"{name} is not reachable on {address[0]}:{address[1]}"
    if services_required():
        pytest.fail(f"{message} and MICROCUE_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)
