"""The ordered merge: the one place that decides what is delivered. Exactly once, in order.

Every header from every source (WebSocket notification, HTTP poll or probe, range backfill) is
*offered* here as a :class:`Candidate`. Nothing else in blockfeed creates a delivered
:class:`~blockfeed.types.Block`; the follower only hands out what :meth:`Merge.drain` returns.

The exactly-once argument
-------------------------
The merge keeps a cursor: ``last`` = the (number, hash) of the last delivered block (or, before
the first delivery, the start number, and the checkpoint hash if resuming). :meth:`drain` is the
only code that appends to the output, and it does so in a loop that

1. looks only at candidates for ``next = last.number + 1`` (or the start number),
2. delivers one of them only if its ``parent_hash == last.hash`` (with no previous block:
   only if its hash was *confirmed* by the chain's own index, i.e. ``chain_getBlockHash`` or
   ``chain_getFinalizedHead`` of the endpoint that served it; with a ``start_quorum``, only if
   that many endpoints each listed it by number: see :meth:`Merge.start_votes`),
3. then sets ``last`` to the delivered block, and discards every other candidate for that number.

Hence the output numbers are ``start, start+1, start+2, ...``: strictly increasing (step 3 moves
the cursor forward), each at most once (a number below or equal to the cursor is never looked at
again: :meth:`offer` drops it), with no gaps (step 1 never skips a number), and parent-linked
(step 2). Hashes are always computed locally from the header bytes (``codec.block_hash``), never
taken from the wire, so "parent-linked" is a statement about the real headers. A candidate
whose parent does not match is *rejected* (reported to the follower, which re-checks the number
on another source and quarantines the endpoint that disagrees); the gap it leaves is filled by
number like any other gap. Missing numbers are reported by :meth:`gap` for the driver to fetch;
fetched headers pass the same gate. Because ordering depends only on the cursor, any
interleaving of duplicate, late, reordered or skipping inputs from any number of sources yields
the same output (the property test in ``tests/core/test_core_merge_property.py`` checks this).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

from blockfeed.codec import block_hash
from blockfeed.types import Block, Header, Source

DEFAULT_MAX_PENDING = 4096
"""Numbers held above a gap; beyond this the highest are dropped (and fetched again later)."""
DEFAULT_RECENT_WINDOW = 256
"""Delivered (number, hash) pairs kept to spot a source that contradicts a delivered block."""


def hex_of(raw: bytes) -> str:
    """``0x``-hex, lower case, as hashes are compared everywhere in the core."""
    return "0x" + raw.hex()


@dataclass(frozen=True, slots=True)
class Candidate:
    """A header offered for delivery, with where and when it was seen."""

    header: Header
    hash: str
    """Computed locally: blake2b-256(SCALE(header))."""
    source: Source
    endpoint: str
    received_at: float
    confirmed: bool = False
    """True when the endpoint's own index (getBlockHash / getFinalizedHead) named this hash."""

    @classmethod
    def of(
        cls,
        header: Header,
        *,
        source: Source,
        endpoint: str,
        received_at: float,
        confirmed: bool = False,
    ) -> Candidate:
        """Build a candidate, computing the hash from the header bytes."""
        return cls(header, block_hash(header), source, endpoint, received_at, confirmed)

    @property
    def number(self) -> int:
        """The header's block number."""
        return self.header.number

    @property
    def parent_hash(self) -> str:
        """The header's parent hash as ``0x``-hex."""
        return hex_of(self.header.parent_hash)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A candidate that contradicts the delivered chain: its endpoint is suspect."""

    number: int
    hash: str
    endpoint: str
    source: Source
    reason: str


@dataclass(frozen=True, slots=True)
class RangeCheck:
    """Outcome of checking a fetched range: how many headers were usable and why it stopped."""

    accepted: int
    """Headers from the start of the range that passed every check and were offered."""
    unknown_from: int | None = None
    """First number the endpoint did not know (``chain_getBlockHash`` returned null)."""
    invalid_reason: str | None = None
    """Set when a header did not match its listed hash or did not link to its neighbour."""


class OfferOutcome:
    """What :meth:`Merge.offer` did with a candidate (plain string constants)."""

    HELD = "held"
    """New: held until it can be delivered (possibly delivered by the next drain)."""
    DUPLICATE = "duplicate"
    """Same hash as a block already delivered or held."""
    STALE = "stale"
    """Older than the cursor and not in the recent window: nothing to compare it with."""
    CONFLICT = "conflict"
    """Contradicts a block already delivered (same number, other hash)."""


class Merge:
    """Ordered, verified, exactly-once merge of candidates from all sources."""

    def __init__(
        self,
        *,
        anchor: tuple[int, str] | None = None,
        start_number: int | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        recent_window: int = DEFAULT_RECENT_WINDOW,
    ) -> None:
        """Start after ``anchor`` (checkpoint: number, hash), at ``start_number``, or at the head.

        With neither, the first header seen from any source fixes the start number.
        """
        if anchor is not None and start_number is not None:
            raise ValueError("give either anchor or start_number, not both")
        if start_number is not None and start_number < 0:
            raise ValueError("start_number must be >= 0")
        self._last_number: int | None = None
        self._last_hash: str | None = None
        if anchor is not None:
            self._last_number, self._last_hash = anchor[0], anchor[1].lower()
        self._start_number = start_number
        self._pending: dict[int, dict[str, Candidate]] = {}
        self._max_pending = max_pending
        self._recent: deque[tuple[int, str]] = deque(maxlen=recent_window)
        self._recent_by_number: dict[int, str] = {}
        self.start_quorum: int | None = None
        """Before the first delivery with no anchor: how many endpoints must have listed the
        start block's hash by number (:meth:`offer_range`) before it is delivered. None: one
        confirmation from any source will do. The follower sets it (and lowers it when fewer
        healthy endpoints are left)."""
        self._start_votes: dict[int, dict[str, str]] = {}
        self.best_known: int | None = None
        """Highest number any source has claimed (an upper bound of what can be fetched)."""
        self.delivered_count = 0
        self._out: list[Block] = []
        self._rejections: list[Rejection] = []
        if anchor is not None:
            self._remember(anchor[0], anchor[1].lower())

    # -- inputs ---------------------------------------------------------------------------------

    def offer(self, candidate: Candidate) -> str:
        """Offer one header; returns an :class:`OfferOutcome` value. Call :meth:`drain` after."""
        number = candidate.number
        known = self._recent_by_number.get(number)
        if known is not None:
            if known == candidate.hash:
                return OfferOutcome.DUPLICATE
            self._rejections.append(
                Rejection(number, candidate.hash, candidate.endpoint, candidate.source,
                          f"block #{number} contradicts the delivered block")
            )
            return OfferOutcome.CONFLICT
        if self._last_number is not None and number <= self._last_number:
            return OfferOutcome.STALE
        start = self._start_number
        if self._last_number is None and start is not None and number < start:
            return OfferOutcome.STALE
        if self.best_known is None or number > self.best_known:
            self.best_known = number
        slot = self._pending.setdefault(number, {})
        previous = slot.get(candidate.hash)
        if previous is not None:
            if candidate.confirmed and not previous.confirmed:
                # Keep the earliest time and source, but remember the chain vouched for it.
                slot[candidate.hash] = Candidate(
                    previous.header, previous.hash, previous.source, previous.endpoint,
                    previous.received_at, True,
                )
                return OfferOutcome.HELD
            return OfferOutcome.DUPLICATE
        slot[candidate.hash] = candidate
        self._trim()
        return OfferOutcome.HELD

    def offer_range(
        self,
        start: int,
        hashes: Sequence[str | None],
        headers: Sequence[Header | None],
        *,
        endpoint: str,
        received_at: float,
        check_only_first: bool = False,
    ) -> RangeCheck:
        """Check and offer a fetched range ``start, start+1, ...``.

        ``hashes[i]`` is what ``chain_getBlockHash(start+i)`` returned and ``headers[i]`` the
        header fetched for it. Each header must hash to its listed hash, carry the right number
        and link to the previous one; the first failure stops the range (everything before it is
        still offered, as confirmed backfill). ``check_only_first``: block ``start`` was fetched
        only so the next one's link can be checked; it is not offered (and may be unknown).
        Before the first delivery, the endpoint's listed hash for the start number counts as its
        vote (:meth:`start_votes`), if its link to the block before it was checked.
        """
        accepted = 0
        previous_hash: str | None = None
        linked = not check_only_first
        for offset, listed in enumerate(hashes):
            number = start + offset
            check_only = check_only_first and offset == 0
            if listed is None:
                if check_only:
                    continue  # nothing to link to (e.g. the node's first block): check the rest
                return RangeCheck(accepted, unknown_from=number)
            header = headers[offset] if offset < len(headers) else None
            if header is None:
                return RangeCheck(accepted, invalid_reason=f"no header for block #{number}")
            if header.number != number:
                return RangeCheck(
                    accepted, invalid_reason=f"asked for #{number}, got header #{header.number}"
                )
            computed = block_hash(header)
            if computed != listed.lower():
                return RangeCheck(
                    accepted, invalid_reason=f"header #{number} does not hash to its listed hash"
                )
            if previous_hash is not None and hex_of(header.parent_hash) != previous_hash:
                return RangeCheck(
                    accepted, invalid_reason=f"header #{number} does not link to #{number - 1}"
                )
            if previous_hash is not None:
                linked = True
            previous_hash = computed
            if check_only:
                continue
            if self._last_hash is None and number == self.next_number and linked:
                self._start_votes.setdefault(number, {})[endpoint] = computed
            self.offer(Candidate(header, computed, Source.BACKFILL, endpoint, received_at, True))
            accepted += 1
        return RangeCheck(accepted)

    def start_votes(self, number: int) -> dict[str, str]:
        """Endpoint -> the hash it listed for start block ``number`` (before the first delivery)."""
        return dict(self._start_votes.get(number, {}))

    def move_start(self, number: int) -> None:
        """Before the first delivery, start at ``number`` instead (a head start whose first
        block could not be checked against its parent moves one block on); held blocks below it
        and their votes are dropped."""
        if self._last_number is not None:
            raise ValueError("the start can only move before the first delivery")
        self._start_number = number
        for held in [n for n in self._pending if n < number]:
            del self._pending[held]
        for voted in [n for n in self._start_votes if n < number]:
            del self._start_votes[voted]

    def discard_votes(self, endpoint: str) -> None:
        """Forget ``endpoint``'s start votes (it was found lying or quarantined)."""
        for votes in self._start_votes.values():
            votes.pop(endpoint, None)

    # -- outputs --------------------------------------------------------------------------------

    def drain(self) -> list[Block]:
        """Deliver every block that now links to the cursor, in order; clears the buffer."""
        while True:
            number = self.next_number
            if number is None:
                break
            slot = self._pending.get(number)
            if not slot:
                break
            chosen = self._choose(number, slot)
            if chosen is None:
                break
            self._deliver(chosen)
        out, self._out = self._out, []
        return out

    def rejections(self) -> list[Rejection]:
        """Candidates found to contradict the delivered chain since the last call; clears."""
        out, self._rejections = self._rejections, []
        return out

    def gap(self, *, chunk: int) -> tuple[int, int] | None:
        """The next range ``(start, end)`` (inclusive) to fetch by number, at most ``chunk`` long.

        None when nothing is known to be missing. Before the first delivery a held but
        unconfirmed start block is also "missing": fetching it by number confirms it.
        """
        number = self.next_number
        if number is None or self.best_known is None or number > self.best_known:
            return None
        if number in self._pending and self._last_hash is not None:
            return None  # drain delivers or rejects it; nothing to fetch
        higher = [n for n in self._pending if n > number]
        end = min(higher) - 1 if higher else self.best_known
        if number in self._pending:
            end = number  # unconfirmed start block: confirm just it
        return number, min(end, number + chunk - 1)

    @property
    def next_number(self) -> int | None:
        """The only number that may be delivered next (None: start at the first head seen)."""
        if self._last_number is not None:
            return self._last_number + 1
        if self._start_number is not None:
            return self._start_number
        if self._pending:
            return min(self._pending)
        return None

    @property
    def last(self) -> tuple[int, str] | None:
        """(number, hash) of the last delivered block, or the resume anchor."""
        if self._last_number is None or self._last_hash is None:
            return None
        return self._last_number, self._last_hash

    def delivered_hash(self, number: int) -> str | None:
        """Hash of delivered block ``number`` if it is still in the recent window."""
        return self._recent_by_number.get(number)

    def pending_numbers(self) -> list[int]:
        """Numbers held above the cursor (sorted), for status and tests."""
        return sorted(self._pending)

    # -- internals ------------------------------------------------------------------------------

    def _choose(self, number: int, slot: dict[str, Candidate]) -> Candidate | None:
        if self._last_hash is None and self.start_quorum is not None:
            # No previous block, several endpoints: enough of them must have listed the hash.
            votes = Counter(self._start_votes.get(number, {}).values())
            eligible = [c for c in slot.values() if votes[c.hash] >= self.start_quorum]
            if not eligible:
                return None
            chosen = min(eligible, key=lambda c: (-votes[c.hash], c.received_at))
            self._reject_others(number, slot, chosen, "disagrees with the start block the "
                                "endpoints agreed on")
            return chosen
        if self._last_hash is None:
            # No previous block to link to: only a hash the chain's index vouched for will do.
            confirmed = [c for c in slot.values() if c.confirmed]
            if not confirmed:
                return None
            chosen = min(confirmed, key=lambda c: c.received_at)
            self._reject_others(number, slot, chosen, "disagrees with the confirmed start block")
            return chosen
        linked = [c for c in slot.values() if c.parent_hash == self._last_hash]
        if not linked:
            self._reject_others(number, slot, None, f"parent is not block #{number - 1}")
            del self._pending[number]
            return None
        # Two different headers that both link can only be a forgery; the one the chain's
        # index vouched for wins, then the earliest.
        chosen = min(linked, key=lambda c: (not c.confirmed, c.received_at))
        self._reject_others(number, slot, chosen, "disagrees with the delivered block")
        return chosen

    def _reject_others(
        self, number: int, slot: dict[str, Candidate], chosen: Candidate | None, reason: str
    ) -> None:
        for candidate in slot.values():
            if chosen is None or candidate.hash != chosen.hash:
                if chosen is None:
                    detail = f"block #{number} from {candidate.source}: {reason}"
                else:
                    detail = f"block #{number} from {candidate.source} {reason}"
                self._rejections.append(
                    Rejection(number, candidate.hash, candidate.endpoint, candidate.source, detail)
                )

    def _deliver(self, chosen: Candidate) -> None:
        number = chosen.number
        del self._pending[number]
        self._start_votes.clear()
        self._last_number, self._last_hash = number, chosen.hash
        self._remember(number, chosen.hash)
        self.delivered_count += 1
        self._out.append(
            Block(
                number=number,
                hash=chosen.hash,
                parent_hash=chosen.parent_hash,
                source=chosen.source,
                received_at=chosen.received_at,
                header=chosen.header,
                late=chosen.source is Source.BACKFILL,
            )
        )

    def _remember(self, number: int, hash_: str) -> None:
        if len(self._recent) == self._recent.maxlen:
            old_number, _ = self._recent[0]
            self._recent_by_number.pop(old_number, None)
        self._recent.append((number, hash_))
        self._recent_by_number[number] = hash_

    def _trim(self) -> None:
        while len(self._pending) > self._max_pending:
            del self._pending[max(self._pending)]
