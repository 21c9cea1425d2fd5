"""Block contents: timestamps, runtime versions, decoded events and extrinsics, verified.

Opt-in per feed (``BlockFeed(..., contents="events")``); see :class:`ContentsLevel`. The layer
is self-contained: :class:`ContentsFetcher` fetches and decodes at verified hashes in JSON-RPC
batches, :mod:`~blockfeed.contents.verify` says what is checked, :class:`MetadataCache` keeps
metadata per spec version (in the store's file), and :class:`ContentsStage` is the one seam the
feed uses ("before delivering verified blocks, enrich them").
"""

from blockfeed.contents.decode import RuntimeDecoder, json_safe
from blockfeed.contents.fetch import EVENTS_KEY, TIMESTAMP_KEY, ContentsFetcher
from blockfeed.contents.filters import EventFilter, filtered_callback
from blockfeed.contents.levels import ContentsLevel, parse_level
from blockfeed.contents.metadata import MetadataCache
from blockfeed.contents.stage import ContentsStage, contents_stage
from blockfeed.contents.verify import body_root_kind, check_events_against_body

__all__ = [
    "EVENTS_KEY",
    "TIMESTAMP_KEY",
    "ContentsFetcher",
    "ContentsLevel",
    "ContentsStage",
    "EventFilter",
    "MetadataCache",
    "RuntimeDecoder",
    "body_root_kind",
    "check_events_against_body",
    "contents_stage",
    "filtered_callback",
    "json_safe",
    "parse_level",
]
