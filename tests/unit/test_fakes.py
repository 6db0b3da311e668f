"""The fakes in tests/support/fakes/ still are what they stand in for, where Python can check it
at run time (runtime-checkable protocols, base classes, track kinds); mypy checks the rest."""

from __future__ import annotations

import pytest

from bridge.bus import InProcessBus, Subscription
from bridge.rooms import AdapterContext, MeetingAdapter
from tests.support.fakes.adapters import FakeMeeting
from tests.support.fakes.analyzers import FakeAnalyzer
from tests.support.fakes.bus import FakeSubscription
from tests.support.fakes.tracks import FakeCamera, FakeMic

pytestmark = pytest.mark.unit


def test_the_fake_subscription_is_a_subscription() -> None:
    assert isinstance(FakeSubscription(), Subscription)


async def test_the_fake_meeting_is_a_concrete_meeting_adapter() -> None:
    ctx = AdapterContext(meeting_id="m", bus=InProcessBus(), analyzer_factory=FakeAnalyzer)
    # an abstract method of MeetingAdapter left unwritten would make this a TypeError
    assert isinstance(FakeMeeting(ctx), MeetingAdapter)


async def test_the_fake_tracks_say_their_kind() -> None:
    # aiortc routes a track by its kind: a camera must say video, a microphone audio
    assert FakeCamera().kind == "video"
    assert FakeMic().kind == "audio"
