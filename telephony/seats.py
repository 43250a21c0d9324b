"""The seat board (坐席状态): every configured seat's state, with since-when.

A seat's state is derived from facts Asterisk reports (queue membership, pause flags) and the
calls the tracker sees (ringing, connected, wrap-up until). Each change of the derived state is
checked against :data:`ALLOWED`: Asterisk stays the authority (the board follows it), but a
transition the lifecycle forbids means an event was missed, so it is logged and counted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from telephony.events import DeviceStatus, MemberChange, MemberState
from telephony.model import SeatSnapshot, SeatState

log = logging.getLogger(__name__)

S = SeatState
ALLOWED: Final[dict[SeatState, frozenset[SeatState]]] = {
    S.LOGGED_OUT: frozenset({S.AVAILABLE, S.PAUSED}),
    S.AVAILABLE: frozenset({S.RINGING, S.ON_CALL, S.PAUSED, S.LOGGED_OUT}),
    S.RINGING: frozenset({S.ON_CALL, S.AVAILABLE, S.PAUSED, S.LOGGED_OUT}),
    S.ON_CALL: frozenset({S.WRAP_UP, S.AVAILABLE, S.PAUSED, S.LOGGED_OUT}),
    S.WRAP_UP: frozenset({S.AVAILABLE, S.PAUSED, S.LOGGED_OUT, S.RINGING}),
    S.PAUSED: frozenset({S.AVAILABLE, S.LOGGED_OUT, S.ON_CALL, S.RINGING}),
}

_EXTENSION = re.compile(r"^[A-Za-z0-9]+/(\d+)")
# Asterisk and the service time wrap-up on their own clocks from the same AgentComplete; a ring
# this close to the end of the board's wrap-up is the two clocks, not a different wrapuptime.
_WRAPUP_SKEW: Final = timedelta(seconds=1)


def extension_of(interface: str) -> str:
    """The extension a queue interface names: ``PJSIP/1001`` and ``Local/1001@seats/n`` →
    ``1001``; an interface without ``/`` is its own name."""
    head = interface.split("/", 1)[-1]
    return head.split("@", 1)[0]


@dataclass(frozen=True, slots=True)
class SeatSpec:
    """A configured seat: id (extension), display name and its queue interface."""

    seat_id: str
    name: str
    interface: str


@dataclass(slots=True)
class _Seat:
    spec: SeatSpec
    state: SeatState
    since: datetime
    queues: dict[str, bool] = field(default_factory=dict)   # queue -> paused
    pause_reason: str = ""
    ringing_call: str | None = None
    connected_call: str | None = None
    wrapup_until: datetime | None = None
    device: DeviceStatus = DeviceStatus.UNKNOWN
    configured: bool = True     # False: a member Asterisk listed that the config does not have

    def derive(self, now: datetime) -> SeatState:
        if not self.queues:
            return S.LOGGED_OUT
        if self.connected_call is not None:
            return S.ON_CALL
        if self.ringing_call is not None:
            return S.RINGING
        if self.wrapup_until is not None and now < self.wrapup_until:
            return S.WRAP_UP
        if all(self.queues.values()):
            return S.PAUSED
        return S.AVAILABLE


SeatListener = Callable[[SeatSnapshot], None]


class SeatBoard:
    """State of every seat, keyed by the queue interface Asterisk uses for it."""

    def __init__(self, seats: Iterable[SeatSpec], *, wrapup_seconds: float, now: datetime) -> None:
        self._wrapup = timedelta(seconds=wrapup_seconds)
        self._seats: dict[str, _Seat] = {}
        for spec in seats:
            self._seats[spec.interface] = _Seat(spec, S.LOGGED_OUT, now)
        self._listeners: list[SeatListener] = []
        self.unexpected_transitions = 0
        self.unknown_members = 0
        self.wrapup_overruled = 0

    def add_specs(self, seats: Iterable[SeatSpec], now: datetime) -> None:
        """Seats added to the config on reload (existing ones keep their state)."""
        for spec in seats:
            seat = self._seats.get(spec.interface)
            if seat is None:
                self._seats[spec.interface] = _Seat(spec, S.LOGGED_OUT, now)
            else:
                seat.spec = spec
                seat.configured = True

    # -- subscriptions ------------------------------------------------------------------
    def subscribe(self, listener: SeatListener) -> Callable[[], None]:
        """Call ``listener`` with each seat whose state changes; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # -- facts from AMI -----------------------------------------------------------------
    def apply_member(self, ev: MemberState, now: datetime) -> None:
        """A QueueMember* event (or a QueueStatus row) for one member in one queue."""
        seat = self._seat(ev.interface, ev.member_name, now)
        seat.device = ev.status
        if ev.change is MemberChange.REMOVED:
            seat.queues.pop(ev.queue, None)
        else:
            seat.queues[ev.queue] = ev.paused
            if ev.paused:
                seat.pause_reason = ev.paused_reason
            elif not any(seat.queues.values()):
                seat.pause_reason = ""
        self._refresh(seat, now)

    def ringing(self, interface: str, call_id: str, now: datetime) -> None:
        seat = self._seat(interface, "", now)
        if seat.wrapup_until is not None and seat.wrapup_until - now > _WRAPUP_SKEW:
            # Asterisk decides when a seat is rung again (its queue's wrapuptime); the board's
            # wrap-up (queues.yaml wrapup_seconds, which `hotline asterisk render` writes into
            # queues.conf) only shows it. A ring inside it means the two disagree: follow
            # Asterisk, and say so once.
            if not self.wrapup_overruled:
                log.warning("seat %s rung %.0f s before its wrap-up ended: Asterisk's queue "
                            "wrapuptime is shorter than wrapup_seconds in queues.yaml; Asterisk's "
                            "wins (re-render queues.conf)", seat.spec.seat_id,
                            (seat.wrapup_until - now).total_seconds())
            self.wrapup_overruled += 1
            seat.wrapup_until = None
        seat.ringing_call = call_id
        self._refresh(seat, now)

    def ring_ended(self, interface: str, call_id: str, now: datetime) -> None:
        """The seat stopped ringing for ``call_id`` (no answer, or the caller left)."""
        seat = self._seats.get(interface)
        if seat is not None and seat.ringing_call == call_id:
            seat.ringing_call = None
            self._refresh(seat, now)

    def connected(self, interface: str, call_id: str, now: datetime) -> None:
        seat = self._seat(interface, "", now)
        seat.ringing_call = None
        seat.connected_call = call_id
        seat.wrapup_until = None
        self._refresh(seat, now)

    def call_ended(self, interface: str, call_id: str, now: datetime) -> None:
        """The seat's part of ``call_id`` ended: wrap-up (话后整理) starts."""
        seat = self._seats.get(interface)
        if seat is None or seat.connected_call != call_id:
            return
        seat.connected_call = None
        seat.wrapup_until = now + self._wrapup if self._wrapup else None
        self._refresh(seat, now)

    def reset_memberships(self, members: Iterable[MemberState], now: datetime) -> None:
        """Resync: the complete membership list from QueueStatus replaces what we had."""
        listed: dict[str, list[MemberState]] = {}
        for ev in members:
            listed.setdefault(ev.interface, []).append(ev)
        for interface, seat in self._seats.items():
            if interface not in listed:
                seat.queues.clear()
                seat.ringing_call = None
                seat.connected_call = None
                self._refresh(seat, now)
        for rows in listed.values():
            seat = self._seat(rows[0].interface, rows[0].member_name, now)
            seat.queues = {}
            for ev in rows:
                self.apply_member(ev, now)

    def tick(self, now: datetime) -> None:
        """Let wrap-up timers expire (the composition root calls this every second)."""
        for seat in self._seats.values():
            if seat.wrapup_until is not None and now >= seat.wrapup_until:
                seat.wrapup_until = None
                self._refresh(seat, now)

    # -- queries ------------------------------------------------------------------------
    def get(self, interface: str) -> SeatSnapshot | None:
        seat = self._seats.get(interface)
        return None if seat is None else self._snapshot(seat)

    def seat_id_of(self, interface: str) -> str:
        """The seat id of a queue ``interface``: the configured seat's, else the extension the
        interface names (``PJSIP/1001``, ``Local/1001@seats/n`` → ``1001``), which is what call
        records and pauses carry for a member added outside the config."""
        seat = self._seats.get(interface)
        if seat is not None and seat.configured:
            return seat.spec.seat_id
        return extension_of(interface)

    def by_seat_id(self, seat_id: str) -> SeatSnapshot | None:
        return next((self._snapshot(s) for s in self._seats.values()
                     if s.spec.seat_id == seat_id), None)

    def snapshot(self) -> list[SeatSnapshot]:
        return [self._snapshot(s) for s in self._seats.values()]

    def counts(self) -> dict[SeatState, int]:
        counts = dict.fromkeys(SeatState, 0)
        for seat in self._seats.values():
            counts[seat.state] += 1
        return counts

    def __len__(self) -> int:
        return len(self._seats)

    # -- internals ----------------------------------------------------------------------
    def _seat(self, interface: str, member_name: str, now: datetime) -> _Seat:
        seat = self._seats.get(interface)
        if seat is None:
            # A member someone added outside our config (CLI, another tool): show it anyway.
            self.unknown_members += 1
            match = _EXTENSION.match(interface)
            seat_id = match.group(1) if match else interface
            seat = _Seat(SeatSpec(seat_id, member_name or seat_id, interface), S.LOGGED_OUT, now,
                         configured=False)
            self._seats[interface] = seat
            log.warning("seat_not_in_config", extra={"interface": interface})
        return seat

    def _refresh(self, seat: _Seat, now: datetime) -> None:
        new = seat.derive(now)
        if new is seat.state:
            return
        if new not in ALLOWED[seat.state]:
            self.unexpected_transitions += 1
            log.warning("seat %s: unexpected %s -> %s (an AMI event was missed?)",
                        seat.spec.seat_id, seat.state.value, new.value)
        seat.state = new
        seat.since = now
        if self._listeners:
            snap = self._snapshot(seat)
            for listener in list(self._listeners):
                listener(snap)

    @staticmethod
    def _snapshot(seat: _Seat) -> SeatSnapshot:
        return SeatSnapshot(
            seat_id=seat.spec.seat_id, name=seat.spec.name, interface=seat.spec.interface,
            state=seat.state, since=seat.since,
            pause_reason=(seat.pause_reason or None) if seat.state is S.PAUSED else None,
            queues=tuple(sorted(seat.queues)),
            call_id=seat.connected_call or seat.ringing_call,
        )
