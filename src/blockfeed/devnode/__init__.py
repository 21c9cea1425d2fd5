"""devnode: a fake Substrate JSON-RPC node that misbehaves on purpose.

It is blockfeed's measuring instrument: integration tests, benchmarks and the demo run against
it, and users can point their own code at it to see how it copes with a bad chain connection.

What it serves, on ONE port for WebSocket and HTTP (like a real node on 9944):

- a chain that grows every ``block_time_s`` with real wire-format headers (blake2b-256 hashes,
  parent-linked, Aura PreRuntime + Seal digests), starting at a realistic height
  ``start_block``; the finalized head trails best by ``finality_lag`` and, like GRANDPA, now and
  then finalizes 2-4 blocks in one step (subscribers then only hear about the newest);
- ``chain_subscribeFinalizedHeads`` / ``chain_subscribeNewHeads`` (+ unsubscribe; a new
  finalized subscription first gets the current finalized header), ``chain_getFinalizedHead``,
  ``chain_getHeader`` (hash or best; ``null`` if unknown), ``chain_getBlockHash`` (number, list
  of numbers, or best; ``null`` if unknown; 0 = the fixed genesis), ``system_health``,
  ``system_chain``, ``rpc_methods``, ``state_getRuntimeVersion``, ``state_call`` for
  ``SubnetInfoRuntimeApi_get_next_epoch_start_block`` and ``AuraApi_slot_duration`` (the
  declared slot, ``slot_duration_s``, may differ from the real pace: F14) and
  ``state_getStorage`` for subtensor's ``Tempo``; JSON-RPC batches on both transports and the
  standard error codes.

Known simplifications (on purpose):

- Blocks below ``start_block`` exist only virtually: ``chain_getBlockHash`` answers ``null``
  for 1..start_block-1 and the parent of ``start_block`` is a deterministic made-up hash.
- Epochs follow subtensor's legacy rule as its code runs it: block ``b`` runs subnet
  ``netuid``'s epoch when ``(b + netuid + 1) % (tempo + 1) == tempo`` (see
  :mod:`blockfeed.devnode.runtime`); the runtime API returns the next such block after the
  queried (default: best) block, and ``Tempo`` storage gives the same schedule. With
  ``runtime_api=False`` ``state_call`` fails with code 4003 ``"Client error: Execution failed:
  Other: Exported method ... is not found"`` as a runtime without that API does, so callers
  must fall back to ``Tempo``. (4003 is a real node's state error code: base 4000 + 3.)
- Subscription methods are not available over HTTP (``-32601``), as on a real node.

Faults (each for ``seconds``, overlapping freely; see ``FAULT_SPECS`` or
``blockfeed devnode --help`` for every option): ``close`` (F1), ``restart`` (F2), ``blackhole``
(F3), ``sub_stall`` (F4), ``sub_error`` (F5), ``http_errors`` and ``rpc_errors`` (F6),
``finality_halt`` (F7), ``malformed`` (F8), ``disorder`` (F9), ``lie`` (F10), ``latency``
(F11), ``reset`` (F13: the chain is replaced for good; the fault's seconds are only the
downtime). While ``restart`` or ``reset`` holds nothing is served on any connection (or, with
``flap``, WebSockets close after their handshake and HTTP answers 502). Unknown kinds or
options raise :class:`InvalidFault` (a ``ValueError``) listing the valid ones. They can be driven
from Python, from the control HTTP API (:mod:`blockfeed.devnode.control`) or from a scenario file
(:mod:`blockfeed.devnode.scenario`; ``scenarios/demo.json`` ships for the demo).

Example::

    import asyncio, httpx, websockets
    from blockfeed.devnode import DevNode, DevNodeConfig

    async def main() -> None:
        cfg = DevNodeConfig(block_time_s=0.1, finality_lag=2, start_block=6_940_000, seed=1)
        async with DevNode(cfg) as node:                 # port=0: a free loopback port
            async with websockets.connect(node.ws_url) as ws:
                await ws.send('{"jsonrpc":"2.0","id":1,"method":"chain_subscribeFinalizedHeads"}')
                print(await ws.recv())                   # {"jsonrpc":"2.0","id":1,"result":"<id>"}
                print(await ws.recv())                   # the current finalized header
                node.faults.inject("sub_stall", seconds=2.0)   # the socket goes silent...
                async with httpx.AsyncClient() as http:        # ...while HTTP still answers
                    reply = await http.post(node.http_url, json={
                        "jsonrpc": "2.0", "id": 2, "method": "chain_getFinalizedHead"})
                    print(reply.json()["result"], node.chain.finalized_hash)
            await node.wait_for_finalized(node.chain.finalized_number + 5, timeout_s=5)
            print(node.stats.requests)

    asyncio.run(main())

Or from a shell: ``blockfeed devnode --block-time 1 --control-port 9945 --scenario demo.json``
and ``curl -X POST localhost:9945/faults -H 'Content-Type: application/json'
-d '{"kind": "restart", "seconds": 5}'``.
"""

from blockfeed.devnode.chain import Chain, Tick
from blockfeed.devnode.config import DevNodeConfig
from blockfeed.devnode.control import ControlServer
from blockfeed.devnode.faults import (
    FAULT_KINDS,
    FAULT_SPECS,
    ActiveFault,
    FaultInjector,
    InvalidFault,
)
from blockfeed.devnode.node import DevNode
from blockfeed.devnode.scenario import ScenarioError, ScenarioStep, load_scenario, parse_scenario
from blockfeed.devnode.stats import DevNodeStats

__all__ = [
    "FAULT_KINDS",
    "FAULT_SPECS",
    "ActiveFault",
    "Chain",
    "ControlServer",
    "DevNode",
    "DevNodeConfig",
    "DevNodeStats",
    "FaultInjector",
    "InvalidFault",
    "ScenarioError",
    "ScenarioStep",
    "Tick",
    "load_scenario",
    "parse_scenario",
]
