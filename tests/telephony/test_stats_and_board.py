"""Queue statistics from events, and the seat board's guarded lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from panoramisk.message import Message

from telephony.events import DeviceStatus, MemberChange, MemberState
from telephony.model import SeatState
from telephony.seats import SeatBoard, SeatSpec
from telephony.stats import QueueStats
from tests.telephony.tracker_harness import T0, make_harness

SH = ZoneInfo("Asia/Shanghai")


def stats() -> QueueStats:
    return QueueStats(service_level_seconds=15, interval_minutes=15, timezone=SH)


def test_calls_count_in_the_interval_they_joined_and_days_are_beijing_days() -> None:
    s = stats()
    joined = datetime(2026, 11, 23, 15, 59, 50, tzinfo=UTC)      # 23:59:50 in Beijing
    s.offered("12345", joined)
    s.answered("12345", joined, wait=20.0)                      # answered after midnight
    s.completed("12345", joined, talk=100.0)
    s.offered("12345", joined + timedelta(seconds=30))          # 00:00:20 next Beijing day
    s.abandoned("12345", joined + timedelta(seconds=30))
    day1 = s.day("12345", datetime(2026, 11, 23).date())
    day2 = s.day("12345", datetime(2026, 11, 24).date())
    assert (day1.offered, day1.answered, day1.answered_within_sl) == (1, 1, 0)
    assert (day2.offered, day2.abandoned) == (1, 1)
    f = day1.figures()
    assert f["service_level_pct"] == 0.0 and f["asa_seconds"] == 20.0
    assert f["avg_talk_seconds"] == 100.0 and f["answer_rate_pct"] == 100.0
    starts = [start.isoformat() for start, _ in s.intervals("12345", datetime(2026, 11, 23)
                                                             .date())]
    assert starts == ["2026-11-23T15:45:00+00:00"]


def test_rates_ignore_calls_still_waiting_and_true_means_not_running_averages() -> None:
    s = stats()
    for wait in (2.0, 4.0, 30.0):
        s.offered("12345", T0)
        s.answered("12345", T0, wait)
    s.offered("12345", T0)                 # still waiting: not in the rates yet
    f = s.day("12345", s.local_day(T0)).figures()
    assert f["offered"] == 4 and f["answered"] == 3
    assert f["service_level_pct"] == round(100 * 2 / 3, 2)
    assert f["asa_seconds"] == 12.0        # (2 + 4 + 30) / 3; Asterisk's (3*old+new)/4 ≠ this


def test_dirty_intervals_are_handed_out_once_and_can_be_put_back() -> None:
    s = stats()
    s.offered("12345", T0)
    rows = s.take_dirty()
    assert len(rows) == 1 and s.take_dirty() == []
    s.mark_dirty(rows)
    s.prune(T0 + timedelta(days=3))           # unwritten: kept
    assert len(s.take_dirty()) == 1
    s.prune(T0 + timedelta(days=3))           # written: forgotten
    assert s.day("12345", s.local_day(T0)).offered == 0


def member(paused: bool, change: MemberChange = MemberChange.PAUSE) -> MemberState:
    return MemberState(change, "12345", "Local/1001@seats/n", "seat-1001",
                       DeviceStatus.NOT_INUSE, paused, "午休" if paused else "", False, 0, 0)


def test_board_follows_asterisk_and_counts_transitions_the_lifecycle_forbids() -> None:
    board = SeatBoard([SeatSpec("1001", "坐席1001", "Local/1001@seats/n")],
                      wrapup_seconds=5, now=T0)
    changes: list[SeatState] = []
    board.subscribe(lambda snap: changes.append(snap.state))
    board.apply_member(member(False, MemberChange.ADDED), T0)
    board.apply_member(member(True), T0)
    assert board.by_seat_id("1001").pause_reason == "午休"   # type: ignore[union-attr]
    board.apply_member(member(False), T0)
    board.ringing("Local/1001@seats/n", "c1", T0)
    board.connected("Local/1001@seats/n", "c1", T0)
    board.call_ended("Local/1001@seats/n", "c1", T0)
    board.tick(T0 + timedelta(seconds=4))
    assert board.by_seat_id("1001").state is SeatState.WRAP_UP  # type: ignore[union-attr]
    board.tick(T0 + timedelta(seconds=5))
    assert changes == [SeatState.AVAILABLE, SeatState.PAUSED, SeatState.AVAILABLE,
                       SeatState.RINGING, SeatState.ON_CALL, SeatState.WRAP_UP,
                       SeatState.AVAILABLE]
    assert board.unexpected_transitions == 0
    board.apply_member(member(False, MemberChange.REMOVED), T0)     # logged out
    board.connected("Local/1001@seats/n", "c2", T0)                 # missed the re-add
    board.apply_member(member(False, MemberChange.ADDED), T0)
    assert board.unexpected_transitions == 1                        # LOGGED_OUT -> ON_CALL


def test_malformed_and_unknown_events_are_skipped_and_the_rest_still_counts() -> None:
    h = make_harness()
    bad = [
        "Event: QueueCallerJoin\r\nQueue: 12345\r\nUniqueid: 1.1",        # no Channel
        "Event: AgentConnect\r\nQueue: 12345\r\nUniqueid: 1.1\r\nInterface: x\r\n"
        "HoldTime: soon",                                                   # not an int
        "Event: QueueMemberStatus\r\nQueue: 12345\r\nInterface: Local/1001@seats/n\r\n"
        "Status: 42",                                                       # unknown status
        "Event: BrandNewEvent\r\nFoo: bar",                                 # unknown type
    ]
    for text in bad:
        h.feed_text(text, 0.1)
    assert h.dispatcher.events_malformed == 3 and h.dispatcher.events_ignored == 1
    h.replay("01-answered")
    assert h.records["1795398663.0"].outcome is not None
    assert Message.from_line("garbage without colon") is None


def test_asterisk_ringing_a_seat_inside_the_boards_wrap_up_wins_and_is_counted() -> None:
    # queues.yaml says 10 s of wrap-up; this Asterisk's queue has a shorter wrapuptime and
    # rings the seat after 3 s. Asterisk decides who is rung: the board follows it.
    seat = "Local/1001@seats/n"
    board = SeatBoard([SeatSpec("1001", "坐席1001", seat)], wrapup_seconds=10, now=T0)
    board.apply_member(member(False, MemberChange.ADDED), T0)
    board.ringing(seat, "c1", T0)
    board.connected(seat, "c1", T0)
    board.call_ended(seat, "c1", T0)
    board.ringing(seat, "c2", T0 + timedelta(seconds=3))
    assert board.by_seat_id("1001").state is SeatState.RINGING   # type: ignore[union-attr]
    assert board.wrapup_overruled == 1
    board.ring_ended(seat, "c2", T0 + timedelta(seconds=4))
    # Wrap-up is over (Asterisk said so), not resumed until 10 s.
    assert board.by_seat_id("1001").state is SeatState.AVAILABLE  # type: ignore[union-attr]
    # A ring at the very end of the wrap-up is clock skew, not a disagreement.
    board.ringing(seat, "c3", T0 + timedelta(seconds=5))
    board.connected(seat, "c3", T0 + timedelta(seconds=5))
    board.call_ended(seat, "c3", T0 + timedelta(seconds=6))
    board.ringing(seat, "c4", T0 + timedelta(seconds=15.5))
    assert board.wrapup_overruled == 1


def test_the_board_names_the_seat_of_an_interface_configured_or_not() -> None:
    # A seat may have its own interface (a desk phone), not named after its extension.
    board = SeatBoard([SeatSpec("1001", "坐席1001", "PJSIP/desk-a")], wrapup_seconds=5, now=T0)
    assert board.seat_id_of("PJSIP/desk-a") == "1001"
    # Not in the config: the extension the interface names.
    assert board.seat_id_of("Local/1009@seats/n") == "1009"
    assert board.seat_id_of("PJSIP/1008") == "1008"
    # A member added outside the config shows on the board and keeps the extension rule.
    board.apply_member(MemberState(MemberChange.ADDED, "12345", "PJSIP/alice", "alice",
                                   DeviceStatus.NOT_INUSE, False, "", False, 0, 0), T0)
    assert board.seat_id_of("PJSIP/alice") == "alice"
    # A reload that configures it, or moves a seat to another interface, is followed.
    board.add_specs([SeatSpec("1007", "坐席1007", "PJSIP/alice"),
                     SeatSpec("1001", "坐席1001", "PJSIP/desk-b")], T0)
    assert board.seat_id_of("PJSIP/alice") == "1007"
    assert board.seat_id_of("PJSIP/desk-b") == "1001"
