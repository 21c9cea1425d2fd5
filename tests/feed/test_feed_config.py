"""FeedConfig: one frozen object with every tuning value, checked once, read by the feed."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from blockfeed import BlockFeed, ConfigError, FeedConfig, defaults
from blockfeed.contents import ContentsLevel
from blockfeed.core import FollowerConfig


def test_defaults_are_the_finney_setup_and_match_the_core() -> None:
    """FeedConfig() carries the shared chain defaults and the core's own tuning defaults."""
    config = FeedConfig()
    core = FollowerConfig()
    assert config.block_time_s is None and config.block_time_prior_s == defaults.BLOCK_TIME_S
    assert config.epoch_length == defaults.EPOCH_LENGTH == 360
    assert core.block_time_s == defaults.BLOCK_TIME_S == 12.0
    built = config.follower_config()
    for name in ("hedge", "reconnect_initial_s", "reconnect_cap_s", "http_retry_initial_s",
                 "http_retry_cap_s", "range_chunk", "quarantine_s", "lag_quarantine_blocks",
                 "health_check_interval_s", "block_time_s"):
        assert getattr(built, name) == getattr(core, name), name
    assert config.contents is ContentsLevel.HEADER


def test_follower_config_follows_the_feed_settings() -> None:
    """The core's config is built from the feed's fields (one source of truth)."""
    config = FeedConfig(block_time_s=0.1, hedge=False, reconnect_cap_s=3.0, range_chunk=7,
                        quarantine_s=9.0, http_retry_cap_s=0.4, health_check_interval_s=2.0)
    core = config.follower_config()
    assert (core.block_time_s, core.hedge, core.reconnect_cap_s, core.range_chunk,
            core.quarantine_s, core.http_retry_cap_s, core.health_check_interval_s) == (
        0.1, False, 3.0, 7, 9.0, 0.4, 2.0)
    assert core.http_retry_initial_s == 0.1  # 0.2 s, or T when that is shorter
    assert FeedConfig(http_retry_initial_s=0.05).follower_config().http_retry_initial_s == 0.05


def test_for_block_time_derives_every_timing_from_t() -> None:
    """The fast-timings profile is a fixed multiple of T for each timing; overrides win."""
    config = FeedConfig.for_block_time(0.25)
    assert config == FeedConfig(
        block_time_s=0.25, reconnect_initial_s=0.125, reconnect_cap_s=2.5, http_timeout_s=1.25,
        open_timeout_s=1.25, ping_interval_s=0.75, ping_timeout_s=0.75,
        health_check_interval_s=1.25)
    assert FeedConfig.for_block_time(0.2, http_timeout_s=None).http_timeout_s is None
    with pytest.raises(ConfigError, match="block_time_s must be a positive number"):
        FeedConfig.for_block_time(0)


def test_timeouts_left_unset_scale_with_the_learned_block_time() -> None:
    """A None timeout is a multiple of the T passed in, within its bounds; a given one wins."""
    config = FeedConfig()
    assert config.http_timeout_s_for(4.0) == 2.0
    assert config.http_timeout_s_for(0.01) == 0.5 and config.http_timeout_s_for(600) == 10.0
    assert config.open_timeout_s_for(0.1) == 1.0
    assert config.ping_interval_s_for(6.0) == 6.0 and config.ping_timeout_s_for(100) == 20.0
    assert FeedConfig(http_timeout_s=0.3).http_timeout_s_for(600) == 0.3


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"block_time_s": 0}, "block_time_s must be a positive number or None"),
        ({"block_time_s": True}, "block_time_s"),
        ({"block_time_s": float("nan")}, "block_time_s"),
        ({"epoch_length": 0}, "epoch_length must be a positive integer"),
        ({"subscriber_maxsize": 2.5}, "subscriber_maxsize"),
        ({"range_chunk": 0}, "range_chunk"),
        ({"lag_limit_blocks": -1}, "lag_limit_blocks"),
        ({"reconnect_cap_s": 0}, "reconnect_cap_s must be a positive number"),
        ({"reconnect_initial_s": -1}, "reconnect_initial_s"),
        ({"http_timeout_s": "5"}, "http_timeout_s must be a positive number of seconds or None"),
        ({"startup_timeout_s": float("inf")}, "startup_timeout_s"),
        ({"log_blocks": "yes"}, "log_blocks must be true or false"),
        ({"emoji": 1}, "emoji"),
        ({"on_divergence": "ignore"}, "on_divergence must be one of exit, follow"),
        ({"contents": "everything"}, "unknown contents level"),
    ],
)
def test_bad_values_are_a_clear_config_error(changes: dict[str, Any], match: str) -> None:
    """Each bad value raises ConfigError naming the field, whichever way it is given."""
    with pytest.raises(ConfigError, match=match):
        FeedConfig(**changes)
    with pytest.raises(ConfigError, match=match):
        FeedConfig().replace(**changes)
    with pytest.raises(ConfigError, match=match):
        BlockFeed(["ws://127.0.0.1:9"], **changes)


def test_unknown_setting_names_it_and_lists_the_valid_ones() -> None:
    """A misspelt setting is refused with its name and the list of valid names."""
    with pytest.raises(ConfigError, match=r"unknown feed setting blok_time_s; valid settings: "
                                          r"block_time_s, epoch_length, .*contents"):
        BlockFeed(["ws://127.0.0.1:9"], blok_time_s=1.0)
    with pytest.raises(ConfigError, match="follower_config"):
        BlockFeed(["ws://127.0.0.1:9"], follower_config=FollowerConfig())
    with pytest.raises(ConfigError, match="config must be a FeedConfig"):
        BlockFeed(["ws://127.0.0.1:9"], {"block_time_s": 1.0})  # type: ignore[arg-type]


def test_config_is_frozen_and_settings_apply_on_top_of_it() -> None:
    """The feed exposes the frozen config it runs on: the given one with settings applied."""
    base = FeedConfig(block_time_s=6.0, contents="events")
    feed = BlockFeed(["ws://127.0.0.1:9"], base, epoch_length=100)
    assert feed.config == dataclasses.replace(base, epoch_length=100)
    assert feed.config.contents is ContentsLevel.EVENTS
    with pytest.raises(dataclasses.FrozenInstanceError):
        feed.config.block_time_s = 1.0  # type: ignore[misc]
    assert BlockFeed.for_network("local", config=base).config is base
