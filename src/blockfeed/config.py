"""Settings for ``blockfeed serve`` and the gateway: flags > env ``BLOCKFEED_*`` > TOML > defaults.

One :class:`Settings` object carries everything the service needs. :func:`load_settings` builds it
from the four layers and turns every validation problem into a :class:`ConfigError` whose message
names the setting and what is wrong with it, but never echoes the value: values here include API
keys in endpoint URLs, webhook URLs and the admin token.

List settings accept, in env vars, either a JSON list or a comma-separated string::

    BLOCKFEED_ENDPOINTS="wss://a.example:443,wss://b.example:443"
    BLOCKFEED_ALERT_WEBHOOKS='["https://hooks.slack.com/services/..."]'
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from blockfeed import defaults
from blockfeed.errors import ConfigError
from blockfeed.feed.endpoints import NETWORKS

ENV_PREFIX = "BLOCKFEED_"
CONFIG_FILE_ENV = "BLOCKFEED_CONFIG"
MEMORY_STATE = ":memory:"
"""``--state :memory:`` keeps nothing on disk (no checkpoint survives a restart)."""

if TYPE_CHECKING:
    from blockfeed.feed.config import FeedConfig

DEFAULT_NETWORK = "finney"
NETWORK_ENDPOINTS: Mapping[str, str] = NETWORKS
"""Where a network name points when no endpoint is given (the feed's own table)."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_BLOCK_TIME_S = defaults.BLOCK_TIME_S
DEFAULT_EPOCH_LENGTH = defaults.EPOCH_LENGTH
DEFAULT_REDIS_STREAM = "blockfeed:finalized"
"""The same key ``blockfeed consume`` reads by default (``blockfeed.redis.DEFAULT_STREAM``)."""
DEFAULT_REDIS_MAXLEN = 100_000
READY_AGE_BLOCKS = 5.0
"""Without ``ready_max_block_age_s``, /ready fails once the last block is 5 block times old."""
READY_AGE_FLOOR_S = 30.0

_WS_SCHEMES = ("ws", "wss")
_HTTP_SCHEMES = ("http", "https")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
WEBHOOK_PREFIXES = ("slack+", "discord+")


def _split_list(value: Any) -> Any:
    """Accept a JSON list or a comma/whitespace-separated string where a list is expected."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError("is not a valid JSON list") from exc
        return [part for part in text.replace(",", " ").split() if part]
    return value


def _check_url(url: str, schemes: tuple[str, ...], what: str) -> str:
    """Validate a URL's scheme and host without ever putting the URL in the message."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        raise ValueError(f"{what} is not a valid URL") from None
    if parts.scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ValueError(f"{what} must start with {allowed}")
    if not host and parts.scheme != "unix":
        raise ValueError(f"{what} has no host")
    return url


def strip_webhook_prefix(url: str) -> tuple[str | None, str]:
    """Split ``slack+https://...`` into ``("slack", "https://...")``; no prefix gives ``None``."""
    for prefix in WEBHOOK_PREFIXES:
        if url.startswith(prefix):
            return prefix[:-1], url[len(prefix) :]
    return None, url


class Settings(BaseSettings):
    """Everything ``blockfeed serve`` needs; build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        case_sensitive=False,
    )

    endpoints: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="WebSocket endpoints (ws:// or wss://), best first; empty = the network's",
    )
    network: str = Field(
        DEFAULT_NETWORK, description="network name: finney, test, archive, local, ..."
    )
    http_endpoints: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="HTTP twins of the endpoints; derived when empty"
    )
    host: str = Field(DEFAULT_HOST, description="address the gateway listens on")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="port the gateway listens on")
    state: str | None = Field(
        None, description="SQLite state file; ':memory:' keeps nothing; empty = per-user data dir"
    )
    alert_webhooks: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="webhook URLs for alerts (generic, Slack, Discord)"
    )
    admin_token: SecretStr | None = Field(
        None, description="bearer token for /admin routes; admin routes are off without one"
    )
    redis_url: str | None = Field(None, description="publish blocks to this Redis (redis://...)")
    sinks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="sink URLs: redis://, postgresql://, nats://, https:// (signed webhooks)",
    )
    redis_stream: str = Field(DEFAULT_REDIS_STREAM, min_length=1, description="Redis stream key")
    redis_maxlen: int = Field(DEFAULT_REDIS_MAXLEN, ge=1, description="approximate stream length")
    block_time_s: float | None = Field(
        None, gt=0, le=3600,
        description="hint of the chain's block time (default: auto, learned from the chain)",
    )
    epoch_length: int = Field(DEFAULT_EPOCH_LENGTH, ge=1, description="blocks per epoch")
    ready_max_block_age_s: float | None = Field(
        None, gt=0, description="/ready fails when the last block is older; default 5 block times"
    )
    log_format: Literal["text", "json"] = Field("text", description="log line format")
    contents: Literal["header", "timestamp", "events", "full"] = Field(
        "header",
        description="what each block carries besides its header: timestamp (and spec version), "
        "events, or full (events and verified extrinsics)",
    )

    @field_validator("endpoints", "http_endpoints", "alert_webhooks", "sinks", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("endpoints")
    @classmethod
    def _ws_urls(cls, value: list[str]) -> list[str]:
        return [_check_url(url, _WS_SCHEMES, f"endpoint #{i + 1}") for i, url in enumerate(value)]

    @field_validator("http_endpoints")
    @classmethod
    def _http_urls(cls, value: list[str]) -> list[str]:
        return [
            _check_url(url, _HTTP_SCHEMES, f"HTTP endpoint #{i + 1}") for i, url in enumerate(value)
        ]

    @field_validator("alert_webhooks")
    @classmethod
    def _webhooks(cls, value: list[str]) -> list[str]:
        for i, url in enumerate(value):
            _check_url(strip_webhook_prefix(url)[1], _HTTP_SCHEMES, f"alert webhook #{i + 1}")
        return value

    @field_validator("sinks")
    @classmethod
    def _sink_urls(cls, value: list[str]) -> list[str]:
        from blockfeed.sinks import SINK_SCHEMES

        schemes = tuple(SINK_SCHEMES)
        return [_check_url(url, schemes, f"sink #{i + 1}") for i, url in enumerate(value)]

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value:
            _check_url(value, _REDIS_SCHEMES, "redis URL")
        return value or None

    @field_validator("contents", mode="before")
    @classmethod
    def _contents(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("network")
    @classmethod
    def _network(cls, value: str) -> str:
        value = value.strip()
        if not value or not value.replace("-", "").replace("_", "").isalnum():
            raise ValueError("network must be a simple name such as finney, test or local")
        return value

    @field_validator("admin_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if value.get_secret_value() != value.get_secret_value().strip():
            # The route compares against the stripped header value: such a token never matches.
            raise ValueError(
                "admin token must not be blank or start or end with whitespace"
            )
        if len(value.get_secret_value()) < 8:
            raise ValueError("admin token must be at least 8 characters")
        return value

    @model_validator(mode="after")
    def _endpoints_known(self) -> Settings:
        if not self.endpoints and self.network not in NETWORK_ENDPOINTS:
            known = ", ".join(sorted(NETWORK_ENDPOINTS))
            raise ValueError(
                f"no endpoint given and network {self.network!r} has no default ({known}); "
                "pass an endpoint URL"
            )
        if self.http_endpoints and len(self.http_endpoints) != len(self.resolved_endpoints()):
            raise ValueError("give one HTTP endpoint per WebSocket endpoint, or none")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init kwargs) beat env, env beats the TOML file; no dotenv or secret dirs."""
        return (init_settings, env_settings, InitSettingsSource(settings_cls, cls._toml_values()))

    @classmethod
    def _toml_values(cls) -> dict[str, Any]:
        return {}

    # --- derived values -----------------------------------------------------------------------

    def resolved_endpoints(self) -> list[str]:
        """The endpoints to use: the given ones, or the network's default."""
        return list(self.endpoints) or [NETWORK_ENDPOINTS[self.network]]

    def resolved_state(self) -> str:
        """The state file path (the store's per-user default when unset), or ``:memory:``."""
        if self.state == MEMORY_STATE:
            return MEMORY_STATE
        if self.state:
            return str(Path(self.state).expanduser())
        from blockfeed.store.paths import default_state_path

        return str(default_state_path())

    def feed_config(self) -> FeedConfig:
        """The feed's tuning from these settings (the only place ``serve`` builds it)."""
        from blockfeed.feed.config import FeedConfig

        return FeedConfig(block_time_s=self.block_time_s, epoch_length=self.epoch_length,
                          contents=self.contents)

    def ready_age_limit_s(self) -> float:
        """How old the last block may be before /ready reports 503."""
        if self.ready_max_block_age_s is not None:
            return self.ready_max_block_age_s
        return max(READY_AGE_FLOOR_S,
                   READY_AGE_BLOCKS * (self.block_time_s or DEFAULT_BLOCK_TIME_S))

    def secret_urls(self) -> list[str]:
        """URLs that may carry credentials: scrubbed from any text the gateway emits."""
        urls = [*self.resolved_endpoints(), *self.http_endpoints]
        urls += [strip_webhook_prefix(u)[1] for u in self.alert_webhooks]
        urls += self.alert_webhooks
        if self.redis_url:
            urls.append(self.redis_url)
        urls += self.sinks
        return urls

    def sink_urls(self) -> list[str]:
        """Every sink to run: ``--redis`` (a synonym for one ``--sink redis://``) and ``--sink``."""
        urls = list(self.sinks)
        if self.redis_url and self.redis_url not in urls:
            urls.insert(0, self.redis_url)
        return urls


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML config file (top level, or a ``[blockfeed]`` table) with clear errors."""
    file = Path(path).expanduser()
    try:
        with file.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(file)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {str(file)!r} is a directory") from None
    except PermissionError:
        raise ConfigError(f"config file {str(file)!r} is not readable") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(file)!r} is not valid TOML: {exc}") from None
    section = data.get("blockfeed", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {str(file)!r}: [blockfeed] must be a table")
    return {key.replace("-", "_"): value for key, value in section.items()}


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the setting; input values are left out on purpose."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(part) for part in error["loc"]) or "settings"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"{loc}: {message}")
    return "invalid settings: " + "; ".join(lines)


def load_settings(*, config_file: str | os.PathLike[str] | None = None, **flags: Any) -> Settings:
    """Build :class:`Settings` from flags (``None`` = not given), env, a TOML file and defaults.

    The TOML file is ``config_file`` or ``$BLOCKFEED_CONFIG``. Raises :class:`ConfigError`.
    """
    path = config_file or os.environ.get(CONFIG_FILE_ENV) or None
    toml_values = read_toml(path) if path else {}
    given = {key: value for key, value in flags.items() if value is not None and value != []}

    class _Layered(Settings):
        @classmethod
        def _toml_values(cls) -> dict[str, Any]:
            return toml_values

    _Layered.__name__ = _Layered.__qualname__ = "Settings"
    try:
        return _Layered(**given)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
