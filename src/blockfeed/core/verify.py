"""Verification: who is lying, what is missing, whose chain is it. Sans-I/O, like the rest.

The merge (:mod:`blockfeed.core.merge`) decides what may be delivered; this module decides what
to *do* when endpoints disagree with it or with each other:

* **suspects**: a block the merge rejected (another hash at a delivered number, a header that
  does not link) is a claim by one endpoint. The number is re-fetched elsewhere (``verify``);
  once the verified hash is known, every endpoint that claimed another one is quarantined.
* **lies**: an endpoint whose answer contradicts itself (a header that does not hash to the
  hash it was asked for, a range that does not link) is quarantined at once.
* **start quorum**: starting at the head with two or more healthy endpoints, the first block
  needs two votes; endpoints voting for different hashes block delivery until enough agree.
* **unavailable blocks**: a number below an endpoint's history (pruned node, a start before
  the chain's first block) is said once per endpoint; when no endpoint has it, delivery is
  blocked on it.
* **lag**: an endpoint whose head is far behind the verified chain is benched.
* **chain checks**: an endpoint that contradicts the delivered chain is asked which chain it
  serves (``CheckChain``); once every endpoint proved to serve another one, ``chain_diverged``.

Nothing here reads a clock or does I/O: every input carries ``now``; events go to the ``emit``
callback and chain checks are made by the ``check_chain`` callback (which numbers the action
and sends it), both given by the follower, so outputs stay in the order they happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from blockfeed.core.actions import CheckChain, FetchRange
from blockfeed.core.deadline import BlockClock
from blockfeed.core.merge import Merge, RangeCheck, Rejection
from blockfeed.core.ranking import Ranking
from blockfeed.types import (
    Block,
    Diverged,
    EndpointQuarantined,
    FeedEvent,
    Unavailable,
    VerificationFailed,
)

CHAIN_CHECK_EVERY_DEADLINES = 2.0
"""An endpoint suspected of serving another chain is asked at most once per this many
deadlines."""


class VerifyConfig(Protocol):
    """The two limits verification needs (``FollowerConfig`` has them)."""

    @property
    def quarantine_s(self) -> float:
        """How long a lying or lagging endpoint is benched."""
        ...

    @property
    def lag_quarantine_blocks(self) -> int:
        """How far behind the verified chain an endpoint's head may be."""
        ...


class Verifier:
    """Suspects, votes, unavailable numbers, quarantines and chain identity of one follower.

    Shares the follower's :class:`Merge` (reads it; sets ``start_quorum``, discards votes,
    moves the start), :class:`Ranking` (quarantines, head numbers) and :class:`BlockClock`
    (chain checks are spaced in deadlines).
    """

    def __init__(
        self,
        merge: Merge,
        ranking: Ranking,
        clock: BlockClock,
        config: VerifyConfig,
        *,
        anchor: tuple[int, str] | None,
        genesis_hash: str | None,
        emit: Callable[[FeedEvent], None],
        check_chain: Callable[[str, int], CheckChain],
    ) -> None:
        """``anchor``: the checkpoint resumed from (a block that does not extend it is
        reported as such). ``check_chain(endpoint, number)`` sends a :class:`CheckChain` and
        returns it; its answer comes back through :meth:`claim_check` + :meth:`on_chain_check`."""
        self._merge = merge
        self._ranking = ranking
        self._clock = clock
        self.config = config
        self._anchor = anchor
        self._emit = emit
        self._send_check = check_chain
        self._identity: dict[int, str] = {}
        """Hashes of blocks 0 and 1 of the followed chain, when known: a chain restarted from
        scratch with the same genesis still has another block #1."""
        if genesis_hash is not None:
            self._identity[0] = genesis_hash.lower()
        self._suspects: dict[int, dict[str, str]] = {}
        self._lacking: dict[int, set[str]] = {}
        self._start_conflict: frozenset[tuple[str, str]] | None = None
        self._blocked: str | None = None
        # chain identity: endpoints that proved to serve another chain than the delivered one
        self._first_delivered: tuple[int, str] | None = anchor
        self._chain_checks: dict[str, CheckChain] = {}
        self._chain_check_after: dict[str, float] = {}
        self._contradictions: dict[str, dict[str, object]] = {}
        self._diverged: Diverged | None = None

    # ------------------------------------------------------------------ state

    @property
    def blocked(self) -> str | None:
        """A known, lasting reason nothing can be delivered (see ``Follower.blocked``)."""
        return self._blocked

    @property
    def diverged(self) -> Diverged | None:
        """The ``chain_diverged`` event once every endpoint serves another chain, else None."""
        return self._diverged

    def suspected_at(self, number: int) -> frozenset[str]:
        """Endpoints that served a block ``number`` the merge rejected (not resolved yet)."""
        return frozenset(self._suspects.get(number, {}))

    def lacking(self, number: int) -> frozenset[str]:
        """Endpoints known not to have block ``number`` (below their history)."""
        return frozenset(self._lacking.get(number, set()))

    def set_identity(self, genesis_hash: str | None, first_hash: str | None = None) -> None:
        """The hashes of blocks 0 and 1 of the followed chain became known (first one wins)."""
        for number, value in ((0, genesis_hash), (1, first_hash)):
            if value is not None and number not in self._identity:
                self._identity[number] = value.lower()

    # ------------------------------------------------------------------ merge outcomes

    def on_rejection(self, rejection: Rejection, now: float) -> None:
        """The merge refused a block: record the claim, say why, and check the endpoint's chain
        when the block contradicts what was delivered."""
        claims = self._suspects.setdefault(rejection.number, {})
        claims[rejection.endpoint] = rejection.hash
        reason = rejection.reason
        details: dict[str, Any] = {"number": rejection.number, "hash": rejection.hash,
                                   "source": str(rejection.source)}
        anchor = self._anchor
        if (anchor is not None and self._merge.delivered_count == 0
                and rejection.number == anchor[0] + 1):
            reason = (
                f"block #{rejection.number} from {rejection.endpoint} does not extend the "
                f"checkpoint #{anchor[0]} {anchor[1]}: the endpoint serves another history "
                "than the one the checkpoint was saved from"
            )
            details["checkpoint"] = anchor[0]
            details["endpoints_disagreeing"] = sorted(claims)
            if set(claims) >= set(self._ranking.labels):
                self._blocked = f"{reason} (and so does every configured endpoint)"
        self._emit(VerificationFailed(
            at=now, reason=reason, endpoint=rejection.endpoint, **details,
        ))
        delivered = self._merge.delivered_hash(rejection.number)
        if delivered is not None:
            self.resolve(rejection.number, delivered, now)
        last = self._merge.last
        if last is not None and rejection.number <= last[0] + 1:
            # Another block at a delivered number, or one that does not link to the last:
            # a lie, or another chain. Ask the endpoint which chain it serves.
            self._suspect_chain(rejection.endpoint, now,
                                at_most=min(rejection.number, last[0]))

    def resolve(self, number: int, good_hash: str, now: float) -> None:
        """A verified hash for ``number`` is known: whoever claimed another one lied."""
        claims = self._suspects.pop(number, None)
        for ep, claimed in (claims or {}).items():
            if claimed != good_hash:
                self.quarantine(ep, f"served a block #{number} that contradicts the verified "
                                     "chain", now)

    def on_delivered(self, blocks: Sequence[Block]) -> None:
        """Blocks were delivered: someone serves the delivered chain, so whatever blocked or
        contradicted it is over, and numbers up to the last one are no longer missing."""
        if not blocks:
            return
        if self._first_delivered is None:
            self._first_delivered = (blocks[0].number, blocks[0].hash)
        self._contradictions.clear()  # someone serves the delivered chain
        self._blocked = None
        self._start_conflict = None
        last_number = blocks[-1].number
        for number in [n for n in self._lacking if n <= last_number]:
            del self._lacking[number]

    def prune(self) -> None:
        """Forget claims about numbers below the last delivered one."""
        last = self._merge.last
        if last is not None:
            for number in [n for n in self._suspects if n < last[0]]:
                del self._suspects[number]

    # ------------------------------------------------------------------ endpoints

    def lie(self, endpoint: str, reason: str, now: float) -> None:
        """``endpoint`` served data that contradicts itself: say so and quarantine it."""
        self._emit(VerificationFailed(at=now, reason=reason, endpoint=endpoint))
        self.quarantine(endpoint, reason, now)

    def quarantine(self, endpoint: str, reason: str, now: float) -> None:
        """Bench ``endpoint`` for ``quarantine_s`` (its start votes no longer count)."""
        self._merge.discard_votes(endpoint)
        until = now + self.config.quarantine_s
        if self._ranking.quarantine(endpoint, until, reason, now=now):
            self._emit(EndpointQuarantined(
                at=now, reason=reason, endpoint=endpoint,
                for_s=self.config.quarantine_s,
                others_usable=self._ranking.usable_count(now),
            ))

    def check_lag(self, endpoint: str, number: int, now: float) -> None:
        """Bench an endpoint whose head is far behind the chain already verified."""
        last = self._merge.last
        if last is None or len(self._ranking.labels) < 2:
            return
        lag = last[0] - number
        if lag > self.config.lag_quarantine_blocks:
            self.quarantine(
                endpoint, f"finalized head #{number} is {lag} blocks behind #{last[0]}", now
            )

    def check_far_below(self, endpoint: str, number: int, now: float) -> None:
        """``endpoint`` reported a finalized head far below the delivered chain: finality never
        goes back, so it is lagging badly (a resyncing node) or serves another chain."""
        last = self._merge.last
        if last is not None and last[0] - number > self.config.lag_quarantine_blocks:
            self._suspect_chain(endpoint, now, at_most=number)

    # ------------------------------------------------------------------ start quorum

    def update_start_quorum(self, now: float) -> bool:
        """Two votes for the start block while two endpoints are healthy (not quarantined, HTTP
        answering); one when only one is left, so a dead or lying second endpoint never keeps
        the feed from starting. True when the quorum changed (the merge may release blocks)."""
        merge = self._merge
        if merge.start_quorum is None or merge.last is not None:
            return False
        healthy = sum(
            1 for ep in self._ranking.labels
            if not self._ranking[ep].is_quarantined(now) and self._ranking[ep].http_failures == 0
        )
        quorum = 2 if healthy >= 2 else 1
        if merge.start_quorum == quorum:
            return False
        merge.start_quorum = quorum
        return True

    def check_start_conflict(self, number: int, now: float) -> None:
        """Endpoints listing different hashes for the start block: say so (once per set of
        votes) and deliver nothing until enough of them agree."""
        votes = self._merge.start_votes(number)
        if len(set(votes.values())) < 2:
            return
        key = frozenset(votes.items())
        if key == self._start_conflict:
            return
        self._start_conflict = key
        listing = "; ".join(f"{ep} lists {hash_}" for ep, hash_ in sorted(votes.items()))
        self._blocked = (
            f"endpoints disagree on start block #{number} ({listing}); nothing is delivered "
            "until enough of them agree"
        )
        self._emit(VerificationFailed(at=now, reason=self._blocked, number=number, votes=votes))

    # ------------------------------------------------------------------ ranges

    def judge_range(
        self, fetch: FetchRange, check: RangeCheck, hashes: Sequence[str | None], now: float
    ) -> None:
        """After ``Merge.offer_range``: quarantine a range that failed verification, tell a
        number below the endpoint's history from one it has not finalized yet, and move a
        start whose parent the endpoint does not list one block later."""
        ep = fetch.endpoint
        if check.invalid_reason is not None:
            self.lie(ep, f"backfill failed verification: {check.invalid_reason}", now)
        if check.unknown_from is not None:
            first_listed = self._below_history(ep, check.unknown_from, fetch.start, hashes)
            if first_listed is not None:
                self._note_unavailable(ep, check.unknown_from, first_listed, now)
            else:
                # The endpoint does not know these numbers yet; ask someone else (or later).
                self._ranking.record_head(ep, check.unknown_from - 1, now)
        if (fetch.check_only_first and hashes and hashes[0] is None and check.accepted
                and self._merge.last is None and self._merge.next_number == fetch.end):
            # The endpoint does not list the start block's parent (the first block it has), so
            # its vote could not be checked: start one block later, where it can.
            self._merge.move_start(fetch.end + 1)

    def _below_history(
        self, endpoint: str, unknown: int, start: int, hashes: Sequence[str | None]
    ) -> int | None:
        """If ``endpoint`` lacks ``unknown`` because it is below its history (not because it
        is not finalized yet), return the first number it listed after it (0: none listed)."""
        for offset in range(unknown - start + 1, len(hashes)):
            if hashes[offset] is not None:
                return start + offset  # it has later blocks: this one was pruned
        head = self._ranking[endpoint].head_number
        if head is not None and head - unknown > self.config.lag_quarantine_blocks:
            # It finalized far past it, yet cannot list it. (A few blocks short is more likely
            # a load balancer whose backends lag each other a little: that is "not yet".)
            return 0
        return None

    def _note_unavailable(self, endpoint: str, number: int, first_listed: int, now: float) -> None:
        """Say (once per endpoint) that block ``number`` is below ``endpoint``'s history; when no
        endpoint has it, the feed is blocked on it (retrying with backoff meanwhile)."""
        lacking = self._lacking.setdefault(number, set())
        if endpoint in lacking:
            return
        lacking.add(endpoint)
        first = f" (the first block it lists is #{first_listed})" if first_listed else ""
        reason = (
            f"block #{number} is not available from {endpoint}{first}: it is below that "
            "node's history (a pruned node, or a start before the chain's first block); "
            "retrying with backoff in case an endpoint that keeps it (an archive node) answers"
        )
        if lacking >= set(self._ranking.labels):
            self._blocked = reason
        self._emit(Unavailable(at=now, reason=reason, endpoint=endpoint,
                               number=number, first_listed=first_listed or None))

    # ------------------------------------------------------------------ chain identity

    def claim_check(self, check: CheckChain) -> bool:
        """True (and forgotten) if ``check`` is the one in flight for its endpoint; False for
        a late or unknown answer, which must be ignored."""
        if self._chain_checks.get(check.endpoint) != check:
            return False
        del self._chain_checks[check.endpoint]
        return True

    def on_chain_check(
        self, check: CheckChain, listed: dict[int, str | None], now: float,
        *, parent_hash: str | None = None,
    ) -> None:
        """The answer to a claimed :class:`CheckChain` (see ``Follower.on_chain_check``)."""
        ep = check.endpoint
        verdict: dict[str, Any] | None = None
        link_only = check.number - 1 if check.number >= 3 else None
        for number in sorted(n for n in listed if n != link_only):
            theirs = listed[number]
            ours = self._identity.get(number) or self._known_hash(number)
            if ours is None or theirs is None or theirs.lower() == ours:
                continue
            what = {0: "another genesis", 1: "another block #1 (the chain was restarted)"}.get(
                number, f"another block #{number}")
            verdict = {"number": number, "delivered_hash": ours, "their_hash": theirs.lower(),
                       "what": what}
            break
        if verdict is None:
            self._contradictions.pop(ep, None)
            return
        number = verdict["number"]
        before = listed.get(number - 1)
        if (number == check.number >= 2 and parent_hash is not None and before is not None
                and parent_hash.lower() != before.lower()):
            # Its own block at `number` does not link to its own block before it: not another
            # chain (a chain links to itself) but a lie, however many endpoints tell it.
            self._contradictions.pop(ep, None)
            self.lie(ep, f"its block #{number} ({verdict['their_hash']}) does not link to its "
                         f"own #{number - 1} ({before.lower()}): a lie, not another chain", now)
            return
        verdict["endpoint"] = ep
        self._contradictions[ep] = verdict
        self.quarantine(
            ep, f"serves another chain: {verdict['what']} ({verdict['their_hash']}, delivered "
                f"{verdict['delivered_hash']})", now,
        )
        if self._diverged is None and set(self._contradictions) >= set(self._ranking.labels):
            reason = (
                f"CHAIN DIVERGED: {ep} serves {verdict['what']} ({verdict['their_hash']}) where "
                f"the followed chain has {verdict['delivered_hash']}, and no endpoint agrees with "
                "the delivered chain; nothing more is delivered on it"
            )
            event = Diverged(at=now, reason=reason, endpoint=ep,
                             **{k: v for k, v in verdict.items() if k != "endpoint"})
            self._diverged = event
            self._blocked = reason
            self._emit(event)

    def _known_hash(self, number: int | None) -> str | None:
        if number is None:
            return None
        if self._first_delivered is not None and number == self._first_delivered[0]:
            return self._first_delivered[1]
        return self._merge.delivered_hash(number)

    def _suspect_chain(self, endpoint: str, now: float, *, at_most: int | None = None) -> None:
        """Ask ``endpoint`` for its genesis and its hash at a delivered number we still know
        (the last one, or the highest known one up to ``at_most``): at most one check in
        flight per endpoint, and one per ``CHAIN_CHECK_EVERY_DEADLINES`` deadlines."""
        if endpoint in self._chain_checks or now < self._chain_check_after.get(endpoint, 0.0):
            return
        last = self._merge.last
        if last is None:
            return
        number: int | None = last[0]
        if at_most is not None and at_most < last[0]:
            number = next(
                (n for n in range(at_most, max(at_most - 512, -1), -1)
                 if self._merge.delivered_hash(n) is not None), None)
            if number is None and self._first_delivered is not None \
                    and self._first_delivered[0] <= at_most:
                number = self._first_delivered[0]
        if number is None and not self._identity:
            return  # nothing to compare with yet; its chain will reach a known number
        check = self._send_check(endpoint, -1 if number is None else number)
        self._chain_checks[endpoint] = check
        self._chain_check_after[endpoint] = (
            now + CHAIN_CHECK_EVERY_DEADLINES * self._clock.deadline_s)
