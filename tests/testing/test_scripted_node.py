"""ScriptedNode over InMemoryNetwork keeps the connector contract and plays every fault class."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from blockfeed.codec import block_hash, header_from_json
from blockfeed.errors import ConfigError, MalformedFrame, RpcServerError, RpcTransportError
from blockfeed.rpc import methods
from blockfeed.rpc.connector import SocketOptions
from blockfeed.testing import InMemoryNetwork, ScriptedNode, VirtualClock, run_virtual
from blockfeed.testing.network import MemorySocket
from blockfeed.types import Header

T = 0.1


def options(**overrides: Any) -> SocketOptions:
    """Socket options as the feed would pass them at T = 0.1 s."""
    base: dict[str, Any] = {"open_timeout_s": 0.5, "ping_interval_s": 0.3,
                            "ping_timeout_s": 0.3, "close_timeout_s": 0.5,
                            "max_frame_bytes": 2**20}
    base.update(overrides)
    return SocketOptions(**base)


def run(test: Callable[[ScriptedNode, InMemoryNetwork], Coroutine[Any, Any, Any]],
        **node_config: Any) -> Any:
    """Run ``test(node, network)`` under a virtual clock with a started node."""

    async def main() -> Any:
        node = ScriptedNode("node-a", **{"block_time_s": T, "seed": 3, "finality_jumps": 0.0,
                                         **node_config})
        async with node:
            return await test(node, InMemoryNetwork(node))

    return run_virtual(main(), limit_s=3600)


async def finalized_stream(socket: MemorySocket) -> AsyncIterator[Any]:
    """Subscribe to finalized heads on ``socket``."""
    return await socket.subscribe("chain_subscribeFinalizedHeads",
                                  notification="chain_finalizedHead",
                                  unsubscribe="chain_unsubscribeFinalizedHeads")


async def take(stream: AsyncIterator[Any], count: int) -> list[Header]:
    """The next ``count`` notifications as headers."""
    return [header_from_json(await anext(stream)) for _ in range(count)]


def test_http_serves_the_chain_as_it_grows_on_the_virtual_clock() -> None:
    """Blocks appear every T of virtual time; HTTP answers match the chain, verified."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> None:
        http = net.http(node.http_url, timeout_s=1.0)
        first = node.chain.finalized_number
        await VirtualClock.current().advance(1.0 + T / 2)
        assert node.chain.finalized_number == first + 10
        head = await methods.get_finalized_head(http)
        assert head == node.chain.hash_of(node.chain.finalized_number)
        header = await methods.get_header(http, head)
        assert header.number == node.chain.finalized_number
        assert await methods.get_genesis_hash(http) == node.chain.genesis_hash

    run(test)


def test_the_socket_delivers_every_finalized_block_parent_linked() -> None:
    """A finalized-heads subscription gives consecutive, linked headers (finality without jumps)."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> None:
        socket = await net.websocket(node.ws_url, options())
        headers = await take(await finalized_stream(socket), 20)
        numbers = [h.number for h in headers]
        assert numbers == list(range(numbers[0], numbers[0] + 20))
        for prev, cur in itertools.pairwise(headers):
            assert "0x" + cur.parent_hash.hex() == block_hash(prev)
        await socket.close()
        assert socket.closed

    run(test)


def test_close_ends_the_subscription_with_a_transport_error() -> None:
    """F1: close drops open sockets (close frame or reset); a new socket works at once."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> list[str]:
        reasons = []
        for reset in (False, True):
            socket = await net.websocket(node.ws_url, options())
            stream = await finalized_stream(socket)
            await take(stream, 1)
            node.faults.inject("close", reset=reset)
            with pytest.raises(RpcTransportError) as caught:
                while True:
                    await anext(stream)
            reasons.append(str(caught.value))
        socket = await net.websocket(node.ws_url, options())
        await take(await finalized_stream(socket), 1)
        return reasons

    closed, reset = run(test)
    assert "closed by the node (code 1001)" in closed
    assert "reset" in reset


def test_restart_refuses_then_serves_the_grown_chain() -> None:
    """F2: while restarting, sockets and HTTP are refused; afterwards the chain has moved on."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> None:
        http = net.http(node.http_url, timeout_s=1.0)
        before = node.chain.finalized_number
        node.faults.inject("restart", seconds=2)
        with pytest.raises(RpcTransportError, match="refused"):
            await net.websocket(node.ws_url, options())
        with pytest.raises(RpcTransportError, match="refused"):
            await methods.get_finalized_head(http)
        await VirtualClock.current().advance(2.0)
        head = await methods.get_header(http, await methods.get_finalized_head(http))
        assert head.number >= before + 19
        await net.websocket(node.ws_url, options())

    run(test)


def test_restart_behind_a_flapping_proxy_answers_502_and_closes_sockets() -> None:
    """F2 flap: HTTP gets 502; a socket opens, then is closed right away."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> None:
        node.faults.inject("restart", seconds=2, flap=True)
        with pytest.raises(RpcTransportError) as caught:
            await methods.get_finalized_head(net.http(node.http_url, timeout_s=1.0))
        assert caught.value.status == 502
        socket = await net.websocket(node.ws_url, options())
        await asyncio.sleep(0)
        assert socket.closed

    run(test)


def test_blackhole_hangs_calls_and_keepalive_closes_the_socket() -> None:
    """F3: calls time out, and the ping timeout closes the socket within interval + timeout."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> None:
        clock = VirtualClock.current()
        socket = await net.websocket(node.ws_url, options())
        node.faults.inject("blackhole", seconds=10)
        with pytest.raises(RpcTransportError, match="no response"):
            await socket.call("system_health", timeout_s=0.2)
        waited = await clock.wait_until(lambda: socket.closed, within_s=1.0)
        assert waited <= 0.6 + 0.011
        with pytest.raises(RpcTransportError, match="timed out"):
            await methods.get_finalized_head(net.http(node.http_url, timeout_s=0.5))
        with pytest.raises(RpcTransportError, match="timed out"):
            await net.websocket(node.ws_url, options())

    run(test)


def test_sub_stall_silences_notifications_but_not_requests() -> None:
    """F4: the subscription goes quiet while calls are still answered."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> None:
        socket = await net.websocket(node.ws_url, options(ping_interval_s=None))
        stream = await finalized_stream(socket)
        await take(stream, 1)
        node.faults.inject("sub_stall", seconds=5)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(stream), 2.0)
        assert await socket.call("system_health") == {"peers": 8, "isSyncing": False,
                                                       "shouldHavePeers": True}

    run(test)


def test_sub_error_answers_subscribe_with_a_json_rpc_error() -> None:
    """F5: subscribing raises the node's RpcServerError."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> int:
        node.faults.inject("sub_error", seconds=5)
        socket = await net.websocket(node.ws_url, options())
        with pytest.raises(RpcServerError) as caught:
            await finalized_stream(socket)
        return caught.value.code

    assert run(test) == -32009


def test_http_errors_carry_status_and_retry_after() -> None:
    """F6: 429 with Retry-After reaches the caller as status and retry_after_s; hang times out."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> None:
        http = net.http(node.http_url, timeout_s=0.5)
        fault = node.faults.inject("http_errors", seconds=5, status=429, retry_after=2)
        with pytest.raises(RpcTransportError) as caught:
            await methods.get_finalized_head(http)
        assert (caught.value.status, caught.value.retry_after_s) == (429, 2.0)
        node.faults.clear(fault.id)
        node.faults.inject("http_errors", seconds=5, hang=True)
        with pytest.raises(RpcTransportError, match=r"timed out after 0\.5 s"):
            await methods.get_finalized_head(http)
        node.faults.clear()
        node.faults.inject("rpc_errors", seconds=5, on="http")
        with pytest.raises(RpcServerError) as server_error:
            await methods.get_finalized_head(http)
        assert server_error.value.is_rate_limit

    run(test)


def test_finality_halt_keeps_best_growing() -> None:
    """F7: the finalized head stands still while best moves on."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> None:
        node.faults.inject("finality_halt", seconds=3)
        finalized, best = node.chain.finalized_number, node.chain.best_number
        await VirtualClock.current().advance(2.05)
        assert node.chain.finalized_number == finalized
        assert node.chain.best_number == best + 20

    run(test)


def test_malformed_frames_are_reported_and_http_raises() -> None:
    """F8: bad socket frames go to on_malformed (good ones still arrive); bad HTTP raises."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> None:
        reasons: list[str] = []
        socket = await net.websocket(node.ws_url, options(on_malformed=reasons.append))
        stream = await finalized_stream(socket)
        node.faults.inject("malformed", seconds=60, rate=1.0, on="ws",
                           kinds=["garbage", "invalid_json"])
        headers = await take(stream, 5)
        assert [h.number for h in headers] == list(range(headers[0].number,
                                                         headers[0].number + 5))
        assert len(reasons) >= 4  # every frame after the first was preceded by garbage
        node.faults.inject("malformed", seconds=60, rate=1.0, on="http", kinds=["garbage"])
        with pytest.raises(MalformedFrame):
            await methods.get_finalized_head(net.http(node.http_url, timeout_s=1.0))

    run(test)


def test_oversized_frames_close_the_socket() -> None:
    """F8 oversized: a frame over max_frame_bytes is reported and closes the socket."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> None:
        reasons: list[str] = []
        socket = await net.websocket(node.ws_url, options(on_malformed=reasons.append,
                                                          max_frame_bytes=10_000))
        stream = await finalized_stream(socket)
        node.faults.inject("malformed", seconds=60, rate=1.0, on="ws", kinds=["oversized"],
                           big_bytes=20_000)
        with pytest.raises(RpcTransportError, match="1009"):
            while True:
                await anext(stream)
        assert reasons and "larger than" in reasons[0]

    run(test)


def test_disorder_duplicates_reorders_and_skips() -> None:
    """F9: with disorder the stream is no longer consecutive, unique and increasing."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> list[int]:
        socket = await net.websocket(node.ws_url, options())
        stream = await finalized_stream(socket)
        node.faults.inject("disorder", seconds=60, rate=0.5)
        return [h.number for h in await take(stream, 40)]

    numbers = run(test)
    steps = [b - a for a, b in itertools.pairwise(numbers)]
    assert 0 in steps  # a duplicate
    assert any(step < 0 for step in steps)  # out of order
    assert run(test) == numbers  # seeded: the same disorder every run


def test_lies_and_lag() -> None:
    """F10: a lying node serves a wrong parent; a lagging one reports an old finalized head."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> None:
        http = net.http(node.http_url, timeout_s=1.0)
        await VirtualClock.current().advance(2.05)
        number = node.chain.finalized_number
        node.faults.inject("lie", seconds=5, mode="parent", on="http")
        lied = await methods.get_header(http, (await methods.get_block_hashes(http, [number]))[0])
        assert lied.parent_hash != node.chain.header_of(number).parent_hash
        node.faults.clear()
        node.faults.inject("lie", seconds=5, mode="lag", blocks=7, on="http")
        lagging = await methods.get_header(http, await methods.get_finalized_head(http))
        assert lagging.number == node.chain.finalized_number - 7

    run(test)


def test_latency_delays_every_answer() -> None:
    """F11: each answer arrives delay_s of virtual time later."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        socket = await net.websocket(node.ws_url, options(ping_interval_s=None))
        node.faults.inject("latency", seconds=60, delay_s=0.25)
        start = loop.time()
        await socket.call("system_health")
        ws_s = loop.time() - start
        start = loop.time()
        await methods.get_finalized_head(net.http(node.http_url, timeout_s=1.0))
        return ws_s, loop.time() - start

    assert run(test) == pytest.approx((0.25, 0.25))


def test_reset_replaces_the_chain() -> None:
    """F13: after a reset the endpoint serves another genesis."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> tuple[str, str]:
        http = net.http(node.http_url, timeout_s=1.0)
        before = await methods.get_genesis_hash(http)
        node.faults.inject("reset", seconds=1)
        await VirtualClock.current().advance(1.05)
        return before, await methods.get_genesis_hash(http)

    before, after = run(test)
    assert before != after


def test_declared_slot_can_differ_from_the_real_pace() -> None:
    """F14: slot_duration_s is what the runtime declares; blocks still come every block_time_s."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> bytes:
        return await methods.state_call(net.http(node.http_url, timeout_s=1.0),
                                        "AuraApi_slot_duration", "0x")

    declared = run(test, slot_duration_s=12.0)
    assert int.from_bytes(declared, "little") == 12_000


def test_unknown_hosts_and_bad_urls() -> None:
    """A name no node has is a transport error; a URL of the wrong kind is a ConfigError."""

    async def test(node: ScriptedNode, net: InMemoryNetwork) -> None:
        with pytest.raises(RpcTransportError, match="no such in-memory node"):
            await net.websocket("ws://nobody.test/", options())
        with pytest.raises(RpcTransportError, match="no such in-memory node"):
            await net.http("http://nobody.test/", timeout_s=1).call("system_health")
        with pytest.raises(ConfigError):
            net.http("ws://node-a.test/", timeout_s=1)
        with pytest.raises(ValueError, match="already"):
            net.add(ScriptedNode("node-a"))

    run(test)


def test_bad_fault_options_are_refused_with_the_valid_ones_named() -> None:
    """inject() validates exactly as devnode does (same names and options)."""
    node = ScriptedNode("node-a")
    with pytest.raises(ValueError, match="valid kinds"):
        node.faults.inject("explode")
    with pytest.raises(ValueError, match="valid options"):
        node.faults.inject("close", colour="red")
    with pytest.raises(ValueError):
        ScriptedNode("no spaces please")


def test_fast_config_is_the_shared_profile_without_block_lines() -> None:
    """fast_config(T) is FeedConfig.for_block_time(T) with block lines off; overrides apply."""
    from blockfeed import FeedConfig
    from blockfeed.testing import fast_config

    assert fast_config(0.2) == FeedConfig.for_block_time(0.2, log_blocks=False)
    assert fast_config(0.2).ping_interval_s == pytest.approx(0.6)
    assert fast_config(0.2, log_blocks=True, lag_quarantine_blocks=10).lag_quarantine_blocks == 10
    with pytest.raises(ConfigError):
        fast_config(0)
    with pytest.raises(ConfigError, match="valid settings"):
        fast_config(0.2, colour="red")


def test_a_node_that_is_not_started_refuses_and_says_why() -> None:
    """Before start (and after stop) connects are refused with a hint; start twice is an error."""

    async def main() -> None:
        node = ScriptedNode("node-a", block_time_s=T)
        net = InMemoryNetwork(node)
        node.faults.inject("latency", seconds=1, delay_s=0.1)  # faults work before start
        with pytest.raises(RpcTransportError, match="not started"):
            await net.websocket(node.ws_url, options())
        async with node:
            with pytest.raises(RuntimeError, match="already started"):
                await node.start()
            await methods.get_finalized_head(net.http(node.http_url, timeout_s=1))
        with pytest.raises(RpcTransportError, match="not started"):
            await methods.get_finalized_head(net.http(node.http_url, timeout_s=1))

    run_virtual(main())


async def test_the_node_also_runs_on_an_ordinary_loop() -> None:
    """No virtual clock needed: on pytest-asyncio's real loop a fast node streams blocks too."""
    node = ScriptedNode("node-a", block_time_s=0.05, finality_jumps=0.0)
    async with node:
        socket = await InMemoryNetwork(node).websocket(node.ws_url, options())
        headers = await asyncio.wait_for(take(await finalized_stream(socket), 3), 30)
        await socket.close()
    assert [h.number for h in headers] == list(range(headers[0].number, headers[0].number + 3))


def test_a_node_with_recorded_contents_serves_decodable_blocks() -> None:
    """contents_fixture works as on devnode: a feed with contents="events" decodes every block."""
    from pathlib import Path

    from blockfeed import BlockFeed
    from blockfeed.testing import fast_config

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "subtensor" / "blocks.json"

    async def main() -> list[int]:
        node = ScriptedNode("node-a", block_time_s=T, start_block=1_000, finality_lag=0,
                            finality_jumps=0.0, contents_fixture=str(fixture))
        feed = BlockFeed([node.ws_url], fast_config(T, contents="events"), start_at=1_001,
                         connector=InMemoryNetwork(node))
        events: list[int] = []
        async with node, feed:
            async for block in feed:
                assert block.events is not None and block.spec_version == 218
                events.append(len(block.events))
                if len(events) == 30:
                    break
        return events

    counts = run_virtual(main(), limit_s=600)
    assert len(counts) == 30 and sum(counts) > 0
