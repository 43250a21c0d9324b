"""Resync after a gap, a restart of the service and a PBX shutdown, on event sequences
recorded from a real Asterisk 22.5 (scratch PBX with ``../shared/ami-traces/recorded-with``:
seats ``Local/NNNN@seats-long/n``, callers Originated into ``incoming,12345``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest

from telephony.actions import AmiAction
from telephony.events import ChannelListed, MemberState, PbxShutdown, parse_event
from telephony.model import CallOutcome, CallPhase, CallRecord, SeatState
from telephony.resync import bridged_calls, channel_device, interface_device, resync
from telephony.seats import SeatSpec
from tests.telephony.fakes import Reply
from tests.telephony.tracker_harness import T0, Harness, make_harness

SEATS = [SeatSpec(s, f"坐席{s}", f"Local/{s}@seats-long/n") for s in ("1001", "1002", "1003")]
CALLER = "1796687019.0"

# CoreShowChannels with one queue call bridged to seat 1001, as Asterisk 22.5 sent it
# (fields the service does not read left out).
CHANNELS = [
    {"Event": "CoreShowChannel", "Channel": "Local/1001@seats-long-00000001;2",
     "CallerIDNum": "13800138001", "Uniqueid": "1796687019.3", "Linkedid": CALLER,
     "Application": "Wait", "ApplicationData": "30", "Duration": "00:00:03", "BridgeId": ""},
    {"Event": "CoreShowChannel", "Channel": "Local/1001@seats-long-00000001;1",
     "CallerIDNum": "13800138001", "Uniqueid": "1796687019.2", "Linkedid": CALLER,
     "Application": "AppQueue", "ApplicationData": "(Outgoing Line)", "Duration": "00:00:03",
     "BridgeId": "33fc0052-5f24-4404-881d-b9f62bf2cef9"},
    {"Event": "CoreShowChannel", "Channel": "Local/talk@citizen-00000000;1",
     "CallerIDNum": "13800138001", "Uniqueid": CALLER, "Linkedid": CALLER,
     "Application": "Queue", "ApplicationData": "12345,t,,,120", "Duration": "00:00:05",
     "BridgeId": "33fc0052-5f24-4404-881d-b9f62bf2cef9"},
    {"Event": "CoreShowChannel", "Channel": "Local/talk@citizen-00000000;2",
     "CallerIDNum": "13800138001", "Uniqueid": "1796687019.1", "Linkedid": CALLER,
     "Application": "Wait", "ApplicationData": "30", "Duration": "00:00:05", "BridgeId": ""},
]


def member_row(ext: str, *, in_call: bool = False, paused: bool = False,
               reason: str = "", last_pause: int = 0) -> dict[str, str]:
    """A QueueStatus QueueMember row as Asterisk 22.5 sends it."""
    return {"Event": "QueueMember", "Queue": "12345", "Name": f"seat-{ext}",
            "Location": f"Local/{ext}@seats-long/n", "StateInterface": f"Local/{ext}@seats-long",
            "Membership": "dynamic", "Penalty": "0", "CallsTaken": "0", "LastCall": "0",
            "LastPause": str(last_pause), "LoginTime": "1796687018",
            "InCall": str(int(in_call)), "Status": "2" if in_call else "1",
            "Paused": str(int(paused)), "PausedReason": reason, "Wrapuptime": "0"}


MEMBERS = [member_row("1001", in_call=True), member_row("1002", paused=True, reason="会议",
                                                       last_pause=1796687018),
           member_row("1003")]

AGENT_COMPLETE = {
    "Event": "AgentComplete", "Channel": "Local/talk@citizen-00000000;1",
    "CallerIDNum": "13800138001", "Uniqueid": CALLER, "Linkedid": CALLER,
    "DestChannel": "Local/1001@seats-long-00000001;1", "Queue": "12345",
    "Interface": "Local/1001@seats-long/n", "MemberName": "seat-1001", "HoldTime": "0",
    "TalkTime": "21", "Reason": "agent"}


@dataclass
class ScriptedSender:
    """Answers each action with the reply recorded for its name."""

    replies: Mapping[str, Sequence[Mapping[str, str]]]
    sent: list[str] = field(default_factory=list)

    async def send(self, action: AmiAction, timeout: float | None = None) -> Reply:
        self.sent.append(action.name)
        return Reply({"Response": "Success"}, self.replies.get(action.name, ()))


def members() -> list[MemberState]:
    out = [parse_event(m) for m in MEMBERS]
    return [m for m in out if isinstance(m, MemberState)]


def channels() -> list[ChannelListed]:
    out = [parse_event(m) for m in CHANNELS]
    return [c for c in out if isinstance(c, ChannelListed)]


def harness() -> Harness:
    h = make_harness(seats=SEATS)
    h.now = T0 + timedelta(minutes=1)
    return h


def test_core_show_channel_fields_are_typed() -> None:
    caller = channels()[2]
    assert (caller.application, caller.application_data, caller.duration,
            caller.caller_number, caller.bridge_id) == (
        "Queue", "12345,t,,,120", 5, "13800138001", "33fc0052-5f24-4404-881d-b9f62bf2cef9")
    assert parse_event({**CHANNELS[0], "Duration": "101:02:03"}).duration == 363723  # type: ignore[union-attr]
    assert parse_event({"Event": "Shutdown", "Shutdown": "Cleanly",
                        "Restart": "False"}) == PbxShutdown(restart=False)
    assert members()[1].last_pause == 1796687018 and members()[0].in_call


def test_a_seat_leg_is_matched_to_its_member_by_device() -> None:
    assert channel_device("Local/1001@seats-long-00000001;1") == "Local/1001@seats-long"
    assert channel_device("PJSIP/1001-0000000a") == "PJSIP/1001"
    assert interface_device("Local/1001@seats-long/n") == "Local/1001@seats-long"
    assert interface_device("PJSIP/1001") == "PJSIP/1001"
    (call,) = bridged_calls(channels(), members())
    assert (call.uniqueid, call.queue, call.interface, call.seat_channel, call.caller_number,
            call.age_seconds, call.seat_leg_seconds) == (
        CALLER, "12345", "Local/1001@seats-long/n", "Local/1001@seats-long-00000001;1",
        "13800138001", 5, 3)
    # A bridge with no member of the caller's queue is not a queue call of ours.
    assert bridged_calls(channels(), [m for m in members() if m.interface.find("1001") < 0]) \
        == []


@pytest.fixture
def fresh() -> Harness:
    """A harness built outside the event loop (the time zone is read from disk)."""
    return harness()


async def test_a_call_answered_while_the_link_was_down_is_adopted_with_its_seat(
        fresh: Harness) -> None:
    h = fresh
    sender = ScriptedSender({"CoreShowChannels": CHANNELS, "QueueStatus": MEMBERS})
    report = await resync(sender, h.tracker, lambda: h.now)
    assert sender.sent == ["CoreShowChannels", "QueueStatus"] and len(report.bridged) == 1
    call = h.tracker.get(CALLER)
    assert call is not None and call.phase is CallPhase.CONNECTED and call.seat == "1001"
    assert call.answered_at == h.now - timedelta(seconds=3)
    assert call.joined_at == h.now - timedelta(seconds=5)
    assert h.tracker.call_of_seat("Local/1001@seats-long/n") == call
    seat = h.board.by_seat_id("1001")
    assert seat is not None and seat.state is SeatState.ON_CALL and seat.call_id == CALLER
    day = h.stats.day("12345", h.stats.local_day(h.now))
    assert (day.offered, day.answered, day.answered_within_sl) == (1, 1, 1)
    # Its late AgentComplete is no longer dropped: the seat wraps up, talk time counts.
    h.feed_text("\r\n".join(f"{k}: {v}" for k, v in AGENT_COMPLETE.items()), 80.0)
    assert h.tracker.unmatched_events == 0
    seat = h.board.by_seat_id("1001")
    assert seat is not None and seat.state is SeatState.WRAP_UP
    assert h.stats.day("12345", h.stats.local_day(h.now)).completed == 1
    assert h.records[CALLER].seat == "1001"


def test_a_waiting_call_answered_during_the_gap_becomes_connected_once() -> None:
    h = harness()
    waiting = CallRecord(CALLER, CALLER, "12345", "13800138001",
                         "Local/talk@citizen-00000000;1", joined_at=h.now - timedelta(seconds=4))
    h.tracker.adopt([waiting])
    h.tracker.resync(members(), [], {c.uniqueid for c in channels()}, h.now,
                     bridged=bridged_calls(channels(), members()))
    call = h.tracker.get(CALLER)
    assert call is not None and call.phase is CallPhase.CONNECTED and call.seat == "1001"
    assert call.joined_at == h.now - timedelta(seconds=4)     # its own, not re-estimated
    # A second resync with the same picture changes nothing and counts nothing twice.
    h.tracker.resync(members(), [], {c.uniqueid for c in channels()}, h.now,
                     bridged=bridged_calls(channels(), members()))
    day = h.stats.day("12345", h.stats.local_day(h.now))
    assert (day.offered, day.answered) == (0, 1)   # offered by the run that saw it join


def test_after_a_service_restart_a_talking_call_keeps_its_seat() -> None:
    h = harness()
    talking = CallRecord(CALLER, CALLER, "12345", "13800138001",
                         "Local/talk@citizen-00000000;1", joined_at=h.now - timedelta(seconds=9),
                         phase=CallPhase.CONNECTED, seat="1001",
                         seat_channel="Local/1001@seats-long-00000001;1",
                         answered_at=h.now - timedelta(seconds=8))
    h.tracker.adopt([talking])
    assert h.tracker.call_of_seat("Local/1001@seats-long/n") is not None
    h.tracker.resync(members(), [], {c.uniqueid for c in channels()}, h.now,
                     bridged=bridged_calls(channels(), members()))
    seat = h.board.by_seat_id("1001")
    assert seat is not None and seat.state is SeatState.ON_CALL and seat.call_id == CALLER
    # The agent hangs up: the seat leg's Hangup ends the seat's part, talk time counts.
    h.feed_text("Event: Hangup\r\nChannel: Local/1001@seats-long-00000001;1\r\n"
                f"Uniqueid: 1796687019.2\r\nLinkedid: {CALLER}\r\nCause: 16", 70.0)
    h.feed_text("Event: Hangup\r\nChannel: Local/talk@citizen-00000000;1\r\n"
                f"Uniqueid: {CALLER}\r\nLinkedid: {CALLER}\r\nCause: 16", 70.0)
    rec = h.records[CALLER]
    assert rec.outcome is CallOutcome.ANSWERED and rec.talk_seconds is not None
    day = h.stats.day("12345", h.stats.local_day(h.now))
    assert day.completed == 1 and day.sum_talk > 0


def test_a_seat_asterisk_no_longer_has_in_call_is_freed() -> None:
    h = harness()
    talking = CallRecord(CALLER, CALLER, "12345", "13800138001",
                         "Local/talk@citizen-00000000;1", joined_at=h.now - timedelta(seconds=9),
                         phase=CallPhase.CONNECTED, seat="1001",
                         seat_channel="Local/1001@seats-long-00000001;1",
                         answered_at=h.now - timedelta(seconds=8))
    h.tracker.adopt([talking])
    idle = [replace(m, in_call=False) for m in members()]
    # The caller is still up (say in the IVR after the agent hung up) but in no bridge.
    h.tracker.resync(idle, [], {CALLER}, h.now)
    seat = h.board.by_seat_id("1001")
    assert seat is not None and seat.state is SeatState.AVAILABLE and seat.call_id is None
    assert h.tracker.call_of_seat("Local/1001@seats-long/n") is None


# `core stop now` with seat 1001 talking to one caller and two callers waiting, as the
# real Asterisk 22.5 reported it (hang-ups of the ;2 halves left out).
SHUTDOWN_TRACE = [
    ("QueueCallerJoin", {"Channel": "Local/talk@citizen-00000002;1", "Uniqueid": "1796687036.4",
                         "Linkedid": "1796687036.4", "CallerIDNum": "13800138001",
                         "Queue": "12345", "Position": "1", "Count": "1"}),
    ("QueueCallerJoin", {"Channel": "Local/talk@citizen-00000003;1", "Uniqueid": "1796687037.6",
                         "Linkedid": "1796687037.6", "CallerIDNum": "13800138002",
                         "Queue": "12345", "Position": "2", "Count": "2"}),
    ("AgentComplete", {k: v for k, v in AGENT_COMPLETE.items() if k != "Event"}),
    ("Hangup", {"Channel": "Local/talk@citizen-00000000;1", "Uniqueid": CALLER,
                "Linkedid": CALLER, "Cause": "16"}),
    ("QueueCallerAbandon", {"Channel": "Local/talk@citizen-00000002;1",
                            "Uniqueid": "1796687036.4", "Queue": "12345", "Position": "1",
                            "OriginalPosition": "1", "HoldTime": "4"}),
    ("QueueCallerLeave", {"Channel": "Local/talk@citizen-00000002;1",
                          "Uniqueid": "1796687036.4", "Queue": "12345", "Position": "1",
                          "Count": "1"}),
    ("Hangup", {"Channel": "Local/talk@citizen-00000002;1", "Uniqueid": "1796687036.4",
                "Linkedid": "1796687036.4", "Cause": "0"}),
    ("QueueCallerAbandon", {"Channel": "Local/talk@citizen-00000003;1",
                            "Uniqueid": "1796687037.6", "Queue": "12345", "Position": "1",
                            "OriginalPosition": "2", "HoldTime": "3"}),
    ("QueueCallerLeave", {"Channel": "Local/talk@citizen-00000003;1",
                          "Uniqueid": "1796687037.6", "Queue": "12345", "Position": "1",
                          "Count": "0"}),
    ("Hangup", {"Channel": "Local/talk@citizen-00000003;1", "Uniqueid": "1796687037.6",
                "Linkedid": "1796687037.6", "Cause": "0"}),
]


def play(h: Harness, events: Sequence[tuple[str, Mapping[str, str]]], t: float) -> None:
    for name, fields_ in events:
        h.feed_text("\r\n".join([f"Event: {name}"] + [f"{k}: {v}" for k, v in
                                                      fields_.items()]), t)


def shutdown_setup() -> Harness:
    h = harness()
    h.tracker.resync(members(), [], {c.uniqueid for c in channels()}, h.now,
                     bridged=bridged_calls(channels(), members()))
    play(h, SHUTDOWN_TRACE[:2], 60.0)
    play(h, SHUTDOWN_TRACE[2:], 64.0)
    return h


def test_callers_cut_by_a_pbx_shutdown_are_not_counted_as_abandoning() -> None:
    h = shutdown_setup()
    h.feed_text("Event: Shutdown\r\nShutdown: Cleanly\r\nRestart: False", 65.1)
    assert h.records["1796687036.4"].outcome is CallOutcome.PBX_SHUTDOWN
    assert h.records["1796687037.6"].outcome is CallOutcome.PBX_SHUTDOWN
    assert h.records[CALLER].outcome is CallOutcome.ANSWERED
    day = h.stats.day("12345", h.stats.local_day(h.now))
    assert (day.abandoned, day.pbx_shutdown, day.answered, day.offered) == (0, 2, 1, 3)
    figures = day.figures()
    assert figures["abandon_rate_pct"] == 0 and figures["pbx_shutdown"] == 2


def test_without_a_shutdown_the_abandons_stay_abandons() -> None:
    h = shutdown_setup()
    day = h.stats.day("12345", h.stats.local_day(h.now))
    assert (day.abandoned, day.pbx_shutdown) == (2, 0)
    # A Shutdown long after (a later, unrelated stop) does not rewrite them.
    h.feed_text("Event: Shutdown\r\nShutdown: Cleanly\r\nRestart: True", 120.0)
    day = h.stats.day("12345", h.stats.local_day(h.now))
    assert (day.abandoned, day.pbx_shutdown) == (2, 0)
    assert h.records["1796687036.4"].outcome is CallOutcome.ABANDONED


def test_a_citizen_hanging_up_just_before_a_shutdown_still_abandoned() -> None:
    h = harness()
    play(h, SHUTDOWN_TRACE[:1], 60.0)
    abandon = [SHUTDOWN_TRACE[4], SHUTDOWN_TRACE[5],
               ("Hangup", {**SHUTDOWN_TRACE[6][1], "Cause": "16"})]
    play(h, abandon, 63.0)
    h.feed_text("Event: Shutdown\r\nShutdown: Cleanly\r\nRestart: False", 63.5)
    assert h.records["1796687036.4"].outcome is CallOutcome.ABANDONED


def test_a_shutdown_closes_calls_still_waiting_as_pbx_shutdown() -> None:
    h = harness()
    play(h, SHUTDOWN_TRACE[:2], 60.0)
    h.feed_text("Event: Shutdown\r\nShutdown: Cleanly\r\nRestart: True", 62.0)
    assert h.tracker.active() == []
    assert {h.records[c].outcome for c in ("1796687036.4", "1796687037.6")} == {
        CallOutcome.PBX_SHUTDOWN}
    assert h.stats.day("12345", h.stats.local_day(h.now)).pbx_shutdown == 2
