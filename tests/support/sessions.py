"""A child process in a session of its own, killed with everything it started if it hangs.

Used where a test must outlive a hang it is checking for: a process stopped with the GIL held
cannot be timed out from inside, and a half-forked child or a chromium it started would outlive a
plain ``kill`` of the parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def run_own_session(
    argv: list[str], *, cwd: Path, timeout_s: float, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], bool]:
    """``(the finished process, hung)``; a child still running at ``timeout_s`` is killed with its
    whole process group (SIGKILL), and what it wrote until then is returned all the same."""
    child = subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        out, err = child.communicate(timeout=timeout_s)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        hung = True
    return subprocess.CompletedProcess(child.args, child.returncode, out, err), hung
