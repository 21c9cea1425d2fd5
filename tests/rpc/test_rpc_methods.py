"""Typed Substrate methods: request shapes, validation, verification, on both transports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from rpc_fakes import WAIT_S, make_chain, ws_node
from websockets.asyncio.server import ServerConnection

from blockfeed.codec import block_hash
from blockfeed.errors import MalformedFrame, RpcServerError, VerificationError
from blockfeed.rpc import HttpRpc, UnknownBlock, WsRpc, methods
from blockfeed.types import Header

CHAIN = make_chain(500, 6)
BY_HASH = {block_hash(h): h for h in CHAIN}
HASH_OF = {h.number: block_hash(h) for h in CHAIN}


class FakeNode:
    """An in-memory RpcCaller that records what was asked (counts requests and batches)."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[str, Any]] = []
        self.batches: list[list[tuple[str, Any]]] = []

    def _answer(self, method: str, params: Any) -> Any:
        if method in self.answers:
            answer = self.answers[method]
            return answer(params) if callable(answer) else answer
        if method == "chain_getHeader":
            header = BY_HASH.get(params[0]) if params else CHAIN[-1]
            return None if header is None else header.to_json()
        if method == "chain_getBlockHash":
            (arg,) = params
            if isinstance(arg, list):
                return [HASH_OF.get(n) for n in arg]
            return HASH_OF.get(arg)
        raise AssertionError(f"unexpected {method}")

    async def call(self, method: str, params: Any = None, *, timeout_s: float | None = None) -> Any:
        self.calls.append((method, params))
        return self._answer(method, params)

    async def batch(
        self, calls: Sequence[tuple[str, Any]], *, timeout_s: float | None = None
    ) -> list[Any]:
        self.batches.append(list(calls))
        return [self._answer(m, p) for m, p in calls]


async def test_get_finalized_head_validates_the_hash() -> None:
    """The finalized head is a validated lower-case 0x hash; garbage is MalformedFrame."""
    node = FakeNode({"chain_getFinalizedHead": HASH_OF[505].upper().replace("0X", "0x")})
    assert await methods.get_finalized_head(node) == HASH_OF[505]
    for bad in (None, 5, "0x1234", "zz" * 32):
        with pytest.raises(MalformedFrame):
            await methods.get_finalized_head(FakeNode({"chain_getFinalizedHead": bad}))


async def test_get_header_by_hash_is_verified() -> None:
    """A header fetched by hash is parsed and must hash to that hash."""
    assert await methods.get_header(FakeNode(), HASH_OF[502]) == CHAIN[2]
    liar = FakeNode({"chain_getHeader": CHAIN[3].to_json()})
    with pytest.raises(VerificationError, match="#503"):
        await methods.get_header(liar, HASH_OF[502])


async def test_get_header_without_hash_returns_best() -> None:
    """No hash asks for the best header (sent with empty params)."""
    node = FakeNode()
    assert (await methods.get_header(node)).number == 505
    assert node.calls == [("chain_getHeader", [])]


async def test_unknown_block_is_an_rpc_server_error() -> None:
    """A null header for a hash raises UnknownBlock, catchable as RpcServerError."""
    missing = "0x" + "ab" * 32
    with pytest.raises(UnknownBlock) as info:
        await methods.get_header(FakeNode(), missing)
    assert isinstance(info.value, RpcServerError)
    assert info.value.code == methods.UNKNOWN_BLOCK_CODE and info.value.block_hash == missing


async def test_malformed_header_is_rejected() -> None:
    """A header with missing fields is MalformedFrame, never a crash."""
    node = FakeNode({"chain_getHeader": {"number": "0x1"}})
    with pytest.raises(MalformedFrame):
        await methods.get_header(node)


async def test_get_block_hashes_is_one_request_with_a_list() -> None:
    """Many numbers are fetched in ONE request with a list param; unknown numbers give None."""
    node = FakeNode()
    hashes = await methods.get_block_hashes(node, [501, 502, 999])
    assert hashes == [HASH_OF[501], HASH_OF[502], None]
    assert node.calls == [("chain_getBlockHash", [[501, 502, 999]])]
    assert await methods.get_block_hashes(node, []) == [] and len(node.calls) == 1


async def test_get_block_hashes_rejects_wrong_answers_and_arguments() -> None:
    """A reply of the wrong length or with bad hashes is MalformedFrame; bad numbers ValueError."""
    for reply in ([HASH_OF[501]], "0x00", [HASH_OF[501], "0x12"]):
        with pytest.raises(MalformedFrame):
            await methods.get_block_hashes(FakeNode({"chain_getBlockHash": reply}), [1, 2])
    for bad in ([-1], [True], ["7"]):
        with pytest.raises(ValueError):
            await methods.get_block_hashes(FakeNode(), bad)


async def test_get_headers_is_one_batch_in_order() -> None:
    """Headers for many hashes come from ONE batch, in request order, each verified."""
    node = FakeNode()
    wanted = [HASH_OF[n] for n in (503, 501, 502)]
    headers = await methods.get_headers(node, wanted)
    assert [h.number for h in headers] == [503, 501, 502]
    assert len(node.batches) == 1 and not node.calls
    assert await methods.get_headers(node, []) == [] and len(node.batches) == 1


async def test_get_headers_raises_item_errors() -> None:
    """A per-item node error or null inside the batch is raised."""

    class Failing(FakeNode):
        async def batch(
            self, calls: Sequence[tuple[str, Any]], *, timeout_s: float | None = None
        ) -> list[Any]:
            return [CHAIN[0].to_json(), RpcServerError(-1, "pruned")]

    with pytest.raises(RpcServerError, match="pruned"):
        await methods.get_headers(Failing(), [HASH_OF[500], HASH_OF[501]])
    with pytest.raises(UnknownBlock):
        await methods.get_headers(FakeNode(), [HASH_OF[500], "0x" + "cd" * 32])


async def test_genesis_state_call_storage_and_health() -> None:
    """The remaining helpers send the right params and decode their results."""
    genesis = "0x" + "99" * 32
    node = FakeNode(
        {
            "chain_getBlockHash": lambda params: genesis if params == [0] else None,
            "state_call": "0x0102",
            "state_getStorage": lambda params: None if params[0] == "0x00" else "0xff",
            "system_health": {"peers": 3, "isSyncing": False, "shouldHavePeers": True},
        }
    )
    assert await methods.get_genesis_hash(node) == genesis
    assert await methods.state_call(node, "Api_fn", "0x01", at=genesis) == b"\x01\x02"
    assert ("state_call", ["Api_fn", "0x01", genesis]) in node.calls
    assert await methods.get_storage(node, "0x00") is None
    assert await methods.get_storage(node, "0x01") == b"\xff"
    health = await methods.system_health(node)
    assert (health.peers, health.is_syncing, health.should_have_peers) == (3, False, True)


async def test_helpers_reject_malformed_results_and_bad_arguments() -> None:
    """Non-hex results and bad health shapes are MalformedFrame; bad hex arguments ValueError."""
    with pytest.raises(MalformedFrame):
        await methods.state_call(FakeNode({"state_call": 5}), "f", "0x")
    with pytest.raises(MalformedFrame):
        await methods.get_storage(FakeNode({"state_getStorage": "0xzz"}), "0x01")
    with pytest.raises(MalformedFrame):
        await methods.system_health(FakeNode({"system_health": {"peers": "3"}}))
    with pytest.raises(MalformedFrame):
        await methods.get_genesis_hash(FakeNode({"chain_getBlockHash": None}))
    with pytest.raises(ValueError):
        await methods.state_call(FakeNode(), "f", "nothex")
    with pytest.raises(ValueError):
        await methods.get_header(FakeNode(), "0xzz")


def _serve(body: Any) -> Any:
    """Answer one JSON-RPC request or batch from the in-memory chain."""
    node = FakeNode()
    if isinstance(body, list):
        return [
            {"jsonrpc": "2.0", "id": r["id"], "result": node._answer(r["method"], r.get("params"))}
            for r in body
        ]
    return {
        "jsonrpc": "2.0",
        "id": body["id"],
        "result": node._answer(body["method"], body["params"]),
    }


async def _backfill(rpc: methods.RpcCaller) -> list[Header]:
    hashes = await methods.get_block_hashes(rpc, range(500, 506))
    assert all(h is not None for h in hashes)
    return await methods.get_headers(rpc, [h for h in hashes if h is not None])


async def test_backfill_over_http_uses_two_posts() -> None:
    """Hashes by number then headers by batch: exactly two HTTP requests for six blocks."""
    posts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal posts
        posts += 1
        return httpx.Response(200, json=_serve(json.loads(request.content)))

    async with HttpRpc("http://127.0.0.1:1", transport=httpx.MockTransport(handler)) as rpc:
        assert await _backfill(rpc) == CHAIN
    assert posts == 2


async def test_backfill_over_ws_uses_two_frames() -> None:
    """The same methods work on WsRpc: two frames for six blocks."""
    frames = 0

    async def node(connection: ServerConnection) -> None:
        nonlocal frames
        async for frame in connection:
            frames += 1
            await connection.send(json.dumps(_serve(json.loads(frame))))

    async with ws_node(node) as url, await WsRpc.connect(url, open_timeout_s=WAIT_S) as ws:
        assert await asyncio.wait_for(_backfill(ws), WAIT_S) == CHAIN
    assert frames == 2
