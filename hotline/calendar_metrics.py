"""Prometheus metrics of the working-day calendar, read at scrape time (like
:mod:`hotline.metrics`): years whose official holiday arrangement is missing, and what the
recounts of provisional deadlines did."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hotline.router_parts import RouterParts


class CalendarCollector(Collector):
    """``hotline_calendar_unconfirmed_years`` (alert on > 0: enter the year in ``sla.yaml``),
    one ``hotline_calendar_unconfirmed_year{year}`` per such year, and the recount totals."""

    def __init__(self, parts: RouterParts, clock: Callable[[], datetime]) -> None:
        self._parts = parts
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        warning = self._parts.calendar_warning(self._clock())
        years = warning.years if warning is not None else ()
        count = GaugeMetricFamily(
            "hotline_calendar_unconfirmed_years",
            "Years a deadline computed now may reach whose official holiday arrangement is in "
            "neither chinese_calendar nor sla.yaml (deadlines there are provisional)")
        count.add_metric([], float(len(years)))
        yield count
        each = GaugeMetricFamily("hotline_calendar_unconfirmed_year",
                                 "1 for each such year", labels=["year"])
        for year in years:
            each.add_metric([str(year)], 1.0)
        yield each
        recounted = CounterMetricFamily(
            "hotline_deadlines_recounted",
            "Open orders with provisional deadlines counted again since start (examined, "
            "changed, confirmed, failed)", labels=["what"])
        for name, value in dataclasses.asdict(self._parts.recounted).items():
            recounted.add_metric([name], float(value))
        yield recounted
