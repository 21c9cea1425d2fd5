"""Which SCALE library decodes block contents: correctness on real subtensor data, and speed.

Candidates (issue 11): ``bittensor-core`` (Rust, metadata + codec), ``cyscale`` (the Cython
py-scale-codec that async-substrate-interface uses), ``scalecodec`` (pure-Python
py-scale-codec) and ``bt-decode`` (Rust, type-string decoding over a portable registry).

The fixture is ``tests/fixtures/subtensor/`` (a copy of the recorded 40 blocks of the real
subtensor runtime, spec 218, and ``expected.json``, their decoding by async-substrate-interface
+ cyscale). Each library decodes every block's ``System.Events`` and extrinsics with the
fixture's own metadata; the result is normalised to the fields the feed delivers and compared
with ``expected.json``:

- event: ``phase``, ``extrinsic_idx``, ``pallet``, ``event``, ``attributes``, ``topics``;
- extrinsic: ``pallet``, ``call``, ``args`` (name -> value), ``signed``, ``signer``, ``nonce``,
  ``tip``, ``era``, ``extrinsic_hash``.

Speed is blocks/s for "events + extrinsics of all 40 blocks", one thread, after metadata is
loaded (metadata load time is reported apart).

``cyscale`` and ``scalecodec`` install the same ``scalecodec`` module, so they cannot share a
venv: run the script once per interpreter; each run measures what it can import and merges its
figures into ``bench/results/decode_libs.json``::

    .venv/bin/python bench/decode_libs.py                       # bittensor-core, bt-decode
    /tmp/venv-cyscale/bin/python bench/decode_libs.py           # cyscale (pip install cyscale)
    /tmp/venv-scalecodec/bin/python bench/decode_libs.py        # scalecodec

The script needs only the standard library besides the candidate itself.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_FIXTURE = HERE.parent / "tests" / "fixtures" / "subtensor"
RESULTS_PATH = HERE / "results" / "decode_libs.json"
MIN_SECONDS = 2.0
"""Each speed figure repeats the 40 blocks until this much time has passed."""

Decoded = tuple[list[dict[str, Any]], list[dict[str, Any]]]
"""(events, extrinsics) of one block, normalised."""


def load_fixture(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """blocks.json and expected.json as dicts."""
    blocks = json.loads((path / "blocks.json").read_text())
    expected = json.loads((path / "expected.json").read_text())
    return blocks, expected


def version_of(dist: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------- normalisation


def norm_event(ev: dict[str, Any]) -> dict[str, Any]:
    """The py-scale-codec event record shape, reduced to what the feed delivers."""
    return {
        "phase": ev["phase"],
        "extrinsic_idx": ev.get("extrinsic_idx"),
        "pallet": ev.get("module_id", ev.get("pallet")),
        "event": ev.get("event_id", ev.get("event")),
        "attributes": ev["attributes"],
        "topics": ev.get("topics", []),
    }


def norm_extrinsic(x: dict[str, Any]) -> dict[str, Any]:
    """The py-scale-codec extrinsic shape, reduced to what the feed delivers."""
    call = x["call"]
    out: dict[str, Any] = {
        "pallet": call["call_module"],
        "call": call["call_function"],
        "args": {a["name"]: a["value"] for a in call["call_args"]},
        "signed": "address" in x and x["address"] is not None,
        "extrinsic_hash": x.get("extrinsic_hash"),
    }
    if out["signed"]:
        out.update(signer=x["address"], nonce=x.get("nonce"), tip=x.get("tip"), era=x.get("era"))
    return out


def expected_of(block: dict[str, Any]) -> Decoded:
    """expected.json's block in the same normalised shape."""
    events = [
        {k: ev[k] for k in ("phase", "extrinsic_idx", "pallet", "event", "attributes", "topics")}
        for ev in block["events"]
    ]
    xts = []
    for x in block["extrinsics"]:
        keys = ["pallet", "call", "args", "signed", "extrinsic_hash"]
        if x["signed"]:
            keys += ["signer", "nonce", "tip", "era"]
        xts.append({k: x[k] for k in keys})
    return events, xts


def canon(value: Any) -> Any:
    """Tuples become lists so renderings compare as JSON would."""
    return json.loads(json.dumps(value, default=repr))


# ---------------------------------------------------------------- adapters


def bittensor_core_adapter(blocks: dict[str, Any]) -> tuple[Callable[..., Decoded], float]:
    """bittensor_core.Runtime: decode_extrinsic + decode(Events value type)."""
    import bittensor_core  # type: ignore[import-not-found]

    t0 = time.perf_counter()
    md = bytes.fromhex(blocks["metadata"]["218"][2:])
    rt = bittensor_core.Runtime(md, 218, 1, 42)
    ev_type = rt.storage_entry("System", "Events").value_type
    load_s = time.perf_counter() - t0

    def decode(events_raw: bytes, xts: list[bytes]) -> Decoded:
        events = [norm_event(e) for e in rt.decode(ev_type, events_raw)]
        return events, [norm_extrinsic(rt.decode_extrinsic(x)) for x in xts]

    return decode, load_s


def scalecodec_adapter(blocks: dict[str, Any]) -> tuple[Callable[..., Decoded], float]:
    """py-scale-codec API (cyscale and scalecodec share it)."""
    from scalecodec.base import (  # type: ignore[import-not-found]
        RuntimeConfigurationObject,
        ScaleBytes,
    )
    from scalecodec.type_registry import (  # type: ignore[import-not-found]
        load_type_registry_preset,
    )

    t0 = time.perf_counter()
    rc = RuntimeConfigurationObject(ss58_format=42)
    rc.update_type_registry(load_type_registry_preset("core"))
    md = rc.create_scale_object(
        "MetadataVersioned", data=ScaleBytes(bytes.fromhex(blocks["metadata"]["218"][2:]))
    )
    md.decode()
    rc.add_portable_registry(md)
    ev_type = (
        md.get_metadata_pallet("System").get_storage_function("Events").get_value_type_string()
    )
    load_s = time.perf_counter() - t0

    def decode(events_raw: bytes, xts: list[bytes]) -> Decoded:
        obj = rc.create_scale_object(ev_type, data=ScaleBytes(events_raw), metadata=md)
        events = [norm_event(e) for e in obj.decode()]
        out = []
        for raw in xts:
            x = rc.create_scale_object("Extrinsic", data=ScaleBytes(raw), metadata=md)
            out.append(norm_extrinsic(x.decode()))
        return events, out

    return decode, load_s


def bt_decode_adapter(blocks: dict[str, Any]) -> tuple[Callable[..., Decoded], float]:
    """bt_decode.decode over a registry: it reads only V15 metadata (``MetadataV15``), so the
    V14 registry is borrowed from bittensor-core; it has no extrinsic decoder and renders
    account ids as byte tuples, so extrinsics are not decoded and events will not match."""
    import bittensor_core  # type: ignore[import-not-found]
    import bt_decode  # type: ignore[import-not-found]

    t0 = time.perf_counter()
    md = bytes.fromhex(blocks["metadata"]["218"][2:])
    rt = bittensor_core.Runtime(md, 218, 1, 42)
    ev_type = rt.storage_entry("System", "Events").value_type
    registry = bt_decode.PortableRegistry.from_json(rt.registry_json())
    type_id = ev_type.split("::")[-1]
    load_s = time.perf_counter() - t0

    def decode(events_raw: bytes, xts: list[bytes]) -> Decoded:
        raw = bt_decode.decode(f"scale_info::{type_id}", registry, events_raw)
        return [{"raw": canon(e)} for e in raw], []

    return decode, load_s


ADAPTERS: dict[str, tuple[str, Callable[..., tuple[Callable[..., Decoded], float]]]] = {
    "bittensor-core": ("bittensor-core", bittensor_core_adapter),
    "bt-decode": ("bt-decode", bt_decode_adapter),
    "cyscale": ("cyscale", scalecodec_adapter),
    "scalecodec": ("scalecodec", scalecodec_adapter),
}


# ---------------------------------------------------------------- measuring


def measure(name: str, blocks: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """Correctness against expected.json and blocks/s for one library."""
    dist, make = ADAPTERS[name]
    out: dict[str, Any] = {"library": name, "version": version_of(dist)}
    try:
        decode, load_s = make(blocks)
    except Exception as exc:  # report, never crash the comparison
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
        return out
    out["metadata_load_ms"] = round(load_s * 1000, 1)
    inputs = [
        (bytes.fromhex(b["events_raw"][2:]), [bytes.fromhex(x[2:]) for x in b["extrinsics"]])
        for b in blocks["blocks"]
    ]
    ev_ok = ev_total = xt_ok = xt_total = 0
    first_mismatch: str | None = None
    for (ev_raw, xts), want in zip(inputs, expected["blocks"], strict=True):
        want_ev, want_xt = expected_of(want)
        try:
            got_ev, got_xt = decode(ev_raw, xts)
        except Exception as exc:
            got_ev, got_xt = [], []
            first_mismatch = first_mismatch or f"#{want['number']}: {type(exc).__name__}: {exc}"
        ev_total += len(want_ev)
        xt_total += len(want_xt)
        for i, ev in enumerate(want_ev):
            if i < len(got_ev) and canon(got_ev[i]) == canon(ev):
                ev_ok += 1
            elif first_mismatch is None:
                got = got_ev[i] if i < len(got_ev) else None
                first_mismatch = f"#{want['number']} event {i}: got {canon(got)} want {ev}"
        for i, x in enumerate(want_xt):
            if i < len(got_xt) and canon(got_xt[i]) == canon(x):
                xt_ok += 1
            elif first_mismatch is None:
                got = got_xt[i] if i < len(got_xt) else None
                first_mismatch = f"#{want['number']} extrinsic {i}: got {canon(got)} want {x}"
    out.update(
        events_matching=f"{ev_ok}/{ev_total}",
        extrinsics_matching=f"{xt_ok}/{xt_total}",
        all_match=ev_ok == ev_total and xt_ok == xt_total,
        first_mismatch=(first_mismatch or "")[:400] or None,
    )
    done = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < MIN_SECONDS:
        for ev_raw, xts in inputs:
            try:
                decode(ev_raw, xts)
            except Exception:
                pass
        done += len(inputs)
    out["blocks_per_s"] = round(done / (time.perf_counter() - t0), 1)
    return out


def main() -> None:
    """Measure every importable candidate, merge into the results file, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE)
    parser.add_argument("--only", choices=sorted(ADAPTERS), action="append")
    args = parser.parse_args()
    blocks, expected = load_fixture(args.fixture)
    names = args.only or [n for n, (dist, _) in ADAPTERS.items() if version_of(dist)]
    # cyscale and scalecodec install the same module: measure only the one this venv has.
    if version_of("cyscale") and "scalecodec" in names and not args.only:
        names.remove("scalecodec")
    results = json.loads(RESULTS_PATH.read_text()) if RESULTS_PATH.exists() else {}
    results.setdefault("libraries", {})
    for name in names:
        figures = measure(name, blocks, expected)
        figures["python"] = platform.python_version()
        results["libraries"][name] = figures
        print(
            f"{name:15} {figures.get('version')!s:8} events {figures.get('events_matching')}"
            f"  extrinsics {figures.get('extrinsics_matching')}"
            f"  {figures.get('blocks_per_s')} blocks/s"
            f"  metadata {figures.get('metadata_load_ms')} ms"
        )
        if figures.get("first_mismatch") or figures.get("error"):
            print("   ", figures.get("error") or figures["first_mismatch"])
    results["fixture"] = "tests/fixtures/subtensor (40 blocks, 114 events, 52 extrinsics)"
    results["machine"] = f"{platform.machine()} {platform.system()}, one thread"
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"saved {RESULTS_PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()
