"""A block as a Redis stream entry, and the checks a reader applies to a run of entries.

Entry ID ``<number>-0`` (block 0 gets ``0-1``, because Redis refuses the ID ``0-0``). Fields,
all strings: ``number``, ``hash``, ``parent_hash``, ``source``, ``received_at`` (``repr`` of the
float, so it round-trips exactly), ``delivered_at`` (the same, when the feed handed it over),
``late`` (``"0"``/``"1"``) and ``header`` (the header's JSON-RPC
wire shape, compact JSON; absent when the block has no header) and ``contents`` (JSON of
``timestamp``, ``spec_version``, ``events``, ``extrinsics``, integers beyond 2^53 as text; absent
when the feed fetches headers only).

Pure functions and one small state object; no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from blockfeed.codec import block_hash, header_from_json, parse_hash
from blockfeed.contents.wire import contents_json, with_contents
from blockfeed.errors import MalformedFrame, VerificationError
from blockfeed.types import Block, Header, Source

_FIELDS_REQUIRED = ("number", "hash", "parent_hash", "source", "received_at")


def stream_id(number: int) -> str:
    """The stream ID of block ``number``: ``<number>-0``, or ``0-1`` for the genesis block."""
    if number < 0:
        raise ValueError("block numbers are never negative")
    return f"{number}-0" if number > 0 else "0-1"


def read_position(after: int | None) -> str:
    """The ID to read *after* so that the first entry returned is block ``after + 1``."""
    if after is None or after < 0:
        return "0-0"
    return stream_id(after)


def number_of_id(entry_id: str) -> int:
    """The block number an entry ID stands for; :class:`MalformedFrame` for foreign IDs."""
    millis, _, seq = entry_id.partition("-")
    if not millis.isdigit() or seq not in ("0", "1") or (seq == "1") != (millis == "0"):
        raise MalformedFrame(
            f"stream entry {entry_id!r} was not written by blockfeed (IDs are <number>-0)"
        )
    return int(millis)


def entry_fields(block: Block) -> dict[str, str]:
    """The stream fields for ``block`` (see the module docstring)."""
    fields = {
        "number": str(block.number),
        "hash": block.hash,
        "parent_hash": block.parent_hash,
        "source": str(block.source),
        "received_at": repr(float(block.received_at)),
        "late": "1" if block.late else "0",
    }
    if block.delivered_at is not None:
        fields["delivered_at"] = repr(float(block.delivered_at))
    if block.header is not None:
        fields["header"] = json.dumps(block.header.to_json(), separators=(",", ":"))
    contents = contents_json(block)
    if contents is not None:
        fields["contents"] = contents
    return fields


def block_from_entry(entry_id: str, fields: Mapping[str, Any], *, stream: str) -> Block:
    """Decode and verify one entry: the fields agree with the ID and the header hashes right.

    Raises :class:`MalformedFrame` for an entry blockfeed did not write (or that was damaged) and
    :class:`VerificationError` when the header does not hash to the recorded hash.
    """
    number = number_of_id(entry_id)
    where = f"stream {stream!r} entry {entry_id}"
    missing = [name for name in _FIELDS_REQUIRED if name not in fields]
    if missing:
        raise MalformedFrame(f"{where} is not a blockfeed block: missing {', '.join(missing)}")
    try:
        field_number = int(fields["number"])
        hash_ = parse_hash(fields["hash"], "hash")
        parent_hash = parse_hash(fields["parent_hash"], "parent_hash")
        source = Source(fields["source"])
        received_at = float(fields["received_at"])
        delivered = fields.get("delivered_at")
        delivered_at = None if delivered is None else float(delivered)
    except (ValueError, TypeError) as exc:
        raise MalformedFrame(f"{where} is not a blockfeed block: {exc}") from None
    if field_number != number:
        raise MalformedFrame(f"{where} says number {field_number}, its ID says {number}")
    header = _header(fields.get("header"), where) if "header" in fields else None
    if header is not None:
        _verify_header(header, number, hash_, parent_hash, where)
    block = Block(
        number=number,
        hash=hash_,
        parent_hash=parent_hash,
        source=source,
        received_at=received_at,
        header=header,
        late=fields.get("late") == "1",
        delivered_at=delivered_at,
    )
    try:
        return with_contents(block, fields.get("contents"))
    except (ValueError, TypeError) as exc:
        raise MalformedFrame(f"{where} has contents blockfeed did not write: {exc}") from None


def _header(raw: Any, where: str) -> Header:
    try:
        obj = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise MalformedFrame(f"{where} has a header that is not JSON: {exc}") from None
    try:
        return header_from_json(obj)
    except MalformedFrame as exc:
        raise MalformedFrame(f"{where}: {exc}") from None


def _verify_header(header: Header, number: int, hash_: str, parent_hash: str, where: str) -> None:
    if header.number != number:
        raise VerificationError(f"{where}: header number {header.number} is not {number}")
    if "0x" + header.parent_hash.hex() != parent_hash:
        raise VerificationError(f"{where}: header parent hash differs from parent_hash")
    computed = block_hash(header)
    if computed != hash_:
        raise VerificationError(f"{where}: header hashes to {computed}, entry says {hash_}")


class ChainCheck:
    """Checks that blocks read from a stream form one chain: consecutive and parent-linked.

    ``expect(block)`` returns normally when ``block`` is the next block; raises
    :class:`StreamGapFound` when numbers were skipped (the caller decides whether a gap is
    fatal) and :class:`VerificationError` when the parent link is broken or numbers go back.
    After a gap is accepted with :meth:`accept_gap`, the chain continues from the new block.

    With ``consecutive=False`` (consumer groups, where other consumers take some entries)
    only increasing numbers are required, and parent links are checked when numbers touch.
    """

    def __init__(
        self, *, last_number: int | None, last_hash: str | None, consecutive: bool = True
    ) -> None:
        self.last_number = last_number
        self.last_hash = last_hash
        self._consecutive = consecutive

    def expect(self, block: Block) -> None:
        """Accept ``block`` as the next one, or raise (see the class docstring)."""
        last = self.last_number
        if last is not None:
            if block.number <= last:
                raise VerificationError(
                    f"block {block.number} arrived after block {last}: the stream went backwards"
                )
            if block.number > last + 1 and self._consecutive:
                raise StreamGapFound(expected=last + 1, found=block.number)
            if block.number == last + 1 and self.last_hash is not None:
                if block.parent_hash != self.last_hash:
                    raise VerificationError(
                        f"block {block.number} has parent {block.parent_hash}, but block {last} "
                        f"is {self.last_hash}: the stream mixes two chains"
                    )
        self._advance(block)

    def accept_gap(self, block: Block) -> None:
        """Continue the chain from ``block`` after a gap the caller chose to accept."""
        self._advance(block)

    def _advance(self, block: Block) -> None:
        self.last_number = block.number
        self.last_hash = block.hash


class StreamGapFound(Exception):
    """Internal signal from :class:`ChainCheck`; the consumer turns it into ``StreamGap``."""

    def __init__(self, *, expected: int, found: int) -> None:
        super().__init__(f"expected block {expected}, found {found}")
        self.expected = expected
        self.found = found
