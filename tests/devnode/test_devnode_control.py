"""The control HTTP API: inject, list and clear faults; clear 400s for bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from devnode_helpers import WAIT_S, http_call

from blockfeed.devnode import ControlServer, DevNode


@pytest.fixture
async def control(node: DevNode) -> AsyncIterator[httpx.AsyncClient]:
    async with ControlServer(node, host="127.0.0.1", port=0) as server:
        async with httpx.AsyncClient(
            base_url=server.url, trust_env=False, timeout=WAIT_S
        ) as client:
            yield client


async def test_post_fault_returns_201_and_takes_effect(
    node: DevNode, control: httpx.AsyncClient
) -> None:
    """POST /faults injects (201 with the id and full options) and the node obeys at once."""
    fault_request = {"kind": "http_errors", "seconds": 30, "status": 429}
    reply = await control.post("/faults", json=fault_request)
    assert reply.status_code == 201
    fault = reply.json()
    assert fault["id"] == "f1" and fault["kind"] == "http_errors" and fault["class"] == "F6"
    assert fault["options"] == {"status": 429, "hang": False, "retry_after": None}
    assert 0 < fault["remaining_s"] <= 30
    async with httpx.AsyncClient(trust_env=False, timeout=WAIT_S) as client:
        assert (await client.post(node.http_url, json={})).status_code == 429


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"kind": "explode"}', "unknown fault kind 'explode'; valid kinds: close"),
        (b'{"kind": "latency", "delay": 2}', "valid options: delay_s, on"),
        (b'{"kind": "latency", "seconds": -3}', "seconds must be a number"),
        (b'{"seconds": 3}', "missing 'kind'"),
        (b"[1, 2]", "JSON object"),
        (b"{nope", "body must be JSON"),
    ],
)
async def test_bad_fault_requests_get_400_with_reason(
    node: DevNode, control: httpx.AsyncClient, body: bytes, message: str
) -> None:
    """Bad input gets 400 and a message saying what is valid; nothing is injected."""
    reply = await control.post("/faults", content=body)
    assert reply.status_code == 400
    assert message in reply.json()["error"]
    assert node.faults.active() == []


async def test_list_and_clear(node: DevNode, control: httpx.AsyncClient) -> None:
    """GET lists active faults and the kinds; DELETE one or all ends them early."""
    await control.post("/faults", json={"kind": "finality_halt", "seconds": 30})
    await control.post("/faults", json={"kind": "lie", "seconds": 30, "mode": "lag"})
    listing = (await control.get("/faults")).json()
    assert [f["kind"] for f in listing["faults"]] == ["finality_halt", "lie"]
    assert set(listing["kinds"]) >= {"close", "restart", "latency"}
    assert listing["kinds"]["latency"]["options"] == {"delay_s": 0.5, "on": "both"}
    assert (await control.delete("/faults/f1")).json() == {"cleared": 1}
    assert (await control.delete("/faults/f1")).status_code == 404
    assert (await control.delete("/faults")).json() == {"cleared": 1}
    assert node.faults.active() == []


async def test_status_and_unknown_routes(node: DevNode, control: httpx.AsyncClient) -> None:
    """/status reports the chain and urls; unknown paths 404, wrong methods 405."""
    await http_call(node.http_url, "system_health")
    status = (await control.get("/status")).json()
    assert status["finalized"] == node.chain.finalized_number
    assert status["ws_url"] == node.ws_url
    assert status["stats"]["requests"] == {"system_health": 1}
    assert (await control.get("/nope")).status_code == 404
    assert (await control.put("/faults")).status_code == 405
