"""The verifier alone: (time, input) -> (events, quarantines, chain checks, blocked), as tables.

A real :class:`Merge` and :class:`Ranking` (the verifier shares them with the follower), a fake
clock (T = 1 s, deadline 1.5 s) and FollowerConfig's limits (quarantine 300 s, lag 16 blocks).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from chainsim import make_chain

from blockfeed.codec import block_hash
from blockfeed.core import BlockClock, CheckChain, FetchRange, FollowerConfig, Merge, Ranking
from blockfeed.core.merge import Candidate, RangeCheck, Rejection
from blockfeed.core.verify import CHAIN_CHECK_EVERY_DEADLINES, Verifier
from blockfeed.types import Block, FeedEvent, Source

START = 1000
CHAIN = make_chain(START - 1, 60)
HASH = {n: block_hash(h) for n, h in CHAIN.items()}
OTHER = make_chain(START - 1, 60, seed=8)
"""Another chain with the same numbers (a liar's, or a restarted dev chain)."""
OTHER_HASH = {n: block_hash(h) for n, h in OTHER.items()}
GENESIS = "0x" + "ab" * 32
CONFIG = FollowerConfig(block_time_s=1.0)


class Rig:
    """A verifier with its merge and ranking; collects what it emits and asks."""

    def __init__(self, labels: Sequence[str] = ("a", "b"), *, anchor: int | None = START,
                 start_number: int | None = None, genesis: str | None = None) -> None:
        self.merge = Merge(anchor=None if anchor is None else (anchor, HASH[anchor]),
                           start_number=start_number)
        self.ranking = Ranking(labels)
        self.clock = BlockClock(block_time_s=1.0)
        self.events: list[FeedEvent] = []
        self.checks: list[CheckChain] = []
        self.v = Verifier(
            self.merge, self.ranking, self.clock, CONFIG,
            anchor=None if anchor is None else (anchor, HASH[anchor]), genesis_hash=genesis,
            emit=self.events.append, check_chain=self._check,
        )

    def _check(self, endpoint: str, number: int) -> CheckChain:
        check = CheckChain(endpoint, len(self.checks) + 1, number)
        self.checks.append(check)
        return check

    def kinds(self) -> list[str]:
        out = [e.kind for e in self.events]
        self.events.clear()
        return out

    def quarantined(self, now: float) -> list[str]:
        return [ep for ep in self.ranking.labels if self.ranking[ep].is_quarantined(now)]

    def deliver(self, *numbers: int, now: float = 0.0) -> list[Block]:
        """Offer honest blocks to the merge, deliver them and tell the verifier (as the
        follower's _absorb does)."""
        for n in numbers:
            self.merge.offer(Candidate.of(CHAIN[n], source=Source.WS, endpoint="a",
                                          received_at=now))
        blocks = self.merge.drain()
        for rejection in self.merge.rejections():
            self.v.on_rejection(rejection, now)
        for block in blocks:
            self.v.resolve(block.number, block.hash, now)
        self.v.on_delivered(blocks)
        self.v.prune()
        return blocks


def rejection(number: int, endpoint: str, *, honest: bool = False) -> Rejection:
    """The merge's refusal of ``endpoint``'s block ``number`` (another chain's, by default)."""
    hash_ = HASH[number] if honest else OTHER_HASH[number]
    return Rejection(number, hash_, endpoint, Source.WS, f"block #{number} does not link")


# A rejected claim, then the verified hash: (claimed by b, verified) -> b quarantined?
SUSPECTS = [
    ("other", True),    # b claimed another hash: it lied
    ("honest", False),  # b claimed the verified hash (rejected for another reason): no blame
]


@pytest.mark.parametrize(("claim", "benched"), SUSPECTS)
def test_suspect_is_quarantined_once_the_verified_hash_is_known(claim: str, benched: bool
                                                                 ) -> None:
    """A rejected block makes its endpoint a suspect for that number (a backfill avoids it);
    when the verified hash arrives, a suspect that claimed another hash is quarantined."""
    rig = Rig()
    rig.v.on_rejection(rejection(START + 2, "b", honest=claim == "honest"), 1.0)
    assert rig.kinds() == ["verification_failed"]
    assert rig.v.suspected_at(START + 2) == {"b"} and rig.v.suspected_at(START + 3) == set()
    rig.v.resolve(START + 2, HASH[START + 2], 2.0)
    assert rig.v.suspected_at(START + 2) == set()
    assert rig.quarantined(2.0) == (["b"] if benched else [])
    assert rig.kinds() == (["endpoint_quarantined"] if benched else [])


def test_lie_is_quarantined_at_once_and_said_once() -> None:
    """Self-contradicting data: a verification_failed event and a quarantine of 300 s; more
    evidence during the quarantine is said again but does not re-announce the quarantine."""
    rig = Rig()
    rig.v.lie("b", "header does not hash to its hash", 5.0)
    assert rig.kinds() == ["verification_failed", "endpoint_quarantined"]
    assert rig.quarantined(5.0) == ["b"] and rig.quarantined(305.0) == []
    rig.v.lie("b", "again", 6.0)
    assert rig.kinds() == ["verification_failed"]


# Lag: (endpoints, head reported, delivered up to START) -> quarantined?
LAG = [
    (("a", "b"), START - 16, False),  # 16 behind: tolerated (lag_quarantine_blocks)
    (("a", "b"), START - 17, True),   # 17 behind: benched
    (("a",), START - 100, False),     # the only endpoint is never benched for lag
]


@pytest.mark.parametrize(("labels", "head", "benched"), LAG)
def test_lagging_endpoint(labels: tuple[str, ...], head: int, benched: bool) -> None:
    """An endpoint whose head is more than lag_quarantine_blocks behind the verified chain is
    quarantined, when there is another one to use."""
    rig = Rig(labels)
    rig.v.check_lag(labels[-1], head, 1.0)
    assert rig.quarantined(1.0) == ([labels[-1]] if benched else [])


# Chain checks: (genesis known, head reported by b) -> CheckChain number asked (None: none).
FAR_BELOW = [
    (True, START - 17, -1),    # far below, nothing delivered to compare with: ask the genesis
    (False, START - 17, None),  # ... and without a known genesis there is nothing to ask
    (True, START - 16, None),  # within the lag tolerance: no check
]


@pytest.mark.parametrize(("genesis", "head", "number"), FAR_BELOW)
def test_head_far_below_the_delivered_chain_asks_which_chain(
    genesis: bool, head: int, number: int | None
) -> None:
    """Finality never goes back: a head far below the delivered chain triggers a chain
    check, at most one in flight per endpoint."""
    rig = Rig(genesis=GENESIS if genesis else None)
    rig.v.check_far_below("b", head, 1.0)
    rig.v.check_far_below("b", head, 1.1)
    assert [c.number for c in rig.checks] == ([] if number is None else [number])


def test_chain_checks_are_spaced_by_deadlines() -> None:
    """After a check was answered, the next one for the same endpoint waits
    CHAIN_CHECK_EVERY_DEADLINES deadlines (2 x 1.5 s); it asks the highest delivered number
    it still knows."""
    rig = Rig()
    rig.deliver(START + 1, START + 2)
    rig.v.on_rejection(rejection(START + 2, "b"), 10.0)
    assert [(c.endpoint, c.number) for c in rig.checks] == [("b", START + 2)]
    assert rig.v.claim_check(rig.checks[0]) and not rig.v.claim_check(rig.checks[0])
    spacing = CHAIN_CHECK_EVERY_DEADLINES * rig.clock.deadline_s
    rig.v.on_rejection(rejection(START + 2, "b"), 10.0 + spacing - 0.01)
    assert len(rig.checks) == 1
    rig.v.on_rejection(rejection(START + 2, "b"), 10.0 + spacing)
    assert len(rig.checks) == 2


# Chain check answers: (listed by a, listed by b) -> (quarantined, diverged).
CHAIN_ANSWERS = [
    ({0: GENESIS}, {0: GENESIS}, [], False),                          # same chain
    ({0: GENESIS}, {0: "0x" + "cd" * 32}, ["b"], False),              # b: another genesis
    ({0: None}, {0: GENESIS, START: OTHER_HASH[START]}, ["b"], False),  # b: another #START
    ({0: "0x" + "cd" * 32}, {START: OTHER_HASH[START]}, ["a", "b"], True),  # nobody agrees
]


@pytest.mark.parametrize(("listed_a", "listed_b", "benched", "diverged"), CHAIN_ANSWERS)
def test_chain_check_verdicts(listed_a: dict[int, str | None], listed_b: dict[int, str | None],
                              benched: list[str], diverged: bool) -> None:
    """Another hash at a known number (genesis, or a delivered block) quarantines the
    endpoint; when every endpoint serves another chain, chain_diverged is raised once and
    delivery is blocked."""
    rig = Rig(genesis=GENESIS)
    for ep in ("a", "b"):
        rig.v.check_far_below(ep, START - 20, 5.0)  # each endpoint gets a chain check
    assert [c.endpoint for c in rig.checks] == ["a", "b"]
    for check, answer in zip(rig.checks, (listed_a, listed_b), strict=True):
        assert rig.v.claim_check(check)
        rig.v.on_chain_check(check, answer, 5.0)
    assert rig.quarantined(5.0) == benched
    kinds = rig.kinds()
    assert kinds.count("chain_diverged") == int(diverged)
    assert (rig.v.diverged is not None) == diverged == (rig.v.blocked is not None)
    if diverged:
        assert rig.v.blocked is not None and rig.v.blocked.startswith("CHAIN DIVERGED")


def test_delivery_forgets_old_contradictions() -> None:
    """A delivery proves someone serves the delivered chain: an endpoint that contradicted it
    earlier no longer counts towards chain_diverged."""
    rig = Rig(genesis=GENESIS)
    other_genesis = {0: "0x" + "cd" * 32}
    rig.v.check_far_below("a", START - 20, 5.0)
    assert rig.v.claim_check(rig.checks[-1])
    rig.v.on_chain_check(rig.checks[-1], other_genesis, 5.0)
    rig.deliver(START + 1, now=6.0)
    rig.v.check_far_below("b", START - 20, 7.0)
    assert rig.v.claim_check(rig.checks[-1])
    rig.v.on_chain_check(rig.checks[-1], other_genesis, 7.0)
    assert rig.quarantined(7.0) == ["a", "b"] and rig.v.diverged is None


def test_checkpoint_not_extended_by_any_endpoint_blocks() -> None:
    """A resumed feed whose next block does not link to the checkpoint says so per endpoint,
    and is blocked once every endpoint disagrees; a delivery clears it."""
    rig = Rig()
    rig.v.on_rejection(rejection(START + 1, "a"), 1.0)
    event = rig.events[-1]
    assert "does not extend the checkpoint" in event.reason
    assert event.endpoints_disagreeing == ("a",) and rig.v.blocked is None
    rig.v.on_rejection(rejection(START + 1, "b"), 1.1)
    assert rig.events[-1].endpoints_disagreeing == ("a", "b")
    assert rig.v.blocked is not None and "every configured endpoint" in rig.v.blocked
    rig.deliver(START + 1)
    assert rig.v.blocked is None


# Start quorum: (quarantined, failing HTTP) -> quorum needed, and whether it changed from 2.
QUORUM = [
    ((), (), 2, False),       # two healthy endpoints: two votes
    (("b",), (), 1, True),    # b lies: one vote suffices
    ((), ("b",), 1, True),    # b's HTTP fails: one vote suffices
]


@pytest.mark.parametrize(("benched", "failing", "quorum", "changed"), QUORUM)
def test_start_quorum_follows_healthy_endpoints(benched: tuple[str, ...],
                                                failing: tuple[str, ...], quorum: int,
                                                changed: bool) -> None:
    """A head start needs two votes while two endpoints are healthy, one otherwise, so a dead
    or lying second endpoint never keeps the feed from starting."""
    rig = Rig(anchor=None)
    rig.merge.start_quorum = 2
    for ep in benched:
        rig.v.quarantine(ep, "lied", 0.0)
    for ep in failing:
        rig.ranking.record_http_failure(ep, 0.0)
    assert rig.v.update_start_quorum(1.0) is changed
    assert rig.merge.start_quorum == quorum
    assert rig.v.update_start_quorum(1.0) is False


def test_start_votes_that_disagree_block_until_resolved() -> None:
    """Two endpoints listing different hashes for the start block: one verification_failed
    with the votes, blocked; said once per set of votes."""
    rig = Rig(anchor=None, start_number=START)
    rig.merge.start_quorum = 2
    for ep, chain in (("a", CHAIN), ("b", OTHER)):
        hashes = [block_hash(chain[START - 1]), block_hash(chain[START])]
        rig.merge.offer_range(START - 1, hashes, [chain[START - 1], chain[START]],
                              endpoint=ep, received_at=0.0, check_only_first=True)
    rig.v.check_start_conflict(START, 1.0)
    rig.v.check_start_conflict(START, 1.5)
    assert rig.kinds() == ["verification_failed"]
    assert rig.v.blocked is not None and "disagree on start block" in rig.v.blocked
    rig.v.quarantine("b", "lied", 2.0)  # b's vote is discarded with its quarantine
    assert rig.merge.start_votes(START) == {"a": HASH[START]}


# Backfill answers: (endpoint head, listed hashes for START+1..START+3) -> events, blocked.
def listed(*known: bool) -> list[str | None]:
    """Hashes for START+1, START+2, ...: the real one where ``known``, else None."""
    return [HASH[START + 1 + i] if k else None for i, k in enumerate(known)]


RANGES = [
    # lists later numbers but not START+1: below its history (pruned), first listed START+2
    (START + 40, listed(False, True, True), ["unavailable"], START + 2),
    # lists none of them though its head is far past: below its history, nothing listed
    (START + 40, listed(False, False, False), ["unavailable"], 0),
    # lists none, head a few blocks on: not finalized there yet (no event)
    (START + 3, listed(False, False, False), [], None),
]


@pytest.mark.parametrize(("head", "hashes", "kinds", "first_listed"), RANGES)
def test_unavailable_block_is_told_from_not_yet(head: int, hashes: list[str | None],
                                                kinds: list[str], first_listed: int | None
                                                ) -> None:
    """A number an endpoint cannot list is 'unavailable' (once per endpoint) when it lists
    later ones or finalized far past it; otherwise it is just not there yet."""
    rig = Rig()
    rig.ranking.record_head("a", head, 0.0)
    fetch = FetchRange(START + 1, START + 3, "a", 1)
    check = RangeCheck(0, unknown_from=START + 1)
    rig.v.judge_range(fetch, check, hashes, 1.0)
    rig.v.judge_range(fetch, check, hashes, 1.2)
    events = list(rig.events)
    assert [e.kind for e in events] == kinds
    if first_listed is not None:
        assert events[0].first_listed == (first_listed or None)
        assert rig.v.lacking(START + 1) == {"a"}
    else:
        assert rig.ranking["a"].head_number == head and rig.v.lacking(START + 1) == set()
    assert rig.v.blocked is None  # b may still have it


def test_unavailable_everywhere_blocks_until_delivered() -> None:
    """When every endpoint lacks the next number, delivery is blocked on it; delivering past
    it clears both the block and what was lacking."""
    rig = Rig()
    fetch_hashes = listed(False, True)
    for ep in ("a", "b"):
        fetch = FetchRange(START + 1, START + 2, ep, 1)
        rig.v.judge_range(fetch, RangeCheck(0, unknown_from=START + 1), fetch_hashes, 1.0)
    assert rig.v.blocked is not None and f"#{START + 1} is not available" in rig.v.blocked
    rig.deliver(START + 1)
    assert rig.v.blocked is None and rig.v.lacking(START + 1) == set()


def test_range_that_fails_verification_is_a_lie() -> None:
    """A backfill whose headers do not check out quarantines its endpoint."""
    rig = Rig()
    fetch = FetchRange(START + 1, START + 2, "b", 1)
    rig.v.judge_range(fetch, RangeCheck(0, invalid_reason="header does not link"),
                      listed(True, True), 1.0)
    assert rig.kinds() == ["verification_failed", "endpoint_quarantined"]
    assert rig.quarantined(1.0) == ["b"]


def test_vote_without_a_listed_parent_moves_the_start() -> None:
    """A start vote whose parent the endpoint does not list cannot be checked: the start
    moves one block on, where it can."""
    rig = Rig(anchor=None, start_number=START)
    fetch = FetchRange(START - 1, START, "a", 1, purpose="start", check_only_first=True)
    rig.v.judge_range(fetch, RangeCheck(1), [None, HASH[START]], 1.0)
    assert rig.merge.next_number == START + 1


@pytest.mark.parametrize(
    ("links", "benched", "diverged", "lies"),
    [
        (True, ["a", "b"], True, 0),    # their block links to their own chain: another chain
        (False, ["a", "b"], False, 2),  # it does not: both lie (the same lie), no divergence
    ],
)
def test_chain_check_tells_a_lie_from_another_chain(
    links: bool, benched: list[str], diverged: bool, lies: int
) -> None:
    """Every endpoint lists another block at a delivered number: if that block links to the
    endpoint's own block before it, the chain was replaced (chain_diverged); if not, the
    endpoints lie (quarantined as liars, never chain_diverged), however many tell it."""
    rig = Rig(genesis=GENESIS)
    rig.deliver(START + 1, START + 2, START + 3, now=1.0)
    for ep in ("a", "b"):
        rig.v.on_rejection(rejection(START + 3, ep), 5.0)  # another block at a delivered one
    rig.kinds()
    for check in rig.checks:
        number = check.number
        assert number == START + 3 and rig.v.claim_check(check)
        listed = {0: GENESIS, 1: None, number - 1: OTHER_HASH[number - 1],
                  number: OTHER_HASH[number]}
        parent = OTHER_HASH[number - 1] if links else "0x" + "ee" * 32
        rig.v.on_chain_check(check, listed, 5.0, parent_hash=parent)
    assert rig.quarantined(5.0) == benched
    assert (rig.v.diverged is not None) == diverged
    assert rig.kinds().count("verification_failed") == lies
