"""Fixtures for the router tests: the hotline database fixtures (real PostgreSQL and SQLite,
one throwaway database per use), shared rather than copied."""

from __future__ import annotations

from tests.hotline.conftest import (
    database_factory,
    engine_factory,
    pg_database_factory,
    sqlite_database_factory,
)

__all__ = ["database_factory", "engine_factory", "pg_database_factory", "sqlite_database_factory"]
