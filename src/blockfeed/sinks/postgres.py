"""PostgreSQL sink: one row per block in ``blockfeed.blocks``, the writer's cursor beside it.

Why asyncpg rather than psycopg 3: it is asyncio-native (the sink runs in the feed's loop), it
speaks the binary protocol, and a whole batch goes over as a handful of arrays in one
``INSERT ... SELECT FROM unnest(...)`` statement, so a 500-block batch costs one round trip and
one commit. psycopg 3 would do as well with ``COPY`` but needs libpq on the machine.

Exactly once, with several writers on one database:

* Each batch is **one transaction**: the rows and the writer's row in ``blockfeed.cursors``
  commit together or not at all, so a writer SIGKILLed mid-batch leaves the table as it was
  before the batch (PostgreSQL rolls the open transaction back).
* **Idempotent by number**: ``number`` is the primary key and rows go in with
  ``ON CONFLICT (number) DO NOTHING``; a block another writer (or this one before a crash) already
  wrote is skipped. Skipped numbers are then read back and compared: **a different hash at an
  existing number is refused loudly** (:class:`SinkRefused`, the transaction rolls back), as is a
  batch whose first block does not link to the stored block before it.
* On (re)connect the sink resumes after the newest row in the table (whoever wrote it), so
  redundant writers leave one consecutive, parent-linked run of rows.

Migrations are numbered (``blockfeed.schema_migrations``) and applied under an advisory lock, so
two writers starting together cannot both apply one.
"""

from __future__ import annotations

import re
import socket
from typing import Any
from urllib.parse import urlsplit

from blockfeed.contents.wire import contents_json
from blockfeed.errors import ConfigError
from blockfeed.sinks.base import CursorSink, SinkRefused, block_row
from blockfeed.types import Block
from blockfeed.util.redact import redact_url

try:
    import asyncpg
except ImportError:  # pragma: no cover - asyncpg is a dependency
    asyncpg = None

SCHEMES = ("postgresql", "postgres")
DEFAULT_WRITER = f"blockfeed@{socket.gethostname()}"
"""One cursor row per machine by default; redundant writers on one host share it harmlessly."""
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_COMMAND_TIMEOUT_S = 30.0
_MIGRATION_LOCK = 0x626C6B66  # "blkf": pg_advisory_xact_lock key for migrations

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE blockfeed.blocks (
            number          bigint PRIMARY KEY CHECK (number >= 0),
            hash            text NOT NULL,
            parent_hash     text NOT NULL,
            state_root      text,
            extrinsics_root text,
            received_at     timestamptz NOT NULL,
            delivered_at    timestamptz,
            contents        jsonb
        );
        CREATE TABLE blockfeed.cursors (
            writer     text PRIMARY KEY,
            number     bigint NOT NULL,
            hash       text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
)
"""Versioned schema changes, applied in order; never edit one that has shipped, add one."""

_INSERT = """
INSERT INTO blockfeed.blocks
    (number, hash, parent_hash, state_root, extrinsics_root, received_at, delivered_at, contents)
SELECT t.number, t.hash, t.parent_hash, t.state_root, t.extrinsics_root,
       to_timestamp(t.received_at), to_timestamp(t.delivered_at), t.contents::jsonb
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::float8[], $7::float8[], $8::text[])
     AS t(number, hash, parent_hash, state_root, extrinsics_root, received_at, delivered_at,
          contents)
ON CONFLICT (number) DO NOTHING
RETURNING number
"""
_CURSOR = """
INSERT INTO blockfeed.cursors (writer, number, hash, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (writer) DO UPDATE SET number = excluded.number, hash = excluded.hash,
                                   updated_at = excluded.updated_at
"""


def check_postgres_url(url: str) -> str:
    """Return ``url`` if it is a PostgreSQL URL, else raise a redacted :class:`ConfigError`."""
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in SCHEMES or not parts.hostname:
        raise ConfigError(
            f"not a PostgreSQL URL: {redact_url(str(url))} (expected postgresql://user@host/db)"
        )
    return url


class PostgresSink(CursorSink):
    """Writes every block into ``blockfeed.blocks``, in order, exactly once across writers.

    * ``writer``: this writer's name in ``blockfeed.cursors`` (one row per writer).
    * Other keywords: see :class:`~blockfeed.sinks.base.CursorSink` (``store``, ``batch_size``,
      ``outbox_limit``, ``reconnect_delays``, ...).
    """

    kind = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        writer: str = DEFAULT_WRITER,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        command_timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S,
        **options: Any,
    ) -> None:
        if asyncpg is None:  # pragma: no cover
            raise ConfigError("the PostgreSQL sink needs the asyncpg package")
        super().__init__(check_postgres_url(url), **options)
        if not isinstance(writer, str) or not writer.strip():
            raise ConfigError("the writer name must be a non-empty string")
        self.writer = writer
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = command_timeout_s
        self._conn: Any = None
        self._transient = (
            OSError,
            TimeoutError,
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.CannotConnectNowError,
            asyncpg.exceptions.AdminShutdownError,
        )

    async def _connect(self) -> int | None:
        self._conn = await asyncpg.connect(
            self._secret_url,
            timeout=self._connect_timeout_s,
            command_timeout=self._command_timeout_s,
        )
        try:
            await migrate(self._conn)
            row = await self._conn.fetchrow(
                "SELECT number FROM blockfeed.blocks ORDER BY number DESC LIMIT 1"
            )
        except asyncpg.PostgresError as exc:
            if isinstance(exc, self._transient):
                raise
            raise SinkRefused(f"PostgreSQL {self.url} refused: {self._describe(exc)}") from None
        return None if row is None else int(row["number"])

    async def _write(self, blocks: list[Block]) -> None:
        try:
            await self._write_batch(blocks)
        except asyncpg.PostgresError as exc:
            if isinstance(exc, self._transient):
                raise
            raise SinkRefused(f"PostgreSQL {self.url} refused: {self._describe(exc)}") from None

    async def _write_batch(self, blocks: list[Block]) -> None:
        conn = self._conn
        rows = [block_row(b) for b in blocks]
        contents = [_jsonb_text(b) for b in blocks]
        columns = [
            [r[name] for r in rows]
            for name in (
                "number",
                "hash",
                "parent_hash",
                "state_root",
                "extrinsics_root",
                "received_at",
                "delivered_at",
            )
        ]
        first = blocks[0]
        async with conn.transaction():
            if first.number > 0:
                before = await conn.fetchval(
                    "SELECT hash FROM blockfeed.blocks WHERE number = $1", first.number - 1
                )
                if before is not None and before != first.parent_hash:
                    raise SinkRefused(
                        f"PostgreSQL {self.url}: block {first.number} has parent "
                        f"{first.parent_hash}, but blockfeed.blocks has {before} at "
                        f"{first.number - 1}: another chain is in this table; not writing"
                    )
            inserted = {r["number"] for r in await conn.fetch(_INSERT, *columns, contents)}
            skipped = [b for b in blocks if b.number not in inserted]
            if skipped:
                await self._check_existing(conn, skipped)
            last = blocks[-1]
            await conn.execute(_CURSOR, self.writer, last.number, last.hash)

    async def _check_existing(self, conn: Any, skipped: list[Block]) -> None:
        """Rows another writer put there must be the same blocks; anything else is an error."""
        stored = {
            r["number"]: r["hash"]
            for r in await conn.fetch(
                "SELECT number, hash FROM blockfeed.blocks WHERE number = ANY($1::bigint[])",
                [b.number for b in skipped],
            )
        }
        for block in skipped:
            theirs = stored.get(block.number)
            if theirs != block.hash:
                raise SinkRefused(
                    f"PostgreSQL {self.url}: blockfeed.blocks already has block {block.number} "
                    f"with hash {theirs}, ours is {block.hash}: another chain is written into "
                    "this table; not overwriting"
                )

    async def _ping(self) -> None:
        await self._conn.execute("SELECT 1")

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close(timeout=2.0)
            except Exception:
                conn.terminate()

    def status(self) -> dict[str, Any]:
        out = super().status()
        out["writer"] = self.writer
        return out


async def migrate(conn: Any) -> int:
    """Bring the ``blockfeed`` schema to the newest version; return that version."""
    newest = MIGRATIONS[-1][0]
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE SCHEMA IF NOT EXISTS blockfeed;"
            "CREATE TABLE IF NOT EXISTS blockfeed.schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await conn.fetchval("SELECT max(version) FROM blockfeed.schema_migrations")
        current = int(current or 0)
        if current > newest:
            raise SinkRefused(
                f"the blockfeed schema is at version {current}, newer than this blockfeed "
                f"knows ({newest}); upgrade blockfeed"
            )
        for version, sql in MIGRATIONS:
            if version > current:
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO blockfeed.schema_migrations (version) VALUES ($1)", version
                )
    return newest


_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
"""``\\u0000`` as a JSON escape (not a literal backslash before ``u0000``)."""


def _jsonb_text(block: Block) -> str | None:
    """The block's contents as JSON for the ``contents`` column (None for headers only).

    JSONB refuses the NUL character, which a decoded remark may hold: it is written as U+FFFD,
    so anyone's on-chain text cannot stop the sink."""
    text = contents_json(block)
    return None if text is None else _NUL_ESCAPE.sub(r"\1\\ufffd", text)
