"""Calls the service never saw, reconciled from Asterisk's own record: its ``queue_log``.

A call that joins a queue and ends while the AMI link (or the whole service) is down leaves
no trace in any AMI answer after the reconnect: ``CoreShowChannels`` and ``QueueStatus``
list only what still exists. Asterisk writes every queue call to its queue_log whatever
the service does, one line per step::

    epoch|callid|queue|agent|EVENT|data1|data2|...
    1796687019|1796687019.0|12345|NONE|ENTERQUEUE||13800138001|1
    1796687019|1796687019.0|12345|seat-1001|CONNECT|0|1796687019.2|0
    1796687040|1796687019.0|12345|seat-1001|COMPLETEAGENT|0|21|1

(``callid`` is the caller channel's Uniqueid, the service's call id; ``agent`` is the
member name; recorded on Asterisk 22.5, see ``../shared/ami-traces``.) After every login
:class:`QueueLogReconciler` reads the rows written since its last read and settles each call
that has ended: one the service never saw is recorded with its real outcome, one it closed
as ``unknown_end`` gets its real end, and the statistics follow. It is idempotent: a call
already recorded (by this run, in memory, or by an earlier run, in the store) is never
counted twice.

Design (why a file and not CDR/CEL or realtime queue_log in PostgreSQL): the file is written
by every Asterisk with two lines of ``logger.conf`` (``queue_log = yes``,
``queue_log_to_file = yes``), needs no ODBC driver, DSN or realtime table on the PBX, and
is append-only, so "rows since the last read" is a byte offset. The service needs it
readable at ``ami.queue_log_path``: on the same host, or a read-only mount of Asterisk's
log directory (NFS, a shared volume). It is plain local I/O, done in a thread.

Rules read off Asterisk 22.5 (scratch PBX, ``core stop now``): a stop writes ``ABANDON``
for every waiting caller and nothing else; the next start writes ``QUEUESTART``. So the
abandons in the last burst before a ``QUEUESTART``, and calls with no end row at all
(a crash), are ``pbx_shutdown``, not citizens giving up. A rotated file (a new inode, or a
size below the offset) is read from its start; rows left in the rotated-away file after the
last read are not seen (rotate at most daily, with the service running).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Protocol

from telephony.calls import CallTracker
from telephony.model import CallOutcome, CallPhase, CallRecord

log = logging.getLogger(__name__)

_END_OUTCOMES = {
    "COMPLETECALLER": CallOutcome.ANSWERED,
    "COMPLETEAGENT": CallOutcome.ANSWERED,
    "ATTENDEDTRANSFER": CallOutcome.TRANSFERRED,
    "BLINDTRANSFER": CallOutcome.TRANSFERRED,
    "ABANDON": CallOutcome.ABANDONED,
    "EXITWITHTIMEOUT": CallOutcome.TIMEOUT,
    "EXITEMPTY": CallOutcome.TIMEOUT,
    "EXITWITHKEY": CallOutcome.TIMEOUT,
}
# A stop writes its rows (COMPLETE* for the bridged, ABANDON for the waiting) in one second
# on Asterisk 22.5 (SIGTERM and core stop now): a genuine abandon a second earlier stays one.
_SHUTDOWN_BURST = timedelta(seconds=1)
_MAX_OPEN = 50_000         # calls with an ENTERQUEUE and no end yet, kept between reads
_SCAN = 64 * 1024          # below this the window's start is found by reading, not seeking


@dataclass(frozen=True, slots=True)
class QueueLogRow:
    """One queue_log line."""

    at: datetime
    callid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...]


def parse_line(line: str) -> QueueLogRow | None:
    """One line of the queue_log, or ``None`` for a line that is not one."""
    parts = line.rstrip("\r\n").split("|")
    if len(parts) < 5 or not parts[0].isdigit():
        return None
    return QueueLogRow(datetime.fromtimestamp(int(parts[0]), UTC), parts[1], parts[2],
                       parts[3], parts[4], tuple(parts[5:]))


@dataclass(slots=True)
class QueueLogCall:
    """One queue call as the queue_log tells it."""

    callid: str
    queue: str
    entered_at: datetime
    caller_number: str = ""
    answered_at: datetime | None = None
    agent: str = ""                       # member name of the seat that answered
    ended_at: datetime | None = None
    outcome: CallOutcome | None = None
    transferred_to: str | None = None
    ring_attempts: int = 0
    no_answer_agents: list[str] = field(default_factory=list)

    def record(self, seat_of: Callable[[str], str]) -> CallRecord:
        """The ended call as a :class:`CallRecord` (the caller's channel is not logged)."""
        return CallRecord(
            call_id=self.callid, linkedid=self.callid, queue=self.queue,
            caller_number=self.caller_number, caller_channel="", joined_at=self.entered_at,
            phase=CallPhase.ENDED, seat=seat_of(self.agent) if self.agent else None,
            answered_at=self.answered_at, ended_at=self.ended_at, outcome=self.outcome,
            ring_attempts=self.ring_attempts,
            no_answer_seats=[seat_of(a) for a in self.no_answer_agents],
            transferred_to=self.transferred_to)


@dataclass(frozen=True, slots=True)
class QueueLogBatch:
    """What one read found; :meth:`QueueLogReader.commit` makes the next read start after it."""

    calls: tuple[QueueLogCall, ...]
    rows: int
    offset: int
    inode: int
    open_calls: dict[str, QueueLogCall]
    last_at: datetime | None


class QueueLogReader:
    """Reads the rows appended since the last committed read and tells the calls that ended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._inode = -1
        self._open: dict[str, QueueLogCall] = {}
        self._last_at: datetime | None = None

    def read(self, since: datetime) -> QueueLogBatch:
        """Calls that ended in the rows written since the last commit (blocking file I/O:
        run it in a thread). On the first read of a file, calls that entered the queue before
        ``since`` are skipped."""
        st = os.stat(self.path)
        offset, open_calls = self._offset, dict(self._open)
        with open(self.path, "rb") as f:
            if st.st_ino != self._inode or st.st_size < offset:
                # A file not read yet (first read, or rotated): a year of rows is hundreds of
                # MB, so start at the first row of the window (rows are in time order).
                offset = _first_row_at(f, st.st_size, since)
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1          # an unfinished last line waits for next time
        ended: list[QueueLogCall] = []
        last_at = self._last_at
        rows = 0
        for raw in data[:end].decode("utf-8", errors="replace").splitlines():
            row = parse_line(raw)
            if row is None:
                continue
            rows += 1
            if row.event == "QUEUESTART":
                _pbx_restarted(open_calls, ended, last_at)
            elif row.callid and row.callid not in ("NONE", "MANAGER"):
                _apply(row, open_calls, ended, since)
            last_at = row.at
        while len(open_calls) > _MAX_OPEN:
            open_calls.pop(next(iter(open_calls)))
        return QueueLogBatch(tuple(ended), rows, offset + end, st.st_ino, open_calls, last_at)

    def commit(self, batch: QueueLogBatch) -> None:
        """The batch was reconciled: the next read starts after it."""
        self._offset, self._inode = batch.offset, batch.inode
        self._open, self._last_at = batch.open_calls, batch.last_at


def _first_row_at(f: BinaryIO, size: int, since: datetime) -> int:
    """Byte offset of the first whole line written at or after ``since`` (binary search)."""
    lo, hi = 0, size
    while hi - lo > _SCAN:
        mid = (lo + hi) // 2
        f.seek(mid)
        f.readline()                       # the rest of the line ``mid`` fell into
        start = f.tell()
        row = parse_line(f.readline().decode("utf-8", errors="replace"))
        if row is not None and row.at < since:
            lo = start
        else:
            hi = mid
    return lo


def _apply(row: QueueLogRow, open_calls: dict[str, QueueLogCall], ended: list[QueueLogCall],
           since: datetime) -> None:
    if row.event == "ENTERQUEUE":
        if row.at >= since and row.callid not in open_calls:
            number = row.data[1] if len(row.data) > 1 else ""
            open_calls[row.callid] = QueueLogCall(row.callid, row.queue, row.at, number)
        return
    call = open_calls.get(row.callid)
    if call is None:
        return       # entered before the window, or already ended
    if row.event == "CONNECT":
        call.answered_at, call.agent = row.at, row.agent
        call.ring_attempts += 1
    elif row.event == "RINGNOANSWER":
        call.ring_attempts += 1
        call.no_answer_agents.append(row.agent)
    elif row.event in _END_OUTCOMES:
        call.ended_at, call.outcome = row.at, _END_OUTCOMES[row.event]
        if row.event == "BLINDTRANSFER" and row.data:
            call.transferred_to = row.data[0]
        elif row.event == "ATTENDEDTRANSFER":
            call.transferred_to = ""      # transferred; the row does not name the target
        ended.append(open_calls.pop(row.callid))


def _pbx_restarted(open_calls: dict[str, QueueLogCall], ended: list[QueueLogCall],
                   last_at: datetime | None) -> None:
    """``QUEUESTART``: Asterisk started again. Its stop ended what was still open (a crash
    writes nothing: the end time is the last row before it, a lower bound), and the
    abandons of its last burst were the stop, not callers."""
    if last_at is None:
        return
    for call in ended:
        if call.outcome is CallOutcome.ABANDONED and call.ended_at is not None \
                and last_at - call.ended_at <= _SHUTDOWN_BURST:
            call.outcome = CallOutcome.PBX_SHUTDOWN
    for call in open_calls.values():
        call.ended_at = max(last_at, call.answered_at or call.entered_at)
        call.outcome = CallOutcome.PBX_SHUTDOWN
        ended.append(call)
    open_calls.clear()


class StoredCalls(Protocol):
    """The part of the call store the reconciler reads."""

    async def records(self, call_ids: Iterable[str]) -> Mapping[str, CallRecord]: ...


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What one reconciliation did."""

    rows: int
    ended: int        # calls the rows showed ending
    recorded: int     # calls the service never saw, now recorded
    corrected: int    # unknown_end (or stop-abandons) given their real end


def settled(before: CallRecord, found: CallRecord) -> CallRecord | None:
    """``before`` with the end the queue_log tells, or ``None`` when the queue_log adds
    nothing (the service saw the end itself)."""
    improves = (before.outcome is CallOutcome.UNKNOWN_END
                or (before.outcome is CallOutcome.ABANDONED
                    and found.outcome is CallOutcome.PBX_SHUTDOWN))
    if not improves or found.outcome is None:
        return None
    answered_at = before.answered_at or found.answered_at
    # The queue_log has whole seconds, the tracker's own times do not: never end a call
    # before it was answered (or joined).
    ended_at = max(found.ended_at or before.ended_at or before.joined_at,
                   answered_at or before.joined_at)
    return replace(before, phase=CallPhase.ENDED, outcome=found.outcome, ended_at=ended_at,
                   answered_at=answered_at,
                   seat=before.seat or found.seat,
                   transferred_to=(found.transferred_to if before.transferred_to is None
                                   else before.transferred_to),
                   no_answer_seats=list(before.no_answer_seats))


class QueueLogReconciler:
    """Settles, after each gap, the calls the queue_log shows ending (see module docstring).

    ``counted_since``: statistics intervals from then on are in memory (restored at start),
    so only calls that joined since are counted; older ones are recorded without touching
    the intervals (a fresh bucket would overwrite the stored one).
    """

    def __init__(self, reader: QueueLogReader, tracker: CallTracker, store: StoredCalls, *,
                 seat_of: Callable[[str], str], clock: Callable[[], datetime],
                 counted_since: datetime, lookback: timedelta = timedelta(hours=23)) -> None:
        self._reader = reader
        self._tracker = tracker
        self._store = store
        self._seat_of = seat_of
        self._clock = clock
        self._counted_since = counted_since
        self._lookback = lookback

    async def reconcile(self) -> ReconcileReport:
        """Read the new rows, settle the calls that ended, then commit the read (a failure
        leaves the rows for the next gap)."""
        now = self._clock()
        batch = await asyncio.to_thread(self._reader.read, now - self._lookback)
        count_from = max(self._counted_since, now - self._lookback)
        recorded = corrected = 0
        unknown: list[CallRecord] = []
        for call in batch.calls:
            found = call.record(self._seat_of)
            if self._tracker.get(found.call_id) is not None:
                continue           # still live here: its own events end it
            before = self._tracker.ended(found.call_id)
            if before is None:
                unknown.append(found)
            elif (after := settled(before, found)) is not None:
                self._tracker.settle(before, after, count=before.joined_at >= count_from)
                corrected += 1
        stored = await self._store.records(r.call_id for r in unknown) if unknown else {}
        for found in unknown:
            before = stored.get(found.call_id)
            if before is None:
                self._tracker.settle(None, found, count=found.joined_at >= count_from)
                recorded += 1
            elif (after := settled(before, found)) is not None:
                self._tracker.settle(before, after, count=before.joined_at >= count_from)
                corrected += 1
        self._reader.commit(batch)
        if recorded or corrected:
            log.warning("queue_log: %d call(s) the service never saw recorded, %d end(s) "
                        "corrected", recorded, corrected)
        return ReconcileReport(batch.rows, len(batch.calls), recorded, corrected)
