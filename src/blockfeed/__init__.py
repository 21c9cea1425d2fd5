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
from blockfeed.types import Block, FeedEvent, Header, Mode, Source

__all__ = [
    "Block",
    "BlockfeedError",
    "ConfigError",
    "FeedEvent",
    "Header",
    "MalformedFrame",
    "Mode",
    "RpcError",
    "Source",
    "StoreError",
    "SubscriberLagged",
    "VerificationError",
]
