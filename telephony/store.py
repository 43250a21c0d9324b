"""Persistence of queued calls, seats' desired pauses and per-interval queue statistics.

The call writer (:mod:`telephony.writer`) batches what the tracker and the pause book
report into short transactions: :meth:`CallStore.flush`, :meth:`CallStore.save_pauses`,
:meth:`CallStore.upsert_interval`; on start the service reads back the open calls, the pauses
and the recent intervals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from db.engine import dialect_insert
from db.tables.telephony import CallRow, QueueIntervalRow, SeatPauseRow
from telephony.model import CallOutcome, CallPhase, CallRecord
from telephony.pauses import DesiredPause
from telephony.stats import IntervalCounts

_MAX_RECENT = 1000
_IDS_PER_QUERY = 500   # well under SQLite's 999 bound parameters
_COUNTERS = ("offered", "answered", "answered_within_sl", "abandoned", "timed_out",
             "unknown_end", "pbx_shutdown", "completed")  # fmt: skip


def _check_interval(start: datetime, counts: IntervalCounts) -> None:
    """Refuse an interval no run of the stats could produce (before anything is written)."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("interval_start must be timezone-aware")
    if start.second or start.microsecond:
        raise ValueError(f"interval_start {start.isoformat()} is not on a whole minute")
    for name in _COUNTERS:
        if getattr(counts, name) < 0:
            raise ValueError(f"{name} must not be negative")
    if counts.sum_wait_answered < 0 or counts.sum_talk < 0:
        raise ValueError("summed seconds must not be negative")
    if counts.answered_within_sl > counts.answered:
        raise ValueError("answered_within_sl cannot exceed answered")


def _interval_values(counts: IntervalCounts) -> dict[str, Any]:
    return {**{name: getattr(counts, name) for name in _COUNTERS},
            "sum_wait_seconds": counts.sum_wait_answered, "sum_talk_seconds": counts.sum_talk}


def _row_values(record: CallRecord, now: datetime) -> dict[str, Any]:
    return {
        "call_id": record.call_id,
        "linkedid": record.linkedid,
        "queue": record.queue,
        "caller_number": record.caller_number,
        "caller_channel": record.caller_channel,
        "seat": record.seat,
        "seat_channel": record.seat_channel,
        "joined_at": record.joined_at,
        "answered_at": record.answered_at,
        "ended_at": record.ended_at,
        "wait_seconds": record.wait_seconds,
        "talk_seconds": record.talk_seconds,
        "outcome": None if record.outcome is None else record.outcome.value,
        "phase": record.phase.value,
        "ring_attempts": record.ring_attempts,
        "no_answer_seats": list(record.no_answer_seats),
        "transferred_to": record.transferred_to,
        "asr_uuid": record.asr_uuid,
        "updated_at": now,
    }


def _record_from(row: CallRow) -> CallRecord:
    return CallRecord(
        call_id=row.call_id,
        linkedid=row.linkedid,
        queue=row.queue,
        caller_number=row.caller_number,
        caller_channel=row.caller_channel,
        joined_at=row.joined_at,
        phase=CallPhase(row.phase),
        seat=row.seat,
        seat_channel=row.seat_channel,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        outcome=None if row.outcome is None else CallOutcome(row.outcome),
        ring_attempts=row.ring_attempts,
        no_answer_seats=list(row.no_answer_seats),
        transferred_to=row.transferred_to,
        asr_uuid=row.asr_uuid,
    )


def _interval_from(row: QueueIntervalRow) -> tuple[str, datetime, IntervalCounts]:
    return row.queue, row.interval_start, IntervalCounts(
        **{name: getattr(row, name) for name in _COUNTERS},
        sum_wait_answered=row.sum_wait_seconds, sum_talk=row.sum_talk_seconds)


class CallStore:
    """Reads and writes :class:`~telephony.model.CallRecord`, seats' desired pauses and each
    queue's :class:`~telephony.stats.IntervalCounts` per interval.

    The engine is owned by the caller (the composition root opens it with
    :func:`db.engine.open_engine`); the store holds no connection between calls.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._insert = dialect_insert(engine.dialect.name)
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    def _upsert_statement(self, record: CallRecord) -> Insert:
        values = _row_values(record, datetime.now(UTC))
        stmt = self._insert(CallRow).values(**values)
        updates = {name: stmt.excluded[name] for name in values if name != "call_id"}
        ended = CallPhase.ENDED.value
        return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
            index_elements=[CallRow.call_id],
            set_=updates,
            # An ended call is final: a late write of an older phase (two tasks committing out
            # of order) must not reopen it. Ended -> ended still updates (e.g. transferred_to).
            where=or_(CallRow.phase != ended, stmt.excluded.phase == ended),
        )

    async def _write(self, conn: AsyncConnection, record: CallRecord) -> bool:
        result = await conn.execute(self._upsert_statement(record))
        return bool(result.rowcount)

    async def flush(self, records: Iterable[CallRecord]) -> int:
        """Insert or update ``records`` by ``call_id`` in one transaction; idempotent.

        Returns how many rows were written: a record whose stored call has already ended
        while it has not (a stale write that arrived late) writes nothing.
        """
        written = 0
        async with self._engine.begin() as conn:
            for record in records:
                written += await self._write(conn, record)
        return written

    async def get(self, call_id: str) -> CallRecord | None:
        """The stored call with this ``call_id``, or ``None``."""
        async with self._sessions() as session:
            row = await session.get(CallRow, call_id)
            return None if row is None else _record_from(row)

    async def records(self, call_ids: Iterable[str]) -> dict[str, CallRecord]:
        """The stored calls among ``call_ids`` (for reconciling with Asterisk's queue_log)."""
        ids = sorted(set(call_ids))
        found: dict[str, CallRecord] = {}
        async with self._sessions() as session:
            for i in range(0, len(ids), _IDS_PER_QUERY):
                chunk = ids[i:i + _IDS_PER_QUERY]
                rows = await session.scalars(select(CallRow).where(CallRow.call_id.in_(chunk)))
                found.update((row.call_id, _record_from(row)) for row in rows)
        return found

    async def pauses(self) -> dict[str, DesiredPause]:
        """Every seat's desired pause (``seat_pauses``)."""
        async with self._sessions() as session:
            return {row.seat_id: DesiredPause(row.paused, row.reason, row.updated_at)
                    for row in await session.scalars(select(SeatPauseRow))}

    async def save_pauses(self, pauses: Mapping[str, DesiredPause]) -> None:
        """Upsert seats' desired pauses in one transaction."""
        if not pauses:
            return
        async with self._engine.begin() as conn:
            for seat_id, pause in pauses.items():
                stmt = self._insert(SeatPauseRow).values(
                    seat_id=seat_id, paused=pause.paused, reason=pause.reason,
                    updated_at=pause.since)
                await conn.execute(stmt.on_conflict_do_update(
                    index_elements=[SeatPauseRow.seat_id],
                    set_={"paused": stmt.excluded.paused, "reason": stmt.excluded.reason,
                          "updated_at": stmt.excluded.updated_at}))

    async def open_calls(self) -> list[CallRecord]:
        """Calls not yet ended, oldest first.

        After a restart or an AMI reconnect the tracker compares these with Asterisk's
        ``QueueStatus`` and closes the ones that are gone as ``UNKNOWN_END``.
        """
        query = (
            select(CallRow)
            .where(CallRow.phase != CallPhase.ENDED.value)
            .order_by(CallRow.joined_at, CallRow.call_id)
        )
        async with self._sessions() as session:
            return [_record_from(row) for row in await session.scalars(query)]

    async def recent(self, limit: int = 50, queue: str | None = None) -> list[CallRecord]:
        """The ``limit`` most recently joined calls (newest first), optionally of one queue."""
        if not 1 <= limit <= _MAX_RECENT:
            raise ValueError(f"limit must be between 1 and {_MAX_RECENT}")
        query = select(CallRow).order_by(CallRow.joined_at.desc(), CallRow.call_id.desc())
        if queue is not None:
            query = query.where(CallRow.queue == queue)
        async with self._sessions() as session:
            return [_record_from(row) for row in await session.scalars(query.limit(limit))]

    async def upsert_interval(self, queue: str, start: datetime, counts: IntervalCounts) -> None:
        """Write the counts of ``queue``'s interval starting at ``start`` whole (absolute
        values, not increments: writing the same interval twice is harmless).

        ``counts`` may be the stats' live bucket: it is read before the first ``await``.
        Raises :class:`ValueError` for an interval the stats cannot produce (a naive or
        not whole-minute start, a negative counter, more answered within the service level
        than answered).
        """
        _check_interval(start, counts)
        values = {"queue": queue, "interval_start": start, **_interval_values(counts)}
        stmt = self._insert(QueueIntervalRow).values(**values)
        key = ("queue", "interval_start")
        stmt = stmt.on_conflict_do_update(
            index_elements=[QueueIntervalRow.queue, QueueIntervalRow.interval_start],
            set_={name: stmt.excluded[name] for name in values if name not in key},
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)

    async def intervals(
        self, queue: str, since: datetime, until: datetime | None = None
    ) -> list[tuple[str, datetime, IntervalCounts]]:
        """``(queue, start, counts)`` of ``queue``'s intervals starting at or after ``since``
        (and before ``until``), oldest first: what :meth:`QueueStats.restore
        <telephony.stats.QueueStats.restore>` takes."""
        query = (
            select(QueueIntervalRow)
            .where(QueueIntervalRow.queue == queue, QueueIntervalRow.interval_start >= since)
            .order_by(QueueIntervalRow.interval_start)
        )
        if until is not None:
            query = query.where(QueueIntervalRow.interval_start < until)
        async with self._sessions() as session:
            return [_interval_from(row) for row in await session.scalars(query)]
