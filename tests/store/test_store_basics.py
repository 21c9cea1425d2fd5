"""The checkpoint store's everyday contract: checkpoint, window, chain binding, schema, paths."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from blockfeed.codec import block_hash
from blockfeed.errors import ConfigError, StoreError
from blockfeed.store import DEFAULT_WINDOW, MEMORY, default_state_path, open_store
from blockfeed.store.rows import header_json
from blockfeed.store.schema import APPLICATION_ID, SCHEMA_VERSION
from blockfeed.types import Header

GENESIS_A = "0x" + "aa" * 32
GENESIS_B = "0x" + "bb" * 32


def test_empty_store_has_nothing(tmp_path: Path) -> None:
    """A new state file has no checkpoint, no window, no chain and no latest block."""
    with open_store(tmp_path / "s.sqlite") as store:
        assert store.checkpoint() is None
        assert store.window_bounds() is None
        assert store.latest() is None
        assert store.bound_chain() is None
        assert store.get_block(1) is None
        assert store.get_range(0, 10) == []
        assert store.window == DEFAULT_WINDOW


def test_save_moves_checkpoint_to_last_block(tmp_path: Path, make_blocks: Any) -> None:
    """save_blocks stores every block and points the checkpoint at the last one."""
    blocks = make_blocks(6_940_420, 10)
    with open_store(tmp_path / "s.sqlite") as store:
        store.save_blocks(blocks[:4])
        assert store.checkpoint() == (6_940_423, blocks[3].hash)
        store.save_blocks(blocks[4:])
        assert store.checkpoint() == (6_940_429, blocks[-1].hash)
        assert store.window_bounds() == (6_940_420, 6_940_429)
        assert store.latest() == blocks[-1]


def test_blocks_round_trip_with_headers(tmp_path: Path, make_blocks: Any) -> None:
    """Every Block field, the header included, comes back equal; the header still hashes right."""
    blocks = make_blocks(100, 6)
    with open_store(tmp_path / "s.sqlite") as store:
        store.save_blocks(blocks)
        for original in blocks:
            stored = store.get_block(original.number)
            assert stored == original
            assert stored is not None and stored.header == original.header
            assert stored.late == original.late and stored.source == original.source
            assert stored.header is not None and block_hash(stored.header) == original.hash


def test_block_without_header_round_trips(make_blocks: Any) -> None:
    """A block saved without a header comes back with header None."""
    block = make_blocks(7, 1, with_header=False)[0]
    with open_store(MEMORY) as store:
        store.save_blocks([block])
        stored = store.get_block(7)
        assert stored == block and stored is not None and stored.header is None


def test_checkpoint_survives_reopen(tmp_path: Path, make_blocks: Any) -> None:
    """Closing and reopening the file gives back the same checkpoint, chain and window."""
    path = tmp_path / "s.sqlite"
    blocks = make_blocks(50, 20)
    with open_store(path) as store:
        store.bind_chain(GENESIS_A)
        store.save_blocks(blocks)
    with open_store(path) as store:
        assert store.checkpoint() == (69, blocks[-1].hash)
        assert store.bound_chain() == GENESIS_A
        assert store.get_range(50, 100) == blocks


def test_window_keeps_only_recent_blocks(make_blocks: Any) -> None:
    """With window=5 only the five newest blocks stay, across batch boundaries."""
    blocks = make_blocks(1_000, 12)
    with open_store(MEMORY, window=5) as store:
        store.save_blocks(blocks[:3])
        assert store.window_bounds() == (1_000, 1_002)
        store.save_blocks(blocks[3:10])
        assert store.window_bounds() == (1_005, 1_009)
        store.save_blocks(blocks[10:])
        assert store.window_bounds() == (1_007, 1_011)
        assert store.get_block(1_006) is None
        assert [b.number for b in store.get_range(0, 100)] == list(range(1_007, 1_012))


def test_one_batch_larger_than_window(make_blocks: Any) -> None:
    """A batch longer than the window leaves exactly the window's newest blocks."""
    with open_store(MEMORY, window=3) as store:
        store.save_blocks(make_blocks(10, 8))
        assert store.window_bounds() == (15, 17)
        assert store.checkpoint() is not None and store.checkpoint()[0] == 17  # type: ignore[index]


def test_smaller_window_on_reopen_trims_at_next_save(tmp_path: Path, make_blocks: Any) -> None:
    """Reopening with a smaller window keeps the file valid and trims at the next save."""
    path = tmp_path / "s.sqlite"
    blocks = make_blocks(0, 30)
    with open_store(path, window=100) as store:
        store.save_blocks(blocks[:20])
    with open_store(path, window=5) as store:
        store.save_blocks(blocks[20:21])
        assert store.window_bounds() == (16, 20)


def test_rewind_moves_checkpoint_back_and_drops_newer(make_blocks: Any) -> None:
    """Saving an older block (explicit replay) moves the checkpoint back; the window ends there."""
    blocks = make_blocks(100, 10)
    with open_store(MEMORY) as store:
        store.save_blocks(blocks)
        store.save_blocks([blocks[2]])
        assert store.checkpoint() == (102, blocks[2].hash)
        assert store.window_bounds() == (100, 102)


def test_get_range_limits_and_order(make_blocks: Any) -> None:
    """get_range starts at ``start``, returns at most ``limit`` blocks, increasing."""
    blocks = make_blocks(10, 10)
    with open_store(MEMORY) as store:
        store.save_blocks(blocks)
        assert [b.number for b in store.get_range(13, 3)] == [13, 14, 15]
        assert [b.number for b in store.get_range(0, 2)] == [10, 11]
        assert store.get_range(19, 100) == [blocks[-1]]
        assert store.get_range(20, 5) == []
        assert store.get_range(10, 0) == []


@pytest.mark.parametrize(
    "bad_batch",
    [
        lambda b: [b[1], b[0]],
        lambda b: [b[0], b[0]],
        lambda b: [b[0], "not a block"],
    ],
)
def test_save_rejects_unordered_or_foreign_items(make_blocks: Any, bad_batch: Any) -> None:
    """Out-of-order, duplicate or non-Block items are refused and nothing is written."""
    blocks = make_blocks(5, 2)
    with open_store(MEMORY) as store:
        with pytest.raises((ValueError, TypeError)):
            store.save_blocks(bad_batch(blocks))
        assert store.checkpoint() is None and store.window_bounds() is None


def test_empty_save_is_a_no_op(make_blocks: Any) -> None:
    """save_blocks([]) changes nothing."""
    with open_store(MEMORY) as store:
        store.save_blocks(make_blocks(1, 1))
        before = store.checkpoint()
        store.save_blocks([])
        assert store.checkpoint() == before


@pytest.mark.parametrize(
    ("method", "args"),
    [("get_block", (-1,)), ("get_range", (-5, 1)), ("get_range", (0, -1)), ("get_range", ("0", 1))],
)
def test_bad_arguments_are_value_errors(method: str, args: tuple[Any, ...]) -> None:
    """Negative or non-integer numbers raise a clear ValueError, not an SQLite error."""
    with open_store(MEMORY) as store, pytest.raises(ValueError, match="non-negative integer"):
        getattr(store, method)(*args)


def test_bind_chain_first_time_then_same_chain(tmp_path: Path) -> None:
    """The first genesis is recorded; binding the same one again (any case) is fine."""
    with open_store(tmp_path / "s.sqlite") as store:
        store.bind_chain(GENESIS_A)
        store.bind_chain(GENESIS_A.upper().replace("0X", "0x"))
        assert store.bound_chain() == GENESIS_A


def test_bind_chain_refuses_another_chain(tmp_path: Path, make_blocks: Any) -> None:
    """A different genesis raises a StoreError naming both chains; the checkpoint is kept."""
    path = tmp_path / "s.sqlite"
    with open_store(path) as store:
        store.bind_chain(GENESIS_A)
        store.save_blocks(make_blocks(1, 3))
    with open_store(path) as store:
        with pytest.raises(StoreError, match="one state file per chain") as info:
            store.bind_chain(GENESIS_B)
        assert GENESIS_A in str(info.value) and GENESIS_B in str(info.value)
        assert store.bound_chain() == GENESIS_A
        assert store.checkpoint() is not None


@pytest.mark.parametrize("bad", ["", "0x1234", "aa" * 32, "0x" + "zz" * 32, None])
def test_bind_chain_rejects_malformed_hash(bad: Any) -> None:
    """A genesis hash that is not 0x + 64 hex digits is refused with a ValueError."""
    with open_store(MEMORY) as store, pytest.raises(ValueError, match="genesis hash"):
        store.bind_chain(bad)


def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    """Using a closed store is a StoreError; closing twice is fine."""
    store = open_store(tmp_path / "s.sqlite")
    store.close()
    store.close()
    assert store.closed
    with pytest.raises(StoreError, match="closed"):
        store.checkpoint()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"window": 0}, "window"), ({"window": True}, "window"), ({"outbox_max": -1}, "outbox_max"),
     ({"busy_timeout_s": -1.0}, "busy_timeout_s")],
)
def test_bad_options_are_config_errors(kwargs: dict[str, Any], match: str) -> None:
    """Nonsense options raise ConfigError naming the option."""
    with pytest.raises(ConfigError, match=match):
        open_store(MEMORY, **kwargs)


def test_file_is_wal_versioned_and_marked(tmp_path: Path) -> None:
    """The file uses WAL, carries the schema version and blockfeed's application id."""
    path = tmp_path / "s.sqlite"
    open_store(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    finally:
        conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A file written by a newer blockfeed is refused with advice to upgrade."""
    path = tmp_path / "s.sqlite"
    open_store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this blockfeed"):
        open_store(path)


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    """Another program's SQLite database is not written into."""
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE accounts (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a blockfeed state file"):
        open_store(path)
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
    conn.close()
    assert tables == ["accounts"]


def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    """open_store creates the state file's directory (e.g. the default data dir)."""
    path = tmp_path / "a" / "b" / "state.sqlite"
    open_store(path).close()
    assert path.exists()


def test_directory_as_path_is_refused(tmp_path: Path) -> None:
    """Giving a directory instead of a file is a clear StoreError."""
    with pytest.raises(StoreError, match="is a directory"):
        open_store(tmp_path)


def test_memory_store_keeps_nothing_on_disk(tmp_path: Path, make_blocks: Any) -> None:
    """The :memory: store works fully and leaves no files behind."""
    with open_store(MEMORY) as store:
        store.save_blocks(make_blocks(1, 3))
        assert store.checkpoint() is not None and store.path == MEMORY
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"BLOCKFEED_STATE": "/srv/feed.sqlite", "XDG_DATA_HOME": "/x"}, "/srv/feed.sqlite"),
        ({"XDG_DATA_HOME": "/data", "HOME": "/home/u"}, "/data/blockfeed/state.sqlite"),
        ({"XDG_DATA_HOME": "relative", "HOME": "/home/u"},
         "/home/u/.local/share/blockfeed/state.sqlite"),
        ({"HOME": "/home/u"}, "/home/u/.local/share/blockfeed/state.sqlite"),
        ({"BLOCKFEED_STATE": "  ", "HOME": "/home/u"},
         "/home/u/.local/share/blockfeed/state.sqlite"),
    ],
)
def test_default_state_path(env: dict[str, str], expected: str) -> None:
    """BLOCKFEED_STATE wins, then an absolute XDG_DATA_HOME, then ~/.local/share."""
    assert default_state_path(env) == Path(expected)


def test_open_store_none_uses_env_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """open_store() with no path opens the file BLOCKFEED_STATE names."""
    target = tmp_path / "env" / "state.sqlite"
    monkeypatch.setenv("BLOCKFEED_STATE", str(target))
    open_store().close()
    assert target.exists()


def test_header_json_is_the_wire_json(make_blocks: Any) -> None:
    """The fast header writer produces exactly the compact JSON of Header.to_json()."""
    headers = [b.header for b in make_blocks(0, 3) + make_blocks((1 << 32) - 2, 2)]
    headers.append(Header(b"\x01" * 32, 0, b"\x02" * 32, b"\x03" * 32, ()))
    for header in headers:
        assert header is not None
        assert header_json(header) == json.dumps(header.to_json(), separators=(",", ":"))


async def test_usable_from_worker_threads(tmp_path: Path, make_blocks: Any) -> None:
    """The feed may save from asyncio.to_thread while the loop reads: no thread errors."""
    blocks = make_blocks(1, 200)
    with open_store(tmp_path / "s.sqlite") as store:
        for start in range(0, 200, 20):
            await asyncio.to_thread(store.save_blocks, blocks[start : start + 20])
            assert store.checkpoint() == (start + 20, blocks[start + 19].hash)
        assert len(store.get_range(1, 500)) == 200


def test_public_api_is_small_and_sorted() -> None:
    """blockfeed.store exports a short __all__, sorted as ruff sorts it, whose names all exist."""
    import blockfeed.store as module

    def isort_style(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert module.__all__ == sorted(module.__all__, key=isort_style)
    assert all(hasattr(module, name) for name in module.__all__)
    assert {"open_store", "CheckpointStore", "default_state_path"} <= set(module.__all__)
