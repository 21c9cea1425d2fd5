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
    reply = await control.post(
        "/faults", content=body, headers={"Content-Type": "application/json"}
    )
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


async def test_post_without_json_content_type_is_refused(
    node: DevNode, control: httpx.AsyncClient
) -> None:
    """A text/plain POST (what a web page may send without a preflight) gets 415, no fault."""
    body = b'{"kind": "restart", "seconds": 5}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": content_type} if content_type else {}
        reply = await control.post("/faults", content=body, headers=headers)
        assert reply.status_code == 415, content_type
        assert "application/json" in reply.json()["error"]
    assert node.faults.active() == []
    charset = {"Content-Type": "application/json; charset=utf-8"}
    assert (await control.post("/faults", content=body, headers=charset)).status_code == 201


async def test_cross_origin_requests_are_refused(
    node: DevNode, control: httpx.AsyncClient
) -> None:
    """An Origin other than the control server itself gets 403 on every method; its own passes."""
    evil = {"Origin": "http://evil.example"}
    fault = {"kind": "restart", "seconds": 5}
    assert (await control.post("/faults", json=fault, headers=evil)).status_code == 403
    assert (await control.delete("/faults", headers=evil)).status_code == 403
    assert (await control.get("/status", headers=evil)).status_code == 403
    assert node.faults.active() == []
    own = {"Origin": str(control.base_url).rstrip("/")}
    assert (await control.post("/faults", json=fault, headers=own)).status_code == 201


async def test_foreign_host_name_is_refused(node: DevNode, control: httpx.AsyncClient) -> None:
    """A Host naming another site (a DNS-rebinding page) gets 403; localhost and IPs pass."""
    port = control.base_url.port
    fault = {"kind": "restart", "seconds": 5}
    rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    assert (await control.post("/faults", json=fault, headers=rebound)).status_code == 403
    assert node.faults.active() == []
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert (await control.get("/status", headers={"Host": host})).status_code == 200


async def test_cli_control_api_listens_on_loopback_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`devnode --host X` alone keeps the control API on 127.0.0.1; --control-host moves it."""
    import asyncio
    import inspect

    from devnode_helpers import make_config

    from blockfeed.cli import devnode as cli

    default = inspect.signature(cli.devnode).parameters["control_host"].default
    assert default == "127.0.0.1"
    printed: asyncio.Queue[str] = asyncio.Queue()
    monkeypatch.setattr(cli.typer, "echo", lambda text, *a, **k: printed.put_nowait(text))
    for control_host in (default, "127.0.0.2"):
        task = asyncio.create_task(cli._serve(make_config(host="127.0.0.3"), 0, [], control_host))
        try:
            out = await asyncio.wait_for(printed.get(), WAIT_S)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert "ws ws://127.0.0.3:" in out
        assert f"control http://{control_host}:" in out
