"""Participants join, resume and leave through MeetingService (the signalling socket, WHIP and the
bots all record them there): the resume secret is kept only hashed, opens only its own
participant, and survives a rejoin without a new one."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import Settings
from bridge.service import running_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_participants_join_resume_and_leave(tmp_path: Path) -> None:
    async with running_service(Settings(data_dir=tmp_path, database_url="")) as service:
        meeting_id = (await service.create_meeting(title="people", context="customer")).meeting.id
        ada = await service.join_participant(
            meeting_id, "p1", display_name="Ada", consent=True, role="rep", resume_secret="s3cret"
        )
        assert ada.resume_hash is not None and "s3cret" not in ada.resume_hash
        await service.join_participant(meeting_id, "p2", display_name="Bo", consent=False)

        assert await service.resume_allowed(meeting_id, "p1", "s3cret")
        assert not await service.resume_allowed(meeting_id, "p1", "wrong")
        assert not await service.resume_allowed(meeting_id, "p2", "s3cret")  # never given a secret
        assert not await service.resume_allowed(meeting_id, "p9", "s3cret")  # no such participant

        await service.leave_participant(meeting_id, "p1")
        people = {p.id: p for p in await service.participants(meeting_id)}
        assert people["p1"].left_at is not None and people["p2"].left_at is None
        assert (people["p1"].role, people["p2"].role) == ("rep", "participant")

        await service.join_participant(meeting_id, "p1", display_name="Ada L.", consent=False, role="rep")
        people = {p.id: p for p in await service.participants(meeting_id)}
        assert people["p1"].left_at is None and not people["p1"].consent and people["p1"].display_name == "Ada L."
        assert await service.resume_allowed(meeting_id, "p1", "s3cret")  # a rejoin without a new secret keeps it
