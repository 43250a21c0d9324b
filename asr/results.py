"""Vosk's JSON results (in-process and vosk-server alike) turned into :class:`Segment` s.

Vosk gives ``{"partial": "..."}`` for partial results and ``{"text": "...", "result": [{"word",
"start", "end", "conf"}, ...]}`` for final ones (``result`` only with ``SetWords(True)`` /
``"words": 1``). Times are seconds from the start of the stream.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from asr.ports import Segment, Word
from asr.text import join_cjk

# Audio is decoded in fixed chunks of this length, whatever size the frames arrive in
# (AudioSocket: 20 ms). Vosk's endpointing, hence its output, depends on the chunking
# (measured: 20 ms and 100 ms chunks give different words for the same WAV), so a fixed size
# makes the pipeline's transcript identical to bare Vosk fed the same WAV in the same chunks.
DECODE_CHUNK_SECONDS = 0.1


def chunk_bytes(sample_rate: int) -> int:
    """Bytes of 16-bit mono audio in one decode chunk at ``sample_rate``."""
    return int(sample_rate * DECODE_CHUNK_SECONDS) * 2


def final_segment(stream_id: str, seq: int, result: Mapping[str, Any]) -> Segment | None:
    """A final segment from a Vosk ``Result()``/``FinalResult()``; None when nothing was said."""
    words = tuple(Word(word=str(w["word"]), start=float(w["start"]), end=float(w["end"]),
                       conf=float(w.get("conf", 1.0)))
                  for w in result.get("result", ()))
    text = join_cjk(str(result.get("text", "")))
    if not text and not words:
        return None
    return Segment(stream_id=stream_id, text=text, final=True, words=words,
                   start=words[0].start if words else None,
                   end=words[-1].end if words else None, seq=seq)


class PartialGate:
    """Lets a partial through at most every ``interval`` seconds, and only when its text
    changed (an unchanged or empty partial tells the agent nothing)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last_text = ""
        self._last_at = float("-inf")

    def due(self) -> bool:
        """Whether a partial may be computed now."""
        return time.monotonic() - self._last_at >= self.interval

    def admit(self, result: Mapping[str, Any]) -> str | None:
        """The partial's text when it should be delivered, else None."""
        text = join_cjk(str(result.get("partial", "")))
        if not text or text == self._last_text:
            return None
        self._last_text = text
        self._last_at = time.monotonic()
        return text

    def reset(self) -> None:
        """After a final: the next partial starts a new utterance."""
        self._last_text = ""
