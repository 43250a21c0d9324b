"""Writes call records, interval statistics and seats' desired pauses to the database in the
background.

The tracker runs on the event path and must never wait for the database, so it hands each
changed record to :meth:`CallWriter.submit` (no I/O). Records are coalesced by call id (only
the latest state of a call matters) and written by :meth:`CallWriter.run`. If the database is
unavailable nothing is dropped: the pending records stay, the writer retries with backoff and
``hotline_call_records_unsaved`` shows the backlog. On shutdown :meth:`drain` makes a last,
shielded attempt within a deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from telephony.dispatch import utc_now
from telephony.model import CallRecord
from telephony.pauses import DesiredPause
from telephony.stats import QueueStats
from telephony.store import CallStore

log = logging.getLogger(__name__)

KEEP_IN_MEMORY = timedelta(days=2)


class CallWriter:
    """Background persistence of call records and queue intervals."""

    def __init__(self, store: CallStore, stats: QueueStats, *, flush_interval: float = 1.0,
                 retry_max: float = 30.0, clock: Callable[[], datetime] = utc_now) -> None:
        """``clock``: the service's clock, the one the call records' times come from (what
        counts as "older than yesterday" must be measured on the same clock)."""
        self._store = store
        self._stats = stats
        self._pending: dict[str, CallRecord] = {}
        self._pending_pauses: dict[str, DesiredPause] = {}
        self._wake = asyncio.Event()
        self._flush_interval = flush_interval
        self._retry_max = retry_max
        self._clock = clock
        self.written = 0
        self.failures = 0

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def submit_pause(self, seat_id: str, pause: DesiredPause) -> None:
        """Queue a seat's desired pause for writing (never blocks, never raises)."""
        self._pending_pauses[seat_id] = pause
        self._wake.set()

    def submit(self, record: CallRecord) -> None:
        """Queue the latest state of a call for writing (never blocks, never raises)."""
        self._pending[record.call_id] = record
        if record.ended_at is not None:
            self._wake.set()       # finished calls are written promptly

    async def run(self) -> None:
        """Write forever; cancel to stop (then call :meth:`drain`)."""
        delay = self._flush_interval
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except (SQLAlchemyError, OSError) as exc:
                self.failures += 1
                delay = min(self._retry_max, max(self._flush_interval, delay * 2))
                log.error("database write failed (%s); %d call record(s) kept, retry in %.0f s",
                          type(exc).__name__, self.backlog, delay)
            else:
                delay = self._flush_interval

    async def flush(self) -> int:
        """Write everything pending now. Records stay pending until their write succeeded."""
        batch = dict(self._pending)
        if batch:
            await self._store.flush(batch.values())
            for call_id, record in batch.items():
                if self._pending.get(call_id) is record:   # not changed meanwhile
                    del self._pending[call_id]
            self.written += len(batch)
        pauses = dict(self._pending_pauses)
        if pauses:
            await self._store.save_pauses(pauses)
            for seat_id, pause in pauses.items():
                if self._pending_pauses.get(seat_id) is pause:
                    del self._pending_pauses[seat_id]
        dirty = self._stats.take_dirty()
        try:
            for queue, start, counts in dirty:
                await self._store.upsert_interval(queue, start, counts)
        except BaseException:
            self._stats.mark_dirty(dirty)
            raise
        # Written intervals older than yesterday live on in the store only; without this the
        # in-memory buckets (and every report's scan of them) would grow for months.
        self._stats.prune(self._clock() - KEEP_IN_MEMORY)
        return len(batch)

    async def drain(self, deadline: float) -> None:
        """Last flush on shutdown, bounded by ``deadline`` seconds.

        The flush is shielded from a cancellation of the shutdown itself; if it overruns the
        deadline it is cancelled and awaited (the engine is disposed right after, so it must
        not keep running) and the records it could not write are reported.
        """
        task = asyncio.ensure_future(self.flush())
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=deadline)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            log.error("shutdown: %d call record(s) not saved within %.0f s", self.backlog,
                      deadline)
        except (SQLAlchemyError, OSError) as exc:
            log.error("shutdown: %d call record(s) could not be saved (%s)", self.backlog,
                      type(exc).__name__)
