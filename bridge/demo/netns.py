"""Run WebRTC code inside a private network namespace (``bridge/demo/netns-run.sh``).

ICE (aioice) skips 127.0.0.1, Janus wants a routable address, and tests and
benchmarks must never send media to this machine's real interfaces. The one way
we solve that everywhere (pytest, ``bench/``, a manual ``microcue join`` try-out)
is to re-execute the program under ``bridge/demo/netns-run.sh``: a fresh namespace
with ``lo`` and one interface ``mc0`` holding :data:`NETNS_ADDR`, which vanishes
with the process. This module only locates the wrapper and tells code whether it
already runs inside; it never touches interfaces itself.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import ifaddr

from bridge.errors import MicroCueError

#: The wrapper script, shipped inside the package so an installed MicroCue can use it too.
NETNS_SCRIPT = Path(__file__).resolve().parent / "netns-run.sh"
#: Set by the wrapper inside the namespace to the address of ``mc0``. A marker set by our
#: own test harness, not configuration, so it is read here rather than in Settings.
NETNS_ENV = "MICROCUE_NETNS_ADDR"
#: The private address every peer, Janus and the bridge use inside (RFC 1918, unlikely to clash).
NETNS_ADDR = "10.254.0.1"


class NetnsError(MicroCueError):
    """The namespace cannot be made here (no unshare/ip, or no privileges)."""


def netns_address() -> str | None:
    """The namespace's address when this process runs inside one made by the wrapper, else None.

    Both the marker and the interface must be there: an inherited variable in a process that
    left the namespace must not make tests send traffic to a real interface.
    """
    addr = os.environ.get(NETNS_ENV)
    if not addr:
        return None
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if ip.ip == addr:
                return addr
    return None


def netns_available() -> bool:
    """Whether the wrapper can run here: its tools exist (privileges are checked by running it)."""
    return NETNS_SCRIPT.is_file() and shutil.which("unshare") is not None and shutil.which("ip") is not None


def netns_command(argv: Sequence[str]) -> list[str]:
    """``argv`` wrapped so it runs in a fresh namespace; raises when the wrapper cannot run."""
    if not netns_available():
        raise NetnsError(f"cannot create a network namespace: need {NETNS_SCRIPT}, `unshare` and `ip`")
    return ["bash", str(NETNS_SCRIPT), *argv]


@functools.cache
def netns_usable() -> str | None:
    """Why no namespace can be made here (no tools, no privileges), or None; probed once per process."""
    if not netns_available():
        return "cannot make a network namespace here: needs unshare (util-linux) and ip (iproute2)"
    probe = subprocess.run(netns_command(["true"]), capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        return f"cannot make a network namespace here (needs root or user namespaces): {probe.stderr.strip()}"
    return None
