"""The simulator's attended transfer (``Atxfer``) reports like the real Asterisk 22.5 when the
seat completes it and when the department is busy (orders in
``telephony/simulator/transfers.py``, measured on the real one with tests/asterisk)."""

from __future__ import annotations

import pytest

from telephony.simulator import PbxSimulator
from tests.telephony.simulator.ami_client import Msg, RawAmi, ami_client

SEAT = "Local/1001@seats-long/n"
# What the service watches once the seat's leg hangs up, in the order measured.
WATCHED = ("BridgeLeave", "BridgeEnter", "BridgeMerge", "QueueMemberStatus",
           "AttendedTransfer", "AgentComplete", "BridgeDestroy", "Hangup")


async def _answered_call(ami: RawAmi) -> tuple[str, str, str]:
    """A caller answered by seat 1001: (caller channel, caller Uniqueid, seat leg)."""
    await ami.response(await ami.action(
        "QueueAdd", Queue="12345", Interface=SEAT, MemberName="seat-1001",
        StateInterface="Local/1001@seats-long"))
    await ami.response(await ami.action(
        "Originate", Channel="Local/talk@citizen", Context="incoming", Exten="12345",
        Priority="1", CallerID='"" <13800138000>', Variable="SPEECH=silence/1,TALK=60",
        Async="true"))
    while (msg := await ami.read()).get("Event") != "AgentConnect":
        pass
    return msg["Channel"], msg["Uniqueid"], msg["DestChannel"]


async def _until(ami: RawAmi, done: str, channel: str | None = None) -> list[Msg]:
    out = []
    while True:
        msg = await ami.read()
        out.append(msg)
        if msg.get("Event") == done and channel in (None, msg.get("Channel")):
            return out


def _key(m: Msg) -> tuple[str, str | None]:
    return m["Event"], m.get("Channel") or m.get("Interface")


@pytest.mark.parametrize("missing", [False, True], ids=["with-target", "without-target"])
async def test_seat_hanging_up_in_the_consultation_completes_the_transfer(
        missing: bool) -> None:
    async with PbxSimulator(port=0, time_scale=20) as pbx, ami_client(pbx.port) as ami:
        pbx.transfers.target_missing_rate = 1.0 if missing else 0.0
        pbx.set_global("DEPT_TALK", "30")
        caller, caller_id, seat_leg = await _answered_call(ami)
        await ami.response(await ami.action("Atxfer", Channel=seat_leg, Exten="8002",
                                            Context="departments"))
        start = await _until(ami, "BridgeEnter", seat_leg)  # the seat in the consultation
        dept = next(m["Channel"] for m in start if m.get("Event") == "Newchannel"
                    and m["Channel"].startswith("Local/8002@departments-"))
        consult = [m for m in start if m.get("Channel") == dept
                   and m.get("Event") in ("BridgeEnter", "Newstate")]
        # The department's ;1 enters the consultation Down and goes Up when it answers;
        # it carries the call's Linkedid (so the service can tell it is this call's).
        assert [(m["Event"], m["ChannelState"]) for m in consult] == [
            ("BridgeEnter", "0"), ("Newstate", "6")]
        assert {m["Linkedid"] for m in consult} == {caller_id}
        dial_end = next(m for m in start if m.get("Event") == "DialEnd")
        assert (dial_end["DestChannel"], dial_end["DialStatus"]) == (dept, "ANSWER")

        aid = await ami.action("Hangup", Channel=seat_leg)
        seen = await _until(ami, "Hangup", seat_leg)
        [at] = [i for i, m in enumerate(seen) if m.get("ActionID") == aid]
        assert seen[at]["Response"] == "Success"
        events = [_key(m) for m in seen[at:] if m.get("Event") in WATCHED]
        seat_two = seat_leg[:-1] + "2"
        assert events == [
            ("BridgeLeave", seat_leg), ("Hangup", seat_two), ("BridgeMerge", None),
            ("BridgeLeave", dept), ("BridgeEnter", dept), ("QueueMemberStatus", SEAT),
            ("AttendedTransfer", None), ("AgentComplete", caller), ("BridgeDestroy", None),
            ("Hangup", seat_leg)]
        transfer = next(m for m in seen if m.get("Event") == "AttendedTransfer")
        assert (transfer["Result"], transfer["OrigTransfererChannel"],
                transfer["SecondTransfererChannel"], transfer["TransfereeChannel"],
                transfer["TransfereeUniqueid"], transfer["OrigBridgeNumChannels"],
                transfer["SecondBridgeNumChannels"], transfer["IsExternal"],
                transfer["DestType"], transfer["DestBridgeUniqueid"]) == (
            "Success", seat_leg, seat_leg, caller, caller_id, "2", "0", "No", "Bridge",
            transfer["OrigBridgeUniqueid"])
        if missing:
            assert not any(k.startswith("TransferTarget") for k in transfer)
        else:
            assert (transfer["TransferTargetChannel"], transfer["TransferTargetExten"],
                    transfer["TransferTargetChannelState"]) == (dept, "8002", "6")
        complete = next(m for m in seen if m.get("Event") == "AgentComplete")
        assert (complete["Uniqueid"], complete["Reason"]) == (caller_id, "transfer")
        status = next(m for m in seen if m.get("Event") == "QueueMemberStatus")
        assert (status["InCall"], status["Status"]) == ("0", "1")
        # Caller and department now talk in the queue bridge until the department hangs up.
        merged = next(m for m in seen if m.get("Event") == "BridgeEnter")
        assert merged["BridgeUniqueid"] == transfer["DestBridgeUniqueid"]
        assert merged["BridgeNumChannels"] == "2"
        tail = await _until(ami, "Hangup", caller)
        assert ("Hangup", dept) in [_key(m) for m in tail if "Event" in m]
        assert not pbx.engine.channels


async def test_busy_department_gives_the_caller_back_without_a_transfer() -> None:
    async with PbxSimulator(port=0, time_scale=20) as pbx, ami_client(pbx.port) as ami:
        pbx.set_global("DEPT_TALK_8003", "busy")
        caller, caller_id, seat_leg = await _answered_call(ami)
        await ami.response(await ami.action("Atxfer", Channel=seat_leg, Exten="8003",
                                            Context="departments"))
        seen = await _until(ami, "Unhold", seat_leg)
        names = [m.get("Event") for m in seen]
        assert "AttendedTransfer" not in names and "AgentComplete" not in names
        dial_ends = [m for m in seen if m.get("Event") == "DialEnd"]
        assert [(m["Channel"], m["DialStatus"]) for m in dial_ends] == [
            (next(m["Channel"] for m in seen if m.get("Event") == "Newchannel"
                  and m["Channel"].endswith(";2")), "BUSY")]
        # The department's ;1 never went Up, and the seat is back with the caller.
        assert not any(m.get("Event") == "Newstate" and "8003@departments" in m["Channel"]
                       for m in seen)
        back = [m for m in seen if m.get("Event") == "BridgeEnter"
                and m.get("Channel") == seat_leg][-1]
        assert back["BridgeNumChannels"] == "2"
        assert names.index("DialEnd") < names.index("Unhold")
        # The call goes on with the seat: hanging it up now is an ordinary end.
        aid = await ami.action("Hangup", Channel=seat_leg)
        rest = await _until(ami, "AgentComplete")
        assert rest[-1]["Reason"] == "agent" and rest[-1]["Uniqueid"] == caller_id
        assert aid
