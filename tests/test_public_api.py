"""The public surface is small, sorted and consistent across the CLI, the library and Redis."""

from __future__ import annotations

import blockfeed


def test_all_is_sorted_and_importable() -> None:
    """__all__ is sorted and every name in it resolves."""
    assert list(blockfeed.__all__) == sorted(blockfeed.__all__)
    for name in blockfeed.__all__:
        assert getattr(blockfeed, name) is not None


def test_serve_publishes_where_consume_reads() -> None:
    """`serve --redis` and `consume` default to the same stream key."""
    from blockfeed import config
    from blockfeed import redis as bf_redis

    assert config.DEFAULT_REDIS_STREAM == bf_redis.DEFAULT_STREAM


def test_network_tables_agree() -> None:
    """The gateway's settings know exactly the networks the feed knows."""
    from blockfeed import config
    from blockfeed.feed.endpoints import NETWORKS

    assert dict(config.NETWORK_ENDPOINTS) == dict(NETWORKS)
    assert {"finney", "test", "archive", "local"} <= set(NETWORKS)


def test_feed_config_is_public_and_is_what_the_feed_holds() -> None:
    """FeedConfig is exported at the top level, and a feed exposes the frozen one it runs on."""
    from blockfeed import BlockFeed, FeedConfig

    assert "FeedConfig" in blockfeed.__all__
    config = FeedConfig.for_block_time(0.5)
    feed = BlockFeed(["ws://127.0.0.1:9"], config, log_blocks=False)
    assert feed.config == config.replace(log_blocks=False)
    assert feed.config.block_time_s == 0.5 and config.log_blocks
