"""The database: engine and migrations (:mod:`db.engine`), column types (:mod:`db.types`), the
tables of each slice (:mod:`db.tables`) and the Alembic revisions (``migrations/``).

A leaf: it imports nothing of the project (an import-linter contract), so every slice's store
can use it without an upward arrow.
"""
