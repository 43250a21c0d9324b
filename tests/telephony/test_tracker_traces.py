"""Every recorded Asterisk session, replayed through parse → tracker → board → stats."""

from __future__ import annotations

from datetime import timedelta

import pytest

from telephony.model import CallOutcome, CallPhase, SeatState
from telephony.seats import SeatSpec
from tests.conftest import trace_names
from tests.telephony.tracker_harness import T0, make_harness


def test_01_answered_call_record_seat_and_stats() -> None:
    h = make_harness().replay("01-answered")
    rec = h.records["1795398663.0"]
    assert rec.outcome is CallOutcome.ANSWERED
    assert rec.phase is CallPhase.ENDED
    assert rec.seat == "1001"
    assert rec.caller_number == "13800138000"
    assert rec.seat_channel == "Local/1001@seats-00000001;1"
    assert rec.wait_seconds == pytest.approx(0.002, abs=1e-3)
    assert rec.talk_seconds == pytest.approx(3.503, abs=1e-3)
    day = h.stats.day("12345", h.stats.local_day(T0))
    assert (day.offered, day.answered, day.answered_within_sl, day.abandoned) == (1, 1, 1, 0)
    assert day.figures()["answer_rate_pct"] == 100.0
    seat = h.board.by_seat_id("1001")
    assert seat is not None and seat.state is SeatState.WRAP_UP     # wrap-up 2 s after 4.512
    h.board.tick(h.now + timedelta(seconds=2.1))
    assert h.board.by_seat_id("1001").state is SeatState.AVAILABLE  # type: ignore[union-attr]
    assert h.board.unexpected_transitions == 0
    assert h.tracker.active() == []


def test_02_abandoned_while_only_seat_paused_for_lunch() -> None:
    h = make_harness()
    h.replay("02-abandoned", until=1.0)
    seat = h.board.by_seat_id("1001")
    assert seat is not None and seat.state is SeatState.PAUSED and seat.pause_reason == "午休"
    h = make_harness().replay("02-abandoned")
    rec = h.records["1795398675.0"]
    assert rec.outcome is CallOutcome.ABANDONED
    assert rec.answered_at is None and rec.seat is None
    assert rec.wait_seconds == pytest.approx(3.505, abs=1e-3)
    day = h.stats.day("12345", h.stats.local_day(T0)).figures()
    assert day["offered"] == 1 and day["abandoned"] == 1 and day["answer_rate_pct"] == 0.0


def test_03_pause_with_reason_then_unpause_then_remove() -> None:
    h = make_harness().replay("03-pause-status", until=1.3)
    assert h.board.by_seat_id("1002").state is SeatState.PAUSED   # type: ignore[union-attr]
    assert h.board.by_seat_id("1002").pause_reason == "培训"        # type: ignore[union-attr]
    assert h.board.by_seat_id("1001").state is SeatState.AVAILABLE  # type: ignore[union-attr]
    h = make_harness().replay("03-pause-status")
    assert h.board.by_seat_id("1002").state is SeatState.AVAILABLE  # type: ignore[union-attr]
    assert h.board.by_seat_id("1001").state is SeatState.LOGGED_OUT  # type: ignore[union-attr]
    assert h.board.unexpected_transitions == 0


def test_call_records_carry_the_configured_seat_id_from_the_board() -> None:
    # Seat ids that are not the extensions in the interfaces: only the board knows them.
    seats = [SeatSpec("A1", "坐席甲", "Local/1001@seats/n"),
             SeatSpec("A2", "坐席乙", "Local/1002@seats/n"),
             SeatSpec("B1", "坐席丙", "Local/2001@seats-noanswer/n")]
    rec = make_harness(seats=seats).replay("04-ring-no-answer").records["1795398741.0"]
    assert rec.seat == "A2" and rec.no_answer_seats == ["B1"]


def test_04_ring_no_answer_then_second_seat_answers() -> None:
    h = make_harness().replay("04-ring-no-answer", until=10)
    assert h.board.by_seat_id("2001").state is SeatState.RINGING  # type: ignore[union-attr]
    h = make_harness().replay("04-ring-no-answer")
    rec = h.records["1795398741.0"]
    assert rec.outcome is CallOutcome.ANSWERED
    assert rec.seat == "1002"
    assert rec.no_answer_seats == ["2001"]
    assert rec.ring_attempts == 2
    assert rec.wait_seconds == pytest.approx(16.017, abs=1e-3)
    day = h.stats.day("12345", h.stats.local_day(T0))
    assert day.answered == 1 and day.answered_within_sl == 0   # 16 s > 15 s service level
    assert h.board.by_seat_id("2001").state is SeatState.AVAILABLE  # type: ignore[union-attr]


def test_05_redirect_late_agent_complete_without_uniqueid() -> None:
    # Trace 05 moved the caller with a Redirect, which Asterisk 22.5 reports as no transfer
    # (queue_log COMPLETECALLER, AgentComplete Reason caller): a Redirect made by anyone is an
    # answered call here too. The desk's blind transfer is a BlindTransfer, which Asterisk
    # reports (tests/telephony/test_seat_actions.py, tests/asterisk).
    h = make_harness(seats=[SeatSpec("1001", "坐席1001", "Local/1001@seats-long/n")])
    h.replay("05-blind-transfer")
    rec = h.records["1795399329.0"]
    assert rec.outcome is CallOutcome.ANSWERED and rec.transferred_to is None
    # The seat was free as soon as its leg hung up (4.111), not when the caller left (8.112),
    # and the AgentComplete without Uniqueid at 8.112 was matched by member.
    day = h.stats.day("12345", h.stats.local_day(T0))
    assert day.completed == 1 and day.sum_talk == pytest.approx(3.104, abs=1e-3)
    assert h.tracker.unmatched_events == 0


def test_08_status_with_waiting_callers() -> None:
    h = make_harness().replay("08-status-with-waiting", until=3.0)
    assert len(h.tracker.waiting("12345")) == 2
    at_3s = T0 + timedelta(seconds=3.0)   # first waiting caller joined at 1.306
    assert h.tracker.longest_wait("12345", at_3s) == pytest.approx(1.694, abs=1e-3)
    h = make_harness().replay("08-status-with-waiting")
    assert h.records["1795399227.4"].phase is CallPhase.CONNECTED
    assert h.records["1795399227.4"].wait_seconds == pytest.approx(5.005, abs=1e-2)
    assert [r.call_id for r in h.tracker.waiting("12345")] == ["1795399227.6"]


def test_11_asr_uuid_reaches_the_call_record() -> None:
    h = make_harness().replay("11-audiosocket-ivr")
    assert h.records["1795399483.0"].asr_uuid == "da7bc2f8-ed5d-4086-9f5c-261ac8d64dfa"
    assert h.records["1795399483.0"].outcome is CallOutcome.ANSWERED


@pytest.mark.parametrize("name", trace_names())
def test_every_trace_replays_cleanly(name: str) -> None:
    h = make_harness(seats=[])
    h.replay(name)
    assert h.dispatcher.events_malformed == 0
    assert h.dispatcher.listener_errors == 0
    assert h.board.unexpected_transitions == 0
