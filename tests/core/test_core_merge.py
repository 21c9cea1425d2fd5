"""The ordered merge: cursor, gap reporting, range checks and rejections (tables of offers)."""

from __future__ import annotations

import pytest
from chainsim import liar_header, make_chain

from blockfeed.codec import block_hash
from blockfeed.core import Candidate, Merge, OfferOutcome
from blockfeed.types import Header, Source

CHAIN = make_chain(90, 60)
HASH = {n: block_hash(h) for n, h in CHAIN.items()}


def ws(n: int, *, header: Header | None = None, ep: str = "a", t: float = 0.0) -> Candidate:
    return Candidate.of(header or CHAIN[n], source=Source.WS, endpoint=ep, received_at=t)


def poll(n: int, *, ep: str = "a", t: float = 0.0) -> Candidate:
    return Candidate.of(CHAIN[n], source=Source.POLL, endpoint=ep, received_at=t, confirmed=True)


def anchored(at: int = 100) -> Merge:
    return Merge(anchor=(at, HASH[at]))


def test_linked_blocks_flow_in_order_with_source_and_time() -> None:
    """Offers at last+1 that link are delivered at once, carrying source and received time."""
    merge = anchored()
    assert merge.offer(ws(101, t=5.0)) == OfferOutcome.HELD
    assert merge.offer(poll(102, t=6.0)) == OfferOutcome.HELD
    blocks = merge.drain()
    assert [(b.number, b.source, b.received_at, b.late) for b in blocks] == [
        (101, Source.WS, 5.0, False), (102, Source.POLL, 6.0, False),
    ]
    assert blocks[1].parent_hash == blocks[0].hash == HASH[101]
    assert merge.drain() == []  # the buffer was cleared


@pytest.mark.parametrize(
    ("offers", "expected"),
    [
        ([101, 101, 102], [101, 102]),                 # duplicate
        ([102, 101], [101, 102]),                      # reordered: 102 held until 101
        ([101, 100, 99], [101]),                       # old numbers dropped
        ([103, 101, 102, 103], [101, 102, 103]),       # out of order with a repeat
    ],
)
def test_table_of_offers(offers: list[int], expected: list[int]) -> None:
    """Duplicates, reorders and old numbers never reach the output."""
    merge = anchored()
    out = []
    for n in offers:
        merge.offer(ws(n))
        out += [b.number for b in merge.drain()]
    assert out == expected


def test_skip_reports_gap_and_backfill_fills_it() -> None:
    """A head above last+1 is held; gap() names the missing range; the backfill delivers it."""
    merge = anchored()
    merge.offer(ws(105))
    assert merge.drain() == []
    assert merge.gap(chunk=500) == (101, 104)
    check = merge.offer_range(101, [HASH[n] for n in range(101, 105)],
                              [CHAIN[n] for n in range(101, 105)], endpoint="a", received_at=1.0)
    assert check.accepted == 4 and check.invalid_reason is None
    blocks = merge.drain()
    assert [b.number for b in blocks] == [101, 102, 103, 104, 105]
    assert [b.source for b in blocks] == [Source.BACKFILL] * 4 + [Source.WS]
    assert all(b.late for b in blocks[:4]) and not blocks[4].late
    assert merge.gap(chunk=500) is None


def test_large_gap_is_chunked() -> None:
    """Gaps are fetched at most ``chunk`` numbers at a time, from the cursor."""
    merge = anchored()
    merge.offer(ws(140))
    assert merge.gap(chunk=10) == (101, 110)


def test_gap_ends_before_next_held_number() -> None:
    """With several held heads, the gap stops before the first one."""
    merge = anchored()
    merge.offer(ws(104))
    merge.offer(ws(110))
    assert merge.gap(chunk=500) == (101, 103)


def test_parent_mismatch_is_rejected_not_delivered() -> None:
    """A header whose parent is not the last block is rejected with a reason and never output."""
    merge = anchored()
    lie = liar_header(CHAIN[101])
    merge.offer(ws(101, header=lie, ep="liar"))
    assert merge.drain() == []
    rejections = merge.rejections()
    assert [(r.number, r.endpoint, r.hash) for r in rejections] == [(101, "liar", block_hash(lie))]
    assert merge.gap(chunk=500) == (101, 101)  # the number is fetched again by number
    merge.offer(poll(101, ep="honest"))
    assert [b.hash for b in merge.drain()] == [HASH[101]]


def test_conflict_with_delivered_block_is_reported() -> None:
    """A different hash for an already delivered number is a conflict (and a rejection)."""
    merge = anchored()
    merge.offer(ws(101))
    merge.drain()
    assert merge.offer(ws(101, header=liar_header(CHAIN[101]), ep="liar")) == OfferOutcome.CONFLICT
    assert merge.offer(ws(101)) == OfferOutcome.DUPLICATE
    assert [r.endpoint for r in merge.rejections()] == ["liar"]


def test_first_block_needs_a_confirmed_hash() -> None:
    """Starting at the head, a lone ws header is not delivered until its hash is confirmed."""
    merge = Merge()
    merge.offer(ws(120))
    assert merge.drain() == []
    assert merge.gap(chunk=500) == (120, 120)
    merge.offer_range(120, [HASH[120]], [CHAIN[120]], endpoint="a", received_at=0.0)
    blocks = merge.drain()
    assert [(b.number, b.source) for b in blocks] == [(120, Source.WS)]  # first seen, confirmed


def test_explicit_start_number_backfills_from_it() -> None:
    """start_number=110 with head 115 known: fetch 110..114, deliver 110..115."""
    merge = Merge(start_number=110)
    merge.offer(poll(115))
    assert merge.drain() == [] and merge.gap(chunk=500) == (110, 114)
    merge.offer_range(110, [HASH[n] for n in range(110, 115)],
                      [CHAIN[n] for n in range(110, 115)], endpoint="a", received_at=0.0)
    assert [b.number for b in merge.drain()] == list(range(110, 116))
    assert merge.offer(poll(109)) == OfferOutcome.STALE


@pytest.mark.parametrize(
    ("mutate", "reason_part"),
    [
        (lambda hs, hd: (hs, [hd[0], liar_header(hd[1]), hd[2]]), "does not hash"),
        (lambda hs, hd: (hs, [hd[0], hd[2], hd[2]]), "asked for #102"),
        (lambda hs, hd: ([*hs[:1], None, None], hd), None),
        (lambda hs, hd: (hs, [hd[0], None, hd[2]]), "no header"),
    ],
)
def test_range_checks(mutate, reason_part) -> None:  # type: ignore[no-untyped-def]
    """A range stops at the first bad item; everything before it is still usable."""
    merge = anchored()
    numbers = (101, 102, 103)
    hashes, headers = mutate([HASH[n] for n in numbers], [CHAIN[n] for n in numbers])
    check = merge.offer_range(101, hashes, headers, endpoint="a", received_at=0.0)
    assert check.accepted == 1
    if reason_part is None:
        assert check.unknown_from == 102 and check.invalid_reason is None
    else:
        assert reason_part in (check.invalid_reason or "")
    assert [b.number for b in merge.drain()] == [101]


def test_range_internal_link_is_checked() -> None:
    """Headers that hash to their listed hashes but do not link to each other are refused."""
    merge = anchored()
    fake = liar_header(CHAIN[102])
    check = merge.offer_range(101, [HASH[101], block_hash(fake)], [CHAIN[101], fake],
                              endpoint="a", received_at=0.0)
    assert check.accepted == 1 and "does not link" in (check.invalid_reason or "")


def test_pending_is_bounded() -> None:
    """Held numbers beyond max_pending are dropped highest first (they are refetched later)."""
    merge = Merge(anchor=(100, HASH[100]), max_pending=3)
    for n in (110, 120, 130, 140):
        merge.offer(ws(n))
    assert merge.pending_numbers() == [110, 120, 130]
    assert merge.best_known == 140


def vote(merge: Merge, ep: str, n: int, *, lie: bool = False) -> None:
    """``ep`` lists block ``n`` (and ``n-1`` for the link check) by number."""
    headers = [CHAIN[n - 1], liar_header(CHAIN[n]) if lie else CHAIN[n]]
    merge.offer_range(n - 1, [block_hash(h) for h in headers], headers, endpoint=ep,
                      received_at=1.0, check_only_first=True)


def test_start_quorum_waits_for_enough_endpoints_to_list_the_start_block() -> None:
    """With start_quorum 2, a confirmed poll and one vote are not enough; a second matching
    vote delivers the block once; the link-only block n-1 is never offered."""
    merge = Merge()
    merge.start_quorum = 2
    merge.offer(poll(120, ep="a"))
    assert merge.drain() == [] and merge.gap(chunk=10) == (120, 120)
    vote(merge, "a", 120)
    assert merge.drain() == [] and merge.start_votes(120) == {"a": HASH[120]}
    vote(merge, "b", 120)
    blocks = merge.drain()
    assert [b.number for b in blocks] == [120] and blocks[0].hash == HASH[120]
    assert merge.pending_numbers() == [] and merge.start_votes(120) == {}


def test_start_votes_that_disagree_deliver_nothing_until_one_is_discarded() -> None:
    """A vote whose block does not link to n-1 does not count; votes for two hashes deliver
    nothing; once one is discarded and the quorum is one, the other block is delivered and the
    discarded endpoint's copy is rejected."""
    merge = Merge()
    merge.start_quorum = 2
    merge.offer(poll(120, ep="b"))
    vote(merge, "a", 120, lie=True)  # its n does not link to n-1: rejected as a whole
    assert merge.start_votes(120) == {}
    other = make_chain(90, 60, seed=99)  # a self-consistent other history
    headers = [other[119], other[120]]
    merge.offer_range(119, [block_hash(h) for h in headers], headers, endpoint="a",
                      received_at=1.0, check_only_first=True)
    assert merge.start_votes(120) == {"a": block_hash(other[120])}
    vote(merge, "b", 120)
    assert merge.drain() == []
    merge.discard_votes("a")
    merge.start_quorum = 1
    blocks = merge.drain()
    assert [b.hash for b in blocks] == [HASH[120]]
    assert [(r.endpoint, r.number) for r in merge.rejections()] == [("a", 120)]


def test_check_only_first_tolerates_an_unknown_first_number_but_it_is_no_vote() -> None:
    """A link-only first number the node does not list (its first block) is skipped without
    error; the next header is still offered, but unchecked, so it is not a start vote; after
    move_start the block above it can be voted for with its link checked."""
    merge = Merge()
    merge.start_quorum = 1
    merge.offer(poll(120, ep="a"))
    check = merge.offer_range(119, [None, HASH[120]], [None, CHAIN[120]], endpoint="a",
                              received_at=1.0, check_only_first=True)
    assert check.accepted == 1 and check.unknown_from is None
    assert merge.start_votes(120) == {} and merge.drain() == []
    merge.offer(poll(121, ep="a"))
    merge.move_start(121)
    assert merge.pending_numbers() == [121] and merge.gap(chunk=10) == (121, 121)
    vote(merge, "a", 121)
    assert [b.number for b in merge.drain()] == [121]
