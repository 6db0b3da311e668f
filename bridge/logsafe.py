"""Log lines that carry no credential and cannot be forged: one filter for every handler.

Tokens travel in URLs (``?token=``; browsers cannot put headers on a websocket) and in
``Authorization`` headers, and uvicorn's access log prints every request's path and query.
Anyone who can read the log could then watch and erase meetings. ``install()`` puts
``RedactingFilter`` on the handlers of the root and uvicorn loggers, so every record is
redacted whichever logger it came from (a filter on a logger would miss propagated records).

The same filter escapes control characters in logged values: a display name with a newline
would otherwise start a forged log line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

#: What replaces a secret in a log line.
REDACTED = "[redacted]"
#: ``token=...``, ``api_key=...`` in query strings and URLs (any case, encoded or not).
_QUERY_SECRET = re.compile(r"(?i)\b((?:token|ticket|api[_-]?key|access_token)=)[^&\s\"'#]+")
#: ``Bearer <secret>`` wherever a header value is logged.
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
#: C0 controls and DEL, except none: a log record is one line; tracebacks go through exc_info.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Loggers whose handlers get the filter: root (the app's own log) and uvicorn's.
LOGGERS: tuple[str, ...] = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


def redact(text: str) -> str:
    """``text`` without secrets and with control characters shown as ``\\xNN``."""
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _clean(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactingFilter(logging.Filter):
    """Redacts the message and its string arguments in place; never drops a record.

    Arguments stay arguments (uvicorn's access formatter reads them by position), only their
    text changes; numbers are left as they are so ``%d`` still works.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean(v) for k, v in record.args.items()}
        return True


_FILTER = RedactingFilter()


def install(loggers: Iterable[str] = LOGGERS) -> None:
    """Adds the filter to every handler of ``loggers`` (idempotent); call after logging is set up."""
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
