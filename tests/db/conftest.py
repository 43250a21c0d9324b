"""Fixtures for the database tests: the throwaway databases of the hotline tests (real
PostgreSQL and SQLite), shared rather than copied."""

from __future__ import annotations

from tests.hotline.conftest import (
    database_factory,
    engine_factory,
    pg_database_factory,
    sqlite_database_factory,
)

__all__ = ["database_factory", "engine_factory", "pg_database_factory", "sqlite_database_factory"]
