"""Fixtures for the sink tests: a PostgreSQL cluster and a nats-server started by the tests.

Each module shares one server; each test gets its own database (PostgreSQL) or stream name
(NATS), so tests never see each other's rows. Without the binaries the tests that need them are
skipped with the reason (``scripts/system-deps.sh`` installs them).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Iterator

import pytest
from sink_servers import NatsServer, PostgresServer, nats_binary, postgres_bindir


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    if postgres_bindir() is None:
        pytest.skip("PostgreSQL not found (Debian package postgresql; see scripts/system-deps.sh)")
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A fresh, empty database for one test."""
    import asyncpg

    name = "t_" + uuid.uuid4().hex[:12]

    async def create() -> None:
        conn = await asyncpg.connect(postgres.url(), timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    # In a thread of its own: the fixture may be requested from inside a running event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result(timeout=30)
    return postgres.url(name)


@pytest.fixture(scope="module")
def nats() -> Iterator[NatsServer]:
    if nats_binary() is None:
        pytest.skip("nats-server not found (Debian package nats-server; scripts/system-deps.sh)")
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
