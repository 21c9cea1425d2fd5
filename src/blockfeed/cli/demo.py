"""``blockfeed demo``: a misbehaving fake chain, the feed riding through it, and the dashboard.

Everything runs in this process: a devnode playing ``devnode/scenarios/demo.json`` (a silent
socket, a node restart, a finality halt, over and over), a :class:`BlockFeed` with a SQLite store
in a temporary directory, and the gateway with its dashboard. The terminal shows the log lines
operators know (blocks, mode changes with their reasons); the browser shows the same live.

The scenario is written for 1 s blocks; with ``--block-time`` it is scaled so each fault lasts
the same number of blocks, which keeps the story intact at any speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from blockfeed import defaults
from blockfeed.cli._signals import install_stop_signals
from blockfeed.errors import ConfigError, StoreError
from blockfeed.feed.logs import emoji_wanted

DEFAULT_PORT = 8000
DEFAULT_BLOCK_TIME_S = 1.0
SCENARIO_BLOCK_TIME_S = 1.0
"""demo.json's times are seconds at 1 s blocks."""
QUIET_BLOCKS_BETWEEN_RUNS = 15
EPOCH_LENGTH = defaults.EPOCH_LENGTH
MIN_BLOCK_TIME_S = 0.05
SEED = 7
EXIT_BAD_INPUT = 2
EXIT_CANNOT_START = 1


class Printer:
    """The demo's own lines (faults, URLs); emoji only on a terminal without ``NO_COLOR``.

    Block and mode lines come from the feed's own log (``blockfeed.feed.logs``), the lines
    operators already know; the demo only routes that logger to stdout.
    """

    def __init__(self, *, fancy: bool) -> None:
        self.fancy = fancy

    def line(self, emoji: str, text: str) -> None:
        prefix = f"{emoji} " if self.fancy and emoji else ""
        print(prefix + text, flush=True)


def _route_feed_log_to_stdout() -> None:
    """The feed's block and mode lines on stdout as bare messages; everything else on stderr."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    feed_log = logging.getLogger("blockfeed")
    feed_log.handlers[:] = [handler]
    feed_log.setLevel(logging.INFO)
    feed_log.propagate = False
    logging.getLogger("blockfeed.devnode").setLevel(logging.WARNING)  # the demo narrates faults


def _fancy_output() -> bool:
    return emoji_wanted(sys.stdout)


def _load_steps(block_time_s: float) -> list[Any]:
    """The shipped demo scenario, rescaled to ``block_time_s``."""
    from blockfeed.devnode import parse_scenario

    raw = resources.files("blockfeed.devnode").joinpath("scenarios/demo.json").read_text("utf-8")
    scale = block_time_s / SCENARIO_BLOCK_TIME_S
    steps = []
    for step in json.loads(raw):
        step = dict(step)
        step["at"] = step["at"] * scale
        step["seconds"] = step["seconds"] * scale
        steps.append(step)
    return parse_scenario(steps, source="demo.json")


async def _play_forever(node: Any, steps: list[Any], printer: Printer, period_s: float) -> None:
    """Inject the scenario's faults at their times, then again every ``period_s``."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        for step in steps:
            await asyncio.sleep(max(0.0, started + step.at_s - loop.time()))
            node.faults.inject(step.kind, seconds=step.seconds, **dict(step.options))
            note = f": {step.note}" if step.note else ""
            printer.line("💥", f"devnode fault {step.kind} for {step.seconds:g} s{note}")
        await asyncio.sleep(max(0.0, started + period_s - loop.time()))


def demo(
    duration: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", min=0.1, help="Stop after this many seconds (default: Ctrl-C)."
        ),
    ] = None,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Dashboard port (0 = any free port).")
    ] = DEFAULT_PORT,
    block_time: Annotated[
        float,
        typer.Option(
            "--block-time", metavar="SECONDS", min=MIN_BLOCK_TIME_S,
            help="Seconds between blocks of the fake chain (finney: 12).",
        ),
    ] = DEFAULT_BLOCK_TIME_S,
    host: Annotated[str, typer.Option(help="Address the dashboard listens on.")] = "127.0.0.1",
) -> None:
    """Watch blockfeed ride through a silent socket, a node restart and a finality halt.

    Starts a fake chain (devnode) that misbehaves on a schedule, the feed and the gateway, prints
    every block and mode change, and serves the live dashboard.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _route_feed_log_to_stdout()
    try:
        asyncio.run(_run(duration_s=duration, port=port, block_time_s=block_time, host=host))
    except (ConfigError, StoreError) as exc:
        typer.echo(f"blockfeed demo: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except OSError as exc:
        typer.echo(f"blockfeed demo: cannot listen on {host}:{port}: {exc.strerror or exc}",
                   err=True)
        raise typer.Exit(EXIT_CANNOT_START) from None
    except KeyboardInterrupt:
        pass
    print("blockfeed demo: stopped", flush=True)


async def _run(*, duration_s: float | None, port: int, block_time_s: float, host: str) -> None:
    from blockfeed.devnode import DevNode, DevNodeConfig
    from blockfeed.devnode.scenario import scenario_duration_s
    from blockfeed.feed import BlockFeed, FeedConfig
    from blockfeed.gateway import GatewayOptions, create_app
    from blockfeed.gateway.server import GatewayStartError, running_server, tune_gc_for_fanout
    from blockfeed.store import open_store

    stop = asyncio.Event()
    install_stop_signals(stop)
    tune_gc_for_fanout()
    printer = Printer(fancy=_fancy_output())
    steps = _load_steps(block_time_s)
    period_s = scenario_duration_s(steps) + QUIET_BLOCKS_BETWEEN_RUNS * block_time_s

    with tempfile.TemporaryDirectory(prefix="blockfeed-demo-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            node = await stack.enter_async_context(
                DevNode(DevNodeConfig(block_time_s=block_time_s, seed=SEED))
            )
            store = open_store(str(Path(tmp) / "state.sqlite"))
            stack.callback(store.close)
            config = FeedConfig(block_time_s=block_time_s, epoch_length=EPOCH_LENGTH,
                                emoji=printer.fancy)
            feed = BlockFeed([node.ws_url], config, store=store)
            app = create_app(
                feed=feed,
                store=store,
                options=GatewayOptions(
                    network="devnode",
                    epoch_length=EPOCH_LENGTH,
                    ready_max_block_age_s=max(5.0, 5 * block_time_s),
                ),
            )
            printer.line("🧪", f"devnode (fake chain): {node.ws_url} | block time "
                               f"{block_time_s:g} s | state: {tmp}")
            try:
                server = await stack.enter_async_context(
                    running_server(
                        app, host=host, port=port, before_shutdown=app.state.gateway.hub.close_all
                    )
                )
            except GatewayStartError as exc:
                raise ConfigError(str(exc)) from None
            printer.line("🌐", f"Dashboard: {server.url}/  (API docs {server.url}/docs, "
                               f"metrics {server.url}/metrics)")
            plan = ", ".join(f"{s.kind} at {s.at_s:g} s for {s.seconds:g} s" for s in steps)
            printer.line("🎬", f"Scenario (repeats every {period_s:g} s): {plan}")
            player = asyncio.create_task(_play_forever(node, steps, printer, period_s))
            stack.callback(player.cancel)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration_s):
                    await stop.wait()


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to the ``blockfeed`` app."""
    app.command(name="demo")(demo)
