"""ContentsFetcher against a scripted node serving the fixture: batching, levels, lies,
runtime upgrades and the metadata cache across restarts."""

from __future__ import annotations

import json

import pytest
from contents_kit import FixtureNode, expected, fixture_blocks, raw_blocks

from blockfeed.contents import ContentsFetcher, ContentsLevel, MetadataCache, parse_level
from blockfeed.errors import ConfigError, MalformedFrame, RpcServerError, VerificationError
from blockfeed.types import FeedEvent, RuntimeUpgraded


async def test_full_level_fetches_40_blocks_in_one_batch_and_matches_expected() -> None:
    """One JSON-RPC batch (4 requests a block) + one metadata fetch give all 40 blocks'
    timestamp, spec version, events and extrinsics, matching expected.json."""
    node = FixtureNode()
    fetcher = ContentsFetcher(ContentsLevel.FULL)
    blocks = await fetcher.fetch(node, fixture_blocks())
    assert node.calls["batch"] == 1 and node.calls["chain_getBlock"] == 40
    assert node.calls["state_getMetadata"] == 1
    for block, want in zip(blocks, expected()["blocks"], strict=True):
        assert block.number == want["number"] and block.hash == want["hash"]
        assert block.timestamp == want["timestamp_ms"] and block.spec_version == 218
        assert block.events is not None and block.extrinsics is not None
        assert [(e["pallet"], e["name"]) for e in block.events] == [
            (e["pallet"], e["event"]) for e in want["events"]
        ]
        assert [(x["pallet"], x["call"], x["signed"], x.get("signer")) for x in block.extrinsics] \
            == [(x["pallet"], x["call"], x["signed"], x.get("signer")) for x in want["extrinsics"]]
    assert fetcher.root_kinds == {"chopsticks": 40}


async def test_levels_ask_only_what_they_deliver() -> None:
    """timestamp: no events, no body, no metadata; events: no body."""
    node = FixtureNode()
    blocks = await ContentsFetcher(ContentsLevel.TIMESTAMP).fetch(node, fixture_blocks()[:3])
    assert [b.timestamp for b in blocks] == [w["timestamp_ms"] for w in expected()["blocks"][:3]]
    assert blocks[0].events is None and blocks[0].extrinsics is None
    assert node.calls["state_getMetadata"] == 0 and node.calls["chain_getBlock"] == 0
    node = FixtureNode()
    blocks = await ContentsFetcher(ContentsLevel.EVENTS).fetch(node, fixture_blocks()[:3])
    assert blocks[0].events and blocks[0].extrinsics is None
    assert node.calls["chain_getBlock"] == 0


async def test_to_dict_carries_contents_as_json_safe_values() -> None:
    """The --json line has timestamp, spec_version, events, extrinsics; big ints are strings."""
    blocks = await ContentsFetcher(ContentsLevel.FULL).fetch(FixtureNode(), fixture_blocks())
    lines = [json.loads(json.dumps(b.to_dict(epoch_length=360))) for b in blocks]
    assert all(set(line) >= {"timestamp", "spec_version", "events", "extrinsics"} for line in lines)
    texts = [v for line in lines for e in line["events"] for v in _values(e["fields"])
             if isinstance(v, str) and v.isdigit()]
    assert texts and all(int(v) > 2**53 for v in texts)


def _values(fields: object) -> list[object]:
    if isinstance(fields, dict):
        return list(fields.values())
    return list(fields) if isinstance(fields, list) else []


async def test_an_altered_body_is_never_returned() -> None:
    """A node that changes one byte of one extrinsic makes the whole batch fail verification."""
    node = FixtureNode()
    target = raw_blocks()["blocks"][7]
    body = list(target["extrinsics"])
    body[1] = body[1][:-2] + ("00" if body[1][-2:] != "00" else "01")
    node.body_override[target["hash"]] = body
    with pytest.raises(VerificationError, match="extrinsics_root"):
        await ContentsFetcher(ContentsLevel.FULL).fetch(node, fixture_blocks())


async def test_events_inconsistent_with_the_body_are_refused() -> None:
    """Events of another block (outcomes for extrinsics the body lacks) fail verification."""
    node = FixtureNode()
    blocks = raw_blocks()["blocks"]
    single, triple = blocks[0], next(b for b in blocks if len(b["extrinsics"]) == 4)
    node.events_override[single["hash"]] = triple["events_raw"]
    with pytest.raises(VerificationError, match="names extrinsic"):
        await ContentsFetcher(ContentsLevel.FULL).fetch(node, fixture_blocks()[:1])


@pytest.mark.parametrize(
    ("method", "bad"),
    [("state_getRuntimeVersion", {"specVersion": "x"}), ("state_getStorage", "0xzz"),
     ("chain_getBlock", {"block": {}}), ("state_getStorage", "0x0102")],
)
async def test_garbage_answers_are_malformed_frames(method: str, bad: object) -> None:
    """Wrong types, bad hex, missing fields, a short timestamp: MalformedFrame, no crash."""
    node = FixtureNode()
    original = node._answer

    def lying(m: str, params: list[object]) -> object:
        return bad if m == method else original(m, params)

    node._answer = lying  # type: ignore[method-assign]
    with pytest.raises(MalformedFrame):
        await ContentsFetcher(ContentsLevel.FULL).fetch(node, fixture_blocks()[:2])


async def test_unknown_block_is_an_rpc_error() -> None:
    """A node that lacks the block answers with an error: raised as RpcServerError."""
    node = FixtureNode()
    node.by_hash.clear()
    with pytest.raises(RpcServerError):
        await ContentsFetcher(ContentsLevel.EVENTS).fetch(node, fixture_blocks()[:1])


async def test_runtime_upgrade_is_reported_once_and_decoded_with_new_metadata() -> None:
    """When the spec version changes between a parent and its child, the child is decoded with
    metadata fetched at that parent, and one runtime_upgraded event says from/to."""
    node = FixtureNode()
    blocks = fixture_blocks()
    upgrade_at = blocks[10]
    for b in blocks[10:]:
        node.spec_at_parent[b.parent_hash] = 219
    node.metadata[219] = node.metadata[218]  # same layout, new version (a no-op upgrade)
    events: list[FeedEvent] = []
    fetcher = ContentsFetcher(ContentsLevel.EVENTS, on_event=events.append)
    first = await fetcher.fetch(node, blocks[:5])
    rest = await fetcher.fetch(node, blocks[5:])
    specs = [b.spec_version for b in first + rest]
    assert specs == [218] * 10 + [219] * 30
    assert [e.kind for e in events] == ["runtime_upgraded"]
    assert events[0] == RuntimeUpgraded(
        at=events[0].at, reason=events[0].reason, number=upgrade_at.number,
        hash=upgrade_at.hash, from_spec_version=218, to_spec_version=219,
    )
    assert node.calls["state_getMetadata"] == 2
    assert all(b.events for b in rest)


async def test_metadata_survives_a_restart_in_the_store_file(tmp_path: object) -> None:
    """A second fetcher on the same state file decodes without fetching metadata again."""
    from pathlib import Path

    from blockfeed.store import open_store

    path = str(Path(str(tmp_path)) / "state.sqlite")
    with open_store(path) as store:
        cache = MetadataCache.for_store(store)
        await ContentsFetcher(ContentsLevel.EVENTS, cache).fetch(FixtureNode(), fixture_blocks())
        cache.close()
    with open_store(path) as store:  # the store still opens: the extra table is additive
        cache = MetadataCache.for_store(store)
        assert cache.stored_versions() == [218]
        node = FixtureNode()
        blocks = await ContentsFetcher(ContentsLevel.EVENTS, cache).fetch(node, fixture_blocks())
        cache.close()
    assert node.calls["state_getMetadata"] == 0 and blocks[-1].events


def test_parse_level_names_the_choices() -> None:
    """Levels parse by name; a wrong one is a ConfigError listing the valid ones."""
    assert parse_level("FULL") is ContentsLevel.FULL and parse_level(None) is ContentsLevel.HEADER
    with pytest.raises(ConfigError, match="header, timestamp, events, full"):
        parse_level("everything")
    with pytest.raises(ValueError):
        ContentsFetcher(ContentsLevel.HEADER)
