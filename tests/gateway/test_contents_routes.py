"""The gateway with contents: /blocks/{n} carries them, /stream?events= filters them (loopback)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import httpx
from gateway_fakes import FakeFeed, FakeStore, SseReader, _run_now, make_block, serve

from blockfeed.config import load_settings
from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.gateway import GatewayOptions, create_app
from blockfeed.types import Block, RuntimeUpgraded, Source

WAIT_S = 20.0
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "subtensor"


def events_of(number: int) -> list[dict[str, Any]]:
    """Every block has ExtrinsicSuccess; every third also a Transfer of a u128-like amount."""
    events: list[dict[str, Any]] = [
        {"index": 0, "phase": "ApplyExtrinsic", "extrinsic_index": 0, "pallet": "System",
         "name": "ExtrinsicSuccess", "fields": {}},
    ]
    if number % 3 == 0:
        events.append({"index": 1, "phase": "ApplyExtrinsic", "extrinsic_index": 1,
                       "pallet": "Balances", "name": "Transfer", "fields": {"amount": 2**64}})
    return events


class ContentsFeed(FakeFeed):
    """A fake feed at level ``events``: its blocks carry a timestamp, spec version, events."""

    spec_version = 218

    def emit_block(self, number: int | None = None, *, source: Source = Source.WS) -> Block:
        if number is None:
            number = self.last.number + 1 if self.last else 1000
        block = dataclasses.replace(
            make_block(number, source=source, at=self.clock()),
            timestamp=1_700_000_000_000 + number, spec_version=self.spec_version,
            events=events_of(number),
        )
        if self.store is not None:
            self.store.save_blocks([block])
        self.last = block
        for sub in list(self.subs):
            _run_now(sub.callback(block))
        return block


def app_for(feed: FakeFeed, store: FakeStore | None, **opts: Any) -> Any:
    opts.setdefault("contents", "events")
    return create_app(feed=feed, store=store, options=GatewayOptions(**opts))


async def read_blocks(reader: SseReader, until: int) -> list[dict[str, Any]]:
    """Block payloads up to block ``until``; checks each frame's id against its number."""
    out: list[dict[str, Any]] = []
    while not out or out[-1]["number"] < until:
        event = await reader.next_named("block")
        payload = json.loads(event["data"])
        assert int(event["id"]) == payload["number"]
        out.append(payload)
    return out


async def test_stream_events_filter_keeps_every_block_in_order() -> None:
    """?events=Balances.Transfer: replayed and live blocks all arrive once, in order, each with
    only Transfer events (an empty list where it had none)."""
    store = FakeStore()
    feed = ContentsFeed(store=store)
    for n in range(1000, 1040):
        feed.emit_block(n)
    async with serve(app_for(feed, store, ring_size=8)) as url, httpx.AsyncClient(
        timeout=WAIT_S
    ) as http:
        params = {"from": 1000, "events": "Balances.Transfer"}
        async with http.stream("GET", f"{url}/stream", params=params) as response:
            assert response.status_code == 200
            reader = SseReader(response)
            got = await asyncio.wait_for(read_blocks(reader, 1039), WAIT_S)
            for _ in range(6):
                feed.emit_block()
            got += await asyncio.wait_for(read_blocks(reader, 1045), WAIT_S)
    assert [b["number"] for b in got] == list(range(1000, 1046))
    for block in got:
        want = ["Transfer"] if block["number"] % 3 == 0 else []
        assert [e["name"] for e in block["events"]] == want
        assert block["spec_version"] == 218
    assert got[2]["events"][0]["fields"]["amount"] == str(2**64)  # block 1002


async def test_skip_empty_leaves_out_blocks_without_a_match_and_resumes() -> None:
    """&skip_empty=1 sends only blocks with a wanted event (replay and live); a reconnect with
    Last-Event-ID resumes after the last block seen, without a duplicate."""
    store = FakeStore()
    feed = ContentsFeed(store=store)
    for n in range(2000, 2020):
        feed.emit_block(n)
    async with serve(app_for(feed, store, ring_size=8)) as url, httpx.AsyncClient(
        timeout=WAIT_S
    ) as http:
        params = {"from": 2000, "events": "Balances", "skip_empty": "1"}
        async with http.stream("GET", f"{url}/stream", params=params) as response:
            reader = SseReader(response)
            first = await asyncio.wait_for(read_blocks(reader, 2010), WAIT_S)
        for _ in range(10):
            feed.emit_block()
        resume = {"Last-Event-ID": str(first[-1]["number"])}
        params = {"events": "Balances.Transfer", "skip_empty": "true"}
        async with http.stream("GET", f"{url}/stream", params=params, headers=resume) as response:
            second = await asyncio.wait_for(read_blocks(SseReader(response), 2028), WAIT_S)
    assert [b["number"] for b in first] == [2001, 2004, 2007, 2010]
    assert [b["number"] for b in second] == [2013, 2016, 2019, 2022, 2025, 2028]
    assert all([e["name"] for e in b["events"]] == ["Transfer"] for b in first + second)


async def test_bad_event_filters_are_refused_with_a_reason() -> None:
    """A malformed filter is a 422 naming the parameter; a filter on a gateway that fetches no
    events is a 409 saying how to start it."""
    feed = ContentsFeed(store=None)
    async with serve(app_for(feed, None)) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        for bad in ("Balances.Trans fer", " , ", "Balances.", "A.B.C", "x" * 2001):
            refused = await http.get(f"{url}/stream", params={"events": bad})
            assert refused.status_code == 422, bad
            assert "events" in json.dumps(refused.json()["detail"])
    async with serve(app_for(feed, None, contents="header")) as url, httpx.AsyncClient(
        timeout=WAIT_S
    ) as http:
        refused = await http.get(f"{url}/stream", params={"events": "Balances.Transfer"})
        assert refused.status_code == 409 and "--contents events" in refused.json()["detail"]


async def test_blocks_by_number_carry_contents_from_ring_and_store() -> None:
    """/blocks/{n} and /blocks/latest serve timestamp, spec_version and events, whether the
    block comes from the store or the memory ring."""
    store = FakeStore()
    feed = ContentsFeed(store=store)
    async with serve(app_for(feed, store, ring_size=4)) as url, httpx.AsyncClient(
        timeout=WAIT_S
    ) as http:
        for n in range(3000, 3012):
            feed.emit_block(n)
        old = (await http.get(f"{url}/blocks/3003")).json()  # outside the ring: from the store
        latest = (await http.get(f"{url}/blocks/latest")).json()
    assert old["timestamp"] == 1_700_000_000_000 + 3003
    assert old["spec_version"] == 218
    assert [e["name"] for e in old["events"]] == ["ExtrinsicSuccess", "Transfer"]
    assert old["events"][1]["fields"]["amount"] == str(2**64)
    assert latest["number"] == 3011 and len(latest["events"]) == 1


async def test_runtime_upgrade_in_status_and_metrics() -> None:
    """After an upgrade, /status shows the new spec version and the upgrade event, and
    /metrics has the spec version gauge and the upgrade counted."""
    store = FakeStore()
    feed = ContentsFeed(store=store)
    async with serve(app_for(feed, store)) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        feed.emit_block(4000)
        before = (await http.get(f"{url}/status")).json()
        feed.spec_version = 219
        feed.emit(RuntimeUpgraded(at=feed.clock(),
                                  reason="runtime upgraded at #4001: spec version 218 -> 219",
                                  number=4001, hash="0x" + "ab" * 32, from_spec_version=218,
                                  to_spec_version=219))
        feed.emit_block(4001)
        after = (await http.get(f"{url}/status")).json()
        metrics = (await http.get(f"{url}/metrics")).text
    assert (before["spec_version"], before["runtime_upgraded"]) == (218, None)
    assert after["spec_version"] == 219
    assert after["runtime_upgraded"]["details"]["to_spec_version"] == 219
    assert "blockfeed_spec_version 219.0" in metrics
    assert 'blockfeed_feed_events_total{kind="runtime_upgraded"} 1.0' in metrics


async def test_served_from_settings_against_devnode_contents(tmp_path: Path) -> None:
    """Settings(contents="events") end to end: devnode serving the recorded subtensor blocks,
    the real feed and store; /stream?events=...&skip_empty=1 sends only the blocks with a
    transfer or weights, and /blocks/{n} has the events expected.json lists."""
    expected = json.loads((FIXTURE / "expected.json").read_text())["blocks"]
    wanted = {"Transfer", "WeightsSet"}
    slots = {i for i, b in enumerate(expected) if wanted & {e["event"] for e in b["events"]}}
    cfg = DevNodeConfig(host="127.0.0.1", port=0, auto_produce=False, start_block=8_000,
                        finality_lag=0, finality_jumps=0.0, block_time_s=0.1,
                        contents_fixture=str(FIXTURE / "blocks.json"))
    async with DevNode(cfg) as node:
        node.advance(blocks=2)
        settings = load_settings(endpoints=[node.ws_url], state=str(tmp_path / "s.sqlite"),
                                 block_time_s=0.1, network="local", contents="events")
        async with serve(create_app(settings)) as url, httpx.AsyncClient(
            base_url=url, timeout=WAIT_S
        ) as http:
            async with asyncio.timeout(WAIT_S):
                while (latest := await http.get("/blocks/latest")).status_code != 200:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            start = latest.json()["number"] + 1
            params = {"from": start, "events": "Balances.Transfer,SubtensorModule.WeightsSet",
                      "skip_empty": "1"}
            async with http.stream("GET", "/stream", params=params) as response:
                assert response.status_code == 200
                node.advance(blocks=40)
                reader = SseReader(response)
                last_match = max(n for n in range(start, start + 40) if n % 40 in slots)
                got = await asyncio.wait_for(read_blocks(reader, last_match), WAIT_S)
            one = (await http.get(f"/blocks/{got[0]['number']}")).json()
    assert [b["number"] % 40 for b in got] == sorted(slots, key=lambda i: (i - start) % 40)
    assert all(b["events"] and {e["name"] for e in b["events"]} <= wanted for b in got)
    assert [(e["pallet"], e["name"]) for e in one["events"]] == [
        (e["pallet"], e["event"]) for e in expected[one["number"] % 40]["events"]]
    assert one["spec_version"] == 218 and one["timestamp"] is not None
