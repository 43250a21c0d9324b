"""Admission of a new stream, the same for the in-process pool and the vosk-server client:
refused at once (logged, counted in ``hotline_asr_recognizer_refused_total``) when the
recogniser is closed or ``asr.max_streams`` streams are open."""

from __future__ import annotations

import logging
from typing import NoReturn

from asr.ports import CapacityExceeded
from asr.recog_metrics import REFUSED_CAPACITY, REFUSED_CLOSED, RecognitionStats

log = logging.getLogger(__name__)


def admit(stats: RecognitionStats, stream_id: str, *, running: bool) -> None:
    """Raise :class:`CapacityExceeded` unless a stream may open now."""
    if not running:
        refuse(stats, stream_id, REFUSED_CLOSED, "语音识别未启动或已关闭 / recogniser closed")
    if stats.active >= stats.capacity:
        refuse(stats, stream_id, REFUSED_CAPACITY,
               f"语音识别容量已满 ({stats.active}/{stats.capacity} 路) / "
               f"at capacity, asr.max_streams={stats.capacity}")


def refuse(stats: RecognitionStats, stream_id: str, reason: str, message: str,
           error: type[CapacityExceeded] = CapacityExceeded) -> NoReturn:
    """Count, log and raise the refusal of ``stream_id``."""
    stats.refused[reason] += 1
    log.warning("ASR stream %s refused: %s", stream_id, message,
                extra={"stream_id": stream_id, "reason": reason})
    raise error(f"{message} (stream {stream_id})")
