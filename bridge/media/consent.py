"""ICE consent freshness that a busy peer does not lose (RFC 7675), for every aioice connection.

aioice checks consent every ~5 s with a single STUN request that must be answered within 0.5 s,
and closes the connection after six unanswered checks in a row. RFC 7675 section 5.1 asks
for less: consent expires when *no* response has arrived for 30 s, and a check is an ordinary
STUN transaction, retransmitted. On a loaded 2-core bridge with three Chromium participants,
Chromium's answers were seen arriving 0.6-2.9 s after the request: every check "failed", and
about 34 s after connecting a participant's publishing connection was closed by the bridge
while the page was still sending (tests/e2e/test_builtin_browsers.py, docs/rooms.md). Here a
check is retransmitted (answers to any copy count), and consent expires only after 30 s
without an answer, so a vanished peer is still dropped after ~30-40 s, as before.

aioice has no setting for this, so ``install()`` replaces ``aioice.ice.Connection.query_consent``
once per process (``bridge.media.peers`` calls it on import). It uses aioice's own
``build_request`` and ``CandidatePair.protocol.request``; ``tests/unit/test_consent.py`` fails
if a new aioice renames them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from aioice import ice, stun

log = logging.getLogger("microcue.consent")

#: RFC 7675 section 5.1: consent expires 30 s after the last answered check.
CONSENT_TIMEOUT_S = 30.0
#: RFC 7675 section 5.1: checks every 5 s, randomised to 0.8-1.2 times that (aioice's too).
CONSENT_INTERVAL_S = 5.0
#: Retransmissions of one check (RFC 8489 7.2.1: RTO 0.5 s, doubling): copies at 0, 0.5, 1.5
#: and 3.5 s, given up at 7.5 s; an answer to any copy counts.
CONSENT_RETRANSMISSIONS = 3


async def query_consent(connection: ice.Connection) -> None:
    """Replacement for ``aioice.ice.Connection.query_consent`` (RFC 7675, see the module doc)."""
    if connection.remote_password is None:
        raise RuntimeError("consent checks need the remote ICE password (connect() first)")
    key = connection.remote_password.encode("utf8")
    answered = time.monotonic()
    while True:
        await asyncio.sleep(CONSENT_INTERVAL_S * (0.8 + 0.4 * random.random()))
        for pair in list(connection._nominated.values()):
            request = connection.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(
                    request, pair.remote_addr, integrity_key=key, retransmissions=CONSENT_RETRANSMISSIONS
                )
                answered = time.monotonic()
            except stun.TransactionError:
                pass
        silent = time.monotonic() - answered
        if silent >= CONSENT_TIMEOUT_S:
            log.info("ICE consent expired: no answer to consent checks for %.0f s; closing", silent)
            connection._query_consent_task = None  # close() would cancel this very task
            await connection.close()
            return


def install() -> None:
    """Use ``query_consent`` for every aioice connection of this process (idempotent)."""
    ice.Connection.query_consent = query_consent  # type: ignore[method-assign, assignment]
