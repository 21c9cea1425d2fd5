"""``GET /stream?events=Pallet.Name,...``: one client's view of the shared block frames.

The hub encodes each block once for every client; a filtering client rewrites that frame with
only the wanted events (and, with ``skip_empty``, drops a block with none of them). Numbers still
advance for dropped blocks, so the stream's exactly-once, in-order bookkeeping is unchanged and
``Last-Event-ID`` resumes after the last block the client actually saw.
"""

from __future__ import annotations

import json

from blockfeed.contents.filters import EventFilter
from blockfeed.gateway.hub import encode_frame

_DATA = b"\ndata: "


class SseEventFilter:
    """``frame -> frame | None`` for block frames (anything else passes unchanged)."""

    def __init__(self, wanted: EventFilter, *, skip_empty: bool) -> None:
        self._wanted = wanted
        self._skip_empty = skip_empty

    def __call__(self, number: int, frame: bytes) -> bytes | None:
        """The frame of block ``number`` with only the wanted events, None to leave it out."""
        head, found, data = frame.partition(_DATA)
        if not found or not head.endswith(b"event: block"):
            return frame
        payload = json.loads(data)
        events = [e for e in payload.get("events") or () if self._wanted.matches(e)]
        if self._skip_empty and not events:
            return None
        payload["events"] = events
        return encode_frame("block", payload, event_id=number)
