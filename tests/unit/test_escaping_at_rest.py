"""Escaping of people's text in reports (CSV formulas, chart mathtext) and the SQLite file at rest."""

from __future__ import annotations

import csv
import io
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from bridge.config import Settings
from bridge.insights.reports import charts, exports
from bridge.insights.reports.exports import neutralise_cell, render_csv
from bridge.store.db import create_engine

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

FORMULAS = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\r=1"]


@pytest.mark.parametrize("cell", FORMULAS)
def test_formula_cells_are_neutralised(cell: str) -> None:
    assert neutralise_cell(cell) == "'" + cell


def test_numbers_and_plain_text_are_kept() -> None:
    assert neutralise_cell(-0.25) == -0.25
    assert neutralise_cell("Ada") == "Ada"


def test_report_csv_has_no_formula_cell(monkeypatch: pytest.MonkeyPatch) -> None:

    def rows(_data: object):  # the report's rows, with people's text where names go
        yield exports._row("participant", "=cmd|' /C calc'!A0", -0.5, detail="@SUM(A1)")
        yield exports._row("tip", "+talk less", 1, detail="\t=1")

    monkeypatch.setattr(exports, "rows", rows)
    parsed = list(csv.reader(io.StringIO(render_csv({}))))
    cells = [cell for row in parsed[1:] for cell in row]
    assert "-0.5" in cells  # numbers stay numbers
    for cell in cells:
        assert cell == "-0.5" or not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


@pytest.mark.parametrize("name", ["$\\frac{$", "$x^$", "a $ b $ c", "\\$\\mathbf{"])
def test_chart_labels_are_not_parsed_as_math(name: str) -> None:
    svg = charts.bars([name, "Bob"], [0.5, 0.7])
    assert svg.startswith("<svg")
    svg = charts.timeline([0.0, 1.0], {name: ([0.2, 0.4], charts.ENGAGEMENT)}, ylabel=name)
    assert svg.startswith("<svg")


async def test_sqlite_file_is_private_and_erases_for_real(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a typical umask: files 0644 unless we say otherwise
    try:
        engine = create_engine(Settings(data_dir=tmp_path / "d", database_url=""))
        try:
            async with engine.connect() as conn:
                assert await conn.scalar(text("PRAGMA secure_delete")) == 1
                await conn.execute(text("CREATE TABLE t (x TEXT)"))
                await conn.execute(text("INSERT INTO t VALUES ('secret-display-name')"))
                await conn.commit()
                await conn.execute(text("DELETE FROM t"))
                await conn.commit()
                await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        finally:
            await engine.dispose()
    finally:
        os.umask(old)
    db = tmp_path / "d" / "microcue.db"
    for path in [db, *db.parent.glob("microcue.db-*")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert b"secret-display-name" not in db.read_bytes()
