"""The process's analysis resources (bridge.media.analysis): loaded once and shared by every
meeting's context, models left out stay out (``microcue join --no-gaze``, ``--no-voice``,
a purpose without emotion cues), and a meeting's purpose decision reaches its analyzers."""

from __future__ import annotations

import pytest

from bridge.bus import InProcessBus
from bridge.config import Settings
from bridge.media.analysis import Analysis
from inference.analyzer import ParticipantAnalyzer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_models_load_once_and_every_meeting_shares_them() -> None:
    analysis = Analysis(Settings(), processes=0)
    bus = InProcessBus()
    try:
        allowed = await analysis.context("m-1", bus=bus, emotions_allowed=True, consent=False)
        withheld = await analysis.context("m-2", bus=bus, emotions_allowed=False, consent=True)
        models, vad = await analysis.load()
        assert (await analysis.load())[0] is models  # loaded once, whoever asks
        assert vad is not None and allowed.vad is vad and withheld.vad is vad
        first = allowed.analyzer_factory()
        assert isinstance(first, ParticipantAnalyzer)
        assert (allowed.meeting_id, allowed.consent, withheld.consent) == ("m-1", False, True)
        assert first.cnn is not None and first.tracker.iris is not None
        second = withheld.analyzer_factory()
        assert isinstance(second, ParticipantAnalyzer) and first is not second  # one analyzer per participant
        assert second.cnn is None and not second.emotions_allowed  # the meeting's purpose withholds emotions
        assert analysis.pool is None
    finally:
        await analysis.aclose()


async def test_models_left_out_stay_out_whatever_the_meeting_allows() -> None:
    analysis = Analysis(Settings(), gaze=False, emotion=False, voice=False, processes=0)
    try:
        ctx = await analysis.context("m", bus=InProcessBus(), emotions_allowed=True, consent=True)
        analyzer = ctx.analyzer_factory()
        assert isinstance(analyzer, ParticipantAnalyzer)
        assert ctx.vad is None
        assert analyzer.tracker.iris is None
        assert analyzer.cnn is None and not analyzer.emotions_allowed
    finally:
        await analysis.aclose()
