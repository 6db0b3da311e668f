"""Purpose policy: no emotion inference for workplace/education unless the operator lifts it."""

from __future__ import annotations

import logging

import pytest

from bridge import policy
from bridge.config import Settings
from bridge.store.tables import MEETING_CONTEXTS
from inference.cues import CUE_TYPES, EMOTION_CUE_TYPES

pytestmark = pytest.mark.unit

DEFAULT = Settings(policy="default")
UNRESTRICTED = Settings(policy="unrestricted")


@pytest.mark.parametrize("context", MEETING_CONTEXTS)
def test_default_policy_withholds_emotions_only_in_restricted_contexts(context: str) -> None:
    restricted = context in ("workplace", "education")
    assert policy.emotions_allowed(context, DEFAULT) is not restricted
    allowed = policy.allowed_cue_types(context, DEFAULT)
    if restricted:
        assert allowed == CUE_TYPES - EMOTION_CUE_TYPES
        assert not allowed & EMOTION_CUE_TYPES
        assert {"presence", "attention", "engagement", "speaking"} <= allowed
    else:
        assert allowed == CUE_TYPES


@pytest.mark.parametrize("context", ["workplace", "education"])
def test_decision_explains_the_restriction(context: str) -> None:
    decision = policy.decide(context, DEFAULT)
    assert not decision.emotions_allowed and not decision.overridden
    assert "Art. 5(1)(f)" in decision.notice and context in decision.notice
    as_dict = decision.to_dict()
    assert as_dict["emotions_allowed"] is False
    assert "micro_expression" not in as_dict["allowed_cue_types"]


def test_unrestricted_lifts_it_logs_once_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    policy._warned_contexts.clear()
    with caplog.at_level(logging.WARNING, logger="microcue.policy"):
        for _ in range(5):
            assert policy.emotions_allowed("workplace", UNRESTRICTED)
            assert policy.emotions_allowed("education", UNRESTRICTED)
    warnings = [r for r in caplog.records if "unrestricted" in r.getMessage()]
    assert len(warnings) == 1
    decision = policy.decide("education", UNRESTRICTED)
    assert decision.overridden and decision.emotions_allowed
    assert "override" in decision.notice.lower()
    assert policy.allowed_cue_types("workplace", UNRESTRICTED) == CUE_TYPES


def test_unrestricted_changes_nothing_where_no_restriction_applies() -> None:
    decision = policy.decide("customer", UNRESTRICTED)
    assert decision.emotions_allowed and not decision.overridden and decision.notice == ""


def test_unknown_context_is_refused() -> None:
    with pytest.raises(ValueError, match="context must be one of"):
        policy.emotions_allowed("party", DEFAULT)
