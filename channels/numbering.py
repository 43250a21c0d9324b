"""Acceptance numbers (受理编号): 16 digits a citizen can read out on the phone.

``YYYYMMDD`` (Beijing date of acceptance) + ``NN`` (the instance's ``channels.node_id``) +
``SSSSSS`` (that day's sequence on this instance). Sequences are leased in blocks from the local
spool file, so numbering needs no Redis, two instances never collide (distinct node ids) and a
restart never reuses a number (it may skip the rest of a leased block).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, tzinfo

from channels.spool import IntakeSpool

MAX_PER_DAY = 999_999


class SequenceExhausted(Exception):
    """More than 999,999 acceptances in one day on one node."""


class AcceptanceNumbers:
    """Issues acceptance numbers; one per instance. The next block is leased in the
    background when half of the current one is used, so no submission waits for that
    fsync. Call :meth:`aclose` when done (it stops a lease in flight)."""

    def __init__(self, spool: IntakeSpool, node_id: int, timezone: tzinfo,
                 block: int = 1000) -> None:
        if not 1 <= node_id <= 99:
            raise ValueError("node_id must be 1..99")
        self._spool = spool
        self._node = node_id
        self._tz = timezone
        self._block = block
        self._day = ""
        self._start = 0
        self._next = 0
        self._end = 0
        self._lock = asyncio.Lock()
        self._prefetch: asyncio.Task[int] | None = None
        self._prefetch_day = ""

    async def issue(self, now: datetime) -> str:
        """The next number for an intake accepted at ``now``."""
        day = now.astimezone(self._tz).strftime("%Y%m%d")
        if day != self._day or self._next >= self._end:
            async with self._lock:
                if day != self._day or self._next >= self._end:
                    await self._refill(day)
        seq = self._next
        self._next += 1
        if seq > MAX_PER_DAY:
            raise SequenceExhausted(f"acceptance sequence of {day} on node {self._node} "
                                    "is exhausted")
        if self._prefetch is None and self._next - self._start >= self._block // 2:
            self._prefetch_day = day
            self._prefetch = asyncio.create_task(self._spool.lease(day, self._block),
                                                 name="acceptance-number-lease")
        return f"{day}{self._node:02d}{seq:06d}"

    async def _refill(self, day: str) -> None:
        task, self._prefetch = self._prefetch, None
        if task is not None and self._prefetch_day == day:
            first = await task
        else:
            if task is not None:           # leased for yesterday: those numbers are skipped
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            first = await self._spool.lease(day, self._block)
        self._day, self._start, self._next, self._end = day, first, first, first + self._block

    async def aclose(self) -> None:
        """Stop a background lease (its numbers, if leased, are skipped)."""
        task, self._prefetch = self._prefetch, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
