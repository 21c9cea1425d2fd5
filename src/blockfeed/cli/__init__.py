"""The ``blockfeed`` command: one Typer app, one module per subcommand.

Each module in ``_COMMANDS`` defines ``register(app)``; keeping them apart keeps each command's
flags, help text and wiring in one short file.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Annotated

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


def package_version() -> str:
    """The installed distribution's version ("unknown" when run from a tree never installed)."""
    try:
        return importlib.metadata.version("blockfeed")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"blockfeed {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """An unbreakable feed of finalized block headers for Substrate chains (Bittensor first)."""


def main() -> None:
    """Console-script entry point. A second Ctrl-C (the first stops cleanly) exits 130 quietly."""
    try:
        app()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
