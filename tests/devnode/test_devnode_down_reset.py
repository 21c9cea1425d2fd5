"""A node that goes down (restart, F2, also behind a flapping proxy) or whose chain is replaced
(reset, F13), seen from real sockets on loopback."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from devnode_helpers import WAIT_S, http_call, make_config, number_of, request, ws_client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from blockfeed.codec import block_hash, header_from_json
from blockfeed.devnode import ControlServer, DevNode

POST = (
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
)


def _post_bytes(method: str = "system_health") -> bytes:
    body = json.dumps(request(method)).encode()
    return POST % (len(body), body)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP response on a raw kept-alive socket: (status, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length:")
    )
    body = await asyncio.wait_for(reader.readexactly(length), WAIT_S)
    return int(lines[0].split(" ")[1]), body


async def _served_nothing(reader: asyncio.StreamReader) -> bool:
    """True when the socket ends (EOF or reset) without a single byte of answer."""
    try:
        data = await asyncio.wait_for(reader.read(), WAIT_S)
    except (ConnectionError, OSError):
        return True
    return data == b""


async def _wait_listening(node: DevNode) -> None:
    """Bounded wait until the RPC port accepts connections again."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", node.port)
        except OSError:
            assert time.monotonic() < deadline, "port never came back"
            await asyncio.sleep(0.02)
            continue
        writer.close()
        return


# -- restart (F2): nothing is served on any connection while down --------------------------------


async def test_restart_cuts_kept_alive_http_connections(node: DevNode) -> None:
    """F2: a kept-alive HTTP connection that was served before the restart is cut, not served."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(_post_bytes())
    assert (await _read_response(reader))[0] == 200
    node.faults.inject("restart", seconds=60)
    writer.write(_post_bytes())
    assert await _served_nothing(reader)
    writer.close()


async def test_a_connection_racing_the_restart_is_served_nothing(node: DevNode) -> None:
    """F2: a socket connected just as the node goes down gets no answer, whichever way it lands."""
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        node.faults.inject("restart", seconds=60)  # no await in between: the accept may be pending
        try:
            writer.write(_post_bytes())
            assert await _served_nothing(reader)
        finally:
            writer.close()
        node.faults.clear()
        await _wait_listening(node)
    assert "result" in await http_call(node.http_url, "system_health")


async def test_restart_flap_accepts_websockets_and_closes_them_and_answers_502(
    node: DevNode,
) -> None:
    """F2 flap: the port stays open; a WebSocket is closed right after its handshake, HTTP gets
    502 (kept alive), and the same HTTP connection is served again once the node is back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(_post_bytes())
    assert (await _read_response(reader))[0] == 200
    node.faults.inject("restart", seconds=60, flap=True)
    assert await _served_nothing(reader)  # the old connection dies with the node
    writer.close()
    async with connect(node.ws_url, proxy=None, ping_interval=None, open_timeout=WAIT_S) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), WAIT_S)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    try:
        for _ in range(2):
            writer.write(_post_bytes())
            status, body = await _read_response(reader)
            assert status == 502 and b"down" in body
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not even a 405 from a dead node
        assert (await _read_response(reader))[0] == 502
        node.faults.clear()
        writer.write(_post_bytes("chain_getFinalizedHead"))
        status, body = await _read_response(reader)
        assert status == 200
        assert json.loads(body)["result"] == node.chain.finalized_hash
    finally:
        writer.close()
    assert node.stats.down_answers == 4
    assert node.stats.restarts == 0  # the listening socket never closed


async def test_flap_then_refused_overlap_refuses_then_flaps(node: DevNode) -> None:
    """Overlapping down faults: a refusing one wins; when it ends the flapping one still holds."""
    flap = node.faults.inject("restart", seconds=60, flap=True)
    refused = node.faults.inject("restart", seconds=60)
    assert node.refusing() and node.is_down()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", node.port)
    node.faults.clear(refused.id)
    await _wait_listening(node)
    async with httpx.AsyncClient(trust_env=False, timeout=WAIT_S) as client:
        reply = await client.post(node.http_url, json=request("system_health"))
    assert reply.status_code == 502
    node.faults.clear(flap.id)
    assert "result" in await http_call(node.http_url, "system_health")


# -- reset (F13): the chain is replaced under the endpoint ---------------------------------------


async def _chain_facts(url: str) -> dict[str, object]:
    """What a client learns about the chain from one endpoint."""
    async with ws_client(url) as ws:
        genesis = (await ws.call("chain_getBlockHash", [0]))["result"]
        finalized = (await ws.call("chain_getFinalizedHead"))["result"]
        header = (await ws.call("chain_getHeader", [finalized]))["result"]
    return {"genesis": genesis, "finalized": finalized, "number": int(header["number"], 16)}


async def test_reset_new_genesis_drops_sockets_and_serves_another_chain(node: DevNode) -> None:
    """F13 new: sockets drop; then another genesis, a chain from block 1, old hashes unknown."""
    before = await _chain_facts(node.ws_url)
    async with ws_client(node.ws_url) as ws:
        await ws.subscribe()
        await ws.notification()
        node.faults.inject("reset", seconds=0)
        await asyncio.wait_for(ws.closed.wait(), WAIT_S)
    after = await _chain_facts(node.ws_url)
    assert after["genesis"] != before["genesis"]
    assert after["number"] == 1
    assert (await http_call(node.http_url, "chain_getHeader", [before["finalized"]]))[
        "result"
    ] is None
    node.advance(3)
    async with ws_client(node.ws_url) as ws:
        await ws.subscribe()
        first = header_from_json((await ws.notification())["params"]["result"])
        node.advance(1)
        second = header_from_json((await ws.notification())["params"]["result"])
    assert (first.number, second.number) == (4, 5)
    assert "0x" + second.parent_hash.hex() == block_hash(first)
    one = header_from_json(
        (
            await http_call(
                node.http_url,
                "chain_getHeader",
                [(await http_call(node.http_url, "chain_getBlockHash", [1]))["result"]],
            )
        )["result"]
    )
    assert "0x" + one.parent_hash.hex() == after["genesis"]
    assert node.stats.resets == 1 and node.chain.generation == 1


async def test_reset_same_genesis_keeps_block_0_and_changes_every_later_block() -> None:
    """F13 same: block 0 is identical, blocks 1.. all get other hashes, block 1 links to 0."""
    async with DevNode(make_config(start_block=1)) as node:
        node.advance(5)
        old = [
            (await http_call(node.http_url, "chain_getBlockHash", [n]))["result"] for n in range(7)
        ]
        node.faults.inject("reset", seconds=0, genesis="same")
        node.advance(5)
        new = [
            (await http_call(node.http_url, "chain_getBlockHash", [n]))["result"] for n in range(7)
        ]
        header_1 = (await http_call(node.http_url, "chain_getHeader", [new[1]]))["result"]
    assert new[0] == old[0]
    assert all(a != b and a and b for a, b in zip(old[1:], new[1:], strict=True))
    assert header_1["parentHash"] == new[0]


async def test_reset_is_down_for_its_seconds_then_the_new_chain_stays(node: DevNode) -> None:
    """F13: refused while the fault holds, then served; the old chain never comes back, and
    /status shows the new genesis."""
    old_genesis = node.chain.genesis_hash
    fault = node.faults.inject("reset", seconds=0.3, start_block=500)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", node.port)
    await node.wait_until(lambda: not node.faults.is_active("reset"))
    await _wait_listening(node)
    facts = await _chain_facts(node.ws_url)
    assert facts["genesis"] == node.chain.genesis_hash != old_genesis
    assert facts["number"] == 500
    assert fault.remaining_s(node.faults.now()) == 0
    status, payload = ControlServer(node, host="127.0.0.1", port=0).handle("GET", "/status", b"")
    assert status == 200 and payload["genesis_hash"] == facts["genesis"]
    assert payload["stats"]["resets"] == 1


async def test_each_reset_gives_a_fresh_genesis_and_subscribers_follow_it(
    live_node: DevNode,
) -> None:
    """Two resets: three different genesis hashes; a new subscription hears the newest chain;
    a reference to node.chain taken before follows the replacement."""
    node = live_node
    chain = node.chain
    seen = {node.chain.genesis_hash}
    for _ in range(2):
        node.faults.inject("reset", seconds=0)
        seen.add(node.chain.genesis_hash)
    assert len(seen) == 3
    async with ws_client(node.ws_url) as ws:
        await ws.subscribe()
        first = number_of(await ws.notification())
        second = number_of(await ws.notification())
    assert 1 <= first < second < 1000
    assert chain.genesis_hash in seen and chain.generation == 2


async def test_stop_during_a_long_restart_is_prompt() -> None:
    """stop() while a 60 s restart holds ends at once (the reopen task is really cancelled)."""
    node = DevNode(make_config())
    await node.start()
    node.faults.inject("restart", seconds=60)
    await asyncio.sleep(0)
    await asyncio.wait_for(node.stop(), WAIT_S)
