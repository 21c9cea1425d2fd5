"""``blockfeed consume``: print the blocks a Redis or NATS stream holds, in order, once; follow.

The reading side of ``RedisPublisher``: any machine with Redis access gets the same lines as
``blockfeed watch`` (``--json``: the same JSON objects), without talking to a node. Blocks go to
stdout, logs (reconnects, gaps) to stderr. In group mode (``--group``/``--consumer``) each block
is acknowledged right after its line is written, so a restarted consumer gets back only what it
had not printed. ``blockfeed consume nats://host:4222`` reads the JetStream stream the NATS sink
writes (``BLOCKFEED``), in number order, with the same checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass
from typing import Annotated, TextIO

import typer
from redis.exceptions import RedisError

from blockfeed import defaults
from blockfeed.cli._output import BlockPrinter, fail
from blockfeed.cli._signals import install_stop_signals
from blockfeed.errors import BlockfeedError, ConfigError
from blockfeed.sinks._redis_base import describe_error
from blockfeed.sinks.nats import DEFAULT_STREAM as NATS_STREAM
from blockfeed.sinks.nats import NatsError, redact_servers, split_servers
from blockfeed.sinks.redis import DEFAULT_STREAM, RedisUnavailable, StreamGap
from blockfeed.sinks.redis_consumer import DEFAULT_READ_COUNT, FROM_FIRST, StreamConsumer

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
DEFAULT_EPOCH_LENGTH = defaults.EPOCH_LENGTH
GROUP_READ_COUNT = 10
"""Blocks a group reader takes at once: they are its own until acknowledged (or it restarts)."""
REDIS_URL_ENV_VAR = "BLOCKFEED_REDIS_URL"


class ConsumeFailed(Exception):
    """Stop with a clear message and a non-zero exit code (no traceback)."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ConsumeOptions:
    url: str
    stream: str
    json_lines: bool
    from_block: int | None
    count: int | None
    group: str | None
    consumer: str | None
    allow_gaps: bool
    epoch_length: int


def make_consumer(options: ConsumeOptions) -> StreamConsumer:
    """The StreamConsumer for these options (``--from N`` means "after block N - 1")."""
    if options.from_block is None:
        after = None
    elif options.from_block == 0:
        after = FROM_FIRST
    else:
        after = options.from_block - 1
    return StreamConsumer(
        options.url,
        options.stream,
        after=after,
        group=options.group,
        consumer=options.consumer,
        auto_ack=False,  # acknowledged here, once the line is written
        allow_gaps=options.allow_gaps,
        read_count=_read_count(options),
    )


def _read_count(options: ConsumeOptions) -> int:
    """Never fetch more than --count; in a group, fetch little (fetched blocks are held)."""
    limit = DEFAULT_READ_COUNT if options.group is None else GROUP_READ_COUNT
    return min(limit, options.count) if options.count is not None else limit


async def _consume_nats(options: ConsumeOptions, out: TextIO) -> int:
    """Print blocks from a JetStream stream until --count, a stop signal, or an error."""
    from blockfeed.sinks.nats import NatsConsumer

    if options.from_block is None:
        after = None
    else:
        after = FROM_FIRST if options.from_block == 0 else options.from_block - 1
    reader = NatsConsumer(options.url, stream=options.stream, after=after,
                          allow_gaps=options.allow_gaps)  # fmt: skip
    printer = BlockPrinter(out, json_lines=options.json_lines, epoch_length=options.epoch_length)
    stop = asyncio.Event()
    printed = 0

    async def print_blocks() -> None:
        nonlocal printed
        async for block in reader:
            if not printer.write(block):
                return
            printed += 1
            if options.count is not None and printed >= options.count:
                return

    install_stop_signals(stop)
    task = asyncio.create_task(print_blocks(), name="blockfeed-consume-nats")
    stopper = asyncio.create_task(stop.wait(), name="blockfeed-consume-stop")
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
    finally:
        task.cancel()
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if stop.is_set():
        typer.echo(f"blockfeed consume: stopped after {printed} block(s)", err=True)
    return EXIT_OK


async def _consume(options: ConsumeOptions, out: TextIO) -> int:
    printer = BlockPrinter(out, json_lines=options.json_lines, epoch_length=options.epoch_length)
    stop = asyncio.Event()
    printed = 0

    async def print_blocks(blocks: StreamConsumer) -> None:
        nonlocal printed
        async for block in blocks:
            if not printer.write(block):
                return
            printed += 1
            if options.group is not None:
                await blocks.ack(block)
            if options.count is not None and printed >= options.count:
                return

    install_stop_signals(stop)
    async with make_consumer(options) as blocks:
        reader = asyncio.create_task(print_blocks(blocks), name="blockfeed-consume")
        stopper = asyncio.create_task(stop.wait(), name="blockfeed-consume-stop")
        try:
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                reader.result()  # re-raise errors from the stream
        finally:
            reader.cancel()
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    if stop.is_set():
        typer.echo(f"blockfeed consume: stopped after {printed} block(s)", err=True)
    return EXIT_OK


def consume(
    url: Annotated[
        str | None,
        typer.Argument(
            metavar="[URL]",
            help="nats://host:4222 (JetStream) or redis://... to read from (or use --redis).",
            show_default=False,
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis",
            metavar="URL",
            envvar=REDIS_URL_ENV_VAR,
            help="Redis URL, e.g. redis://:password@host:6379/0 (never printed unredacted).",
            show_default=False,
        ),
    ] = None,
    stream: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="The stream to read: Redis key (default blockfeed:finalized) or JetStream "
            "stream (default BLOCKFEED).",
            show_default=False,
        ),
    ] = None,
    json_lines: Annotated[
        bool,
        typer.Option(
            "--json",
            help="One JSON object per block, the same as `blockfeed watch --json`.",
        ),
    ] = False,
    from_block: Annotated[
        int | None,
        typer.Option(
            "--from",
            min=0,
            metavar="N",
            help="Start at block N (0: the oldest block the stream holds). Default: the newest "
            "block in the stream. A new --group starts here; an existing one where it was.",
            show_default=False,
        ),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Exit 0 after N blocks.", show_default=False),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            metavar="G",
            help="Consumer group: readers of one group share the blocks (needs --consumer).",
            show_default=False,
        ),
    ] = None,
    consumer: Annotated[
        str | None,
        typer.Option(
            metavar="C",
            help="This reader's name in --group; restarting with the same name first gets "
            "back the blocks it had not acknowledged.",
            show_default=False,
        ),
    ] = None,
    allow_gaps: Annotated[
        bool,
        typer.Option(
            "--allow-gaps",
            help="Warn and go on when blocks are missing from the stream (trimmed, or never "
            "published) instead of exiting 1.",
        ),
    ] = False,
    epoch_length: Annotated[
        int, typer.Option(min=1, metavar="N", help="Blocks per epoch (epoch, block_in_epoch).")
    ] = DEFAULT_EPOCH_LENGTH,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")
    ] = False,
) -> None:
    """Print the blocks of a Redis stream written by blockfeed: in order, each once.

    Checks every block against the one before (number, parent hash) and its header against its
    hash; a gap stops with exit 1 unless --allow-gaps. Redis restarts are ridden out (resuming
    after the last printed block); an unreachable Redis at start is exit 1.

    \b
    Examples:
      blockfeed consume --redis redis://localhost:6379/0 --json --count 10
      blockfeed consume --redis redis://localhost:6379/0 --from 6940000
      blockfeed consume --redis redis://cache:6379/0 --group indexers --consumer worker-1
      blockfeed consume nats://127.0.0.1:4222 --from 6940000
    """
    import logging

    from blockfeed.cli.serve import configure_logging

    target = url or redis_url
    if target is None:
        raise fail("consume", "give a URL (nats://... or redis://...) or --redis", EXIT_BAD_INPUT)
    is_nats = target.split("://", 1)[0] in ("nats", "tls")
    if is_nats and group is not None:
        raise fail("consume", "--group is for Redis streams only", EXIT_BAD_INPUT)
    if (group is None) != (consumer is None):
        raise fail(
            "consume", "--group and --consumer go together: give both or neither", EXIT_BAD_INPUT
        )
    options = ConsumeOptions(
        url=target,
        stream=stream or (NATS_STREAM if is_nats else DEFAULT_STREAM),
        json_lines=json_lines,
        from_block=from_block,
        count=count,
        group=group,
        consumer=consumer,
        allow_gaps=allow_gaps,
        epoch_length=epoch_length,
    )
    try:
        if is_nats:
            split_servers(options.url)
        else:
            make_consumer(options)  # validates the URL and names before anything starts
    except ConfigError as exc:
        raise fail("consume", str(exc), EXIT_BAD_INPUT) from None
    configure_logging("text", logging.WARNING if quiet else logging.INFO)
    run = _consume_nats if is_nats else _consume
    try:
        code = asyncio.run(run(options, sys.stdout))
    except ConfigError as exc:
        raise fail("consume", str(exc), EXIT_BAD_INPUT) from None
    except StreamGap as exc:
        raise fail("consume", f"{exc} (--allow-gaps)", EXIT_FAILED) from None
    except (RedisUnavailable, BlockfeedError) as exc:
        raise fail("consume", str(exc), EXIT_FAILED) from None
    except RedisError as exc:
        message = f"Redis failed: {describe_error(exc, target)}"
        raise fail("consume", message, EXIT_FAILED) from None
    except (OSError, TimeoutError, NatsError) as exc:
        detail = str(exc).replace(target, redact_servers(target)) or "no detail"
        message = f"cannot read {redact_servers(target)}: {type(exc).__name__}: {detail}"
        raise fail("consume", message, EXIT_FAILED) from None
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``blockfeed consume`` to the CLI."""
    app.command("consume")(consume)
