"""Block <-> table row. The header is kept as its wire JSON so replays are byte-for-byte complete,
and the contents (when the feed fetched any) as exact JSON, so a replayed block equals the
delivered one (see :mod:`blockfeed.contents.wire`).

Rows are read back through :func:`blockfeed.codec.header_from_json`, the same gate every header
from a node passes, so a tampered or damaged row surfaces as a StoreError, never as a bad Block.
"""

from __future__ import annotations

import json
from typing import Any

from blockfeed.codec import header_from_json
from blockfeed.contents.wire import contents_json, with_contents
from blockfeed.errors import MalformedFrame, StoreError
from blockfeed.types import Block, Header, Source

BLOCK_COLUMNS = (
    "number, hash, parent_hash, source, received_at, late, header, delivered_at, contents"
)

Row = tuple[int, str, str, str, float, int, str | None, float | None, str | None]


def header_json(header: Header) -> str:
    """Compact wire JSON of ``header``, equal to ``json.dumps(header.to_json())`` without
    spaces; written directly (hex needs no escaping) because it is most of save_blocks' cost."""
    logs = ",".join(f'"0x{log.hex()}"' for log in header.digest_logs)
    return (
        f'{{"parentHash":"0x{header.parent_hash.hex()}","number":"{hex(header.number)}",'
        f'"stateRoot":"0x{header.state_root.hex()}",'
        f'"extrinsicsRoot":"0x{header.extrinsics_root.hex()}","digest":{{"logs":[{logs}]}}}}'
    )


def block_to_row(block: Block) -> Row:
    """The row stored for ``block``."""
    header = None if block.header is None else header_json(block.header)
    return (
        block.number,
        block.hash,
        block.parent_hash,
        str(block.source),
        float(block.received_at),
        1 if block.late else 0,
        header,
        None if block.delivered_at is None else float(block.delivered_at),
        contents_json(block, exact=True),
    )


def row_to_block(row: tuple[Any, ...], *, table: str) -> Block:
    """The Block stored in ``row``; a row that does not make sense raises StoreError."""
    (number, block_hash, parent_hash, source, received_at, late, header_text, delivered_at,
     contents) = row
    try:
        header = None if header_text is None else header_from_json(json.loads(header_text))
        block = Block(
            number=int(number),
            hash=str(block_hash),
            parent_hash=str(parent_hash),
            source=Source(source),
            received_at=float(received_at),
            header=header,
            late=bool(late),
            delivered_at=None if delivered_at is None else float(delivered_at),
        )
        return with_contents(block, contents)
    except (ValueError, TypeError, MalformedFrame) as exc:
        raise StoreError(
            f"the state file's {table} table holds a damaged row for block {number!r} "
            f"({exc}); the file is corrupt: move it aside and start with a new state file"
        ) from exc
