"""Domain types shared by the seat board, the call tracker, the store and the HTTP layer."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class SeatState(str, enum.Enum):
    """Where a seat (坐席) is. Transitions are guarded by :class:`telephony.seats.SeatBoard`."""

    LOGGED_OUT = "logged_out"   # 未签入: not a member of any queue
    AVAILABLE = "available"     # 空闲
    RINGING = "ringing"         # 振铃
    ON_CALL = "on_call"         # 通话中
    WRAP_UP = "wrap_up"         # 话后整理
    PAUSED = "paused"           # 示忙 (with a reason: 小休, 午休, 培训, 会议 ...)


class CallOutcome(str, enum.Enum):
    """How a queued call ended. ``UNKNOWN_END`` is honest: the call ended while the AMI link
    was down and we could not see how."""

    ANSWERED = "answered"         # a seat took it and it completed
    TRANSFERRED = "transferred"   # a seat took it and moved it to a department
    ABANDONED = "abandoned"       # the caller hung up while waiting (放弃)
    TIMEOUT = "timeout"           # left the queue unanswered (queue timeout / leavewhenempty)
    UNKNOWN_END = "unknown_end"   # gone after a link loss, end not observed
    PBX_SHUTDOWN = "pbx_shutdown"  # still unanswered when Asterisk stopped (not the caller's
    #                               choice: Asterisk reports it as QueueCallerAbandon)


class CallPhase(str, enum.Enum):
    """Lifecycle of a call in the tracker."""

    WAITING = "waiting"
    RINGING = "ringing"
    CONNECTED = "connected"
    ENDED = "ended"


@dataclass(slots=True)
class CallRecord:
    """A queued call, from ``QueueCallerJoin`` to its end; persisted by the call store.

    ``call_id`` is the Asterisk ``Uniqueid`` of the caller's queue channel (stable for the
    call's life); ``linkedid`` ties every leg of the call together.
    """

    call_id: str
    linkedid: str
    queue: str
    caller_number: str
    caller_channel: str
    joined_at: datetime
    phase: CallPhase = CallPhase.WAITING
    seat: str | None = None            # seat id (extension), e.g. "1001"
    seat_channel: str | None = None    # the seat's leg, e.g. Local/1001@seats-00000001;1
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: CallOutcome | None = None
    ring_attempts: int = 0             # AgentCalled count (rings offered to seats)
    no_answer_seats: list[str] = field(default_factory=list)
    transferred_to: str | None = None
    asr_uuid: str | None = None        # the ASR_UUID channel variable, when the dialplan sets it

    @property
    def wait_seconds(self) -> float | None:
        """Seconds from joining the queue to answer (or to the end, if never answered)."""
        stop = self.answered_at or self.ended_at
        return None if stop is None else (stop - self.joined_at).total_seconds()

    @property
    def talk_seconds(self) -> float | None:
        """Seconds from answer to the caller's end: the citizen's call, a transferred call's
        time with the department included (as the caller channel's CDR). The seat's own talk,
        which ends at the transfer, is what the queue statistics count."""
        if self.answered_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.answered_at).total_seconds()


@dataclass(frozen=True, slots=True)
class SeatSnapshot:
    """A seat as the board shows it."""

    seat_id: str
    name: str
    interface: str
    state: SeatState
    since: datetime
    pause_reason: str | None = None
    queues: tuple[str, ...] = ()
    call_id: str | None = None
