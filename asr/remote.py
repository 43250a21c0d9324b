"""Remote recognition: a client of vosk-server's websocket protocol, over a pool of servers.

The protocol (alphacep/vosk-server ``websocket/asr_server.py``): the client sends a text message
``{"config": {"sample_rate": 8000, "words": 1}}``, then binary messages of 16-bit PCM; the
server answers *every* audio message with one JSON text message, ``{"partial": ...}`` or a final
``{"text": ..., "result": [...]}`` when Vosk detected an endpoint. The text message
``{"eof" : 1}`` (that exact string: the server compares it verbatim) asks for the final result,
after which the server closes the connection.

Same interface and policy as :class:`asr.local.LocalRecognizer`: audio is sent in the same fixed
100 ms chunks (so a server gives the transcript the in-process decoder gives), at most
``asr.queue_seconds`` of audio is awaiting its answer per stream (``feed()`` waits beyond it),
and at most ``asr.max_streams`` streams are open. A stream connects to the servers in turn
(round-robin); a server that fails to connect is skipped for ``reconnect_seconds`` and the next
one tried. A connection lost mid-stream cannot be resumed elsewhere (the recogniser's state is
on that server): the stream fails with :class:`RemoteStreamLost`, logged and counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from asr.ports import CapacityExceeded, Segment, TranscriptSink
from asr.admission import admit, refuse
from asr.recog_metrics import REFUSED_UNAVAILABLE, RecognitionStats
from asr.results import DECODE_CHUNK_SECONDS, PartialGate, chunk_bytes, final_segment
from config.asr import AsrConfig

log = logging.getLogger(__name__)

EOF_MESSAGE = '{"eof" : 1}'


class RemoteUnavailable(CapacityExceeded):
    """No server of ``asr.remote.urls`` accepted the stream: it is refused like a full pool."""

    code = "asr_unavailable"


class RemoteStreamLost(RuntimeError):
    """The vosk-server connection broke mid-stream; the rest of the audio is not transcribed."""

    code = "asr_stream_lost"


class ServerPool:
    """Round-robin over the URLs, skipping a server for ``reconnect_seconds`` after it failed."""

    def __init__(self, urls: list[str], reconnect_seconds: float) -> None:
        self.urls = list(urls)
        self._retry_after = reconnect_seconds
        self._next = 0
        self._down_until: dict[str, float] = {}

    def order(self) -> list[str]:
        """Every URL once, starting at the next in turn; servers marked down go last."""
        n = len(self.urls)
        turn = [self.urls[(self._next + i) % n] for i in range(n)]
        self._next = (self._next + 1) % max(n, 1)
        now = time.monotonic()
        return sorted(turn, key=lambda url: self._down_until.get(url, 0.0) > now)

    def failed(self, url: str) -> None:
        self._down_until[url] = time.monotonic() + self._retry_after

    def succeeded(self, url: str) -> None:
        self._down_until.pop(url, None)


class RemoteRecognizer:
    """The :class:`~asr.ports.Recognizer` backed by a pool of vosk-servers (``asr.remote``).

    ``async with RemoteRecognizer(config) as recognizer`` (it owns no connection between
    streams: each stream is one websocket, as vosk-server expects).
    """

    def __init__(self, config: AsrConfig) -> None:
        if not config.remote.urls:
            raise ValueError("asr.remote.urls is empty: remote mode needs at least one "
                             "vosk-server (ws://host:2700)")
        self._config = config
        self.pool = ServerPool(config.remote.urls, config.remote.reconnect_seconds)
        self._open = False
        self.stats = RecognitionStats(mode="remote", capacity=config.max_streams)

    async def __aenter__(self) -> Self:
        self._open = True
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._open = False

    @property
    def active_streams(self) -> int:
        """Streams holding a server connection now."""
        return self.stats.active

    def open(self, stream_id: str, sample_rate: int, sink: TranscriptSink
             ) -> AbstractAsyncContextManager[RemoteStream]:
        """Open a stream (connects on entering); raises :class:`CapacityExceeded` at once when
        full, :class:`RemoteUnavailable` on entering when no server answers."""
        self._admissible(stream_id)
        return self._session(stream_id, sample_rate, sink)

    def _admissible(self, stream_id: str) -> None:
        admit(self.stats, stream_id, running=self._open)

    @asynccontextmanager
    async def _session(self, stream_id: str, sample_rate: int, sink: TranscriptSink
                       ) -> AsyncIterator[RemoteStream]:
        self._admissible(stream_id)
        self.stats.active += 1
        try:
            ws, url = await self._connect(stream_id, sample_rate)
            self.stats.streams_total += 1
            stream = RemoteStream(ws, url, self._config, self.stats, stream_id, sample_rate,
                                  sink)
            try:
                yield stream
            finally:
                await stream.close()
        finally:
            self.stats.active -= 1

    async def _connect(self, stream_id: str, sample_rate: int) -> tuple[ClientConnection, str]:
        remote = self._config.remote
        errors = []
        for url in self.pool.order():
            try:
                ws = await connect(url, open_timeout=remote.connect_timeout_seconds,
                                   proxy=None, compression=None, close_timeout=2.0,
                                   max_size=None)
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                self.pool.failed(url)
                errors.append(f"{url}: {exc!r}")
                log.warning("vosk-server %s 连接失败 / connect failed for stream %s: %r; "
                            "trying the next server", url, stream_id, exc,
                            extra={"stream_id": stream_id, "url": url})
                continue
            self.pool.succeeded(url)
            await ws.send(json.dumps({"config": {"sample_rate": sample_rate,
                                                 "words": int(self._config.words)}}))
            log.info("ASR stream %s on vosk-server %s", stream_id, url,
                     extra={"stream_id": stream_id, "url": url})
            return ws, url
        refuse(self.stats, stream_id, REFUSED_UNAVAILABLE,
               "没有可用的语音识别服务器 / no vosk-server reachable: " + "; ".join(errors),
               RemoteUnavailable)


class RemoteStream:
    """One stream on one vosk-server connection. Made by :meth:`RemoteRecognizer.open`."""

    def __init__(self, ws: ClientConnection, url: str, config: AsrConfig,
                 stats: RecognitionStats, stream_id: str, sample_rate: int,
                 sink: TranscriptSink) -> None:
        self.stream_id = stream_id
        self.url = url
        self._ws = ws
        self._stats = stats
        self._sink = sink
        self._rate = sample_rate
        self._chunk = chunk_bytes(sample_rate)
        self._depth = max(1, math.ceil(config.queue_seconds / DECODE_CHUNK_SECONDS))
        self._pending = bytearray()
        # Unanswered messages in order: (seconds of audio, is it the eof message).
        self._in_flight: list[tuple[float, bool]] = []
        self._room = asyncio.Event()
        self._partials = PartialGate(config.partial_interval_seconds)
        self._seq = 0
        self._ended = False
        self._error: BaseException | None = None
        self._receiver = asyncio.create_task(self._receive(), name=f"asr-remote-{stream_id}")

    async def feed(self, pcm: bytes) -> None:
        """Send 16-bit mono PCM in 100 ms messages; waits while ``queue_seconds`` of audio is
        unanswered (never drops)."""
        if self._ended:
            raise RuntimeError(f"ASR stream {self.stream_id}: feed() after finish()")
        self._raise_if_failed()
        self._pending += pcm
        while len(self._pending) >= self._chunk:
            chunk = bytes(self._pending[:self._chunk])
            del self._pending[:self._chunk]
            await self._send(chunk, len(chunk) / (2 * self._rate))

    async def finish(self) -> None:
        """Send the rest and ``{"eof" : 1}``; returns once the final result is delivered."""
        if self._ended:
            raise RuntimeError(f"ASR stream {self.stream_id}: finish() twice")
        self._raise_if_failed()
        self._ended = True
        if len(self._pending) % 2:
            del self._pending[-1]
        if self._pending:
            await self._send(bytes(self._pending), len(self._pending) / (2 * self._rate))
            self._pending.clear()
        await self._send(EOF_MESSAGE, 0.0, eof=True)
        await asyncio.shield(self._receiver)
        self._raise_if_failed()

    async def _send(self, message: bytes | str, seconds: float, eof: bool = False) -> None:
        while len(self._in_flight) >= self._depth and self._error is None:
            self._room.clear()
            await self._room.wait()
        self._raise_if_failed()
        self._in_flight.append((seconds, eof))
        self._stats.queued_seconds += seconds
        try:
            await self._ws.send(message)
        except ConnectionClosed as exc:
            self._fail(exc)
            self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = RemoteStreamLost(
                f"语音识别服务器连接中断 / vosk-server {self.url} connection lost mid-stream "
                f"(stream {self.stream_id}): {exc!r}")
            self._error.__cause__ = exc
            self._stats.failed["connection_lost"] += 1
            log.error("ASR stream %s: %s", self.stream_id, self._error,
                      extra={"stream_id": self.stream_id, "url": self.url})
        self._room.set()

    async def _receive(self) -> None:
        try:
            async for message in self._ws:
                obj = json.loads(message)
                if not self._in_flight:
                    raise ValueError(f"unsolicited message from vosk-server: {message!r:.80}")
                seconds, eof = self._in_flight.pop(0)
                self._stats.queued_seconds -= seconds
                self._stats.audio_seconds += seconds
                self._room.set()
                await self._deliver(obj)
                if eof:            # the answer to {"eof" : 1}: the final result
                    return
            self._fail(ConnectionError("closed by the server before the final result"))
        except ConnectionClosed as exc:
            self._fail(exc)
        except (ValueError, KeyError, TypeError) as exc:    # not vosk-server JSON
            self._fail(exc)
        except Exception as exc:                            # the sink failed
            self._error = exc
            self._stats.failed[type(exc).__name__] += 1
            log.error("ASR stream %s: delivery failed: %r", self.stream_id, exc,
                      extra={"stream_id": self.stream_id})
            self._room.set()

    async def _deliver(self, obj: dict[str, Any]) -> None:
        if "partial" in obj:
            text = self._partials.admit(obj) if self._partials.due() else None
            if text is not None:
                await self._emit(Segment(stream_id=self.stream_id, text=text, final=False,
                                         seq=self._seq))
            return
        self._partials.reset()
        seg = final_segment(self.stream_id, self._seq, obj)
        if seg is not None:
            await self._emit(seg)

    async def _emit(self, seg: Segment) -> None:
        self._seq += 1
        self._stats.segments["final" if seg.final else "partial"] += 1
        await self._sink.segment(seg)

    async def close(self) -> None:
        """Stop receiving (if the final did not come yet) and close the connection."""
        if not self._receiver.done():
            self._receiver.cancel()
            self._stats.abandoned_total += 1
            log.info("ASR stream %s closed before the end of audio", self.stream_id,
                     extra={"stream_id": self.stream_id})
        await asyncio.gather(self._receiver, return_exceptions=True)
        self._stats.queued_seconds -= sum(seconds for seconds, _ in self._in_flight)
        self._in_flight.clear()
        await self._ws.close()
