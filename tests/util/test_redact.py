"""Secrets in endpoint URLs never survive redaction."""

from __future__ import annotations

import pytest

from blockfeed.util.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("wss://user:s3cretpass@node.example:443", "s3cretpass"),
        ("wss://node.example/ws/abcdef0123456789abcdef", "abcdef0123456789abcdef"),
        ("https://node.example/rpc?apikey=KEY123", "KEY123"),
        ("redis://:hunter2@127.0.0.1:6379/0", "hunter2"),
        (
            "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "XXXXXXXXXXXXXXXXXXXXXXXX",
        ),
    ],
)
def test_secret_is_masked(url: str, secret: str) -> None:
    """The secret part is gone, the host stays so people can tell endpoints apart."""
    out = redact_url(url)
    assert secret not in out
    assert "***" in out
    assert url.split("://")[0] in out


def test_plain_url_is_unchanged() -> None:
    """A URL without secrets is shown as is."""
    assert redact_url("ws://127.0.0.1:9944") == "ws://127.0.0.1:9944"


def test_garbage_is_fully_masked() -> None:
    """Something that is not a URL is masked rather than echoed."""
    assert redact_url("not a url at all") == "***"


def test_redact_text_replaces_embedded_urls() -> None:
    """A message that embeds a secret URL comes out without the secret."""
    url = "wss://u:topsecret@h:1"
    assert "topsecret" not in redact_text(f"failed to connect to {url}: refused", [url])
