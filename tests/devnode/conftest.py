"""Fixtures: a started devnode on a free loopback port, stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from devnode_helpers import make_config

from blockfeed.devnode import DevNode


@pytest.fixture
async def node() -> AsyncIterator[DevNode]:
    """A node with manual block production (``node.advance``)."""
    async with DevNode(make_config()) as started:
        yield started


@pytest.fixture
async def live_node() -> AsyncIterator[DevNode]:
    """A node producing a block every 50 ms."""
    async with DevNode(make_config(auto_produce=True)) as started:
        yield started
