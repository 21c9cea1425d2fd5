"""The state file's lock follows its identity, foreign files stay untouched, files are private."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_store_failures import _kill, _read_line, _spawn

from blockfeed.config import Settings
from blockfeed.errors import StoreError
from blockfeed.gateway.runtime import open_state_store
from blockfeed.store import open_store
from blockfeed.store.schema import APPLICATION_ID, MIGRATIONS


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """A umask that lets group and others read: the store must not rely on a strict one."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_link_to_a_live_state_file_is_refused(tmp_path: Path, link: str) -> None:
    """A symlink or hard link to an open state file meets the same lock; after close it opens."""
    path = tmp_path / "serve.sqlite"
    other = tmp_path / "watch.sqlite"
    with open_store(path):
        if link == "symlink":
            other.symlink_to(path)
        else:
            os.link(path, other)
        with pytest.raises(StoreError, match="in use by process") as info:
            open_store(other)
        assert str(os.getpid()) in str(info.value)
    open_store(other).close()


def test_a_hard_link_is_refused_across_processes(tmp_path: Path) -> None:
    """A store held by another process is refused through a hard link, naming that process."""
    path = tmp_path / "state.sqlite"
    open_store(path).close()
    link = tmp_path / "elsewhere.sqlite"
    os.link(path, link)
    child = _spawn(path, "hold")
    try:
        assert _read_line(child) == "ready"
        with pytest.raises(StoreError, match=f"in use by process {child.pid}"):
            open_store(link)
    finally:
        _kill(child)
    open_store(link).close()


@pytest.mark.parametrize("wal", [False, True])
def test_foreign_sqlite_file_is_refused_without_being_modified(tmp_path: Path, wal: bool) -> None:
    """Another program's database: refused, byte for byte unchanged, no journal or lock left."""
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE accounts (id INTEGER)")
    conn.execute("INSERT INTO accounts VALUES (1)")
    conn.commit()
    conn.close()  # the last close checkpoints and removes -wal / -shm
    before, names = path.read_bytes(), _siblings(path)
    with pytest.raises(StoreError, match="not a blockfeed state file"):
        open_store(path)
    assert path.read_bytes() == before
    assert _siblings(path) == names == ["other.sqlite"]


def test_empty_database_without_our_id_is_refused(tmp_path: Path) -> None:
    """A non-empty SQLite file without blockfeed's application_id is refused, even tableless."""
    path = tmp_path / "blank.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a blockfeed state file"):
        open_store(path)
    assert path.read_bytes() == before


def test_application_id_is_in_the_main_file_from_the_start(
    tmp_path: Path, make_blocks: Any
) -> None:
    """While a new store is open (nothing checkpointed from the WAL), its header carries our id."""
    path = tmp_path / "state.sqlite"
    with open_store(path) as store:
        store.save_blocks(make_blocks(1, 5))
        head = path.read_bytes()[:100]
        assert int.from_bytes(head[68:72], "big") == APPLICATION_ID
        assert head[18:20] == b"\x02\x02"  # WAL mode


def test_older_store_with_its_id_only_in_the_wal_is_accepted(tmp_path: Path) -> None:
    """A store whose id sits only in an uncheckpointed WAL (killed early) is still recognised."""
    source = tmp_path / "live.sqlite"
    conn = sqlite3.connect(source, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    for statement in MIGRATIONS[0]:  # what blockfeed 0.1 wrote, after switching to WAL
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("COMMIT")
    copy_dir = tmp_path / "after-kill"
    copy_dir.mkdir()
    for suffix in ("", "-wal"):  # what a SIGKILL leaves: the main file and its WAL
        shutil.copyfile(f"{source}{suffix}", copy_dir / f"state.sqlite{suffix}")
    conn.close()
    copied = copy_dir / "state.sqlite"
    assert int.from_bytes(copied.read_bytes()[68:72], "big") == 0
    open_store(copied).close()


def test_new_files_are_private(tmp_path: Path, make_blocks: Any) -> None:
    """A new store's directory is 0700 and its file, WAL and shared memory are 0600."""
    path = tmp_path / "data" / "state.sqlite"
    with open_store(path) as store:
        store.save_blocks(make_blocks(1, 3))
        assert _mode(path.parent) == 0o700
        for name in ("state.sqlite", "state.sqlite-wal", "state.sqlite-shm"):
            assert _mode(path.parent / name) == 0o600, name


def test_existing_readable_store_is_narrowed(tmp_path: Path) -> None:
    """A store of this user left world-readable by an older blockfeed becomes 0600 at open."""
    path = tmp_path / "state.sqlite"
    open_store(path).close()
    path.chmod(0o644)
    open_store(path).close()
    assert _mode(path) == 0o600


def test_serve_state_directory_is_private_too(tmp_path: Path) -> None:
    """serve's default path goes through the store: directory 0700, file 0600 (as for watch)."""
    path = tmp_path / "xdg" / "blockfeed" / "state.sqlite"
    store = open_state_store(Settings(state=str(path)))
    try:
        assert _mode(path.parent) == 0o700
        assert _mode(path) == 0o600
    finally:
        store.close()


def test_default_data_directory_left_open_is_narrowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """blockfeed's own data directory, left 0755 by an older serve, becomes 0700; a directory
    the user chose keeps its mode."""
    monkeypatch.delenv("BLOCKFEED_STATE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    default_dir = tmp_path / "xdg" / "blockfeed"
    default_dir.mkdir(parents=True, mode=0o755)
    chosen = tmp_path / "chosen"
    chosen.mkdir(mode=0o755)
    open_store(None).close()
    open_store(chosen / "state.sqlite").close()
    assert _mode(default_dir) == 0o700
    assert _mode(chosen) == 0o755
