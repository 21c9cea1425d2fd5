"""``blockfeed serve``: the gateway service (HTTP API, SSE stream, metrics, dashboard, alerts)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from blockfeed.cli._log_limit import RepeatLimiter
from blockfeed.cli._output import fail, fail_on
from blockfeed.cli._signals import install_stop_signals
from blockfeed.config import Settings, load_settings
from blockfeed.errors import BlockfeedError, ConfigError
from blockfeed.util.redact import redact_url

EXIT_BAD_INPUT = 2
EXIT_CANNOT_START = 1
log = logging.getLogger("blockfeed.serve")


class GatewayStartFailed(Exception):
    """uvicorn could not start the app (it logged why); exit 1 with one line."""


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, for log shippers (``--log-format json``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_text:  # a traceback the secret filter masked (it drops exc_info then)
            entry["exc"] = record.exc_text
        elif record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _DroppedStreamNoise(logging.Filter):
    """uvicorn reports a cut-off SSE stream as an error; the gateway already logged the drop."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


LOG_LEVELS = ("debug", "info", "warning", "error")


def configure_logging(log_format: str, level: int | str = logging.INFO) -> None:
    """Root logging in text or JSON; uvicorn's loggers propagate into it.

    Every record passes the secret-masking filter, on the libraries' loggers and on the handler.
    """
    from blockfeed.util.logmask import install_log_redaction, redacting_handler

    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    handler = redacting_handler(logging.StreamHandler(sys.stderr))
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    handler.addFilter(RepeatLimiter())  # a storm of identical errors: once a minute + count
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.error").addFilter(_DroppedStreamNoise())
    install_log_redaction()


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    return fail("serve", message, code)


def serve(
    endpoints: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ENDPOINT",
            help="WebSocket endpoints (ws:// or wss://), best first. Default: the network's.",
            show_default=False,
        ),
    ] = None,
    network: Annotated[
        str | None, typer.Option(
            help="Network name: finney, test, archive or local.", show_default=False
        )
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port to listen on (default 8000).")
    ] = None,
    state: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="SQLite state file (checkpoint + recent blocks); ':memory:' keeps nothing. "
            "Default: the per-user data directory.",
        ),
    ] = None,
    alert_webhook: Annotated[
        list[str] | None,
        typer.Option(
            metavar="URL",
            help="Alert webhook, repeatable. Slack and Discord URLs are recognised; or prefix "
            "slack+ / discord+.",
            show_default=False,
        ),
    ] = None,
    sink: Annotated[
        list[str] | None,
        typer.Option(
            metavar="URL",
            help="Also write every block to this sink, repeatable: redis://, postgresql://, "
            "nats://, or https:// (signed webhook; secret in $BLOCKFEED_WEBHOOK_SECRET).",
            show_default=False,
        ),
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Same as --sink redis://... (kept for old scripts)."),
    ] = None,
    stream: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Redis stream key (default blockfeed:finalized, what consume reads).",
        ),
    ] = None,
    contents: Annotated[
        str | None,
        typer.Option(
            metavar="LEVEL",
            help="What each block carries: header (default), timestamp, events or full "
            "(events and verified extrinsics); also $BLOCKFEED_CONTENTS.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="TOML settings file (also $BLOCKFEED_CONFIG).", show_default=False
        ),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option(
            metavar="LEVEL",
            help=f"One of {', '.join(LOG_LEVELS)}. Secrets are masked at every level.",
        ),
    ] = "info",
) -> None:
    """Run the gateway: HTTP API, resumable SSE stream, Prometheus metrics, dashboard, alerts.

    Settings come from flags, then BLOCKFEED_* environment variables, then the TOML file, then
    defaults. The admin token (POST /admin/reconnect) is read from BLOCKFEED_ADMIN_TOKEN only.
    """
    if log_level.lower() not in LOG_LEVELS:
        raise _fail(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    try:
        settings = load_settings(
            config_file=config,
            endpoints=endpoints,
            network=network,
            host=host,
            port=port,
            state=state,
            alert_webhooks=alert_webhook,
            redis_url=redis,
            sinks=sink,
            redis_stream=stream,
            contents=contents,
        )
        from blockfeed.gateway.runtime import check_sinks

        check_sinks(settings)  # a missing webhook secret fails here, not inside uvicorn
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    configure_logging(settings.log_format, log_level)
    try:
        asyncio.run(_run(settings))
    except BlockfeedError as exc:  # e.g. the state file belongs to another chain: like watch
        raise fail_on("serve", exc) from None
    except GatewayStartFailed as exc:
        raise _fail(str(exc), EXIT_CANNOT_START) from None
    except OSError as exc:
        raise _fail(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}",
            EXIT_CANNOT_START,
        ) from None
    except KeyboardInterrupt:
        pass
    typer.echo("blockfeed serve: stopped", err=True)


async def _run(settings: Settings) -> None:
    from blockfeed.gateway import create_app
    from blockfeed.gateway.runtime import build_feed, open_state_store
    from blockfeed.gateway.server import (
        GatewayStartError,
        freeze_startup_objects,
        running_server,
        tune_gc_for_fanout,
    )
    from blockfeed.ops.systemd import notify_service

    tune_gc_for_fanout()

    stop = asyncio.Event()
    install_stop_signals(stop)
    store = open_state_store(settings)  # fail here, with a clear message, not inside uvicorn
    try:
        feed = build_feed(settings, store=store)
        # The feed is started here, not in the app's lifespan: its start errors (a state file
        # of another chain) then reach serve() as themselves, not as uvicorn's traceback + exit 3.
        app = create_app(settings, feed=feed, store=store, manage_feed=False)
        try:
            async with running_server(
                app,
                host=settings.host,
                port=settings.port,
                before_shutdown=app.state.gateway.hub.close_all,
            ) as server:
                async with feed:
                    freeze_startup_objects()
                    endpoints = ", ".join(redact_url(u) for u in settings.resolved_endpoints())
                    typer.echo(
                        f"blockfeed serve: {server.url}/ (dashboard) | /stream | /metrics "
                        f"| /docs | network {settings.network} | following {endpoints} "
                        "(Ctrl-C to stop)",
                        err=True,
                    )
                    async with notify_service(feed.status):  # sd_notify when run by systemd
                        await stop.wait()
        except GatewayStartError as exc:
            raise GatewayStartFailed(str(exc)) from None
    finally:
        store.close()


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the ``blockfeed`` app."""
    app.command(name="serve")(serve)
