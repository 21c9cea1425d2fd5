"""Imports in the core run one way: no I/O layers, and the follower's parts never import it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import blockfeed.core

CORE = Path(blockfeed.core.__file__).parent
UPPER_LAYERS = ("blockfeed.feed", "blockfeed.gateway", "blockfeed.cli", "blockfeed.rpc",
                "blockfeed.store", "blockfeed.sinks", "blockfeed.devnode")
IO_MODULES = ("asyncio", "socket", "time", "httpx", "websockets", "sqlite3")


def imported(path: Path) -> set[str]:
    """Every module name ``path`` imports (absolute names)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_imports_no_io_and_no_upper_layer(path: Path) -> None:
    """No core module imports the feed, gateway, CLI, rpc, store, sinks, devnode or I/O."""
    bad = {name for name in imported(path)
           if name.startswith(UPPER_LAYERS) or name.split(".")[0] in IO_MODULES}
    assert bad == set()


@pytest.mark.parametrize("name", ["poller.py", "verify.py"])
def test_follower_parts_do_not_import_the_follower(name: str) -> None:
    """The poller and the verifier stand alone: they never import the follower."""
    assert "blockfeed.core.follower" not in imported(CORE / name)
