"""Keep secrets out of logs, metrics, status pages and errors.

Endpoint URLs often carry API keys: in the userinfo (``wss://user:key@host``), in the path
(``wss://host/ws/<key>``, as several RPC providers do) or in the query (``?apikey=...``).
:func:`redact_url` keeps scheme, host and port, which is what a person needs to tell endpoints
apart, and masks the rest.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_MASK = "***"
_SECRETISH = re.compile(r"[A-Za-z0-9_\-]{16,}")


def redact_url(url: str) -> str:
    """Return ``url`` with userinfo, secret-looking path segments and query values masked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return _MASK
    if not parts.scheme or not host:
        return _MASK
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if parts.username or parts.password:
        netloc = f"{_MASK}@{netloc}"
    path = "/".join(_MASK if _SECRETISH.fullmatch(seg) else seg for seg in parts.path.split("/"))
    out = f"{parts.scheme}://{netloc}{path}"
    if parts.query:
        out += "?" + _MASK
    return out


def redact_path(path: str) -> str:
    """Mask secret-looking segments and the query of a request path (``/ws/<key>?k=v``).

    For libraries that log the request line rather than the URL (websockets at DEBUG).
    """
    base, sep, _query = path.partition("?")
    masked = "/".join(_MASK if _SECRETISH.fullmatch(seg) else seg for seg in base.split("/"))
    return masked + ("?" + _MASK if sep else "")


def redact_text(text: str, secrets: list[str] | tuple[str, ...]) -> str:
    """Replace every occurrence of each secret URL (and its redacted form's pieces) in ``text``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, redact_url(secret))
    return text
