"""Keep secrets out of logs, metrics, status pages and errors: mask by structure, not by pattern.

Endpoint URLs carry API keys in every part a provider can think of: the userinfo
(``wss://user:key@host``), the path (``/ws/<key>``, ``/v1/sk_live.KEY;apikey=VALUE``), the
query (``?key=SHORT``) or a token (``?token=<JWT>``). Guessing which piece "looks secret"
misses shapes (short keys, keys with ``.`` ``;`` ``=`` ``+`` ``%``), so :func:`redact_url` keeps
only what a person needs to tell endpoints apart, scheme, host and port, and replaces everything
else by ``/***``. Setting ``BLOCKFEED_SHOW_URL_PATH=1`` shows the path (for providers whose
paths are not secret); userinfo, query and fragment stay hidden regardless.

Two endpoints that differ only in a hidden part would get the same label; :func:`endpoint_labels`
then adds a short fingerprint (``#a1b2``) of the whole URL. It is stable across restarts (metric
labels keep their identity) and 16 bits long: it tells endpoints apart but carries too little
to recover or even test a high-entropy key.

Free text (log lines, error messages) goes through :func:`redact_text`: every URL in it is
redacted as above, JWT-shaped tokens and ``Authorization``-style header values are masked, and
request lines (``GET /ws/<key> HTTP/1.1``) lose their path.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

MASK = "***"
SHOW_PATH_ENV_VAR = "BLOCKFEED_SHOW_URL_PATH"
"""Truthy (``1``, ``true``, ``yes``): endpoint paths are shown; userinfo and query never are."""
LABEL_TAG_BYTES = 2
"""Fingerprint length (bytes) added to labels that would otherwise collide."""

_TRUTHY = ("1", "true", "yes", "on")
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]{1,15}://[^\s\"<>`]+")
_TRAILING_PUNCTUATION = "'),.;:]}"
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")
_CREDENTIAL_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|cookie|set-cookie|x-api-key|api-key|x-auth-token)"
    r"(\"?\s*[:=]\s*\"?)[^\r\n\"]*"
)
_AUTH_SCHEME = re.compile(r"\b(Basic|Bearer|Digest)\s+[A-Za-z0-9+/=._~\-]{4,}")
_REQUEST_LINE = re.compile(
    r"\b(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|CONNECT|TRACE)\s+(/[^\s]*)(?=\s+HTTP/|\s*$)"
)


def show_path_setting() -> bool:
    """Whether ``BLOCKFEED_SHOW_URL_PATH`` asks for endpoint paths to be shown."""
    return os.environ.get(SHOW_PATH_ENV_VAR, "").strip().lower() in _TRUTHY


def redact_url(url: str, *, show_path: bool | None = None) -> str:
    """``scheme://host:port``, plus ``/***`` when the URL had userinfo, a path or a query.

    ``show_path=None`` follows :data:`SHOW_PATH_ENV_VAR`. Anything that does not parse as a
    URL with a host is masked whole.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except (ValueError, AttributeError):
        return MASK
    if not parts.scheme or not host or not _plain_host(host):
        return MASK
    if ":" in host:
        host = f"[{host}]"
    shown = f"{parts.scheme.lower()}://{host}" + ("" if port is None else f":{port}")
    path = parts.path if parts.path not in ("", "/") else ""
    hidden = bool(parts.username or parts.password or parts.query or parts.fragment)
    if show_path if show_path is not None else show_path_setting():
        return shown + _JWT.sub(MASK, path) + (f"?{MASK}" if hidden else "")
    return shown + (f"/{MASK}" if path or hidden else "")


def _plain_host(host: str) -> bool:
    """A host made of name or address characters only (a mangled URL is masked whole)."""
    return re.fullmatch(r"[A-Za-z0-9.\-:_]+", host) is not None


def redact_path(path: str, *, show_path: bool | None = None) -> str:
    """A request target (``/ws/<key>?k=v``) as ``/***``; ``/`` stays ``/``.

    For libraries that log the request line rather than the URL (websockets at DEBUG).
    """
    base, sep, _query = path.partition("?")
    if show_path if show_path is not None else show_path_setting():
        return base + (f"?{MASK}" if sep else "")
    return "/" if base in ("", "/") and not sep else f"/{MASK}"


def redact_query(path: str) -> str:
    """A request target with its query masked (``/stream?***``): for our own server's routes,
    whose paths are not secret but whose query might be."""
    base, sep, _query = path.partition("?")
    return base + (f"?{MASK}" if sep else "")


def redact_text(text: str, secrets: Iterable[str] = (), *, request_paths: bool = True) -> str:
    """``text`` with every known secret, URL, JWT and credential header value masked.

    ``secrets`` are exact strings to replace first (the configured URLs, which may appear in a
    form the URL pattern does not catch). ``request_paths=False`` keeps request-line paths
    (masking only their query), for access logs of our own routes.
    """
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, redact_url(secret))
    text = _URL_IN_TEXT.sub(_redact_match, text)
    text = _JWT.sub(MASK, text)
    text = _CREDENTIAL_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {MASK}", text)
    hide = redact_path if request_paths else redact_query
    return _REQUEST_LINE.sub(lambda m: f"{m.group(1)} {hide(m.group(2))}", text)


def _redact_match(match: re.Match[str]) -> str:
    """A URL found in text; punctuation that ends the sentence (or a quote) stays outside it."""
    found = match.group(0)
    url = found.rstrip(_TRAILING_PUNCTUATION)
    return redact_url(url) + found[len(url) :]


def endpoint_labels(urls: Sequence[str]) -> list[str]:
    """One redacted, unique label per URL, in order.

    URLs whose redacted forms collide get ``#`` and a :data:`LABEL_TAG_BYTES` fingerprint of
    the whole URL; the same URL given twice (or a fingerprint clash) gets ``-2``, ``-3``...
    """
    plain = [redact_url(url) for url in urls]
    counts: dict[str, int] = {}
    for label in plain:
        counts[label] = counts.get(label, 0) + 1
    labels: list[str] = []
    used: set[str] = set()
    for url, label in zip(urls, plain, strict=True):
        if counts[label] > 1:
            label = f"{label}#{_fingerprint(url)}"
        unique, n = label, 1
        while unique in used:
            n += 1
            unique = f"{label}-{n}"
        used.add(unique)
        labels.append(unique)
    return labels


def _fingerprint(url: str) -> str:
    digest = hashlib.blake2b(
        url.encode("utf-8", "replace"), digest_size=LABEL_TAG_BYTES, person=b"blockfeed-label"
    )
    return digest.hexdigest()
