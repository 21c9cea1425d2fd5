"""The docs: nothing points outside the repository, the README opens with the two commands, every
page in the nav exists, and the generated CLI reference covers every command."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from typer.testing import CliRunner

from blockfeed.cli import _COMMANDS, app, package_version

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def test_docs_never_point_outside_the_repository() -> None:
    """No page mentions ../shared, DESIGN.md or an absolute path on a developer machine."""
    for path in doc_files():
        text = path.read_text()
        for bad in ("../shared", "DESIGN.md", "/work/"):
            assert bad not in text, f"{path.relative_to(ROOT)} mentions {bad}"


def test_readme_opens_with_make_demo_then_make_test() -> None:
    """The first block of the README is exactly `make demo` then `make test`."""
    text = (ROOT / "README.md").read_text()
    first = re.search(r"```\n(.*?)```", text, re.S)
    assert first is not None
    assert first.group(1).split() == ["make", "demo", "make", "test"]
    assert text.index("```") < text.index("##")


def test_relative_links_in_readme_and_docs_resolve() -> None:
    """Every relative Markdown link in the README and docs/ names a file that exists."""
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    for path in doc_files():
        for target in link.findall(path.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (path.parent / target).exists(), f"{path.relative_to(ROOT)} -> {target}"


def test_every_nav_page_exists() -> None:
    """Each page mkdocs.yml lists is in docs/ (mkdocs --strict checks the rest in CI)."""
    pages = re.findall(r":\s+([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert len(pages) >= 15
    for page in pages:
        assert (DOCS / page).exists(), page


def test_cli_reference_covers_every_command() -> None:
    """The mkdocs hook renders a section with real --help text for every subcommand."""
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts/mkdocs_hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    sys.modules["mkdocs_hooks"] = hooks
    spec.loader.exec_module(hooks)
    page = (DOCS / "reference" / "cli.md").read_text()
    rendered = hooks.on_page_markdown(page, page=None)
    assert hooks.MARKER not in rendered
    for name in _COMMANDS:
        assert f"## blockfeed {name}" in rendered
        assert f"Usage: blockfeed {name}" in rendered


def test_version_flag() -> None:
    """`blockfeed --version` prints the installed version and exits 0."""
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"blockfeed {package_version()}"
    assert package_version() != "unknown"
