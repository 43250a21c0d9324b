"""What an agent can do to a seat and its call, as AMI action sequences.

Each sequence is the one the real Asterisk 22.5 executed in the recorded sessions:

* pause/unpause with a reason: ``QueuePause`` per queue (trace 02, 03);
* blind transfer to a department: ``BlindTransfer`` of the seat's leg to
  ``<number>@departments``, so that Asterisk itself reports the transfer (``BlindTransfer``
  event, ``AgentComplete Reason: transfer``, queue_log ``BLINDTRANSFER``). Trace 05 recorded a
  ``Redirect`` of the caller instead, which Asterisk 22.5 logs as no transfer at all
  (``COMPLETECALLER`` when the citizen leaves the department, the department's talk counted
  as the seat's);
* attended transfer: ``Atxfer`` on the seat's leg to ``<number>@departments`` (trace 06;
  needs ``atxfer`` in features.conf and Queue option ``t``);
* three-way call (三方通话): a dual ``Redirect`` of caller and seat into ``threeway,room-N``
  (ConfBridge N), then ``Originate`` of the department straight into ``ConfBridge(N)``
  (trace 07). The room is named after the call's Linkedid, so two calls can never share a
  conference: not across requests, service instances or restarts (a counter per request put
  every three-way call of the floor in room 1, two citizens in one conference);
* hang up: ``Hangup`` of the seat's leg.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import Any, Literal

from telephony import actions
from telephony.calls import CallTracker
from telephony.errors import AmiActionFailed, TelephonyError
from telephony.events import (
    AmiEvent, ChannelBridged, ChannelHangup, ChannelHold, ChannelUp, TransferDone, leg_of,
)
from telephony.model import CallRecord, SeatSnapshot
from telephony.ports import ActionSender, EventSource
from telephony.seats import SeatBoard

log = logging.getLogger(__name__)

# manager.c's answers to BlindTransfer: the channel is gone (the call ended meanwhile); the
# seat's leg is in no bridge or alone in it (ast_bridge_transfer_blind's INVALID), or the
# caller could not be moved (its FAIL). Both came on the real Asterisk 22.5 for transfers sent
# while the queue was still bridging the call; each result is also published as the
# BlindTransfer event.
_NO_CHANNEL = "Channel specified does not exist"
_NOT_YET_BRIDGED = frozenset({"Transfer invalid", "Transfer failed"})
# The seat and the caller are in the queue bridge a few milliseconds after AgentConnect.
REFUSED_RETRY_DELAY = 0.25


SeatActionCode = Literal["unknown_seat", "unknown_department", "unknown_pause_reason",
                         "seat_not_on_call", "call_ended", "transfer_failed", "transfer_timeout"]


class SeatActionError(TelephonyError):
    """An agent action that cannot be done; ``code`` is stable (the HTTP layer answers it
    with its status), ``message`` is Chinese for the agent."""

    def __init__(self, code: SeatActionCode, message: str) -> None:
        self.code: SeatActionCode = code
        self.message = message
        super().__init__(message)

    @property
    def details(self) -> dict[str, Any]:
        """Nothing more than the message says."""
        return {}


class SeatActions:
    """Agent-facing actions on seats and their calls."""

    def __init__(self, link: ActionSender, tracker: CallTracker, board: SeatBoard,
                 events: EventSource, *, pause_reasons: frozenset[str],
                 departments: Mapping[str, str], hotline_number: str = "12345",
                 transfer_context: str = "departments", threeway_context: str = "threeway",
                 transfer_timeout: float = 25.0) -> None:
        self._link = link
        self._tracker = tracker
        self._board = board
        self._events = events
        self._reasons = pause_reasons
        self._departments = departments
        self._hotline = hotline_number
        self._transfer_context = transfer_context
        self._threeway_context = threeway_context
        self._transfer_timeout = transfer_timeout

    def _seat(self, seat_id: str) -> SeatSnapshot:
        seat = self._board.by_seat_id(seat_id)
        if seat is None:
            raise SeatActionError("unknown_seat", f"坐席 {seat_id} 不存在")
        return seat

    def _call(self, seat: SeatSnapshot) -> CallRecord:
        call = self._tracker.call_of_seat(seat.interface)
        if call is None or call.seat_channel is None:
            raise SeatActionError("seat_not_on_call", f"坐席 {seat.seat_id} 当前没有通话")
        return call

    def _department(self, number: str) -> str:
        if number not in self._departments:
            raise SeatActionError("unknown_department", f"未配置的部门号码：{number[:20]}")
        return number

    async def pause(self, seat_id: str, reason: str) -> None:
        """示忙: pause the seat in each of its queues with a configured reason."""
        if reason not in self._reasons:
            raise SeatActionError("unknown_pause_reason", f"未配置的示忙原因：{reason[:20]}")
        seat = self._seat(seat_id)
        for queue in seat.queues:
            await self._link.send(actions.queue_pause(queue, seat.interface, True, reason))

    async def unpause(self, seat_id: str) -> None:
        """示闲: unpause the seat in each of its queues."""
        seat = self._seat(seat_id)
        for queue in seat.queues:
            await self._link.send(actions.queue_pause(queue, seat.interface, False))

    async def blind_transfer(self, seat_id: str, department: str) -> CallRecord:
        """转接: send the caller to the department; the seat is freed at once.

        Asterisk carries out ``BlindTransfer`` before it answers the action ("Transfer
        succeeded", or an error); its ``BlindTransfer`` event follows with the same result.
        Returns once that event says ``Success`` (by then the tracker has the call's
        ``transferred_to``); another result, the caller still with the seat, is
        ``transfer_failed``; no event within the transfer timeout is ``transfer_timeout``; a
        seat's leg that no longer exists is ``call_ended``.

        ``AgentConnect`` comes a few milliseconds before the seat and the caller are in the
        queue bridge, and a ``BlindTransfer`` in between is refused: "Transfer invalid" (the
        seat's leg not bridged yet) or "Transfer failed" (the caller cannot be moved yet);
        measured on the real Asterisk 22.5 in about 1 of 5 transfers sent the instant the
        service saw the answer, and in none sent later. A refused action did nothing, so it
        is sent once more after :data:`REFUSED_RETRY_DELAY`; a second refusal stands.
        """
        number = self._department(department)
        call = self._call(self._seat(seat_id))
        seat_leg = call.seat_channel
        assert seat_leg is not None
        reports: list[TransferDone] = []     # Asterisk's BlindTransfer events for this leg
        reported = asyncio.Event()

        def watch(ev: AmiEvent) -> None:
            match ev:
                case TransferDone(attended=False) if ev.transferer_channel == seat_leg:
                    reports.append(ev)
                    reported.set()

        async def outcome(attempts: int) -> TransferDone:
            # A refused attempt has its own (failed) event: the outcome is a success, or
            # else the last attempt's report.
            while not any(r.success for r in reports) and len(reports) < attempts:
                reported.clear()
                await reported.wait()
            return next((r for r in reports if r.success), reports[-1])

        action = actions.blind_transfer(seat_leg, number, self._transfer_context)
        unsubscribe = self._events.subscribe(watch)
        try:
            attempts = 1
            try:
                await self._link.send(action)
            except AmiActionFailed as exc:
                if exc.message not in _NOT_YET_BRIDGED:
                    raise
                log.info("BlindTransfer of %s refused (%s), sent again: the call was still "
                         "being bridged", call.call_id, exc.message)
                await asyncio.sleep(REFUSED_RETRY_DELAY)
                attempts = 2
                await self._link.send(action)
            done = await asyncio.wait_for(outcome(attempts), self._transfer_timeout)
        except AmiActionFailed as exc:
            log.warning("BlindTransfer of %s to %s refused: %s", call.call_id, number,
                        exc.message)
            if exc.message == _NO_CHANNEL:
                raise SeatActionError("call_ended", "通话已结束，转接未完成") from None
            raise SeatActionError("transfer_failed",
                                  f"交换机未能转接部门 {number}，通话仍在坐席") from None
        except TimeoutError:
            raise SeatActionError("transfer_timeout",
                                  f"交换机已受理转接部门 {number}，但 "
                                  f"{self._transfer_timeout:g} 秒内未确认，请查看话机状态") from None
        finally:
            unsubscribe()
        if not done.success:
            raise SeatActionError("transfer_failed",
                                  f"转接部门 {number} 未成功（{done.result or '未知'}），通话仍在坐席")
        return call

    async def attended_transfer(self, seat_id: str, department: str) -> CallRecord:
        """咨询转接: the seat consults the department first, caller on hold (trace 06).

        Returns once the department has answered the consultation; the transfer completes
        when the seat hangs up, and the tracker records it from Asterisk's
        ``AttendedTransfer``. ``Atxfer``'s own response only says the request was queued: if
        Asterisk then gives up (the department does not answer, the number does not exist,
        the ``pbx-transfer`` prompt is missing), the seat comes off hold again (``Unhold``)
        with no transfer; that is reported as ``transfer_failed``.
        """
        number = self._department(department)
        call = self._call(self._seat(seat_id))
        assert call.seat_channel is not None
        own_legs = {leg_of(call.caller_channel), leg_of(call.seat_channel)}
        outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def watch(ev: AmiEvent) -> None:
            if outcome.done():
                return
            match ev:
                case ChannelBridged(up=True) | ChannelUp() if (
                        ev.linkedid == call.linkedid and leg_of(ev.channel) not in own_legs):
                    outcome.set_result("consulting")
                case ChannelHold(on_hold=False) if ev.channel == call.seat_channel:
                    outcome.set_result("aborted")
                case TransferDone(attended=True) if ev.transferer_channel == call.seat_channel:
                    outcome.set_result("completed" if ev.success else "aborted")
                case ChannelHangup() if ev.channel in (call.caller_channel, call.seat_channel):
                    outcome.set_result("ended")

        unsubscribe = self._events.subscribe(watch)
        try:
            await self._link.send(actions.atxfer(call.seat_channel, number,
                                                 self._transfer_context))
            result = await asyncio.wait_for(outcome, self._transfer_timeout)
        except TimeoutError:
            raise SeatActionError("transfer_timeout",
                                  f"部门 {number} 在 {self._transfer_timeout:g} 秒内未接通，"
                                  "请查看话机状态") from None
        finally:
            unsubscribe()
        if result == "aborted":
            raise SeatActionError("transfer_failed",
                                  f"转接部门 {number} 未成功（未接听或被取消），通话已回到坐席")
        if result == "ended":
            raise SeatActionError("call_ended", "通话已结束，转接未完成")
        return call

    async def three_way(self, seat_id: str, department: str) -> str:
        """三方通话: caller, seat and department in one ConfBridge room (trace 07).

        Returns the room, named after the call's Linkedid (unique per call in one Asterisk:
        its epoch and sequence number).
        """
        number = self._department(department)
        call = self._call(self._seat(seat_id))
        assert call.seat_channel is not None
        room = room_of(call)
        exten = f"room-{room}"
        await self._link.send(actions.redirect(
            call.caller_channel, self._threeway_context, exten,
            extra_channel=call.seat_channel))
        await self._link.send(actions.originate_application(
            f"Local/{number}@{self._transfer_context}", "ConfBridge", room,
            caller_id_name=self._hotline, caller_id_number=self._hotline))
        return room

    async def hangup(self, seat_id: str) -> CallRecord:
        """挂断: end the seat's call from the desk."""
        call = self._call(self._seat(seat_id))
        assert call.seat_channel is not None
        await self._link.send(actions.hangup(call.seat_channel))
        return call


def room_of(call: CallRecord) -> str:
    """The ConfBridge room of ``call``'s three-way call: its Linkedid in the characters a
    dialplan extension allows (``1796686943.0`` → ``1796686943-0``)."""
    return re.sub(r"[^A-Za-z0-9]", "-", call.linkedid)
