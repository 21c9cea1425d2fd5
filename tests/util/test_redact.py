"""Endpoint URLs are masked by structure: only scheme, host and port survive, in every output."""

from __future__ import annotations

import base64
import logging
import re

import pytest

from blockfeed.util.logmask import (
    LIBRARY_LOGGERS,
    RedactFilter,
    install_log_redaction,
    shared_filter,
)
from blockfeed.util.redact import (
    SHOW_PATH_ENV_VAR,
    endpoint_labels,
    redact_path,
    redact_text,
    redact_url,
)

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0"
    ".c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("wss://user:s3cretpass@node.example:443", "wss://node.example:443/***"),
        ("wss://node.example/ws/abcdef0123456789abcdef", "wss://node.example/***"),
        ("https://node.example/rpc?apikey=KEY123", "https://node.example/***"),
        ("redis://:hunter2@127.0.0.1:6379/0", "redis://127.0.0.1:6379/***"),
        ("ws://h:9944/v1/sk_live.KEY;apikey=VALUE?key=SHORT", "ws://h:9944/***"),
        ("ws://h:9944/a+b%2Fc=d", "ws://h:9944/***"),
        (f"wss://h/?token={JWT}", "wss://h/***"),
        ("wss://h/#frag", "wss://h/***"),
        ("ws://[::1]:9944/key", "ws://[::1]:9944/***"),
        ("ws://127.0.0.1:9944", "ws://127.0.0.1:9944"),
        ("ws://127.0.0.1:9944/", "ws://127.0.0.1:9944"),
        ("WSS://Node.Example:443", "wss://node.example:443"),
    ],
)
def test_only_scheme_host_and_port_survive(url: str, shown: str) -> None:
    """Userinfo, path, query and fragment all become `/***`, whatever they look like."""
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "garbage", ["not a url at all", "ws://h:notaport/x", "ws://", "://h/x", "ws://h o/x"]
)
def test_garbage_is_fully_masked(garbage: str) -> None:
    """Something that is not a URL with a host is masked rather than echoed."""
    assert redact_url(garbage) == "***"


def test_show_path_setting_reveals_the_path_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """BLOCKFEED_SHOW_URL_PATH=1 shows the path; userinfo and query stay hidden, JWTs too."""
    url = f"wss://u:pw@h:1/v1/mainnet/{JWT}?key=SHORT"
    monkeypatch.setenv(SHOW_PATH_ENV_VAR, "1")
    assert redact_url(url) == "wss://h:1/v1/mainnet/***?***"
    assert redact_path("/v1/mainnet?key=SHORT") == "/v1/mainnet?***"
    monkeypatch.setenv(SHOW_PATH_ENV_VAR, "0")
    assert redact_url(url) == "wss://h:1/***"
    assert redact_url(url, show_path=True) == "wss://h:1/v1/mainnet/***?***"


def test_labels_are_unique_stable_and_short() -> None:
    """URLs that differ only in hidden parts get distinct, stable 4-hex tags; others none."""
    urls = ["wss://h/key-one", "wss://h/key-two", "ws://other:1", "wss://h/key-one"]
    labels = endpoint_labels(urls)
    assert labels == endpoint_labels(urls)  # stable (metric labels keep their identity)
    assert len(set(labels)) == 4
    assert labels[2] == "ws://other:1"
    for label in (labels[0], labels[1]):
        assert re.fullmatch(r"wss://h/\*\*\*#[0-9a-f]{4}", label)
    assert labels[3] == f"{labels[0]}-2"  # the same URL twice
    assert not any("key" in label for label in labels)


def test_free_text_loses_urls_jwts_and_credentials() -> None:
    """URLs, JWTs, credential headers and request-line paths are masked inside sentences."""
    basic = base64.b64encode(b"alice:PW").decode()
    text = (
        f"connect to 'wss://alice:PW@h:1/k.e;y=v' failed; token {JWT}\n"
        f"Authorization: Basic {basic}\nx-api-key=KEYVALUE\nGET /ws/k3y?x=1 HTTP/1.1\n"
        f"sent Bearer {basic}"
    )
    out = redact_text(text)
    for secret in ("alice", "PW@", "k.e;y", JWT[:20], JWT[-10:], basic, "KEYVALUE", "k3y"):
        assert secret not in out, secret
    assert "'wss://h:1/***'" in out  # the quote is not taken for part of the URL
    assert "GET /*** HTTP/1.1" in out and "Authorization: ***" in out and "Bearer ***" in out
    assert redact_text("GET /status?from=5 HTTP/1.1", request_paths=False) == (
        "GET /status?*** HTTP/1.1"
    )


def test_known_secrets_are_replaced_first() -> None:
    """A configured URL is replaced wherever it appears, even glued to other text."""
    url = "wss://u:topsecret@h:1"
    assert "topsecret" not in redact_text(f"x{url}y", [url])


def _record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.DEBUG, __file__, 1, msg, args, None)


def test_filter_masks_websockets_handshake_lines() -> None:
    """websockets' DEBUG handshake lines (request line, Authorization header) lose secrets."""
    redactor = RedactFilter()
    basic = base64.b64encode(b"alice:hunter2").decode()
    request = _record("websockets.client", "> GET %s HTTP/1.1", "/v1/sk_live.KEY?key=AB")
    header = _record("websockets.client", "> %s: %s", "Authorization", f"Basic {basic}")
    for record in (request, header):
        assert redactor.filter(record) is True
    assert request.getMessage() == "> GET /*** HTTP/1.1"
    assert header.getMessage() == "> Authorization: ***"


def test_filter_keeps_our_own_routes_in_access_lines() -> None:
    """uvicorn.access lines keep the gateway's route and lose only the query."""
    record = _record(
        "uvicorn.access", '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/stream?t=x", "1.1", 200
    )
    RedactFilter().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "GET /stream?*** HTTP/1.1" 200'


def test_filter_masks_tracebacks_and_unformattable_records() -> None:
    """A traceback naming a secret URL is masked; a record whose args do not fit is kept, safe."""
    try:
        raise ValueError("cannot open wss://h:1/SECRETPATH")
    except ValueError:
        import sys

        record = logging.LogRecord("httpx", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    RedactFilter().filter(record)
    assert record.exc_text is not None and "SECRETPATH" not in record.exc_text
    assert "wss://h:1/***" in record.exc_text
    assert "SECRETPATH" not in logging.Formatter().format(record)
    bad = _record("httpx", "%d items at %s", "wss://h/SECRETPATH")
    assert RedactFilter().filter(bad) is True
    assert "SECRETPATH" not in bad.getMessage()


def test_install_puts_one_filter_on_every_library_logger() -> None:
    """Installing many times leaves exactly one shared filter on each library logger."""
    logging.getLogger("blockfeed.some.child")
    for _ in range(3):
        install_log_redaction()
    for name in (*LIBRARY_LOGGERS, "blockfeed.some.child"):
        filters = logging.getLogger(name).filters
        assert filters.count(shared_filter()) == 1, name
