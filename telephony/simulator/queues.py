"""Queue and member state with app_queue's reporting rules (queues.conf of the recording)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from telephony.simulator.wire import Fields

if TYPE_CHECKING:
    from telephony.simulator.core import Channel

Strategy = Literal["rrmemory", "leastrecent", "ringall"]

# AST_DEVICE_* codes as app_queue reports them in Status.
DEVICE_NOT_INUSE = 1
DEVICE_INUSE = 2
DEVICE_RINGING = 6


@dataclass(eq=False)
class Member:
    """A dynamic queue member (added by QueueAdd)."""

    queue: str
    interface: str
    name: str
    state_interface: str
    penalty: int = 0
    login_time: int = 0
    calls_taken: int = 0
    last_call: int = 0
    last_pause: int = 0
    paused: bool = False
    reason: str = ""
    in_call: bool = False
    status: int = DEVICE_NOT_INUSE
    ringing: bool = False
    wrapup_until: float = 0.0  # simulated epoch when wrap-up ends

    @property
    def exten(self) -> str:
        """``1001`` of ``Local/1001@seats/n``."""
        return self.interface.split("/", 1)[1].split("@", 1)[0]

    @property
    def context(self) -> str:
        """``seats`` of ``Local/1001@seats/n``."""
        return self.interface.split("@", 1)[1].split("/", 1)[0]

    def event_fields(self) -> Fields:
        """Fields of QueueMemberAdded/Status/Pause/Removed after ``Queue``."""
        return [
            ("Queue", self.queue), ("MemberName", self.name), ("Interface", self.interface),
            ("StateInterface", self.state_interface), ("Membership", "dynamic"),
            ("Penalty", str(self.penalty)), ("CallsTaken", str(self.calls_taken)),
            ("LastCall", str(self.last_call)), ("LastPause", str(self.last_pause)),
            ("LoginTime", str(self.login_time)), ("InCall", str(int(self.in_call))),
            ("Status", str(self.status)), ("Paused", str(int(self.paused))),
            ("PausedReason", self.reason), ("Ringinuse", "0"), ("Wrapuptime", "0"),
        ]

    def status_fields(self) -> Fields:
        """Fields of a QueueStatus ``QueueMember`` list item (before ``ActionID``)."""
        return [
            ("Queue", self.queue), ("Name", self.name), ("Location", self.interface),
            ("StateInterface", self.state_interface), ("Membership", "dynamic"),
            ("Penalty", str(self.penalty)), ("CallsTaken", str(self.calls_taken)),
            ("LastCall", str(self.last_call)), ("LastPause", str(self.last_pause)),
            ("LoginTime", str(self.login_time)), ("InCall", str(int(self.in_call))),
            ("Status", str(self.status)), ("Paused", str(int(self.paused))),
            ("PausedReason", self.reason), ("Wrapuptime", "0"),
        ]

    def available(self, now: float) -> bool:
        """Can be rung now: not paused, idle, not ringing, wrap-up over (ringinuse=no)."""
        return (not self.paused and not self.in_call and not self.ringing
                and self.status == DEVICE_NOT_INUSE and now >= self.wrapup_until)


@dataclass(eq=False)
class Caller:
    """A caller waiting in a queue."""

    channel: Channel
    joined: int  # simulated epoch seconds, integer like app_queue's qe->start
    original_position: int
    ringing: list[Member] = field(default_factory=list)
    next_try: float = 0.0
    answered: bool = False


@dataclass
class QueueState:
    """One queue: config, members in insertion order, waiting callers in order."""

    name: str
    strategy: Strategy = "rrmemory"
    timeout: float = 15.0
    retry: float = 1.0
    wrapuptime: float = 2.0
    servicelevel: int = 20
    members: dict[str, Member] = field(default_factory=dict)
    callers: list[Caller] = field(default_factory=list)
    rr_next: int = 0
    completed: int = 0
    abandoned: int = 0
    holdtime_avg: float = 0.0
    talktime_avg: float = 0.0
    within_sl: int = 0

    def pick(self, now: float, exclude: set[str]) -> list[Member]:
        """Members to ring for the next attempt, by strategy."""
        order = list(self.members.values())
        free = [m for m in order if m.available(now) and m.interface not in exclude]
        if not free:
            return []
        if self.strategy == "ringall":
            return free
        if self.strategy == "leastrecent":
            return [min(free, key=lambda m: (m.last_call, order.index(m)))]
        # rrmemory: continue after the member rung last time, in member order.
        n = len(order)
        for step in range(n):
            cand = order[(self.rr_next + step) % n]
            if cand in free:
                self.rr_next = (order.index(cand) + 1) % n
                return [cand]
        return []

    def record_connect(self, hold: int) -> None:
        """Update the running averages Asterisk keeps ((3 × old + new) / 4)."""
        self.holdtime_avg = (3 * self.holdtime_avg + hold) / 4
        if hold <= self.servicelevel:
            self.within_sl += 1

    def record_complete(self, talk: int) -> None:
        """Count a completed call and average its talk time."""
        self.completed += 1
        self.talktime_avg = (3 * self.talktime_avg + talk) / 4
