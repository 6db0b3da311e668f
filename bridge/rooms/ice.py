"""ICE candidates a participant may point the bridge at.

A client's offer lists the addresses the bridge should send STUN connectivity checks to
(``a=candidate`` lines, RFC 8839 section 5.1). Left alone, a participant could name any
internal address (loopback services, the cloud metadata address 169.254.169.254, another
subnet) and make the bridge probe it. ``filter_candidates`` keeps only candidates whose
address is public or inside the operator's networks (``MICROCUE_ICE_ALLOW``, CIDRs; the
default allows the private LAN ranges of RFC 1918 and RFC 4193 so meetings on a LAN work, and
an internet-facing service sets it empty to allow public addresses only). Loopback,
link-local, multicast, reserved and unspecified addresses are always dropped, and so are mDNS
names (``*.local``), which cannot be checked before they are resolved.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

log = logging.getLogger("microcue.rooms.ice")

#: The default of MICROCUE_ICE_ALLOW: private LAN ranges (RFC 1918, RFC 4193).
DEFAULT_ICE_ALLOW = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``foundation component transport priority address port typ type``: the fields every
#: candidate has (RFC 8839 section 5.1); the address is the fifth.
CANDIDATE_FIELDS = 8
ADDRESS_FIELD = 4


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, fc00::/7"`` -> networks; a bad entry is a configuration error."""
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"MICROCUE_ICE_ALLOW takes comma-separated CIDRs: {exc}") from None


def candidate_allowed(address: str, networks: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # an mDNS name or garbage: cannot be checked
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return False
    if ip.is_global:
        return True
    return any(ip in net for net in networks if net.version == ip.version)


def filter_candidates(sdp: str, networks: Iterable[Network]) -> str:
    """The SDP without the ``a=candidate`` lines the bridge must not check; counts in the log."""
    nets = tuple(networks)
    kept: list[str] = []
    dropped = 0
    for line in sdp.split("\r\n") if "\r\n" in sdp else sdp.split("\n"):
        if line.startswith("a=candidate:"):
            fields = line[len("a=candidate:") :].split()
            if len(fields) < CANDIDATE_FIELDS or not candidate_allowed(fields[ADDRESS_FIELD], nets):
                dropped += 1
                continue
        kept.append(line)
    if dropped:
        log.info("dropped %d ICE candidate(s) pointing at non-allowed addresses", dropped)
    return ("\r\n" if "\r\n" in sdp else "\n").join(kept)
