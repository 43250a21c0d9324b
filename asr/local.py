"""In-process recognition: one shared Vosk model, one ``KaldiRecognizer`` per stream, decoding in
a thread pool (never on the event loop).

Flow of one stream::

    feed(pcm) ─ cut into 100 ms chunks ─▶ bounded queue (asr.queue_seconds) ─▶ decoder task
        ─▶ pool thread: AcceptWaveform per chunk (+ PartialResult / FinalResult)
        ─▶ sink.segment(partial | final), in order

Backpressure policy (issue 5): a stream's queue holds ``asr.queue_seconds`` of audio; when it
is full ``feed()`` waits, which holds back the AudioSocket read and so TCP from Asterisk: audio
of a running stream is never dropped. Total admission is ``asr.max_streams``: beyond it a new
stream is refused at once with :class:`~asr.ports.CapacityExceeded` (logged, counted in
``hotline_asr_recognizer_refused_total{reason="capacity"}``). Audio queued in total is
therefore bounded by ``max_streams × queue_seconds``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import vosk  # type: ignore[import-untyped]

from asr.admission import admit
from asr.ports import Segment, TranscriptSink
from asr.recog_metrics import RecognitionStats
from asr.results import DECODE_CHUNK_SECONDS, PartialGate, chunk_bytes, final_segment
from config.asr import AsrConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

# One call into the pool decodes at most this much queued audio: it bounds how long a stream
# that is closed mid-decode keeps its thread (the recogniser is freed only after that call).
MAX_BATCH_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class _Decoded:
    """What one pool call produced (parsed JSON, in Vosk's order)."""

    finals: list[dict[str, Any]]
    partial: dict[str, Any] | None
    seconds: float


def _decode(rec: Any, chunks: list[bytes], end: bool, want_partial: bool) -> _Decoded:
    """Runs in a pool thread: one ``AcceptWaveform`` per chunk (exactly like bare Vosk fed in
    the same chunks), then ``FinalResult`` at the end of audio or maybe ``PartialResult``."""
    t0 = time.perf_counter()
    finals: list[dict[str, Any]] = []
    for chunk in chunks:
        if rec.AcceptWaveform(chunk):
            finals.append(json.loads(rec.Result()))
    partial = None
    if end:
        finals.append(json.loads(rec.FinalResult()))
    elif want_partial:
        partial = json.loads(rec.PartialResult())
    return _Decoded(finals, partial, time.perf_counter() - t0)


class LocalRecognizer:
    """The :class:`~asr.ports.Recognizer` that decodes in this process.

    ``async with LocalRecognizer(model, config) as recognizer:`` owns the decoding threads
    (``asr.workers``, 0 = one per core). ``model`` comes from :func:`asr.model.load_model`.
    """

    def __init__(self, model: vosk.Model, config: AsrConfig) -> None:
        self._model = model
        self._config = config
        self.workers = config.workers or os.cpu_count() or 1
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False
        self.stats = RecognitionStats(mode="local", capacity=config.max_streams,
                                      workers=self.workers)

    async def __aenter__(self) -> Self:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self.workers, thread_name_prefix="asr-decode")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            # Streams still open hold their last decode call; wait for it off the loop.
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    @property
    def active_streams(self) -> int:
        """Streams holding a recogniser now (0 when every stream has been closed)."""
        return self.stats.active

    def open(self, stream_id: str, sample_rate: int, sink: TranscriptSink
             ) -> AbstractAsyncContextManager[_LocalStream]:
        """Open a stream; raises :class:`CapacityExceeded` at once when ``asr.max_streams``
        streams are open (or the recogniser is shut down)."""
        self._admissible(stream_id)
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        return self._session(stream_id, sample_rate, sink)

    def _admissible(self, stream_id: str) -> None:
        admit(self.stats, stream_id, running=not self._closed and self._pool is not None)

    @asynccontextmanager
    async def _session(self, stream_id: str, sample_rate: int, sink: TranscriptSink
                       ) -> AsyncIterator[_LocalStream]:
        self._admissible(stream_id)   # again: another stream may have taken the slot since
        assert self._pool is not None
        self.stats.active += 1
        self.stats.streams_total += 1
        stream = _LocalStream(self._model, self._pool, self._config, self.stats, stream_id,
                              sample_rate, sink)
        try:
            yield stream
        finally:
            try:
                await stream.close()
            finally:
                self.stats.active -= 1


class _LocalStream:
    """One stream (see the module docstring). Made by :meth:`LocalRecognizer.open`."""

    def __init__(self, model: vosk.Model, pool: concurrent.futures.ThreadPoolExecutor,
                 config: AsrConfig, stats: RecognitionStats, stream_id: str,
                 sample_rate: int, sink: TranscriptSink) -> None:
        self.stream_id = stream_id
        self._model = model
        self._pool = pool
        self._words = config.words
        self._stats = stats
        self._sample_rate = sample_rate
        self._sink = sink
        self._chunk = chunk_bytes(sample_rate)
        self._chunk_seconds = self._chunk / (2 * sample_rate)
        self._batch = max(1, round(MAX_BATCH_SECONDS / DECODE_CHUNK_SECONDS))
        depth = max(1, math.ceil(config.queue_seconds / DECODE_CHUNK_SECONDS))
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=depth)
        self._queued_seconds = 0.0
        self._pending = bytearray()
        self._partials = PartialGate(config.partial_interval_seconds)
        self._seq = 0
        self._ended = False
        self._error: BaseException | None = None
        self._rec: Any = None
        self._inflight: concurrent.futures.Future[Any] | None = None
        self._task = asyncio.create_task(self._decode_loop(), name=f"asr-decode-{stream_id}")

    async def feed(self, pcm: bytes) -> None:
        """Queue 16-bit mono PCM; waits while the stream's queue is full (never drops)."""
        if self._ended:
            raise RuntimeError(f"ASR stream {self.stream_id}: feed() after finish()")
        self._raise_if_failed()
        self._pending += pcm
        while len(self._pending) >= self._chunk:
            chunk = bytes(self._pending[:self._chunk])
            del self._pending[:self._chunk]
            await self._put(chunk)

    async def finish(self) -> None:
        """End of audio: decode what is left, deliver every remaining segment."""
        if self._ended:
            raise RuntimeError(f"ASR stream {self.stream_id}: finish() twice")
        self._raise_if_failed()
        self._ended = True
        if len(self._pending) % 2:      # a torn last sample (stream cut mid-frame)
            del self._pending[-1]
        if self._pending:
            await self._put(bytes(self._pending))
            self._pending.clear()
        await self._queue.put(None)
        await asyncio.shield(self._task)
        self._raise_if_failed()

    async def _put(self, chunk: bytes) -> None:
        await self._queue.put(chunk)
        seconds = len(chunk) / (2 * self._sample_rate)
        self._queued_seconds += seconds
        self._stats.queued_seconds += seconds

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"ASR stream {self.stream_id} failed: {self._error!r}"
                               ) from self._error

    async def close(self) -> None:
        """Stop decoding (if ``finish()`` was not called) and free the recogniser. Waits for a
        decode call already running in the pool: the recogniser is in use until it returns."""
        if not self._task.done():
            self._task.cancel()
            self._stats.abandoned_total += 1
            log.info("ASR stream %s closed before the end of audio (%.1f s undecoded)",
                     self.stream_id, self._queued_seconds, extra={"stream_id": self.stream_id})
        try:
            await asyncio.gather(self._task, return_exceptions=True)
        finally:
            inflight = self._inflight
            if inflight is not None and not inflight.done():
                await asyncio.wait([asyncio.wrap_future(inflight)])
            self._stats.queued_seconds -= self._queued_seconds
            self._queued_seconds = 0.0
            self._rec = None

    async def _in_pool(self, fn: Callable[..., T], *args: Any) -> T:
        future = self._pool.submit(fn, *args)
        self._inflight = future
        return await asyncio.wrap_future(future)

    def _new_recognizer(self) -> Any:
        rec = vosk.KaldiRecognizer(self._model, self._sample_rate)
        rec.SetWords(self._words)
        return rec

    async def _decode_loop(self) -> None:
        end = False
        try:
            self._rec = await self._in_pool(self._new_recognizer)
            while not end:
                chunks = [await self._queue.get()]
                while chunks[-1] is not None and len(chunks) < self._batch:
                    try:
                        chunks.append(self._queue.get_nowait())
                    except asyncio.QueueEmpty:
                        break
                end = chunks[-1] is None
                audio = [c for c in chunks if c is not None]
                seconds = sum(len(c) for c in audio) / (2 * self._sample_rate)
                want_partial = self._partials.due()
                decoded = await self._in_pool(_decode, self._rec, audio, end, want_partial)
                self._dequeued(seconds)
                self._stats.audio_seconds += seconds
                self._stats.decode_seconds += decoded.seconds
                await self._deliver(decoded)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Reported to the feeder by the next feed()/finish(); the loop has stopped.
            self._error = exc
            self._stats.failed[type(exc).__name__] += 1
            log.error("ASR stream %s: decoding or delivery failed: %r", self.stream_id, exc,
                      extra={"stream_id": self.stream_id})
            if not end:
                await self._drain()

    async def _drain(self) -> None:
        """After a failure: consume the queue until finish() so a waiting feed() returns."""
        while True:
            chunk = await self._queue.get()
            if chunk is None:
                return
            self._dequeued(len(chunk) / (2 * self._sample_rate))

    def _dequeued(self, seconds: float) -> None:
        self._queued_seconds -= seconds
        self._stats.queued_seconds -= seconds

    async def _deliver(self, decoded: _Decoded) -> None:
        for result in decoded.finals:
            seg = final_segment(self.stream_id, self._seq, result)
            self._partials.reset()
            if seg is not None:
                self._seq += 1
                self._stats.segments["final"] += 1
                await self._sink.segment(seg)
        if decoded.partial is not None:
            text = self._partials.admit(decoded.partial)
            if text is not None:
                seg = Segment(stream_id=self.stream_id, text=text, final=False, seq=self._seq)
                self._seq += 1
                self._stats.segments["partial"] += 1
                await self._sink.segment(seg)
