"""Alembic environment for the hotline schema (async engines).

Two ways in:

* :func:`db.engine.migrate` / :func:`db.engine.downgrade` (what the service uses) do not run
  this file: they configure the same context on their own connection.
* The ``alembic`` command line, for operators::

      alembic -c db/migrations/alembic.ini -x url=postgresql+asyncpg://u@h/db upgrade head

  The URL comes from ``-x url=...``, else ``$HOTLINE_DATABASE_URL``, else ``sqlalchemy.url``
  in the ini file. A connection handed in through ``config.attributes["connection"]`` (the
  Alembic cookbook's connection sharing) is used as is.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from db.engine import create_engine, migration_options
from db.tables import Base


def _url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("HOTLINE_DATABASE_URL")
        or context.config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise SystemExit(
            "未指定数据库地址: pass -x url=..., set HOTLINE_DATABASE_URL or sqlalchemy.url"
        )
    return url


def _run(connection: Connection) -> None:
    context.configure(**migration_options(connection))
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    shared = context.config.attributes.get("connection")
    if shared is not None:
        # Called from inside a running program: its logging is already set up; keep it.
        _run(shared)
        return
    if context.config.config_file_name is not None:
        fileConfig(context.config.config_file_name, disable_existing_loggers=False)
    if context.is_offline_mode():
        context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    # The command line has no event loop of its own: this is the one place asyncio.run is
    # right (never reached from inside the service).
    asyncio.run(_run_online(_url()))


_main()
