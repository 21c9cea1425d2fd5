"""Scenario files: a timed list of faults, validated up front, played against a running node.

Format (JSON)::

    [
      {"at": 10, "kind": "sub_stall", "seconds": 10, "note": "silent socket"},
      {"at": 28, "kind": "restart", "seconds": 8},
      {"at": 45, "kind": "finality_halt", "seconds": 12}
    ]

``at`` is seconds from the start of the scenario; every other key except ``note`` is a fault
option. Any mistake in any step is reported before anything runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blockfeed.devnode.faults import FaultInjector, InvalidFault, validate_fault
from blockfeed.errors import ConfigError

RESERVED_KEYS = ("at", "kind", "seconds", "note")
MAX_SCENARIO_BYTES = 1024 * 1024
MAX_SCENARIO_STEPS = 10_000

_log = logging.getLogger("blockfeed.devnode")


class ScenarioError(ConfigError):
    """A scenario file cannot be used; the message says which step and why."""


@dataclass(frozen=True, slots=True)
class ScenarioStep:
    """One fault to inject ``at_s`` seconds after the scenario starts."""

    at_s: float
    kind: str
    seconds: float
    options: Mapping[str, Any]
    note: str | None = None


def parse_scenario(data: Any, *, source: str = "scenario") -> list[ScenarioStep]:
    """Validate decoded JSON into steps sorted by time; ``ScenarioError`` on the first problem."""
    if not isinstance(data, list):
        raise ScenarioError(
            f"{source}: expected a JSON list of steps like "
            '[{"at": 5, "kind": "restart", "seconds": 3}]'
        )
    if len(data) > MAX_SCENARIO_STEPS:
        raise ScenarioError(f"{source}: too many steps (max {MAX_SCENARIO_STEPS})")
    steps: list[ScenarioStep] = []
    for index, item in enumerate(data, start=1):
        where = f"{source}: step {index}"
        if not isinstance(item, dict):
            raise ScenarioError(f"{where}: expected an object with at, kind, seconds")
        at = item.get("at")
        if (
            isinstance(at, bool)
            or not isinstance(at, int | float)
            or not math.isfinite(at)
            or at < 0
        ):
            raise ScenarioError(f"{where}: 'at' must be a number of seconds >= 0, got {at!r}")
        if "kind" not in item:
            raise ScenarioError(f"{where}: missing 'kind'")
        note = item.get("note")
        if note is not None and not isinstance(note, str):
            raise ScenarioError(f"{where}: 'note' must be a string")
        options = {key: value for key, value in item.items() if key not in RESERVED_KEYS}
        try:
            spec, seconds, _ = validate_fault(item["kind"], item.get("seconds"), options)
        except InvalidFault as exc:
            raise ScenarioError(f"{where}: {exc}") from None
        steps.append(
            ScenarioStep(
                at_s=float(at), kind=spec.kind, seconds=seconds, options=options, note=note
            )
        )
    return sorted(steps, key=lambda step: step.at_s)


def load_scenario(path: str | Path) -> list[ScenarioStep]:
    """Read and validate a scenario file; ``ScenarioError`` for unreadable or invalid files."""
    file = Path(path)
    try:
        if file.stat().st_size > MAX_SCENARIO_BYTES:
            raise ScenarioError(f"{file}: larger than {MAX_SCENARIO_BYTES} bytes")
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{file}: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(
            f"{file}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    return parse_scenario(data, source=str(file))


BUNDLED_SCENARIOS_DIR = Path(__file__).parent / "scenarios"


def resolve_scenario_path(name_or_path: str | Path) -> Path:
    """A path as given, or a bundled scenario by name (``"demo"`` -> ``scenarios/demo.json``)."""
    path = Path(name_or_path)
    if not path.exists() and path.parent == Path(".") and path.suffix in ("", ".json"):
        bundled = BUNDLED_SCENARIOS_DIR / f"{path.stem}.json"
        if bundled.is_file():
            return bundled
    return path


def scenario_duration_s(steps: Sequence[ScenarioStep]) -> float:
    """When the last fault of the scenario ends."""
    return max((step.at_s + step.seconds for step in steps), default=0.0)


async def play_scenario(faults: FaultInjector, steps: Sequence[ScenarioStep]) -> None:
    """Inject each step at its time (relative to now); a bad step is logged, never fatal."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    for step in sorted(steps, key=lambda s: s.at_s):
        await asyncio.sleep(max(0.0, started + step.at_s - loop.time()))
        try:
            fault = faults.inject(step.kind, seconds=step.seconds, **step.options)
        except InvalidFault as exc:  # validated already; only if the spec changed under us
            _log.error("devnode scenario: skipping step at %gs: %s", step.at_s, exc)
            continue
        _log.info(
            "devnode scenario t=%gs: %s %s for %gs%s",
            step.at_s,
            fault.id,
            step.kind,
            step.seconds,
            f" ({step.note})" if step.note else "",
        )
