"""Per-address rate limits (token buckets) on meeting creation, joins and token checks.

A bucket holds ``per_minute`` requests and refills continuously, so a burst of that size is
allowed and then one request per ``60 / per_minute`` seconds. Buckets are kept for at most
``MAX_ADDRESSES`` addresses (oldest forgotten first): memory stays bounded whatever the
number of clients. Refusals are HTTP 429 with ``Retry-After``, or websocket close 4429.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from fastapi import HTTPException, Request, WebSocket, status

from bridge.config import Settings

#: Addresses with a live bucket: one bucket is a few dozen bytes.
MAX_ADDRESSES = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets per (scope, client address)."""

    def __init__(self, per_minute: dict[str, int]) -> None:
        self.per_minute = per_minute
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()
        self.refused = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls(
            {
                "create": settings.rate_create_per_min,
                "join": settings.rate_join_per_min,
                "token": settings.rate_token_per_min,
            }
        )

    def retry_after(self, scope: str, address: str) -> float:
        """0 when the request may go ahead (and counts it), else seconds until it may."""
        rate = self.per_minute[scope]
        now = time.monotonic()
        key = (scope, address)
        bucket = self._buckets.pop(key, None) or _Bucket(tokens=float(rate), at=now)
        bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.at) * rate / 60.0)
        bucket.at = now
        self._buckets[key] = bucket
        if len(self._buckets) > MAX_ADDRESSES:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        self.refused += 1
        return (1.0 - bucket.tokens) * 60.0 / rate


def _address(conn: Request | WebSocket) -> str:
    return conn.client.host if conn.client else "unknown"


def check(limiter: RateLimiter | None, request: Request, scope: str) -> None:
    """Raises 429 when this address went over the ``scope`` limit (an app without a limiter
    has none: a worker's, where every client is the web role's proxy)."""
    if limiter is None:
        return
    wait = limiter.retry_after(scope, _address(request))
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"too many requests from this address ({scope}); retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )


def websocket_allowed(limiter: RateLimiter | None, websocket: WebSocket, scope: str) -> bool:
    return limiter is None or not limiter.retry_after(scope, _address(websocket))
