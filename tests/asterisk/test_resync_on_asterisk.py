"""The running service against a real Asterisk 22.5 when it could not see: a cut AMI link
with calls up, a restart of the service with calls talking, a restart of Asterisk with calls
up and seats paused, calls that began and ended while the service was down. Every call is
compared with Asterisk's own record, its queue_log (issue 10 §2 items 3, 4, 6, 7)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from hotline.app import Hotline
from telephony.link import LinkState
from telephony.model import CallOutcome, CallRecord, SeatState
from telephony.stats import IntervalCounts
from tests.asterisk.conftest import SEATS, ServiceFactory, ServiceOnPbx, agent_token
from tests.asterisk.harness import HARNESS_USER, AmiProxy, Asterisk, HarnessAmi, QueueLogRow
from tests.e2e.conftest import eventually

OUTCOME_OF_ROW = {"COMPLETECALLER": "answered", "COMPLETEAGENT": "answered",
                  "ABANDON": "abandoned", "EXITWITHTIMEOUT": "timeout"}


def queue_log_env(asterisk: Asterisk) -> dict[str, str]:
    return {"HOTLINE_AMI__QUEUE_LOG_PATH": str(asterisk.queue_log_path)}


def same_database(tmp_path: Path) -> dict[str, str]:
    """One SQLite file for several runs of the service (the fixture gives each its own)."""
    return {"HOTLINE_SERVICE__DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'kept.db'}"}


async def stored(svc: ServiceOnPbx) -> dict[str, CallRecord]:
    return {r.call_id: r for r in await svc.records()}


async def ended_in_store(svc: ServiceOnPbx, call_ids: Iterable[str]) -> dict[str, CallRecord]:
    """Wait until every call in ``call_ids`` is stored as ended; return the stored records."""
    ids = set(call_ids)

    async def done() -> dict[str, CallRecord] | None:
        records = await stored(svc)
        ok = all(i in records and records[i].outcome is not None for i in ids)
        return records if ok else None
    result: dict[str, CallRecord] = await eventually(done, timeout=30,
                                                     what=f"{len(ids)} ended call records")
    return result


def asterisk_story(rows: list[QueueLogRow]) -> dict[str, tuple[str, str | None]]:
    """callid -> (outcome, seat that answered) as Asterisk's queue_log tells it."""
    seat: dict[str, str] = {}
    out: dict[str, tuple[str, str | None]] = {}
    for row in rows:
        if row.event == "CONNECT":
            seat[row.callid] = row.agent.removeprefix("seat-")
        elif row.event in OUTCOME_OF_ROW:
            out[row.callid] = (OUTCOME_OF_ROW[row.event], seat.get(row.callid))
    return out


def counted(svc: ServiceOnPbx, records: Iterable[CallRecord]) -> IntervalCounts:
    """The statistics of the (Beijing) days the ``records`` joined on, summed."""
    stats = svc.hot.stats
    total = IntervalCounts()
    for day in {stats.local_day(r.joined_at) for r in records}:
        total.add(stats.day("12345", day))
    return total


async def stats_match_records(svc: ServiceOnPbx) -> IntervalCounts:
    """The statistics say what the stored call records say, call for call (the queue_log is
    shared by the module's tests: a service also records the calls of tests before it)."""
    records = list((await stored(svc)).values())
    total = counted(svc, records)
    outcomes = Counter(r.outcome.value for r in records if r.outcome is not None)
    assert total.offered == len(records)
    assert total.answered == sum(1 for r in records if r.answered_at is not None)
    unanswered = Counter(r.outcome.value for r in records
                         if r.outcome is not None and r.answered_at is None)
    assert (total.abandoned, total.timed_out, total.unknown_end, total.pbx_shutdown) == (
        unanswered["abandoned"], unanswered["timeout"], unanswered["unknown_end"],
        unanswered["pbx_shutdown"]), outcomes
    return total


async def set_talk(asterisk: Asterisk, seconds: int) -> None:
    for seat in SEATS:
        await asterisk.aset_global(f"SEAT_TALK_{seat}", str(seconds))


async def test_cut_ami_link_with_calls_up_every_call_is_recorded_as_asterisk_saw_it(
        service: ServiceFactory, pbx: HarnessAmi, asterisk: Asterisk,
        ami_proxy: AmiProxy) -> None:
    await set_talk(asterisk, 10)
    mark = await asterisk.aqueue_log_mark()
    async with service(ami_port=ami_proxy.port, extra_env=queue_log_env(asterisk)) as svc:
        hot = svc.hot
        before_cut = await pbx.originate_caller("13800000001", talk=40)
        await eventually(lambda: (c := hot.tracker.get(before_cut)) and c.answered_at,
                         what="the first call answered")
        await ami_proxy.cut()
        # While the service is blind: two calls are answered and go on talking, one is
        # answered and ends, one caller gives up while every seat is busy.
        long_ones = [await pbx.originate_caller(f"1380000001{i}", talk=40) for i in range(2)]
        short = await pbx.originate_caller("13800000020", talk=3)
        gave_up = await pbx.originate_caller("13800000030", patience=2)
        await eventually(lambda: _ended_in_log(asterisk, mark, {short, gave_up}),
                         timeout=15, what="the short call and the abandon in the queue_log")
        await ami_proxy.restore()
        await eventually(lambda: hot.link.state is LinkState.READY and
                         hot.link.counters.reconnects >= 1, what="reconnected")

        # Answered while blind and still talking: on their seats, as Asterisk has them.
        for call_id in long_ones:
            call = hot.tracker.get(call_id)
            assert call is not None and call.answered_at is not None and call.seat
            seat = hot.board.by_seat_id(call.seat)
            assert seat is not None and seat.state is SeatState.ON_CALL
            assert seat.call_id == call_id

        everyone = [before_cut, *long_ones, short, gave_up]
        records = await ended_in_store(svc, everyone)
        story = asterisk_story(await asterisk.aqueue_log(mark))
        assert set(story) == set(everyone)
        for call_id in everyone:
            rec = records[call_id]
            assert (rec.outcome.value if rec.outcome else None, rec.seat) == story[call_id], \
                call_id
        for call_id in [before_cut, *long_ones, short]:
            talk = records[call_id].talk_seconds
            assert talk is not None and talk > 0
        assert records[short].caller_number == "13800000020"
        assert not [r for r in records.values() if r.outcome is CallOutcome.UNKNOWN_END]
        total = await stats_match_records(svc)
        # Every answered call counts its talk time: the one that ended inside the cut (from
        # the queue_log) and the late AgentComplete of those answered inside it.
        answered = [r for r in records.values() if r.answered_at is not None]
        assert total.completed == len(answered) and total.sum_talk > 0


async def _ended_in_log(asterisk: Asterisk, mark: int, call_ids: set[str]) -> bool:
    rows = await asterisk.aqueue_log(mark)
    return call_ids <= {r.callid for r in rows if r.event in OUTCOME_OF_ROW}


async def test_service_restart_keeps_a_talking_call_on_its_seat(
        service: ServiceFactory, pbx: HarnessAmi, asterisk: Asterisk, tmp_path: Path) -> None:
    await set_talk(asterisk, 40)
    kept = same_database(tmp_path)
    async with service(extra_env=kept) as first:
        call_id = await pbx.originate_caller("13800000041", talk=50)
        call = await eventually(lambda: (c := first.hot.tracker.get(call_id))
                                and c.seat and c, what="the call answered")
        seat_id = call.seat
    async with service(extra_env=kept) as svc:
        hot = svc.hot
        seat = hot.board.by_seat_id(seat_id)
        assert seat is not None and seat.state is SeatState.ON_CALL and seat.call_id == call_id
        status, body = await svc.post(f"/api/seats/{seat_id}/hangup",
                                      token=agent_token(seat_id))
        assert status == 200, body
        records = await ended_in_store(svc, [call_id])
        rec = records[call_id]
        assert rec.outcome is CallOutcome.ANSWERED and rec.seat == seat_id
        assert rec.talk_seconds is not None and rec.talk_seconds > 0
        day = counted(svc, [rec])
        # Offered and answered by the first run (restored), completed by this one.
        assert (day.offered, day.answered, day.completed) == (1, 1, 1)
        assert day.sum_talk > 0


async def test_a_pause_survives_asterisk_restarts_and_a_service_restart(
        service: ServiceFactory, pbx: HarnessAmi, asterisk: Asterisk, tmp_path: Path) -> None:
    kept = same_database(tmp_path)
    async with service(extra_env=kept) as svc:
        hot = svc.hot
        status, body = await svc.post("/api/seats/1002/pause", {"reason": "会议"},
                                      token=agent_token("1002"))
        assert status == 200, body
        await eventually(lambda: _paused(hot, "1002") == "会议", what="1002 paused")
        await asterisk.arestart()
        await eventually(lambda: hot.link.counters.reconnects >= 1
                         and hot.link.state is LinkState.READY, timeout=30, what="resynced")
        await eventually(lambda: _paused(hot, "1002") == "会议", what="board: 1002 paused")
        members = await asyncio.to_thread(asterisk.queue_members)
        assert len(members) == len(SEATS)
        assert "paused:会议" in members["Local/1002@test-seats/n"], members
        assert "paused" not in members["Local/1001@test-seats/n"], members
    # The service is down while Asterisk restarts again: the pause comes from the database.
    await asterisk.arestart()
    async with service(extra_env=kept) as svc:
        members = await asyncio.to_thread(asterisk.queue_members)
        assert "paused:会议" in members["Local/1002@test-seats/n"], members
        assert _paused(svc.hot, "1002") == "会议"
        # And no call rings the paused seat.
        ami = await HarnessAmi.connect(asterisk.ami_port, HARNESS_USER, asterisk.harness_secret)
        try:
            await set_talk(asterisk, 2)
            calls = [await ami.originate_caller(f"1380000005{i}", talk=4) for i in range(4)]
            records = await ended_in_store(svc, calls)
        finally:
            await ami.close()
        assert all(r.outcome is CallOutcome.ANSWERED for r in records.values() if
                   r.call_id in calls)
        assert "1002" not in {records[c].seat for c in calls}
        assert all("1002" not in records[c].no_answer_seats for c in calls)


def _paused(hot: Hotline, seat_id: str) -> str | None:
    seat = hot.board.by_seat_id(seat_id)
    return seat.pause_reason if seat is not None and seat.state is SeatState.PAUSED else None


async def test_asterisk_restart_with_calls_up_is_not_counted_as_abandoning(
        service: ServiceFactory, pbx: HarnessAmi, asterisk: Asterisk) -> None:
    await set_talk(asterisk, 40)
    async with service() as svc:
        hot = svc.hot
        for seat in ("1003", "1004"):
            status, _ = await svc.post(f"/api/seats/{seat}/pause", {"reason": "小休"},
                                       token=agent_token(seat))
            assert status == 200
        await eventually(lambda: _paused(hot, "1004") == "小休", what="1003/1004 paused")
        talking = [await pbx.originate_caller(f"1380000006{i}", talk=60) for i in range(2)]
        waiting = [await pbx.originate_caller(f"1380000007{i}", talk=60) for i in range(2)]
        await eventually(lambda: all((c := hot.tracker.get(i)) and c.answered_at
                                     for i in talking), what="two calls answered")
        await eventually(lambda: all(hot.tracker.get(i) for i in waiting), what="two waiting")
        await asterisk.arestart()
        await eventually(lambda: hot.link.counters.reconnects >= 1
                         and hot.link.state is LinkState.READY, timeout=30, what="resynced")
        records = await ended_in_store(svc, talking + waiting)
        assert {records[i].outcome for i in talking} == {CallOutcome.ANSWERED}
        assert {records[i].outcome for i in waiting} == {CallOutcome.PBX_SHUTDOWN}
        total = await stats_match_records(svc)
        assert (total.abandoned, total.pbx_shutdown, total.answered) == (0, 2, 2)
        assert total.figures()["abandon_rate_pct"] == 0
        # Back up: the paused seats are still paused, and a new call is answered and recorded.
        await eventually(lambda: _paused(hot, "1003") == "小休"
                         and _paused(hot, "1004") == "小休", what="pauses re-applied")
        ami = await HarnessAmi.connect(asterisk.ami_port, HARNESS_USER, asterisk.harness_secret)
        try:
            await set_talk(asterisk, 2)
            after = await ami.originate_caller("13800000080", talk=4)
        finally:
            await ami.close()
        rec = (await ended_in_store(svc, [after]))[after]
        assert rec.outcome is CallOutcome.ANSWERED and rec.seat in ("1001", "1002")


async def test_calls_while_the_service_was_down_come_from_the_queue_log_once(
        service: ServiceFactory, pbx: HarnessAmi, asterisk: Asterisk, tmp_path: Path) -> None:
    await set_talk(asterisk, 2)
    kept = same_database(tmp_path) | queue_log_env(asterisk)
    mark = await asterisk.aqueue_log_mark()
    async with service(extra_env=kept) as svc:
        seen = await pbx.originate_caller("13800000090", talk=4)
        await ended_in_store(svc, [seen])
        status, _ = await svc.post("/api/seats/1004/pause", {"reason": "午休"},
                                   token=agent_token("1004"))
        assert status == 200
    # The service is down: two calls are answered and end; three callers talk to the three
    # seats left; a caller gives up; another is waiting when Asterisk restarts.
    missed = [await pbx.originate_caller(f"1380000009{i}", talk=3) for i in (1, 2)]
    await eventually(lambda: _ended_in_log(asterisk, mark, set(missed)),
                     timeout=15, what="the missed calls in the queue_log")
    await set_talk(asterisk, 60)
    busy = [await pbx.originate_caller(f"1380000010{i}", talk=60) for i in range(3)]
    await eventually(lambda: _connected_in_log(asterisk, mark, set(busy)), what="3 talking")
    gave_up = await pbx.originate_caller("13800000095", patience=1)
    await eventually(lambda: _ended_in_log(asterisk, mark, {gave_up}), what="the abandon")
    cut_short = await pbx.originate_caller("13800000110", talk=60)
    await asyncio.sleep(2.5)    # the abandon is not part of the stop's burst of rows
    await asterisk.arestart()
    everyone = [seen, *missed, *busy, gave_up, cut_short]
    async with service(extra_env=kept) as svc:
        records = await ended_in_store(svc, everyone)
        for call_id in missed + busy:
            rec = records[call_id]
            assert rec.outcome is CallOutcome.ANSWERED and rec.seat in SEATS
            assert rec.talk_seconds is not None and rec.answered_at is not None
        assert records[gave_up].outcome is CallOutcome.ABANDONED
        assert records[cut_short].outcome is CallOutcome.PBX_SHUTDOWN
        story = asterisk_story(await asterisk.aqueue_log(mark))
        for call_id in [seen, *missed, *busy, gave_up]:
            rec = records[call_id]
            assert (rec.outcome.value if rec.outcome else None, rec.seat) == story[call_id]
        first = await stats_match_records(svc)
        # The stop's ABANDON for the waiting caller is not a citizen giving up.
        assert counted(svc, [records[cut_short]]).pbx_shutdown >= 1
    # Once more: the same queue_log rows change nothing.
    async with service(extra_env=kept) as svc:
        again = await stored(svc)
        assert {k: (v.outcome, v.seat) for k, v in again.items()} == \
            {k: (v.outcome, v.seat) for k, v in records.items()}
        assert await stats_match_records(svc) == first


async def _connected_in_log(asterisk: Asterisk, mark: int, call_ids: set[str]) -> bool:
    rows = await asterisk.aqueue_log(mark)
    return call_ids <= {r.callid for r in rows if r.event == "CONNECT"}
