"""How many cores this process may really use, and the defaults derived from it.

``os.cpu_count()`` counts the machine's cores, not this process's: ``taskset`` or a cpuset
narrows the set it may run on (``os.sched_getaffinity``) and a container's CPU quota (cgroup v2
``cpu.max``, v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``) caps the time it gets on them. Sizing
processes and thread pools from the machine's count oversubscribes the cores the process really
has, which issue 23 found to move benchmark figures by 2x from run to run. Everything that sizes
a pool by cores asks here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

#: Where cgroup file systems are mounted (tests point it at a temporary directory).
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: A participant count of analysis processes below this many usable cores: with one core a
#: second process only adds pipe copies and context switches (the GIL is not what limits then).
MIN_CORES_FOR_PROCESSES = 2


def affinity_cores() -> int:
    """Cores this process may be scheduled on (``taskset``, cpusets); the machine's count where
    the platform has no affinity call (macOS)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _own_cgroup(proc_cgroup: str) -> tuple[str | None, str | None]:
    """(v2 path, v1 cpu-controller path) of this process, from /proc/self/cgroup's lines
    ``0::/path`` (v2) and ``N:cpu,cpuacct:/path`` (v1)."""
    v2 = v1 = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:  # noqa: PLR2004 - id, controllers, path
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _v2_quota(root: Path, path: str) -> float | None:
    """The tightest ``cpu.max`` from the process's cgroup up to the root, in cores."""
    best: float | None = None
    here = Path(path)
    while True:
        text = _read(root / here.relative_to("/") / "cpu.max")
        if text:
            quota, _, period = text.partition(" ")
            if quota != "max" and period:
                try:
                    cores = int(quota) / int(period)
                except (ValueError, ZeroDivisionError):
                    cores = None
                if cores is not None and cores > 0:
                    best = cores if best is None else min(best, cores)
        if here == here.parent:
            return best
        here = here.parent


def _v1_quota(root: Path, path: str) -> float | None:
    """``cfs_quota_us / cfs_period_us`` of the cpu controller (-1: no quota), in cores."""
    for mount in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
        base = root / mount
        for directory in (base / Path(path).relative_to("/"), base):
            quota, period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
            if quota is None or period is None:
                continue
            try:
                q, p = int(quota), int(period)
            except ValueError:
                return None
            return q / p if q > 0 and p > 0 else None
    return None


def cgroup_quota_cores(root: Path = CGROUP_ROOT, proc_cgroup: str | None = None) -> float | None:
    """This process's cgroup CPU quota in cores (e.g. 1.5), or None when it has none."""
    if proc_cgroup is None:
        proc_cgroup = _read(Path("/proc/self/cgroup")) or ""
    v2, v1 = _own_cgroup(proc_cgroup)
    if v2 is not None and (root / "cgroup.controllers").exists():
        return _v2_quota(root, v2)
    if v1 is not None:
        return _v1_quota(root, v1)
    return None


def usable_cores(root: Path = CGROUP_ROOT, proc_cgroup: str | None = None) -> int:
    """Cores this process may use: its affinity, capped by its cgroup quota rounded up (a
    quota of 1.5 cores still runs two threads at once, part of the time)."""
    cores = affinity_cores()
    quota = cgroup_quota_cores(root, proc_cgroup)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota - 1e-9)))
    return cores


def auto_analysis_processes(cores: int | None = None) -> int:
    """``MICROCUE_ANALYSIS_PROCESSES=auto``: one analysis process per usable core when there are
    at least two (each analyzer then has its own GIL and core, and the bridge's event loop keeps
    its own), none (analysis in the bridge process) on one core."""
    cores = usable_cores() if cores is None else cores
    return cores if cores >= MIN_CORES_FOR_PROCESSES else 0
