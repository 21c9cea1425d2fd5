"""The checkpoint store: one SQLite file per feed, holding where the feed is and what it delivered.

What is kept
    The chain's genesis hash (a state file belongs to exactly one chain), the checkpoint (number
    and hash of the last block every subscriber was handed), a window of the most recent blocks
    (all Block fields, header as wire JSON, so gateway replays are complete), trigger records of
    the epoch monitor, and a bounded outbox for the Redis publisher.

What a crash can repeat
    The feed moves the checkpoint only after every subscriber has been handed the block. After a
    SIGKILL the restarted feed resumes at checkpoint + 1, so at most the blocks in flight since
    the last ``save_blocks`` are delivered again, each with its block number as the idempotency
    key. Nothing is skipped: a block is never checkpointed before it was handed out.

Durability (WAL, ``synchronous=NORMAL``)
    Every ``save_blocks`` is one transaction, appended to the write-ahead log. A committed
    transaction survives a process crash (SIGKILL, OOM kill, panic): the data is in the OS page
    cache and the kernel writes it out. Only a power loss or kernel crash can lose the last few
    commits (those since the WAL was last synced at a checkpoint); the file is never corrupted by
    it, the feed then resumes a little earlier and repeats those blocks (see above). ``FULL``
    would fsync every block for no gain in the guarantee, so it is not used.

Failure modes (each a StoreError whose message says what happened and what to do)
    * corrupt file, or a file that is not a database / not blockfeed's: refused, never replaced,
      never modified (its header is read before SQLite opens it: see ``schema.check_file_header``);
    * locked by another process: a second feed on the same file is refused at open (an exclusive
      ``flock`` on the file itself, so a symlink or hard link meets the same lock: see
      :mod:`blockfeed.store.lock`); SQLite's busy timeout covers brief outside readers;
    * read-only file or directory: refused at open;
    * disk full: the failing write is rolled back whole (the checkpoint does not move); the
      caller may retry later;
    * a genesis hash that differs from the one recorded: refused (never a silent mix of chains).

A checkpoint ahead of the node's finalized head (a node that is still syncing, or a lagging
endpoint) is the feed's business: it waits for the chain to reach checkpoint + 1, it does not
rewind. The store only records where the feed was.

Permissions: new state files (and their -wal / -shm) are 0600 and a directory created for them
0700; an existing file of this user that is readable by others is narrowed to 0600 at open.

Thread safety: every method takes an internal lock, so the feed may call the store from a worker
thread (``asyncio.to_thread``) while the gateway reads it from the event loop.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from blockfeed.errors import ConfigError, StoreError
from blockfeed.store import failures
from blockfeed.store.lock import FILE_MODE, StateLock
from blockfeed.store.paths import MEMORY, STATE_ENV_VAR, default_state_path, resolve_state_path
from blockfeed.store.rows import BLOCK_COLUMNS, block_to_row, row_to_block
from blockfeed.store.schema import check_file_header, migrate
from blockfeed.types import Block

logger = logging.getLogger("blockfeed.store")

DIR_MODE = 0o700
"""A directory the store creates (and blockfeed's default data directory) is private."""
"""Pass as the path for a store that lives only as long as the process (no file, no lock)."""
DEFAULT_WINDOW = 10_000
"""Recent blocks kept (about 33 hours at 12 s blocks)."""
DEFAULT_OUTBOX_MAX = 50_000
"""Blocks the Redis outbox holds before it drops its oldest (about a week at 12 s blocks)."""
DEFAULT_BUSY_TIMEOUT_S = 5.0
MAX_TRIGGER_DETAIL_CHARS = 2_000
TriggerStatus = Literal["fired", "failed"]
TRIGGER_STATUSES: tuple[str, ...] = ("fired", "failed")

_PLACEHOLDERS = ", ".join("?" * len(BLOCK_COLUMNS.split(",")))
_INSERT_BLOCK = f"INSERT OR REPLACE INTO blocks ({BLOCK_COLUMNS}) VALUES ({_PLACEHOLDERS})"
_INSERT_OUTBOX = f"INSERT OR IGNORE INTO outbox ({BLOCK_COLUMNS}) VALUES ({_PLACEHOLDERS})"
_SET_CHECKPOINT = (
    "INSERT INTO checkpoint (id, number, hash) VALUES (1, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET number = excluded.number, hash = excluded.hash"
)
_TRIGGER_COLUMNS = "name, epoch, status, late, detail, block_number, attempts, recorded_at"


@dataclass(frozen=True, slots=True)
class TriggerRecord:
    """What the store remembers about one ``(name, epoch)`` trigger."""

    name: str
    epoch: int
    status: str
    """``fired`` (the handler returned) or ``failed`` (it kept raising until the retry limit)."""
    late: bool
    detail: str
    block_number: int | None
    attempts: int
    recorded_at: float
    """Unix time of the record."""


class CheckpointStore:
    """Checkpoint, recent-block window, trigger records and Redis outbox in one SQLite file.

    Create it with :func:`open_store`; close it with :meth:`close` (or use it as a context
    manager). Every method raises :class:`StoreError` when the file cannot be used.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: str,
        window: int,
        outbox_max: int,
        lock: StateLock | None,
    ) -> None:
        self._conn = conn
        self._path = path
        self._window = window
        self._outbox_max = outbox_max
        self._file_lock = lock
        self._mutex = threading.RLock()
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The state file (``:memory:`` for an in-memory store)."""
        return self._path

    @property
    def window(self) -> int:
        """How many recent blocks are kept."""
        return self._window

    @property
    def outbox_max(self) -> int:
        """How many blocks the outbox holds before dropping its oldest."""
        return self._outbox_max

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def close(self) -> None:
        """Close the database and release the file lock (idempotent)."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.close()
            finally:
                if self._file_lock is not None:
                    self._file_lock.release()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- chain identity ---------------------------------------------------------------------

    def bind_chain(self, genesis_hash: str) -> None:
        """Record the chain's genesis hash the first time; refuse any other chain afterwards."""
        wanted = _normalise_hash(genesis_hash, "genesis hash")
        with self._write("record the chain's genesis hash") as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'genesis_hash'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta (key, value) VALUES ('genesis_hash', ?)", (wanted,))
                return
            if row[0] != wanted:
                raise StoreError(
                    f"state file {self._path} belongs to the chain with genesis {row[0]}, but "
                    f"the node serves the chain with genesis {wanted}. Use one state file per "
                    "chain (--state / BLOCKFEED_STATE), or check the endpoint URL"
                )

    def reset_chain(self, genesis_hash: str, reason: str) -> None:
        """The chain was replaced (F13, policy "follow"): record the reset (old genesis, last
        checkpoint, reason, time) in ``chain_resets``, forget the checkpoint and the window of
        the old chain, and bind the file to ``genesis_hash``, all in one transaction. The
        record stays: ``chain_resets()`` lists every reset this file went through."""
        wanted = _normalise_hash(genesis_hash, "genesis hash")
        with self._write("record a chain reset") as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'genesis_hash'").fetchone()
            last = conn.execute("SELECT number, hash FROM checkpoint WHERE id = 1").fetchone()
            conn.execute(
                "INSERT INTO chain_resets (at, old_genesis, new_genesis, last_number, last_hash,"
                " reason) VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), None if row is None else row[0], wanted,
                 None if last is None else last[0], None if last is None else last[1], reason),
            )
            conn.execute("DELETE FROM checkpoint")
            conn.execute("DELETE FROM blocks")
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('genesis_hash', ?)",
                         (wanted,))

    def chain_resets(self) -> list[dict[str, object]]:
        """Every recorded chain reset, oldest first."""
        with self._read("read the chain resets") as conn:
            rows = conn.execute(
                "SELECT at, old_genesis, new_genesis, last_number, last_hash, reason"
                " FROM chain_resets ORDER BY id"
            ).fetchall()
        keys = ("at", "old_genesis", "new_genesis", "last_number", "last_hash", "reason")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def bound_chain(self) -> str | None:
        """The genesis hash this file belongs to, if recorded yet."""
        with self._read("read the chain's genesis hash") as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'genesis_hash'").fetchone()
        return None if row is None else str(row[0])

    # -- checkpoint and window --------------------------------------------------------------

    def checkpoint(self) -> tuple[int, str] | None:
        """``(number, hash)`` of the last block every subscriber was handed, or None."""
        with self._read("read the checkpoint") as conn:
            row = conn.execute("SELECT number, hash FROM checkpoint WHERE id = 1").fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def save_blocks(self, blocks: Sequence[Block]) -> None:
        """Append ``blocks`` (strictly increasing numbers) to the window, move the checkpoint
        to the last of them and trim the window, all in one transaction.

        Either everything is saved or nothing is (disk full, I/O error): the checkpoint never
        points at a block that is not stored. The window is always the blocks numbered
        ``(last - window, last]``: the checkpoint follows the last block even if it is lower
        than before (an explicit replay from an older block), and blocks above it are dropped.
        """
        if not blocks:
            return
        _check_increasing(blocks)
        rows = [block_to_row(block) for block in blocks]
        last = blocks[-1]
        with self._write(f"save blocks {blocks[0].number}..{last.number}") as conn:
            conn.executemany(_INSERT_BLOCK, rows)
            conn.execute(_SET_CHECKPOINT, (last.number, last.hash))
            conn.execute(
                "DELETE FROM blocks WHERE number <= ? OR number > ?",
                (last.number - self._window, last.number),
            )

    def get_block(self, number: int) -> Block | None:
        """The stored block ``number``, or None when it is outside the window."""
        _check_number(number, "number")
        with self._read(f"read block {number}") as conn:
            row = conn.execute(
                f"SELECT {BLOCK_COLUMNS} FROM blocks WHERE number = ?", (number,)
            ).fetchone()
        return None if row is None else row_to_block(row, table="blocks")

    def get_range(self, start: int, limit: int) -> list[Block]:
        """Up to ``limit`` stored blocks numbered ``>= start``, in increasing order."""
        _check_number(start, "start")
        _check_number(limit, "limit")
        with self._read(f"read blocks from {start}") as conn:
            rows = conn.execute(
                f"SELECT {BLOCK_COLUMNS} FROM blocks WHERE number >= ? ORDER BY number LIMIT ?",
                (start, limit),
            ).fetchall()
        return [row_to_block(row, table="blocks") for row in rows]

    def latest(self) -> Block | None:
        """The highest-numbered stored block, or None when the window is empty."""
        with self._read("read the latest block") as conn:
            row = conn.execute(
                f"SELECT {BLOCK_COLUMNS} FROM blocks ORDER BY number DESC LIMIT 1"
            ).fetchone()
        return None if row is None else row_to_block(row, table="blocks")

    def window_bounds(self) -> tuple[int, int] | None:
        """``(lowest, highest)`` stored block numbers, or None when the window is empty."""
        with self._read("read the window bounds") as conn:
            low, high = conn.execute("SELECT min(number), max(number) FROM blocks").fetchone()
        return None if low is None else (int(low), int(high))

    # -- epoch trigger records --------------------------------------------------------------

    def trigger_done(self, name: str, epoch: int) -> bool:
        """True when ``(name, epoch)`` has a record (fired or failed): do not run it again."""
        _check_name(name)
        with self._read(f"read trigger {name!r}") as conn:
            row = conn.execute(
                "SELECT 1 FROM triggers WHERE name = ? AND epoch = ?", (name, epoch)
            ).fetchone()
        return row is not None

    def record_trigger(
        self,
        name: str,
        epoch: int,
        *,
        status: TriggerStatus,
        late: bool,
        detail: str = "",
        block_number: int | None = None,
        attempts: int = 1,
        recorded_at: float | None = None,
    ) -> None:
        """Record the outcome of trigger ``(name, epoch)`` (replacing an earlier record)."""
        _check_name(name)
        if status not in TRIGGER_STATUSES:
            raise ValueError(f"trigger status must be one of {TRIGGER_STATUSES}, got {status!r}")
        when = time.time() if recorded_at is None else float(recorded_at)
        row = (
            name,
            int(epoch),
            status,
            1 if late else 0,
            str(detail)[:MAX_TRIGGER_DETAIL_CHARS],
            block_number,
            int(attempts),
            when,
        )
        with self._write(f"record trigger {name!r} for epoch {epoch}") as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO triggers ({_TRIGGER_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

    def list_triggers(
        self,
        name: str | None = None,
        *,
        status: TriggerStatus | None = None,
        since_epoch: int | None = None,
        limit: int = 100,
    ) -> list[TriggerRecord]:
        """Trigger records, newest epoch first, optionally filtered."""
        _check_number(limit, "limit")
        clauses: list[str] = []
        params: list[object] = []
        if name is not None:
            clauses.append("name = ?")
            params.append(name)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if since_epoch is not None:
            clauses.append("epoch >= ?")
            params.append(since_epoch)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._read("list trigger records") as conn:
            rows = conn.execute(
                f"SELECT {_TRIGGER_COLUMNS} FROM triggers {where} "
                "ORDER BY epoch DESC, name LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [
            TriggerRecord(
                name=r[0],
                epoch=int(r[1]),
                status=r[2],
                late=bool(r[3]),
                detail=r[4],
                block_number=None if r[5] is None else int(r[5]),
                attempts=int(r[6]),
                recorded_at=float(r[7]),
            )
            for r in rows
        ]

    # -- redis outbox -----------------------------------------------------------------------

    def outbox_push(self, blocks: Sequence[Block]) -> int:
        """Queue ``blocks`` for the Redis publisher; returns how many old entries were dropped.

        Pushing a block already queued is a no-op (its number is its identity). When the outbox
        would exceed ``outbox_max`` it drops its *oldest* entries: a long Redis outage then
        costs the oldest blocks, never the feed's progress or memory, and Redis consumers see
        the jump in stream IDs. Drops are logged as a warning.
        """
        if not blocks:
            return 0
        rows = [block_to_row(block) for block in blocks]
        with self._write("queue blocks for Redis") as conn:
            conn.executemany(_INSERT_OUTBOX, rows)
            size = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
            excess = max(0, size - self._outbox_max)
            if excess:
                conn.execute(
                    "DELETE FROM outbox WHERE number IN "
                    "(SELECT number FROM outbox ORDER BY number LIMIT ?)",
                    (excess,),
                )
        if excess:
            logger.warning(
                "Redis outbox full (%d blocks): dropped the %d oldest queued blocks",
                self._outbox_max,
                excess,
            )
        return int(excess)

    def outbox_peek(self, limit: int) -> list[Block]:
        """The ``limit`` oldest queued blocks, in increasing order (not removed)."""
        _check_number(limit, "limit")
        with self._read("read the Redis outbox") as conn:
            rows = conn.execute(
                f"SELECT {BLOCK_COLUMNS} FROM outbox ORDER BY number LIMIT ?", (limit,)
            ).fetchall()
        return [row_to_block(row, table="outbox") for row in rows]

    def outbox_drop_through(self, number: int) -> int:
        """Remove every queued block numbered ``<= number`` (published); returns how many."""
        _check_number(number, "number")
        with self._write("trim the Redis outbox") as conn:
            cursor = conn.execute("DELETE FROM outbox WHERE number <= ?", (number,))
            return int(cursor.rowcount)

    def outbox_len(self) -> int:
        """How many blocks are queued."""
        with self._read("count the Redis outbox") as conn:
            return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            if self._closed:
                raise StoreError(f"cannot {action}: the store {self._path} is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise failures.translate(exc, path=self._path, action=action) from exc

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed whole, or rolled back whole."""
        with self._read(action) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise


def open_store(
    path: str | os.PathLike[str] | None = None,
    *,
    window: int = DEFAULT_WINDOW,
    outbox_max: int = DEFAULT_OUTBOX_MAX,
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
) -> CheckpointStore:
    """Open (creating if needed) the state file at ``path``; ``":memory:"`` keeps nothing.

    ``path=None`` uses :func:`default_state_path`. Raises :class:`StoreError` when the file is
    corrupt, not blockfeed's, newer than this code, read-only, or held by another blockfeed.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"window must be a positive number of blocks, got {window!r}")
    if isinstance(outbox_max, bool) or not isinstance(outbox_max, int) or outbox_max < 1:
        raise ConfigError(f"outbox_max must be a positive number of blocks, got {outbox_max!r}")
    if not busy_timeout_s >= 0:
        raise ConfigError(f"busy_timeout_s must be >= 0, got {busy_timeout_s!r}")
    if path is not None and os.fspath(path) == MEMORY:
        conn = sqlite3.connect(MEMORY, isolation_level=None, check_same_thread=False)
        _prepare(conn, MEMORY, wal=False)
        return CheckpointStore(conn, path=MEMORY, window=window, outbox_max=outbox_max, lock=None)

    file_path = Path(resolve_state_path(path))
    _check_location(file_path)
    lock = StateLock(file_path)
    try:
        check_file_header(lock.fd, str(file_path))
        _narrow_mode(lock.fd, file_path)
        try:
            conn = sqlite3.connect(
                str(file_path),
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout_s,
            )
        except sqlite3.Error as exc:
            raise failures.translate(exc, path=str(file_path), action="open") from exc
        try:
            _prepare(conn, str(file_path), wal=True)
        except BaseException:
            conn.close()
            raise
    except BaseException:
        lock.release()
        raise
    return CheckpointStore(
        conn, path=str(file_path), window=window, outbox_max=outbox_max, lock=lock
    )


def _check_location(path: Path) -> None:
    """Refuse paths we could not write to before touching them, with a message that says why."""
    if path.is_dir():
        raise StoreError(f"state path {path} is a directory; give a file path inside it")
    parent = path.parent
    if not parent.exists():
        try:
            parent.mkdir(parents=True, mode=DIR_MODE, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the state directory {parent}: {exc.strerror or exc}. Create it, "
                "or choose another state file (--state / BLOCKFEED_STATE)"
            ) from exc
    _narrow_default_dir(parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(
            f"the state directory {parent} is read-only for this user (SQLite needs to create "
            f"its journal files next to {path.name}). Make it writable, or choose another "
            "state file (--state / BLOCKFEED_STATE)"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(
            f"state file {path} is read-only for this user. Make it writable, or choose another "
            "state file (--state / BLOCKFEED_STATE)"
        )


def _narrow_default_dir(directory: Path) -> None:
    """Make blockfeed's own per-user data directory 0700 if an older version left it open.

    Only that directory: one the user chose (``--state /srv/x/state.sqlite``) keeps its mode.
    """
    environ = {k: v for k, v in os.environ.items() if k != STATE_ENV_VAR}
    try:
        if directory.resolve() != default_state_path(environ).parent.resolve():
            return
        info = directory.stat()
        if info.st_uid == os.geteuid() and info.st_mode & 0o077:
            directory.chmod(DIR_MODE)
    except OSError as exc:
        logger.warning("could not make %s private: %s", directory, exc.strerror)


def _narrow_mode(fd: int, path: Path) -> None:
    """Make a state file of this user (and its -wal / -shm) private, if it is not already."""
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or not info.st_mode & 0o077:
            return
        os.fchmod(fd, FILE_MODE)
        real = os.path.realpath(path)
        for suffix in ("-wal", "-shm"):
            with suppress(FileNotFoundError):
                os.chmod(real + suffix, FILE_MODE)
    except OSError as exc:
        logger.warning("could not make state file %s private: %s", path, exc.strerror)


def _prepare(conn: sqlite3.Connection, path: str, *, wal: bool) -> None:
    """Verify the file, migrate it, then set WAL; any trouble becomes a StoreError.

    The first migration runs before the switch to WAL, so a new file's header (with our
    ``application_id``) is written into the main file, where ``check_file_header`` reads it.
    """
    try:
        conn.execute("PRAGMA synchronous = NORMAL")
        check = conn.execute("PRAGMA quick_check").fetchall()
        if [tuple(row) for row in check] != [("ok",)]:
            raise failures.corrupt(path, f"integrity check: {check[0][0]}")
        migrate(conn, path)
        if wal:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"state file {path}: SQLite refused WAL mode (got {mode!r}); is the file on "
                    "a network file system? Put it on a local disk"
                )
        # A write at open proves the file is writable now, not at the first block.
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('opened_at', ?)",
            (repr(time.time()),),
        )
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(conn)
        raise failures.translate(exc, path=path, action="open the store") from exc


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is open; SQLite may already have rolled back (disk full)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            logger.debug("rollback failed; SQLite already ended the transaction", exc_info=True)


def _check_increasing(blocks: Sequence[Block]) -> None:
    previous: int | None = None
    for block in blocks:
        if not isinstance(block, Block):
            raise TypeError(f"save_blocks takes Block objects, got {type(block).__name__}")
        if previous is not None and block.number <= previous:
            raise ValueError(
                f"blocks must be in strictly increasing order: {block.number} after {previous}"
            )
        previous = block.number


def _check_number(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"trigger name must be a non-empty string, got {name!r}")


def _normalise_hash(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise ValueError(f"{what} must be a 0x-prefixed 32-byte hex string, got {value!r}")
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        raise ValueError(f"{what} is not valid hex: {value!r}") from None
    return value.lower()
