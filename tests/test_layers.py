"""The parts of blockfeed import only downward: the table docs/internals.md draws, enforced.

Every ``import blockfeed.X`` / ``from blockfeed.X import ...`` anywhere in a module (function
bodies included) must name a part that the importing part may use. A new edge is a design
decision: add it here and to the diagram in docs/internals.md in the same change.
"""

from __future__ import annotations

import ast
from pathlib import Path

import blockfeed

SRC = Path(blockfeed.__file__).parent
PARTS = {path.name.removesuffix(".py") for path in SRC.iterdir()}

LEAVES = {"types", "errors", "defaults", "events", "util", "codec"}
"""Plain data, the exception tree, constants and pure helpers: usable from anywhere."""

ALLOWED: dict[str, set[str]] = {
    "defaults": set(),
    "errors": {"events"},  # ChainDiverged carries its event
    "util": {"errors"},
    "events": {"types", "defaults"},
    "types": {"events", "contents", "defaults"},  # contents: one lazy import to render JSON
    "codec": {"errors", "types"},
    "core": LEAVES,
    "rpc": LEAVES,
    "contents": LEAVES | {"rpc"},
    "store": LEAVES | {"contents"},
    "devnode": LEAVES,
    "feed": LEAVES | {"core", "rpc", "store", "contents"},
    "epochs": LEAVES | {"core", "rpc", "store", "feed"},
    "sinks": LEAVES | {"core", "store", "contents", "feed"},
    "redis": {"sinks"},
    "compat": LEAVES | {"feed", "rpc"},
    "testing": LEAVES | {"core", "rpc", "feed", "devnode", "store"},
    "config": LEAVES | {"feed", "store", "sinks"},
    "gateway": LEAVES | {"config", "feed", "store", "sinks", "contents", "epochs", "core"},
    "ops": LEAVES | {"gateway", "config"},
    "cli": LEAVES | {"config", "feed", "store", "sinks", "contents", "epochs", "gateway", "ops",
                     "devnode", "core", "rpc", "compat"},
    "__main__": {"cli"},
    "__init__": LEAVES | {"feed", "store", "epochs", "core", "rpc", "sinks"},
}


def _part(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0].removesuffix(".py")


def _imported_parts(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "blockfeed" and node.level == 0:
            # ``from blockfeed import defaults`` imports that part; ``import Block`` the package.
            names = [f"blockfeed.{a.name}" if a.name in PARTS else "blockfeed" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            if name == "blockfeed":
                found.add("__init__")
            elif name.startswith("blockfeed."):
                found.add(name.split(".")[1])
    return found


def test_every_import_follows_the_layer_table() -> None:
    """No module imports a part its own part may not use (e.g. core never imports feed)."""
    wrong: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        part = _part(path)
        assert part in ALLOWED, f"{path.relative_to(SRC)}: new part {part!r} is not in the table"
        for target in _imported_parts(ast.parse(path.read_text(), str(path))) - {part}:
            if target not in ALLOWED[part]:
                wrong.append(f"{path.relative_to(SRC)} imports blockfeed.{target}")
    assert not wrong, "imports against the layer table:\n" + "\n".join(wrong)

