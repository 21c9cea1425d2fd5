"""Decoding the real subtensor fixture matches the independent decoding in expected.json.

Normalisation (the only differences between the two renderings are names, not values):
expected ``event`` -> our ``name``, ``attributes`` -> ``fields``, ``extrinsic_idx`` ->
``extrinsic_index``; expected ``extrinsic_hash`` -> our ``hash``; expected ``topics``, ``nonce``,
``tip`` and ``era`` are not delivered. Values (SS58 addresses, text remarks, undecoded module
errors, nested batch calls) are compared as they are, after a JSON round trip (tuples -> lists).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from contents_kit import expected, fixture_blocks, metadata_bytes, raw_blocks

from blockfeed.contents import RuntimeDecoder, json_safe
from blockfeed.errors import MalformedFrame


@pytest.fixture(scope="module")
def runtime() -> RuntimeDecoder:
    return RuntimeDecoder(metadata_bytes(), 218, 1)


def _canon(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _want_event(i: int, ev: dict[str, Any]) -> dict[str, Any]:
    return {"index": i, "phase": ev["phase"], "extrinsic_index": ev["extrinsic_idx"],
            "pallet": ev["pallet"], "name": ev["event"], "fields": ev["attributes"]}


def _want_extrinsic(i: int, x: dict[str, Any]) -> dict[str, Any]:
    out = {"index": i, "pallet": x["pallet"], "call": x["call"], "args": x["args"],
           "signed": x["signed"], "hash": x["extrinsic_hash"]}
    if x["signed"]:
        out["signer"] = x["signer"]
    return out


def test_every_event_matches_expected(runtime: RuntimeDecoder) -> None:
    """All 114 events of the 40 blocks decode exactly as the outside library decoded them."""
    count = 0
    for raw, want in zip(raw_blocks()["blocks"], expected()["blocks"], strict=True):
        got = runtime.events(bytes.fromhex(raw["events_raw"][2:]))
        want_events = [_want_event(i, e) for i, e in enumerate(want["events"])]
        assert _canon(got) == want_events, raw["number"]
        count += len(got)
    assert count == 114


def test_every_extrinsic_matches_expected(runtime: RuntimeDecoder) -> None:
    """All 52 extrinsics (12 signed) decode exactly as the outside library decoded them."""
    count = signed = 0
    for raw, want in zip(raw_blocks()["blocks"], expected()["blocks"], strict=True):
        got = runtime.extrinsics([bytes.fromhex(x[2:]) for x in raw["extrinsics"]])
        assert _canon(got) == [_want_extrinsic(i, x) for i, x in enumerate(want["extrinsics"])]
        count += len(got)
        signed += sum(x["signed"] for x in got)
    assert (count, signed) == (52, 12)


def test_notable_blocks_read_as_the_fixture_readme_says(runtime: RuntimeDecoder) -> None:
    """Spot checks a reader can follow: WeightsSet at #38, SettingWeightsTooFast at #37."""
    by_number = {str(b["number"]): b for b in raw_blocks()["blocks"]}
    ev38 = runtime.events(bytes.fromhex(by_number["38"]["events_raw"][2:]))
    assert ("SubtensorModule", "WeightsSet") in {(e["pallet"], e["name"]) for e in ev38}
    ev37 = runtime.events(bytes.fromhex(by_number["37"]["events_raw"][2:]))
    failed = [e for e in ev37 if e["name"] == "ExtrinsicFailed"]
    assert failed[0]["fields"]["dispatch_error"] == {"Module": {"index": 7, "error": "0x1e000000"}}
    xt = runtime.extrinsics([bytes.fromhex(x[2:]) for x in by_number["32"]["extrinsics"]])
    assert xt[1]["signer"] == "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"  # //Alice, SS58 42


def test_big_integers_become_strings_only_in_json(runtime: RuntimeDecoder) -> None:
    """u64 values beyond 2^53 stay exact ints in Python and become decimal strings in JSON."""
    big = []
    for raw in raw_blocks()["blocks"]:
        for event in runtime.events(bytes.fromhex(raw["events_raw"][2:])):
            big += [v for v in _ints(event["fields"]) if v > 2**53]
    assert big, "the fixture has AdjustmentAlphaSet / MinDifficultySet values beyond 2^53"
    assert all(isinstance(v, int) for v in big)
    text = json.dumps(json_safe({"x": big, "small": 2**53, "b": b"\x01", "t": (1, 2)}))
    assert json.loads(text) == {"x": [str(v) for v in big], "small": 2**53, "b": "0x01",
                                "t": [1, 2]}


def _ints(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, dict):
        return [i for v in value.values() for i in _ints(v)]
    if isinstance(value, list):
        return [i for v in value for i in _ints(v)]
    return []


def test_garbage_is_a_clear_error_not_a_crash(runtime: RuntimeDecoder) -> None:
    """Truncated events or extrinsics raise MalformedFrame naming what failed."""
    raw = bytes.fromhex(raw_blocks()["blocks"][0]["events_raw"][2:])
    with pytest.raises(MalformedFrame, match=r"System\.Events"):
        runtime.events(raw[:-3])
    with pytest.raises(MalformedFrame, match="extrinsic 0"):
        runtime.extrinsic(0, b"\x0c\x00\x01")
    with pytest.raises(MalformedFrame, match="metadata"):
        RuntimeDecoder(b"not metadata", 1)
    assert runtime.events(None) == [] and runtime.events(b"") == []


def test_fixture_blocks_hash_to_their_recorded_hashes() -> None:
    """The copied fixture is intact: 40 consecutive blocks #25..#64, parent-linked."""
    blocks = fixture_blocks()
    assert [b.number for b in blocks] == list(range(25, 65))
    assert all(b.parent_hash == a.hash for a, b in itertools.pairwise(blocks))
