"""Every fault kind, observed from real websockets/httpx clients on loopback."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import httpx
import pytest
from devnode_helpers import QUIET_S, WAIT_S, http_call, number_of, request, ws_client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from blockfeed.codec import block_hash, header_from_json
from blockfeed.devnode import ActiveFault, DevNode, parse_scenario
from blockfeed.devnode.faults import MALFORMED_KINDS
from blockfeed.errors import MalformedFrame


async def _wait_closed(ws_closed: asyncio.Event) -> None:
    await asyncio.wait_for(ws_closed.wait(), WAIT_S)


# -- F1 close ------------------------------------------------------------------------------------


async def test_close_sends_close_frame_and_accepts_new_connections(node: DevNode) -> None:
    """F1: every socket gets a close frame with the code; a new connection works at once."""
    async with connect(node.ws_url, proxy=None, ping_interval=None) as ws:
        await ws.send(json.dumps(request("chain_subscribeFinalizedHeads")))
        await ws.recv()
        await ws.recv()
        node.faults.inject("close", code=4000)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), WAIT_S)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    async with ws_client(node.ws_url) as again:
        assert (await again.call("chain_getFinalizedHead"))["result"] == node.chain.finalized_hash
    assert node.stats.connections_dropped == 1


async def test_close_with_reset_sends_no_close_frame(node: DevNode) -> None:
    """F1 reset=True: the client sees the connection die without any close frame."""
    async with connect(node.ws_url, proxy=None, ping_interval=None) as ws:
        node.faults.inject("close", reset=True)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), WAIT_S)
    assert closed.value.rcvd is None


async def test_close_flap_closes_new_sockets_right_after_opening(node: DevNode) -> None:
    """F1 flap: during the fault a new socket opens and is closed at once; after, it stays."""
    node.faults.inject("close", seconds=30, flap=True)
    async with connect(node.ws_url, proxy=None, ping_interval=None) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), WAIT_S)
    node.faults.clear()
    async with ws_client(node.ws_url) as ws2:
        assert "result" in await ws2.call("system_health")


# -- F2 restart ----------------------------------------------------------------------------------


async def test_restart_refuses_then_serves_on_same_port_with_chain_advanced(
    live_node: DevNode,
) -> None:
    """F2: sockets drop, connects are refused, then the same port serves a longer chain."""
    node = live_node
    port = node.port
    async with ws_client(node.ws_url) as ws:
        before = (await ws.call("chain_getHeader"))["result"]
        node.faults.inject("restart", seconds=0.6)
        await _wait_closed(ws.closed)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    async with httpx.AsyncClient(trust_env=False, timeout=1.0) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(node.http_url, json=request("system_health"))
    deadline = time.monotonic() + WAIT_S
    while True:  # bounded wait for the port to come back
        try:
            async with ws_client(node.ws_url) as again:
                after = (await again.call("chain_getHeader"))["result"]
            break
        except OSError:
            assert time.monotonic() < deadline, "port never came back"
            await asyncio.sleep(0.05)
    assert node.port == port
    assert int(after["number"], 16) > int(before["number"], 16)
    assert node.stats.restarts == 1


# -- F3 blackhole --------------------------------------------------------------------------------


async def test_blackhole_no_pong_no_answer_no_notification_then_resumes(node: DevNode) -> None:
    """F3: open socket, but pings, requests and notifications all vanish; HTTP hangs too."""
    async with ws_client(node.ws_url) as ws:
        await ws.subscribe()
        await ws.notification()
        node.faults.inject("blackhole", seconds=60)
        pong = await ws.ws.ping()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pong), QUIET_S)
        await ws.send(request("system_health", None, 99))
        node.advance(2)
        assert await ws.silent_for()
        assert ws.answers.empty()
        assert not ws.closed.is_set()
        async with httpx.AsyncClient(trust_env=False, timeout=QUIET_S) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(node.http_url, json=request("system_health"))
        node.faults.clear()
        await asyncio.wait_for(pong, WAIT_S)  # traffic flows again
        assert (await asyncio.wait_for(ws.answers.get(), WAIT_S))["id"] == 99
        node.advance(1)
        assert number_of(await ws.notification()) == node.chain.finalized_number


async def test_blackhole_http_false_keeps_http_alive(node: DevNode) -> None:
    """F3 http=False: the socket is silent while HTTP still answers (the feed's escape)."""
    async with ws_client(node.ws_url) as ws:
        node.faults.inject("blackhole", seconds=60, http=False)
        answer = await http_call(node.http_url, "chain_getFinalizedHead")
        assert answer["result"] == node.chain.finalized_hash
        await ws.send(request("system_health", None, 5))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.answers.get(), QUIET_S)
        node.faults.clear()  # so the client's closing handshake is answered


async def test_blackhole_new_false_spares_new_sockets(node: DevNode) -> None:
    """F3 new=False: sockets open at injection are dead; a fresh socket works."""
    async with ws_client(node.ws_url) as old:
        node.faults.inject("blackhole", seconds=60, new=False)
        async with ws_client(node.ws_url) as fresh:
            assert "result" in await fresh.call("system_health")
        await old.send(request("system_health", None, 7))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(old.answers.get(), QUIET_S)
        node.faults.clear()  # so the client's closing handshake is answered


# -- F4 sub_stall --------------------------------------------------------------------------------


async def test_sub_stall_silences_subscription_but_answers_requests_and_pings(
    node: DevNode,
) -> None:
    """F4: notifications stop while requests and pings are answered; then they resume."""
    async with ws_client(node.ws_url) as ws:
        await ws.subscribe()
        await ws.notification()
        node.faults.inject("sub_stall", seconds=60)
        node.advance(3)
        assert await ws.silent_for()
        assert (await ws.call("chain_getFinalizedHead"))["result"] == node.chain.finalized_hash
        await asyncio.wait_for(await ws.ws.ping(), WAIT_S)
        fresh = await ws.subscribe()  # new=False: a new subscription is not stalled
        initial = await ws.notification()
        assert initial["params"]["subscription"] == fresh
        node.faults.clear()
        node.advance(1)
        got = {(await ws.notification())["params"]["subscription"] for _ in range(2)}
        assert fresh in got and len(got) == 2
    assert node.stats.notifications_dropped >= 3


# -- F5 sub_error --------------------------------------------------------------------------------


async def test_sub_error_answers_subscribe_with_error(node: DevNode) -> None:
    """F5: subscribe gets a JSON-RPC error (code/message options); later it works again."""
    async with ws_client(node.ws_url) as ws:
        node.faults.inject("sub_error", seconds=60, code=-32000, message="too many subs")
        answer = await ws.call("chain_subscribeFinalizedHeads")
        assert answer["error"] == {"code": -32000, "message": "too many subs"}
        assert "result" in await ws.call("chain_getFinalizedHead")
        node.faults.clear()
        assert isinstance(await ws.subscribe(), str)


# -- F6 http_errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "retry_after"), [(503, None), (429, None), (429, 7)])
async def test_http_errors_status(node: DevNode, status: int, retry_after: int | None) -> None:
    """F6: HTTP answers the chosen status, with Retry-After only when asked; WebSocket fine."""
    node.faults.inject("http_errors", seconds=60, status=status, retry_after=retry_after)
    async with httpx.AsyncClient(trust_env=False, timeout=WAIT_S) as client:
        reply = await client.post(node.http_url, json=request("system_health"))
    assert reply.status_code == status
    assert reply.headers.get("retry-after") == (None if retry_after is None else str(retry_after))
    async with ws_client(node.ws_url) as ws:
        assert "result" in await ws.call("system_health")
    assert node.stats.http_errors_sent == 1


async def test_http_errors_hang(node: DevNode) -> None:
    """F6 hang=True: HTTP requests time out; answered again once cleared."""
    node.faults.inject("http_errors", seconds=60, hang=True)
    async with httpx.AsyncClient(trust_env=False, timeout=QUIET_S) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(node.http_url, json=request("system_health"))
    node.faults.clear()
    assert "result" in await http_call(node.http_url, "system_health")


# -- F7 finality_halt ----------------------------------------------------------------------------


async def test_finality_halt_best_moves_finalized_does_not(node: DevNode) -> None:
    """F7: best grows, finalized head and subscription stand still; then one jump catches up."""
    async with ws_client(node.ws_url) as ws:
        await ws.subscribe()
        await ws.notification()
        finalized_before = (await ws.call("chain_getFinalizedHead"))["result"]
        best_before = int((await ws.call("chain_getHeader"))["result"]["number"], 16)
        node.faults.inject("finality_halt", seconds=60)
        node.advance(5)
        assert await ws.silent_for()
        assert (await ws.call("chain_getFinalizedHead"))["result"] == finalized_before
        best_after = int((await ws.call("chain_getHeader"))["result"]["number"], 16)
        assert best_after == best_before + 5
        assert (await http_call(node.http_url, "chain_getFinalizedHead"))[
            "result"
        ] == finalized_before
        node.faults.clear()
        node.advance(1)
        jump = await ws.notification()
        assert number_of(jump) == best_after + 1 - 2  # everything due, in one notification
        assert await ws.silent_for(0.1)


# -- F8 malformed --------------------------------------------------------------------------------


def _check_malformed(kind: str, frame: str, subscription: str) -> None:
    if kind in ("garbage", "invalid_json"):
        try:
            parsed = json.loads(frame)
        except ValueError:
            return
        assert not isinstance(parsed, dict) or "params" not in parsed, frame
        return
    message = json.loads(frame)
    if kind == "unknown_subscription":
        assert message["params"]["subscription"] != subscription
        return
    if kind == "oversized":
        assert len(frame) > 2_000_000
        return
    with pytest.raises((MalformedFrame, KeyError, TypeError)):
        header_from_json(message["params"]["result"])


@pytest.mark.parametrize(
    "kind",
    list(MALFORMED_KINDS),
)
async def test_malformed_frames_on_ws(node: DevNode, kind: str) -> None:
    """F8 on WebSocket: each kind of bad frame arrives before the intact notification."""
    async with connect(node.ws_url, proxy=None, ping_interval=None, max_size=None) as ws:
        await ws.send(json.dumps(request("chain_subscribeFinalizedHeads")))
        subscription = json.loads(await ws.recv())["result"]
        await ws.recv()
        node.faults.inject(
            "malformed", seconds=60, rate=1.0, kinds=[kind], on="ws", big_bytes=2_100_000
        )
        node.advance(1)
        bad = await asyncio.wait_for(ws.recv(), WAIT_S)
        good = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    assert isinstance(bad, str)
    _check_malformed(kind, bad, subscription)
    assert header_from_json(good["params"]["result"]).number == node.chain.finalized_number
    assert node.stats.malformed_sent == 1


async def test_malformed_oversized_frame_breaks_a_1mib_client(node: DevNode) -> None:
    """F8: an oversized frame makes a client with a 1 MiB limit close with 1009."""
    async with connect(node.ws_url, proxy=None, ping_interval=None, max_size=2**20) as ws:
        node.faults.inject("malformed", seconds=60, rate=1.0, kinds="oversized", replace=True)
        await ws.send(json.dumps(request("system_health")))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), WAIT_S)
    assert closed.value.sent is not None and closed.value.sent.code == 1009


async def test_malformed_http_answers_then_node_still_fine(node: DevNode) -> None:
    """F8 on HTTP: answers are replaced by bad bodies; the node never falls over."""
    node.faults.inject(
        "malformed",
        seconds=60,
        rate=1.0,
        on="http",
        kinds=["garbage", "invalid_json", "wrong_types", "missing_fields"],
    )
    bad = 0
    async with httpx.AsyncClient(trust_env=False, timeout=WAIT_S) as client:
        for i in range(12):
            call = request("chain_getFinalizedHead", None, i)
            reply = await client.post(node.http_url, json=call)
            assert reply.status_code == 200
            try:
                body = reply.json()
                if not isinstance(body.get("result"), str) or len(body["result"]) != 66:
                    bad += 1
            except ValueError:
                bad += 1
    assert bad == 12
    node.faults.clear()
    assert (await http_call(node.http_url, "chain_getFinalizedHead"))[
        "result"
    ] == node.chain.finalized_hash


# -- F9 disorder ---------------------------------------------------------------------------------


async def _finalized_numbers(
    node: DevNode, kinds: list[str], blocks: int, rate: float
) -> list[int]:
    async with ws_client(node.ws_url) as ws:
        await ws.subscribe()
        await ws.notification()
        node.faults.inject("disorder", seconds=60, rate=rate, kinds=kinds)
        node.advance(blocks)
        node.faults.clear()
        node.advance(1)  # flushes anything held back
        seen: list[int] = []
        while True:
            try:
                seen.append(number_of(await ws.notification(QUIET_S)))
            except TimeoutError:
                return seen


async def test_disorder_duplicates(node: DevNode) -> None:
    """F9 duplicate: every notification arrives twice."""
    start = node.chain.finalized_number
    seen = await _finalized_numbers(node, ["duplicate"], 3, 1.0)
    assert seen == [start + 1, start + 1, start + 2, start + 2, start + 3, start + 3, start + 4]


async def test_disorder_skips(node: DevNode) -> None:
    """F9 skip: notifications vanish (the chain still finalized them)."""
    start = node.chain.finalized_number
    seen = await _finalized_numbers(node, ["skip"], 4, 1.0)
    assert seen == [start + 5]


async def test_disorder_reorders(node: DevNode) -> None:
    """F9 reorder: a held notification comes after the next one."""
    start = node.chain.finalized_number
    seen = await _finalized_numbers(node, ["reorder"], 4, 1.0)
    assert sorted(seen) == list(range(start + 1, start + 6))
    assert seen != sorted(seen)


async def test_disorder_mixed_produces_anomalies(node: DevNode) -> None:
    """F9 default kinds at rate 0.5: at least one duplicate, reordering or gap appears."""
    seen = await _finalized_numbers(node, ["duplicate", "reorder", "skip"], 30, 0.5)
    duplicates = len(seen) != len(set(seen))
    out_of_order = any(b < a for a, b in itertools.pairwise(seen))
    gaps = any(b > a + 1 for a, b in itertools.pairwise(seen))
    assert duplicates or out_of_order or gaps


# -- F10 lie -------------------------------------------------------------------------------------


async def test_lie_parent_over_http_is_consistent_but_wrong(node: DevNode) -> None:
    """F10 parent: served hashes/headers hang together but the parent link is broken."""
    node.advance(3)
    number = node.chain.finalized_number
    node.faults.inject("lie", seconds=60, mode="parent", on="http")
    lied_hash = (await http_call(node.http_url, "chain_getBlockHash", [number]))["result"]
    assert lied_hash != node.chain.hash_of(number)
    header = header_from_json(
        (await http_call(node.http_url, "chain_getHeader", [lied_hash]))["result"]
    )
    assert block_hash(header) == lied_hash
    assert "0x" + header.parent_hash.hex() != node.chain.hash_of(number - 1)
    assert (await http_call(node.http_url, "chain_getFinalizedHead"))["result"] == lied_hash
    async with ws_client(node.ws_url) as ws:  # on="http": the socket tells the truth
        assert (await ws.call("chain_getFinalizedHead"))["result"] == node.chain.hash_of(number)


async def test_lie_parent_over_ws_breaks_the_chain_of_notifications(node: DevNode) -> None:
    """F10 parent on ws: a notified header's parentHash is not the previous block's hash."""
    async with ws_client(node.ws_url) as ws:
        await ws.subscribe()
        previous = header_from_json((await ws.notification())["params"]["result"])
        node.faults.inject("lie", seconds=60, mode="parent", on="ws")
        node.advance(1)
        lied = header_from_json((await ws.notification())["params"]["result"])
    assert lied.number == previous.number + 1
    assert "0x" + lied.parent_hash.hex() != block_hash(previous)


async def test_lie_lag_reports_an_old_finalized_head(node: DevNode) -> None:
    """F10 lag: the finalized head (request and subscription) lags by `blocks`."""
    node.advance(10)
    node.faults.inject("lie", seconds=60, mode="lag", blocks=6)
    lagging = (await http_call(node.http_url, "chain_getFinalizedHead"))["result"]
    assert lagging == node.chain.hash_of(node.chain.finalized_number - 6)
    async with ws_client(node.ws_url) as ws:
        await ws.subscribe()
        assert number_of(await ws.notification()) == node.chain.finalized_number - 6


# -- F11 latency ---------------------------------------------------------------------------------


async def test_latency_delays_every_message(node: DevNode) -> None:
    """F11: HTTP answers, WebSocket answers and pongs each take at least delay_s."""
    delay_s = 0.25
    async with ws_client(node.ws_url) as ws:
        node.faults.inject("latency", seconds=60, delay_s=delay_s)
        started = time.monotonic()
        await ws.call("system_health")
        assert time.monotonic() - started >= delay_s
        started = time.monotonic()
        await asyncio.wait_for(await ws.ws.ping(), WAIT_S)
        assert time.monotonic() - started >= delay_s
        started = time.monotonic()
        await http_call(node.http_url, "system_health")
        assert time.monotonic() - started >= delay_s
        node.faults.clear()
        started = time.monotonic()
        await ws.call("system_health")
        assert time.monotonic() - started < delay_s


# -- overlap -------------------------------------------------------------------------------------


async def test_overlapping_faults_expire_independently(live_node: DevNode) -> None:
    """Two faults at once: the short one ends by itself while the long one holds."""
    node = live_node
    node.faults.inject("http_errors", seconds=0.3, status=503)
    node.faults.inject("finality_halt", seconds=60)
    await node.wait_until(lambda: not node.faults.is_active("http_errors"))
    assert "result" in await http_call(node.http_url, "system_health")
    assert [f.kind for f in node.faults.active()] == ["finality_halt"]


async def test_node_survives_client_abuse(node: DevNode) -> None:
    """Junk bytes, half requests and binary frames never take the node down."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(b"\x16\x03\x01garbage\r\n\r\n")
    await writer.drain()
    assert (await asyncio.wait_for(reader.read(), WAIT_S)).startswith(b"HTTP/1.1 400")
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(b"POST / HTTP/1.1\r\nContent-Length: 50\r\n\r\n{")
    writer.close()
    async with connect(node.ws_url, proxy=None, ping_interval=None) as ws:
        await ws.send(b"\xff\x00binary")
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["error"]["code"] == -32700
    assert "result" in await http_call(node.http_url, "system_health")


async def test_scenario_runs_steps_in_time(node: DevNode) -> None:
    """run_scenario injects each step at its offset (observed via the inject listener)."""
    seen: list[tuple[str, float]] = []
    done = asyncio.Event()
    started = time.monotonic()

    def record(fault: ActiveFault) -> None:
        seen.append((fault.kind, time.monotonic() - started))
        if len(seen) == 2:
            done.set()

    node.faults.on_inject(record)
    steps = parse_scenario(
        [
            {"at": 0.2, "kind": "latency", "seconds": 1, "delay_s": 0.01},
            {"at": 0, "kind": "sub_stall", "seconds": 1},
        ]
    )
    task = node.run_scenario(steps)
    await asyncio.wait_for(done.wait(), WAIT_S)
    await asyncio.wait_for(task, WAIT_S)
    assert [kind for kind, _ in seen] == ["sub_stall", "latency"]
    assert seen[1][1] >= 0.2
