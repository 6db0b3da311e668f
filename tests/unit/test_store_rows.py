"""Pure conversions of the store: cue <-> row, durations, UTC timestamps."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from bridge.commands.purge import format_duration, parse_duration
from bridge.store.repo import CUE_COLUMNS, cue_to_row, row_to_cue
from bridge.store.tables import CueRow, UtcDateTime
from inference.cues import Cue

pytestmark = pytest.mark.unit

MICRO = Cue(
    type="micro_expression",
    t=12.5,
    meeting_id="m1",
    participant_id="p1",
    seq=7,
    onset_s=12.4,
    apex_s=12.5,
    offset_s=12.7,
    emotion="surprise",
    valence=0.2,
    aus=("AU1", "AU2", "AU5"),
    confidence=0.81,
    detail="brief brow raise",
)
ENGAGEMENT = Cue(type="engagement", t=3.0, meeting_id="m1", participant_id="p2", seq=1, value=0.4)


@pytest.mark.parametrize("cue", [MICRO, ENGAGEMENT], ids=["micro", "engagement"])
def test_cue_row_round_trip(cue: Cue) -> None:
    row = cue_to_row(cue)
    assert set(row) == set(CUE_COLUMNS)
    assert isinstance(row["aus"], list)  # JSON column: a list, not a tuple
    back = row_to_cue(CueRow(id=1, **row))
    assert back == cue


def test_cue_columns_cover_every_cue_field_and_table_column() -> None:
    assert set(CUE_COLUMNS) == set(Cue.__dataclass_fields__)
    assert set(CUE_COLUMNS) | {"id"} == set(CueRow.__table__.c.keys())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        (" 1d ", timedelta(days=1)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "30", "0d", "-1d", "1w", "1.5d", "d30", "30 days"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="30d, 12h or 90m"):
        parse_duration(text)


def test_format_duration_picks_the_largest_whole_unit() -> None:
    assert format_duration(timedelta(days=30)) == "30d"
    assert format_duration(timedelta(hours=36)) == "36h"
    assert format_duration(timedelta(minutes=90)) == "90m"


def test_utc_datetime_normalises_per_dialect() -> None:
    kind = UtcDateTime()
    paris = datetime(2026, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    on_sqlite = kind.process_bind_param(paris, sqlite.dialect())
    assert on_sqlite == datetime(2026, 1, 1, 12, 0)  # naive UTC: SQLite compares the text
    assert kind.process_bind_param(paris, postgresql.dialect()) == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert kind.process_result_value(on_sqlite, sqlite.dialect()) == paris
    assert kind.process_result_value(on_sqlite, sqlite.dialect()).tzinfo is UTC


def test_utc_datetime_refuses_naive_values() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        UtcDateTime().process_bind_param(datetime(2026, 1, 1), sqlite.dialect())
