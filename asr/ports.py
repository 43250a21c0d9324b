"""The typed boundaries of ``asr/``: what a recogniser gives and what the server needs.

The AudioSocket server (``asr.audiosocket``) knows nothing of Vosk: it opens a
:class:`RecognitionStream` from a :class:`Recognizer` (in-process pool, ``asr.local``, or the
vosk-server client, ``asr.remote``) and hands every :class:`Segment` to a
:class:`TranscriptSink` (call record, live screen-pop channel, phone intake).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word; times in seconds from the start of the stream."""

    word: str
    start: float
    end: float
    conf: float = 1.0


@dataclass(frozen=True, slots=True)
class Segment:
    """A partial (``final=False``, text only, replaced by the next) or final result."""

    stream_id: str
    text: str
    final: bool
    words: tuple[Word, ...] = ()
    start: float | None = None      # first word's start (finals with words)
    end: float | None = None        # last word's end
    seq: int = 0                    # per stream, increasing
    extra: dict[str, str] = field(default_factory=dict)


class CapacityExceeded(Exception):
    """No room for another stream (``asr.max_streams``); the new stream is refused."""

    code = "asr_capacity"


class RecognitionStream(Protocol):
    """One caller's audio on its way to a recogniser (one Vosk recogniser per stream)."""

    async def feed(self, pcm: bytes) -> None:
        """Queue signed-linear 16-bit little-endian mono audio. Waits (never drops) when the
        stream's queue is full, so a slow decoder holds back the socket read."""

    async def finish(self) -> None:
        """End of audio: flush the final result, deliver every remaining segment."""


class Recognizer(Protocol):
    """Makes recognition streams; bounded in streams and queued audio."""

    def open(self, stream_id: str, sample_rate: int, sink: TranscriptSink
             ) -> AbstractAsyncContextManager[RecognitionStream]:
        """Open a stream; raises :class:`CapacityExceeded` at once when full. Leaving the
        context without ``finish()`` (hangup mid-utterance, error) still frees the recogniser."""


class TranscriptSink(Protocol):
    """Where segments go, in order per stream."""

    async def segment(self, seg: Segment) -> None:
        """Receive one partial or final segment."""
