"""CallWriter: what it keeps in memory is measured on the service's clock, not the wall's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

from sqlalchemy.ext.asyncio import AsyncEngine

from telephony.stats import QueueStats
from telephony.store import CallStore
from telephony.writer import CallWriter

EngineFactory = Callable[..., Awaitable[AsyncEngine]]
BEIJING = timezone(timedelta(hours=8))
JOINED = datetime(2026, 11, 23, 9, 0, 0, tzinfo=BEIJING)


async def test_written_intervals_leave_memory_two_days_later_on_the_writers_clock(
        engine_factory: EngineFactory) -> None:
    stats = QueueStats(service_level_seconds=15, interval_minutes=15, timezone=BEIJING)
    stats.offered("12345", JOINED)
    stats.answered("12345", JOINED, wait=5.0)
    now = JOINED + timedelta(hours=1)
    writer = CallWriter(CallStore(await engine_factory()), stats, clock=lambda: now)
    await writer.flush()
    # An hour later today's interval is still what /api/stats reads, whatever day the test
    # runs on (measured on the wall clock it was dropped as soon as 2026-11-25 had passed).
    assert [start for start, _ in stats.intervals("12345", JOINED.date())] == [JOINED]
    now = JOINED + timedelta(days=2, hours=1)
    await writer.flush()
    assert stats.intervals("12345", JOINED.date()) == []
