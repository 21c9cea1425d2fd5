"""JSON-RPC transports (HTTP and WebSocket) and the typed Substrate methods built on them.

``HttpRpc`` and ``WsRpc`` both satisfy :class:`RpcCaller` (``call`` + ``batch``), so every
function in :mod:`blockfeed.rpc.methods` works on either.
"""

from blockfeed.rpc import methods
from blockfeed.rpc.http import HttpRpc
from blockfeed.rpc.methods import RpcCaller, UnknownBlock
from blockfeed.rpc.ws import Subscription, WsRpc

__all__ = ["HttpRpc", "RpcCaller", "Subscription", "UnknownBlock", "WsRpc", "methods"]
