"""MkDocs hook: the CLI reference page is generated from each command's ``--help``.

``docs/reference/cli.md`` holds the marker ``<!-- cli-reference -->``; at build time it becomes
one section per command with its help text, so the page can never drift from the code.
"""

from __future__ import annotations

import os
from typing import Any

MARKER = "<!-- cli-reference -->"
HELP_WIDTH = 100


def command_help(args: list[str]) -> str:
    """``blockfeed ARGS --help`` as plain text (no colour, fixed width)."""
    from typer.testing import CliRunner

    from blockfeed.cli import app

    env = {"NO_COLOR": "1", "COLUMNS": str(HELP_WIDTH), "TERM": "dumb"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # rich reads the width from the process environment
    try:
        result = CliRunner().invoke(app, [*args, "--help"], env=env, terminal_width=HELP_WIDTH)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if result.exit_code != 0:
        raise RuntimeError(f"blockfeed {' '.join(args)} --help failed: {result.output}")
    return "\n".join(line.rstrip() for line in result.output.strip("\n").splitlines())


def cli_reference_markdown() -> str:
    """The generated part of the page: the top-level help, then one section per command."""
    from blockfeed.cli import _COMMANDS

    parts = ["## blockfeed", "", "```text", command_help([]), "```", ""]
    for name in _COMMANDS:
        parts += [f"## blockfeed {name}", "", "```text", command_help([name]), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace the marker on the CLI reference page with the generated sections."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference_markdown())


def on_page_content(html: str, page: Any, **_: Any) -> str:
    """Docstrings mark code blocks the reStructuredText way (``Example::``); in the rendered API
    reference the block is already code, so drop the stray ``::`` (keep one colon)."""
    return html.replace("<p>::</p>", "").replace("::</p>", ":</p>")
