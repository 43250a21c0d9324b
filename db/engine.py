"""Engine factory and migrations (SQLAlchemy 2 async + Alembic).

Two backends: PostgreSQL through asyncpg (production) and SQLite through aiosqlite (demo,
single host, tests). The tables are in :mod:`db.tables`, the column types in :mod:`db.types`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# The whole package, not only .base: Base.metadata must hold every slice's tables.
from db.tables import Base

# Found next to this module, not via the cwd, so an installed package migrates too (the
# pyproject ships migrations/*.py and versions/*.py as package data).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Any constant works as long as every instance uses the same one: instances started together
# (scale-out) serialise their upgrades on it instead of racing to CREATE TABLE.
_PG_MIGRATION_LOCK_KEY = 0x12345_0001

# SQLite waits this long for another connection's write lock before "database is locked".
_SQLITE_BUSY_TIMEOUT_S = 30.0


class DatabaseUrlError(ValueError):
    """The database URL names a backend this service does not support."""


def dialect_insert(dialect: str) -> Callable[..., Any]:
    """The ``insert`` of ``dialect`` (``postgresql`` or ``sqlite``; both have
    ``on_conflict_do_nothing`` / ``on_conflict_do_update``)."""
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise ValueError(f"supported databases are postgresql and sqlite, not {dialect!r}")


# ---------------------------------------------------------------------------------------------
# Engines


def _async_url(url: str) -> URL:
    """Parse ``url`` and pick the async driver (``sqlite://`` -> aiosqlite, ``postgresql://``
    -> asyncpg); raise :class:`DatabaseUrlError` for anything else, a sync driver included."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError; keep our error type
        raise DatabaseUrlError(f"数据库地址无法解析 (invalid database URL): {exc}") from exc
    if parsed.drivername in ("sqlite", "sqlite+aiosqlite"):
        return parsed.set(drivername="sqlite+aiosqlite")
    if parsed.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise DatabaseUrlError(
        f"不支持的数据库 (unsupported database URL {parsed.render_as_string(hide_password=True)}):"
        " use sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db"
    )


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL; ``None`` for in-memory and ``file:`` URI databases."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    if url.query.get("uri"):
        return None
    return Path(database).expanduser()


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets the HTTP layer read while the tracker writes; NORMAL is durable enough with
        # WAL (a power cut may lose the last commits, never corrupts the file).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """Create an :class:`AsyncEngine` for ``url`` (SQLite or PostgreSQL).

    ``sqlite:///var/hotline.db`` and ``postgresql://user@host/db`` are accepted and mapped to
    their async drivers. For a SQLite file the parent directory is created and WAL mode is
    enabled on every connection. PostgreSQL connections are pre-pinged so a restarted server
    costs one failed ping, not a failed write.

    This is synchronous and may touch the file system (``mkdir``): from inside the event loop
    use :func:`open_engine`, which runs it in a worker thread.
    """
    parsed = _async_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})
        if path is not None:
            event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
        return engine
    return create_async_engine(parsed, pool_pre_ping=True)


@contextlib.asynccontextmanager
async def open_engine(url: str) -> AsyncIterator[AsyncEngine]:
    """Yield an engine for ``url`` and dispose of it (closing every pooled connection) on exit."""
    engine = await asyncio.to_thread(create_engine, url)
    try:
        yield engine
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def _engine_for(engine_or_url: AsyncEngine | str) -> AsyncIterator[AsyncEngine]:
    if isinstance(engine_or_url, AsyncEngine):
        yield engine_or_url
    else:
        async with open_engine(engine_or_url) as engine:
            yield engine


# ---------------------------------------------------------------------------------------------
# Migrations


def alembic_config() -> Config:
    """An Alembic :class:`Config` pointing at the packaged migrations (no ini file read)."""
    config = Config()
    # Config values go through ConfigParser interpolation: a '%' in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def migration_options(connection: Connection) -> dict[str, Any]:
    """Keyword arguments for Alembic's ``context.configure``; shared by ``env.py`` and
    :func:`migrate` so both migrate the same way."""
    return {
        "connection": connection,
        "target_metadata": Base.metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        "render_as_batch": connection.dialect.name == "sqlite",
        "compare_type": True,
    }


def _load_scripts() -> tuple[Config, ScriptDirectory]:
    """Read every revision file now (runs in a worker thread, it is file I/O)."""
    config = alembic_config()
    script = ScriptDirectory.from_config(config)
    script.revision_map.heads  # noqa: B018 - forces the revision files to be imported here
    return config, script


_StepFn = Callable[[Any, MigrationContext], Iterable[RevisionStep]]


def _run_steps(
    connection: Connection, config: Config, script: ScriptDirectory, fn: _StepFn, target: str
) -> None:
    """Run Alembic's upgrade/downgrade on a sync connection (inside ``run_sync``).

    This is what ``alembic.command.upgrade`` does, minus ``script.run_env()``: that would read
    env.py from disk on the event loop thread, and the revision files are already loaded.
    """
    if connection.dialect.name == "postgresql":
        lock = text("SELECT pg_advisory_xact_lock(:key)")
        connection.execute(lock, {"key": _PG_MIGRATION_LOCK_KEY})
    with EnvironmentContext(config, script, fn=fn, destination_rev=target) as context:
        context.configure(**migration_options(connection))
        with context.begin_transaction():
            context.run_migrations()


async def migrate(engine_or_url: AsyncEngine | str, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (``alembic upgrade head`` by default).

    Runs in one transaction (atomic on PostgreSQL, where concurrent callers also wait for each
    other on an advisory lock). File reading happens in a worker thread and the database work
    through the async driver, so the event loop is never blocked.
    """
    config, script = await asyncio.to_thread(_load_scripts)

    def upgrade(rev: Any, _context: MigrationContext) -> Iterable[RevisionStep]:
        return script._upgrade_revs(revision, rev)  # noqa: SLF001 - as alembic.command.upgrade

    async with _engine_for(engine_or_url) as engine, engine.begin() as conn:
        await conn.run_sync(_run_steps, config, script, upgrade, revision)


async def downgrade(engine_or_url: AsyncEngine | str, revision: str = "base") -> None:
    """Downgrade the schema to ``revision`` (``base`` drops every table this service made)."""
    config, script = await asyncio.to_thread(_load_scripts)

    def down(rev: Any, _context: MigrationContext) -> Iterable[RevisionStep]:
        return script._downgrade_revs(revision, rev)  # noqa: SLF001 - as alembic.command.downgrade

    async with _engine_for(engine_or_url) as engine, engine.begin() as conn:
        await conn.run_sync(_run_steps, config, script, down, revision)


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def schema_revision(engine_or_url: AsyncEngine | str) -> str | None:
    """The Alembic revision the database is at (``None`` for an empty database)."""
    async with _engine_for(engine_or_url) as engine, engine.connect() as conn:
        return await conn.run_sync(_current_revision)


async def head_revision() -> str:
    """The newest revision shipped with this package."""
    _config, script = await asyncio.to_thread(_load_scripts)
    head = script.get_current_head()
    if head is None:  # pragma: no cover - the package always ships a revision
        raise RuntimeError(f"no Alembic revision found in {MIGRATIONS_DIR}")
    return head
