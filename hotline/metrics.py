"""Prometheus metrics, read at scrape time from the live components.

A custom collector (not counters bumped on the hot path) keeps event ingestion cheap: the
board, tracker, stats and link already count what matters; ``/metrics`` just reads them.
The registry is the service's own, never the process-global default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from telephony.calls import CallTracker
from telephony.dispatch import EventDispatcher
from telephony.link import AmiLink, LinkState
from telephony.seats import SeatBoard
from telephony.stats import QueueStats


@dataclass(frozen=True)
class MetricSources:
    """Everything the collector reads."""

    board: SeatBoard
    tracker: CallTracker
    stats: QueueStats
    dispatcher: EventDispatcher
    link: AmiLink
    queues: tuple[str, ...]
    clock: Callable[[], datetime]
    persist_backlog: Callable[[], int]


class HotlineCollector(Collector):
    """Yields the hotline's gauges and counters from :class:`MetricSources`."""

    def __init__(self, sources: MetricSources) -> None:
        self._s = sources

    def collect(self) -> Iterator[Metric]:
        s = self._s
        now = s.clock()
        seats = GaugeMetricFamily("hotline_seats", "Seats by state (坐席状态)", labels=["state"])
        for state, n in s.board.counts().items():
            seats.add_metric([state.value], n)
        yield seats

        waiting = GaugeMetricFamily("hotline_queue_waiting", "Callers waiting", labels=["queue"])
        longest = GaugeMetricFamily("hotline_queue_longest_wait_seconds",
                                    "Longest current wait", labels=["queue"])
        today = {name: GaugeMetricFamily(f"hotline_queue_today_{name}", help_, labels=["queue"])
                 for name, help_ in [
                     ("offered", "Calls offered today (呼入量)"),
                     ("answered", "Calls answered today (接通量)"),
                     ("abandoned", "Calls abandoned today (放弃量)"),
                     ("pbx_shutdown", "Callers still waiting when Asterisk stopped today"),
                     ("answered_within_sl", "Answered within the service level today"),
                     ("service_level_ratio", "Answered within SL / calls resolved today"),
                     ("answer_ratio", "接通率: answered / calls resolved today"),
                     ("asa_seconds", "Average speed of answer today"),
                     ("avg_talk_seconds", "Average talk time today"),
                 ]}
        day = s.stats.local_day(now)
        for queue in s.queues:
            waiting.add_metric([queue], len(s.tracker.waiting(queue)))
            longest.add_metric([queue], s.tracker.longest_wait(queue, now))
            fig = s.stats.day(queue, day).figures()
            for name in ("offered", "answered", "abandoned", "pbx_shutdown",
                         "answered_within_sl"):
                today[name].add_metric([queue], float(fig[name] or 0))
            for name, key, scale in [("service_level_ratio", "service_level_pct", 100.0),
                                     ("answer_ratio", "answer_rate_pct", 100.0),
                                     ("asa_seconds", "asa_seconds", 1.0),
                                     ("avg_talk_seconds", "avg_talk_seconds", 1.0)]:
                value = fig[key]
                if value is not None:
                    today[name].add_metric([queue], float(value) / scale)
        yield waiting
        yield longest
        yield from today.values()

        up = GaugeMetricFamily("hotline_ami_up", "1 when the AMI link is logged in and synced")
        up.add_metric([], 1.0 if s.link.state is LinkState.READY else 0.0)
        yield up
        for name, value in s.link.counters.snapshot().items():
            counter = CounterMetricFamily(f"hotline_ami_{name}", f"AMI link: {name}")
            counter.add_metric([], float(value))
            yield counter
        for name, value, help_ in [
            ("hotline_events_malformed", s.dispatcher.events_malformed,
             "Typed events with missing/bad fields skipped"),
            ("hotline_event_listener_errors", s.dispatcher.listener_errors,
             "Event listener failures (logged)"),
            ("hotline_seat_unexpected_transitions", s.board.unexpected_transitions,
             "Seat transitions the lifecycle forbids (missed events)"),
            ("hotline_seat_wrapup_overruled", s.board.wrapup_overruled,
             "Seats Asterisk rang before the configured wrap-up ended (its wrapuptime is "
             "shorter than queues.yaml wrapup_seconds)"),
        ]:
            counter = CounterMetricFamily(name, help_)
            counter.add_metric([], float(value))
            yield counter
        backlog = GaugeMetricFamily("hotline_call_records_unsaved",
                                    "Call records waiting to be written to the database")
        backlog.add_metric([], s.persist_backlog())
        yield backlog


def build_registry(sources: MetricSources, *more: Collector) -> CollectorRegistry:
    """The service's registry: the telephony collector plus ``more`` (the intake channels)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HotlineCollector(sources))
    for collector in more:
        registry.register(collector)
    return registry
