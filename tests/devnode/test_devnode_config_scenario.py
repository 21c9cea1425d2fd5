"""Config validation and scenario files (parsing, errors, the shipped demo)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blockfeed.devnode import DevNodeConfig, ScenarioError, load_scenario, parse_scenario
from blockfeed.devnode.config import parse_tempo_flag
from blockfeed.devnode.scenario import resolve_scenario_path, scenario_duration_s
from blockfeed.errors import ConfigError

DEMO = Path(__file__).parents[2] / "src" / "blockfeed" / "devnode" / "scenarios" / "demo.json"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"block_time_s": 0.01}, "block_time_s must be a number >= 0.05"),
        ({"finality_jumps": 1.5}, "finality_jumps must be a probability"),
        ({"start_block": 0}, "start_block must be an integer"),
        ({"port": 70000}, "port must be an integer"),
        ({"tempos": {1: 0}}, "tempo of netuid 1"),
        ({"tempos": {70000: 1}}, "tempos netuid"),
        ({"finality_lag": -1}, "finality_lag"),
        ({"slot_duration_s": 0}, "slot_duration_s must be a number from 0.001"),
        ({"slot_duration_s": float("nan")}, "slot_duration_s"),
        ({"slot_duration_s": True}, "slot_duration_s"),
        ({"slot_duration_s": "3"}, "slot_duration_s"),
    ],
)
def test_config_rejects_bad_values(overrides: dict[str, object], message: str) -> None:
    """Bad config values raise ConfigError naming the field and the rule."""
    with pytest.raises(ConfigError, match=message):
        DevNodeConfig(**overrides)  # type: ignore[arg-type]


def test_slot_duration_defaults_to_the_block_time_in_whole_ms() -> None:
    """slot_duration_ms: the block time unless set; rounded to whole milliseconds, at least 1."""
    assert DevNodeConfig(block_time_s=0.5).slot_duration_ms == 500
    assert DevNodeConfig(block_time_s=0.5, slot_duration_s=3).slot_duration_ms == 3000
    assert DevNodeConfig(slot_duration_s=0.0014).slot_duration_ms == 1


def test_tempo_flag_parsing() -> None:
    """--tempo NETUID=TEMPO parses; anything else is a clear ConfigError."""
    assert parse_tempo_flag("7=99") == (7, 99)
    for bad in ("7", "a=b", "7=0", "=5"):
        with pytest.raises(ConfigError):
            parse_tempo_flag(bad)


def test_scenario_parses_sorted_with_options() -> None:
    """Steps come back sorted by time, options kept, defaults applied to durations."""
    steps = parse_scenario(
        [
            {"at": 5, "kind": "latency", "seconds": 2, "delay_s": 0.2},
            {"at": 1, "kind": "close", "reset": True, "note": "rst"},
        ]
    )
    assert [s.kind for s in steps] == ["close", "latency"]
    assert steps[0].seconds == 0.0 and steps[0].options == {"reset": True}
    assert steps[0].note == "rst"
    assert steps[1].options == {"delay_s": 0.2}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"at": 1}, "expected a JSON list"),
        ([{"at": -1, "kind": "close"}], "step 1: 'at' must be"),
        ([{"at": 1}], "step 1: missing 'kind'"),
        ([{"at": 1, "kind": "close"}, {"at": 2, "kind": "boom"}], "step 2: unknown fault kind"),
        ([{"at": 1, "kind": "latency", "delay": 3}], "step 1: .*valid options: delay_s, on"),
        ([{"at": 1, "kind": "restart", "seconds": "long"}], "seconds must be a number"),
        (["restart"], "step 1: expected an object"),
    ],
)
def test_scenario_errors_name_the_step(data: object, message: str) -> None:
    """Every problem is found up front and names its step."""
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(data)


def test_scenario_file_errors(tmp_path: Path) -> None:
    """Missing files and invalid JSON give clear errors with the path and position."""
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        load_scenario(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"at": 1,}]')
    with pytest.raises(ScenarioError, match="invalid JSON at line 1"):
        load_scenario(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"at": 0, "kind": "restart", "seconds": 1}]))
    assert load_scenario(good)[0].kind == "restart"


def test_bundled_scenarios_resolve_by_name(tmp_path: Path) -> None:
    """'demo' names the bundled file; real paths and unknown names are left alone."""
    assert resolve_scenario_path("demo") == DEMO.resolve() or resolve_scenario_path(
        "demo"
    ).samefile(DEMO)
    assert resolve_scenario_path("demo.json").samefile(DEMO)
    own = tmp_path / "demo.json"
    assert resolve_scenario_path(own) == own
    assert resolve_scenario_path("no-such-scenario") == Path("no-such-scenario")


def test_demo_scenario_is_valid_and_about_a_minute() -> None:
    """The shipped demo has a silent socket, a restart and a finality halt, ~60 s in all."""
    steps = load_scenario(DEMO)
    assert [s.kind for s in steps] == ["sub_stall", "restart", "finality_halt"]
    assert 45 <= scenario_duration_s(steps) <= 75
