"""What an agent can do to a seat and its call, as AMI action sequences.

Each sequence is the one the real Asterisk 22.5 executed in the recorded sessions:

* pause/unpause with a reason: ``QueuePause`` per queue (trace 02, 03);
* blind transfer to a department: ``Redirect`` of the caller's channel to
  ``departments,<number>,1`` (trace 05);
* attended transfer: ``Atxfer`` on the seat's leg to ``<number>@departments`` (trace 06;
  needs ``atxfer`` in features.conf and Queue option ``t``);
* three-way call (三方通话): a dual ``Redirect`` of caller and seat into ``threeway,room-N``
  (ConfBridge N), then ``Originate`` of the department straight into ``ConfBridge(N)``
  (trace 07);
* hang up: ``Hangup`` of the seat's leg.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping

from telephony import actions
from telephony.calls import CallTracker
from telephony.errors import TelephonyError
from telephony.model import CallRecord, SeatSnapshot
from telephony.ports import ActionSender
from telephony.seats import SeatBoard

log = logging.getLogger(__name__)


class SeatActionError(TelephonyError):
    """An agent action that cannot be done; ``code`` is stable for the HTTP layer."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class SeatActions:
    """Agent-facing actions on seats and their calls."""

    def __init__(self, link: ActionSender, tracker: CallTracker, board: SeatBoard, *,
                 pause_reasons: frozenset[str], departments: Mapping[str, str],
                 hotline_number: str = "12345", transfer_context: str = "departments",
                 threeway_context: str = "threeway",
                 room_numbers: Callable[[], int] | None = None) -> None:
        self._link = link
        self._tracker = tracker
        self._board = board
        self._reasons = pause_reasons
        self._departments = departments
        self._hotline = hotline_number
        self._transfer_context = transfer_context
        self._threeway_context = threeway_context
        counter = itertools.count(1)
        self._next_room = room_numbers or (lambda: next(counter))

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
        """转接: send the caller to the department; the seat is freed at once (trace 05)."""
        number = self._department(department)
        call = self._call(self._seat(seat_id))
        self._tracker.mark_transfer(call.call_id, number)
        await self._link.send(actions.redirect(call.caller_channel, self._transfer_context,
                                               number))
        return call

    async def attended_transfer(self, seat_id: str, department: str) -> CallRecord:
        """咨询转接: the seat consults the department first, caller on hold (trace 06)."""
        number = self._department(department)
        call = self._call(self._seat(seat_id))
        assert call.seat_channel is not None
        await self._link.send(actions.atxfer(call.seat_channel, number, self._transfer_context))
        return call

    async def three_way(self, seat_id: str, department: str) -> int:
        """三方通话: caller, seat and department in one ConfBridge room (trace 07).

        Returns the room number.
        """
        number = self._department(department)
        call = self._call(self._seat(seat_id))
        assert call.seat_channel is not None
        room = self._next_room()
        exten = f"room-{room}"
        await self._link.send(actions.redirect(
            call.caller_channel, self._threeway_context, exten,
            extra_channel=call.seat_channel))
        await self._link.send(actions.originate_application(
            f"Local/{number}@{self._transfer_context}", "ConfBridge", str(room),
            caller_id_name=self._hotline, caller_id_number=self._hotline))
        return room

    async def hangup(self, seat_id: str) -> CallRecord:
        """挂断: end the seat's call from the desk."""
        call = self._call(self._seat(seat_id))
        assert call.seat_channel is not None
        await self._link.send(actions.hangup(call.seat_channel))
        return call
