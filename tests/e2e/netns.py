"""Run a WebRTC test inside a fresh network namespace (``bridge/demo/netns-run.sh``).

A test asks for the ``netns`` fixture. Outside a namespace, the plugin hook below
does not run the test in this process: it re-executes pytest on that one test
under the wrapper and reports the child's outcome (pass, fail with its output, or
skip with its reason) as this test's. Inside, ``netns`` is the namespace address
that peers, Janus and the bridge bind to. No fixture of the test is set up in the
outer process, so servers (Janus) only ever start inside the namespace. Where no
namespace can be made, the test is skipped, or fails under
``MICROCUE_REQUIRE_SERVICES=1`` (CI), like the other real-server tests.

Activated from ``tests/integration/conftest.py`` and ``tests/e2e/conftest.py``
(conftest hooks apply to the tests under their directory).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _pytest.reports import TestReport

from bridge.demo.netns import netns_address, netns_command, netns_usable
from tests.services import services_required
from tests.support.sessions import run_own_session

REPO = Path(__file__).resolve().parents[2]
#: The child pytest's own limit comes from the test's timeout marker / ini; this is the outer
#: backstop for a child that hangs where pytest-timeout cannot act (a teardown waiting on a stuck
#: thread, a process stopped with the GIL held).
OUTER_TIMEOUT_S = 600
FIXTURE = "netns"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the outer process, a test run in the namespace has no pytest-timeout alarm of its own:
    the alarm would fire inside ``pytest_runtest_protocol`` below, outside any test phase, and
    end the whole session with an INTERNALERROR (CI, stop 29). The child enforces the test's
    limit; ``OUTER_TIMEOUT_S`` ends a child that cannot."""
    if netns_address() is not None:
        return
    for item in items:
        if FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(0))


@pytest.fixture
def netns() -> str:
    """The namespace's address (10.254.0.1); only ever set up inside the namespace."""
    addr = netns_address()
    if addr is None:  # pragma: no cover - the hook re-executes such tests before setup
        pytest.fail("the netns fixture ran outside a network namespace")
    return addr


def _child_outcome(junit: Path, proc: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """(outcome, text) of the single test the child ran, from its JUnit XML."""
    output = (proc.stdout or "") + (proc.stderr or "")
    try:
        case = ET.parse(junit).getroot().find(".//testcase")
    except (ET.ParseError, FileNotFoundError):
        case = None
    if case is None:
        return "failed", f"child pytest in the namespace exited {proc.returncode} without a result:\n{output}"
    for tag in ("failure", "error"):
        bad = case.find(tag)
        if bad is not None:
            return "failed", f"{bad.get('message', '')}\n{bad.text or ''}\n--- child output ---\n{output}"
    skipped = case.find("skipped")
    if skipped is not None:
        return "skipped", skipped.get("message", "skipped in the namespace")
    if proc.returncode != 0:
        return "failed", f"child pytest exited {proc.returncode}:\n{output}"
    return "passed", output


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    if FIXTURE not in getattr(item, "fixturenames", ()) or netns_address() is not None:
        return None
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    start = time.time()
    problem = netns_usable()
    if problem is not None:
        outcome, text = ("failed" if services_required() else "skipped"), problem
    else:
        with tempfile.TemporaryDirectory(prefix="microcue-netns-") as tmp:
            junit = Path(tmp) / "junit.xml"
            argv = [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-x",
                f"--junitxml={junit}",
                "-o",
                "junit_logging=all",
                item.nodeid,
            ]
            # its own session: a hung child is killed with what it started (Janus, chromium)
            proc, hung = run_own_session(
                netns_command(argv), cwd=REPO, timeout_s=OUTER_TIMEOUT_S, env=os.environ.copy()
            )
            if hung:
                outcome = "failed"
                hang = f"child pytest in the namespace hung past {OUTER_TIMEOUT_S} s"
                text = f"{hang}; its output:\n{proc.stdout}{proc.stderr}"
            else:
                outcome, text = _child_outcome(junit, proc)
    stop = time.time()
    keywords = {k: 1 for k in item.keywords}
    if outcome == "skipped":  # pytest reports a skip in the setup phase; keep that shape for -rs
        phases = [("setup", "skipped", (str(item.path), item.location[1] or 0, f"Skipped: {text}"))]
    else:
        phases = [("setup", "passed", None), ("call", outcome, text if outcome == "failed" else None)]
    for when, rep_outcome, longrepr in phases:
        sections = [("netns child", text)] if when == "call" and outcome == "passed" else []
        rep = TestReport(
            item.nodeid,
            item.location,
            keywords,
            rep_outcome,
            longrepr,
            when,
            sections=sections,
            duration=stop - start if when == "call" else 0.0,
            start=start,
            stop=stop,
        )
        ihook.pytest_runtest_logreport(report=rep)
    # Tear down what the next test no longer needs (module/session fixtures of earlier tests in
    # this process): the part of pytest's teardown phase that is not about this test.
    try:
        item.session._setupstate.teardown_exact(nextitem)
        teardown: tuple[str, object] = ("passed", None)
    except Exception as exc:
        teardown = ("failed", f"teardown of earlier fixtures failed: {exc!r}")
    ihook.pytest_runtest_logreport(
        report=TestReport(item.nodeid, item.location, keywords, teardown[0], teardown[1], "teardown")
    )
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
