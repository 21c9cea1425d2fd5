"""The README's "Testing your handlers" example, run exactly as printed (it cannot rot)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import blockfeed.testing
from blockfeed import Block

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    """The first Python block under the README's "Testing your handlers" heading."""
    text = README.read_text()
    section = text.split("## Testing your handlers", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README section lost its example"
    return match.group(1)


def test_the_readme_example_passes_and_calls_the_handler() -> None:
    """The example test, run verbatim, passes and hands its handler 60 consecutive blocks."""
    handled: list[Block] = []
    namespace: dict[str, Any] = {"my_handler": handled.append}
    exec(compile(readme_example(), str(README), "exec"), namespace)
    tests = [value for name, value in namespace.items() if name.startswith("test_")]
    assert len(tests) == 1
    tests[0]()
    numbers = [block.number for block in handled]
    assert numbers == list(range(numbers[0], numbers[0] + 60))


def test_the_example_is_about_ten_lines() -> None:
    """The example stays short enough to read at a glance (imports aside)."""
    body = [line for line in readme_example().splitlines()
            if line.strip() and not line.startswith(("from ", "import "))]
    assert len(body) <= 16


def test_public_names_are_sorted_and_importable() -> None:
    """blockfeed.testing's __all__ is sorted and each name resolves."""
    assert list(blockfeed.testing.__all__) == sorted(blockfeed.testing.__all__)
    for name in blockfeed.testing.__all__:
        assert getattr(blockfeed.testing, name) is not None


def test_the_kit_imports_no_pytest() -> None:
    """Importing blockfeed.testing does not import pytest (users may use unittest)."""
    code = "import sys, blockfeed.testing; print('pytest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "False"
