"""Sans-I/O core: merge, modes, deadlines, backoff, endpoint ranking, poll timing,
verification and the follower that holds them.

Nothing in this package opens a socket, sleeps or reads a clock: every input carries ``now``
and every output is data (blocks, actions, events, the next deadline). The asyncio driver in
:mod:`blockfeed.feed` performs the actions; tests drive the follower with a fake clock.
Imports run one way: ``follower`` uses ``poller`` and ``verify``, which use the small parts
(``actions``, ``deadline``, ``merge``, ``ranking``); nothing here imports the feed, the
gateway or the CLI.
"""

from blockfeed.core.actions import (
    Action,
    CheckChain,
    CloseSocket,
    Connect,
    FetchRange,
    Poll,
    Probe,
    Subscribe,
)
from blockfeed.core.backoff import backoff, backoff_delay
from blockfeed.core.deadline import BlockClock
from blockfeed.core.follower import Follower, FollowerConfig, SocketState
from blockfeed.core.merge import Candidate, Merge, OfferOutcome, RangeCheck, Rejection
from blockfeed.core.modes import ModeMachine
from blockfeed.core.poller import Poller
from blockfeed.core.ranking import EndpointHealth, Ranking
from blockfeed.core.verify import Verifier

__all__ = [
    "Action",
    "BlockClock",
    "Candidate",
    "CheckChain",
    "CloseSocket",
    "Connect",
    "EndpointHealth",
    "FetchRange",
    "Follower",
    "FollowerConfig",
    "Merge",
    "ModeMachine",
    "OfferOutcome",
    "Poll",
    "Poller",
    "Probe",
    "RangeCheck",
    "Ranking",
    "Rejection",
    "SocketState",
    "Subscribe",
    "Verifier",
    "backoff",
    "backoff_delay",
]
