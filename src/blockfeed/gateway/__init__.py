"""The HTTP gateway: FastAPI app, SSE fan-out, metrics, dashboard and alert webhooks.

``create_app(settings)`` builds the service; ``blockfeed.gateway:app`` is the same app built from
the environment (``BLOCKFEED_*``, ``BLOCKFEED_CONFIG``) the first time it is looked up, so
``uvicorn blockfeed.gateway:app`` works without a wrapper script.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from blockfeed.gateway.alerts import AlertDispatcher
from blockfeed.gateway.protocols import FeedLike, StatusLike, StoreLike
from blockfeed.gateway.service import GatewayOptions, create_app

if TYPE_CHECKING:
    from fastapi import FastAPI

    app: FastAPI

__all__ = [
    "AlertDispatcher",
    "FeedLike",
    "GatewayOptions",
    "StatusLike",
    "StoreLike",
    "create_app",
]

_app: Any = None


def __getattr__(name: str) -> Any:
    """Build the module-level ``app`` lazily, so importing the package reads no settings."""
    global _app
    if name == "app":
        if _app is None:
            from blockfeed.config import load_settings

            _app = create_app(load_settings())
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
