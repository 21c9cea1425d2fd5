"""The asyncio feed: :class:`BlockFeed` drives the sans-I/O core over real sockets.

See :mod:`blockfeed.feed.feed` for how the driver is put together, and
:mod:`blockfeed.core.merge` for the exactly-once argument.
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
