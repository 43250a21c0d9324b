"""CallStore against the real PostgreSQL and SQLite files (every test runs on both)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.tables.telephony import CallRow
from telephony.model import CallOutcome, CallPhase, CallRecord
from telephony.pauses import DesiredPause
from telephony.stats import IntervalCounts, QueueStats
from telephony.store import CallStore
from telephony.writer import CallWriter

EngineFactory = Callable[..., Awaitable[AsyncEngine]]
BEIJING = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=BEIJING)
QUARTER = T0.astimezone(UTC)    # the start of the stats interval T0 is in


def _call(call_id: str, *, joined: datetime = T0, queue: str = "12345") -> CallRecord:
    return CallRecord(
        call_id=call_id,
        linkedid=call_id,
        queue=queue,
        caller_number="13800138000",
        caller_channel=f"Local/talk@citizen-{call_id.replace('.', '')};1",
        joined_at=joined,
    )


def _answered(record: CallRecord, *, after: float = 12.5) -> CallRecord:
    return dataclasses.replace(
        record,
        phase=CallPhase.CONNECTED,
        seat="1001",
        seat_channel="Local/1001@seats-00000001;1",
        answered_at=record.joined_at + timedelta(seconds=after),
        ring_attempts=2,
        no_answer_seats=["1002"],
    )


def _ended(record: CallRecord, outcome: CallOutcome, *, talk: float = 60.0) -> CallRecord:
    start = record.answered_at or record.joined_at
    return dataclasses.replace(
        record, phase=CallPhase.ENDED, ended_at=start + timedelta(seconds=talk), outcome=outcome
    )


@pytest.fixture
async def store(engine_factory: EngineFactory) -> CallStore:
    return CallStore(await engine_factory())


async def _row_count(store: CallStore) -> int:
    async with store._engine.connect() as conn:  # noqa: SLF001 - checking what was stored
        return (await conn.execute(select(func.count()).select_from(CallRow))).scalar_one()


async def test_a_call_round_trips_with_every_field(store: CallStore) -> None:
    record = _ended(_answered(_call("1795398663.0")), CallOutcome.TRANSFERRED)
    record = dataclasses.replace(record, transferred_to="8001", asr_uuid="5f0c1e0e-uuid")
    assert await store.flush([record]) == 1

    loaded = await store.get("1795398663.0")
    assert loaded == record
    assert loaded is not None
    assert loaded.phase is CallPhase.ENDED
    assert loaded.outcome is CallOutcome.TRANSFERRED
    assert loaded.joined_at.tzinfo is UTC and loaded.joined_at == T0
    assert loaded.wait_seconds == 12.5
    assert loaded.talk_seconds == 60.0
    assert await store.get("no-such-call") is None


async def test_derived_seconds_are_stored_for_reports(store: CallStore) -> None:
    await store.flush([_ended(_answered(_call("1.1"), after=7.25), CallOutcome.ANSWERED, talk=30)])
    async with store._engine.connect() as conn:  # noqa: SLF001
        wait, talk = (
            await conn.execute(select(CallRow.wait_seconds, CallRow.talk_seconds))
        ).one()
    assert (wait, talk) == (7.25, 30.0)


async def test_every_outcome_round_trips(store: CallStore) -> None:
    for n, outcome in enumerate(CallOutcome):
        await store.flush([_ended(_call(f"2.{n}"), outcome)])
    for n, outcome in enumerate(CallOutcome):
        loaded = await store.get(f"2.{n}")
        assert loaded is not None and loaded.outcome is outcome


async def test_upsert_is_idempotent_and_follows_the_call(store: CallStore) -> None:
    waiting = _call("3.0")
    assert await store.flush([waiting]) == 1
    assert await store.flush([waiting]) == 1
    assert await _row_count(store) == 1
    assert await store.get("3.0") == waiting

    connected = _answered(waiting)
    await store.flush([connected])
    assert await store.get("3.0") == connected
    assert await _row_count(store) == 1


async def test_an_ended_call_is_not_reopened_by_a_late_write(store: CallStore) -> None:
    waiting = _call("4.0")
    connected = _answered(waiting)
    ended = _ended(connected, CallOutcome.ANSWERED)
    await store.flush([ended])

    assert await store.flush([connected]) == 0  # committed late by another task
    assert await store.get("4.0") == ended

    # Ended -> ended still updates: the tracker learns the transfer target afterwards.
    transferred = dataclasses.replace(ended, outcome=CallOutcome.TRANSFERRED, transferred_to="8001")
    assert await store.flush([transferred]) == 1
    assert await store.get("4.0") == transferred


async def test_open_calls_are_the_unended_ones_oldest_first(store: CallStore) -> None:
    newer = _call("5.2", joined=T0 + timedelta(minutes=2))
    older = _answered(_call("5.1", joined=T0))
    await store.flush([newer])
    await store.flush([older])
    await store.flush([_ended(_call("5.3"), CallOutcome.ABANDONED)])
    await store.flush([_ended(_call("5.4"), CallOutcome.UNKNOWN_END)])

    assert await store.open_calls() == [older, newer]


async def test_recent_is_newest_first_with_limit_and_queue(store: CallStore) -> None:
    for n in range(5):
        queue = "12345" if n % 2 == 0 else "12345-en"
        await store.flush([_call(f"6.{n}", joined=T0 + timedelta(minutes=n), queue=queue)])

    assert [r.call_id for r in await store.recent(3)] == ["6.4", "6.3", "6.2"]
    assert [r.call_id for r in await store.recent(10, queue="12345")] == ["6.4", "6.2", "6.0"]
    assert await store.recent(10, queue="nobody") == []
    with pytest.raises(ValueError, match="limit"):
        await store.recent(0)


async def test_concurrent_upserts_all_land(store: CallStore) -> None:
    """The tracker writes from many tasks at once: nothing is lost, nothing deadlocks."""
    distinct = [_call(f"7.{n}", joined=T0 + timedelta(seconds=n)) for n in range(40)]
    same = _call("7.same")
    versions = [same, _answered(same)] * 10
    await asyncio.gather(*(store.flush([r]) for r in [*distinct, *versions]))

    assert await _row_count(store) == 41
    stored = await store.get("7.same")
    assert stored in (same, _answered(same))
    assert {r.call_id for r in await store.recent(100)} == {r.call_id for r in distinct} | {
        "7.same"
    }


async def test_flush_writes_a_batch_in_one_go(store: CallStore) -> None:
    batch = [_call("8.1"), _answered(_call("8.2")), _ended(_call("8.3"), CallOutcome.TIMEOUT)]
    assert await store.flush(batch) == 3
    assert [await store.get(r.call_id) for r in batch] == batch


@pytest.mark.parametrize(
    ("start", "counts", "message"),
    [
        (datetime(2026, 11, 23, 1, 31, 5, tzinfo=UTC), IntervalCounts(), "whole minute"),
        (datetime(2026, 11, 23, 1, 30), IntervalCounts(), "timezone-aware"),
        (QUARTER, IntervalCounts(offered=-1), "negative"),
        (QUARTER, IntervalCounts(unknown_end=-1), "negative"),
        (QUARTER, IntervalCounts(sum_wait_answered=-0.5), "negative"),
        (QUARTER, IntervalCounts(answered=1, answered_within_sl=2), "exceed"),
    ],
)
async def test_impossible_intervals_are_refused(store: CallStore, start: datetime,
                                                counts: IntervalCounts, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await store.upsert_interval("12345", start, counts)
    assert await store.intervals("12345", since=datetime(2026, 1, 1, tzinfo=UTC)) == []


async def test_intervals_are_replaced_whole_and_read_by_range(store: CallStore) -> None:
    start = QUARTER
    rows = [
        ("12345", start + i * timedelta(minutes=15),
         IntervalCounts(offered=10 + i, answered=8, answered_within_sl=6, abandoned=1,
                        timed_out=1, unknown_end=i, completed=7, sum_wait_answered=80.5,
                        sum_talk=900.0))
        for i in range(4)
    ]  # fmt: skip
    for row in rows:
        await store.upsert_interval(*row)
    await store.upsert_interval("12345-en", start, IntervalCounts(offered=99))

    # The stats component rewrites the current interval as calls come in.
    queue, second, counts = rows[1]
    updated = (queue, second,
               dataclasses.replace(counts, offered=20, answered=15, sum_talk=1800.25))
    await store.upsert_interval(*updated)
    await store.upsert_interval(*updated)

    got = await store.intervals("12345", since=start + timedelta(minutes=15))
    assert got == [updated, rows[2], rows[3]]
    assert all(begin.tzinfo is UTC for _, begin, _ in got)
    assert await store.intervals("12345", since=start, until=start + timedelta(minutes=30)) == [
        rows[0],
        updated,
    ]
    assert await store.intervals("12345-en", since=start) == [
        ("12345-en", start, IntervalCounts(offered=99))
    ]


async def test_store_refuses_naive_times(store: CallStore) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        await store.flush([_call("10.1", joined=datetime(2026, 11, 23, 9, 0))])
    assert await store.get("10.1") is None


async def test_records_finds_the_stored_ones_among_many_ids(store: CallStore) -> None:
    await store.flush([_ended(_call(f"20.{n}"), CallOutcome.ABANDONED) for n in range(3)])
    wanted = [f"20.{n}" for n in range(3)] + [f"99.{n}" for n in range(1200)]  # > one query
    found = await store.records(wanted)
    assert sorted(found) == ["20.0", "20.1", "20.2"]
    assert found["20.1"].outcome is CallOutcome.ABANDONED
    assert await store.records([]) == {}


async def test_desired_pauses_round_trip_and_update(store: CallStore) -> None:
    assert await store.pauses() == {}
    await store.save_pauses({"1002": DesiredPause(True, "会议", T0),
                             "1003": DesiredPause(True, "午休", T0)})
    later = T0 + timedelta(minutes=5)
    await store.save_pauses({"1003": DesiredPause(False, "", later)})
    assert await store.pauses() == {"1002": DesiredPause(True, "会议", T0.astimezone(UTC)),
                                    "1003": DesiredPause(False, "", later.astimezone(UTC))}


async def test_pbx_shutdown_counts_are_stored_with_the_interval(store: CallStore) -> None:
    counts = IntervalCounts(offered=3, abandoned=1, pbx_shutdown=2)
    await store.upsert_interval("12345", QUARTER, counts)
    assert await store.intervals("12345", since=QUARTER) == [("12345", QUARTER, counts)]


async def test_the_writer_saves_desired_pauses(store: CallStore) -> None:
    stats = QueueStats(service_level_seconds=15, interval_minutes=15, timezone=UTC)
    writer = CallWriter(store, stats)
    writer.submit_pause("1004", DesiredPause(True, "培训", T0))
    await writer.flush()
    assert (await store.pauses())["1004"].reason == "培训"
