"""Database fixtures for the hotline tests: real PostgreSQL and SQLite, one throwaway database
per use, dropped afterwards.

PostgreSQL is the server on this machine (``HOTLINE_TEST_PG_URL`` overrides the admin URL,
default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``); each test gets its own
``hotline_test_<random>`` database so parallel and repeated runs never see each other's rows.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from db.engine import create_engine, migrate

PG_ADMIN_URL = os.environ.get(
    "HOTLINE_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)

DatabaseFactory = Callable[[], Awaitable[str]]
EngineFactory = Callable[..., Awaitable[AsyncEngine]]


@pytest.fixture
async def pg_database_factory() -> AsyncIterator[DatabaseFactory]:
    """Make empty PostgreSQL databases (returns their URL); all are dropped at teardown."""
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    created: list[str] = []

    async def make() -> str:
        name = f"hotline_test_{secrets.token_hex(6)}"
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    try:
        yield make
    finally:
        async with admin.connect() as conn:
            for name in created:
                # FORCE: a test that failed half-way may have left a connection open.
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
def sqlite_database_factory(tmp_path: Path) -> DatabaseFactory:
    """Make SQLite URLs for files in a not-yet-existing folder under ``tmp_path``."""
    counter = itertools.count()

    async def make() -> str:
        return f"sqlite+aiosqlite:///{tmp_path / f'db{next(counter)}' / 'hotline.db'}"

    return make


@pytest.fixture(params=["sqlite", "postgresql"])
def database_factory(request: pytest.FixtureRequest) -> DatabaseFactory:
    """A database factory for each backend the service supports (the test runs once each)."""
    name = {"sqlite": "sqlite_database_factory", "postgresql": "pg_database_factory"}
    factory: DatabaseFactory = request.getfixturevalue(name[request.param])
    return factory


@pytest.fixture
async def engine_factory(database_factory: DatabaseFactory) -> AsyncIterator[EngineFactory]:
    """Make engines on fresh databases, migrated to head unless ``migrated=False``; every
    engine is disposed at teardown (before its database is dropped)."""
    engines: list[AsyncEngine] = []

    async def make(*, migrated: bool = True) -> AsyncEngine:
        url = await database_factory()
        engine = await asyncio.to_thread(create_engine, url)
        engines.append(engine)
        if migrated:
            await migrate(engine)
        return engine

    try:
        yield make
    finally:
        for engine in engines:
            await engine.dispose()


