"""Hypothesis fuzzing of what strangers send: SDP offers, signalling messages, MQTT cue payloads.

Every input either passes or is refused with the one error type its caller turns into a clear
message for the sender (SignalError, OverflowError, MalformedCueError); nothing else escapes.
Case counts are printed in the "MicroCue measurements" summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.bus.mqtt import MalformedCueError, _parse_message, cue_topic
from bridge.rooms.builtin import MAX_MEDIA_SECTIONS, SignalError, check_offer
from web.ws.signal import _parse

pytestmark = [pytest.mark.unit, pytest.mark.timeout(300)]

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DIRECTIONS = ["sendrecv", "sendonly", "recvonly", "inactive"]


def _section(kind: str, mid: int, direction: str) -> str:
    pt = "96" if kind == "video" else "111"
    codec = "VP8/90000" if kind == "video" else "opus/48000/2"
    return (
        f"m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\na={direction}\r\n"
        f"a=rtpmap:{pt} {codec}\r\na=rtcp-mux\r\n"
    )


@st.composite
def offers(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]], bool]:
    """Structurally valid SDP with a random number of sections, directions and BUNDLE."""
    sections = draw(
        st.lists(
            st.tuples(st.sampled_from(["video", "audio"]), st.sampled_from(DIRECTIONS)),
            min_size=1,
            max_size=MAX_MEDIA_SECTIONS + 4,
        )
    )
    bundled = draw(st.booleans())
    head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    if bundled:
        head += "a=group:BUNDLE " + " ".join(str(i) for i in range(len(sections))) + "\r\n"
    body = "".join(_section(kind, i, d) for i, (kind, d) in enumerate(sections))
    return head + body, sections, bundled


class Counter:
    def __init__(self) -> None:
        self.cases = 0
        self.refused = 0


@pytest.fixture
def counted(report: Callable[[str], None], request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    counter = Counter()
    yield counter
    report(f"fuzz {request.node.name}: {counter.cases} cases, {counter.refused} refused with a clear error")


def test_fuzz_structured_offers_follow_the_limits(counted: Counter) -> None:
    @FUZZ
    @given(offers())
    def run(case: tuple[str, list[tuple[str, str]], bool]) -> None:
        sdp, sections, bundled = case
        counted.cases += 1
        sending = [k for k, d in sections if d in ("sendrecv", "sendonly")]
        has_video = any(k == "video" for k, _ in sections)
        ok = (
            has_video
            and bundled
            and len(sections) <= MAX_MEDIA_SECTIONS
            and len(sending) <= 2
            and len(set(sending)) == len(sending)
        )
        try:
            check_offer(sdp)
        except SignalError as exc:
            counted.refused += 1
            assert not ok, f"a valid offer was refused: {exc}"
            assert str(exc)
            return
        assert ok, "an offer over the limits was accepted"

    run()


def test_fuzz_arbitrary_offer_text_never_crashes(counted: Counter) -> None:
    lines = st.lists(
        st.one_of(
            st.sampled_from(
                [
                    "v=0",
                    "m=video 9 UDP/TLS/RTP/SAVPF 96",
                    "m=audio 9 RTP/AVP 0",
                    "a=group:BUNDLE 0",
                    "a=mid:0",
                    "a=sendrecv",
                    "a=rtpmap:96 VP8/90000",
                    "c=IN IP4 0.0.0.0",
                    "a=ssrc:1 cname:x",
                    "a=candidate:1 1 udp 1 10.0.0.1 9 typ host",
                    "a=fingerprint:sha-256 AA",
                    "t=0 0",
                ]
            ),
            st.text(max_size=40),
        ),
        max_size=30,
    )

    @FUZZ
    @given(st.one_of(lines.map("\r\n".join), st.text(max_size=500), st.none(), st.integers(), st.binary()))
    def run(sdp: object) -> None:
        counted.cases += 1
        try:
            check_offer(sdp)
        except SignalError as exc:
            counted.refused += 1
            assert str(exc)

    run()


def test_fuzz_signalling_messages(counted: Counter) -> None:
    json_values = st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=12,
    )
    messages = st.one_of(
        st.text(max_size=300),
        json_values.map(json.dumps),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["join", "offer", "x", ""])},
            optional={"sdp": json_values, "name": json_values, "consent": json_values},
        ).map(json.dumps),
    )

    @FUZZ
    @given(messages)
    def run(text: str) -> None:
        counted.cases += 1
        try:
            msg = _parse(text)
        except (SignalError, OverflowError) as exc:
            counted.refused += 1
            assert str(exc)
            return
        assert isinstance(msg, dict) and isinstance(msg["type"], str)

    run()


def test_fuzz_mqtt_cue_payloads(counted: Counter) -> None:
    fields = st.fixed_dictionaries(
        {
            "type": st.sampled_from(["engagement", "micro_expression", "sentiment", "nope", 3]),
            "t": st.one_of(st.floats(), st.integers(), st.text(max_size=3)),
        },
        optional={
            "meeting_id": st.one_of(st.just("m1"), st.text(max_size=5), st.integers()),
            "participant_id": st.one_of(st.text(max_size=5), st.integers(), st.none()),
            "seq": st.one_of(st.integers(), st.floats(), st.text(max_size=3)),
            "value": st.one_of(st.floats(), st.text(max_size=3), st.none()),
            "onset_s": st.floats(),
            "apex_s": st.floats(),
            "offset_s": st.floats(),
            "emotion": st.text(max_size=8),
            "aus": st.lists(st.text(max_size=4), max_size=3),
            "extra": st.integers(),
        },
    )
    valid = st.builds(
        lambda t, pid, seq, v: {
            "type": "engagement",
            "t": t,
            "meeting_id": "m1",
            "participant_id": pid,
            "seq": seq,
            "value": v,
        },
        st.floats(0, 1e6),
        st.text(max_size=8),
        st.integers(0, 2**31),
        st.floats(0, 1),
    )
    payloads = st.one_of(
        st.binary(max_size=300),
        fields.map(lambda d: json.dumps(d).encode()),
        valid.map(lambda d: json.dumps(d).encode()),
        st.text(max_size=100).map(str.encode),
    )
    topics = st.one_of(st.just(cue_topic("m1")), st.text(max_size=40))

    @FUZZ
    @given(topics, payloads)
    def run(topic: str, payload: bytes) -> None:
        counted.cases += 1
        try:
            cue = _parse_message(topic, payload)
        except MalformedCueError as exc:
            counted.refused += 1
            assert str(exc)
            return
        assert cue.meeting_id == "m1"

    run()
