"""Feed a recorded AMI trace, message by message, through the real parse → dispatch → tracker
path, with each event observed at the trace's own time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from panoramisk.message import Message

from telephony.calls import CallTracker
from telephony.dispatch import EventDispatcher
from telephony.model import CallRecord
from telephony.seats import SeatBoard, SeatSpec
from telephony.stats import QueueStats
from tests.conftest import load_trace

T0 = datetime(2026, 11, 23, 1, 51, 2, tzinfo=UTC)
# Loaded at import: the first ZoneInfo() reads the tz database, a blocking call on the loop.
SHANGHAI = ZoneInfo("Asia/Shanghai")
SEATS = [
    SeatSpec("1001", "坐席1001", "Local/1001@seats/n"),
    SeatSpec("1002", "坐席1002", "Local/1002@seats/n"),
    SeatSpec("2001", "坐席2001", "Local/2001@seats-noanswer/n"),
]


@dataclass
class Harness:
    board: SeatBoard
    stats: QueueStats
    tracker: CallTracker
    dispatcher: EventDispatcher
    now: datetime = T0
    records: dict[str, CallRecord] = field(default_factory=dict)

    def feed_text(self, text: str, t: float) -> None:
        self.now = T0 + timedelta(seconds=t)
        msg = Message.from_line(text.strip())
        if msg is not None and "Event" in msg:
            self.dispatcher(msg)

    def replay(self, name: str, until: float | None = None, since: float | None = None
               ) -> Harness:
        for line in load_trace(name):
            if until is not None and line.t > until:
                break
            if since is not None and line.t <= since:
                continue
            if line.dir == "received":
                self.feed_text(line.text, line.t)
        return self


def make_harness(wrapup_seconds: float = 2.0, seats: list[SeatSpec] | None = None) -> Harness:
    board = SeatBoard(seats or SEATS, wrapup_seconds=wrapup_seconds, now=T0)
    stats = QueueStats(service_level_seconds=15, interval_minutes=15,
                       timezone=SHANGHAI)
    tracker = CallTracker(board, stats)
    h = Harness(board, stats, tracker, EventDispatcher(tracker, clock=lambda: h.now))
    tracker.subscribe(lambda rec: h.records.__setitem__(rec.call_id, rec))
    return h
