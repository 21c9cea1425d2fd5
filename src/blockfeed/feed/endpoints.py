"""Endpoint URLs: network names, the HTTP twin of a WebSocket URL, and safe labels.

A Substrate node serves WebSocket and HTTP JSON-RPC on one port, so ``wss://host:443/path`` has
the twin ``https://host:443/path`` unless one is configured. Everything the core, the logs and
the status page see is the *label*: the redacted URL (made unique), never the URL itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from blockfeed.errors import ConfigError
from blockfeed.util.redact import endpoint_labels, redact_url

NETWORKS: dict[str, str] = {
    "finney": "wss://entrypoint-finney.opentensor.ai:443",
    "test": "wss://test.finney.opentensor.ai:443",
    "archive": "wss://archive.chain.opentensor.ai:443",
    "local": "ws://127.0.0.1:9944",
}
"""Bittensor network names, as the Bittensor SDK maps them."""

_TWIN_SCHEME = {"ws": "http", "wss": "https"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One node: its WebSocket URL, its HTTP URL and the label everything else may print."""

    ws_url: str
    http_url: str
    label: str

    def __repr__(self) -> str:  # never show the raw URLs (they may hold keys)
        return f"Endpoint({self.label!r})"


def network_url(name: str) -> str:
    """The WebSocket URL of a named network (``finney``, ``test``, ``archive``, ``local``)."""
    try:
        return NETWORKS[name]
    except KeyError:
        known = ", ".join(sorted(NETWORKS))
        raise ConfigError(f"unknown network {name!r}; known networks: {known}") from None


def http_twin(ws_url: str) -> str:
    """``ws://`` -> ``http://``, ``wss://`` -> ``https://``; same host, port, path and query."""
    parts = _split(ws_url, ("ws", "wss"), "WebSocket")
    return urlunsplit((_TWIN_SCHEME[parts.scheme], parts.netloc, parts.path, parts.query, ""))


def build_endpoints(
    ws_urls: str | Sequence[str], http_urls: Sequence[str | None] | None = None
) -> list[Endpoint]:
    """Validate the configured URLs and pair each WebSocket URL with its HTTP URL."""
    urls = [ws_urls] if isinstance(ws_urls, str) else list(ws_urls)
    if not urls:
        raise ConfigError("at least one endpoint URL is required")
    if http_urls is not None and len(http_urls) != len(urls):
        raise ConfigError(
            f"http_endpoints must have one entry per endpoint ({len(urls)}), got {len(http_urls)}"
        )
    endpoints: list[Endpoint] = []
    for index, url in enumerate(urls):
        if not isinstance(url, str):
            raise ConfigError(f"endpoint URLs must be strings, got {type(url).__name__}")
        _split(url, ("ws", "wss"), "WebSocket")
        given = http_urls[index] if http_urls is not None else None
        if given is None:
            http = http_twin(url)
        else:
            _split(given, ("http", "https"), "HTTP")
            http = given
        endpoints.append(Endpoint(ws_url=url, http_url=http, label=""))
    labels = endpoint_labels([endpoint.ws_url for endpoint in endpoints])
    endpoints = [replace(e, label=label) for e, label in zip(endpoints, labels, strict=True)]
    return endpoints


def _split(url: str, schemes: tuple[str, ...], what: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise ConfigError(f"not a valid {what} URL: {redact_url(url)}") from None
    if parts.scheme not in schemes or not parts.hostname:
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{what} endpoint must start with {wanted}: {redact_url(url)}")
    try:  # the clients decode the credentials at connect time; fail here, not in a retry loop
        for part in (parts.username, parts.password):
            unquote(part or "", errors="strict")
    except UnicodeDecodeError:
        raise ConfigError(
            f"the credentials in {what} URL {redact_url(url)} are not valid percent-encoded "
            "UTF-8 (encode special characters, e.g. %40 for @)"
        ) from None
    return parts
