"""blockfeed: every finalized Substrate block, exactly once, in order, through any fault."""

from blockfeed.errors import (
    BlockfeedError,
    ConfigError,
    MalformedFrame,
    RpcError,
    StoreError,
    SubscriberLagged,
    VerificationError,
)
from blockfeed.feed import BlockFeed, FeedStatus
from blockfeed.types import Block, FeedEvent, Header, Mode, Source

__all__ = [
    "Block",
    "BlockFeed",
    "BlockfeedError",
    "ConfigError",
    "FeedEvent",
    "FeedStatus",
    "Header",
    "MalformedFrame",
    "Mode",
    "RpcError",
    "Source",
    "StoreError",
    "SubscriberLagged",
    "VerificationError",
]
