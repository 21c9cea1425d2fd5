"""Block contents kept in the store window and the outbox (schema migration 3)."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from blockfeed.errors import StoreError
from blockfeed.store import open_store
from blockfeed.store.schema import MIGRATIONS, SCHEMA_VERSION
from blockfeed.types import Block

BIG = 2**64 + 7
"""Beyond 2^53: a safe JSON rendering would make it text; the store must keep it an int."""


def with_contents(block: Block, *, events: bool = True) -> Block:
    """``block`` carrying fixture-like contents (an event with a u128 amount, an extrinsic)."""
    return dataclasses.replace(
        block,
        timestamp=1_700_000_000_000 + block.number,
        spec_version=218,
        events=[
            {"index": 0, "phase": "ApplyExtrinsic", "extrinsic_index": 0, "pallet": "Balances",
             "name": "Transfer", "fields": {"from": "5F3sa2TJ", "amount": BIG}},
        ] if events else None,
        extrinsics=[
            {"index": 0, "pallet": "Timestamp", "call": "set", "args": {"now": 1}, "signed": False,
             "hash": "0x" + "ab" * 32},
        ] if events else None,
    )


def contents(block: Block | None) -> tuple[Any, ...]:
    assert block is not None
    return (block.timestamp, block.spec_version, block.events, block.extrinsics)


def test_window_keeps_contents_across_reopen(tmp_path: Path, make_blocks: Any) -> None:
    """Blocks read back from the window after a reopen carry exactly the contents saved."""
    path = tmp_path / "state.sqlite"
    blocks = make_blocks(10, 4)
    saved = [with_contents(b) for b in blocks[:2]] + [with_contents(blocks[2], events=False),
                                                      blocks[3]]
    with open_store(path) as store:
        store.save_blocks(saved)
    with open_store(path) as store:
        for original in saved:
            assert contents(store.get_block(original.number)) == contents(original)
        back = store.get_range(10, 10)
        assert [contents(b) for b in back] == [contents(b) for b in saved]
        assert back[0].events is not None
        assert back[0].events[0]["fields"]["amount"] == BIG  # an int, not "18446744073709551623"
        assert back[2].spec_version == 218 and back[2].events is None
        assert contents(store.latest()) == (None, None, None, None)  # header-only stays so


def test_outbox_keeps_contents(make_blocks: Any) -> None:
    """Blocks queued in the outbox come back out with their contents."""
    blocks = [with_contents(b) for b in make_blocks(1, 3)]
    with open_store(":memory:") as store:
        store.outbox_push(blocks)
        assert [contents(b) for b in store.outbox_peek(10)] == [contents(b) for b in blocks]


def test_version_2_file_is_migrated_and_old_rows_read(tmp_path: Path, make_blocks: Any) -> None:
    """A state file written before contents (schema 2) is migrated; its rows read as header-only."""
    path = tmp_path / "old.sqlite"
    with open_store(path) as store:
        store.save_blocks(make_blocks(1, 2))
    conn = sqlite3.connect(path, isolation_level=None)
    for table in ("blocks", "outbox"):  # undo migration 3, as an older blockfeed left the file
        conn.execute(f"ALTER TABLE {table} DROP COLUMN contents")
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    assert SCHEMA_VERSION == 3 and len(MIGRATIONS[2]) == 2
    with open_store(path) as store:
        assert contents(store.get_block(2)) == (None, None, None, None)
        store.save_blocks([with_contents(b) for b in make_blocks(3, 1)])
        assert contents(store.get_block(3))[1] == 218
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    conn.close()


@pytest.mark.parametrize(
    "damage",
    ["not json", "[1, 2]", '{"spec_version": -1}', '{"events": {"a": 1}}', '{"extra": 1}'],
)
def test_damaged_contents_is_a_store_error(
    tmp_path: Path, make_blocks: Any, damage: str
) -> None:
    """A contents cell that is not a contents object raises StoreError naming the block."""
    path = tmp_path / "state.sqlite"
    with open_store(path) as store:
        store.save_blocks([with_contents(b) for b in make_blocks(1, 2)])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE blocks SET contents = ? WHERE number = 2", (damage,))
    conn.commit()
    conn.close()
    with open_store(path) as store:
        assert store.get_block(1) is not None
        with pytest.raises(StoreError, match="damaged row for block 2"):
            store.get_block(2)
