"""A rate-limiting provider (``rpc_errors``, issue 14) and the request counts a benchmark reads,
from real websockets/httpx clients on loopback."""

from __future__ import annotations

import httpx
from devnode_helpers import WAIT_S, http_call, number_of, request, ws_client

from blockfeed.devnode import ControlServer, DevNode

RATE_LIMITED = {"code": -32029, "message": "rate limit exceeded"}


async def test_rpc_errors_on_ws_answers_every_request_but_keeps_notifying(node: DevNode) -> None:
    """on=ws: every request (subscribe too) gets -32029; existing subscriptions still notify;
    HTTP is untouched."""
    async with ws_client(node.ws_url) as ws:
        await ws.subscribe()
        await ws.notification()
        node.faults.inject("rpc_errors", seconds=60, on="ws")
        for method in ("chain_getFinalizedHead", "chain_subscribeFinalizedHeads", "nope"):
            assert (await ws.call(method))["error"] == RATE_LIMITED
        node.advance(1)
        assert number_of(await ws.notification()) == node.chain.finalized_number
        assert (await http_call(node.http_url, "chain_getFinalizedHead"))[
            "result"
        ] == node.chain.finalized_hash
        node.faults.clear()
        assert (await ws.call("chain_getFinalizedHead"))["result"] == node.chain.finalized_hash
    assert node.stats.rpc_errors_sent == 3


async def test_rpc_errors_on_http_is_status_200_with_an_error_per_batch_item(
    node: DevNode,
) -> None:
    """on=http with a custom code: HTTP 200, one error per batch request; the socket is fine."""
    node.faults.inject("rpc_errors", seconds=60, on="http", code=-32005, message="limit exceeded")
    batch = [request("chain_getFinalizedHead", None, i) for i in range(3)]
    async with httpx.AsyncClient(trust_env=False, timeout=WAIT_S) as client:
        reply = await client.post(node.http_url, json=batch)
    assert reply.status_code == 200
    answers = reply.json()
    assert sorted(answer["id"] for answer in answers) == [0, 1, 2]
    assert all(a["error"] == {"code": -32005, "message": "limit exceeded"} for a in answers)
    async with ws_client(node.ws_url) as ws:
        assert (await ws.call("chain_getFinalizedHead"))["result"] == node.chain.finalized_hash


async def test_rpc_errors_rate_answers_some_requests(node: DevNode) -> None:
    """rate=0.5: over 40 requests some are refused and some answered."""
    node.faults.inject("rpc_errors", seconds=60, rate=0.5)
    async with ws_client(node.ws_url) as ws:
        answers = [await ws.call("system_health") for _ in range(40)]
    refused = sum("error" in answer for answer in answers)
    assert 0 < refused < 40
    assert node.stats.rpc_errors_sent == refused


async def test_status_counts_every_request_per_transport_and_method(node: DevNode) -> None:
    """/status counts what clients sent, per transport and method, whatever the answer was:
    rate-limited, HTTP 429, unknown methods and unparsable bodies included."""
    async with ws_client(node.ws_url) as ws:
        await ws.call("chain_getFinalizedHead")
        node.faults.inject("rpc_errors", seconds=60, on="ws")
        await ws.call("chain_getFinalizedHead")
        await ws.call("chain_subscribeFinalizedHeads")
        await ws.send("{not json")
        assert (await ws.answers.get())["error"]["code"] == -32700
    node.faults.clear()
    node.faults.inject("http_errors", seconds=60, status=429, retry_after=2)
    async with httpx.AsyncClient(trust_env=False, timeout=WAIT_S) as client:
        batch = [request("chain_getHeader", None, 1), request("chain_getBlockHash", [1], 2)]
        assert (await client.post(node.http_url, json=batch)).status_code == 429
        node.faults.clear()
        assert (await client.post(node.http_url, json=request("no_such_method"))).status_code == 200
    status, payload = ControlServer(node, host="127.0.0.1", port=0).handle("GET", "/status", b"")
    assert status == 200
    stats = payload["stats"]
    assert stats["requests_by_transport"] == {
        "ws": {
            "chain_getFinalizedHead": 2,
            "chain_subscribeFinalizedHeads": 1,
            "(invalid)": 1,
        },
        "http": {"chain_getHeader": 1, "chain_getBlockHash": 1, "no_such_method": 1},
    }
    assert stats["requests_total"] == {"ws": 4, "http": 3}
    assert stats["rpc_errors_sent"] == 2
    assert stats["http_errors_sent"] == 1


async def test_request_counts_stay_bounded_under_random_method_names(node: DevNode) -> None:
    """Thousands of distinct or huge method names cost a bounded number of counter entries."""
    batch = [request(f"m{i}" + "x" * 500, None, i) for i in range(1000)]
    async with httpx.AsyncClient(trust_env=False, timeout=WAIT_S) as client:
        await client.post(node.http_url, json=batch)
    counts = node.stats.requests_by_transport["http"]
    assert len(counts) <= 201
    assert sum(counts.values()) == 1000
    assert max(len(name) for name in counts) <= 100
