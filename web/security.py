"""One middleware for the headers every response carries and the Host check.

Headers (OWASP Secure Headers): a Content-Security-Policy without inline script and with
``frame-ancestors 'none'`` (no other site may frame the join page or the dashboard),
``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` (links carry tokens),
and ``X-Frame-Options: DENY`` for browsers without CSP level 2. A route that sets a stricter
CSP of its own (the dashboard) keeps it.

Host check: with ``MICROCUE_PUBLIC_URL`` set, only its host name is served; without it, a
service on a loopback address answers only to loopback names. A page on another site that
re-points its own DNS name at 127.0.0.1 (DNS rebinding) then gets 400 instead of our API.
The probes (``/healthz``, ``/readyz``, ``/metrics``) are exempt: Kubernetes and Prometheus call
them by the pod's address, and they carry no credential and no meeting data.
"""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.config import Settings

#: Every page: scripts only from our own files, inline style allowed (report charts are inline
#: SVG with style attributes), no plugins, no framing, no form posts elsewhere.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
#: FastAPI's API explorer (/docs, /redoc) loads Swagger UI from its CDN with an inline start-up
#: script; it shows no meeting data. It is the one page with a looser policy, still unframeable.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: Paths served whatever the Host: health probes and metrics, called by address from inside the cluster.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """Host names the service answers to; None when it cannot know (wildcard bind, no public URL)."""
    if settings.public_url:
        host = urlsplit(settings.public_url).hostname
        return frozenset({host.lower()}) if host else None
    if settings.host in ("0.0.0.0", "::", ""):
        return None
    names = {settings.host.lower()}
    try:
        if ipaddress.ip_address(settings.host).is_loopback:
            names |= LOOPBACK_NAMES
    except ValueError:
        if settings.host == "localhost":
            names |= LOOPBACK_NAMES
    return frozenset(names)


def _hostname(host_header: str) -> str:
    return (urlsplit(f"//{host_header}").hostname or "").lower()


class SecurityMiddleware:
    """Security headers on every HTTP response; 400 (HTTP) or a refused handshake (websocket)
    for a Host the service does not serve."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.hosts = allowed_hosts(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if (
            self.hosts is not None
            and scope["path"] not in PROBE_PATHS
            and _hostname(Headers(scope=scope).get("host", "")) not in self.hosts
        ):
            await _refuse_host(scope, send)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"].startswith(DOCS_PATHS) else CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", csp)
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _refuse_host(scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4400, "reason": "unexpected Host header"})
        return
    body = json.dumps({"detail": "unexpected Host header: this service answers only to its configured address"})
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                *((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})
