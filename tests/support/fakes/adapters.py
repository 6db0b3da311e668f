"""A ``bridge.rooms.MeetingAdapter`` that joins no real meeting, for tests of what runs meetings
(the cluster worker's capacity, leases and hand-overs) rather than of one meeting's media."""

from __future__ import annotations

import asyncio

from bridge.rooms import AdapterContext, MeetingAdapter


class FakeMeeting(MeetingAdapter):
    """A stand-in for a Janus bot: holds ``people`` participants (``p0``, ``p1``, ...) until closed."""

    kind = "test"

    def __init__(self, ctx: AdapterContext, people: int = 1) -> None:
        super().__init__(ctx)
        self.people = people
        self.closed = asyncio.Event()

    async def run(self) -> None:
        for i in range(self.people):
            self.participant(f"p{i}")
        await self.closed.wait()

    async def aclose(self) -> None:
        self.closed.set()
        self.participants.clear()


def _check(ctx: AdapterContext) -> MeetingAdapter:
    """mypy: the fake is concrete (every abstract method written) and is a MeetingAdapter."""
    return FakeMeeting(ctx)
