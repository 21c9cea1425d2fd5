"""Test your code against a misbehaving chain, deterministically, without sockets or sleeps.

* :class:`VirtualClock` runs asyncio code on virtual time: timers fire at once, in order.
* :class:`ScriptedNode` is devnode's fake Substrate node (chain, RPC methods, every fault class)
  served in memory; :class:`InMemoryNetwork` is the connector that reaches it.
* :func:`fast_config` is the feed's timing profile for a fast test chain.

::

    from blockfeed import BlockFeed
    from blockfeed.testing import InMemoryNetwork, ScriptedNode, VirtualClock, fast_config

No pytest import here: the kit works with unittest or any runner (see ``docs/testing.md``).
"""

from __future__ import annotations

from blockfeed.testing.clock import (
    VirtualClock,
    VirtualClockStalled,
    VirtualTimeExceeded,
    run_virtual,
    virtual_time,
)
from blockfeed.testing.network import InMemoryNetwork
from blockfeed.testing.node import ScriptedNode
from blockfeed.testing.profile import fast_config

__all__ = [
    "InMemoryNetwork",
    "ScriptedNode",
    "VirtualClock",
    "VirtualClockStalled",
    "VirtualTimeExceeded",
    "fast_config",
    "run_virtual",
    "virtual_time",
]
