"""Settings: flags > env > TOML > defaults, list parsing, and errors that never echo secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from blockfeed.config import NETWORK_ENDPOINTS, load_settings
from blockfeed.errors import ConfigError

KEY = "sk_live_abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BLOCKFEED_* variable from the developer's shell leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("BLOCKFEED_"):
            monkeypatch.delenv(name)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "blockfeed.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    """With nothing given: finney's endpoint, loopback:8000, block time learned (no hint),
    360-block epochs."""
    s = load_settings()
    assert s.resolved_endpoints() == [NETWORK_ENDPOINTS["finney"]]
    assert (s.host, s.port, s.block_time_s, s.epoch_length) == ("127.0.0.1", 8000, None, 360)
    assert s.admin_token is None and s.alert_webhooks == [] and s.redis_url is None
    assert s.ready_age_limit_s() == 60.0
    assert s.resolved_state().endswith("state.sqlite")


def test_precedence_flags_env_toml_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flag beats env, env beats the TOML file, the TOML file beats defaults."""
    toml = write_toml(
        tmp_path, 'port = 9001\nhost = "0.0.0.0"\nnetwork = "test"\nepoch_length = 99\n'
    )
    monkeypatch.setenv("BLOCKFEED_PORT", "9002")
    monkeypatch.setenv("BLOCKFEED_HOST", "127.0.0.2")
    s = load_settings(config_file=toml, port=9003)
    assert s.port == 9003  # flag
    assert s.host == "127.0.0.2"  # env over TOML
    assert s.network == "test" and s.epoch_length == 99  # TOML over defaults
    assert s.block_time_s is None  # default: learned from the chain


def test_config_file_from_env_and_blockfeed_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BLOCKFEED_CONFIG names the file; a [blockfeed] table and dashed keys are accepted."""
    toml = write_toml(
        tmp_path, '[blockfeed]\nblock-time-s = 0.5\nendpoints = ["ws://127.0.0.1:9944"]\n'
    )
    monkeypatch.setenv("BLOCKFEED_CONFIG", str(toml))
    s = load_settings()
    assert s.block_time_s == 0.5
    assert s.endpoints == ["ws://127.0.0.1:9944"]


def test_env_lists_json_or_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    """List settings in env take a JSON list or a comma-separated string."""
    monkeypatch.setenv("BLOCKFEED_ENDPOINTS", "ws://a.example:1, wss://b.example:2")
    monkeypatch.setenv("BLOCKFEED_ALERT_WEBHOOKS", '["https://hooks.slack.com/services/x"]')
    s = load_settings()
    assert s.endpoints == ["ws://a.example:1", "wss://b.example:2"]
    assert s.alert_webhooks == ["https://hooks.slack.com/services/x"]


def test_admin_token_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin token comes from BLOCKFEED_ADMIN_TOKEN and never shows in repr."""
    monkeypatch.setenv("BLOCKFEED_ADMIN_TOKEN", KEY)
    s = load_settings()
    assert s.admin_token is not None and s.admin_token.get_secret_value() == KEY
    assert KEY not in repr(s) and KEY not in str(s.model_dump())


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"port": 70000}, "port: Input should be less than or equal to 65535"),
        ({"endpoints": [f"http://u:{KEY}@node.example"]}, "endpoint #1 must start with ws://, wss://"),
        ({"alert_webhooks": [f"ftp://x/{KEY}"]}, "alert webhook #1 must start with http://, https://"),
        ({"redis_url": f"http://{KEY}@r"}, "redis URL must start with redis://"),
        ({"network": "nowhere"}, "network 'nowhere' has no default"),
        ({"block_time_s": 0}, "block_time_s: Input should be greater than 0"),
        ({"log_format": "xml"}, "log_format: Input should be 'text' or 'json'"),
    ],
)
def test_validation_errors_are_clear_and_secret_free(flags: dict, expected: str) -> None:
    """Each bad value gives a ConfigError naming the setting; the value itself is not echoed."""
    with pytest.raises(ConfigError) as info:
        load_settings(**flags)
    assert expected in str(info.value)
    assert KEY not in str(info.value)


def test_bad_env_value_and_short_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-numeric env port and a too-short admin token are reported without their values."""
    monkeypatch.setenv("BLOCKFEED_PORT", "eighty")
    monkeypatch.setenv("BLOCKFEED_ADMIN_TOKEN", "abc")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "port: Input should be a valid integer" in message
    assert "admin token must be at least 8 characters" in message
    assert "eighty" not in message


def test_toml_problems(tmp_path: Path) -> None:
    """Missing file, broken TOML and unknown keys are ConfigErrors that say which."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config_file=write_toml(tmp_path, "port = = 1"))
    with pytest.raises(ConfigError, match="prot: unknown setting"):
        load_settings(config_file=write_toml(tmp_path, "prot = 1"))


def test_http_endpoints_must_pair_up() -> None:
    """HTTP endpoints, when given, must match the WebSocket endpoints one to one."""
    with pytest.raises(ConfigError, match="one HTTP endpoint per WebSocket endpoint"):
        load_settings(endpoints=["ws://a:1", "ws://b:2"], http_endpoints=["http://a:1"])
    s = load_settings(endpoints=["ws://a:1"], http_endpoints=["http://a:1"])
    assert s.http_endpoints == ["http://a:1"]


def test_state_memory_and_paths(tmp_path: Path) -> None:
    """':memory:' stays as is; a given path is expanded; the ready age limit follows block time."""
    assert load_settings(state=":memory:").resolved_state() == ":memory:"
    assert load_settings(state=str(tmp_path / "s.db")).resolved_state() == str(tmp_path / "s.db")
    assert load_settings(block_time_s=1.0).ready_age_limit_s() == 30.0
    assert load_settings(ready_max_block_age_s=7).ready_age_limit_s() == 7.0


def test_secret_urls_cover_everything() -> None:
    """secret_urls lists endpoints, webhooks (with and without prefix) and redis for scrubbing."""
    s = load_settings(endpoints=[f"wss://n.example/{KEY}"],
                      alert_webhooks=[f"slack+https://h.example/{KEY}"],
                      redis_url="redis://:pw@r.example:6379/0")
    urls = s.secret_urls()
    assert f"wss://n.example/{KEY}" in urls
    assert f"https://h.example/{KEY}" in urls and f"slack+https://h.example/{KEY}" in urls
    assert "redis://:pw@r.example:6379/0" in urls


def test_contents_level_from_flag_env_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """``contents`` defaults to header, comes from BLOCKFEED_CONTENTS (any case) or the flag,
    and an unknown level is a ConfigError naming the setting and the choices."""
    assert load_settings().contents == "header"
    monkeypatch.setenv("BLOCKFEED_CONTENTS", " Events ")
    assert load_settings().contents == "events"
    assert load_settings(contents="full").contents == "full"
    with pytest.raises(ConfigError) as info:
        load_settings(contents="everything")
    assert "contents" in str(info.value) and "'full'" in str(info.value)


def test_settings_build_the_feed_config() -> None:
    """serve's settings become one FeedConfig: the hint, the epoch length and the contents."""
    from blockfeed import FeedConfig
    from blockfeed.contents import ContentsLevel

    config = load_settings(block_time_s=0.5, epoch_length=100, contents="events").feed_config()
    assert config == FeedConfig(block_time_s=0.5, epoch_length=100, contents=ContentsLevel.EVENTS)
    assert load_settings().feed_config() == FeedConfig()
