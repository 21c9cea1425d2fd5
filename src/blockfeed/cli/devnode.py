"""``blockfeed devnode``: run the fake Substrate node with its fault injector."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from blockfeed.cli._output import fail
from blockfeed.devnode.config import (
    DEFAULT_BLOCK_TIME_S,
    DEFAULT_FINALITY_JUMPS,
    DEFAULT_FINALITY_LAG,
    DEFAULT_SEED,
    DEFAULT_START_BLOCK,
    DEFAULT_TEMPOS,
    MIN_BLOCK_TIME_S,
    MIN_SLOT_DURATION_S,
    DevNodeConfig,
    parse_tempo_flag,
)
from blockfeed.devnode.control import DEFAULT_CONTROL_HOST, ControlServer
from blockfeed.devnode.faults import FAULT_SPECS
from blockfeed.devnode.node import DevNode
from blockfeed.devnode.scenario import (
    ScenarioError,
    ScenarioStep,
    load_scenario,
    resolve_scenario_path,
)
from blockfeed.errors import ConfigError
from blockfeed.util.logmask import install_log_redaction, redacting_handler

CLI_DEFAULT_PORT = 9944
LOG_LEVELS = ("debug", "info", "warning", "error")
EXIT_BAD_INPUT = 2
EXIT_CANNOT_LISTEN = 1


def _faults_epilog() -> str:
    """Every fault kind and option, one per line (``\\b`` keeps click from re-wrapping)."""
    lines = [
        "\b",
        'FAULTS (inject with --control-port: POST /faults {"kind": ..., "seconds": ...,',
        "option: value}; or list them in a --scenario file):",
    ]
    for spec in FAULT_SPECS.values():
        lines.append(f"  {spec.kind} ({spec.fault_class}): {spec.summary}.")
        lines.extend(f"      {option.describe()}" for option in spec.options)
    lines += [
        "",
        "SCENARIO FILE: a JSON list of steps, e.g.",
        '  [{"at": 10, "kind": "sub_stall", "seconds": 10},',
        '   {"at": 28, "kind": "restart", "seconds": 8, "note": "node restart"}]',
        "  'at' = seconds from start; other keys are the fault's options. '--scenario demo'",
        "  plays the bundled blockfeed/devnode/scenarios/demo.json (silent socket, restart,",
        "  finality halt; about a minute).",
    ]
    return "\n".join(lines)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    return fail("devnode", message, code)


def devnode(
    host: Annotated[
        str, typer.Option(help="Interface to listen on (WebSocket and HTTP share one port).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="RPC port (0 = any free port).")
    ] = CLI_DEFAULT_PORT,
    block_time: Annotated[
        float,
        typer.Option(
            "--block-time",
            metavar="SECONDS",
            min=MIN_BLOCK_TIME_S,
            help=f"Seconds between blocks (>= {MIN_BLOCK_TIME_S}; finney: 12).",
        ),
    ] = DEFAULT_BLOCK_TIME_S,
    slot_duration: Annotated[
        float | None,
        typer.Option(
            "--slot-duration",
            metavar="SECONDS",
            min=MIN_SLOT_DURATION_S,
            help="Slot the runtime declares (AuraApi_slot_duration, whole ms); default: the "
            "block time. Set it apart to model a runtime whose slot is not the real pace.",
        ),
    ] = None,
    finality_lag: Annotated[
        int,
        typer.Option(
            min=0, max=10_000, metavar="N", help="Finalized head trails best by N blocks."
        ),
    ] = DEFAULT_FINALITY_LAG,
    finality_jumps: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            metavar="P",
            help="Probability that a finality step finalizes 2-4 blocks at once (GRANDPA).",
        ),
    ] = DEFAULT_FINALITY_JUMPS,
    start_block: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="First real block number (lower ones, except genesis 0, are virtual: null).",
        ),
    ] = DEFAULT_START_BLOCK,
    seed: Annotated[
        int, typer.Option(help="Seed for hashes, finality jumps and fault randomness.")
    ] = DEFAULT_SEED,
    tempo: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NETUID=TEMPO",
            help="Subnet tempo, repeatable (default 1=360); drives the epoch runtime API "
            "and Tempo storage.",
        ),
    ] = None,
    runtime_api: Annotated[
        bool,
        typer.Option(
            help="Serve SubnetInfoRuntimeApi_get_next_epoch_start_block (--no-runtime-api: "
            "state_call fails like an older runtime)."
        ),
    ] = True,
    control_port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help="Port of the control HTTP API (/faults, /status); off if unset."
        ),
    ] = None,
    control_host: Annotated[
        str,
        typer.Option(
            help="Interface of the control API. It has no authentication: keep it on loopback "
            "unless the network is trusted.",
        ),
    ] = DEFAULT_CONTROL_HOST,
    scenario: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="JSON scenario of timed faults (validated at start); 'demo' = the bundled one.",
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option(metavar="LEVEL", help=f"One of {', '.join(LOG_LEVELS)}.")
    ] = "info",
) -> None:
    """Run a fake Substrate JSON-RPC node (WebSocket + HTTP on one port) with a fault injector.

    It grows a realistic chain (real header hashes, GRANDPA-like finality) and misbehaves on
    demand the way real nodes and networks do, for testing blockfeed or your own code.
    """
    if log_level.lower() not in LOG_LEVELS:
        raise _fail(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    try:
        tempos = dict(parse_tempo_flag(text) for text in tempo) if tempo else DEFAULT_TEMPOS
        config = DevNodeConfig(
            host=host,
            port=port,
            block_time_s=block_time,
            slot_duration_s=slot_duration,
            finality_lag=finality_lag,
            finality_jumps=finality_jumps,
            start_block=start_block,
            seed=seed,
            runtime_api=runtime_api,
            tempos=tempos,
        )
        steps = load_scenario(resolve_scenario_path(scenario)) if scenario is not None else []
    except (ConfigError, ScenarioError) as exc:
        raise _fail(str(exc)) from None
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:  # clients' request paths may hold their keys
        redacting_handler(handler)
    install_log_redaction()
    try:
        asyncio.run(_serve(config, control_port, steps, control_host))
    except (KeyboardInterrupt, asyncio.CancelledError):
        typer.echo("blockfeed devnode: stopped")
    except OSError as exc:
        raise _fail(f"cannot listen on {host}: {exc.strerror or exc}", EXIT_CANNOT_LISTEN) from None


async def _serve(
    config: DevNodeConfig,
    control_port: int | None,
    steps: list[ScenarioStep],
    control_host: str = DEFAULT_CONTROL_HOST,
) -> None:
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if main_task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    async with contextlib.AsyncExitStack() as stack:
        node = await stack.enter_async_context(DevNode(config))
        parts = [f"ws {node.ws_url}", f"http {node.http_url}"]
        if control_port is not None:
            control = ControlServer(node, host=control_host, port=control_port)
            await stack.enter_async_context(control)
            parts.append(f"control {control.url}/faults")
        if steps:
            node.run_scenario(steps)
            parts.append(f"scenario {len(steps)} steps")
        if config.slot_duration_s is not None:
            parts.append(f"declared slot {config.slot_duration_ms} ms")
        typer.echo(
            f"blockfeed devnode: {' | '.join(parts)} | block {config.block_time_s:g}s, "
            f"finality lag {config.finality_lag}, start #{config.start_block} (Ctrl-C to stop)"
        )
        await asyncio.Event().wait()


def register(app: typer.Typer) -> None:
    """Add the ``devnode`` command to the ``blockfeed`` app."""
    app.command(name="devnode", epilog=_faults_epilog())(devnode)
