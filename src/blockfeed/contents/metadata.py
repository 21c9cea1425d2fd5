"""Runtime metadata cached per spec version, in the store's SQLite file when there is one.

Metadata is large (subtensor's is ~177 kB) and changes only with a runtime upgrade, so it is
fetched once per spec version and kept: in memory (parsed) and, when the feed has a file store,
in one additive table of that file, so a restarted feed does not fetch it again::

    CREATE TABLE IF NOT EXISTS runtime_metadata (
        spec_version INTEGER PRIMARY KEY, transaction_version INTEGER, metadata BLOB,
        saved_at REAL)

The table is opened on its own connection (WAL lets it share the file with the store); the
store's schema does not know it and needs no migration. A cache that cannot read or write its
table logs once and goes on in memory: metadata can always be fetched again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict

from blockfeed.contents.decode import BITTENSOR_SS58_FORMAT, RuntimeDecoder

logger = logging.getLogger("blockfeed.contents")

MEMORY_RUNTIMES = 8
"""Parsed runtimes kept in memory (most recently used); older ones are re-parsed from bytes."""
_TABLE = """
CREATE TABLE IF NOT EXISTS runtime_metadata (
    spec_version INTEGER PRIMARY KEY,
    transaction_version INTEGER NOT NULL,
    metadata BLOB NOT NULL,
    saved_at REAL NOT NULL
)
"""


class MetadataCache:
    """``spec_version -> RuntimeDecoder``; persistent when given a file path."""

    def __init__(
        self, path: str | None = None, *, ss58_format: int = BITTENSOR_SS58_FORMAT
    ) -> None:
        self._ss58_format = ss58_format
        self._runtimes: OrderedDict[int, RuntimeDecoder] = OrderedDict()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        if path and path != ":memory:":
            try:
                conn = sqlite3.connect(path, timeout=5.0, check_same_thread=False,
                                       isolation_level=None)
                conn.execute(_TABLE)
                self._conn = conn
            except sqlite3.Error as exc:
                logger.warning("metadata cache stays in memory: cannot use %s: %s", path, exc)

    @classmethod
    def for_store(cls, store: object | None, **kwargs: object) -> MetadataCache:
        """A cache in ``store``'s file (a ``CheckpointStore``), or in memory without one."""
        path = getattr(store, "path", None)
        return cls(path if isinstance(path, str) else None, **kwargs)  # type: ignore[arg-type]

    def loaded(self, spec_version: int) -> RuntimeDecoder | None:
        """The decoder if it is parsed in memory (no I/O: safe on the event loop)."""
        with self._lock:
            return self._runtimes.get(spec_version)

    def get(self, spec_version: int) -> RuntimeDecoder | None:
        """The decoder for this spec version, from memory or the file; None when unknown."""
        with self._lock:
            runtime = self._runtimes.get(spec_version)
            if runtime is not None:
                self._runtimes.move_to_end(spec_version)
                return runtime
            row = self._read(spec_version)
        if row is None:
            return None
        transaction_version, metadata = row
        return self._remember(RuntimeDecoder(metadata, spec_version, transaction_version,
                                             ss58_format=self._ss58_format))

    def put(
        self, spec_version: int, metadata: bytes, transaction_version: int = 1
    ) -> RuntimeDecoder:
        """Parse, keep and (with a file) persist fetched metadata; returns its decoder."""
        runtime = RuntimeDecoder(metadata, spec_version, transaction_version,
                                 ss58_format=self._ss58_format)
        with self._lock:
            self._write(spec_version, transaction_version, metadata)
        return self._remember(runtime)

    def stored_versions(self) -> list[int]:
        """Spec versions in the file (empty without one)."""
        with self._lock:
            if self._conn is None:
                return sorted(self._runtimes)
            try:
                rows = self._conn.execute(
                    "SELECT spec_version FROM runtime_metadata ORDER BY spec_version"
                ).fetchall()
            except sqlite3.Error:
                return []
        return [int(r[0]) for r in rows]

    def close(self) -> None:
        """Close the file connection (memory entries stay usable)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _remember(self, runtime: RuntimeDecoder) -> RuntimeDecoder:
        with self._lock:
            self._runtimes[runtime.spec_version] = runtime
            self._runtimes.move_to_end(runtime.spec_version)
            while len(self._runtimes) > MEMORY_RUNTIMES:
                self._runtimes.popitem(last=False)
        return runtime

    def _read(self, spec_version: int) -> tuple[int, bytes] | None:
        if self._conn is None:
            return None
        try:
            row = self._conn.execute(
                "SELECT transaction_version, metadata FROM runtime_metadata "
                "WHERE spec_version = ?",
                (spec_version,),
            ).fetchone()
        except sqlite3.Error as exc:
            self._give_up(exc)
            return None
        return None if row is None else (int(row[0]), bytes(row[1]))

    def _write(self, spec_version: int, transaction_version: int, metadata: bytes) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(
                "INSERT OR REPLACE INTO runtime_metadata VALUES (?, ?, ?, ?)",
                (spec_version, transaction_version, bytes(metadata), time.time()),
            )
        except sqlite3.Error as exc:
            self._give_up(exc)

    def _give_up(self, exc: sqlite3.Error) -> None:
        logger.warning("metadata cache stays in memory from now on: %s", exc)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
