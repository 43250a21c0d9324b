"""The pause each seat should have: learnt from Asterisk's member events, followed after a
resync where Asterisk knows better, re-applied where Asterisk forgot (a restart). Events as a
real Asterisk 22.5 sent them (QueuePause with Reason 午休, QueueAdd with Paused and Reason)."""

from __future__ import annotations

from datetime import UTC, datetime

from telephony.events import MemberState, parse_event
from telephony.pauses import DesiredPause, PauseBook
from telephony.queue_admin import Membership, plan

T = datetime(2026, 12, 7, 23, 47, tzinfo=UTC)


def member_event(name: str, ext: str, *, paused: bool, reason: str = "",
                 last_pause: int = 0, queue: str = "12345") -> MemberState:
    raw = {"Event": name, "Queue": queue, "MemberName": f"seat-{ext}",
           "Interface": f"Local/{ext}@seats-long/n", "StateInterface": f"Local/{ext}@seats-long",
           "Membership": "dynamic", "Penalty": "0", "CallsTaken": "0", "LastCall": "0",
           "LastPause": str(last_pause), "LoginTime": "1796687273", "InCall": "0",
           "Status": "1", "Paused": str(int(paused)), "PausedReason": reason,
           "Ringinuse": "0", "Wrapuptime": "0"}
    if name == "QueueMember":     # a QueueStatus row names these differently
        raw["Name"] = raw.pop("MemberName")
        raw["Location"] = raw.pop("Interface")
    ev = parse_event(raw)
    assert isinstance(ev, MemberState)
    return ev


def book() -> tuple[PauseBook, list[tuple[str, DesiredPause]]]:
    changes: list[tuple[str, DesiredPause]] = []
    pauses = PauseBook(lambda interface: interface.split("/")[1].split("@")[0], lambda: T)
    pauses.subscribe(lambda seat, pause: changes.append((seat, pause)))
    return pauses, changes


def test_a_pause_from_anyone_is_remembered_and_an_unpause_too() -> None:
    pauses, changes = book()
    pauses.on_event(member_event("QueueMemberPause", "1003", paused=True, reason="午休",
                                 last_pause=1796687274))
    assert pauses.get("1003") == DesiredPause(True, "午休", T)
    pauses.on_event(member_event("QueueMemberPause", "1003", paused=False,
                                 last_pause=1796687274))
    assert pauses.get("1003") == DesiredPause(False, "", T)
    assert [seat for seat, _ in changes] == ["1003", "1003"]
    # Added already paused (as the service re-adds after a restart): the same pause, no change.
    pauses.on_event(member_event("QueueMemberAdded", "1002", paused=True, reason="会议",
                                 last_pause=1796687018))
    pauses.on_event(member_event("QueueMemberAdded", "1002", paused=True, reason="会议",
                                 last_pause=1796687018))
    assert len(changes) == 3
    # A status change or a removal is not a choice of pause.
    pauses.on_event(member_event("QueueMemberRemoved", "1002", paused=False))
    pauses.on_event(member_event("QueueMemberStatus", "1002", paused=False))
    assert pauses.get("1002") == DesiredPause(True, "会议", T)


def test_after_a_resync_asterisk_wins_only_where_it_knows_the_pause() -> None:
    pauses, _ = book()
    pauses.load({"1001": DesiredPause(True, "会议", T), "1002": DesiredPause(True, "培训", T)})
    pauses.adopt([
        # 1001 was unpaused from the phone while the service could not see.
        member_event("QueueMember", "1001", paused=False, last_pause=1796687274),
        # 1002 is fresh after a restart (never paused since added): Asterisk knows nothing.
        member_event("QueueMember", "1002", paused=False),
        member_event("QueueMember", "1003", paused=True, reason="小休", last_pause=1796687300),
    ])
    assert pauses.get("1001") == DesiredPause(False, "", T)
    assert pauses.get("1002") == DesiredPause(True, "培训", T)
    assert pauses.get("1003") == DesiredPause(True, "小休", T)


def want(ext: str, paused: bool = False, reason: str = "") -> Membership:
    return Membership("12345", f"Local/{ext}@seats-long/n", f"seat-{ext}",
                      f"Local/{ext}@seats-long", paused=paused, reason=reason)


def test_a_member_asterisk_lost_is_added_back_with_its_pause() -> None:
    (add,) = plan([want("1002", True, "会议")], [], ["12345"])
    # The QueueAdd that made Asterisk 22.5 report Paused: 1, PausedReason: 会议.
    assert add.to_wire("a-1") == (
        "Action: QueueAdd\r\nQueue: 12345\r\nInterface: Local/1002@seats-long/n\r\n"
        "MemberName: seat-1002\r\nStateInterface: Local/1002@seats-long\r\nPaused: true\r\n"
        "Reason: 会议\r\nActionID: a-1\r\n\r\n")


def test_a_member_that_forgot_its_pause_is_paused_and_one_that_knows_is_left() -> None:
    actual = [member_event("QueueMember", "1001", paused=False),
              member_event("QueueMember", "1002", paused=False, last_pause=1796687274),
              member_event("QueueMember", "1003", paused=True, reason="小休",
                           last_pause=1796687274)]
    desired = [want("1001", True, "会议"), want("1002", False), want("1003", True, "小休")]
    (pause,) = plan(desired, actual, ["12345"])
    assert (pause.name, pause.get("Interface"), pause.get("Paused"), pause.get("Reason")) == (
        "QueuePause", "Local/1001@seats-long/n", "true", "会议")
