"""Queue statistics computed from events, per 15-minute interval and per day.

Asterisk's own ``Holdtime``/``TalkTime`` (QueueParams, QueueSummary) are weighted running
averages, ``(3 × old + new) / 4`` (library-notes.md), not means; a 12345 centre is judged on
true figures, so they are computed here from each call's outcome.

Calls are attributed to the interval in which they joined the queue (the usual ACD
convention), so an interval's figures can still change while its calls are being answered.

Definitions (shown on the wallboard and in ``/api/stats``):

* offered (呼入量): calls that joined the queue;
* answered (接通量): calls a seat answered (``AgentConnect``);
* abandoned (放弃量): callers who hung up while waiting (``QueueCallerAbandon``);
* pbx_shutdown: callers still waiting when Asterisk stopped. Asterisk reports them as
  ``QueueCallerAbandon`` (then ``Shutdown``); they did not give up, so they are not abandoned.
  Like timeouts they count as left the queue unanswered (in the rates' denominator);
* answered within the service level: answered with a wait ≤ ``service_level_seconds``
  (15 s: GB/T 33358 asks calls to be answered within 15 s);
* service level % = answered within SL / offered calls that have left the queue;
* answer rate 接通率 = answered / offered calls that have left the queue;
* ASA (平均应答时长) = mean wait of answered calls; average talk time (平均通话时长) = mean talk
  of completed calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo

from telephony.model import CallOutcome, CallRecord


@dataclass(slots=True)
class IntervalCounts:
    """Counters for one queue and one interval (or one day, when summed).

    The one counts type: the stats count in it, the store (:mod:`telephony.store`) writes it
    whole as a ``queue_intervals`` row and reads it back after a restart, so today's figures
    carry on. The interval's length is the stats' choice; the row records where it starts.
    """

    offered: int = 0
    answered: int = 0
    answered_within_sl: int = 0   # answered within the service-level threshold (e.g. 15 s)
    abandoned: int = 0
    timed_out: int = 0            # left the queue unanswered (queue timeout)
    unknown_end: int = 0          # ended while the AMI link was down
    pbx_shutdown: int = 0         # still waiting when Asterisk stopped (not abandoned)
    completed: int = 0            # answered calls whose talk has ended
    sum_wait_answered: float = 0.0
    sum_talk: float = 0.0         # of the completed calls

    def add(self, other: IntervalCounts) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def resolved(self) -> int:
        """Calls that have left the queue one way or another."""
        return (self.answered + self.abandoned + self.timed_out + self.unknown_end
                + self.pbx_shutdown)

    def figures(self) -> dict[str, float | int | None]:
        """The counters plus the derived rates, as JSON-ready numbers."""
        resolved = self.resolved
        return {
            "offered": self.offered,
            "answered": self.answered,
            "abandoned": self.abandoned,
            "timed_out": self.timed_out,
            "unknown_end": self.unknown_end,
            "pbx_shutdown": self.pbx_shutdown,
            "answered_within_sl": self.answered_within_sl,
            "service_level_pct": _pct(self.answered_within_sl, resolved),
            "answer_rate_pct": _pct(self.answered, resolved),
            "abandon_rate_pct": _pct(self.abandoned, resolved),
            "asa_seconds": _mean(self.sum_wait_answered, self.answered),
            "avg_talk_seconds": _mean(self.sum_talk, self.completed),
        }


def _contribution(rec: CallRecord, service_level: float) -> dict[str, float]:
    """What an ended call adds to its interval, as the tracker counts it live: offered on
    joining, answered (and its wait) on ``AgentConnect``, its end by outcome, talk time only
    when the end was seen (an ``unknown_end`` has none; an answered call's end is not a
    second outcome)."""
    out: dict[str, float] = {"offered": 1}
    if rec.answered_at is not None:
        wait = (rec.answered_at - rec.joined_at).total_seconds()
        out["answered"] = 1
        out["sum_wait_answered"] = wait
        out["answered_within_sl"] = int(wait <= service_level)
        talk = rec.talk_seconds
        if rec.outcome is not CallOutcome.UNKNOWN_END and talk is not None:
            out["completed"] = 1
            out["sum_talk"] = talk
        return out
    match rec.outcome:
        case CallOutcome.ABANDONED:
            out["abandoned"] = 1
        case CallOutcome.TIMEOUT:
            out["timed_out"] = 1
        case CallOutcome.UNKNOWN_END:
            out["unknown_end"] = 1
        case CallOutcome.PBX_SHUTDOWN:
            out["pbx_shutdown"] = 1
        case _:
            pass
    return out


def _pct(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100.0 * part / whole, 2)


def _mean(total: float, n: int) -> float | None:
    return None if n == 0 else round(total / n, 2)


@dataclass(slots=True)
class _Bucket:
    counts: IntervalCounts = field(default_factory=IntervalCounts)
    dirty: bool = True


class QueueStats:
    """Per-queue, per-interval counters fed by the call tracker."""

    def __init__(self, *, service_level_seconds: float, interval_minutes: int,
                 timezone: tzinfo) -> None:
        if 60 % interval_minutes and interval_minutes % 60:
            raise ValueError("interval_minutes must divide an hour (5, 10, 15, 30, 60)")
        self.service_level = service_level_seconds
        self._interval = timedelta(minutes=interval_minutes)
        self._tz = timezone
        self._buckets: dict[tuple[str, datetime], _Bucket] = {}

    def interval_start(self, when: datetime) -> datetime:
        """Start (UTC) of the interval holding ``when``."""
        epoch = when.astimezone(UTC).timestamp()
        step = self._interval.total_seconds()
        return datetime.fromtimestamp(epoch - epoch % step, UTC)

    def _counts(self, queue: str, joined_at: datetime) -> IntervalCounts:
        key = (queue, self.interval_start(joined_at))
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket()
        bucket.dirty = True
        return bucket.counts

    # -- fed by the tracker ---------------------------------------------------------------
    def offered(self, queue: str, joined_at: datetime) -> None:
        self._counts(queue, joined_at).offered += 1

    def answered(self, queue: str, joined_at: datetime, wait: float) -> None:
        c = self._counts(queue, joined_at)
        c.answered += 1
        c.sum_wait_answered += wait
        if wait <= self.service_level:
            c.answered_within_sl += 1

    def abandoned(self, queue: str, joined_at: datetime) -> None:
        self._counts(queue, joined_at).abandoned += 1

    def timed_out(self, queue: str, joined_at: datetime) -> None:
        self._counts(queue, joined_at).timed_out += 1

    def unknown_end(self, queue: str, joined_at: datetime, answered: bool) -> None:
        """A call lost from view during an AMI outage; if it was answered it already counts."""
        if not answered:
            self._counts(queue, joined_at).unknown_end += 1

    def pbx_shutdown(self, queue: str, joined_at: datetime, answered: bool) -> None:
        """A call cut by Asterisk stopping; if it was answered it already counts."""
        if not answered:
            self._counts(queue, joined_at).pbx_shutdown += 1

    def completed(self, queue: str, joined_at: datetime, talk: float) -> None:
        c = self._counts(queue, joined_at)
        c.completed += 1
        c.sum_talk += talk

    def replace(self, before: CallRecord | None, after: CallRecord) -> None:
        """Count ended call ``after`` instead of ``before`` (``None``: a call never counted).

        For records settled after the fact: a call found in Asterisk's queue_log that the
        service never saw, an ``unknown_end`` whose real end the queue_log tells, waiting
        callers Asterisk reported as abandoned that a ``Shutdown`` then explained. ``before``
        must be counted the way the tracker counted it (see :func:`_contribution`).
        """
        if before is not None:
            self._apply(before, -1)
        self._apply(after, +1)

    def _apply(self, rec: CallRecord, sign: int) -> None:
        c = self._counts(rec.queue, rec.joined_at)
        for name, value in _contribution(rec, self.service_level).items():
            setattr(c, name, getattr(c, name) + sign * value)

    # -- restore and persistence ------------------------------------------------------------
    def restore(self, rows: Iterable[tuple[str, datetime, IntervalCounts]]) -> None:
        """Load persisted intervals (after a restart) so today's figures continue."""
        for queue, start, counts in rows:
            self._buckets[(queue, start)] = _Bucket(counts, dirty=False)

    def take_dirty(self) -> list[tuple[str, datetime, IntervalCounts]]:
        """Intervals changed since the last call (for the store), marked clean."""
        out = []
        for (queue, start), bucket in self._buckets.items():
            if bucket.dirty:
                bucket.dirty = False
                out.append((queue, start, bucket.counts))
        return out

    def mark_dirty(self, rows: Iterable[tuple[str, datetime, IntervalCounts]]) -> None:
        """Put back rows a failed write took (they are written again next time)."""
        for queue, start, _ in rows:
            bucket = self._buckets.get((queue, start))
            if bucket is not None:
                bucket.dirty = True

    def prune(self, before: datetime) -> None:
        """Forget intervals that started before ``before`` and are already written (the
        reports read today's; older ones are in the store)."""
        for key in [k for k, b in self._buckets.items() if k[1] < before and not b.dirty]:
            del self._buckets[key]

    # -- reports ---------------------------------------------------------------------------
    def local_day(self, when: datetime) -> date:
        return when.astimezone(self._tz).date()

    def intervals(self, queue: str, day: date) -> list[tuple[datetime, IntervalCounts]]:
        """Intervals of ``queue`` on local ``day``, in time order."""
        rows = [(start, b.counts) for (q, start), b in self._buckets.items()
                if q == queue and self.local_day(start) == day]
        return sorted(rows, key=lambda r: r[0])

    def day(self, queue: str, day: date) -> IntervalCounts:
        total = IntervalCounts()
        for _, counts in self.intervals(queue, day):
            total.add(counts)
        return total

    def queues(self) -> list[str]:
        return sorted({q for q, _ in self._buckets})
