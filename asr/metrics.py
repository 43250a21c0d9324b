"""Prometheus metrics of the AudioSocket server, read at scrape time (like
:mod:`hotline.metrics`): the server counts in :class:`AudioSocketStats`; this collector reads.

Register it in the service's own registry: ``build_registry(sources, ..., AudioSocketCollector(
server.stats))``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(slots=True)
class AudioSocketStats:
    """What the server has seen since start; ``active`` is the streams open right now."""

    active: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)   # reason -> streams refused
    ended: Counter[str] = field(default_factory=Counter)      # reason -> streams ended
    audio_seconds: float = 0.0
    dtmf: int = 0


class AudioSocketCollector(Collector):
    """``hotline_asr_streams_*`` from one server's :class:`AudioSocketStats`."""

    def __init__(self, stats: AudioSocketStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        active = GaugeMetricFamily("hotline_asr_streams_active",
                                   "AudioSocket streams being transcribed now (转写中的通话音频流)")
        active.add_metric([], float(s.active))
        yield active
        accepted = CounterMetricFamily("hotline_asr_streams_accepted",
                                       "AudioSocket streams matched to a call and transcribed")
        accepted.add_metric([], float(s.accepted))
        yield accepted
        rejected = CounterMetricFamily(
            "hotline_asr_streams_rejected",
            "AudioSocket streams refused before transcription (拒绝的音频流), by reason",
            labels=["reason"])
        for reason, n in sorted(s.rejected.items()):
            rejected.add_metric([reason], float(n))
        yield rejected
        ended = CounterMetricFamily(
            "hotline_asr_streams_ended",
            "Transcribed streams ended, by reason (hangup, eof and ivr_window are normal)",
            labels=["reason"])
        for reason, n in sorted(s.ended.items()):
            ended.add_metric([reason], float(n))
        yield ended
        audio = CounterMetricFamily("hotline_asr_audio_seconds",
                                    "Seconds of call audio received over AudioSocket")
        audio.add_metric([], s.audio_seconds)
        yield audio
        dtmf = CounterMetricFamily("hotline_asr_dtmf", "DTMF digits received over AudioSocket")
        dtmf.add_metric([], float(s.dtmf))
        yield dtmf
