"""Purpose policy: which cue kinds a meeting may produce and show (docs/policy.md).

The EU AI Act, Art. 5(1)(f) (applies since 2 Feb 2025), prohibits inferring the
emotions of people at the workplace or in education, except for medical or
safety reasons. A meeting declares its ``context``; for ``workplace`` and
``education`` MicroCue infers no emotion, sentiment or micro-expression cues,
only presence, attention, engagement and speaking. An operator outside that
law's reach may lift this with ``MICROCUE_POLICY=unrestricted``; that choice is
logged (once per process) and shown on every dashboard and report.

Every path decides with ``for_meeting(context, stored_policy, settings)``: the stricter of the
policy stored with the meeting when it was created and the one in force now. The live
analysis, the store writer (which drops withheld cue kinds, whoever published them), the
dashboard, the join page, reports, ``microcue join`` and ``microcue analyze`` therefore never
disagree: a meeting created under the default never gains emotion cues because the operator
later switched to ``unrestricted``, and one created unrestricted loses them when the operator
switches back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bridge.config import Settings
from bridge.store.tables import MEETING_CONTEXTS
from inference.cues import CUE_TYPES, EMOTION_CUE_TYPES

log = logging.getLogger("microcue.policy")

#: Contexts where emotion inference is prohibited by default (AI Act Art. 5(1)(f)).
RESTRICTED_CONTEXTS: frozenset[str] = frozenset({"workplace", "education"})
#: Settings value that lifts the restriction.
UNRESTRICTED = "unrestricted"

#: Shown to presenters and participants when a restricted meeting runs under the default policy.
RESTRICTED_NOTICE = (
    "This is {article} {context} meeting: MicroCue does not infer emotions here "
    "(EU AI Act, Art. 5(1)(f)). Only presence, attention, engagement and speaking are shown."
)
#: Shown when the operator lifted the restriction for a context where it would apply.
OVERRIDE_NOTICE = (
    "Operator override (MICROCUE_POLICY=unrestricted): emotion signals are inferred in this "
    "{context} meeting, where EU law would prohibit it."
)

#: Contexts already warned about: the override is logged once per process, not per cue or meeting.
_warned_contexts: set[str] = set()


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """What one meeting may infer, and the sentence to show people about it."""

    context: str
    policy: str
    emotions_allowed: bool
    allowed_cue_types: frozenset[str]
    #: True when ``unrestricted`` is what allows emotions in a restricted context.
    overridden: bool
    notice: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "policy": self.policy,
            "emotions_allowed": self.emotions_allowed,
            "allowed_cue_types": sorted(self.allowed_cue_types),
            "overridden": self.overridden,
            "notice": self.notice,
        }


def _check_context(context: str) -> None:
    if context not in MEETING_CONTEXTS:
        raise ValueError(f"meeting context must be one of {list(MEETING_CONTEXTS)}, got {context!r}")


def _warn_override_once(context: str) -> None:
    if not _warned_contexts:
        _warned_contexts.add(context)
        log.warning(
            "MICROCUE_POLICY=unrestricted: inferring emotions in a %s meeting, which EU AI Act "
            "Art. 5(1)(f) prohibits; this is shown on the dashboard and in every report",
            context,
        )


def emotions_allowed(context: str, settings: Settings) -> bool:
    """May a meeting of this context infer emotion, sentiment and micro-expressions?"""
    _check_context(context)
    if context not in RESTRICTED_CONTEXTS:
        return True
    if settings.policy == UNRESTRICTED:
        _warn_override_once(context)
        return True
    return False


def allowed_cue_types(context: str, settings: Settings) -> frozenset[str]:
    """The cue kinds a meeting of this context may produce and show."""
    if emotions_allowed(context, settings):
        return CUE_TYPES
    return CUE_TYPES - EMOTION_CUE_TYPES


def decide(context: str, settings: Settings) -> PolicyDecision:
    """The full decision for one meeting, with the notice a dashboard shows."""
    allowed = emotions_allowed(context, settings)
    restricted = context in RESTRICTED_CONTEXTS
    overridden = restricted and allowed
    if overridden:
        notice = OVERRIDE_NOTICE.format(context=context)
    elif restricted:
        notice = RESTRICTED_NOTICE.format(article="an" if context[0] in "aeiou" else "a", context=context)
    else:
        notice = ""
    return PolicyDecision(
        context=context,
        policy=settings.policy,
        emotions_allowed=allowed,
        allowed_cue_types=CUE_TYPES if allowed else CUE_TYPES - EMOTION_CUE_TYPES,
        overridden=overridden,
        notice=notice,
    )


def effective_policy(stored_policy: str | None, settings: Settings) -> str:
    """``unrestricted`` only when both the meeting's stored policy and today's setting say so."""
    if stored_policy is None:  # no meeting row (a file, a CLI bot): today's setting alone
        return settings.policy
    return UNRESTRICTED if stored_policy == settings.policy == UNRESTRICTED else "default"


def for_meeting(context: str, stored_policy: str | None, settings: Settings) -> PolicyDecision:
    """The one decision for a meeting, on every path: the stricter of stored and current policy."""
    effective = effective_policy(stored_policy, settings)
    if effective != settings.policy:
        settings = settings.model_copy(update={"policy": effective})
    return decide(context, settings)
