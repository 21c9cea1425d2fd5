"""Property: for generated URL shapes, no secret survives any output that may show an endpoint.

Shapes: userinfo (user and password), path keys with ``. ; = + %``, short query keys and values,
JWTs in the query or the path. Outputs: the redacted URL, endpoint labels, free text, log records
of the libraries (message, arguments, traceback, the websockets handshake lines), the /status
scrubber, the /metrics endpoint label and the SSE/status event payload.
"""

from __future__ import annotations

import base64
import logging
import sys
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from blockfeed.gateway.metrics import _endpoint_label
from blockfeed.gateway.status import event_json, scrub
from blockfeed.types import Mode, ModeChanged, SinkWrongChain
from blockfeed.util.logmask import RedactFilter
from blockfeed.util.redact import endpoint_labels, redact_path, redact_text, redact_url

# Two capitals then a digit: a sequence no fixed text of any output contains, so finding a
# secret in an output can only mean it leaked.
SECRET = st.from_regex(r"[A-Z]{2}[0-9][A-Za-z0-9._~+;=%\-]{1,14}", fullmatch=True)
SHORT_KEY = st.from_regex(r"[a-z]{1,3}", fullmatch=True)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@st.composite
def jwts(draw: st.DrawFn) -> str:
    """A JWT-shaped token: base64url(JSON header).base64url(payload).base64url(signature)."""
    claim = draw(st.from_regex(r"[A-Za-z0-9]{4,20}", fullmatch=True))
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    payload = _b64url(b'{"sub":"' + claim.encode() + b'"}')
    signature = _b64url(draw(st.binary(min_size=16, max_size=40)))
    return f"{header}.{payload}.{signature}"


@dataclass(frozen=True)
class Shape:
    url: str
    secrets: tuple[str, ...]
    request_target: str
    basic: str | None


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    secrets: list[str] = []
    scheme = draw(st.sampled_from(["ws", "wss"]))
    host = draw(st.sampled_from(["127.0.0.1", "node.example", "[::1]"]))
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    netloc = host if port is None else f"{host}:{port}"
    basic = None
    if draw(st.booleans()):
        user, password = draw(SECRET), draw(SECRET)
        secrets += [user, password]
        netloc = f"{user}:{password}@{netloc}"
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    segments: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["plain", "dotted", "param", "jwt"]))
        if kind == "plain":
            segments.append(draw(SECRET))
            secrets.append(segments[-1])
        elif kind == "dotted":  # sk_live.KEY;apikey=VALUE
            key, value = draw(SECRET), draw(SECRET)
            segments.append(f"sk_live.{key};apikey={value}")
            secrets += [key, value]
        elif kind == "param":
            value = draw(SECRET)
            segments.append(f"{draw(SHORT_KEY)}={value}+x%2F")
            secrets.append(value)
        else:
            token = draw(jwts())
            segments.append(token)
            secrets += token.split(".")
    path = "/" + "/".join(segments) if segments else draw(st.sampled_from(["", "/"]))
    query_parts = []
    for _ in range(draw(st.integers(0, 3))):
        value = draw(st.one_of(SECRET, jwts()))
        query_parts.append(f"{draw(SHORT_KEY)}={value}")
        secrets += value.split(".") if value.startswith("eyJ") else [value]
    query = "?" + "&".join(query_parts) if query_parts else ""
    url = f"{scheme}://{netloc}{path}{query}"
    return Shape(url, tuple(secrets), (path or "/") + query, basic)


def _assert_clean(shape: Shape, *outputs: str) -> None:
    text = "\n".join(outputs)
    for secret in shape.secrets:
        assert secret not in text, (secret, shape.url, text)
    if shape.basic is not None:
        assert shape.basic not in text


def _through_filter(name: str, msg: str, *args: object) -> str:
    record = logging.LogRecord(name, logging.DEBUG, __file__, 1, msg, args, None)
    assert RedactFilter().filter(record) is True
    return logging.Formatter("%(name)s %(message)s").format(record)


@settings(max_examples=150, deadline=None)
@given(shape=shapes())
def test_no_secret_in_urls_labels_or_text(shape: Shape) -> None:
    """redact_url, labels (colliding or not), paths and free text never show a secret."""
    other = shape.url.replace("://", "://", 1) + ("&z=1" if "?" in shape.url else "?z=1")
    _assert_clean(
        shape,
        redact_url(shape.url),
        *endpoint_labels([shape.url, other, shape.url]),
        redact_path(shape.request_target),
        redact_text(f"connect to {shape.url} failed"),
        redact_text(f"error: InvalidURI({shape.url!r}), see {shape.url}."),
        redact_text(f'{{"url": "{shape.url}"}}'),
    )
    assert redact_url(shape.url).split("://", 1)[0] in ("ws", "wss")


@settings(max_examples=100, deadline=None)
@given(shape=shapes())
def test_no_secret_in_library_log_records(shape: Shape) -> None:
    """Messages, arguments, handshake lines and tracebacks of library loggers are masked."""
    outputs = [
        _through_filter("websockets.client", "> GET %s HTTP/1.1", shape.request_target),
        _through_filter("websockets.server", "< GET %s HTTP/1.1", shape.request_target),
        _through_filter("httpx", "HTTP Request: %s %s", "POST", shape.url),
        _through_filter("httpcore.connection", f"connect {shape.url}"),
        _through_filter("blockfeed.rpc.ws", "socket %(u)s closed", {"u": shape.url}),
    ]
    if shape.basic is not None:
        header = ("Authorization", f"Basic {shape.basic}")
        outputs.append(_through_filter("websockets.client", "> %s: %s", *header))
    try:
        raise ConnectionError(f"cannot reach {shape.url}")
    except ConnectionError:
        record = logging.LogRecord(
            "websockets.client", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    RedactFilter().filter(record)
    outputs.append(logging.Formatter().format(record))
    _assert_clean(shape, *outputs)


@settings(max_examples=100, deadline=None)
@given(shape=shapes())
def test_no_secret_in_status_metrics_or_events(shape: Shape) -> None:
    """The /status scrubber, the /metrics endpoint label and event payloads (SSE mode events
    and /status recent events) never show a secret, even when handed a raw URL."""
    event = ModeChanged(
        at=1.0,
        reason=f"socket to {shape.url} closed",
        old_mode=Mode.STREAMING,
        new_mode=Mode.POLLING,
        endpoint=endpoint_labels([shape.url])[0],
    )
    with_url_details = SinkWrongChain(
        at=1.0, reason=f"stream at {shape.url}", stream=f"via {shape.url}",
        stream_genesis="0x" + "11" * 32, genesis=None, redis=shape.url,
    )
    _assert_clean(
        shape,
        str(scrub({"endpoint": shape.url, "reason": f"failed: {shape.url}"})),
        _endpoint_label({"endpoint": shape.url}, 0),
        str(event_json(event)),
        str(event_json(with_url_details)),
    )
