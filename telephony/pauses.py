"""The pause each seat should have (示忙 and its reason), remembered across restarts.

Asterisk forgets a dynamic member's pause when it restarts (``persistentmembers = no``, as
``docker/asterisk/queues.conf`` has it): the service re-adds the member from config, and
without this book it re-added it available, so an agent at 会议 started receiving calls.

What a seat should have is what the agent last chose, learnt from Asterisk's own events
(``QueueMemberPause`` and ``QueueMemberAdded``, whoever caused them: the desk API, a phone
feature code, the CLI), so the book needs no hook in the agent actions. After a resync the
members Asterisk still has are the truth about their pause (it may have changed while the
service could not see); only members Asterisk knows nothing about (absent, or ``LastPause:
0``) get the book's pause (:func:`telephony.queue_admin.plan`). Every change is handed to
listeners; the composition root persists it (``seat_pauses``) so a restart of the service
itself keeps it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from telephony.events import AmiEvent, MemberChange, MemberState

PauseListener = Callable[[str, "DesiredPause"], None]


@dataclass(frozen=True, slots=True)
class DesiredPause:
    """A seat's pause as the agent last set it."""

    paused: bool
    reason: str
    since: datetime


class PauseBook:
    """Desired pause per seat id; fed by AMI member events and resync snapshots."""

    def __init__(self, seat_of: Callable[[str], str],
                 clock: Callable[[], datetime]) -> None:
        self._seat_of = seat_of
        self._clock = clock
        self._book: dict[str, DesiredPause] = {}
        self._listeners: list[PauseListener] = []

    def load(self, saved: Mapping[str, DesiredPause]) -> None:
        """What a previous run stored (before the AMI link starts)."""
        self._book.update(saved)

    def subscribe(self, listener: PauseListener) -> Callable[[], None]:
        """``listener(seat_id, pause)`` after each change."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def get(self, seat_id: str) -> DesiredPause | None:
        return self._book.get(seat_id)

    def on_event(self, ev: AmiEvent) -> None:
        """Dispatcher listener: a pause set or cleared in Asterisk, by anyone."""
        if isinstance(ev, MemberState) and ev.change in (MemberChange.PAUSE, MemberChange.ADDED):
            self._set(self._seat_of(ev.interface), ev.paused, ev.paused_reason)

    def adopt(self, members: Iterable[MemberState]) -> None:
        """Resync: members whose pause Asterisk knows (paused now, or paused once since they
        were added) are the truth; the book follows them. A seat is paused when it is paused
        in every queue it is in (as the board shows it)."""
        rows: dict[str, list[MemberState]] = {}
        for ev in members:
            if ev.paused or ev.last_pause:
                rows.setdefault(self._seat_of(ev.interface), []).append(ev)
        for seat_id, seat_rows in rows.items():
            paused = all(r.paused for r in seat_rows)
            reason = next((r.paused_reason for r in seat_rows if r.paused and r.paused_reason),
                          "") if paused else ""
            self._set(seat_id, paused, reason)

    def _set(self, seat_id: str, paused: bool, reason: str) -> None:
        reason = reason if paused else ""
        old = self._book.get(seat_id)
        if old is not None and (old.paused, old.reason) == (paused, reason):
            return
        if old is None and not paused:
            return       # never paused: nothing to remember
        pause = DesiredPause(paused, reason, self._clock())
        self._book[seat_id] = pause
        for listener in list(self._listeners):
            listener(seat_id, pause)
