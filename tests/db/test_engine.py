"""Schema, engine factory and migrations, on the real PostgreSQL and on SQLite files."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, insert, inspect, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import (
    DatabaseUrlError,
    create_engine,
    downgrade,
    head_revision,
    migrate,
    open_engine,
    schema_revision,
)
from db.tables import Base
from db.tables.telephony import CallRow

# The fixtures' types (tests/ is not a package, so conftest is not importable).
DatabaseFactory = Callable[[], Awaitable[str]]
EngineFactory = Callable[..., Awaitable[AsyncEngine]]

REPO = Path(__file__).resolve().parents[2]
BEIJING = timezone(timedelta(hours=8))


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _index_names(conn: Connection, table: str) -> set[str]:
    return {ix["name"] for ix in inspect(conn).get_indexes(table) if ix["name"]}


def _diff_with_models(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


def _call_row(call_id: str, joined_at: datetime) -> CallRow:
    return CallRow(
        call_id=call_id,
        linkedid=call_id,
        queue="12345",
        caller_number="13800138000",
        caller_channel="Local/talk@citizen-00000001;1",
        joined_at=joined_at,
        phase="waiting",
        ring_attempts=0,
        no_answer_seats=[],
        updated_at=datetime.now(UTC),
    )


async def test_upgrade_creates_schema_and_downgrade_removes_it(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory(migrated=False)
    assert await schema_revision(engine) is None

    await migrate(engine)
    assert await schema_revision(engine) == await head_revision() == "0010"
    async with engine.connect() as conn:
        assert {"calls", "queue_intervals", "alembic_version"} <= await conn.run_sync(_tables)
        assert {"ix_calls_queue_joined_at", "ix_calls_outcome", "ix_calls_open_joined_at"} <= (
            await conn.run_sync(_index_names, "calls")
        )

    await downgrade(engine)
    assert await schema_revision(engine) is None
    async with engine.connect() as conn:
        assert not {"calls", "queue_intervals"} & await conn.run_sync(_tables)

    # Up again after down: the downgrade left nothing behind that blocks a new upgrade.
    await migrate(engine)
    assert await schema_revision(engine) == "0010"


async def test_migrate_twice_is_a_no_op(engine_factory: EngineFactory) -> None:
    engine = await engine_factory()
    await migrate(engine)
    assert await schema_revision(engine) == "0010"


async def test_migration_matches_the_models(engine_factory: EngineFactory) -> None:
    """The hand-written revision and the ORM models describe the same tables."""
    engine = await engine_factory()
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff_with_models) == []


@pytest.mark.allow_blocking   # monkeypatch.chdir (test set-up) calls os.getcwd on the loop
async def test_migrate_accepts_a_url_and_finds_migrations_without_the_cwd(
    database_factory: DatabaseFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing relative to the repository may be needed
    url = await database_factory()
    await migrate(url)
    assert await schema_revision(url) == "0010"


async def test_concurrent_migrations_on_postgresql_wait_for_each_other(
    pg_database_factory: DatabaseFactory,
) -> None:
    """Two instances starting at once: the advisory lock makes the second see the first's
    schema instead of failing on CREATE TABLE."""
    url = await pg_database_factory()
    await asyncio.gather(migrate(url), migrate(url), migrate(url))
    assert await schema_revision(url) == "0010"


async def test_timestamps_come_back_aware_utc(engine_factory: EngineFactory) -> None:
    engine = await engine_factory()
    joined = datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=BEIJING)
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # A server set to Beijing time (as many here are) returns timestamptz in +08:00.
            await conn.execute(text("SET TIME ZONE 'Asia/Shanghai'"))
        await conn.execute(insert(CallRow).values(**_columns(_call_row("1.1", joined))))
        await conn.commit()
        stored = (await conn.execute(select(CallRow.joined_at))).scalar_one()
        # Comparisons against the column convert the bound value the same way.
        hits = await conn.execute(
            select(CallRow.call_id).where(CallRow.joined_at >= joined.astimezone(UTC))
        )
        assert hits.scalars().all() == ["1.1"]
    assert stored == joined
    assert stored.tzinfo is UTC
    assert stored.hour == 1  # 09:30 Beijing is 01:30 UTC


async def test_naive_timestamps_are_refused(engine_factory: EngineFactory) -> None:
    engine = await engine_factory()
    row = _call_row("1.2", datetime(2026, 11, 23, 9, 30))
    async with engine.begin() as conn:
        with pytest.raises(StatementError, match="naive datetime"):
            await conn.execute(insert(CallRow).values(**_columns(row)))


def _columns(row: CallRow) -> dict[str, object]:
    return {c.key: getattr(row, c.key) for c in CallRow.__table__.columns}


async def test_sqlite_engine_creates_the_folder_and_uses_wal(tmp_path: Path) -> None:
    db_file = tmp_path / "var" / "nested" / "hotline.db"
    async with open_engine(f"sqlite:///{db_file}") as engine:
        assert engine.url.drivername == "sqlite+aiosqlite"
        async with engine.connect() as conn:
            mode: str = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
        assert mode == "wal"
    assert await asyncio.to_thread(db_file.exists)


async def test_in_memory_sqlite_works() -> None:
    async with open_engine("sqlite://") as engine:
        await migrate(engine)
        assert await schema_revision(engine) == "0010"


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://postgres@127.0.0.1/test", "postgresql+asyncpg"),
        ("postgresql+asyncpg://postgres@127.0.0.1/test", "postgresql+asyncpg"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite"),
    ],
)
async def test_urls_get_their_async_driver(url: str, driver: str) -> None:
    engine = await asyncio.to_thread(create_engine, url)
    try:
        assert engine.url.drivername == driver
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "url", ["mysql://root@127.0.0.1/test", "postgresql+psycopg2://u:secret@h/db", "not a url"]
)
def test_unsupported_urls_are_refused_without_leaking_the_password(url: str) -> None:
    with pytest.raises(DatabaseUrlError) as err:
        create_engine(url)
    assert "secret" not in str(err.value)


@pytest.mark.usefixtures("no_blocking")
async def test_migrations_do_not_block_the_event_loop(engine_factory: EngineFactory) -> None:
    """blockbuster fails this test if Alembic reads its files on the loop thread."""
    engine: AsyncEngine = await engine_factory(migrated=False)
    await migrate(engine)
    await downgrade(engine)
    assert await schema_revision(engine) is None


async def test_alembic_command_line_uses_the_packaged_env(tmp_path: Path) -> None:
    """Operators run ``alembic -c db/migrations/alembic.ini``; env.py must work there."""
    db_file = tmp_path / "cli" / "hotline.db"
    url = f"sqlite+aiosqlite:///{db_file}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alembic", "-c", str(REPO / "db/migrations/alembic.ini"),
        "-x", f"url={url}", "upgrade", "head",
        cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await proc.communicate()
    assert proc.returncode == 0, output.decode()
    assert "Running upgrade  -> 0001" in output.decode()
    assert await schema_revision(url) == "0010"
