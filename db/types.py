"""Column types shared by every slice's tables.

Every timestamp is timezone-aware UTC on the way in and on the way out, whatever the backend
stores (SQLite keeps naive text, PostgreSQL ``timestamptz``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Dialect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator


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


# JSON everywhere, stored as JSONB on PostgreSQL.
Json = JSON().with_variant(JSONB(), "postgresql")
