"""The call tracker: each queued call's life from ``QueueCallerJoin`` to its end.

It turns typed AMI events into :class:`~telephony.model.CallRecord` changes, drives the seat
board and the queue statistics, and hands a copy of every changed record to its listeners (the
call store persists them; the desk shows screen-pops). Quirks seen in the recorded sessions:

* ``QueueCallerLeave`` comes *before* ``AgentConnect`` (trace 01), so leaving the queue says
  nothing about the outcome; the outcome is settled by ``AgentConnect``,
  ``QueueCallerAbandon`` or the caller channel's ``Hangup``.
* After a ``Redirect`` of the caller out of the queue bridge (trace 05) the caller's channel
  hangs up *before* ``AgentComplete``, which then carries no ``Uniqueid``: the late
  ``AgentComplete`` is matched by member. Asterisk reports no transfer for a Redirect, and
  neither does the tracker (the desk's blind transfer is a ``BlindTransfer``, reported).
* ``VarSet ASR_UUID`` comes before the caller joins the queue (trace 11).
* A transfer is recorded from Asterisk's own report (``AttendedTransfer``/``BlindTransfer``
  with ``Result: Success``, then ``AgentComplete Reason: transfer``), so a transfer a seat makes
  from its phone's keypad counts as much as one made through the API (measured on the real
  Asterisk 22.5; the recorded trace 06 ends before the seat completes the transfer).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from telephony.events import (
    AgentCalled, AgentComplete, AgentConnect, AgentRingNoAnswer, AmiEvent, CallerAbandoned,
    CallerJoined, CallerLeft, ChannelBridged, ChannelHangup, MemberState, QueueEntry,
    TransferDone, VariableSet, leg_of, local_extension,
)
from telephony.model import CallOutcome, CallPhase, CallRecord
from telephony.seats import SeatBoard
from telephony.stats import QueueStats

log = logging.getLogger(__name__)

CallListener = Callable[[CallRecord], None]

_MAX_REMEMBERED = 10_000   # recently ended calls / early variables kept for late events


@dataclass(slots=True)
class _Live:
    """Tracker-private facts about an active call, beside its public record."""

    record: CallRecord
    ringing: set[str] = field(default_factory=set)   # interfaces being rung
    interface: str | None = None                       # the seat's queue interface
    abandoned: bool = False
    seat_done: bool = False
    consulting: str = ""    # the department a consultation (attended transfer) reached


class CallTracker:
    """Follows every queued call and keeps the board and statistics in step."""

    def __init__(self, board: SeatBoard, stats: QueueStats, *,
                 seat_ids: Callable[[str], str]) -> None:
        self._board = board
        self._stats = stats
        self._seat_id = seat_ids
        self._live: dict[str, _Live] = {}
        self._by_seat_channel: dict[str, str] = {}
        self._by_interface: dict[str, str] = {}
        self._recent: OrderedDict[str, _Live] = OrderedDict()      # interface -> ended call
        self._early_vars: OrderedDict[str, str] = OrderedDict()    # uniqueid -> ASR_UUID
        self._listeners: list[CallListener] = []
        self.unmatched_events = 0

    # -- subscriptions / queries ----------------------------------------------------------
    def subscribe(self, listener: CallListener) -> Callable[[], None]:
        """``listener`` gets a copy of each call record after every change."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def active(self) -> list[CallRecord]:
        return [live.record for live in self._live.values()]

    def get(self, call_id: str) -> CallRecord | None:
        live = self._live.get(call_id)
        return None if live is None else live.record

    def call_of_seat(self, interface: str) -> CallRecord | None:
        """The call a seat is talking on (for agent actions: transfer, three-way)."""
        call_id = self._by_interface.get(interface)
        return None if call_id is None else self.get(call_id)

    def waiting(self, queue: str) -> list[CallRecord]:
        return [lv.record for lv in self._live.values()
                if lv.record.queue == queue
                and lv.record.phase in (CallPhase.WAITING, CallPhase.RINGING)]

    def longest_wait(self, queue: str, now: datetime) -> float:
        waits = [(now - r.joined_at).total_seconds() for r in self.waiting(queue)]
        return max(waits, default=0.0)

    # -- events ---------------------------------------------------------------------------
    def handle(self, ev: AmiEvent, now: datetime) -> None:
        """Apply one typed event observed at ``now``."""
        match ev:
            case MemberState():
                self._board.apply_member(ev, now)
            case CallerJoined():
                self._joined(ev, now)
            case AgentCalled():
                self._called(ev, now)
            case AgentRingNoAnswer():
                self._no_answer(ev, now)
            case AgentConnect():
                self._connect(ev, now)
            case CallerAbandoned():
                self._abandoned(ev, now)
            case AgentComplete():
                self._complete(ev, now)
            case ChannelHangup():
                self._hangup(ev, now)
            case VariableSet():
                self._variable(ev)
            case TransferDone():
                self._transferred(ev)
            case ChannelBridged():
                self._bridged(ev)
            case CallerLeft():
                pass   # says nothing about the outcome (see module docstring)
            case _:
                pass

    def _joined(self, ev: CallerJoined, now: datetime) -> None:
        if ev.uniqueid in self._live:
            return
        record = CallRecord(call_id=ev.uniqueid, linkedid=ev.linkedid or ev.uniqueid,
                            queue=ev.queue, caller_number=ev.caller_number,
                            caller_channel=ev.channel, joined_at=now,
                            asr_uuid=self._early_vars.pop(ev.uniqueid, None))
        self._live[ev.uniqueid] = _Live(record)
        self._stats.offered(ev.queue, now)
        self._emit(self._live[ev.uniqueid])

    def _called(self, ev: AgentCalled, now: datetime) -> None:
        live = self._find(ev.uniqueid, ev)
        if live is None:
            return
        live.record.ring_attempts += 1
        live.ringing.add(ev.interface)
        if live.record.phase is CallPhase.WAITING:
            live.record.phase = CallPhase.RINGING
        self._board.ringing(ev.interface, live.record.call_id, now)

    def _no_answer(self, ev: AgentRingNoAnswer, now: datetime) -> None:
        live = self._find(ev.uniqueid, ev)
        if live is None:
            return
        live.ringing.discard(ev.interface)
        live.record.no_answer_seats.append(self._seat_id(ev.interface))
        if not live.ringing and live.record.phase is CallPhase.RINGING:
            live.record.phase = CallPhase.WAITING
        self._board.ring_ended(ev.interface, live.record.call_id, now)
        self._emit(live)

    def _connect(self, ev: AgentConnect, now: datetime) -> None:
        live = self._find(ev.uniqueid, ev)
        if live is None:
            return
        rec = live.record
        for other in live.ringing - {ev.interface}:     # ringall: the others stop ringing
            self._board.ring_ended(other, rec.call_id, now)
        live.ringing.clear()
        rec.phase = CallPhase.CONNECTED
        rec.answered_at = now
        rec.seat = self._seat_id(ev.interface)
        rec.seat_channel = ev.dest_channel or None
        live.interface = ev.interface
        if ev.dest_channel:
            self._by_seat_channel[ev.dest_channel] = rec.call_id
        self._by_interface[ev.interface] = rec.call_id
        self._board.connected(ev.interface, rec.call_id, now)
        self._stats.answered(rec.queue, rec.joined_at, (now - rec.joined_at).total_seconds())
        self._emit(live)

    def _abandoned(self, ev: CallerAbandoned, now: datetime) -> None:
        live = self._find(ev.uniqueid, ev)
        if live is None:
            return
        live.abandoned = True
        for interface in live.ringing:
            self._board.ring_ended(interface, live.record.call_id, now)
        live.ringing.clear()

    def _complete(self, ev: AgentComplete, now: datetime) -> None:
        call_id = ev.uniqueid or self._by_interface.get(ev.interface)
        live = self._live.get(call_id) if call_id else None
        if live is None:
            live = self._recent.get(ev.interface)
            if live is None:
                self.unmatched_events += 1
                log.info("AgentComplete for %s matches no known call", ev.interface)
                return
        if ev.reason == "transfer" and live.record.transferred_to is None:
            # The transfer event was missed (it came while the link was down): the call was
            # transferred, to a target we cannot name.
            live.record.transferred_to = ""
            self._emit(live)
        self._seat_done(live, now)

    def _transferred(self, ev: TransferDone) -> None:
        if not ev.success:
            return
        live = self._live.get(ev.transferee_uniqueid)
        if live is None and ev.transferer_channel:
            call_id = self._by_seat_channel.get(ev.transferer_channel)
            live = self._live.get(call_id) if call_id else None
        if live is None:
            self.unmatched_events += 1
            log.info("%s transfer of %s matches no known call",
                     "attended" if ev.attended else "blind", ev.transferee_uniqueid)
            return
        live.record.transferred_to = ev.target or live.consulting
        self._emit(live)

    def _bridged(self, ev: ChannelBridged) -> None:
        """A department's Local leg entering a bridge on an answered call: a consultation
        (attended transfer, made through the API or from the seat's phone) reached it."""
        number = local_extension(ev.channel)
        if not number:
            return
        for live in self._live.values():
            rec = live.record
            if (rec.linkedid == ev.linkedid and rec.phase is CallPhase.CONNECTED
                    and leg_of(ev.channel) not in (leg_of(rec.caller_channel),
                                                   leg_of(rec.seat_channel or ""))):
                live.consulting = number
                return

    def _hangup(self, ev: ChannelHangup, now: datetime) -> None:
        live = self._live.get(ev.uniqueid)
        if live is not None:
            self._end(live, now, None)
            return
        call_id = self._by_seat_channel.get(ev.channel)
        if call_id is not None and call_id in self._live:
            self._seat_done(self._live[call_id], now)

    def _variable(self, ev: VariableSet) -> None:
        live = self._live.get(ev.uniqueid)
        if live is not None:
            live.record.asr_uuid = ev.value
            self._emit(live)
            return
        self._early_vars[ev.uniqueid] = ev.value
        while len(self._early_vars) > _MAX_REMEMBERED:
            self._early_vars.popitem(last=False)

    # -- resync after (re)login -----------------------------------------------------------
    def adopt(self, records: Iterable[CallRecord]) -> None:
        """Take over calls left open by a previous run (from the store); the next
        :meth:`resync` keeps the ones Asterisk still has and closes the others."""
        for record in records:
            if record.call_id not in self._live and record.phase is not CallPhase.ENDED:
                self._live[record.call_id] = _Live(record)

    def resync(self, members: Iterable[MemberState], entries: Iterable[QueueEntry],
               live_uniqueids: set[str], now: datetime,
               known_before: datetime | None = None) -> list[CallRecord]:
        """Make board and calls match Asterisk after a (re)login.

        Calls Asterisk no longer has ended while we could not see: they are closed with
        outcome ``unknown_end`` (never left open). Waiting callers we did not know are adopted.
        Only calls that joined before ``known_before`` (when the channel list was asked for)
        can be closed: a call that joined since is simply not in that list yet.
        Returns the calls closed as ``unknown_end``.
        """
        self._board.reset_memberships(members, now)
        closed = []
        cutoff = known_before or now
        gone = [c for c, lv in self._live.items()
                if c not in live_uniqueids and lv.record.joined_at <= cutoff]
        for call_id in gone:
            live = self._live[call_id]
            self._end(live, now, CallOutcome.UNKNOWN_END)
            closed.append(live.record)
        for entry in entries:
            if entry.uniqueid in self._live:
                continue
            joined = now - timedelta(seconds=entry.wait)
            record = CallRecord(call_id=entry.uniqueid, linkedid=entry.uniqueid,
                                queue=entry.queue, caller_number=entry.caller_number,
                                caller_channel=entry.channel, joined_at=joined)
            self._live[entry.uniqueid] = _Live(record)
            self._stats.offered(entry.queue, joined)
            self._emit(self._live[entry.uniqueid])
        for live in self._live.values():
            if live.interface is not None and live.record.phase is CallPhase.CONNECTED:
                self._board.connected(live.interface, live.record.call_id, now)
        return closed

    # -- internals ------------------------------------------------------------------------
    def _find(self, uniqueid: str, ev: AmiEvent) -> _Live | None:
        live = self._live.get(uniqueid)
        if live is None:
            # A call that joined while we were not looking; resync will adopt it.
            self.unmatched_events += 1
            log.info("%s for unknown call %s", type(ev).__name__, uniqueid)
        return live

    def _seat_done(self, live: _Live, now: datetime) -> None:
        """The seat's part of the call is over (its leg hung up or AgentComplete)."""
        if live.seat_done or live.interface is None:
            return
        live.seat_done = True
        rec = live.record
        self._board.call_ended(live.interface, rec.call_id, now)
        if self._by_interface.get(live.interface) == rec.call_id:
            del self._by_interface[live.interface]
        if rec.seat_channel:
            self._by_seat_channel.pop(rec.seat_channel, None)
        if rec.answered_at is not None:
            self._stats.completed(rec.queue, rec.joined_at,
                                  (now - rec.answered_at).total_seconds())

    def _end(self, live: _Live, now: datetime, forced: CallOutcome | None) -> None:
        rec = live.record
        for interface in live.ringing:
            self._board.ring_ended(interface, rec.call_id, now)
        live.ringing.clear()
        rec.ended_at = now
        rec.phase = CallPhase.ENDED
        answered = rec.answered_at is not None
        if forced is CallOutcome.UNKNOWN_END:
            rec.outcome = forced
            self._stats.unknown_end(rec.queue, rec.joined_at, answered)
            if live.interface is not None and not live.seat_done:
                live.seat_done = True    # talk time unknown: not counted
                self._board.call_ended(live.interface, rec.call_id, now)
                self._by_interface.pop(live.interface, None)
        elif answered:
            rec.outcome = (CallOutcome.ANSWERED if rec.transferred_to is None
                           else CallOutcome.TRANSFERRED)
            self._seat_done(live, now)
        elif live.abandoned:
            rec.outcome = CallOutcome.ABANDONED
            self._stats.abandoned(rec.queue, rec.joined_at)
        else:
            rec.outcome = CallOutcome.TIMEOUT
            self._stats.timed_out(rec.queue, rec.joined_at)
        del self._live[rec.call_id]
        if rec.seat_channel:
            self._by_seat_channel.pop(rec.seat_channel, None)
        if live.interface is not None:
            self._recent[live.interface] = live
            self._recent.move_to_end(live.interface)
            while len(self._recent) > _MAX_REMEMBERED:
                self._recent.popitem(last=False)
        self._emit(live)

    def _emit(self, live: _Live) -> None:
        if not self._listeners:
            return
        copy = replace(live.record, no_answer_seats=list(live.record.no_answer_seats))
        for listener in list(self._listeners):
            listener(copy)
