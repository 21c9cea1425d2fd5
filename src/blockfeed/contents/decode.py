"""Decoding one block's events and extrinsics with its runtime's metadata.

The SCALE and metadata work is done by ``bittensor-core`` (Rust; chosen in
``bench/decode_libs.py``: it matches the independent decoding of the real subtensor fixture for
every event and extrinsic and is the fastest candidate). This module only shapes its output into
the delivered form and turns its errors into blockfeed's:

- event: ``index``, ``phase`` (``ApplyExtrinsic`` | ``Initialization`` | ``Finalization``),
  ``extrinsic_index`` (None outside ``ApplyExtrinsic``), ``pallet``, ``name``, ``fields`` (a dict
  for named fields, a list for unnamed ones);
- extrinsic: ``index``, ``pallet``, ``call``, ``args`` (name -> value), ``signed``, ``signer``
  (signed ones only), ``hash``.

Values are plain Python: account ids as SS58 strings (prefix 42 by default), byte strings as
text when they are UTF-8 (else ``0x`` hex), exact ints. :func:`json_safe` turns ints beyond
2^53 into strings for JSON.
"""

from __future__ import annotations

from typing import Any

from blockfeed.errors import MalformedFrame

BITTENSOR_SS58_FORMAT = 42
MAX_SAFE_INTEGER = 2**53
"""Beyond this, JSON readers using doubles (JavaScript) lose precision: such ints become text."""


def _plain(value: Any) -> Any:
    """Tuples become lists, so a decoded value equals its JSON round trip."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def json_safe(value: Any) -> Any:
    """A copy fit for any JSON reader: ints beyond 2^53 as decimal strings, bytes as 0x-hex."""
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return str(value) if abs(value) > MAX_SAFE_INTEGER else value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    return str(value)


class RuntimeDecoder:
    """One runtime's metadata, parsed once (a few ms); decodes any block of that runtime."""

    def __init__(
        self,
        metadata: bytes,
        spec_version: int,
        transaction_version: int = 1,
        *,
        ss58_format: int = BITTENSOR_SS58_FORMAT,
    ) -> None:
        import bittensor_core  # imported here: header-only feeds never load it

        try:
            self._runtime = bittensor_core.Runtime(
                bytes(metadata), spec_version, transaction_version, ss58_format
            )
            self._events_type = self._runtime.storage_entry("System", "Events").value_type
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedFrame(
                f"runtime metadata for spec version {spec_version} cannot be parsed: {exc}"
            ) from exc
        self.spec_version = spec_version

    def events(self, raw: bytes | None) -> list[dict[str, Any]]:
        """Decoded ``System.Events`` storage value (None, an absent value, is no events)."""
        if not raw:
            return []
        try:
            records = self._runtime.decode(self._events_type, raw)
        except (ValueError, TypeError) as exc:
            raise MalformedFrame(f"System.Events does not decode: {exc}") from exc
        return [
            {
                "index": i,
                "phase": record["phase"],
                "extrinsic_index": record.get("extrinsic_idx"),
                "pallet": record["module_id"],
                "name": record["event_id"],
                "fields": _plain(record["attributes"]),
            }
            for i, record in enumerate(records)
        ]

    def extrinsic(self, index: int, raw: bytes) -> dict[str, Any]:
        """One encoded extrinsic (length prefix included, as ``chain_getBlock`` lists it)."""
        try:
            value = self._runtime.decode_extrinsic(raw)
        except (ValueError, TypeError) as exc:
            raise MalformedFrame(f"extrinsic {index} does not decode: {exc}") from exc
        call = value["call"]
        out: dict[str, Any] = {
            "index": index,
            "pallet": call["call_module"],
            "call": call["call_function"],
            "args": {arg["name"]: _plain(arg["value"]) for arg in call["call_args"]},
            "signed": value.get("address") is not None,
            "hash": value.get("extrinsic_hash"),
        }
        if out["signed"]:
            out["signer"] = value["address"]
        return out

    def extrinsics(self, raws: list[bytes]) -> list[dict[str, Any]]:
        """Every extrinsic of a body, in order."""
        return [self.extrinsic(i, raw) for i, raw in enumerate(raws)]
