"""Prometheus metrics of the intake channels, read at scrape time (like :mod:`hotline.metrics`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from channels.durable import DurableGateway
from channels.mailbox import MailboxPoller


class IntakeCollector(Collector):
    """Gateway (Redis / spool), and mailbox figures."""

    def __init__(self, gateway: DurableGateway, mailbox: MailboxPoller | None = None) -> None:
        self._gateway = gateway
        self._mailbox = mailbox

    def collect(self) -> Iterator[Metric]:
        gw = self._gateway
        up = GaugeMetricFamily("hotline_intake_redis_up",
                               "1 while intakes go straight to the Redis stream")
        up.add_metric([], 1.0 if gw.redis_up else 0.0)
        yield up
        spooled = GaugeMetricFamily("hotline_intake_spooled",
                                    "Accepted intakes waiting in the local spool for Redis")
        spooled.add_metric([], float(gw.spooled))
        yield spooled
        totals = CounterMetricFamily("hotline_intake", "Intake gateway totals since start "
                                     "(to_redis, to_spool, duplicates, forwarded, ...)",
                                     labels=["what"])
        for name, value in dataclasses.asdict(gw.counters).items():
            totals.add_metric([name], float(value))
        yield totals
        if self._mailbox is not None:
            mail = CounterMetricFamily("hotline_mailbox", "Mayor's mailbox poller totals",
                                       labels=["what"])
            report = self._mailbox.totals
            for f in dataclasses.fields(report):
                if f.name not in ("skipped", "remaining"):
                    mail.add_metric([f.name], float(getattr(report, f.name)))
            yield mail
            skipped = CounterMetricFamily("hotline_mailbox_skipped",
                                          "Mails skipped (auto-reply, bounce, loop ...)",
                                          labels=["reason"])
            for reason, count in report.skipped.items():
                skipped.add_metric([reason], float(count))
            yield skipped
