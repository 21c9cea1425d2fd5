"""Every RPC method, batches and error codes, from real httpx and websockets clients."""

from __future__ import annotations

import asyncio
import itertools
import json

import httpx
import pytest
from devnode_helpers import (
    START_BLOCK,
    WAIT_S,
    http_call,
    make_config,
    number_of,
    request,
    ws_client,
)

from blockfeed.codec import block_hash, header_from_json
from blockfeed.devnode import DevNode
from blockfeed.devnode.runtime import NEXT_EPOCH_API, next_epoch_block, tempo_key


async def test_urls_share_one_port(node: DevNode) -> None:
    """ws_url and http_url point at the same real port."""
    assert node.port > 0
    assert node.ws_url == f"ws://127.0.0.1:{node.port}"
    assert node.http_url == f"http://127.0.0.1:{node.port}"


async def test_system_methods_over_http_and_ws(node: DevNode) -> None:
    """system_health, system_chain and rpc_methods answer on both transports."""
    health = await http_call(node.http_url, "system_health")
    assert health["result"] == {"peers": 8, "isSyncing": False, "shouldHavePeers": True}
    assert (await http_call(node.http_url, "system_chain"))["result"] == "Bittensor devnode"
    async with ws_client(node.ws_url) as ws:
        methods = (await ws.call("rpc_methods"))["result"]["methods"]
        assert (await ws.call("system_chain"))["result"] == "Bittensor devnode"
    for name in (
        "chain_subscribeFinalizedHeads",
        "chain_unsubscribeFinalizedHeads",
        "chain_subscribeNewHeads",
        "chain_unsubscribeNewHeads",
        "chain_getFinalizedHead",
        "chain_getHeader",
        "chain_getBlockHash",
        "state_call",
        "state_getStorage",
        "system_health",
        "system_chain",
        "rpc_methods",
    ):
        assert name in methods


async def test_finalized_head_and_headers_over_http(node: DevNode) -> None:
    """getFinalizedHead -> getHeader(hash) gives the finalized header, whose hash matches."""
    finalized = (await http_call(node.http_url, "chain_getFinalizedHead"))["result"]
    assert finalized == node.chain.finalized_hash
    header_json = (await http_call(node.http_url, "chain_getHeader", [finalized]))["result"]
    header = header_from_json(header_json)
    assert header.number == node.chain.finalized_number == START_BLOCK
    assert block_hash(header) == finalized
    best = header_from_json((await http_call(node.http_url, "chain_getHeader"))["result"])
    assert best.number == node.chain.best_number
    unknown = await http_call(node.http_url, "chain_getHeader", ["0x" + "11" * 32])
    assert unknown["result"] is None


async def test_get_block_hash_forms(node: DevNode) -> None:
    """A number, a hex number, a list, nothing (best), genesis 0, virtual and future -> null."""
    node.advance(5)
    chain = node.chain
    url = node.http_url
    assert (await http_call(url, "chain_getBlockHash", [START_BLOCK]))["result"] == chain.hash_of(
        START_BLOCK
    )
    assert (await http_call(url, "chain_getBlockHash", [hex(START_BLOCK + 1)]))[
        "result"
    ] == chain.hash_of(START_BLOCK + 1)
    assert (await http_call(url, "chain_getBlockHash"))["result"] == chain.best_hash
    assert (await http_call(url, "chain_getBlockHash", [0]))["result"] == chain.genesis_hash
    numbers = [START_BLOCK - 1, START_BLOCK, START_BLOCK + 2, chain.best_number + 1]
    listed = (await http_call(url, "chain_getBlockHash", [numbers]))["result"]
    assert listed == [None, chain.hash_of(START_BLOCK), chain.hash_of(START_BLOCK + 2), None]


async def test_header_chain_is_parent_linked_over_the_wire(node: DevNode) -> None:
    """Headers fetched by number over HTTP batch link by parentHash like a real chain."""
    node.advance(10)
    numbers = list(range(START_BLOCK, node.chain.finalized_number + 1))
    async with httpx.AsyncClient(trust_env=False, timeout=WAIT_S) as client:
        hashes = await client.post(node.http_url, json=request("chain_getBlockHash", [numbers]))
        hash_list = hashes.json()["result"]
        batch = [request("chain_getHeader", [h], i) for i, h in enumerate(hash_list)]
        answers = (await client.post(node.http_url, json=batch)).json()
    assert [a["id"] for a in answers] == list(range(len(numbers)))
    headers = [header_from_json(a["result"]) for a in answers]
    for previous, header in itertools.pairwise(headers):
        assert "0x" + header.parent_hash.hex() == block_hash(previous)


async def test_finalized_subscription_first_gets_current_head_then_each_block(
    node: DevNode,
) -> None:
    """Subscribing yields the current finalized header first, then one per finality step."""
    async with ws_client(node.ws_url) as ws:
        subscription = await ws.subscribe()
        first = await ws.notification()
        assert first["method"] == "chain_finalizedHead"
        assert first["params"]["subscription"] == subscription
        assert number_of(first) == node.chain.finalized_number
        node.advance(3)
        received = [number_of(await ws.notification()) for _ in range(3)]
        assert received == [START_BLOCK + 1, START_BLOCK + 2, START_BLOCK + 3]
        assert (await ws.call("chain_unsubscribeFinalizedHeads", [subscription]))["result"] is True
        assert (await ws.call("chain_unsubscribeFinalizedHeads", [subscription]))["result"] is False
        node.advance(2)
        assert await ws.silent_for()
    assert node.stats.subscriptions == 1
    assert node.stats.requests["chain_subscribeFinalizedHeads"] == 1


async def test_new_heads_subscription(node: DevNode) -> None:
    """chain_subscribeNewHeads sends the best header, then every new best block."""
    async with ws_client(node.ws_url) as ws:
        subscription = await ws.subscribe("chain_subscribeNewHeads")
        first = await ws.notification()
        assert first["method"] == "chain_newHead"
        assert number_of(first) == node.chain.best_number
        node.advance(1)
        assert number_of(await ws.notification()) == node.chain.best_number
        assert (await ws.call("chain_unsubscribeNewHeads", [subscription]))["result"] is True


async def test_subscriptions_do_not_exist_over_http(node: DevNode) -> None:
    """Like a real node, HTTP has no subscription methods (-32601)."""
    answer = await http_call(node.http_url, "chain_subscribeFinalizedHeads")
    assert answer["error"]["code"] == -32601


async def test_state_call_next_epoch_start_block(node: DevNode) -> None:
    """The runtime API answers SCALE Option<u64>: Some for known netuids, None otherwise."""
    answer = await http_call(node.http_url, "state_call", [NEXT_EPOCH_API, "0x0100"])
    raw = bytes.fromhex(answer["result"][2:])
    expected = next_epoch_block(node.chain.best_number, netuid=1, tempo=360)
    assert raw == b"\x01" + expected.to_bytes(8, "little")
    at_start = await http_call(
        node.http_url, "state_call", [NEXT_EPOCH_API, "0x0700", node.chain.hash_of(START_BLOCK)]
    )
    expected_at = next_epoch_block(START_BLOCK, netuid=7, tempo=99)
    assert at_start["result"] == "0x01" + expected_at.to_bytes(8, "little").hex()
    none = await http_call(node.http_url, "state_call", [NEXT_EPOCH_API, "0x0500"])
    assert none["result"] == "0x00"
    unknown_at = await http_call(
        node.http_url, "state_call", [NEXT_EPOCH_API, "0x0100", "0x" + "22" * 32]
    )
    assert unknown_at["error"]["code"] == 4003
    assert "UnknownBlock" in unknown_at["error"]["message"]


async def test_state_call_without_runtime_api() -> None:
    """runtime_api=False fails state_call like an old runtime; Tempo storage still answers."""
    async with DevNode(make_config(runtime_api=False)) as node:
        answer = await http_call(node.http_url, "state_call", [NEXT_EPOCH_API, "0x0100"])
        assert answer["error"]["code"] == 4003
        assert "Exported method" in answer["error"]["message"]
        assert "not found" in answer["error"]["message"]
        tempo = await http_call(node.http_url, "state_getStorage", [tempo_key(1)])
        assert tempo["result"] == "0x6801"


async def test_state_call_aura_slot_duration_defaults_to_the_block_time(node: DevNode) -> None:
    """AuraApi_slot_duration is SCALE u64 milliseconds of the block time (50 ms here), on both
    transports."""
    expected = "0x" + (50).to_bytes(8, "little").hex()
    assert (await http_call(node.http_url, "state_call", ["AuraApi_slot_duration", "0x"]))[
        "result"
    ] == expected
    async with ws_client(node.ws_url) as ws:
        answer = await ws.call("state_call", ["AuraApi_slot_duration", "0x"])
    assert answer["result"] == expected


async def test_declared_slot_differs_from_the_real_pace() -> None:
    """slot_duration_s=3 declares 3000 ms while blocks come every 50 ms; BABE is unknown, as on
    an Aura chain."""
    async with DevNode(make_config(slot_duration_s=3.0, runtime_api=False)) as node:
        answer = await http_call(node.http_url, "state_call", ["AuraApi_slot_duration", "0x"])
        assert bytes.fromhex(answer["result"][2:]) == (3000).to_bytes(8, "little")
        babe = await http_call(node.http_url, "state_call", ["BabeApi_configuration", "0x"])
    assert babe["error"] == {
        "code": 4003,
        "message": "Client error: Execution failed: Other: Exported method "
        "BabeApi_configuration is not found",
    }


async def test_runtime_version_lists_the_apis(node: DevNode) -> None:
    """state_getRuntimeVersion answers a subtensor-like version with Core and AuraApi ids."""
    version = (await http_call(node.http_url, "state_getRuntimeVersion"))["result"]
    assert version["specName"] == "node-subtensor"
    assert isinstance(version["specVersion"], int) and version["specVersion"] > 0
    apis = dict((api_id, api_version) for api_id, api_version in version["apis"])
    assert apis["0xdf6acb689907609b"] >= 1  # Core
    assert apis["0xdd718d5cc53262d4"] == 1  # AuraApi
    at = await http_call(node.http_url, "state_getRuntimeVersion", ["0x" + "22" * 32])
    assert at["error"]["code"] == 4003
    async with ws_client(node.ws_url) as ws:
        assert (await ws.call("chain_getRuntimeVersion"))["result"] == version
        methods = (await ws.call("rpc_methods"))["result"]["methods"]
    assert "state_getRuntimeVersion" in methods


async def test_state_get_storage_tempo(node: DevNode) -> None:
    """Tempo(netuid) is SCALE u16 LE; unknown netuid or unknown key -> null."""
    async with ws_client(node.ws_url) as ws:
        assert (await ws.call("state_getStorage", [tempo_key(7)]))["result"] == "0x6300"
        assert (await ws.call("state_getStorage", [tempo_key(9)]))["result"] is None
        assert (await ws.call("state_getStorage", ["0x1234"]))["result"] is None
        bad = await ws.call("state_getStorage", ["nothex"])
        assert bad["error"]["code"] == -32602


async def test_batches_over_ws(node: DevNode) -> None:
    """A WebSocket batch is answered as one array, in order, errors inline."""
    async with ws_client(node.ws_url) as ws:
        await ws.send(
            [
                request("chain_getFinalizedHead", None, 1),
                request("no_such_method", None, 2),
                request("chain_getBlockHash", [0], 3),
            ]
        )
        answers = await ws.answers.get()
    assert [a["id"] for a in answers] == [1, 2, 3]
    assert answers[0]["result"] == node.chain.finalized_hash
    assert answers[1]["error"]["code"] == -32601
    assert answers[2]["result"] == node.chain.genesis_hash


async def test_error_codes_over_both_transports(node: DevNode) -> None:
    """-32700, -32600, -32601 and -32602 come back over HTTP and WebSocket alike."""
    cases = [
        ("{oops", -32700),
        ("[]", -32600),
        (json.dumps({"jsonrpc": "2.0", "id": 1}), -32600),
        (json.dumps(request("chain_nope")), -32601),
        (json.dumps(request("chain_getHeader", ["0x12"])), -32602),
        (json.dumps(request("chain_getBlockHash", [-1])), -32602),
        (json.dumps(request("chain_getBlockHash", [True])), -32602),
        (json.dumps(request("chain_getFinalizedHead", [1])), -32602),
    ]
    async with httpx.AsyncClient(trust_env=False, timeout=WAIT_S) as client:
        for body, code in cases:
            reply = await client.post(
                node.http_url, content=body, headers={"content-type": "application/json"}
            )
            assert reply.status_code == 200
            assert reply.json()["error"]["code"] == code, body
    async with ws_client(node.ws_url) as ws:
        for body, code in cases:
            await ws.send(body)
            assert (await ws.answers.get())["error"]["code"] == code, body


async def test_http_edge_cases_never_crash(node: DevNode) -> None:
    """GET is 405, notifications get an empty 200, bad Content-Length is 400; node keeps going."""
    async with httpx.AsyncClient(trust_env=False, timeout=WAIT_S) as client:
        assert (await client.get(node.http_url)).status_code == 405
        empty = await client.post(node.http_url, json={"jsonrpc": "2.0", "method": "system_chain"})
        assert empty.status_code == 200 and empty.content == b""
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 400")
        writer.close()
        assert (await client.post(node.http_url, json=request("system_chain"))).status_code == 200


async def test_wait_for_finalized_is_bounded(live_node: DevNode) -> None:
    """wait_for_finalized returns once the block is final and times out otherwise."""
    target = live_node.chain.finalized_number + 3
    assert await live_node.wait_for_finalized(target, timeout_s=WAIT_S) >= target
    with pytest.raises(TimeoutError, match="not reached"):
        await live_node.wait_for_finalized(target + 10_000, timeout_s=0.1)
    assert live_node.stats.blocks_produced >= 3


async def test_aliases_and_extra_system_methods(node: DevNode) -> None:
    """British/legacy aliases and system_name/version/properties answer like the originals."""
    async with ws_client(node.ws_url) as ws:
        assert (await ws.call("chain_getFinalisedHead"))["result"] == node.chain.finalized_hash
        assert (await ws.call("chain_getHead"))["result"] == node.chain.best_hash
        sub = await ws.subscribe("chain_subscribeFinalisedHeads")
        await ws.notification()
        assert (await ws.call("chain_unsubscribeFinalisedHeads", [sub]))["result"] is True
        assert (await ws.call("system_name"))["result"] == "blockfeed-devnode"
        assert isinstance((await ws.call("system_version"))["result"], str)
        assert (await ws.call("system_properties"))["result"]["tokenSymbol"] == "TAO"
        storage = await ws.call("state_getStorageAt", [tempo_key(1), node.chain.best_hash])
        assert storage["result"] == "0x6801"
        named = await ws.call("chain_getHeader", {"hash": node.chain.finalized_hash})
        assert int(named["result"]["number"], 16) == node.chain.finalized_number
        unknown_name = await ws.call("chain_getHeader", {"block": node.chain.finalized_hash})
        assert unknown_name["error"]["code"] == -32602


async def test_expect_100_continue_is_answered(node: DevNode) -> None:
    """Large curl-style requests with Expect: 100-continue get 100 Continue, then the answer."""
    body = json.dumps([request("system_health", None, i) for i in range(40)]).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    head = (
        f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S) == (
        b"HTTP/1.1 100 Continue\r\n\r\n"
    )
    writer.write(body)
    status = await asyncio.wait_for(reader.readline(), WAIT_S)
    writer.close()
    assert status.startswith(b"HTTP/1.1 200")
