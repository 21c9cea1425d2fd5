"""The asyncio feed: :class:`BlockFeed` drives the sans-I/O core over a connector's RPC clients.

See :mod:`blockfeed.feed.feed` for how its parts fit (the driver, delivery, the config),
:mod:`blockfeed.feed.delivery` for what repeats across a crash, and :mod:`blockfeed.core.merge`
for the exactly-once argument.
"""

from blockfeed.feed.config import FeedConfig
from blockfeed.feed.endpoints import NETWORKS, Endpoint, build_endpoints, http_twin
from blockfeed.feed.feed import BlockFeed
from blockfeed.feed.status import FeedStatus
from blockfeed.feed.subscribers import FeedSubscription

__all__ = [
    "NETWORKS",
    "BlockFeed",
    "Endpoint",
    "FeedConfig",
    "FeedStatus",
    "FeedSubscription",
    "build_endpoints",
    "http_twin",
]
