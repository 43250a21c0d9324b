"""Database schema, engine factory and migrations (SQLAlchemy 2 async + Alembic).

Two backends: PostgreSQL through asyncpg (production) and SQLite through aiosqlite (demo,
single host, tests). Every timestamp is timezone-aware UTC on the way in and on the way out,
whatever the backend stores (SQLite keeps naive text, PostgreSQL ``timestamptz``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    event,
    false,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

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


class UtcDateTime(TypeDecorator[datetime]):
    """A ``DateTime`` that only accepts aware datetimes and always returns aware UTC ones.

    SQLite has no time zone type: values are converted to UTC and stored naive, and read back
    with ``tzinfo=UTC`` attached. PostgreSQL returns ``timestamptz`` in the session time zone;
    it is normalised to UTC so callers compare like with like.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            # A naive value would be silently read as UTC on SQLite and as the server's zone
            # on PostgreSQL: refuse it rather than store an hour-shifted call.
            raise ValueError(f"naive datetime {value.isoformat()} given; use an aware one")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_JSON = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base; the naming convention keeps constraint names stable for Alembic."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class CallRow(Base):
    """One queued call (table ``calls``); mirrors :class:`telephony.model.CallRecord`."""

    __tablename__ = "calls"

    # Asterisk's Uniqueid / Linkedid are at most 150 characters (AST_MAX_UNIQUEID).
    call_id: Mapped[str] = mapped_column(String(150), primary_key=True)
    linkedid: Mapped[str] = mapped_column(String(150))
    queue: Mapped[str] = mapped_column(String(128))
    caller_number: Mapped[str] = mapped_column(String(80))
    caller_channel: Mapped[str] = mapped_column(String(255))
    seat: Mapped[str | None] = mapped_column(String(80))
    seat_channel: Mapped[str | None] = mapped_column(String(255))
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime())
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    wait_seconds: Mapped[float | None] = mapped_column(Float())
    talk_seconds: Mapped[float | None] = mapped_column(Float())
    outcome: Mapped[str | None] = mapped_column(String(16))
    phase: Mapped[str] = mapped_column(String(16))
    ring_attempts: Mapped[int] = mapped_column(Integer(), default=0)
    no_answer_seats: Mapped[list[str]] = mapped_column(_JSON, default=list)
    transferred_to: Mapped[str | None] = mapped_column(String(80))
    asr_uuid: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("ix_calls_queue_joined_at", "queue", "joined_at"),
        Index("ix_calls_outcome", "outcome"),
        # open_calls() runs after every AMI reconnect; a partial index keeps it cheap when the
        # table holds years of ended calls.
        Index(
            "ix_calls_open_joined_at",
            "joined_at",
            postgresql_where=text("phase <> 'ended'"),
            sqlite_where=text("phase <> 'ended'"),
        ),
    )


class QueueIntervalRow(Base):
    """Statistics of one queue over one interval, 15 minutes by default (``queue_intervals``)."""

    __tablename__ = "queue_intervals"

    queue: Mapped[str] = mapped_column(String(128), primary_key=True)
    interval_start: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    offered: Mapped[int] = mapped_column(Integer(), default=0)
    answered: Mapped[int] = mapped_column(Integer(), default=0)
    answered_within_sl: Mapped[int] = mapped_column(Integer(), default=0)
    abandoned: Mapped[int] = mapped_column(Integer(), default=0)
    timed_out: Mapped[int] = mapped_column(Integer(), default=0)
    unknown_end: Mapped[int] = mapped_column(Integer(), default=0)
    pbx_shutdown: Mapped[int] = mapped_column(Integer(), default=0)   # revision 0009
    completed: Mapped[int] = mapped_column(Integer(), default=0)
    sum_wait_seconds: Mapped[float] = mapped_column(Float(), default=0.0)
    sum_talk_seconds: Mapped[float] = mapped_column(Float(), default=0.0)


class SeatPauseRow(Base):
    """The pause each seat should have (``seat_pauses``, revision 0009): what the agent last
    chose, learnt from Asterisk's ``QueueMemberPause`` events. Re-applied when Asterisk lost
    its members (a restart), also after a restart of the service itself."""

    __tablename__ = "seat_pauses"

    seat_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean())
    reason: Mapped[str] = mapped_column(String(80), default="")   # Asterisk keeps 80 bytes
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class TicketRow(Base):
    """One work order (工单, table ``tickets``); the store is :mod:`router.ticket_store`.

    ``intake_id`` is unique: a redelivered intake finds its ticket instead of making a second.
    ``status`` and ``action`` values are :class:`router.tickets.TicketStatus` / ``TicketAction``.
    """

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(24), unique=True)
    intake_id: Mapped[str] = mapped_column(String(32), unique=True)
    acceptance_no: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(16))
    urgency: Mapped[str] = mapped_column(String(16))
    # None while the order waits for manual dispatch (人工派单).
    unit_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text())
    citizen_name: Mapped[str | None] = mapped_column(String(100))
    citizen_phone: Mapped[str | None] = mapped_column(String(32))
    citizen_email: Mapped[str | None] = mapped_column(String(254))
    citizen_app_user_id: Mapped[str | None] = mapped_column(String(128))
    location: Mapped[dict[str, Any]] = mapped_column(_JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sign_by: Mapped[datetime | None] = mapped_column(UtcDateTime())
    handle_by: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # What the router counted the deadlines from, and whether a year on the way had no
    # official holiday arrangement yet (recounted once it is entered: router.provisional).
    deadlines_from: Mapped[datetime | None] = mapped_column(UtcDateTime())
    deadline_provisional: Mapped[bool] = mapped_column(Boolean(), default=False,
                                                       server_default=false())
    extensions: Mapped[int] = mapped_column(Integer(), default=0)
    supervised: Mapped[bool] = mapped_column(Boolean(), default=False)
    repeat_of: Mapped[str | None] = mapped_column(String(24))
    related_to: Mapped[str | None] = mapped_column(String(24))
    explanation: Mapped[dict[str, Any]] = mapped_column(_JSON, default=dict)
    survey_satisfied: Mapped[bool | None] = mapped_column(Boolean())
    survey_note: Mapped[str | None] = mapped_column(Text())
    surveyed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # location's street and address as columns: related orders (different citizens, same
    # place) are an indexed look-up.
    place_street: Mapped[str | None] = mapped_column(String(100))
    place_address: Mapped[str | None] = mapped_column(String(300))

    __table_args__ = (
        Index("ix_tickets_unit_id_status", "unit_id", "status"),
        Index("ix_tickets_status", "status"),
        # The citizen's status query reads the order by acceptance number (revision 0008).
        Index("ix_tickets_acceptance_no", "acceptance_no"),
        # Repeat detection (重复投诉) looks up the citizens' recent orders by phone, e-mail or
        # app user (an OR: every branch needs its index, or PostgreSQL scans the table).
        Index("ix_tickets_citizen_phone_created_at", "citizen_phone", "created_at"),
        Index("ix_tickets_citizen_email_created_at", "citizen_email", "created_at"),
        Index("ix_tickets_citizen_app_user_id_created_at", "citizen_app_user_id",
              "created_at"),
        Index("ix_tickets_place_street_created_at", "place_street", "created_at"),
        Index("ix_tickets_place_address_created_at", "place_address", "created_at"),
        # The orders to recount when a year's arrangement is entered: few among many.
        Index("ix_tickets_deadline_provisional", "deadline_provisional"),
    )


class TicketEventRow(Base):
    """One change of a ticket (``ticket_events``): the audit trail, written in the same
    transaction as the change itself."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(
        Integer(), ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    # 'router', 'office:<user>' or 'unit:<unit_id>'.
    actor: Mapped[str] = mapped_column(String(150))
    action: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text(), default="")


class TicketOutboxRow(Base):
    """A ticket waiting to be handed to the city's own ticket system (``ticket_outbox``),
    written in the ticket's creating transaction; :mod:`router.outbox` delivers it.

    ``state``: ``pending`` (due at ``next_at``), ``delivered`` or ``dead`` (refused or out of
    attempts: a person must look, ``last_error`` says why).
    """

    __tablename__ = "ticket_outbox"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(
        Integer(), ForeignKey("tickets.id", ondelete="CASCADE"), unique=True
    )
    state: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer(), default=0)
    next_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer())
    last_error: Mapped[str | None] = mapped_column(Text())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_ticket_outbox_state_next_at", "state", "next_at"),)


class TranscriptSegmentRow(Base):
    """One final transcript segment of a call (``call_transcripts``): what the caller said, in
    order, with word timings; written by :mod:`asr.sink` as recognition finishes each
    utterance. ``call_id`` is the call's Linkedid (the phone intake's ``call.call_id``)."""

    __tablename__ = "call_transcripts"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64))
    stream_id: Mapped[str] = mapped_column(String(64))
    # 'ivr' (the caller's words before the queue) or 'conversation' (after an agent answered).
    purpose: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(Integer())
    text: Mapped[str] = mapped_column(Text())
    start_s: Mapped[float | None] = mapped_column(Float())
    end_s: Mapped[float | None] = mapped_column(Float())
    words: Mapped[list[Any]] = mapped_column(_JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_call_transcripts_call_id_id", "call_id", "id"),)


class KbArticleRow(Base):
    """One knowledge-base article (``kb_articles``), kept current by its unit through the
    API (:mod:`hotline.kb_api`); ``routing.kb_path`` seeds it. See :class:`router.kb.Article`."""

    __tablename__ = "kb_articles"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text())
    unit: Mapped[str] = mapped_column(String(64), index=True)
    keywords: Mapped[list[str]] = mapped_column(_JSON, default=list)
    valid_from: Mapped[date | None] = mapped_column(Date())
    valid_to: Mapped[date | None] = mapped_column(Date())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # 'seed' (imported from kb_path), 'office:admin' or 'unit:<unit id>'.
    updated_by: Mapped[str] = mapped_column(String(150))


class TicketNumberCounterRow(Base):
    """Last ticket sequence number handed out per day (``ticket_number_counters``).

    A table, not a process counter: every instance draws from it inside the creating
    transaction, so numbers are unique across instances and a rolled-back create leaves no gap.
    """

    __tablename__ = "ticket_number_counters"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)  # YYYYMMDD, Beijing time
    last: Mapped[int] = mapped_column(Integer())


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
