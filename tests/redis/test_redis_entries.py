"""Pure parts of the Redis sink: entry IDs and fields, chain checks, outboxes, redaction."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from redis_chain import make_chain

import blockfeed.redis
from blockfeed.errors import ConfigError, MalformedFrame, StoreError, VerificationError
from blockfeed.sinks._outbox import MemoryOutbox, StoreOutbox
from blockfeed.sinks._redis_base import (
    StreamGap,
    check_redis_url,
    default_reconnect_delays,
    describe_error,
    scrub,
)
from blockfeed.sinks._stream_entries import (
    ChainCheck,
    StreamGapFound,
    block_from_entry,
    entry_fields,
    number_of_id,
    read_position,
    stream_id,
)
from blockfeed.store import open_store
from blockfeed.types import Block


def test_stream_ids_are_block_numbers_and_genesis_gets_0_1() -> None:
    """Block n is entry n-0, block 0 is 0-1 (Redis refuses 0-0), and IDs map back."""
    assert stream_id(6_940_429) == "6940429-0"
    assert stream_id(0) == "0-1"
    for number in (0, 1, 360, 2**32 - 1):
        assert number_of_id(stream_id(number)) == number
    assert read_position(None) == "0-0"
    assert read_position(41) == "41-0"


@pytest.mark.parametrize("entry_id", ["1700000000000-5", "12-1", "0-0", "abc-0", "7"])
def test_foreign_entry_ids_are_rejected(entry_id: str) -> None:
    """IDs blockfeed never writes (auto IDs, other sequences) are reported, not misread."""
    with pytest.raises(MalformedFrame, match="not written by blockfeed"):
        number_of_id(entry_id)


def test_entry_fields_round_trip_to_an_equal_block() -> None:
    """A block survives fields -> block exactly: header, source, late, received_at bit-for-bit."""
    for block in make_chain(3):
        fields = entry_fields(block)
        assert set(fields) == {
            "number",
            "hash",
            "parent_hash",
            "source",
            "received_at",
            "late",
            "header",
        }
        back = block_from_entry(stream_id(block.number), fields, stream="s")
        assert back == block
        assert back.header == block.header
        assert back.received_at == block.received_at


def test_block_without_header_round_trips() -> None:
    """A header-less block has no header field and comes back header-less."""
    block = dataclasses.replace(make_chain(1)[0], header=None)
    fields = entry_fields(block)
    assert "header" not in fields
    assert block_from_entry(stream_id(block.number), fields, stream="s") == block


def contents_block(block: Block) -> Block:
    """``block`` with contents holding a u128-like amount (beyond 2^53)."""
    return dataclasses.replace(
        block, timestamp=1_700_000_000_123, spec_version=219,
        events=[{"index": 0, "phase": "Finalization", "extrinsic_index": None,
                 "pallet": "SubtensorModule", "name": "StakeAdded",
                 "fields": {"amount": 2**80}}],
        extrinsics=None,
    )


def test_contents_field_round_trips_with_big_ints_as_text() -> None:
    """An optional ``contents`` field carries the block's contents (ints beyond 2^53 as text)
    and reads back; a header-only block writes no such field."""
    plain = make_chain(2)
    block = contents_block(plain[0])
    fields = entry_fields(block)
    assert json.loads(fields["contents"])["events"][0]["fields"]["amount"] == str(2**80)
    back = block_from_entry(stream_id(block.number), fields, stream="s")
    assert (back.timestamp, back.spec_version, back.extrinsics) == (1_700_000_000_123, 219, None)
    assert back.events == [{**block.events[0], "fields": {"amount": str(2**80)}}]  # type: ignore[index]
    assert "contents" not in entry_fields(plain[1])
    assert block_from_entry(stream_id(plain[1].number), entry_fields(plain[1]),
                            stream="s").spec_version is None


@pytest.mark.parametrize("damage", ["{", "[]", '{"events": 3}', '{"spec_version": "x"}'])
def test_a_damaged_contents_field_is_refused(damage: str) -> None:
    """A ``contents`` field blockfeed did not write is a MalformedFrame, not a crash."""
    block = contents_block(make_chain(1)[0])
    fields = {**entry_fields(block), "contents": damage}
    with pytest.raises(MalformedFrame, match="contents"):
        block_from_entry(stream_id(block.number), fields, stream="s")


def test_tampered_entries_are_refused() -> None:
    """A hash that the header does not produce, or a number that disagrees, is an error."""
    block = make_chain(1)[0]
    entry_id = stream_id(block.number)
    bad_hash = dict(entry_fields(block), hash="0x" + "ab" * 32)
    with pytest.raises(VerificationError, match="hashes to"):
        block_from_entry(entry_id, bad_hash, stream="s")
    bad_number = dict(entry_fields(block), number=str(block.number + 1))
    with pytest.raises(MalformedFrame, match="its ID says"):
        block_from_entry(entry_id, bad_number, stream="s")
    missing = {k: v for k, v in entry_fields(block).items() if k != "parent_hash"}
    with pytest.raises(MalformedFrame, match="missing parent_hash"):
        block_from_entry(entry_id, missing, stream="s")
    bad_json = dict(entry_fields(block), header="{not json")
    with pytest.raises(MalformedFrame, match="not JSON"):
        block_from_entry(entry_id, bad_json, stream="s")
    wrong_header = dict(entry_fields(block), header=json.dumps({"number": "0x1"}))
    with pytest.raises(MalformedFrame, match="missing field"):
        block_from_entry(entry_id, wrong_header, stream="s")
    bad_source = dict(entry_fields(block), source="carrier-pigeon")
    with pytest.raises(MalformedFrame, match="not a blockfeed block"):
        block_from_entry(entry_id, bad_source, stream="s")


def test_chain_check_accepts_a_linked_run_and_flags_gaps_and_forks() -> None:
    """Consecutive linked blocks pass; a skipped number is a gap; a wrong parent is an error."""
    chain = make_chain(6)
    check = ChainCheck(last_number=chain[0].number, last_hash=chain[0].hash)
    check.expect(chain[1])
    check.expect(chain[2])
    with pytest.raises(StreamGapFound) as gap:
        check.expect(chain[4])
    assert (gap.value.expected, gap.value.found) == (chain[3].number, chain[4].number)
    check.accept_gap(chain[4])
    assert check.last_number == chain[4].number
    forked = dataclasses.replace(chain[5], parent_hash="0x" + "00" * 32)
    with pytest.raises(VerificationError, match="mixes two chains"):
        check.expect(forked)
    with pytest.raises(VerificationError, match="went backwards"):
        check.expect(chain[2])


def test_chain_check_in_group_mode_only_requires_increasing_numbers() -> None:
    """Group readers skip what others took, but still never go back or break a touching link."""
    chain = make_chain(5)
    check = ChainCheck(last_number=None, last_hash=None, consecutive=False)
    check.expect(chain[0])
    check.expect(chain[3])
    with pytest.raises(VerificationError):
        check.expect(chain[1])
    with pytest.raises(VerificationError, match="mixes two chains"):
        check.expect(dataclasses.replace(chain[4], parent_hash=chain[0].hash))


def test_stream_gap_message_says_what_is_missing_and_how_to_go_on() -> None:
    """The gap error names the missing range, the next block, and the flag to resume."""
    gap = StreamGap("s", 10, 15)
    assert "blocks 10..14" in str(gap)
    assert "--from 15" in str(gap)
    assert (gap.expected, gap.found) == (10, 15)
    assert "no block 10 " in str(StreamGap("s", 10, 11))


async def test_memory_outbox_keeps_order_and_drops_oldest_when_full() -> None:
    """A full outbox drops its oldest blocks and says how many; drop_through forgets a prefix."""
    chain = make_chain(10)
    outbox = MemoryOutbox(limit=4)
    dropped = [outbox.push(block) for block in chain]
    assert sum(dropped) == 6
    assert [b.number for b in await outbox.peek(10)] == [b.number for b in chain[6:]]
    assert [b.number for b in await outbox.peek(2)] == [b.number for b in chain[6:8]]
    await outbox.drop_through(chain[7].number)
    assert [b.number for b in await outbox.peek(10)] == [b.number for b in chain[8:]]
    assert len(outbox) == 2 and await outbox.persist() == 0


async def test_store_outbox_writes_in_batches_and_keeps_order(tmp_path: Path) -> None:
    """Pushes stay in memory until persist(), which writes them in one go; order is by number."""
    chain = make_chain(10)
    store = open_store(str(tmp_path / "state.sqlite"))
    try:
        outbox = StoreOutbox(store, limit=100)
        for block in chain[5:]:
            outbox.push(block)
        assert store.outbox_len() == 0 and len(outbox) == 5
        assert await outbox.persist() == 0
        for block in chain[:5]:  # e.g. re-queued after a restart: the table sorts them
            outbox.push(block)
        await outbox.persist()
        assert store.outbox_len() == len(outbox) == 10
        assert await outbox.peek(20) == chain
        await outbox.drop_through(chain[6].number)
        assert await outbox.peek(20) == chain[7:] and len(outbox) == 3
    finally:
        store.close()


async def test_store_outbox_keeps_blocks_when_the_store_fails() -> None:
    """A failed write leaves the batch queued in memory, in order, for the next attempt."""
    chain = make_chain(4)

    class FailingStore:
        def __init__(self) -> None:
            self.fail = True
            self.rows: list[Block] = []

        def outbox_push(self, blocks: list[Block]) -> int:
            if self.fail:
                raise StoreError("disk full")
            self.rows.extend(blocks)
            return 0

        def outbox_peek(self, limit: int) -> list[Block]:
            return self.rows[:limit]

        def outbox_drop_through(self, number: int) -> int:
            return 0

        def outbox_len(self) -> int:
            return len(self.rows)

    store = FailingStore()
    outbox = StoreOutbox(store)
    outbox.push(chain[0])
    outbox.push(chain[1])
    with pytest.raises(StoreError):
        await outbox.persist()
    outbox.push(chain[2])
    store.fail = False
    await outbox.persist()
    assert store.rows == chain[:3] and len(outbox) == 3


def test_default_reconnect_delays_grow_with_full_jitter_and_a_cap() -> None:
    """Delays stay within [0, min(5 s, 0.2 s * 2**k)] and reach the cap's range."""
    iterator = iter(default_reconnect_delays())
    values = [next(iterator) for _ in range(40)]
    for k, value in enumerate(values):
        assert 0 <= value <= min(5.0, 0.2 * 2**k)
    assert max(values[10:]) > 2.5  # 30 draws in [0, 5): all below 2.5 has odds 2**-30


def test_redis_urls_are_checked_and_passwords_never_printed() -> None:
    """Bad schemes are refused with a redacted URL; error text loses the password."""
    url = "redis://:s3cretpassw0rd@cache.internal:6380/2"
    with pytest.raises(ConfigError) as exc:
        check_redis_url("http://:s3cretpassw0rd@cache.internal:6380")
    assert "s3cretpassw0rd" not in str(exc.value)
    assert check_redis_url(url) == url
    text = scrub(f"failed talking to {url} with s3cretpassw0rd", url)
    assert "s3cretpassw0rd" not in text
    assert "cache.internal:6380" in text
    described = describe_error(ConnectionError(f"boom at {url}"), url)
    assert "s3cretpassw0rd" not in described and "ConnectionError" in described


def test_publisher_and_consumer_reprs_and_status_are_redacted() -> None:
    """repr() and status() show host and port but never the password."""
    url = "redis://user:s3cretpassw0rd@127.0.0.1:6399/0"
    publisher = blockfeed.redis.RedisPublisher(url, "s")
    consumer = blockfeed.redis.consume(url, "s", after=5)
    for text in (repr(publisher), str(publisher.status()), repr(consumer), str(consumer.status())):
        assert "s3cretpassw0rd" not in text
        assert "127.0.0.1:6399" in text


def test_consumer_options_are_validated() -> None:
    """Half a group, negative positions and bad URLs are clear ConfigErrors at construction."""
    with pytest.raises(ConfigError, match="both a group name and a consumer"):
        blockfeed.redis.consume("redis://127.0.0.1:1", group="g")
    with pytest.raises(ConfigError, match="after must be"):
        blockfeed.redis.consume("redis://127.0.0.1:1", after=-2)
    with pytest.raises(ConfigError, match="not a Redis URL"):
        blockfeed.redis.consume("ws://127.0.0.1:1")
    with pytest.raises(ConfigError, match="stream name"):
        blockfeed.redis.RedisPublisher("redis://127.0.0.1:1", " ")


def test_public_alias_module_exports_a_short_sorted_api() -> None:
    """blockfeed.redis exposes exactly the documented names, sorted."""
    assert blockfeed.redis.__all__ == sorted(blockfeed.redis.__all__)
    assert set(blockfeed.redis.__all__) == {
        "DEFAULT_STREAM",
        "FROM_FIRST",
        "RedisPublisher",
        "RedisUnavailable",
        "StreamConsumer",
        "StreamGap",
        "consume",
    }
    assert blockfeed.redis.DEFAULT_STREAM == "blockfeed:finalized"


def test_delivered_at_round_trips_and_is_optional() -> None:
    """delivered_at is written when known, read back exactly, and absent entries still read."""
    import dataclasses

    from blockfeed.sinks._stream_entries import block_from_entry, entry_fields
    from blockfeed.types import Block, Source

    block = Block(number=7, hash="0x" + "11" * 32, parent_hash="0x" + "22" * 32,
                  source=Source.WS, received_at=1.25)
    handed = dataclasses.replace(block, delivered_at=1.2500001)
    fields = entry_fields(handed)
    assert fields["delivered_at"] == repr(1.2500001)
    assert block_from_entry("7-0", fields, stream="s").delivered_at == 1.2500001
    plain = entry_fields(block)
    assert "delivered_at" not in plain
    assert block_from_entry("7-0", plain, stream="s").delivered_at is None
