"""The RPC methods devnode serves, as a Substrate node answers them.

Transport-neutral: each call gets the transport's :class:`ChainView` (lies included) and, on
WebSocket, a :class:`SubscriptionHost` that owns the socket's subscriptions. On HTTP the
subscription methods do not exist (``-32601``), as on a real node.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any, Protocol

from blockfeed.devnode.contents import DevNodeContents
from blockfeed.devnode.faults import FaultInjector
from blockfeed.devnode.jsonrpc import (
    Params,
    RpcFault,
    bind_params,
    invalid_params,
    method_not_found,
)
from blockfeed.devnode.runtime import STATE_ERROR_CODE, Runtime, RuntimeCallError
from blockfeed.devnode.stats import DevNodeStats
from blockfeed.devnode.view import ChainView

FINALIZED = "finalized"
NEW_HEADS = "new"
SUBSCRIBE_METHODS = {
    "chain_subscribeFinalizedHeads": FINALIZED,
    "chain_subscribeFinalisedHeads": FINALIZED,
    "chain_subscribeNewHeads": NEW_HEADS,
    "chain_subscribeNewHead": NEW_HEADS,
}
UNSUBSCRIBE_METHODS = {
    "chain_unsubscribeFinalizedHeads": FINALIZED,
    "chain_unsubscribeFinalisedHeads": FINALIZED,
    "chain_unsubscribeNewHeads": NEW_HEADS,
    "chain_unsubscribeNewHead": NEW_HEADS,
}
NOTIFICATION_METHODS = {FINALIZED: "chain_finalizedHead", NEW_HEADS: "chain_newHead"}
SYSTEM_HEALTH = {"peers": 8, "isSyncing": False, "shouldHavePeers": True}
SYSTEM_PROPERTIES = {"ss58Format": 42, "tokenDecimals": 9, "tokenSymbol": "TAO"}
NODE_NAME = "blockfeed-devnode"
_HASH_RE = re.compile(r"0x[0-9a-fA-F]{64}")
_MAX_BLOCK_HASH_LIST = 10_000


class SubscriptionHost(Protocol):
    """A WebSocket session that can hold subscriptions."""

    def subscribe(self, kind: str) -> str:
        """Create a subscription of ``kind``; returns its id (first header follows the answer)."""
        ...

    def unsubscribe(self, kind: str, subscription_id: str) -> bool:
        """Drop a subscription; False when this socket has no such id."""
        ...


def _parse_hash(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _HASH_RE.fullmatch(value):
        raise invalid_params(f"{name} must be a 0x-prefixed 32-byte hex hash")
    return value.lower()


def _parse_hex(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise invalid_params(f"{name} must be 0x-prefixed hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise invalid_params(f"{name} is not valid hex") from None


def _parse_number(value: Any) -> int:
    if isinstance(value, bool):
        raise invalid_params("block number must be a number or a 0x-hex string")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.startswith("0x") and len(value) > 2:
        try:
            number = int(value[2:], 16)
        except ValueError:
            raise invalid_params("block number is not valid hex") from None
    else:
        raise invalid_params("block number must be a number or a 0x-hex string")
    if number < 0:
        raise invalid_params("block number must not be negative")
    return number


class NodeApi:
    """Dispatches one JSON-RPC call against the chain, the runtime and the active faults."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        faults: FaultInjector,
        stats: DevNodeStats,
        chain_name: str,
        version: str,
        rng: random.Random | None = None,
        contents: DevNodeContents | None = None,
    ) -> None:
        self._runtime = runtime
        self._faults = faults
        self._rng = rng or random.Random(0)
        self._stats = stats
        self._chain_name = chain_name
        self._version = version
        self._plain: dict[str, Callable[[ChainView, list[Any]], Any]] = {
            "chain_getBlockHash": self._get_block_hash,
            "chain_getHead": self._get_block_hash,
            "chain_getHeader": self._get_header,
            "chain_getFinalizedHead": self._get_finalized_head,
            "chain_getFinalisedHead": self._get_finalized_head,
            "rpc_methods": self._rpc_methods,
            "state_call": self._state_call,
            "state_getRuntimeVersion": self._runtime_version,
            "chain_getRuntimeVersion": self._runtime_version,
            "state_getStorage": self._get_storage,
            "state_getStorageAt": self._get_storage,
            "system_chain": lambda _view, _args: self._chain_name,
            "system_health": lambda _view, _args: dict(SYSTEM_HEALTH),
            "system_name": lambda _view, _args: NODE_NAME,
            "system_properties": lambda _view, _args: dict(SYSTEM_PROPERTIES),
            "system_version": lambda _view, _args: self._version,
        }
        self._arity: dict[str, tuple[str, ...]] = {
            "chain_getBlockHash": ("blockNumber",),
            "chain_getHead": ("blockNumber",),
            "chain_getHeader": ("hash",),
            "state_call": ("name", "bytes", "hash"),
            "state_getStorage": ("key", "hash"),
            "state_getStorageAt": ("key", "hash"),
            "state_getRuntimeVersion": ("at",),
            "chain_getRuntimeVersion": ("at",),
        }
        if contents is not None:  # real bodies, events, metadata (devnode/contents.py)
            self._plain.update(contents.handlers(self._at_number, faults, self._get_storage))
            self._arity.update({"chain_getBlock": ("hash",), "state_getMetadata": ("hash",),
                                "state_getRuntimeVersion": ("hash",)})

    def method_names(self) -> list[str]:
        """Every method served over WebSocket (``rpc_methods``)."""
        return sorted([*self._plain, *SUBSCRIBE_METHODS, *UNSUBSCRIBE_METHODS])

    def call(
        self, method: str, params: Params, *, view: ChainView, host: SubscriptionHost | None
    ) -> Any:
        """Run ``method``; raises :class:`RpcFault` with the code a node would use."""
        self._rate_limit(view.transport)
        if method in SUBSCRIBE_METHODS or method in UNSUBSCRIBE_METHODS:
            if host is None:
                raise method_not_found()
            self._stats.requests[method] += 1
            return self._subscription_call(method, params, host)
        handler = self._plain.get(method)
        if handler is None:
            raise method_not_found()
        self._stats.requests[method] += 1
        return handler(view, bind_params(params, self._arity.get(method, ())))

    def _rate_limit(self, transport: str) -> None:
        """The ``rpc_errors`` fault: answer with its error instead (newest code, highest rate)."""
        faults = [
            fault
            for fault in self._faults.active("rpc_errors")
            if fault.options["on"] in (transport, "both")
        ]
        if not faults:
            return
        rate = max(fault.options["rate"] for fault in faults)
        if rate < 1.0 and self._rng.random() >= rate:
            return
        self._stats.rpc_errors_sent += 1
        raise RpcFault(faults[-1].options["code"], faults[-1].options["message"])

    # -- subscriptions ---------------------------------------------------------------------------

    def _subscription_call(self, method: str, params: Params, host: SubscriptionHost) -> Any:
        if method in SUBSCRIBE_METHODS:
            bind_params(params, ())
            errors = self._faults.active("sub_error")
            if errors:
                newest = errors[-1]
                raise RpcFault(newest.options["code"], newest.options["message"])
            return host.subscribe(SUBSCRIBE_METHODS[method])
        (subscription_id,) = bind_params(params, ("subscription",))
        if not isinstance(subscription_id, str):
            raise invalid_params("subscription id must be a string")
        return host.unsubscribe(UNSUBSCRIBE_METHODS[method], subscription_id)

    # -- chain -----------------------------------------------------------------------------------

    def _get_block_hash(self, view: ChainView, args: list[Any]) -> Any:
        (which,) = args
        if which is None:
            return view.hash_of(view.chain.best_number)
        if isinstance(which, list):
            if len(which) > _MAX_BLOCK_HASH_LIST:
                raise invalid_params(f"at most {_MAX_BLOCK_HASH_LIST} numbers per request")
            return [self._hash_or_none(view, _parse_number(item)) for item in which]
        return self._hash_or_none(view, _parse_number(which))

    @staticmethod
    def _hash_or_none(view: ChainView, number: int) -> str | None:
        return view.hash_of(number) if view.chain.has(number) else None

    def _get_header(self, view: ChainView, args: list[Any]) -> Any:
        (wanted,) = args
        if wanted is None:
            return view.header(view.chain.best_number).to_json()
        wanted_hash = _parse_hash(wanted, "hash")
        number = view.chain.number_of(wanted_hash)
        if number is not None:
            return view.header(number).to_json()
        lied_number = view.number_of(wanted_hash)
        if lied_number is None:
            return None
        return view.lying_header(lied_number).to_json()

    def _get_finalized_head(self, view: ChainView, args: list[Any]) -> Any:
        bind_params(args, ())
        return view.hash_of(view.finalized_number())

    def _rpc_methods(self, _view: ChainView, _args: list[Any]) -> Any:
        return {"methods": self.method_names()}

    # -- state -----------------------------------------------------------------------------------

    @staticmethod
    def _at_number(view: ChainView, at: Any) -> int:
        if at is None:
            return view.chain.best_number
        at_hash = _parse_hash(at, "hash")
        number = view.number_of(at_hash)
        if number is None:
            raise RpcFault(
                STATE_ERROR_CODE,
                f"Client error: UnknownBlock: Header was not found in the database: {at_hash}",
            )
        return number

    def _state_call(self, view: ChainView, args: list[Any]) -> Any:
        name, data, at = args
        if not isinstance(name, str) or not name:
            raise invalid_params("name must be the runtime API function name")
        payload = _parse_hex(data, "bytes")
        at_number = self._at_number(view, at)
        try:
            output = self._runtime.call(name, payload, at_block=at_number)
        except RuntimeCallError as exc:
            raise RpcFault(STATE_ERROR_CODE, f"Client error: {exc}") from None
        return "0x" + output.hex()

    def _runtime_version(self, view: ChainView, args: list[Any]) -> Any:
        (at,) = args
        self._at_number(view, at)
        return self._runtime.version()

    def _get_storage(self, view: ChainView, args: list[Any]) -> Any:
        key, at = args
        raw_key = _parse_hex(key, "key")
        self._at_number(view, at)
        value = self._runtime.storage(raw_key)
        return None if value is None else "0x" + value.hex()
