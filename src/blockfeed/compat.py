"""A drop-in for code written against async-substrate-interface's ``subscribe_block_headers``.

Before::

    substrate = AsyncSubstrateInterface("wss://entrypoint-finney.opentensor.ai:443")
    await substrate.subscribe_block_headers(handler, finalized_only=True)

After (one import, one line; the subscription survives socket deaths, node restarts and finality
halts, and never skips or repeats a block)::

    from blockfeed.compat import subscribe_block_headers
    await subscribe_block_headers(handler, finalized_only=True, network="finney")

What the handler receives is shaped as async-substrate-interface passes it: a dict
``{"header": {"parentHash": "0x..", "number": int, "stateRoot": "0x..",
"extrinsicsRoot": "0x..", "digest": {"logs": ["0x..", ...]}}}``. Two differences, both written
down so nobody is surprised: digest logs stay SCALE-encoded hex strings (that library decodes them
into ``DigestItem`` objects with the runtime metadata; blockfeed needs no metadata), and
``include_author=True`` is refused (finding the author needs the validator set from storage).

async-substrate-interface documents the handler as ``handler(obj, update_nr, subscription_id)``
but its async client calls ``handler(obj)``; both forms are accepted here (the number of
positional parameters decides). As there, the first value other than ``None`` that the handler
returns ends the subscription and is returned; an exception from the handler ends it too and is
raised to the caller.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from blockfeed.feed import BlockFeed
from blockfeed.types import Block

__all__ = ["header_object", "subscribe_block_headers"]

DEFAULT_NETWORK = "finney"


def header_object(block: Block) -> dict[str, Any]:
    """The ``obj`` async-substrate-interface passes to a header subscription handler."""
    header = block.header
    if header is None:  # replayed from a store that kept only the hash chain
        return {"header": {"parentHash": block.parent_hash, "number": block.number,
                           "stateRoot": None, "extrinsicsRoot": None, "digest": {"logs": []}}}
    return {
        "header": {
            "parentHash": "0x" + header.parent_hash.hex(),
            "number": header.number,
            "stateRoot": "0x" + header.state_root.hex(),
            "extrinsicsRoot": "0x" + header.extrinsics_root.hex(),
            "digest": {"logs": ["0x" + log.hex() for log in header.digest_logs]},
        }
    }


def _wants_three_args(handler: Callable[..., Any]) -> bool:
    """``handler(obj, update_nr, subscription_id)`` or ``handler(obj)``: count what it takes."""
    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: assume the documented form
        return True
    positional = [p for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    return len(positional) >= 3


async def subscribe_block_headers(
    subscription_handler: Callable[..., Any],
    ignore_decoding_errors: bool = False,
    include_author: bool = False,
    finalized_only: bool = True,
    *,
    url: str | Sequence[str] | None = None,
    network: str | None = None,
    feed: BlockFeed | None = None,
    **feed_options: Any,
) -> Any:
    """Call ``subscription_handler`` for every finalized block, once, in order, until it returns
    something other than ``None``; return that value.

    ``url`` is one endpoint or a list (best first); ``network`` a name (``finney``, ``test``,
    ``archive``, ``local``); neither means ``finney``. ``feed`` is an already started
    :class:`~blockfeed.BlockFeed` to read from instead (its lifetime stays yours); other keyword
    arguments (``start_at=``, ``store=``, ``config=``, any :class:`~blockfeed.FeedConfig` field
    such as ``block_time_s=``) go to the ``BlockFeed`` built here.
    ``ignore_decoding_errors`` is accepted for compatibility and has no effect: nothing is decoded.

    Raises ``ValueError`` for what blockfeed cannot do (``finalized_only=False``,
    ``include_author=True``) or contradictory arguments, and whatever the handler raises.
    """
    del ignore_decoding_errors
    if not callable(subscription_handler):
        raise ValueError("subscription_handler must be callable")
    if not finalized_only:
        raise ValueError(
            "blockfeed delivers finalized blocks only: pass finalized_only=True (best-chain "
            "heads can be retracted, which is what blockfeed exists to avoid)"
        )
    if include_author:
        raise ValueError(
            "include_author=True is not supported: the author needs the validator set from "
            "chain storage; query it for the blocks you need"
        )
    if feed is not None and (url is not None or network is not None or feed_options):
        raise ValueError("pass either feed= or url=/network= and feed options, not both")
    if url is not None and network is not None:
        raise ValueError("pass either url= or network=, not both")

    if feed is not None:
        return await _follow(feed, subscription_handler)
    if url is not None:
        endpoints = [url] if isinstance(url, str) else list(url)
        own = BlockFeed(endpoints, **feed_options)
    else:
        own = BlockFeed.for_network(network or DEFAULT_NETWORK, **feed_options)
    async with own:
        return await _follow(own, subscription_handler)


async def _follow(feed: BlockFeed, handler: Callable[..., Any]) -> Any:
    """The subscription loop: one handler call per block; the next block is the acknowledgement."""
    three = _wants_three_args(handler)
    subscription_id = uuid.uuid4().hex
    update_nr = 0
    blocks = feed.blocks(name="compat-subscribe-block-headers")
    try:
        async for block in blocks:
            obj = header_object(block)
            result = handler(obj, update_nr, subscription_id) if three else handler(obj)
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                await blocks.aclose()  # the block handled last counts as done
                return result
            update_nr += 1
    finally:
        if not blocks.closed:
            blocks.cancel()  # the handler raised: its block stays owed (a restart repeats it)
    return None
