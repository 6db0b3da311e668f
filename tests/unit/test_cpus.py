"""Usable cores: affinity capped by the cgroup CPU quota (issue 23), from fake cgroup trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import cpus
from bridge.cpus import auto_analysis_processes, cgroup_quota_cores, usable_cores

pytestmark = pytest.mark.unit

V2_SELF = "0::/kubepods/pod1/ctr\n"
V1_SELF = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _v2(root: Path, own: str, parent: str = "max 100000") -> Path:
    _write(root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    _write(root / "kubepods" / "pod1" / "cpu.max", parent + "\n")
    _write(root / "kubepods" / "pod1" / "ctr" / "cpu.max", own + "\n")
    return root


def test_v2_quota_in_cores(tmp_path: Path) -> None:
    assert cgroup_quota_cores(_v2(tmp_path, "150000 100000"), V2_SELF) == pytest.approx(1.5)


def test_v2_no_quota_is_none(tmp_path: Path) -> None:
    assert cgroup_quota_cores(_v2(tmp_path, "max 100000"), V2_SELF) is None


def test_v2_a_tighter_parent_quota_wins(tmp_path: Path) -> None:
    root = _v2(tmp_path, "400000 100000", parent="100000 100000")
    assert cgroup_quota_cores(root, V2_SELF) == pytest.approx(1.0)


def test_v1_quota_and_no_quota(tmp_path: Path) -> None:
    d = tmp_path / "cpu,cpuacct" / "docker" / "abc"
    _write(d / "cpu.cfs_quota_us", "50000\n")
    _write(d / "cpu.cfs_period_us", "100000\n")
    assert cgroup_quota_cores(tmp_path, V1_SELF) == pytest.approx(0.5)
    _write(d / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_quota_cores(tmp_path, V1_SELF) is None


def test_no_cgroup_files_is_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota_cores(tmp_path, V1_SELF) is None
    assert cgroup_quota_cores(tmp_path, "garbage\n") is None


def test_usable_cores_is_affinity_capped_by_the_quota_rounded_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpus, "affinity_cores", lambda: 8)
    assert usable_cores(_v2(tmp_path, "150000 100000"), V2_SELF) == 2
    assert usable_cores(_v2(tmp_path, "50000 100000"), V2_SELF) == 1
    assert usable_cores(_v2(tmp_path, "max 100000"), V2_SELF) == 8
    monkeypatch.setattr(cpus, "affinity_cores", lambda: 1)  # taskset -c 1 under a 4-core quota
    assert usable_cores(_v2(tmp_path, "400000 100000"), V2_SELF) == 1


def test_affinity_is_what_sched_getaffinity_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda _pid: {1}, raising=False)
    monkeypatch.setattr(cpus.os, "cpu_count", lambda: 64)
    assert cpus.affinity_cores() == 1


def test_auto_analysis_processes_one_per_core_from_two() -> None:
    assert auto_analysis_processes(1) == 0
    assert auto_analysis_processes(2) == 2
    assert auto_analysis_processes(6) == 6


def test_settings_default_is_auto_and_a_number_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.config import Settings  # noqa: PLC0415 - the environment is cleared first

    monkeypatch.delenv("MICROCUE_ANALYSIS_PROCESSES", raising=False)
    monkeypatch.setattr("bridge.config.auto_analysis_processes", lambda: 5)
    assert Settings().analysis_processes == "auto"
    assert Settings().effective_analysis_processes == 5
    assert Settings(analysis_processes=0).effective_analysis_processes == 0
    monkeypatch.setenv("MICROCUE_ANALYSIS_PROCESSES", "3")
    assert Settings().effective_analysis_processes == 3
    with pytest.raises(ValueError, match="auto or 0"):
        Settings(analysis_processes=65)
