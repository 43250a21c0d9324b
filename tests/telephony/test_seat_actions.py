"""Agent actions produce exactly the AMI the real Asterisk executed in traces 02, 06, 07 (and
the BlindTransfer measured on the real Asterisk 22.5), and wait for Asterisk's outcome."""

from __future__ import annotations

import asyncio

import pytest

from telephony import actions
from telephony.errors import AmiActionFailed, UnsafeActionValue
from telephony.model import CallOutcome
from telephony.seat_actions import SeatActionError, SeatActions
from telephony.seats import SeatSpec
from tests.conftest import load_trace
from tests.telephony.fakes import RecordingSender, Reply
from tests.telephony.tracker_harness import Harness, make_harness

LONG_SEAT = [SeatSpec("1001", "坐席1001", "Local/1001@seats-long/n")]
DEPARTMENTS = {"8001": "市水务局", "8002": "市住建局", "8003": "市市场监管局"}
REASONS = frozenset({"小休", "午休", "培训", "会议"})


def sent_by_service(name: str, action: str) -> list[str]:
    return [ln.text for ln in load_trace(name)
            if ln.dir == "sent" and ln.text.startswith(f"Action: {action}\r\n")]


def seat_actions(h: Harness, sender: RecordingSender, transfer_timeout: float = 5.0
                 ) -> SeatActions:
    return SeatActions(sender, h.tracker, h.board, h.dispatcher, pause_reasons=REASONS,
                       departments=DEPARTMENTS, transfer_timeout=transfer_timeout)


class ReplayAfterSend(RecordingSender):
    """Sends like the recording fake, then lets the rest of a trace happen (Asterisk's
    events after the action), as the real link delivers them while the action waits."""

    def __init__(self, h: Harness, trace: str, since: float, first_id: int) -> None:
        super().__init__(first_id=first_id)
        self._then = lambda: h.replay(trace, since=since)

    async def send(self, action: actions.AmiAction, timeout: float | None = None) -> Reply:
        reply = await super().send(action, timeout)
        asyncio.get_running_loop().call_soon(self._then)
        return reply


# Trace 05's call (answered at 1.007 s by seat 1001 on its seats-long leg) transferred with
# the BlindTransfer action: what the real Asterisk 22.5 answered and sent, measured in
# tests/asterisk (response first, then Unhold of the seat's leg, BlindTransfer, AgentComplete
# Reason transfer with the caller's Uniqueid, the seat's leg hanging up), with trace 05's
# channel names.
CALLER_05 = "Local/talk@citizen-00000000;1"
SEAT_LEG_05 = "Local/1001@seats-long-00000001;1"
BLIND_TRANSFER_05 = (
    "Action: BlindTransfer\r\nChannel: Local/1001@seats-long-00000001;1\r\nExten: 8001\r\n"
    "Context: departments\r\nActionID: a-3\r\n\r\n")


def _event(name: str, **fields: str) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in {"Event": name, **fields}.items())


def blind_transfer_events(result: str = "Success") -> list[str]:
    if result != "Success":   # Asterisk's event for a transfer it could not make has no
        return [_event("BlindTransfer", Result=result, TransfererChannel=SEAT_LEG_05,
                       TransfererUniqueid="1795399329.2", IsExternal="Yes",
                       Context="departments", Extension="8001")]   # transferee, no bridge
    return [
        _event("Unhold", Channel=SEAT_LEG_05, Uniqueid="1795399329.2", Linkedid="1795399329.0"),
        _event("BlindTransfer", Result="Success", TransfererChannel=SEAT_LEG_05,
               TransfererUniqueid="1795399329.2", TransfereeChannel=CALLER_05,
               TransfereeUniqueid="1795399329.0", TransfereeLinkedid="1795399329.0",
               BridgeUniqueid="5f909fc8-b1c3-49d3-981e-d9f22f65a2ef", IsExternal="Yes",
               Context="departments", Extension="8001"),
        _event("AgentComplete", Channel=CALLER_05, Uniqueid="1795399329.0",
               Linkedid="1795399329.0", DestChannel=SEAT_LEG_05, Queue="12345",
               Interface="Local/1001@seats-long/n", MemberName="seat-1001", HoldTime="0",
               TalkTime="3", Reason="transfer"),
        _event("Hangup", Channel=SEAT_LEG_05, Uniqueid="1795399329.2", Linkedid="1795399329.0",
               Cause="16"),
    ]


class AnswersWith(RecordingSender):
    """Records each action, then Asterisk's events for it arrive (after the response, as on
    the real link); with a refusal Asterisk answers ``Response: Error``. One
    ``(events, refusal)`` per action sent."""

    def __init__(self, h: Harness, *answers: tuple[list[str], str]) -> None:
        super().__init__(first_id=3)
        self._h, self._answers = h, list(answers)

    async def send(self, action: actions.AmiAction, timeout: float | None = None) -> Reply:
        reply = await super().send(action, timeout)
        events, refusal = self._answers.pop(0)
        for text in events:
            asyncio.get_running_loop().call_soon(self._h.feed_text, text, 4.111)
        if refusal:
            raise AmiActionFailed(action.name, refusal)
        return reply


async def test_blind_transfer_is_a_blindtransfer_of_the_seat_leg_and_waits_for_success(
        ) -> None:
    h = make_harness(seats=LONG_SEAT).replay("05-blind-transfer", until=4.0)
    sender = AnswersWith(h, (blind_transfer_events(), ""))
    call = await seat_actions(h, sender).blind_transfer("1001", "8001")
    assert sender.wire == [BLIND_TRANSFER_05]
    assert call.call_id == "1795399329.0"
    # Returned after Asterisk's BlindTransfer: the tracker has the transfer (no pre-marking)
    # and the seat is free.
    live = h.tracker.get("1795399329.0")
    assert live is not None and live.transferred_to == "8001"
    assert h.board.by_seat_id("1001").call_id is None      # type: ignore[union-attr]
    h.feed_text(_event("Hangup", Channel=CALLER_05, Uniqueid="1795399329.0",
                       Linkedid="1795399329.0", Cause="16"), 8.112)
    assert h.records["1795399329.0"].outcome is CallOutcome.TRANSFERRED


async def test_blind_transfer_asterisk_refuses_twice_is_transfer_failed() -> None:
    # The seat's leg not in a bridge: Asterisk answers "Transfer invalid" and sends
    # BlindTransfer Result: Invalid (measured). Sent once more (the call may still have been
    # being bridged); refused again, the caller stays with the seat.
    h = make_harness(seats=LONG_SEAT).replay("05-blind-transfer", until=4.0)
    refused = (blind_transfer_events("Invalid"), "Transfer invalid")
    sender = AnswersWith(h, refused, refused)
    with pytest.raises(SeatActionError) as err:
        await seat_actions(h, sender).blind_transfer("1001", "8001")
    assert err.value.code == "transfer_failed"
    assert sender.wire == [BLIND_TRANSFER_05, BLIND_TRANSFER_05.replace("a-3", "a-4")]
    await asyncio.sleep(0)      # the Invalid events arrive: still no transfer recorded
    [call] = h.tracker.active()
    assert call.transferred_to is None
    assert h.board.by_seat_id("1001").call_id == call.call_id  # type: ignore[union-attr]


@pytest.mark.parametrize("refusal", ["Transfer invalid", "Transfer failed"])
async def test_blind_transfer_refused_while_the_call_is_being_bridged_is_sent_again(
        refusal: str) -> None:
    # Asterisk sends AgentConnect a few ms before the seat and the caller are in the queue
    # bridge; a BlindTransfer in between is refused with one of these (measured). The refused
    # action did nothing: it is sent again, and its own BlindTransfer event (not the first
    # one's failure) is the outcome.
    h = make_harness(seats=LONG_SEAT).replay("05-blind-transfer", until=4.0)
    result = "Invalid" if refusal == "Transfer invalid" else "Fail"
    sender = AnswersWith(h, (blind_transfer_events(result), refusal),
                         (blind_transfer_events(), ""))
    await seat_actions(h, sender).blind_transfer("1001", "8001")
    assert sender.wire == [BLIND_TRANSFER_05, BLIND_TRANSFER_05.replace("a-3", "a-4")]
    live = h.tracker.get("1795399329.0")
    assert live is not None and live.transferred_to == "8001"


async def test_blind_transfer_reported_as_failed_is_transfer_failed() -> None:
    h = make_harness(seats=LONG_SEAT).replay("05-blind-transfer", until=4.0)
    with pytest.raises(SeatActionError) as err:
        await seat_actions(h, AnswersWith(h, (blind_transfer_events("Fail"), ""))
                           ).blind_transfer("1001", "8001")
    assert err.value.code == "transfer_failed"


async def test_blind_transfer_of_a_leg_already_gone_is_call_ended() -> None:
    h = make_harness(seats=LONG_SEAT).replay("05-blind-transfer", until=4.0)
    sender = AnswersWith(h, ([], "Channel specified does not exist"))
    with pytest.raises(SeatActionError) as err:
        await seat_actions(h, sender).blind_transfer("1001", "8001")
    assert err.value.code == "call_ended"


async def test_blind_transfer_asterisk_never_confirms_times_out() -> None:
    h = make_harness(seats=LONG_SEAT).replay("05-blind-transfer", until=4.0)
    with pytest.raises(SeatActionError) as err:
        await seat_actions(h, RecordingSender(first_id=3), transfer_timeout=0.05
                           ).blind_transfer("1001", "8001")
    assert err.value.code == "transfer_timeout"


async def test_attended_transfer_matches_trace_06_and_returns_when_the_department_answers(
        ) -> None:
    h = make_harness(seats=LONG_SEAT).replay("06-attended-transfer", until=4.0)
    sender = ReplayAfterSend(h, "06-attended-transfer", since=4.0, first_id=3)
    call = await seat_actions(h, sender).attended_transfer("1001", "8002")
    assert sender.wire == sent_by_service("06-attended-transfer", "Atxfer")
    # The department answered (its BridgeEnter at 4.614 s) before it hung up and the seat
    # came off hold (Unhold at 9.117 s): a consultation, not a failure.
    assert call.linkedid == "1795399456.0"


async def test_attended_transfer_that_asterisk_aborts_is_reported() -> None:
    # What the real Asterisk 22.5 does when the transfer cannot be made (no department, no
    # pbx-transfer prompt, no answer): Hold, then Unhold, no AttendedTransfer.
    h = make_harness(seats=LONG_SEAT).replay("06-attended-transfer", until=4.0)
    seat_leg = "Local/1001@seats-long-00000001;1"

    class Aborting(RecordingSender):
        async def send(self, action: actions.AmiAction, timeout: float | None = None) -> Reply:
            reply = await super().send(action, timeout)
            for event in ("Hold", "Unhold"):
                h.feed_text(f"Event: {event}\r\nChannel: {seat_leg}\r\n"
                            "Uniqueid: 1795399456.2\r\nLinkedid: 1795399456.0\r\n", 4.5)
            return reply

    with pytest.raises(SeatActionError) as err:
        await seat_actions(h, Aborting(first_id=3)).attended_transfer("1001", "8002")
    assert err.value.code == "transfer_failed"


async def test_attended_transfer_that_never_reaches_the_department_times_out() -> None:
    h = make_harness(seats=LONG_SEAT).replay("06-attended-transfer", until=4.0)
    with pytest.raises(SeatActionError) as err:
        await seat_actions(h, RecordingSender(first_id=3), transfer_timeout=0.05
                           ).attended_transfer("1001", "8002")
    assert err.value.code == "transfer_timeout"


async def test_three_way_matches_trace_07_in_a_room_of_its_own() -> None:
    h = make_harness(seats=LONG_SEAT).replay("07-three-way", until=4.0)
    sender = RecordingSender(first_id=3)
    room = await seat_actions(h, sender).three_way("1001", "8003")
    # The trace's call has Linkedid 1795399362.0; the recording used room 42.
    assert room == "1795399362-0"
    redirect, originate = sender.wire
    [recorded_redirect] = sent_by_service("07-three-way", "Redirect")
    assert redirect == recorded_redirect.replace("room-42", f"room-{room}")
    # The recording passed DEPT_TALK=5 to the simulated department's dialplan; a real
    # department needs no variable, so that line and the room are the only differences.
    recorded = sent_by_service("07-three-way", "Originate")[-1]
    assert originate == recorded.replace("Variable: DEPT_TALK=5\r\n", "").replace(
        "Data: 42", f"Data: {room}")


async def test_two_three_way_calls_never_share_a_room() -> None:
    # A new SeatActions per request (as the HTTP layer builds them) used to restart a
    # counter at 1: every three-way call of the floor went into ConfBridge 1.
    rooms = set()
    for trace in ("07-three-way", "05-blind-transfer"):
        h = make_harness(seats=LONG_SEAT).replay(trace, until=4.0)
        rooms.add(await seat_actions(h, RecordingSender()).three_way("1001", "8003"))
    assert len(rooms) == 2


async def test_pause_matches_trace_02_and_unpause_trace_03() -> None:
    h = make_harness().replay("02-abandoned", until=0.7)     # seat added, not yet paused
    sender = RecordingSender(first_id=2)
    await seat_actions(h, sender).pause("1001", "午休")
    assert sender.wire == sent_by_service("02-abandoned", "QueuePause")
    h = make_harness().replay("03-pause-status", until=2.5)
    sender = RecordingSender(first_id=6)
    await seat_actions(h, sender).unpause("1002")
    assert sender.wire == sent_by_service("03-pause-status", "QueuePause")[1:]


async def test_actions_refuse_what_they_cannot_do() -> None:
    h = make_harness().replay("03-pause-status", until=1.0)
    sender = RecordingSender()
    desk = seat_actions(h, sender)
    with pytest.raises(SeatActionError) as err:
        await desk.blind_transfer("1001", "8001")
    assert err.value.code == "seat_not_on_call"
    with pytest.raises(SeatActionError) as err:
        await desk.pause("1001", "逛街")
    assert err.value.code == "unknown_pause_reason"
    with pytest.raises(SeatActionError) as err:
        await desk.pause("9999", "小休")
    assert err.value.code == "unknown_seat"
    h = make_harness(seats=LONG_SEAT).replay("05-blind-transfer", until=4.0)
    with pytest.raises(SeatActionError) as err:
        await seat_actions(h, sender).blind_transfer("1001", "8001\r\nAction: Originate")
    assert err.value.code == "unknown_department"
    assert sender.wire == []


INJECTIONS = ["x\r\nAction: Originate", "x\nAction: Originate", "x\rfoo", "x\x00y",
              "x\r\n\r\nAction: Command\r\nCommand: core stop now", "x\u2028y", "x\x85y"]


@pytest.mark.parametrize("bad", INJECTIONS)
def test_every_user_controlled_field_rejects_line_breaks_and_nul(bad: str) -> None:
    good = {"queue": "12345", "interface": "Local/1001@seats/n", "channel":
            "Local/talk@citizen-00000000;1", "context": "departments", "exten": "8001"}
    builders = [
        lambda v: actions.queue_add(v, good["interface"], "seat", good["interface"]),
        lambda v: actions.queue_add(good["queue"], v, "seat", good["interface"]),
        lambda v: actions.queue_add(good["queue"], good["interface"], v, good["interface"]),
        lambda v: actions.queue_add(good["queue"], good["interface"], "seat", v),
        lambda v: actions.queue_remove(good["queue"], v),
        lambda v: actions.queue_pause(good["queue"], good["interface"], True, v),
        lambda v: actions.queue_pause(v, good["interface"], True, "小休"),
        lambda v: actions.queue_penalty(good["queue"], v, 1),
        lambda v: actions.redirect(v, good["context"], good["exten"]),
        lambda v: actions.redirect(good["channel"], v, good["exten"]),
        lambda v: actions.redirect(good["channel"], good["context"], v),
        lambda v: actions.redirect(good["channel"], good["context"], good["exten"],
                                   extra_channel=v),
        lambda v: actions.atxfer(v, good["exten"], good["context"]),
        lambda v: actions.blind_transfer(v, good["exten"], good["context"]),
        lambda v: actions.blind_transfer(good["channel"], v, good["context"]),
        lambda v: actions.blind_transfer(good["channel"], good["exten"], v),
        lambda v: actions.atxfer(good["channel"], v, good["context"]),
        lambda v: actions.hangup(v),
        lambda v: actions.originate(v, good["context"], good["exten"]),
        lambda v: actions.originate("Local/s@survey", good["context"], good["exten"],
                                    caller_id_number=v),
        lambda v: actions.originate("Local/s@survey", good["context"], good["exten"],
                                    caller_id_name=v, caller_id_number="12345"),
        lambda v: actions.originate("Local/s@survey", good["context"], good["exten"],
                                    variables={"TICKET": v}),
        lambda v: actions.originate_application("Local/8003@departments", "ConfBridge", v),
        lambda v: actions.login("hotline", v),
        lambda v: actions.queue_status(v),
    ]
    for build in builders:
        with pytest.raises(UnsafeActionValue):
            build(bad)


def test_hand_built_action_with_a_line_break_cannot_exist() -> None:
    with pytest.raises(UnsafeActionValue):
        actions.AmiAction("QueuePause", (("Reason", "a\r\nAction: Originate"),))
    with pytest.raises(UnsafeActionValue):
        actions.AmiAction("QueuePause", (("Bad Header", "x"),))
