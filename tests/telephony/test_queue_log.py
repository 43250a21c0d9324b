"""Calls the service never saw, from Asterisk's queue_log: parsing, incremental reads, a PBX
stop, and settling them in the tracker, the statistics and the store exactly once. The rows
are the ones a real Asterisk 22.5 wrote (scratch PBX, recorded-with configs)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from telephony.model import CallOutcome, CallPhase, CallRecord
from telephony.stats import IntervalCounts
from telephony.queue_log import (
    QueueLogReader,
    QueueLogReconciler,
    parse_line,
)
from tests.telephony.tracker_harness import Harness, make_harness

# A call answered by seat-1001 and completed by the agent, then (service blind) a stop with
# two callers waiting and one talking, then the start again (Asterisk 22.5, SIGTERM).
ROWS = """\
1796687015|NONE|NONE|NONE|QUEUESTART|
1796687018|MANAGER|12345|Local/1001@seats-long/n|ADDMEMBER|
1796687019|1796687019.0|12345|NONE|ENTERQUEUE||13800138001|1
1796687019|1796687019.0|12345|seat-1001|CONNECT|0|1796687019.2|0
1796687036|1796687036.4|12345|NONE|ENTERQUEUE||13800138002|1
1796687037|1796687037.6|12345|NONE|ENTERQUEUE||13800138003|2
1796687038|1796687037.6|12345|seat-1002|RINGNOANSWER|5000
1796687040|1796687019.0|12345|seat-1001|COMPLETEAGENT|0|21|1
1796687040|1796687036.4|12345|NONE|ABANDON|1|1|4
1796687040|1796687037.6|12345|NONE|ABANDON|1|2|3
1796687044|NONE|NONE|NONE|QUEUESTART|
"""
EPOCH = datetime.fromtimestamp(1796687000, UTC)
SEAT_OF = {"seat-1001": "1001", "seat-1002": "1002"}


def at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def write(path: Path, text: str, mode: str = "a") -> None:
    with open(path, mode, encoding="utf-8") as f:
        f.write(text)


class FakeStore:
    """The store's ``records()``, with the rows a previous run wrote."""

    def __init__(self, rows: Iterable[CallRecord] = (), fail: bool = False) -> None:
        self.rows = {r.call_id: r for r in rows}
        self.fail = fail
        self.asked: list[set[str]] = []

    async def records(self, call_ids: Iterable[str]) -> Mapping[str, CallRecord]:
        ids = set(call_ids)
        self.asked.append(ids)
        if self.fail:
            raise OSError("database unavailable")
        return {i: self.rows[i] for i in ids if i in self.rows}


@pytest.fixture
def h() -> Harness:
    harness = make_harness()
    harness.now = at(1796687050)
    return harness


def reconciler(h: Harness, path: Path, store: FakeStore, *,
               counted_since: datetime = EPOCH) -> QueueLogReconciler:
    return QueueLogReconciler(QueueLogReader(path), h.tracker, store,
                              seat_of=lambda name: SEAT_OF.get(name, name),
                              clock=lambda: h.now, counted_since=counted_since)


def test_rows_parse_and_garbage_is_skipped() -> None:
    row = parse_line("1796687019|1796687019.0|12345|seat-1001|CONNECT|0|1796687019.2|0\n")
    assert row is not None
    assert (row.at, row.callid, row.queue, row.agent, row.event, row.data) == (
        at(1796687019), "1796687019.0", "12345", "seat-1001", "CONNECT",
        ("0", "1796687019.2", "0"))
    assert parse_line("not a row") is None and parse_line("x|a|b|c|ENTERQUEUE") is None


def test_a_stop_ends_waiting_callers_as_pbx_shutdown_not_abandoned(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    write(path, ROWS)
    batch = QueueLogReader(path).read(EPOCH)
    calls = {c.callid: c for c in batch.calls}
    assert batch.rows == 11 and set(calls) == {"1796687019.0", "1796687036.4", "1796687037.6"}
    answered = calls["1796687019.0"]
    assert (answered.outcome, answered.agent, answered.entered_at, answered.answered_at,
            answered.ended_at, answered.caller_number) == (
        CallOutcome.ANSWERED, "seat-1001", at(1796687019), at(1796687019), at(1796687040),
        "13800138001")
    assert calls["1796687036.4"].outcome is CallOutcome.PBX_SHUTDOWN
    waited = calls["1796687037.6"]
    assert waited.outcome is CallOutcome.PBX_SHUTDOWN and waited.no_answer_agents == ["seat-1002"]


def test_an_abandon_before_the_stop_stays_an_abandon_and_a_crash_ends_open_calls(
        tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    write(path, "1796687036|1796687036.4|12345|NONE|ENTERQUEUE||13800138002|1\n"
                "1796687037|1796687036.4|12345|NONE|ABANDON|1|1|1\n"
                "1796687040|1796687040.1|12345|NONE|ENTERQUEUE||13800138004|1\n"
                "1796687041|1796687040.1|12345|seat-1001|CONNECT|1|1796687040.3|1\n"
                # killed: no row for the talking call, then the next start
                "1796687090|NONE|NONE|NONE|QUEUESTART|\n")
    calls = {c.callid: c for c in QueueLogReader(path).read(EPOCH).calls}
    assert calls["1796687036.4"].outcome is CallOutcome.ABANDONED
    cut = calls["1796687040.1"]
    # The end is the last row before the start again: a lower bound, never before the answer.
    assert (cut.outcome, cut.answered_at, cut.ended_at) == (
        CallOutcome.PBX_SHUTDOWN, at(1796687041), at(1796687041))


def test_transfers_timeouts_and_the_window(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    write(path, "1796686990|1796686990.0|12345|NONE|ENTERQUEUE||13800000000|1\n"
                "1796687001|1796686990.0|12345|NONE|ABANDON|1|1|11\n"
                "1796687010|1796687010.0|12345|NONE|ENTERQUEUE||13800000001|1\n"
                "1796687011|1796687010.0|12345|seat-1001|CONNECT|1|1796687010.2|1\n"
                "1796687020|1796687010.0|12345|seat-1001|BLINDTRANSFER|8001|departments|1|9|1\n"
                "1796687010|1796687010.5|12345|NONE|ENTERQUEUE||13800000002|1\n"
                "1796687011|1796687010.5|12345|seat-1002|CONNECT|1|1796687010.7|1\n"
                "1796687030|1796687010.5|12345|seat-1002|ATTENDEDTRANSFER|BRIDGE|"
                "b-1|1|19|1\n"
                "1796687012|1796687012.0|12345|NONE|ENTERQUEUE||13800000003|1\n"
                "1796687132|1796687012.0|12345|NONE|EXITWITHTIMEOUT|1|1|120\n")
    calls = {c.callid: c for c in QueueLogReader(path).read(EPOCH).calls}
    assert "1796686990.0" not in calls            # entered before the window
    assert (calls["1796687010.0"].outcome, calls["1796687010.0"].transferred_to) == (
        CallOutcome.TRANSFERRED, "8001")
    assert (calls["1796687010.5"].outcome, calls["1796687010.5"].transferred_to) == (
        CallOutcome.TRANSFERRED, "")
    assert calls["1796687012.0"].outcome is CallOutcome.TIMEOUT


def test_reads_are_incremental_whole_lines_only_and_follow_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    write(path, "1796687019|1796687019.0|12345|NONE|ENTERQUEUE||13800138001|1\n"
                "1796687019|1796687019.0|12345|seat-1001|CONNECT|0|1796687019.2|0\n"
                "1796687040|1796687019.0|12345|seat-1001|COMPLE")   # Asterisk mid-write
    reader = QueueLogReader(path)
    first = reader.read(EPOCH)
    assert first.calls == () and first.rows == 2
    # Not committed (the reconcile failed): the same rows are read again.
    assert reader.read(EPOCH).rows == 2
    reader.commit(first)
    write(path, "TEAGENT|0|21|1\n")
    second = reader.read(EPOCH)
    assert second.rows == 1 and [c.callid for c in second.calls] == ["1796687019.0"]
    assert second.calls[0].answered_at == at(1796687019)   # the CONNECT of the first read
    reader.commit(second)
    assert reader.read(EPOCH).rows == 0
    # logrotate: a new file under the same name is read from its start.
    os.replace(path, tmp_path / "queue_log.1")
    write(path, "1796687100|1796687100.0|12345|NONE|ENTERQUEUE||13800138009|1\n"
                "1796687103|1796687100.0|12345|NONE|ABANDON|1|1|3\n", mode="w")
    assert [c.outcome for c in reader.read(EPOCH).calls] == [CallOutcome.ABANDONED]


async def test_calls_never_seen_are_recorded_and_counted_once(h: Harness,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    await _write_async(path, ROWS)
    store = FakeStore()
    rec = reconciler(h, path, store)
    report = await rec.reconcile()
    assert (report.rows, report.ended, report.recorded, report.corrected) == (11, 3, 3, 0)
    answered = h.records["1796687019.0"]
    assert (answered.phase, answered.outcome, answered.seat, answered.caller_number,
            answered.talk_seconds) == (CallPhase.ENDED, CallOutcome.ANSWERED, "1001",
                                       "13800138001", 21.0)
    assert h.records["1796687037.6"].no_answer_seats == ["1002"]
    day = h.stats.day("12345", h.stats.local_day(h.now))
    assert (day.offered, day.answered, day.completed, day.sum_talk, day.abandoned,
            day.pbx_shutdown) == (3, 1, 1, 21.0, 0, 2)
    # The next gap: nothing new, nothing counted twice.
    assert (await rec.reconcile()).recorded == 0
    assert h.stats.day("12345", h.stats.local_day(h.now)).offered == 3


async def test_an_unknown_end_gets_its_real_end(h: Harness, tmp_path: Path) -> None:
    # The tracker saw 1796687019.0 join and get answered, then the link dropped; the resync
    # closed it as unknown_end (talk time unknown).
    joined, answered = at(1796687019) + timedelta(seconds=0.2), \
        at(1796687019) + timedelta(seconds=0.4)
    feed(h, joined, {"Event": "QueueCallerJoin", "Queue": "12345",
                     "Channel": "Local/talk@citizen-00000000;1", "Uniqueid": "1796687019.0",
                     "Linkedid": "1796687019.0", "CallerIDNum": "13800138001"})
    feed(h, answered, {"Event": "AgentConnect", "Queue": "12345", "Uniqueid": "1796687019.0",
                       "Interface": "Local/1001@seats/n", "MemberName": "seat-1001",
                       "DestChannel": "Local/1001@seats-00000001;1"})
    h.now = at(1796687050)
    h.tracker.resync([], [], set(), h.now)
    assert h.records["1796687019.0"].outcome is CallOutcome.UNKNOWN_END
    before = h.stats.day("12345", h.stats.local_day(h.now))
    assert (before.offered, before.answered, before.completed) == (1, 1, 0)
    path = tmp_path / "queue_log"
    await _write_async(path, ROWS)
    report = await reconciler(h, path, FakeStore()).reconcile()
    assert (report.recorded, report.corrected) == (2, 1)
    rec = h.records["1796687019.0"]
    assert (rec.outcome, rec.answered_at, rec.ended_at, rec.seat) == (
        CallOutcome.ANSWERED, answered, at(1796687040), "1001")
    day = h.stats.day("12345", h.stats.local_day(h.now))
    assert (day.offered, day.answered, day.completed, day.unknown_end, day.pbx_shutdown) == (
        3, 1, 1, 0, 2)
    assert day.sum_talk == pytest.approx(20.6)


def feed(h: Harness, when: datetime, message: dict[str, str]) -> None:
    h.now = when
    h.dispatcher(message)


async def test_calls_an_earlier_run_stored_are_not_recorded_again(h: Harness,
                                                                  tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    await _write_async(path, ROWS)
    earlier = CallRecord("1796687019.0", "1796687019.0", "12345", "13800138001",
                         "Local/talk@citizen-00000000;1", at(1796687019),
                         phase=CallPhase.ENDED, seat="1001", answered_at=at(1796687019),
                         ended_at=at(1796687040), outcome=CallOutcome.ANSWERED)
    lost = CallRecord("1796687036.4", "1796687036.4", "12345", "13800138002",
                      "Local/talk@citizen-00000002;1", at(1796687036), phase=CallPhase.ENDED,
                      ended_at=at(1796687045), outcome=CallOutcome.UNKNOWN_END)
    store = FakeStore([earlier, lost])
    # What the earlier run counted for them, restored at start.
    h.stats.restore([("12345", h.stats.interval_start(at(1796687019)), IntervalCounts(
        offered=2, answered=1, answered_within_sl=1, completed=1, sum_talk=21.0,
        unknown_end=1))])
    report = await reconciler(h, path, store).reconcile()
    assert (report.recorded, report.corrected) == (1, 1)
    assert store.asked == [{"1796687019.0", "1796687036.4", "1796687037.6"}]
    assert "1796687019.0" not in h.records
    assert h.records["1796687036.4"].outcome is CallOutcome.PBX_SHUTDOWN
    day = h.stats.day("12345", h.stats.local_day(h.now))
    assert (day.offered, day.answered, day.completed, day.unknown_end, day.pbx_shutdown) == (
        3, 1, 1, 0, 2)


async def test_outside_the_restored_intervals_a_call_is_recorded_but_not_counted(
        h: Harness, tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    await _write_async(path, ROWS)
    await reconciler(h, path, FakeStore(), counted_since=at(1796687030)).reconcile()
    assert h.records["1796687019.0"].outcome is CallOutcome.ANSWERED
    day = h.stats.day("12345", h.stats.local_day(h.now))
    assert (day.offered, day.answered, day.pbx_shutdown) == (2, 0, 2)


async def test_a_failed_reconcile_keeps_the_rows_for_the_next_gap(h: Harness,
                                                                  tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    await _write_async(path, ROWS)
    store = FakeStore(fail=True)
    rec = reconciler(h, path, store)
    with pytest.raises(OSError):
        await rec.reconcile()
    store.fail = False
    report = await rec.reconcile()
    assert report.recorded == 3
    assert h.stats.day("12345", h.stats.local_day(h.now)).offered == 3


async def _write_async(path: Path, text: str) -> None:
    await asyncio.to_thread(write, path, text)


def test_a_first_read_of_a_long_file_starts_at_the_window(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    old = "".join(f"{1796000000 + i}|{1796000000 + i}.0|12345|NONE|ENTERQUEUE||1380000{i:04d}|1\n"
                  f"{1796000001 + i}|{1796000000 + i}.0|12345|NONE|ABANDON|1|1|1\n"
                  for i in range(0, 20000, 2))      # a week before, ~1 MB
    write(path, old + ROWS)
    batch = QueueLogReader(path).read(EPOCH)
    assert [c.callid for c in batch.calls] == ["1796687019.0", "1796687036.4", "1796687037.6"]
    assert batch.rows < 2000      # it did not parse the week before
