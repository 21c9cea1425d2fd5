"""What the commands share: the block line (watch, consume) and clean errors (all of them)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import TextIO

import typer

from blockfeed.errors import BlockfeedError, ConfigError
from blockfeed.feed.logs import FeedLog, emoji_wanted
from blockfeed.types import Block

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class BlockPrinter:
    """One line per block on ``out``: ``--json`` objects or the familiar text line.

    A closed pipe (``| head``) is noticed instead of crashing: :meth:`write` returns False.
    """

    def __init__(self, out: TextIO, *, json_lines: bool, epoch_length: int) -> None:
        self._out = out
        self._json = json_lines
        self._epoch_length = epoch_length
        self._text = FeedLog(epoch_length=epoch_length, emoji=emoji_wanted(out))

    def write(self, block: Block) -> bool:
        """Print ``block``; False when stdout is gone."""
        if self._json:
            line = json.dumps(block.to_dict(epoch_length=self._epoch_length), separators=(",", ":"))
        else:
            line = self._text.block_line(block)
        try:
            self._out.write(line + "\n")
            self._out.flush()
        except BrokenPipeError:
            _silence_stdout()
            return False
        return True


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def fail(command: str, message: str, code: int) -> typer.Exit:
    """Print ``blockfeed <command>: <message>`` on stderr; raise the result to exit ``code``."""
    typer.echo(f"blockfeed {command}: {message}", err=True)
    return typer.Exit(code)


def fail_on(command: str, exc: BlockfeedError) -> typer.Exit:
    """How ``watch`` and ``serve`` stop on a blockfeed error: one line, no traceback.

    Exit 2 for bad input (:class:`ConfigError`); 1 for everything else, such as a state file
    that belongs to another chain (the genesis mismatch) or an unreadable store.
    """
    return fail(command, str(exc), EXIT_BAD_INPUT if isinstance(exc, ConfigError) else EXIT_FAILED)
