"""Bot targets that cannot be turned against the network: one check for every URL a bot opens.

``check_target(url, allow)`` is the only door: the API's ``POST .../bot`` (Janus today;
browser-bot page URLs and WHIP/WHEP endpoints reuse it with their own ``schemes``) calls it
before anything connects. The rules (OWASP SSRF Prevention Cheat Sheet):

* only the given schemes (``ws``/``wss`` for Janus);
* the ``host:port`` pair must be on the operator's allow-list (``MICROCUE_JOIN_ALLOW``,
  comma-separated ``host:port``); the port defaults to the scheme's (80/443) when the URL
  has none;
* the host name is resolved **once**, here; every address it resolves to must be public
  (not loopback, private, link-local, multicast, reserved or unspecified) unless that very
  address is itself an allow-list entry (``10.0.0.5:8188``), the way to allow an
  internal server;
* the caller connects to ``CheckedTarget.address``, not to the name again, so a DNS answer
  that changes later (rebinding) cannot move the bot; and follows no redirects
  (``bridge.rooms.janus`` refuses them).

Every refusal is a ``TargetRefused`` with the HTTP status it means (403 not allowed, 422 not
usable), never a 500.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from bridge.errors import MicroCueError

#: Default ports of the schemes a bot may use (RFC 6455 section 3, RFC 9110 section 4.2).
DEFAULT_PORTS = {"ws": 80, "wss": 443, "http": 80, "https": 443}
#: Seconds a name may take to resolve before the target is refused.
RESOLVE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class JoinTarget:
    """Where a bot should join, wherever the request comes from (the API, ``microcue join``, a
    cluster join request): a Janus VideoRoom (url + room), a WHEP endpoint (url), or a web meeting
    page (url + the recipe that says how to join it)."""

    kind: Literal["janus", "whep", "page"]
    url: str
    room: int | None = None
    recipe: str | None = None
    #: the address ``check_target`` resolved and checked: connect here only (None: not checked,
    #: e.g. ``microcue join`` run by the operator against a server of their choice)
    address: str | None = None

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()


class TargetRefused(MicroCueError):
    """A bot target the service will not connect to; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class CheckedTarget:
    """A URL that passed every rule, with the one address to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    #: the resolved, checked IP address: connect here (TLS still verifies ``host``)
    address: str


def parse_allow(allow: str) -> frozenset[tuple[str, int]]:
    """``"janus.example:8188, 10.0.0.5:8188"`` -> {(host, port)}; an entry without a port is an error."""
    pairs: set[tuple[str, int]] = set()
    for raw in allow.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        parts = urlsplit(f"//{entry}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"MICROCUE_JOIN_ALLOW entries are host:port pairs, got {raw.strip()!r}")
        pairs.add((parts.hostname, port))
    return frozenset(pairs)


def is_public(address: str) -> bool:
    """True for a globally routable unicast address (``ipaddress``'s ``is_global``)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_target(
    url: str, allow: frozenset[tuple[str, int]], *, schemes: tuple[str, ...] = ("ws", "wss")
) -> CheckedTarget:
    """The target, checked and resolved once; ``TargetRefused`` saying why not otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a usable URL ({exc}): {url!r}", status=422) from exc
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise TargetRefused(f"the URL must use {' or '.join(schemes)}, got {scheme or 'no scheme'!r}", status=422)
    host = (parts.hostname or "").lower()
    if not host:
        raise TargetRefused(f"the URL has no host: {url!r}", status=422)
    if parts.username or parts.password:
        raise TargetRefused("the URL must not carry credentials", status=422)
    port = port if port is not None else DEFAULT_PORTS[scheme]
    if (host, port) not in allow:
        raise TargetRefused(
            f"{host}:{port} is not on the operator's allow-list (MICROCUE_JOIN_ALLOW, host:port pairs); "
            "ask the operator to add it"
        )
    addresses = [host] if _is_ip(host) else await _resolve(host, port)
    allowed_ips = {h for h, p in allow if p == port}
    for address in addresses:
        if not is_public(address) and address not in allowed_ips:
            raise TargetRefused(
                f"{host} resolves to {address}, a non-public address; the operator can allow it by listing "
                f"{address}:{port} in MICROCUE_JOIN_ALLOW"
            )
    return CheckedTarget(url=url, scheme=scheme, host=host, port=port, address=addresses[0])


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve(host: str, port: int) -> list[str]:
    """The name's addresses, asked once (the caller keeps them: no second lookup to rebind)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        raise TargetRefused(f"cannot resolve {host!r} ({exc or 'timeout'})", status=422) from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise TargetRefused(f"{host!r} resolves to no address", status=422)
    return addresses
