"""What every MicroCue websocket endpoint shares: close codes, the bounded close, the token.

The live feed, built-in room signalling, the web role's signalling proxy and the worker's
endpoints all close sockets the same way and read credentials the same way.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import WebSocket
from starlette.websockets import WebSocketState

from bridge.tokens import TokenCheck, TokenStatus

#: Application close codes (4000-4999 are free for applications, RFC 6455 section 7.4.2);
#: 44xx mirror the HTTP status a request would get.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4408
#: Too many sockets for a meeting, or too many requests from this address (HTTP 429).
CLOSE_TOO_MANY = 4429
#: RFC 6455: the peer sent a message too big to process.
CLOSE_TOO_BIG = 1009
#: Seconds a close handshake may take before the handler gives up on a stuck peer.
CLOSE_TIMEOUT_S = 2.0
#: Websocket close reasons must fit a control frame (125 bytes, 2 of them the code).
MAX_REASON_BYTES = 123


def _reason(text: str) -> str:
    return text.encode("utf-8")[:MAX_REASON_BYTES].decode("utf-8", "ignore")


def refusal_code(check: TokenCheck) -> int:
    """4401 for no token or one nobody issued (or revoked), 4403 for a real token that may not
    open this socket (another meeting's, another kind, expired)."""
    return CLOSE_UNAUTHORIZED if check.status in (TokenStatus.MISSING, TokenStatus.UNKNOWN) else CLOSE_FORBIDDEN


def token_from(websocket: WebSocket) -> str | None:
    """``?token=`` (browsers cannot set headers on a websocket) or ``Authorization: Bearer``."""
    token = websocket.query_params.get("token")
    if token:
        return token
    scheme, _, value = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


async def close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await websocket.close(code, _reason(reason))
