"""Agent actions produce exactly the AMI the real Asterisk executed in traces 02, 05, 06, 07."""

from __future__ import annotations

import pytest

from telephony import actions
from telephony.errors import UnsafeActionValue
from telephony.seat_actions import SeatActionError, SeatActions
from telephony.seats import SeatSpec
from tests.conftest import load_trace
from tests.telephony.fakes import RecordingSender
from tests.telephony.tracker_harness import Harness, make_harness

LONG_SEAT = [SeatSpec("1001", "坐席1001", "Local/1001@seats-long/n")]
DEPARTMENTS = {"8001": "市水务局", "8002": "市住建局", "8003": "市市场监管局"}
REASONS = frozenset({"小休", "午休", "培训", "会议"})


def sent_by_service(name: str, action: str) -> list[str]:
    return [ln.text for ln in load_trace(name)
            if ln.dir == "sent" and ln.text.startswith(f"Action: {action}\r\n")]


def seat_actions(h: Harness, sender: RecordingSender) -> SeatActions:
    return SeatActions(sender, h.tracker, h.board, pause_reasons=REASONS,
                       departments=DEPARTMENTS, room_numbers=lambda: 42)


async def test_blind_transfer_matches_trace_05() -> None:
    h = make_harness(seats=LONG_SEAT).replay("05-blind-transfer", until=4.0)
    sender = RecordingSender(first_id=3)
    call = await seat_actions(h, sender).blind_transfer("1001", "8001")
    assert sender.wire == sent_by_service("05-blind-transfer", "Redirect")
    assert h.tracker.get(call.call_id).transferred_to == "8001"  # type: ignore[union-attr]


async def test_attended_transfer_matches_trace_06() -> None:
    h = make_harness(seats=LONG_SEAT).replay("06-attended-transfer", until=4.0)
    sender = RecordingSender(first_id=3)
    await seat_actions(h, sender).attended_transfer("1001", "8002")
    assert sender.wire == sent_by_service("06-attended-transfer", "Atxfer")


async def test_three_way_matches_trace_07() -> None:
    h = make_harness(seats=LONG_SEAT).replay("07-three-way", until=4.0)
    sender = RecordingSender(first_id=3)
    room = await seat_actions(h, sender).three_way("1001", "8003")
    assert room == 42
    redirect, originate = sender.wire
    assert [redirect] == sent_by_service("07-three-way", "Redirect")
    # The recording passed DEPT_TALK=5 to the simulated department's dialplan; a real
    # department needs no variable, so that one line is the only difference.
    recorded = sent_by_service("07-three-way", "Originate")[-1]
    assert originate == recorded.replace("Variable: DEPT_TALK=5\r\n", "")


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
