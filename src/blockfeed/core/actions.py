"""What the follower asks the driver to do: small frozen dataclasses, one per kind of I/O.

The driver executes each action and reports back with the matching ``on_*`` input, passing the
action object itself so a late answer can never be mistaken for a newer request's. Every action
that is started must end in exactly one result or one ``on_failure(action, ...)`` call.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a WebSocket to ``endpoint``; report ``on_ws_connected`` or ``on_failure``."""

    endpoint: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Subscribe to finalized heads on the open socket; report ``on_ws_subscribed`` or
    ``on_failure``; then forward each notification to ``on_ws_header`` and the socket's end to
    ``on_ws_closed``."""

    endpoint: str
    attempt: int


@dataclass(frozen=True, slots=True)
class CloseSocket:
    """Close the socket of ``attempt`` (if it is still open). No report is expected."""

    endpoint: str
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class Poll:
    """Read the finalized head over HTTP (``chain_getFinalizedHead``, then ``chain_getHeader``).

    If the head hash equals ``known_hash``, skip ``chain_getHeader`` and report the hash with no
    header: the chain has not moved, and the miss costs one request. Report with
    ``on_poll_result`` or ``on_failure``.
    """

    endpoint: str
    seq: int
    known_number: int | None = None
    known_hash: str | None = None
    purpose: str = "poll"
    """``poll`` (phase-locked, socket down) or ``hedge`` (socket up but the block is late)."""
    transport: str = "http"
    """``http``, or ``ws``: as requests on the open socket of ``endpoint`` while every
    endpoint's HTTP side is backing off (a silent subscription does not mean a dead socket)."""


@dataclass(frozen=True, slots=True)
class Probe:
    """The same request as :class:`Poll`, asked to decide something; report ``on_probe_result``.

    ``purpose`` is ``silence`` (the socket is quiet: stale socket, stalled chain or dead node?)
    or ``health`` (how far behind is this endpoint?).
    """

    endpoint: str
    seq: int
    known_number: int | None = None
    known_hash: str | None = None
    purpose: str = "silence"
    transport: str = "http"
    """As for :class:`Poll` (health probes are always ``http``)."""


@dataclass(frozen=True, slots=True)
class FetchRange:
    """Fetch blocks ``start..end`` (inclusive) by number over HTTP.

    One ``chain_getBlockHash`` call with the list of numbers, then one JSON-RPC batch of
    ``chain_getHeader`` for the hashes that are known. Report ``on_range_result`` with both lists
    aligned to the numbers (``None`` where a hash was unknown), or ``on_failure``.
    ``purpose`` is ``backfill`` (a gap), ``verify`` (re-check a number another endpoint got
    wrong) or ``start`` (confirm the first block; with several endpoints each one asked lists
    its hash, a vote, see ``Merge.start_votes``).
    """

    start: int
    end: int
    endpoint: str
    seq: int
    purpose: str = "backfill"
    transport: str = "http"
    """``http``, or ``ws`` (the open socket of ``endpoint``) while HTTP is backing off."""
    check_only_first: bool = False
    """Block ``start`` is asked for only to check that ``start + 1`` links to it (a start-block
    vote): fetch its header if its hash is listed, but an unknown ``start`` is no failure."""


@dataclass(frozen=True, slots=True)
class CheckChain:
    """Ask ``endpoint`` over HTTP which chain it serves: ``chain_getBlockHash([0, 1,
    number - 1, number])``, and the parent hash in its header at ``number``.

    Asked when an endpoint contradicts the delivered chain (another hash at a delivered
    number, a block that does not link, a finalized head far below it). Report
    ``on_chain_check(action, {0: hash, 1: hash, number - 1: hash, number: hash}, now,
    parent_hash=...)`` (None where the endpoint lists nothing; ``parent_hash`` is the parent
    named by its header at ``number`` when ``number`` >= 2 and listed) or ``on_failure``. The
    parent tells a lie from another chain: a chain links to itself, a lie does not.
    """

    endpoint: str
    seq: int
    number: int
    """A delivered number whose hash the follower still knows, or -1: the genesis only."""


Action = Connect | Subscribe | CloseSocket | Poll | Probe | FetchRange | CheckChain
HeadRead = Poll | Probe
