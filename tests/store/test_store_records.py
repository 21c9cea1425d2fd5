"""Trigger records and the Redis outbox kept in the state file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from blockfeed.store import MEMORY, open_store


def test_trigger_done_after_record(tmp_path: Path) -> None:
    """A trigger is done only once recorded, per (name, epoch), and stays done after reopen."""
    path = tmp_path / "s.sqlite"
    with open_store(path) as store:
        assert not store.trigger_done("consensus", 19278)
        store.record_trigger("consensus", 19278, status="fired", late=False, block_number=6940429)
        assert store.trigger_done("consensus", 19278)
        assert not store.trigger_done("consensus", 19279)
        assert not store.trigger_done("weights", 19278)
    with open_store(path) as store:
        assert store.trigger_done("consensus", 19278)


def test_failed_trigger_counts_as_done() -> None:
    """A failed record also marks the trigger done: it is reported, not retried forever."""
    with open_store(MEMORY) as store:
        store.record_trigger("x", 1, status="failed", late=True, detail="boom", attempts=5)
        assert store.trigger_done("x", 1)


def test_list_triggers_fields_order_and_filters() -> None:
    """list_triggers returns every field, newest epoch first, filtered by name/status/epoch."""
    with open_store(MEMORY) as store:
        store.record_trigger("a", 1, status="fired", late=False, recorded_at=10.0)
        store.record_trigger("a", 2, status="failed", late=True, detail="err", attempts=3,
                             block_number=719, recorded_at=20.0)
        store.record_trigger("b", 2, status="fired", late=True, recorded_at=30.0)
        all_records = store.list_triggers()
        assert [(r.name, r.epoch) for r in all_records] == [("a", 2), ("b", 2), ("a", 1)]
        failed = store.list_triggers(status="failed")
        assert len(failed) == 1
        record = failed[0]
        assert (record.name, record.epoch, record.status, record.late) == ("a", 2, "failed", True)
        assert (record.detail, record.attempts, record.block_number) == ("err", 3, 719)
        assert record.recorded_at == 20.0
        assert [r.epoch for r in store.list_triggers("a")] == [2, 1]
        assert [r.name for r in store.list_triggers(since_epoch=2)] == ["a", "b"]
        assert len(store.list_triggers(limit=1)) == 1


def test_record_replaces_earlier_outcome() -> None:
    """Recording the same key again replaces it (a late retry that succeeded)."""
    with open_store(MEMORY) as store:
        store.record_trigger("a", 1, status="failed", late=False)
        store.record_trigger("a", 1, status="fired", late=True)
        records = store.list_triggers()
        assert [(r.status, r.late) for r in records] == [("fired", True)]


def test_record_rejects_bad_status_and_name() -> None:
    """Unknown statuses and empty names are refused with ValueError."""
    with open_store(MEMORY) as store:
        with pytest.raises(ValueError, match="status"):
            store.record_trigger("a", 1, status="done", late=False)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="name"):
            store.record_trigger("", 1, status="fired", late=False)
        assert store.list_triggers() == []


def test_long_detail_is_truncated() -> None:
    """A huge detail (say, a whole traceback) is stored truncated, not refused."""
    with open_store(MEMORY) as store:
        store.record_trigger("a", 1, status="failed", late=False, detail="x" * 100_000)
        assert len(store.list_triggers()[0].detail) == 2_000


def test_outbox_push_peek_drop(tmp_path: Path, make_blocks: Any) -> None:
    """Queued blocks come back oldest first; drop_through removes the published ones."""
    blocks = make_blocks(500, 10)
    path = tmp_path / "s.sqlite"
    with open_store(path) as store:
        assert store.outbox_push(blocks[:6]) == 0
        assert store.outbox_len() == 6
        assert store.outbox_peek(3) == blocks[:3]
        assert store.outbox_drop_through(502) == 3
        assert store.outbox_peek(10) == blocks[3:6]
    with open_store(path) as store:
        assert store.outbox_len() == 3
        peeked = store.outbox_peek(1)[0]
        assert peeked == blocks[3] and peeked.header == blocks[3].header


def test_outbox_push_is_idempotent(make_blocks: Any) -> None:
    """Pushing the same block twice queues it once."""
    blocks = make_blocks(1, 3)
    with open_store(MEMORY) as store:
        store.outbox_push(blocks)
        store.outbox_push(blocks[1:])
        assert store.outbox_len() == 3


def test_full_outbox_drops_oldest(make_blocks: Any) -> None:
    """Past outbox_max the oldest queued blocks go and the count dropped is returned."""
    blocks = make_blocks(100, 9)
    with open_store(MEMORY, outbox_max=5) as store:
        assert store.outbox_push(blocks[:4]) == 0
        assert store.outbox_push(blocks[4:7]) == 2
        assert [b.number for b in store.outbox_peek(10)] == [102, 103, 104, 105, 106]
        assert store.outbox_push(blocks[7:]) == 2
        assert [b.number for b in store.outbox_peek(10)] == [104, 105, 106, 107, 108]


def test_outbox_is_independent_of_window(make_blocks: Any) -> None:
    """Trimming the window never touches queued blocks, and draining the outbox keeps the window."""
    blocks = make_blocks(0, 10)
    with open_store(MEMORY, window=2) as store:
        store.outbox_push(blocks)
        store.save_blocks(blocks)
        assert store.outbox_len() == 10
        store.outbox_drop_through(9)
        assert store.outbox_len() == 0
        assert store.window_bounds() == (8, 9)
