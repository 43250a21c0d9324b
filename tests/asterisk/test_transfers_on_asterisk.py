"""Transfers, three-way calls and seat devices, done by the service to a real Asterisk 22.5.

Each test here failed before its fix (issue 10 §2): every three-way call went into ConfBridge
room 1 (two citizens in one conference), an attended transfer was stored as a plain answered
call, an attended transfer Asterisk gave up on answered 200 OK, and a seat with its own
interface was watched through the template's device.
"""

from __future__ import annotations

import re

from telephony.model import CallOutcome, CallRecord
from tests.asterisk.conftest import SEATS, ServiceFactory, ServiceOnPbx, agent_token
from tests.asterisk.harness import Asterisk, HarnessAmi
from tests.e2e.conftest import eventually


async def _long_seats(asterisk: Asterisk, seconds: int = 60) -> None:
    for seat in SEATS:
        await asterisk.aset_global(f"SEAT_TALK_{seat}", str(seconds))


def _answered(svc_calls: list[CallRecord], call_ids: set[str]) -> list[CallRecord] | None:
    found = [c for c in svc_calls if c.call_id in call_ids and c.answered_at is not None]
    return found if len(found) == len(call_ids) else None


async def _ended_record(svc: ServiceOnPbx, call_id: str) -> CallRecord:
    """The call's record as stored once it has ended."""
    async def stored() -> CallRecord | None:
        found = [r for r in await svc.records() if r.call_id == call_id and r.ended_at]
        return found[0] if found else None

    record: CallRecord = await eventually(stored, timeout=20, what="the call's end stored")
    return record


def _conference_channels(listing: str) -> list[str]:
    """Channel names in ``confbridge list <room>`` output."""
    return re.findall(r"(Local/\S+)", listing)


async def test_two_three_way_calls_are_two_conferences(service: ServiceFactory,
                                                       asterisk: Asterisk,
                                                       pbx: HarnessAmi) -> None:
    await _long_seats(asterisk)
    await asterisk.aset_global("DEPT_TALK", "30")
    async with service() as svc:
        ids = {await pbx.originate_caller(f"1380000000{i}", talk=30) for i in (1, 2)}
        calls = await eventually(lambda: _answered(svc.hot.tracker.active(), ids),
                                 what="both calls answered")
        rooms = {}
        for call in calls:
            status, body = await svc.post(f"/api/seats/{call.seat}/three-way",
                                          {"department": "8003"},
                                          token=agent_token(call.seat or ""))
            assert status == 200, body
            rooms[call.call_id] = body["result"]
        assert len(set(rooms.values())) == 2, rooms
        for call in calls:
            room = rooms[call.call_id]
            # Caller, seat and department, and nobody from the other call.
            listing = await eventually(
                lambda room=room: _three(asterisk, room), timeout=10,
                what=f"three parties in room {room}")
            assert call.caller_channel in listing
            others = [c for c in calls if c.call_id != call.call_id]
            assert all(o.caller_channel not in listing for o in others)


async def _three(asterisk: Asterisk, room: str) -> list[str] | None:
    channels = _conference_channels(await asterisk.acli(f"confbridge list {room}"))
    return channels if len(channels) == 3 else None


async def test_attended_transfer_through_the_desk_is_recorded_as_transferred(
        service: ServiceFactory, asterisk: Asterisk, pbx: HarnessAmi) -> None:
    await _long_seats(asterisk)
    await asterisk.aset_global("DEPT_TALK", "30")
    async with service() as svc:
        call_id = await pbx.originate_caller("13800000003", talk=60)
        [call] = await eventually(lambda: _answered(svc.hot.tracker.active(), {call_id}),
                                  what="answered")
        seat = call.seat or ""
        status, body = await svc.post(f"/api/seats/{seat}/transfer",
                                      {"department": "8002", "mode": "attended"},
                                      token=agent_token(seat))
        # 200 only once the department answered the consultation.
        assert status == 200, body
        # The seat completes the transfer by hanging up its leg.
        status, body = await svc.post(f"/api/seats/{seat}/hangup", token=agent_token(seat))
        assert status == 200, body
        await pbx.wait_event(lambda m: m.get("Event") == "AttendedTransfer", what="transfer")
        # The citizen ends the call with the department (on the line 60 s otherwise: long
        # enough that a loaded machine never ends the call before the transfer is made).
        await pbx.action("Hangup", Channel=call.caller_channel)
        record = await _ended_record(svc, call_id)
        assert record.outcome is CallOutcome.TRANSFERRED
        assert record.transferred_to == "8002"
        rows = await asterisk.aqueue_log()
        assert any(r.callid == call_id and r.event == "ATTENDEDTRANSFER" for r in rows)


async def test_attended_transfer_from_the_seat_phone_is_recorded_too(
        service: ServiceFactory, asterisk: Asterisk, pbx: HarnessAmi) -> None:
    # Not through the API: Atxfer sent by someone else (a phone's *2 feature does the same),
    # so only Asterisk's events can tell the service.
    await _long_seats(asterisk)
    await asterisk.aset_global("DEPT_TALK", "30")
    async with service() as svc:
        call_id = await pbx.originate_caller("13800000004", talk=60)
        [call] = await eventually(lambda: _answered(svc.hot.tracker.active(), {call_id}),
                                  what="answered")
        await pbx.action("Atxfer", Channel=call.seat_channel or "", Exten="8001",
                         Context="departments")
        # The department's leg enters the consultation bridge while it still rings: wait for
        # it to be up (answered) before the seat hangs up, as an agent would.
        await pbx.wait_event(lambda m: m.get("Event") == "Newstate"
                             and m.get("ChannelState") == "6"
                             and "8001@departments" in m.get("Channel", ""), what="consult")
        await pbx.action("Hangup", Channel=call.seat_channel or "")
        await pbx.wait_event(lambda m: m.get("Event") == "AttendedTransfer", what="transfer")
        await pbx.action("Hangup", Channel=call.caller_channel)
        record = await _ended_record(svc, call_id)
        assert (record.outcome, record.transferred_to) == (CallOutcome.TRANSFERRED, "8001")


async def test_attended_transfer_asterisk_gives_up_on_is_reported_not_200(
        service: ServiceFactory, asterisk: Asterisk, pbx: HarnessAmi) -> None:
    await _long_seats(asterisk)
    await asterisk.aset_global("DEPT_TALK_8003", "busy")
    async with service() as svc:
        call_id = await pbx.originate_caller("13800000006", talk=15)
        [call] = await eventually(lambda: _answered(svc.hot.tracker.active(), {call_id}),
                                  what="answered")
        seat = call.seat or ""
        status, body = await svc.post(f"/api/seats/{seat}/transfer",
                                      {"department": "8003", "mode": "attended"},
                                      token=agent_token(seat))
        assert (status, body["error"]) == (409, "transfer_failed"), body
        # The citizen is back with the seat, the call goes on, nothing recorded as moved.
        live = svc.hot.tracker.get(call_id)
        assert live is not None and live.transferred_to is None
        assert svc.hot.board.by_seat_id(seat).call_id == call_id  # type: ignore[union-attr]
