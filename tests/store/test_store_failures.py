"""Every way the state file can fail gives a clear StoreError, and none silently starts over."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from blockfeed.errors import StoreError
from blockfeed.store import open_store

CHILD_TIMEOUT_S = 30.0

# A child process that opens a store, then saves linked batches of 10 blocks forever, printing
# each committed checkpoint, or (mode "hold") prints "ready" and waits to be killed.
CHILD_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from blockfeed.codec import block_hash
    from blockfeed.store import open_store
    from blockfeed.types import Block, Header, Source

    path, mode = sys.argv[1], sys.argv[2]
    store = open_store(path)
    if mode == "hold":
        print("ready", flush=True)
        time.sleep(600)
    parent = b"\\x00" * 32
    number = 1
    while True:
        batch = []
        for _ in range(10):
            header = Header(parent, number, number.to_bytes(32, "big"), b"\\x01" * 32, ())
            digest = block_hash(header)
            batch.append(Block(number, digest, "0x" + parent.hex(), Source.WS, time.time(), header))
            parent = bytes.fromhex(digest[2:])
            number += 1
        store.save_blocks(batch)
        print(batch[-1].number, batch[-1].hash, flush=True)
    """
)


def _spawn(path: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD_SCRIPT, str(path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_line(proc: subprocess.Popen[str]) -> str:
    """One line from the child, failing the test (not hanging) if the child dies or stalls."""
    assert proc.stdout is not None
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    line = proc.stdout.readline()
    if not line:
        stderr = proc.stderr.read() if proc.stderr else ""
        pytest.fail(f"child exited early: {stderr[-2000:]}")
    assert time.monotonic() < deadline, "child too slow"
    return line.strip()


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=CHILD_TIMEOUT_S)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


# -- corrupt files ---------------------------------------------------------------------------


def test_garbage_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    """A file that is not a database raises 'corrupt or not a database' and is not modified."""
    path = tmp_path / "state.sqlite"
    junk = b"definitely not sqlite " * 500
    path.write_bytes(junk)
    with pytest.raises(StoreError, match="corrupt or not a database") as info:
        open_store(path)
    assert "never starts over silently" in str(info.value)
    assert path.read_bytes() == junk


def test_damaged_pages_are_detected_at_open(tmp_path: Path, make_blocks: Any) -> None:
    """A real state file with overwritten pages fails the integrity check at open."""
    path = tmp_path / "state.sqlite"
    with open_store(path) as store:
        store.save_blocks(make_blocks(1, 2_000))
    data = bytearray(path.read_bytes())
    assert len(data) > 64 * 1024
    for i in range(16 * 1024, len(data) - 4096):
        data[i] = (i * 131) & 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt"):
        open_store(path)


def test_damaged_row_is_a_store_error(tmp_path: Path, make_blocks: Any) -> None:
    """A row whose header JSON is garbage raises StoreError on read, not a crash or a bad Block."""
    path = tmp_path / "state.sqlite"
    with open_store(path) as store:
        store.save_blocks(make_blocks(1, 3))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE blocks SET header = '{\"nope\": 1}' WHERE number = 2")
    conn.execute("UPDATE blocks SET source = 'carrier-pigeon' WHERE number = 3")
    conn.commit()
    conn.close()
    with open_store(path) as store:
        assert store.get_block(1) is not None
        with pytest.raises(StoreError, match="damaged row for block 2"):
            store.get_block(2)
        with pytest.raises(StoreError, match="damaged row for block 3"):
            store.latest()


# -- locking ---------------------------------------------------------------------------------


def test_second_open_in_same_process_is_refused(tmp_path: Path) -> None:
    """Two stores on one file are refused (the lock is per open, not per process)."""
    path = tmp_path / "state.sqlite"
    with open_store(path):
        with pytest.raises(StoreError, match="in use by process") as info:
            open_store(path)
        assert str(os.getpid()) in str(info.value)
    open_store(path).close()


def test_other_process_holding_the_file_is_named(tmp_path: Path) -> None:
    """A feed in another process holds the file: the error names its pid; its death frees it."""
    path = tmp_path / "state.sqlite"
    child = _spawn(path, "hold")
    try:
        assert _read_line(child) == "ready"
        with pytest.raises(StoreError, match=f"in use by process {child.pid}"):
            open_store(path)
    finally:
        _kill(child)
    open_store(path).close()
    assert not Path(f"{path}.lock").exists()  # the lock is on the file itself


def test_sigkill_loses_nothing_committed(tmp_path: Path) -> None:
    """After SIGKILL mid-stream the checkpoint is at or past the last reported save, intact."""
    path = tmp_path / "state.sqlite"
    child = _spawn(path, "run")
    try:
        reported = [_read_line(child) for _ in range(30)]
    finally:
        _kill(child)
    last_number, last_hash = reported[-1].split()
    with open_store(path) as store:
        checkpoint = store.checkpoint()
        assert checkpoint is not None
        assert checkpoint[0] >= int(last_number)
        assert checkpoint[0] % 10 == 0, "a batch is saved whole or not at all"
        kept = store.get_block(int(last_number))
        assert kept is not None and kept.hash == last_hash
        tip = store.get_block(checkpoint[0])
        assert tip is not None and tip.hash == checkpoint[1]
        window = store.get_range(1, checkpoint[0])
        assert [b.number for b in window] == list(range(1, checkpoint[0] + 1))
        assert all(b.parent_hash == a.hash for a, b in itertools.pairwise(window))


# -- read-only -------------------------------------------------------------------------------


def test_read_only_directory_is_refused(tmpfs: Any, make_blocks: Any) -> None:
    """A state file on a read-only file system is refused at open with a clear reason."""
    mount = tmpfs.mount("1m")
    path = mount / "state.sqlite"
    with open_store(path) as store:
        store.save_blocks(make_blocks(1, 3))
    tmpfs.make_read_only(mount)
    with pytest.raises(StoreError, match="read-only") as info:
        open_store(path)
    assert str(mount) in str(info.value)


def test_read_only_file_in_writable_directory(tmp_path: Path, make_blocks: Any) -> None:
    """A read-only state file (bind-mounted read-only) is refused at open."""
    path = tmp_path / "state.sqlite"
    with open_store(path) as store:
        store.save_blocks(make_blocks(1, 3))
    if os.geteuid() != 0:
        path.chmod(0o444)
        with pytest.raises(StoreError, match="read-only"):
            open_store(path)
        return
    bind = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(path)], check=True, capture_output=True
        )
        with pytest.raises(StoreError, match=r"state file .* is read-only"):
            open_store(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_missing_directory_that_cannot_be_created(tmpfs: Any) -> None:
    """A state path under a read-only tree gives a StoreError about the directory."""
    mount = tmpfs.mount("64k")
    tmpfs.make_read_only(mount)
    with pytest.raises(StoreError, match="cannot create the state directory"):
        open_store(mount / "sub" / "state.sqlite")


# -- disk full -------------------------------------------------------------------------------


def test_size_capped_file_fails_whole_batch(tmp_path: Path, make_blocks: Any) -> None:
    """When the file may not grow, save_blocks raises 'disk ... full' and saves nothing of it."""
    blocks = make_blocks(1, 3_000)
    with open_store(tmp_path / "state.sqlite") as store:
        store.save_blocks(blocks[:10])
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(StoreError, match="full") as info:
            store.save_blocks(blocks[10:])
        assert "checkpoint is unchanged" in str(info.value)
        assert store.checkpoint() == (10, blocks[9].hash)
        assert store.window_bounds() == (1, 10)
        store._conn.execute("PRAGMA max_page_count = 1073741823")
        store.save_blocks(blocks[10:20])
        assert store.checkpoint() == (20, blocks[19].hash)


def test_full_tmpfs_keeps_last_good_checkpoint(tmpfs: Any, make_blocks: Any) -> None:
    """On a genuinely full disk the error is clear and the last committed checkpoint survives."""
    mount = tmpfs.mount("256k")
    path = mount / "state.sqlite"
    blocks = make_blocks(1, 4_000)
    store = open_store(path)
    saved = 0
    with pytest.raises(StoreError, match="is full"):
        for start in range(0, len(blocks), 50):
            store.save_blocks(blocks[start : start + 50])
            saved = start + 50
    assert saved > 0, "the tmpfs should hold at least one batch"
    assert store.checkpoint() == (saved, blocks[saved - 1].hash)
    store.close()
    # The committed state on the full disk is intact for any reader.
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        number = conn.execute("SELECT number FROM checkpoint").fetchone()[0]
    finally:
        conn.close()
    assert number == saved


def test_outside_writer_past_busy_timeout(tmp_path: Path, make_blocks: Any) -> None:
    """An outside connection holding the write lock past the busy timeout gives a clear error,
    and the save succeeds once it lets go."""
    path = tmp_path / "state.sqlite"
    blocks = make_blocks(1, 4)
    with open_store(path, busy_timeout_s=0.05) as store:
        store.save_blocks(blocks[:2])
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError, match="stayed locked"):
                store.save_blocks(blocks[2:])
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert store.checkpoint() == (2, blocks[1].hash)
        store.save_blocks(blocks[2:])
        assert store.checkpoint() == (4, blocks[3].hash)
