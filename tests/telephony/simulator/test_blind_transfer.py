"""The simulator's ``BlindTransfer`` answers and reports like the real Asterisk 22.5 (order in
``telephony/simulator/transfers.py``, measured on the real one in tests/asterisk)."""

from __future__ import annotations

from telephony.simulator import PbxSimulator
from tests.telephony.simulator.ami_client import Msg, RawAmi, ami_client

SEAT = "Local/1001@seats-long/n"
# What the service watches, in the order measured on the real Asterisk.
WATCHED = ("Unhold", "BlindTransfer", "AgentComplete", "Hangup", "QueueMemberStatus")


async def _answered_call(ami: RawAmi) -> tuple[str, str, str]:
    """A caller answered by seat 1001: (caller channel, caller Uniqueid, seat leg)."""
    await ami.response(await ami.action(
        "QueueAdd", Queue="12345", Interface=SEAT, MemberName="seat-1001",
        StateInterface="Local/1001@seats-long"))
    await ami.response(await ami.action(
        "Originate", Channel="Local/talk@citizen", Context="incoming", Exten="12345",
        Priority="1", CallerID='"" <13800138000>',
        Variable="SPEECH=silence/1,TALK=60,DEPT_TALK=2", Async="true"))
    while (msg := await ami.read()).get("Event") != "AgentConnect":
        pass
    return msg["Channel"], msg["Uniqueid"], msg["DestChannel"]


async def _until(ami: RawAmi, done: str, channel: str) -> list[Msg]:
    out = []
    while True:
        msg = await ami.read()
        out.append(msg)
        if msg.get("Event") == done and msg.get("Channel") == channel:
            return out


async def test_blind_transfer_of_the_seat_leg_moves_the_caller_and_frees_the_seat() -> None:
    async with PbxSimulator(port=0, time_scale=20) as pbx, ami_client(pbx.port) as ami:
        caller, caller_id, seat_leg = await _answered_call(ami)
        aid = await ami.action("BlindTransfer", Channel=seat_leg, Exten="8001",
                               Context="departments")
        seen = await _until(ami, "Hangup", caller)     # the caller leaves the department
        [at] = [i for i, m in enumerate(seen) if m.get("ActionID") == aid]
        assert (seen[at]["Response"], seen[at]["Message"]) == ("Success", "Transfer succeeded")
        before = {m.get("Event") for m in seen[:at]}     # the call's own events until then
        assert before.isdisjoint(WATCHED + ("BridgeLeave",)), before
        events = [m for m in seen[at:] if m.get("Event") in WATCHED]
        assert [(m["Event"], m.get("Channel") or m.get("Interface")) for m in events] == [
            ("Unhold", seat_leg), ("BlindTransfer", None), ("AgentComplete", caller),
            ("Hangup", seat_leg), ("Hangup", seat_leg[:-1] + "2"),
            ("QueueMemberStatus", SEAT), ("Hangup", caller)]
        transfer = events[1]
        assert (transfer["Result"], transfer["TransfererChannel"], transfer["TransfereeChannel"],
                transfer["TransfereeUniqueid"], transfer["Context"], transfer["Extension"],
                transfer["IsExternal"], transfer["BridgeNumChannels"]) == (
            "Success", seat_leg, caller, caller_id, "departments", "8001", "Yes", "2")
        complete = events[2]
        assert (complete["Uniqueid"], complete["Reason"], complete["DestChannel"]) == (
            caller_id, "transfer", seat_leg)
        assert (events[5]["InCall"], events[5]["Status"]) == ("0", "1")
        # The caller ran [departments] (Wait DEPT_TALK) before hanging up.
        assert any(m.get("Event") == "Newexten" and m.get("Channel") == caller
                   and m.get("Context") == "departments" and m.get("Application") == "Wait"
                   for m in seen)


async def test_blind_transfer_refusals() -> None:
    async with PbxSimulator(port=0, time_scale=20) as pbx, ami_client(pbx.port) as ami:
        caller, _, seat_leg = await _answered_call(ami)
        gone = await ami.response(await ami.action(
            "BlindTransfer", Channel="Local/9999@seats-00000099;1", Exten="8001",
            Context="departments"))
        assert (gone["Response"], gone["Message"]) == ("Error", "Channel specified does not exist")
        # The caller's ;2 is in no bridge: "Transfer invalid", then the event saying so.
        two = caller[:-1] + "2"
        aid = await ami.action("BlindTransfer", Channel=two, Exten="8001", Context="departments")
        refused = await ami.response(aid)
        assert (refused["Response"], refused["Message"]) == ("Error", "Transfer invalid")
        while (msg := await ami.read()).get("Event") != "BlindTransfer":
            pass
        assert (msg["Result"], msg["TransfererChannel"]) == ("Invalid", two)
        assert "TransfereeChannel" not in msg and "BridgeUniqueid" not in msg
        # The call goes on: the seat's leg is still there to transfer.
        ok = await ami.response(await ami.action(
            "BlindTransfer", Channel=seat_leg, Exten="8001", Context="departments"))
        assert ok["Message"] == "Transfer succeeded"
