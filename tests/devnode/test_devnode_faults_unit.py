"""The fault injector on a fake clock: validation, defaults, expiry, overlap, clearing."""

from __future__ import annotations

import pytest

from blockfeed.devnode.faults import (
    FAULT_KINDS,
    FAULT_SPECS,
    ActiveFault,
    FaultInjector,
    InvalidFault,
    fault_help,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_every_design_fault_class_has_a_kind() -> None:
    """F1-F11 and F13 are all injectable, under the names the team uses (F14 is a config)."""
    assert FAULT_KINDS == (
        "close",
        "restart",
        "blackhole",
        "sub_stall",
        "sub_error",
        "http_errors",
        "rpc_errors",
        "finality_halt",
        "malformed",
        "disorder",
        "lie",
        "latency",
        "reset",
    )
    classes = [FAULT_SPECS[k].fault_class for k in FAULT_KINDS]
    assert classes == [
        *(f"F{i}" for i in range(1, 7)),
        "F6",
        *(f"F{i}" for i in range(7, 12)),
        "F13",
    ]


def test_unknown_kind_lists_valid_kinds() -> None:
    """A typo names every valid kind; the error is a ValueError."""
    with pytest.raises(InvalidFault, match="unknown fault kind 'restrat'; valid kinds: close, "):
        FaultInjector().inject("restrat", seconds=1)
    assert issubclass(InvalidFault, ValueError)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("latency", {"delay": 1}, "has no option 'delay'; valid options: delay_s, on"),
        ("finality_halt", {"x": 1}, "valid options: none"),
        ("latency", {"delay_s": -1}, "must be from 0 to 60"),
        ("latency", {"delay_s": "slow"}, "must be a number"),
        ("close", {"reset": "yes"}, "must be true or false"),
        ("lie", {"mode": "fib"}, "must be one of parent, lag"),
        ("malformed", {"kinds": ["garbage", "nope"]}, "unknown 'nope'"),
        ("http_errors", {"status": 200}, "must be from 400 to 599"),
        ("lie", {"blocks": 2.5}, "must be a whole number"),
        ("close", {"code": 1005}, "1005 is not allowed"),
        ("reset", {"genesis": "old"}, "must be one of new, same"),
        ("reset", {"start_block": 0}, "must be from 1 to"),
        ("restart", {"flap": 1}, "must be true or false"),
        ("http_errors", {"retry_after": -1}, "must be from 0 to 86400"),
        ("http_errors", {"retry_after": "soon"}, "must be a number"),
        ("rpc_errors", {"on": "udp"}, "must be one of ws, http, both"),
        ("rpc_errors", {"rate": 2}, "must be from 0 to 1"),
        ("rpc_errors", {"message": ""}, "must be a string of 1 to"),
    ],
)
def test_bad_options_are_explained(kind: str, options: dict[str, object], message: str) -> None:
    """Each bad option says what is expected."""
    with pytest.raises(InvalidFault, match=message):
        FaultInjector().inject(kind, seconds=1, **options)


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf"), "5", True])
def test_bad_durations_are_refused(seconds: object) -> None:
    """Durations must be finite, non-negative numbers."""
    with pytest.raises(InvalidFault, match="seconds must be a number"):
        FaultInjector().inject("restart", seconds=seconds)  # type: ignore[arg-type]


def test_defaults_are_filled_and_lists_normalized() -> None:
    """Unset options take their defaults; 'kinds' accepts a comma string."""
    fault = FaultInjector().inject("malformed", seconds=1, kinds="garbage, oversized")
    assert fault.options["rate"] == 0.3
    assert fault.options["kinds"] == ("garbage", "oversized")
    assert fault.to_dict(0)["options"]["kinds"] == ["garbage", "oversized"]
    assert FaultInjector().inject("close").seconds == 0.0


def test_optional_retry_after_defaults_to_none_and_takes_null() -> None:
    """retry_after is unset by default, accepts null (JSON) and a number; help shows "none"."""
    assert FaultInjector().inject("http_errors").options["retry_after"] is None
    assert FaultInjector().inject("http_errors", retry_after=None).options["retry_after"] is None
    assert FaultInjector().inject("http_errors", retry_after=7).options["retry_after"] == 7
    assert "retry_after=none (0..86400)" in fault_help()


def test_new_kinds_default_options() -> None:
    """reset defaults to a new genesis from block 1; rpc_errors to -32029 on both transports."""
    reset = FaultInjector().inject("reset")
    assert dict(reset.options) == {"genesis": "new", "start_block": 1, "flap": False}
    assert reset.seconds == 1.0
    errors = FaultInjector().inject("rpc_errors")
    assert dict(errors.options) == {
        "on": "both",
        "code": -32029,
        "message": "rate limit exceeded",
        "rate": 1.0,
    }


def test_faults_expire_on_their_own_and_overlap() -> None:
    """Two overlapping faults each end at their own time; next_change_in_s tracks them."""
    clock = FakeClock()
    injector = FaultInjector(clock=clock)
    short = injector.inject("sub_stall", seconds=1)
    long = injector.inject("latency", seconds=3, delay_s=0.2)
    assert injector.active() == [short, long]
    assert injector.next_change_in_s() == 1.0
    clock.now += 1.0
    assert injector.active() == [long]
    assert not injector.is_active("sub_stall")
    assert injector.next_change_in_s() == 2.0
    clock.now += 2.5
    assert injector.active() == []
    assert injector.next_change_in_s() is None


def test_clear_by_id_kind_or_all_and_listeners() -> None:
    """clear() ends faults early; inject/change listeners fire; ids are unique."""
    injected: list[ActiveFault] = []
    changes: list[str] = []
    injector = FaultInjector(clock=FakeClock())
    injector.on_inject(injected.append)
    injector.on_change(lambda: changes.append("x"))
    first = injector.inject("lie", seconds=5)
    injector.inject("lie", seconds=5, mode="lag")
    third = injector.inject("latency", seconds=5)
    assert [f.id for f in injected] == ["f1", "f2", "f3"]
    assert injector.clear(first.id) == 1
    assert injector.clear("lie") == 1
    assert injector.clear("nothing") == 0
    assert injector.active() == [third]
    assert injector.clear() == 1
    assert len(changes) == 6
    assert injector.injected_total["lie"] == 2


def test_help_text_covers_every_kind_and_option() -> None:
    """The generated help names every kind and every option."""
    text = fault_help()
    for spec in FAULT_SPECS.values():
        assert f"{spec.kind} ({spec.fault_class})" in text
        for option in spec.options:
            assert f"{option.name}=" in text


@pytest.mark.parametrize(
    ("actions", "frames"),
    [
        ([None, None], ["1", "2"]),
        (["skip", None], ["2"]),
        (["duplicate", None], ["1", "1", "2"]),
        (["reorder", None, None], ["2", "1", "3"]),
        (["reorder", "reorder", None], ["2", "1", "3"]),  # one held at a time
        (["reorder", "duplicate"], ["2", "2", "1"]),
    ],
)
def test_disorder_frames_table(actions: list[str | None], frames: list[str]) -> None:
    """F9 on the wire, shared by devnode and the in-memory node: what each action sends."""
    from blockfeed.devnode.shared import disordered

    class Held:
        held: str | None = None

    subscription = Held()
    sent: list[str] = []
    for number, action in enumerate(actions, start=1):
        sent += disordered(action, str(number), subscription)
    assert sent == frames
