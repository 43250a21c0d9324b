"""Prometheus metrics of the AudioSocket server and of the transcript sinks, read at scrape
time (like :mod:`hotline.metrics`): the server counts in :class:`AudioSocketStats`, the sinks
in :class:`SinkStats`; the collectors read.

Register them in the service's own registry (never the process-global default one, which
``/metrics`` does not serve): ``build_registry(sources, ..., AudioSocketCollector(
server.stats), TranscriptSinkCollector(transcripts.stats))``.
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


# Label values always shown, so the series exist (at 0) before the first segment or failure.
SEGMENT_KINDS = ("partial", "final")
SINK_TARGETS = ("redis", "database")


@dataclass(slots=True)
class SinkStats:
    """What the transcript sinks (:class:`asr.sink.CallTranscripts`) delivered and failed to
    deliver; updated on the event loop only."""

    segments: Counter[str] = field(default_factory=Counter)   # kind -> segments delivered
    errors: Counter[str] = field(default_factory=Counter)     # target -> segments not sent


class TranscriptSinkCollector(Collector):
    """``hotline_asr_segments_total{kind}`` and ``hotline_asr_sink_errors_total{target}``."""

    def __init__(self, stats: SinkStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        segments = CounterMetricFamily("hotline_asr_segments", "Transcript segments delivered",
                                       labels=["kind"])
        for kind in sorted({*SEGMENT_KINDS, *self._stats.segments}):
            segments.add_metric([kind], float(self._stats.segments[kind]))
        yield segments
        errors = CounterMetricFamily("hotline_asr_sink_errors",
                                     "Transcript segments a sink could not publish or store",
                                     labels=["target"])
        for target in sorted({*SINK_TARGETS, *self._stats.errors}):
            errors.add_metric([target], float(self._stats.errors[target]))
        yield errors
