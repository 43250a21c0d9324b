"""Transfers are recorded from Asterisk's own events, whoever made them (the API or the seat's
phone). The completion of an attended transfer is not in the recorded traces (trace 06 ends
with the department hanging up during the consultation); the events below are the ones the real
Asterisk 22.5 sent when the seat hung up during the consultation (same channels as trace 06)."""

from __future__ import annotations

import pytest

from telephony.model import CallOutcome
from telephony.seats import SeatSpec
from tests.telephony.tracker_harness import make_harness

LONG_SEAT = [SeatSpec("1001", "坐席1001", "Local/1001@seats-long/n")]
CALLER = "Local/talk@citizen-00000000;1"
SEAT_LEG = "Local/1001@seats-long-00000001;1"


def _event(name: str, **fields: str) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in {"Event": name, **fields}.items())


ATTENDED_DONE = _event(
    "AttendedTransfer", Result="Success", OrigTransfererChannel=SEAT_LEG,
    OrigTransfererUniqueid="1795399456.2", SecondTransfererChannel=SEAT_LEG,
    TransfereeChannel=CALLER, TransfereeUniqueid="1795399456.0",
    TransferTargetChannel="Local/8002@departments-00000002;1", TransferTargetContext="departments",
    TransferTargetExten="8002", TransferTargetUniqueid="1795399459.4", IsExternal="No",
    DestType="Bridge", DestBridgeUniqueid="5694915f-ff5f-4303-91d1-2c38ca60b11c")
SEAT_HANGUP = _event("Hangup", Channel=SEAT_LEG, Uniqueid="1795399456.2",
                     Linkedid="1795399456.0", Cause="16")
AGENT_COMPLETE_TRANSFER = _event(
    "AgentComplete", Channel=CALLER, Uniqueid="1795399456.0", Linkedid="1795399456.0",
    Queue="12345", Interface="Local/1001@seats-long/n", MemberName="seat-1001", HoldTime="0",
    TalkTime="4", Reason="transfer")
CALLER_HANGUP = _event("Hangup", Channel=CALLER, Uniqueid="1795399456.0",
                       Linkedid="1795399456.0", Cause="16")


def test_completed_attended_transfer_is_recorded_as_transferred() -> None:
    h = make_harness(seats=LONG_SEAT).replay("06-attended-transfer", until=4.7)
    for t, text in enumerate((ATTENDED_DONE, SEAT_HANGUP, AGENT_COMPLETE_TRANSFER)):
        h.feed_text(text, 6.0 + t * 0.001)
    call = h.records["1795399456.0"]
    assert call.transferred_to == "8002"
    assert h.board.by_seat_id("1001").call_id is None      # type: ignore[union-attr]
    h.feed_text(CALLER_HANGUP, 12.0)                        # the citizen ends with the department
    call = h.records["1795399456.0"]
    assert call.outcome is CallOutcome.TRANSFERRED
    assert call.talk_seconds == pytest.approx(12.0 - 1.005)


def test_attended_transfer_without_target_fields_names_the_consulted_department() -> None:
    # The real Asterisk leaves out every TransferTarget* field in about half the runs; the
    # department is known from its leg entering the consultation bridge (trace 06, 4.614 s).
    bare = "".join(line + "\r\n" for line in ATTENDED_DONE.split("\r\n")
                   if line and not line.startswith("TransferTarget"))
    h = make_harness(seats=LONG_SEAT).replay("06-attended-transfer", until=4.7)
    h.feed_text(bare, 6.0)
    h.feed_text(AGENT_COMPLETE_TRANSFER, 6.001)
    h.feed_text(CALLER_HANGUP, 12.0)
    call = h.records["1795399456.0"]
    assert (call.outcome, call.transferred_to) == (CallOutcome.TRANSFERRED, "8002")


def test_transfer_reported_only_by_agent_complete_still_counts() -> None:
    # The AttendedTransfer event was missed (link down): Reason=transfer is still a transfer.
    h = make_harness(seats=LONG_SEAT).replay("06-attended-transfer", until=4.7)
    h.feed_text(AGENT_COMPLETE_TRANSFER, 6.0)
    h.feed_text(CALLER_HANGUP, 8.0)
    call = h.records["1795399456.0"]
    assert call.outcome is CallOutcome.TRANSFERRED and call.transferred_to == ""


def test_blind_transfer_from_the_seat_phone_is_recorded() -> None:
    # Feature code #1 on the seat's phone: Asterisk sends BlindTransfer (no API call made).
    h = make_harness(seats=LONG_SEAT).replay("05-blind-transfer", until=4.0)
    h.feed_text(_event("BlindTransfer", Result="Success", TransfererChannel="Local/1001@seats-"
                       "long-00000001;1", TransfereeChannel=CALLER,
                       TransfereeUniqueid="1795399329.0", IsExternal="No",
                       Context="departments", Extension="8001"), 4.1)
    h.feed_text(_event("Hangup", Channel=CALLER, Uniqueid="1795399329.0",
                       Linkedid="1795399329.0", Cause="16"), 9.0)
    call = h.records["1795399329.0"]
    assert call.outcome is CallOutcome.TRANSFERRED and call.transferred_to == "8001"


def test_failed_transfer_leaves_an_answered_call() -> None:
    h = make_harness(seats=LONG_SEAT).replay("06-attended-transfer")
    h.feed_text(ATTENDED_DONE.replace("Result: Success", "Result: Fail"), 9.2)
    h.feed_text(CALLER_HANGUP, 10.0)
    call = h.records["1795399456.0"]
    assert call.outcome is CallOutcome.ANSWERED and call.transferred_to is None
