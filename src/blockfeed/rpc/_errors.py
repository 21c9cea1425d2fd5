"""Translate third-party exceptions into blockfeed's tree without leaking endpoint secrets.

httpx and websockets sometimes put the full URL (API key included) in their messages. The
translated error names only the redacted URL, and the original exception is kept as
``__cause__`` only when its text carries none of the URL's secret parts.
"""

from __future__ import annotations

import traceback
from urllib.parse import urlsplit

from blockfeed.util.redact import redact_url


def secret_fragments(url: str) -> list[str]:
    """The pieces of ``url`` that redaction hides (userinfo, path, query), longest first."""
    try:
        parts = urlsplit(url)
        username, password = parts.username, parts.password
    except ValueError:
        return [url]
    if redact_url(url) == url:
        return []
    pieces = [url, parts.query, password or "", username or ""]
    pieces += [seg for seg in parts.path.split("/") if seg and seg not in redact_url(url)]
    return sorted({p for p in pieces if len(p) >= 4}, key=len, reverse=True)


def safe_cause(exc: BaseException, url: str) -> BaseException | None:
    """``exc`` if its formatted traceback reveals no secret of ``url``; otherwise ``None``."""
    secrets = secret_fragments(url)
    if not secrets:
        return exc
    text = "".join(traceback.format_exception(exc))
    return None if any(s in text for s in secrets) else exc


def describe(exc: BaseException, url: str) -> str:
    """A short, secret-free description of a third-party exception."""
    detail = str(exc).replace(url, redact_url(url)) if url else str(exc)
    for secret in secret_fragments(url):
        detail = detail.replace(secret, "***")
    name = type(exc).__name__
    return f"{name}: {detail}" if detail else name
