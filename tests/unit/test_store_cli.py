"""``microcue db`` and ``microcue purge`` through the real dispatcher (bridge.cli.main).

Only these two subcommands are registered here, so the test depends on the
dispatcher and on them, not on every other command's imports.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge import cli

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

#: ``microcue(*argv) -> (exit code, stdout, stderr)``
Microcue = Callable[..., tuple[int, str, str]]


def closed_port() -> int:
    """A local port nobody listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def microcue(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Microcue:
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("db", "purge"))
    for key in [k for k in os.environ if k.startswith("MICROCUE_")]:
        monkeypatch.delenv(key)

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["--data-dir", str(tmp_path / "data"), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_db_upgrade_current_downgrade(microcue: Microcue, tmp_path: Path) -> None:
    code, out, _ = microcue("db", "current")
    assert code == 0 and "at revision none (empty database), head is 0004" in out
    code, out, _ = microcue("db", "upgrade")
    assert code == 0 and out.strip().endswith("at revision 0004")
    assert (tmp_path / "data" / "microcue.db").is_file()  # --data-dir is MICROCUE_DATA_DIR
    code, out, _ = microcue("db", "current")
    assert code == 0 and "(up to date)" in out
    code, out, _ = microcue("db", "downgrade", "base")
    assert code == 0 and "at revision none" in out


def test_purge_prints_what_it_removed(microcue: Microcue) -> None:
    code, _, err = microcue("purge", "--older-than", "30d")
    assert code == 1 and "run 'microcue db upgrade'" in err and "Traceback" not in err
    assert microcue("db", "upgrade")[0] == 0
    code, out, _ = microcue("purge", "--older-than", "30d")
    assert (code, out) == (0, "purge older than 30d: removed 0 meeting(s)\n")


def test_bad_duration_is_a_usage_error(microcue: Microcue) -> None:
    with pytest.raises(SystemExit) as exit_info:
        microcue("purge", "--older-than", "30 days")
    assert exit_info.value.code == 2


def test_unreachable_database_is_one_clear_line(microcue: Microcue) -> None:
    port = closed_port()
    code, out, err = microcue("--database-url", f"postgresql://u:secret@127.0.0.1:{port}/x", "db", "current")
    assert code == 1 and out == ""
    assert f"cannot use the database at postgresql+asyncpg://u:***@127.0.0.1:{port}/x" in err
    assert "secret" not in err and "Traceback" not in err
