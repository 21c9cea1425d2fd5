"""The state file's schema and its explicit, numbered migrations.

``PRAGMA user_version`` holds the schema version and ``PRAGMA application_id`` marks the file as
blockfeed's, so an unrelated SQLite file is refused instead of being written into. Migration
``k`` (1-based) takes a file from version ``k - 1`` to ``k`` in one transaction; a file newer
than this code is refused (downgrading would silently drop what the newer version keeps).
To change the schema, append a migration; never edit a released one.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from blockfeed.errors import StoreError
from blockfeed.store import failures

APPLICATION_ID = 0x626C6B66
"""ASCII ``blkf``: written into the SQLite header so other tools (and we) can recognise the file."""

_BLOCK_COLUMNS = """
    number INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    parent_hash TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at REAL NOT NULL,
    late INTEGER NOT NULL,
    header TEXT
"""

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: checkpoint, chain identity, recent-block window, trigger records, redis outbox.
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
        "CREATE TABLE checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1),"
        " number INTEGER NOT NULL, hash TEXT NOT NULL)",
        f"CREATE TABLE blocks ({_BLOCK_COLUMNS})",
        f"CREATE TABLE outbox ({_BLOCK_COLUMNS})",
        "CREATE TABLE triggers (name TEXT NOT NULL, epoch INTEGER NOT NULL,"
        " status TEXT NOT NULL CHECK (status IN ('fired', 'failed')),"
        " late INTEGER NOT NULL, block_number INTEGER, attempts INTEGER NOT NULL,"
        " detail TEXT NOT NULL, recorded_at REAL NOT NULL,"
        " PRIMARY KEY (name, epoch)) WITHOUT ROWID",
        f"PRAGMA application_id = {APPLICATION_ID}",
    ),
    # 2: when each block was handed to subscribers; a record of chain resets (F13, "follow").
    (
        "ALTER TABLE blocks ADD COLUMN delivered_at REAL",
        "ALTER TABLE outbox ADD COLUMN delivered_at REAL",
        "CREATE TABLE chain_resets (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,"
        " old_genesis TEXT, new_genesis TEXT NOT NULL, last_number INTEGER, last_hash TEXT,"
        " reason TEXT NOT NULL)",
    ),
    # 3: the block's contents (JSON of timestamp, spec_version, events, extrinsics; NULL for
    # header-only blocks), so catch-up, /blocks/{n}, replays and the outbox carry them.
    (
        "ALTER TABLE blocks ADD COLUMN contents TEXT",
        "ALTER TABLE outbox ADD COLUMN contents TEXT",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_BYTES = 100
APPLICATION_ID_OFFSET = 68
"""Where ``PRAGMA application_id`` lives in the 100-byte SQLite file header (big-endian)."""


def check_file_header(fd: int, path: str) -> None:
    """Refuse a file that is not blockfeed's by reading its header, before SQLite touches it.

    An empty file is a new store. Anything else must be an SQLite file carrying
    :data:`APPLICATION_ID`. The id is set in the first transaction, which runs before the
    switch to WAL, so it is in the main file from the start. Only a file whose header lacks it
    while a ``-wal`` file exists (a store of an older blockfeed killed before its first WAL
    checkpoint) is asked again, through a read-only SQLite connection. Nothing is written: no
    journal mode change, no lock file, no migration.
    """
    if os.fstat(fd).st_size == 0:
        return
    head = os.pread(fd, HEADER_BYTES, 0)
    if len(head) < HEADER_BYTES or not head.startswith(SQLITE_MAGIC):
        raise failures.corrupt(path, "no SQLite header")
    app_id = int.from_bytes(head[APPLICATION_ID_OFFSET : APPLICATION_ID_OFFSET + 4], "big")
    if app_id == APPLICATION_ID:
        return
    wal = Path(os.path.realpath(path) + "-wal")
    if app_id == 0 and wal.is_file() and wal.stat().st_size > 0 and _read_only_id(path) == (
        APPLICATION_ID
    ):
        return
    raise _foreign(path)


def _read_only_id(path: str) -> int | None:
    """``PRAGMA application_id`` through a read-only connection, None if it cannot be read."""
    try:
        conn = sqlite3.connect(f"file:{quote(os.path.realpath(path))}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        return _pragma_int(conn, "application_id")
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the file at ``path`` to :data:`SCHEMA_VERSION`, or refuse it with a StoreError.

    ``conn`` must be in autocommit mode (``isolation_level=None``); each step is its own
    ``BEGIN IMMEDIATE`` transaction, so a crash mid-migration leaves the previous version intact.
    """
    version = _pragma_int(conn, "user_version")
    app_id = _pragma_int(conn, "application_id")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"state file {path} has schema version {version}, newer than this blockfeed "
            f"understands ({SCHEMA_VERSION}). Upgrade blockfeed, or use another state file"
        )
    if version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables or app_id not in (0, APPLICATION_ID):
            raise _foreign(path)
    elif app_id != APPLICATION_ID:
        raise _foreign(path)
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[target - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _pragma_int(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


def _foreign(path: str) -> StoreError:
    return StoreError(
        f"{path} is an SQLite database but not a blockfeed state file; refusing to write into "
        "it. Point --state / BLOCKFEED_STATE at another file"
    )
