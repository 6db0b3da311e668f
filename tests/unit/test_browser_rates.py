"""The browser-meeting tests judge analysis by these measures (tests/support/rates.py): a stall or
an unfair share must fail them, and a slow but steady, even meeting must not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import rates as r

pytestmark = pytest.mark.unit


def _counter(fps: float, seconds: float, *, frozen: tuple[float, float] | None = None) -> r.Samples:
    """Samples twice a second of a counter moving at ``fps``, not moving inside ``frozen``."""
    out, n, t = [], 0, 0.0
    while t <= seconds:
        out.append((t, int(n)))
        t += 0.5
        if frozen is None or not frozen[0] <= t <= frozen[1]:
            n += fps * 0.5
    return out


def test_rate_is_frames_over_time_inside_the_window() -> None:
    assert r.rate(_counter(12.0, 20.0), 3.0, 20.0) == pytest.approx(12.0)
    with pytest.raises(AssertionError, match="too few samples"):
        r.rate(_counter(12.0, 20.0), 19.8, 20.0)


def test_longest_stall_is_the_longest_time_the_counter_stood_still() -> None:
    assert r.longest_stall(_counter(8.0, 20.0), 3.0, 20.0) == 0.0
    assert r.longest_stall(_counter(8.0, 20.0, frozen=(6.0, 9.0)), 3.0, 20.0) == pytest.approx(3.5)
    # a stall that started before the window counts only from the window's start
    assert r.longest_stall(_counter(8.0, 20.0, frozen=(0.0, 5.0)), 3.0, 20.0) == pytest.approx(2.0)


def test_a_slow_but_steady_and_even_meeting_passes() -> None:
    r.check_steady_and_fair({"Ann": 5.6, "Ben": 9.5, "Cy": 7.0}, {"Ann": 0.5, "Ben": 0.0, "Cy": 1.0})


def test_a_stalled_participant_fails() -> None:
    with pytest.raises(AssertionError, match="stalled"):
        r.check_steady_and_fair({"Ann": 14.0, "Ben": 13.0}, {"Ann": 0.0, "Ben": r.MAX_STALL_S + 0.5})


@pytest.mark.parametrize("slowest", [0.0, 4.0])
def test_a_participant_far_behind_the_others_fails(slowest: float) -> None:
    with pytest.raises(AssertionError, match="unevenly"):
        r.check_steady_and_fair({"Ann": 14.0, "Ben": slowest}, {"Ann": 0.0, "Ben": 0.0})


def test_rates_reach_the_bench_only_when_it_asks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(r, "ARTIFACTS", tmp_path / "artifacts")
    target = tmp_path / "rates.jsonl"
    monkeypatch.delenv(r.RATES_ENV, raising=False)
    r.record("first", scenario="s", rates={"Ann": 14.0})
    assert not target.exists()
    monkeypatch.setenv(r.RATES_ENV, str(target))
    r.record("second", scenario="s", rates={"Ann": 14.5})
    r.record("a line without rates")
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(x["scenario"], x["rates"]) for x in lines] == [("s", {"Ann": 14.5})]
    assert (tmp_path / "artifacts" / "browser_rates.txt").read_text().splitlines() == [
        "first",
        "second",
        "a line without rates",
    ]
