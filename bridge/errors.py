"""Errors the service reports to a person: each message says what went wrong and the fix."""

from __future__ import annotations


class MicroCueError(Exception):
    """Expected failure; the CLI prints its message (no traceback) and exits non-zero."""

    exit_code = 1


class UsageError(MicroCueError):
    exit_code = 2


class NotBuiltYet(MicroCueError):
    """A subcommand whose feature has not landed; better a clear line than a stub that lies."""

    exit_code = 3
