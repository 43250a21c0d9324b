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
* ``core stop now`` (Asterisk 22.5, measured): each waiting caller gets ``QueueCallerAbandon``
  and a ``Hangup`` with ``Cause: 0`` (a citizen hanging up gives 16), bridged calls get
  ``AgentComplete`` as usual, and only then comes ``Shutdown``: the abandons are re-counted
  as ``pbx_shutdown`` when it arrives.
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
    CallerJoined, CallerLeft, ChannelBridged, ChannelHangup, MemberState, PbxShutdown,
    QueueEntry, TransferDone, VariableSet, leg_of, local_extension,
)
from telephony.model import CallOutcome, CallPhase, CallRecord
from telephony.seats import SeatBoard
from telephony.stats import QueueStats

log = logging.getLogger(__name__)

CallListener = Callable[[CallRecord], None]

_MAX_REMEMBERED = 10_000   # recently ended calls / early variables kept for late events
# Between the last abandon Asterisk reports while stopping and its Shutdown event: the same
# instant on Asterisk 22.5 (one event burst); a margin for a loaded PBX.
_SHUTDOWN_BURST = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class BridgedCall:
    """A queue call Asterisk has bridged to a seat, as a resync finds it (CoreShowChannels:
    the caller's ``Queue`` leg and the seat's ``AppQueue`` leg share a ``BridgeId``)."""

    uniqueid: str
    linkedid: str
    queue: str
    caller_channel: str
    caller_number: str
    interface: str          # the seat's queue interface
    seat_channel: str       # the seat's leg
    age_seconds: int        # the caller channel's age
    seat_leg_seconds: int   # the seat leg's age: since it was rung, so talk plus ring time


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

    def __init__(self, board: SeatBoard, stats: QueueStats) -> None:
        self._board = board
        self._stats = stats
        self._live: dict[str, _Live] = {}
        self._by_seat_channel: dict[str, str] = {}
        self._by_interface: dict[str, str] = {}
        self._recent: OrderedDict[str, _Live] = OrderedDict()      # interface -> ended call
        self._early_vars: OrderedDict[str, str] = OrderedDict()    # uniqueid -> ASR_UUID
        self._ended: OrderedDict[str, CallRecord] = OrderedDict()  # call id -> ended record
        self._shutdown_suspects: OrderedDict[str, CallRecord] = OrderedDict()
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
            case PbxShutdown():
                self._pbx_shutdown(now)
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
        live.record.no_answer_seats.append(self._board.seat_id_of(ev.interface))
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
        rec.seat = self._board.seat_id_of(ev.interface)
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
        # A queue call's Linkedid is almost always its caller's Uniqueid (the call_id): one
        # look-up on this path, which every answered call takes twice; the scan is for the rest.
        direct = self._live.get(ev.linkedid)
        candidates = ((direct,) if direct is not None and direct.record.linkedid == ev.linkedid
                      else self._live.values())
        for live in candidates:
            rec = live.record
            if rec.linkedid == ev.linkedid and rec.phase is CallPhase.CONNECTED:
                if leg_of(ev.channel) not in (leg_of(rec.caller_channel),
                                              leg_of(rec.seat_channel or "")):
                    live.consulting = number
                return

    def _hangup(self, ev: ChannelHangup, now: datetime) -> None:
        live = self._live.get(ev.uniqueid)
        if live is not None:
            self._end(live, now, None)
            if live.abandoned and ev.cause == 0:
                self._suspect_shutdown(live.record, now)
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

    # -- resync after (re)login, restart of the service, PBX shutdown, reconciliation -------
    # (Kept apart from the live event handlers above: this is what runs when the service
    # could not see, or learns later what happened then.)
    def adopt(self, records: Iterable[CallRecord]) -> None:
        """Take over calls left open by a previous run (from the store); the next
        :meth:`resync` keeps the ones Asterisk still has and closes the others.

        A call that was talking keeps its seat: the board shows the seat on the call, the
        agent can hang up or transfer it, and its talk time is counted when it ends.
        """
        for record in records:
            if record.call_id in self._live or record.phase is CallPhase.ENDED:
                continue
            live = self._live[record.call_id] = _Live(record)
            if record.phase is CallPhase.RINGING:
                record.phase = CallPhase.WAITING   # who rings now is unknown; resync tells
            seat = self._board.by_seat_id(record.seat) if record.seat else None
            if record.phase is CallPhase.CONNECTED and seat is not None:
                self._bind_seat(live, seat.interface, record.seat_channel)

    def resync(self, members: Iterable[MemberState], entries: Iterable[QueueEntry],
               live_uniqueids: set[str], now: datetime,
               known_before: datetime | None = None,
               bridged: Iterable[BridgedCall] = ()) -> list[CallRecord]:
        """Make board and calls match Asterisk after a (re)login.

        Calls Asterisk no longer has ended while we could not see: they are closed with
        outcome ``unknown_end`` (never left open). Waiting callers we did not know are adopted,
        and so are callers already bridged to a seat (answered while we could not see): the
        seat is on that call and its late ``AgentComplete`` completes it. Only calls that
        joined before ``known_before`` (when the channel list was asked for) can be closed: a
        call that joined since is simply not in that list yet.
        Returns the calls closed as ``unknown_end``.
        """
        members = list(members)
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
        bridged_ids = set()
        for call in bridged:
            bridged_ids.add(call.uniqueid)
            self._adopt_bridged(call, now)
        # A seat Asterisk no longer has on a queue call finished it while we could not see
        # (e.g. the agent hung up and the caller went on in the IVR): free the seat.
        in_call = {m.interface for m in members if m.in_call}
        for live in list(self._live.values()):
            if (live.interface is not None and live.record.phase is CallPhase.CONNECTED
                    and not live.seat_done and live.record.call_id not in bridged_ids
                    and live.interface not in in_call):
                self._seat_lost(live, now)
        for live in self._live.values():
            if (live.interface is not None and live.record.phase is CallPhase.CONNECTED
                    and not live.seat_done):
                self._board.connected(live.interface, live.record.call_id, now)
        return closed

    def _adopt_bridged(self, call: BridgedCall, now: datetime) -> None:
        live = self._live.get(call.uniqueid)
        if live is None:
            joined = now - timedelta(seconds=call.age_seconds)
            record = CallRecord(call_id=call.uniqueid, linkedid=call.linkedid or call.uniqueid,
                                queue=call.queue, caller_number=call.caller_number,
                                caller_channel=call.caller_channel, joined_at=joined)
            live = self._live[call.uniqueid] = _Live(record)
            self._stats.offered(call.queue, joined)
        elif (live.interface == call.interface and not live.seat_done
              and live.record.phase is CallPhase.CONNECTED):
            return
        rec = live.record
        for interface in live.ringing:
            self._board.ring_ended(interface, rec.call_id, now)
        live.ringing.clear()
        if live.interface is not None and live.interface != call.interface:
            self._seat_lost(live, now)
        live.seat_done = False
        rec.phase = CallPhase.CONNECTED
        rec.seat = self._board.seat_id_of(call.interface)
        self._bind_seat(live, call.interface, call.seat_channel)
        if rec.answered_at is None:
            # The seat leg exists since it was rung: answered at most that long ago.
            answered_at = max(rec.joined_at, now - timedelta(seconds=call.seat_leg_seconds))
            rec.answered_at = answered_at
            self._stats.answered(rec.queue, rec.joined_at,
                                 (answered_at - rec.joined_at).total_seconds())
        self._emit(live)

    def _bind_seat(self, live: _Live, interface: str, seat_channel: str | None) -> None:
        live.interface = interface
        live.record.seat_channel = seat_channel or None
        self._by_interface[interface] = live.record.call_id
        if seat_channel:
            self._by_seat_channel[seat_channel] = live.record.call_id

    def _seat_lost(self, live: _Live, now: datetime) -> None:
        """The seat left the call while we could not see: free it, talk time unknown."""
        if live.interface is None or live.seat_done:
            return
        live.seat_done = True
        self._board.call_ended(live.interface, live.record.call_id, now)
        if self._by_interface.get(live.interface) == live.record.call_id:
            del self._by_interface[live.interface]
        if live.record.seat_channel:
            self._by_seat_channel.pop(live.record.seat_channel, None)

    def _suspect_shutdown(self, record: CallRecord, now: datetime) -> None:
        self._shutdown_suspects[record.call_id] = record
        while self._shutdown_suspects:
            first = next(iter(self._shutdown_suspects.values()))
            if first.ended_at is not None and now - first.ended_at <= _SHUTDOWN_BURST:
                break
            self._shutdown_suspects.popitem(last=False)

    def _pbx_shutdown(self, now: datetime) -> None:
        """Asterisk is stopping: the callers it just reported as abandoning did not give up."""
        for record in self._shutdown_suspects.values():
            if (record.ended_at is not None and now - record.ended_at <= _SHUTDOWN_BURST
                    and record.outcome is CallOutcome.ABANDONED):
                self.settle(replace(record, no_answer_seats=list(record.no_answer_seats)),
                            replace(record, outcome=CallOutcome.PBX_SHUTDOWN,
                                    no_answer_seats=list(record.no_answer_seats)))
        self._shutdown_suspects.clear()
        for live in list(self._live.values()):
            answered = live.record.answered_at is not None
            self._end(live, now, None if answered else CallOutcome.PBX_SHUTDOWN)

    def ended(self, call_id: str) -> CallRecord | None:
        """A recently ended call (the last :data:`_MAX_REMEMBERED`), as last emitted."""
        return self._ended.get(call_id)

    def settle(self, before: CallRecord | None, after: CallRecord, *,
               count: bool = True) -> None:
        """Record how an ended call really ended, learnt after the fact.

        ``before`` is the ended record as it was counted (``None``: a call the service never
        saw, found in Asterisk's queue_log); ``after`` (ended) replaces it in the statistics
        (unless ``count`` is false: its interval is no longer held) and is handed to the
        listeners, so the store writes it.
        """
        if count:
            self._stats.replace(before, after)
        self._remember_ended(after)
        if self._listeners:
            copy = replace(after, no_answer_seats=list(after.no_answer_seats))
            for listener in list(self._listeners):
                listener(copy)

    def _remember_ended(self, record: CallRecord) -> None:
        self._ended[record.call_id] = record
        self._ended.move_to_end(record.call_id)
        while len(self._ended) > _MAX_REMEMBERED:
            self._ended.popitem(last=False)

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
        elif forced is CallOutcome.PBX_SHUTDOWN:
            rec.outcome = forced
            self._stats.pbx_shutdown(rec.queue, rec.joined_at, answered)
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
        self._remember_ended(rec)
        self._emit(live)

    def _emit(self, live: _Live) -> None:
        if not self._listeners:
            return
        copy = replace(live.record, no_answer_seats=list(live.record.no_answer_seats))
        for listener in list(self._listeners):
            listener(copy)
