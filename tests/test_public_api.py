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
