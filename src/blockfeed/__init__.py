"""blockfeed: every finalized Substrate block, exactly once, in order, through any fault."""

from blockfeed.epochs import EpochMonitor, EpochSchedule, SubnetEpochSchedule, TriggerContext
from blockfeed.errors import (
    BlockfeedError,
    ConfigError,
    MalformedFrame,
    RpcError,
    StoreError,
    SubscriberLagged,
    VerificationError,
)
from blockfeed.feed import BlockFeed, FeedConfig, FeedStatus
from blockfeed.store import CheckpointStore, open_store
from blockfeed.types import Block, FeedEvent, Header, Mode, Source

__all__ = [
    "Block",
    "BlockFeed",
    "BlockfeedError",
    "CheckpointStore",
    "ConfigError",
    "EpochMonitor",
    "EpochSchedule",
    "FeedConfig",
    "FeedEvent",
    "FeedStatus",
    "Header",
    "MalformedFrame",
    "Mode",
    "RpcError",
    "Source",
    "StoreError",
    "SubnetEpochSchedule",
    "SubscriberLagged",
    "TriggerContext",
    "VerificationError",
    "open_store",
]
