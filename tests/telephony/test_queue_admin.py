"""Config → QueueAdd/QueueRemove/QueuePenalty as a diff against what Asterisk reports."""

from __future__ import annotations

from telephony.events import DeviceStatus, MemberChange, MemberState
from telephony.queue_admin import Membership, apply, plan
from tests.telephony.fakes import RecordingSender


def member(queue: str, ext: str, penalty: int = 0) -> MemberState:
    return MemberState(MemberChange.LISTED, queue, f"Local/{ext}@seats/n", f"seat-{ext}",
                       DeviceStatus.NOT_INUSE, False, "", False, penalty, 0)


def want(queue: str, ext: str, penalty: int = 0) -> Membership:
    return Membership(queue, f"Local/{ext}@seats/n", f"seat-{ext}", f"Local/{ext}@seats",
                      penalty)


def test_plan_adds_removes_and_repenalises_only_managed_queues() -> None:
    actual = [member("12345", "1001"), member("12345", "1002", 0),
              member("12345", "1003"), member("other", "1009")]
    desired = [want("12345", "1001"), want("12345", "1002", 2), want("12345", "1004"),
               want("enterprise", "1001", 1)]
    actions = plan(desired, actual, ["12345", "enterprise"])
    summary = [(a.name, a.get("Queue"), a.get("Interface"), a.get("Penalty")) for a in actions]
    assert summary == [
        ("QueueRemove", "12345", "Local/1003@seats/n", None),
        ("QueueAdd", "12345", "Local/1004@seats/n", None),
        ("QueueAdd", "enterprise", "Local/1001@seats/n", "1"),
        ("QueuePenalty", "12345", "Local/1002@seats/n", "2"),
    ]   # the member of "other" (not in config) is left alone


def test_plan_is_empty_when_asterisk_already_matches() -> None:
    assert plan([want("12345", "1001")], [member("12345", "1001")], ["12345"]) == []


def test_queue_add_matches_the_recorded_action_of_trace_01() -> None:
    (add,) = plan([want("12345", "1001")], [], ["12345"])
    assert add.to_wire("a-1") == (
        "Action: QueueAdd\r\nQueue: 12345\r\nInterface: Local/1001@seats/n\r\n"
        "MemberName: seat-1001\r\nStateInterface: Local/1001@seats\r\nActionID: a-1\r\n\r\n")


async def test_apply_counts_each_kind() -> None:
    sender = RecordingSender()
    report = await apply(sender, plan([want("12345", "1004"), want("12345", "1002", 3)],
                                      [member("12345", "1002"), member("12345", "1003")],
                                      ["12345"]))
    assert (report.added, report.removed, report.penalised, report.errors) == (1, 1, 1, [])
    assert [a.name for a in sender.sent] == ["QueueRemove", "QueueAdd", "QueuePenalty"]
