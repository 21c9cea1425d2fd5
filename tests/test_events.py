"""Typed feed events: every kind round-trips through its JSON form, the wire shape is the one
SSE, /status and alert webhooks always had, and readers work from fields."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import ClassVar

import pytest

from blockfeed.errors import ChainDiverged
from blockfeed.events import EVENT_TYPES
from blockfeed.feed.logs import FeedLog
from blockfeed.gateway.alerts import Alert, AlertDispatcher, alert_kind, describe, parse_webhook
from blockfeed.types import (
    BlockTimeChanged,
    Diverged,
    EndpointQuarantined,
    FeedEvent,
    FinalityResumed,
    FinalityStalled,
    Mode,
    ModeChanged,
    Reconnect,
    RuntimeUpgraded,
    SinkWrongChain,
    TriggerFailed,
    Unavailable,
    VerificationFailed,
)

H1, H2 = "0x" + "11" * 32, "0x" + "22" * 32

SAMPLES: list[FeedEvent] = [
    ModeChanged(at=1.5, reason="socket closed: code 1006", endpoint="wss://a.example/***",
                old_mode=Mode.STREAMING, new_mode=Mode.POLLING),
    FinalityStalled(at=2.0, reason="no finality for 72 s", mode=Mode.STREAMING),
    FinalityResumed(at=3.0, reason="block #9 finalized", mode=Mode.POLLING),
    FinalityStalled(at=2.5, reason="no mode known"),
    EndpointQuarantined(at=4.0, reason="lied", endpoint="a", for_s=300.0, others_usable=1),
    Reconnect(at=5.0, reason="socket attempt 2 after 1.0 s", endpoint="a", attempt=2),
    BlockTimeChanged(at=6.0, reason="block time 0.5s (was 12s; observed)", block_time_s=0.5,
                     previous_s=12.0),
    VerificationFailed(at=7.0, reason="parent mismatch", endpoint="b", number=10, hash=H1,
                       source="poll"),
    VerificationFailed(at=7.1, reason="does not extend the checkpoint #9", endpoint="a",
                       number=10, hash=H1, source="ws", checkpoint=9,
                       endpoints_disagreeing=("a", "b")),
    VerificationFailed(at=7.2, reason="endpoints disagree", number=10, votes={"a": H1, "b": H2}),
    VerificationFailed(at=7.3, reason="contents of #10..#12", endpoint="a", contents=True,
                       first=10, last=12),
    VerificationFailed(at=7.4, reason="lied about #10", endpoint="a"),
    Unavailable(at=8.0, reason="block #5 is below a's history", endpoint="a", number=5,
                first_listed=100),
    Unavailable(at=8.1, reason="block #5 is below a's history", endpoint="a", number=5),
    Diverged(at=9.0, reason="CHAIN DIVERGED: ...", endpoint="a", number=0, delivered_hash=H1,
             their_hash=H2, what="another genesis"),
    RuntimeUpgraded(at=10.0, reason="runtime upgraded at #7", number=7, hash=H1,
                    from_spec_version=218, to_spec_version=219),
    TriggerFailed(at=11.0, reason="trigger 'x' failed", name="x", epoch=3, block_number=1087,
                  late=True, attempts=5, error="RuntimeError('boom')"),
    SinkWrongChain(at=12.0, reason="stream of another chain", stream="blocks",
                   stream_genesis=H1, genesis=None, redis="redis://x.example:6379/0"),
]


def test_every_kind_has_a_sample_and_a_distinct_string() -> None:
    """The samples cover every class the library emits, and no two classes share a kind."""
    kinds = [t.kind for t in EVENT_TYPES]
    assert len(set(kinds)) == len(kinds) and all(kinds)
    assert {type(e) for e in SAMPLES} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: f"{e.kind}@{e.at}")
def test_each_event_round_trips_through_json(event: FeedEvent) -> None:
    """to_dict -> JSON text -> from_dict gives back an equal event of the same class."""
    wire = json.loads(json.dumps(event.to_dict()))
    back = FeedEvent.from_dict(wire)
    assert type(back) is type(event) and back == event
    assert wire["kind"] == event.kind == type(event).kind
    assert list(wire) == ["kind", "at", "reason", "old_mode", "new_mode", "endpoint", "details"]


def test_wire_shape_is_unchanged() -> None:
    """The JSON keeps the shape clients read: modes at the top level, the kind's fields in
    ``details`` (optional ones only when set; ``first_listed`` always)."""
    by_at = {e.at: e.to_dict() for e in SAMPLES}
    assert by_at[1.5] == {
        "kind": "mode_changed", "at": 1.5, "reason": "socket closed: code 1006",
        "old_mode": "streaming", "new_mode": "polling", "endpoint": "wss://a.example/***",
        "details": {},
    }
    assert (by_at[2.0]["old_mode"], by_at[2.0]["new_mode"]) == ("streaming", "streaming")
    assert (by_at[2.5]["old_mode"], by_at[2.5]["new_mode"]) == (None, None)
    assert by_at[7.1]["details"] == {"number": 10, "hash": H1, "source": "ws", "checkpoint": 9,
                                     "endpoints_disagreeing": ["a", "b"]}
    assert by_at[7.2]["details"] == {"number": 10, "votes": {"a": H1, "b": H2}}
    assert by_at[7.3]["details"] == {"contents": True, "first": 10, "last": 12}
    assert by_at[7.4]["details"] == {}
    assert by_at[8.1]["details"] == {"number": 5, "first_listed": None}
    assert by_at[12.0]["details"]["genesis"] is None


def test_every_details_field_is_checked_when_read() -> None:
    """Each field that travels in ``details`` has a type check for JSON input."""
    from blockfeed.events import _WIRE_CHECKS

    for event_type in EVENT_TYPES:
        for f in dataclasses.fields(event_type):
            if f.name not in ("at", "reason", "endpoint", *event_type._MODE_FIELDS):
                assert str(f.type) in _WIRE_CHECKS, (event_type.kind, f.name, f.type)


def test_kind_is_a_class_attribute_not_an_argument() -> None:
    """``kind`` cannot be passed or changed per instance, and events are frozen."""
    with pytest.raises(TypeError):
        ModeChanged(kind="other", at=0.0, reason="r",  # type: ignore[call-arg]
                    old_mode=Mode.STARTING, new_mode=Mode.STREAMING)
    event = Reconnect(at=0.0, reason="r", attempt=1)
    assert "kind" not in {f.name for f in dataclasses.fields(event)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.attempt = 2  # type: ignore[misc]
    assert dataclasses.replace(event, at=5.0) == Reconnect(at=5.0, reason="r", attempt=1)


def test_verification_fields_are_copied_not_shared() -> None:
    """A caller's list or dict changed after the event was built does not change the event."""
    claims, votes = ["a"], {"a": H1}
    event = VerificationFailed(at=0.0, reason="r", endpoints_disagreeing=claims,  # type: ignore[arg-type]
                               votes=votes)
    claims.append("b")
    votes["b"] = H2
    assert event.endpoints_disagreeing == ("a",) and event.votes == {"a": H1}


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"kind": "nope", "at": 1.0}, "unknown event kind 'nope'"),
        ({"at": 1.0}, "unknown event kind None"),
        ([1, 2], "an event is a JSON object"),
        ({"kind": "reconnect", "at": 1.0, "details": {"attempt": 1, "x": 2}},
         "reconnect event: unknown details x"),
        ({"kind": "mode_changed", "at": 1.0, "old_mode": "polling", "new_mode": "streaming",
          "details": {"new_mode": "polling"}}, "mode_changed event: unknown details new_mode"),
        ({"kind": "reconnect", "at": 1.0, "details": {"attempt": 1, "at": 2.0}},
         "reconnect event: unknown details at"),
        ({"kind": "reconnect", "at": 1.0, "details": []},
         "reconnect event: details must be an object"),
        ({"kind": "reconnect", "details": {"attempt": 1}}, "reconnect event: 'at'"),
        ({"kind": "reconnect", "at": "soon", "details": {"attempt": 1}}, "reconnect event:"),
        ({"kind": "unavailable", "at": 1.0, "details": {}}, "unavailable event:"),
        ({"kind": "reconnect", "at": 1.0, "details": {"attempt": "2"}},
         "reconnect event: attempt must be int, got '2'"),
        ({"kind": "verification_failed", "at": 1.0, "details": {"votes": {"a": 1}}},
         "verification_failed event: votes must be"),
        ({"kind": "reconnect", "at": 1.0, "endpoint": 7, "details": {"attempt": 1}},
         "reconnect event: endpoint must be a string"),
        ({"kind": "mode_changed", "at": 1.0, "new_mode": "polling"},
         "mode_changed event: old_mode and new_mode"),
        ({"kind": "mode_changed", "at": 1.0, "old_mode": "x", "new_mode": "polling"},
         "mode_changed event:"),
    ],
)
def test_bad_json_gets_a_clear_value_error(data: object, says: str) -> None:
    """from_dict refuses malformed input with a ValueError naming the problem, nothing else."""
    with pytest.raises(ValueError, match="^" + says.replace("(", r"\(")):
        FeedEvent.from_dict(data)  # type: ignore[arg-type]


def test_alerts_read_fields() -> None:
    """Alert kinds, sentences and the generic body come from the typed fields."""
    drop = ModeChanged(at=0.0, reason="r", old_mode=Mode.POLLING, new_mode=Mode.DISCONNECTED)
    back = ModeChanged(at=0.0, reason="r", old_mode=Mode.DISCONNECTED, new_mode=Mode.STREAMING)
    start = ModeChanged(at=0.0, reason="r", old_mode=Mode.STARTING, new_mode=Mode.STREAMING)
    assert (drop.is_disconnect, back.is_recovery, start.is_recovery) == (True, True, False)
    assert [alert_kind(e) for e in (drop, back, start)] == ["disconnected", "recovered", None]
    assert "recovered, disconnected → streaming" in describe(back, "finney")
    dispatcher = AlertDispatcher([], network="finney")
    quarantined = SAMPLES[4]
    body = dispatcher.payload(parse_webhook("https://ops.example/h"),
                              Alert(event=quarantined, kind="endpoint_quarantined", text="t"))
    assert body["kind"] == "endpoint_quarantined" and body["network"] == "finney"
    assert body["details"] == {"for_s": 300.0, "others_usable": 1}
    assert (body["old_mode"], body["new_mode"]) == (None, None)


def test_feed_log_reads_the_block_time_field(caplog: pytest.LogCaptureFixture) -> None:
    """The block-time log line shows the new block time from the event's field."""
    caplog.set_level(logging.INFO, logger="blockfeed")
    FeedLog(epoch_length=360, emoji=False).event(SAMPLES[6])
    assert caplog.records[-1].getMessage() == "BLOCK TIME 0.5s | was 12s; observed"


def test_chain_diverged_error_carries_the_typed_event() -> None:
    """The error the feed raises on divergence holds the event with its fields."""
    event = next(e for e in SAMPLES if isinstance(e, Diverged))
    error = ChainDiverged(event.reason, endpoint=event.endpoint, event=event)
    assert error.event is event and error.event.their_hash == H2


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _AppEvent(FeedEvent):
    kind: ClassVar[str] = "app_paused"
    why: str


def test_an_application_event_serialises_but_is_not_read_back() -> None:
    """A user's own subclass gets the same JSON form; from_dict names it as unknown."""
    wire = _AppEvent(at=1.0, reason="maintenance", why="upgrade").to_dict()
    assert wire["kind"] == "app_paused" and wire["details"] == {"why": "upgrade"}
    with pytest.raises(ValueError, match="unknown event kind 'app_paused'"):
        FeedEvent.from_dict(wire)
