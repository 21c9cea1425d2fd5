"""The ``blockfeed`` command: one Typer app, one module per subcommand.

Each module in ``_COMMANDS`` defines ``register(app)``; keeping them apart keeps each command's
flags, help text and wiring in one short file.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="blockfeed",
    help=(
        "An unbreakable feed of finalized block headers for Substrate chains (Bittensor first).\n\n"
        "Every finalized block, exactly once, in order, no gaps, through socket deaths, node "
        "restarts, finality halts and lying endpoints."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COMMANDS: tuple[str, ...] = ("devnode", "serve", "demo", "watch", "consume")

for _name in _COMMANDS:
    importlib.import_module(f"blockfeed.cli.{_name}").register(app)


def main() -> None:
    """Console-script entry point. A second Ctrl-C (the first stops cleanly) exits 130 quietly."""
    try:
        app()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
