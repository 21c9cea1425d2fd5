"""Redis Streams distribution: ``RedisPublisher`` writes a feed into a stream, ``consume`` reads it.

A short alias for :mod:`blockfeed.sinks.redis`, where the exactly-once argument is written out::

    from blockfeed.redis import RedisPublisher, consume

    async with RedisPublisher("redis://localhost:6379/0", store=store) as publisher:
        publisher.attach(feed)

    async for block in consume("redis://localhost:6379/0", after=6_940_000):
        ...
"""

from blockfeed.sinks.redis import (
    DEFAULT_STREAM,
    FROM_FIRST,
    RedisPublisher,
    RedisUnavailable,
    StreamConsumer,
    StreamGap,
    consume,
)

__all__ = [
    "DEFAULT_STREAM",
    "FROM_FIRST",
    "RedisPublisher",
    "RedisUnavailable",
    "StreamConsumer",
    "StreamGap",
    "consume",
]
