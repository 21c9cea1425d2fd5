"""Status helpers: mode timeline, readiness, epoch position, scrubbing."""

from __future__ import annotations

from gateway_fakes import FakeStatus, make_block

from blockfeed.gateway.status import ModeTimeline, epoch_info, readiness, scrub
from blockfeed.types import FinalityStalled, Mode, ModeChanged, Reconnect


def test_timeline_segments_and_repeats() -> None:
    """Mode changes become segments; repeating the current mode adds nothing; last is open."""
    tl = ModeTimeline(initial_mode=Mode.STARTING, started_at=100.0)
    tl.record(Mode.STREAMING, 101.0)
    tl.record(Mode.STREAMING, 150.0)
    tl.observe(ModeChanged(at=200.0, reason="x", old_mode=Mode.STREAMING, new_mode=Mode.POLLING))
    tl.observe(Reconnect(at=210.0, reason="x", attempt=1))  # no mode: ignored
    tl.observe(FinalityStalled(at=220.0, reason="x", mode=Mode.STREAMING))  # not a change
    segs = tl.segments(now=300.0)
    assert [(s.mode, s.start, s.end) for s in segs] == [
        ("starting", 100.0, 101.0), ("streaming", 101.0, 200.0), ("polling", 200.0, None)
    ]


def test_timeline_is_clipped_and_bounded() -> None:
    """Segments older than keep_s are dropped or clipped; the number of segments is capped."""
    tl = ModeTimeline(initial_mode=Mode.STREAMING, started_at=0.0, keep_s=100.0, max_segments=3)
    tl.record(Mode.POLLING, 10.0)
    tl.record(Mode.STREAMING, 20.0)
    tl.record(Mode.POLLING, 150.0)
    segs = tl.segments(now=200.0)
    assert [(s.mode, s.start) for s in segs] == [("streaming", 100.0), ("polling", 150.0)]
    tl.record(Mode.STREAMING, 160.0)
    assert len(tl.segments(now=10_000.0)) == 1  # only the open one overlaps the window


def test_timeline_never_runs_backwards() -> None:
    """An event stamped before the current segment starts is placed at that start."""
    tl = ModeTimeline(initial_mode=Mode.STREAMING, started_at=100.0)
    tl.record(Mode.POLLING, 50.0)
    assert tl.segments(now=120.0)[-1].start == 100.0


def test_readiness_reasons() -> None:
    """Readiness says why: starting, disconnected, too old (with stall), or ok."""
    assert readiness(FakeStatus(), max_block_age_s=60) == (False, "starting: no block received yet")
    block = make_block(9, at=0.0)
    assert readiness(FakeStatus(mode=Mode.DISCONNECTED, last_block=block, last_block_age_s=1),
                     max_block_age_s=60)[0] is False
    old = readiness(FakeStatus(mode=Mode.POLLING, last_block=block, last_block_age_s=90.4),
                    max_block_age_s=60)
    assert old == (False, "last block #9 is 90 s old (limit 60 s)")
    assert readiness(FakeStatus(mode=Mode.POLLING, last_block=block, last_block_age_s=5),
                     max_block_age_s=60) == (True, "polling: last block #9")


def test_epoch_info() -> None:
    """Epoch and position match the known log line for block 6940429."""
    info = epoch_info(6940429, 360)
    assert (info["epoch"], info["block_in_epoch"], info["label"]) == (19278, 349, "Block 349/360")


def test_scrub_masks_urls_and_stringifies() -> None:
    """URLs anywhere in nested details are redacted; odd values become strings."""
    key = "abcdefghijklmnopqrstuvwxyz0123456789"
    out = scrub({"u": f"wss://h.example/{key}", "n": [1, f"https://x.example/?k={key}"],
                 "o": object, "ok": True})
    assert key not in str(out)
    assert out["u"] == "wss://h.example/***" and out["ok"] is True and isinstance(out["o"], str)
