"""blockfeed.compat: async-substrate-interface's call and header shape, on devnode."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from blockfeed import BlockFeed
from blockfeed.compat import header_object, subscribe_block_headers
from blockfeed.devnode import DevNode, DevNodeConfig

WAIT_S = 60.0
BLOCK_TIME_S = 0.05


@pytest.fixture
async def node() -> Any:
    async with DevNode(DevNodeConfig(block_time_s=BLOCK_TIME_S)) as running:
        yield running


async def test_three_argument_handler_gets_every_block_in_order(node: DevNode) -> None:
    """handler(obj, update_nr, subscription_id): consecutive blocks, update_nr from 0, one id,
    and the first non-None return value ends the subscription and is returned."""
    seen: list[tuple[dict[str, Any], int, str]] = []

    async def handler(obj: dict[str, Any], update_nr: int, subscription_id: str) -> Any:
        seen.append((obj, update_nr, subscription_id))
        if update_nr == 5:
            return {"message": "done", "updates_processed": update_nr}
        return None

    result = await asyncio.wait_for(
        subscribe_block_headers(handler, finalized_only=True, url=node.ws_url,
                                block_time_s=BLOCK_TIME_S),
        WAIT_S,
    )
    assert result == {"message": "done", "updates_processed": 5}
    assert [nr for _, nr, _ in seen] == list(range(6))
    assert len({sid for _, _, sid in seen}) == 1
    numbers = [obj["header"]["number"] for obj, _, _ in seen]
    assert numbers == list(range(numbers[0], numbers[0] + 6))
    for obj, _, _ in seen:
        header = obj["header"]
        number = header["number"]
        assert isinstance(number, int)
        expected = node.chain.header_of(number)
        # The parent as the node itself records it (the chain's first block has no served parent).
        assert header["parentHash"] == "0x" + expected.parent_hash.hex()
        assert header["stateRoot"] == "0x" + expected.state_root.hex()
        assert header["extrinsicsRoot"] == "0x" + expected.extrinsics_root.hex()
        assert header["digest"]["logs"] == ["0x" + log.hex() for log in expected.digest_logs]


async def test_one_argument_sync_handler(node: DevNode) -> None:
    """handler(obj), as async-substrate-interface's async client calls it; sync is fine too."""
    numbers: list[int] = []

    def handler(obj: dict[str, Any]) -> int | None:
        numbers.append(obj["header"]["number"])
        return numbers[-1] if len(numbers) == 3 else None

    result = await asyncio.wait_for(
        subscribe_block_headers(handler, url=node.ws_url, block_time_s=BLOCK_TIME_S), WAIT_S
    )
    assert result == numbers[-1]
    assert numbers == [numbers[0], numbers[0] + 1, numbers[0] + 2]


async def test_no_gap_through_a_silent_subscription(node: DevNode) -> None:
    """A subscription that goes silent mid-way (F4) costs the handler no block."""
    numbers: list[int] = []

    def handler(obj: dict[str, Any], update_nr: int, subscription_id: str) -> bool | None:
        numbers.append(obj["header"]["number"])
        if update_nr == 3:
            node.faults.inject("sub_stall", seconds=1.0)
        return True if update_nr == 40 else None

    await asyncio.wait_for(
        subscribe_block_headers(handler, url=node.ws_url, block_time_s=BLOCK_TIME_S), WAIT_S
    )
    assert numbers == list(range(numbers[0], numbers[0] + 41))


async def test_handler_error_propagates(node: DevNode) -> None:
    """An exception from the handler ends the subscription and reaches the caller."""

    async def handler(obj: dict[str, Any], update_nr: int, subscription_id: str) -> None:
        raise RuntimeError(f"handler failed at #{obj['header']['number']}")

    with pytest.raises(RuntimeError, match="handler failed at #"):
        await asyncio.wait_for(
            subscribe_block_headers(handler, url=node.ws_url, block_time_s=BLOCK_TIME_S), WAIT_S
        )


async def test_reads_from_a_running_feed(node: DevNode) -> None:
    """feed= follows a feed the caller owns, which keeps running afterwards."""
    async with BlockFeed([node.ws_url], block_time_s=BLOCK_TIME_S) as feed:
        first = await asyncio.wait_for(
            subscribe_block_headers(lambda obj, nr, sid: obj if nr == 1 else None, feed=feed),
            WAIT_S,
        )
        assert first["header"]["number"] > 0
        assert feed.status().mode.value in {"streaming", "polling"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"finalized_only": False}, "finalized blocks only"),
        ({"include_author": True}, "include_author=True is not supported"),
        ({"url": "ws://127.0.0.1:9", "network": "finney"}, "either url= or network="),
        ({"feed": object(), "url": "ws://127.0.0.1:9"}, "either feed="),
    ],
)
async def test_what_blockfeed_cannot_do_is_a_clear_error(
    kwargs: dict[str, Any], message: str
) -> None:
    """Unsupported options are refused up front with a ValueError that says why."""
    with pytest.raises(ValueError, match=message):
        await subscribe_block_headers(lambda obj: None, **kwargs)


async def test_handler_must_be_callable() -> None:
    """A non-callable handler is refused before anything connects."""
    with pytest.raises(ValueError, match="callable"):
        await subscribe_block_headers("not a function")  # type: ignore[arg-type]


def test_header_object_without_a_header() -> None:
    """A block that carries only its hash chain still yields the shape, roots unknown (None)."""
    from blockfeed.types import Block, Source

    block = Block(number=9, hash="0x" + "11" * 32, parent_hash="0x" + "22" * 32,
                  source=Source.BACKFILL, received_at=0.0)
    header = header_object(block)["header"]
    assert header["number"] == 9
    assert header["parentHash"] == "0x" + "22" * 32
    assert header["stateRoot"] is None
