"""``blockfeed watch``: print every finalized block, in order, once, as text or JSON lines.

Blocks go to stdout (one line each; ``--json`` gives one JSON object per line), logs go to
stderr, so ``blockfeed watch --json | jq`` works.

With ``--state`` the feed keeps the checkpoint itself: a block is *acknowledged* when the
printer asks for the next one, which it does only after the line was written, so the
checkpoint never passes an unprinted block (at least once across crashes). A clean exit,
``--count`` or Ctrl-C acknowledges the last printed line, so the next run starts right after
it; a SIGKILL repeats at most ``SAVE_BATCH_BLOCKS`` printed lines (the printer forces a
checkpoint write at least that often).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import sys
import time
from dataclasses import dataclass
from typing import Annotated, Any, TextIO

import typer

from blockfeed import defaults
from blockfeed.cli._output import BlockPrinter, fail, fail_on
from blockfeed.cli._progress import report_catch_up
from blockfeed.cli._signals import install_stop_signals
from blockfeed.contents import ContentsLevel, EventFilter, json_safe, parse_level
from blockfeed.errors import BlockfeedError, ChainDiverged, ConfigError
from blockfeed.feed import BlockFeed, FeedConfig, build_endpoints
from blockfeed.feed.endpoints import network_url
from blockfeed.store import CheckpointStore, open_store
from blockfeed.types import Block, FeedEvent, Mode

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
"""Every endpoint serves another chain than the one delivered (``--on-divergence exit``)."""
EXIT_INTERRUPTED = 130
DEFAULT_NETWORK = "finney"
DEFAULT_EPOCH_LENGTH = defaults.EPOCH_LENGTH
DEFAULT_STARTUP_TIMEOUT_S = 30.0
SUBSCRIPTION_MAXSIZE = 100_000
"""Blocks are small; a deep queue means a burst of backfill never overflows while printing."""
SAVE_BATCH_BLOCKS = 200
"""With --state, a SIGKILL repeats at most this many printed lines: the printer forces a
checkpoint write before it gets further ahead of the stored checkpoint (the feed also writes
it in the background after every line)."""


class LogFormat(enum.StrEnum):
    """How log lines on stderr look."""

    TEXT = "text"
    JSON = "json"


class Divergence(enum.StrEnum):
    """What ``watch`` does when the chain is replaced under it."""

    EXIT = "exit"
    FOLLOW = "follow"


class WatchFailed(Exception):
    """Stop with a clear message and a non-zero exit code (no traceback)."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class WatchOptions:
    endpoints: list[str]
    json_lines: bool
    count: int | None
    start_at: int | None
    state: str | None
    block_time_s: float | None
    epoch_length: int
    startup_timeout_s: float
    on_divergence: str = "exit"
    contents: ContentsLevel = ContentsLevel.HEADER
    events: EventFilter | None = None


def contents_options(
    contents: str | None, events: str | None
) -> tuple[ContentsLevel, EventFilter | None]:
    """``--contents`` and ``--events``: a filter needs events, so it implies ``--contents
    events`` when no level is given and refuses a level without events."""
    wanted = None if events is None else EventFilter.parse(events)
    level = parse_level(contents)
    if wanted is not None:
        if contents is None:
            level = ContentsLevel.EVENTS
        elif level < ContentsLevel.EVENTS:
            raise ConfigError(f"--events needs --contents events or full, not {level}")
    return level, wanted


def resolve_endpoints(endpoints: list[str] | None, network: str | None) -> list[str]:
    """The endpoints given, or the network's default (finney when neither is given)."""
    if endpoints:
        build_endpoints(endpoints)  # validates; raises ConfigError with a redacted URL
        return list(endpoints)
    return [network_url(network or DEFAULT_NETWORK)]


async def _watch(options: WatchOptions, out: TextIO) -> int:
    deadline = time.monotonic() + options.startup_timeout_s
    store: CheckpointStore | None = None
    if options.state is not None:
        store = await asyncio.to_thread(open_store, options.state)
    try:
        return await _follow(options, out, store, deadline)
    finally:
        if store is not None:
            await asyncio.to_thread(store.close)


async def _follow(
    options: WatchOptions, out: TextIO, store: CheckpointStore | None, deadline: float
) -> int:
    config = FeedConfig(
        block_time_s=options.block_time_s,
        epoch_length=options.epoch_length,
        on_divergence=options.on_divergence,
        log_blocks=False,
        startup_timeout_s=max(0.1, min(10.0, deadline - time.monotonic())),
        contents=options.contents,
    )
    feed = BlockFeed(options.endpoints, config, start_at=options.start_at, store=store)
    printer = BlockPrinter(out, json_lines=options.json_lines, epoch_length=options.epoch_length)
    stop = asyncio.Event()
    first_block = asyncio.Event()
    wrong_history: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    printed = 0

    def on_event(event: FeedEvent) -> None:
        # Every endpoint serves a history that does not extend the state file's checkpoint:
        # no block will ever come, say so now instead of at the startup timeout.
        disagreeing = event.details.get("endpoints_disagreeing")
        if (
            event.kind == "verification_failed"
            and "checkpoint" in event.details
            and isinstance(disagreeing, list)
            and len(disagreeing) >= len(feed.endpoints)
            and not first_block.is_set()
            and not wrong_history.done()
        ):
            wrong_history.set_result(event.reason)

    async def print_blocks() -> None:
        nonlocal printed
        saved: int | None = None
        # Asking for the next block acknowledges the one printed before it.
        async for block in subscription:
            if saved is None or block.number - saved > SAVE_BATCH_BLOCKS:
                saved = await feed.save_checkpoint()  # bounds what a SIGKILL repeats
            first_block.set()
            if options.events is not None:
                block = options.events.apply(block)
            if not printer.write(block) or not _write_events(out, block, options):
                return  # stdout is gone: this block was not printed, it stays unacknowledged
            printed += 1
            last_printed[:] = [block.number]
            if options.count is not None and printed >= options.count:
                # The last line is printed: acknowledge it; the blocks after it stay owed, so
                # the checkpoint is exactly the last printed line.
                await subscription.aclose()
                return

    subscription = feed.blocks(name="watch", maxsize=SUBSCRIPTION_MAXSIZE)
    feed.add_event_hook(on_event)
    install_stop_signals(stop)
    last_printed: list[int] = []

    async with feed:
        consumer = asyncio.create_task(print_blocks(), name="blockfeed-watch-printer")
        stopper = asyncio.create_task(stop.wait(), name="blockfeed-watch-stop")
        progress = asyncio.create_task(
            report_catch_up(feed, lambda: last_printed[0] if last_printed else None),
            name="blockfeed-watch-progress",
        )
        try:
            started = asyncio.create_task(first_block.wait())
            waiters: set[asyncio.Future[Any]] = {started, consumer, stopper, wrong_history}
            done, _ = await asyncio.wait(
                waiters,
                timeout=max(0.0, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            started.cancel()
            if wrong_history.done():
                raise WatchFailed(f"{wrong_history.result()}; is this the right --state file?")
            if not done:
                raise WatchFailed(_no_block_message(feed, options))
            await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if consumer.done():
                consumer.result()  # re-raise feed errors (e.g. a failed checkpoint write)
        finally:
            # Stopping the printer while it waits for the next block: what it printed is
            # acknowledged (it asked again), the feed's final checkpoint records it.
            consumer.cancel()
            stopper.cancel()
            progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
    if stop.is_set():
        typer.echo(f"blockfeed watch: stopped after {printed} block(s)", err=True)
    return EXIT_OK


def _write_events(out: TextIO, block: Block, options: WatchOptions) -> bool:
    """Text mode with contents: one indented line per (matching) event after the block line."""
    if options.json_lines or not block.events:
        return True
    try:
        for event in block.events:
            fields = json.dumps(json_safe(event["fields"]), separators=(",", ":"))
            out.write(f"    {event['pallet']}.{event['name']} {fields}\n")
        out.flush()
    except (BrokenPipeError, ValueError, OSError):
        return False
    return True


def _no_block_message(feed: BlockFeed, options: WatchOptions) -> str:
    status = feed.status()
    where = ", ".join(feed.endpoints)
    message = f"no block from {where} within {options.startup_timeout_s:g} s (mode {status.mode})"
    if status.error:
        # A known reason the feed kept retrying on (a start below the node's history, ...).
        return f"{message}: {status.error}"
    last = status.recent_events[-1].reason if status.recent_events else None
    detail = f"; last event: {last}" if last else ""
    if options.start_at is not None and status.mode in (Mode.STREAMING, Mode.POLLING):
        return (
            f"{message}{detail}. The node answers, but block #{options.start_at} could not be "
            "fetched: is --from below the chain's first block or older than the node keeps?"
        )
    return f"{message}{detail}. Is the endpoint reachable? Raise --startup-timeout to wait longer."


def watch(
    endpoints: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ENDPOINT",
            help="WebSocket endpoints (ws:// or wss://), best first. Default: the --network's.",
            show_default=False,
        ),
    ] = None,
    network: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Network whose public endpoint to use when none is given: finney (default), "
            "test, archive or local.",
            show_default=False,
        ),
    ] = None,
    json_lines: Annotated[
        bool,
        typer.Option(
            "--json",
            help="One JSON object per block on stdout: number, hash, parent_hash, source, "
            "epoch, block_in_epoch, received_at (+ state_root, extrinsics_root; + timestamp, "
            "spec_version, events, extrinsics with --contents).",
        ),
    ] = False,
    count: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Exit 0 after N blocks.", show_default=False),
    ] = None,
    from_block: Annotated[
        int | None,
        typer.Option(
            "--from",
            min=0,
            metavar="N",
            help="Start at block N (backfilled if already finalized). Overrides the --state "
            "checkpoint. Default: the current finalized head, or checkpoint + 1.",
            show_default=False,
        ),
    ] = None,
    state: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="SQLite state file: resume after the last printed block (a crash repeats at "
            "most a few printed lines, never skips one). Without it nothing is written.",
            show_default=False,
        ),
    ] = None,
    block_time: Annotated[
        float | None,
        typer.Option(
            min=0.01, max=3600, metavar="S",
            help="A hint of the chain's block time in seconds. Default: auto (the runtime's "
            "declared slot duration, else 12 s, until arrivals are observed; what is observed "
            "always wins).",
            show_default=False,
        ),
    ] = None,
    on_divergence: Annotated[
        Divergence,
        typer.Option(
            help="When every endpoint serves another chain than the one printed (a dev chain "
            "restarted, another genesis): exit with status 3 and one line starting "
            "'CHAIN DIVERGED', or follow the new chain from its finalized head (recorded in "
            "the --state file).",
        ),
    ] = "exit",  # type: ignore[assignment]
    epoch_length: Annotated[
        int, typer.Option(min=1, metavar="N", help="Blocks per epoch (epoch, block_in_epoch).")
    ] = DEFAULT_EPOCH_LENGTH,
    log_format: Annotated[
        LogFormat, typer.Option(help="Format of the log lines on stderr.")
    ] = LogFormat.TEXT,
    startup_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            metavar="S",
            help="Give up (exit 1) when no block arrived within S seconds of starting.",
        ),
    ] = DEFAULT_STARTUP_TIMEOUT_S,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")
    ] = False,
    contents: Annotated[
        str | None,
        typer.Option(
            metavar="LEVEL",
            help="Also fetch, verify and decode: header (default), timestamp (+ spec_version), "
            "events, or full (events and extrinsics, checked against extrinsics_root).",
            show_default=False,
        ),
    ] = None,
    events: Annotated[
        str | None,
        typer.Option(
            metavar="PALLET.NAME,...",
            help="Only these events (e.g. SubtensorModule.WeightsSet,Balances.Transfer; a "
            "bare pallet name keeps all of its events). Implies --contents events.",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            metavar="LEVEL",
            help="debug, info (default), warning or error; overrides --quiet. At debug the "
            "WebSocket and HTTP libraries log too. Secrets are masked at every level.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print every finalized block, in order, exactly once, with no gaps.

    Socket deaths, node restarts and finality halts are survived (HTTP polling takes over and
    hands back); mode changes are logged on stderr. Ctrl-C stops cleanly (exit 0).

    \b
    Examples:
      blockfeed watch
      blockfeed watch ws://127.0.0.1:9944 --json --count 10
      blockfeed watch --network test --state watch.sqlite --json | jq .number
      blockfeed watch --contents full --json | jq '.events[] | .pallet + "." + .name'
      blockfeed watch --events SubtensorModule.WeightsSet
    """
    # Imported here so `blockfeed --help` stays fast and serve's module is not a hard dependency.
    import logging

    from blockfeed.cli.serve import LOG_LEVELS, configure_logging

    if log_level is not None and log_level.lower() not in LOG_LEVELS:
        raise fail(
            "watch", f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}",
            EXIT_BAD_INPUT,
        )
    try:
        level, wanted = contents_options(contents, events)
        options = WatchOptions(
            endpoints=resolve_endpoints(endpoints, network),
            json_lines=json_lines,
            count=count,
            start_at=from_block,
            state=state,
            block_time_s=block_time,
            epoch_length=epoch_length,
            startup_timeout_s=startup_timeout,
            on_divergence=str(on_divergence),
            contents=level,
            events=wanted,
        )
    except ConfigError as exc:
        raise fail("watch", str(exc), EXIT_BAD_INPUT) from None
    log_at = log_level.upper() if log_level is not None else ("WARNING" if quiet else "INFO")
    configure_logging(str(log_format), log_at)
    if log_at != "DEBUG":
        for chatty in ("httpx", "httpcore", "websockets"):  # one line per request is noise
            logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        code = asyncio.run(_watch(options, sys.stdout))
    except ChainDiverged as exc:
        typer.echo(str(exc), err=True)  # one line, starting "CHAIN DIVERGED"
        raise typer.Exit(EXIT_DIVERGED) from None
    except WatchFailed as exc:
        raise fail("watch", str(exc), exc.code) from None
    except BlockfeedError as exc:
        raise fail_on("watch", exc) from None
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``blockfeed watch`` to the CLI."""
    app.command("watch")(watch)
