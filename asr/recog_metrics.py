"""Recognition capacity on ``/metrics``: counted by the recogniser, read at scrape time.

Same pattern as ``hotline.metrics``: the recogniser keeps plain numbers in
:class:`RecognitionStats` (updated on the event loop only), and :class:`AsrCollector` turns
them into metric families when Prometheus scrapes. Register it with
``hotline.metrics.build_registry(sources, AsrCollector(recognizer.stats))``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Why a new stream was refused (label values of hotline_asr_recognizer_refused_total).
REFUSED_CAPACITY = "capacity"
REFUSED_CLOSED = "closed"
REFUSED_UNAVAILABLE = "unavailable"      # remote: no server of the pool answered


@dataclass
class RecognitionStats:
    """What one recogniser (local pool or remote client) has done so far."""

    mode: str
    capacity: int
    workers: int = 0
    active: int = 0
    queued_seconds: float = 0.0          # audio accepted by feed() and not yet decoded
    streams_total: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)   # streams that ended in an error
    abandoned_total: int = 0             # left without finish() (hangup mid-utterance)
    audio_seconds: float = 0.0           # audio decoded
    decode_seconds: float = 0.0          # wall time the decoder threads spent (local only)
    segments: Counter[str] = field(default_factory=Counter)  # "partial" / "final"


class AsrCollector(Collector):
    """Yields the ``hotline_asr_recognizer_*`` families (the AudioSocket server's own
    ``asr.metrics`` has ``hotline_asr_streams_*``) from a :class:`RecognitionStats`."""

    def __init__(self, stats: RecognitionStats) -> None:
        self._s = stats

    def collect(self) -> Iterator[Metric]:
        s = self._s
        for name, help_, value in [
            ("hotline_asr_recognizer_streams_active", "Recognition streams open now (识别中的通话)",
             s.active),
            ("hotline_asr_recognizer_capacity", "Streams accepted at once (asr.max_streams)",
             s.capacity),
            ("hotline_asr_recognizer_workers", "Decoding threads (local mode)", s.workers),
            ("hotline_asr_recognizer_queue_seconds", "Audio waiting to be decoded, all streams",
             s.queued_seconds),
        ]:
            gauge = GaugeMetricFamily(name, help_, labels=["mode"])
            gauge.add_metric([s.mode], float(value))
            yield gauge
        for name, help_, value in [
            ("hotline_asr_recognizer_streams", "Streams opened", s.streams_total),
            ("hotline_asr_recognizer_streams_abandoned", "Streams closed before the end of audio",
             s.abandoned_total),
            ("hotline_asr_recognizer_audio_seconds", "Seconds of audio decoded", s.audio_seconds),
            ("hotline_asr_recognizer_decode_seconds", "Seconds spent decoding (threads)",
             s.decode_seconds),
        ]:
            counter = CounterMetricFamily(name, help_, labels=["mode"])
            counter.add_metric([s.mode], float(value))
            yield counter
        for name, help_, label, counts in [
            ("hotline_asr_recognizer_refused", "New streams refused (拒绝的识别流), by reason", "reason",
             s.refused),
            ("hotline_asr_recognizer_failed", "Streams ended by an error, by kind", "kind",
             s.failed),
            ("hotline_asr_recognizer_segments", "Segments delivered", "kind", s.segments),
        ]:
            counter = CounterMetricFamily(name, help_, labels=["mode", label])
            for key, n in sorted(counts.items()):
                counter.add_metric([s.mode, key], float(n))
            yield counter
