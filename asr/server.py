"""The AudioSocket server: Asterisk's ``AudioSocket(uuid,host:port)`` connects here.

Per connection: the first frame must be the UUID; the UUID is matched to a call through a
:class:`CallDirectory` (fed by the AMI side, :mod:`asr.calls`), waiting up to
``audiosocket.correlate_seconds`` because the ``VarSet`` event and the TCP connect race. Then a
recognition stream is opened and every audio frame fed to it; the stream ends on a hangup frame,
on EOF, when the peer goes idle, at the maximum length, or (``ivr`` streams) when the IVR window
closes. However it ends, the audio already received is finished (final result delivered), never
silently dropped; only a server shutdown leaves without ``finish()`` (the recogniser is still
freed by its context manager).

A refused stream gets a hangup frame and the socket closes: Asterisk's dialplan app ends
*normally* on that and the dialplan goes on (the caller still reaches the queue). Every refusal
and every end is logged with its reason (Chinese first) and counted (:mod:`asr.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol, Self

from asr.audiosocket import Frame, FrameError, Kind, describe_error, hangup_frame, parse_dtmf
from asr.audiosocket import parse_uuid, read_frame
from asr.metrics import AudioSocketStats
from asr.ports import CapacityExceeded, Recognizer, RecognitionStream, TranscriptSink
from config.asr import AudioSocketConfig

log = logging.getLogger(__name__)

Purpose = Literal["ivr", "conversation", "recording"]

# After our hangup frame, how long to wait for the peer to close (its audio discarded).
LINGER_SECONDS = 2.0

# Ends that are the normal life of a stream; every other reason is logged as a warning.
NORMAL_ENDS = frozenset({"hangup", "eof", "ivr_window"})

REASON_TEXT: dict[str, str] = {
    "empty": "连接后未发送任何帧 / connection closed before any frame",
    "no_uuid": "首帧不是 UUID / first frame is not the UUID",
    "audio_before_uuid": "UUID 之前收到音频 / audio before the UUID",
    "uuid_timeout": "连接后未及时发送 UUID / no UUID frame in time",
    "unknown_call": "UUID 不属于任何已知通话 / UUID of no known call",
    "duplicate_uuid": "该 UUID 已有音频流 / a stream with this UUID is already open",
    "capacity": "识别容量已满 / recogniser capacity reached",
    "hangup": "对端发送挂机帧 / hangup frame",
    "eof": "对端关闭连接 / peer closed the connection",
    "ivr_window": "IVR 录音时间结束 / IVR utterance window over",
    "idle": "长时间未收到帧 / no frame for too long",
    "too_long": "音频流超过最大时长 / stream longer than the maximum",
    "sample_rate": "采样率与识别器不一致 / sample rate differs from the recogniser's",
    "asterisk_error": "Asterisk 报告错误 / Asterisk reported an error",
    "unexpected_uuid": "流中途再次收到 UUID / second UUID frame in a stream",
    "bad_length": "帧长度不符合类型 / frame length wrong for its kind",
    "unknown_type": "未知帧类型 / unknown frame kind",
    "truncated": "连接在帧中途断开 / stream cut inside a frame",
    "reset": "对端异常断开连接 / peer reset the connection",
    "bad_dtmf": "无效的 DTMF 帧 / invalid DTMF frame",
    "internal_error": "服务内部错误 / internal error (see the traceback)",
}


@dataclass(frozen=True, slots=True)
class CallRef:
    """The call a stream belongs to: the caller channel's ids and why it is streamed."""

    linkedid: str
    uniqueid: str
    purpose: Purpose


class CallDirectory(Protocol):
    """Finds the call a stream UUID was announced for (see :class:`asr.calls.AsrCallDirectory`)."""

    async def wait_for(self, uuid: str, timeout: float) -> CallRef | None:
        """The call of ``uuid``, waiting up to ``timeout`` seconds for it to be announced;
        ``None`` if it never is."""


SinkFactory = Callable[[CallRef], TranscriptSink]
# (call, digit, seconds of audio received before it): DTMF pressed during a stream.
DtmfListener = Callable[[CallRef, str, float], Awaitable[None]]


class _Refused(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class AudioSocketServer:
    """Asyncio TCP server for Asterisk's AudioSocket; owns its connection tasks.

    ``async with AudioSocketServer(...) as server:`` listens on ``cfg.host``/``cfg.port``
    (port 0 picks a free port, read :attr:`port`); leaving stops intake and cancels the open
    streams. ``ivr_seconds`` bounds an ``ivr`` stream: the server then sends a hangup frame and
    Asterisk's dialplan continues to the queue (trace 11: the server closed after 9 s).
    """

    def __init__(self, cfg: AudioSocketConfig, *, sample_rate: int, recognizer: Recognizer,
                 calls: CallDirectory, sink_factory: SinkFactory,
                 on_dtmf: DtmfListener | None = None, ivr_seconds: float | None = 9.0) -> None:
        self._cfg = cfg
        self._rate = sample_rate
        self._recognizer = recognizer
        self._calls = calls
        self._sink_factory = sink_factory
        self._on_dtmf = on_dtmf
        self._ivr_seconds = ivr_seconds
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._open: set[str] = set()
        self.port = cfg.port
        self.stats = AudioSocketStats()

    @property
    def active_streams(self) -> int:
        """Streams being transcribed now."""
        return self.stats.active

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._connection, self._cfg.host,
                                                  self._cfg.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("AudioSocket 服务监听于 %s:%d / AudioSocket server listening",
                 self._cfg.host, self.port)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop accepting, cancel every open stream (recognisers freed), wait for them."""
        if self._server is not None:
            self._server.close()
            self._server = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel("AudioSocket server closing")
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one connection -----------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        # asyncio.start_server runs this in a task it does not keep: keep it here so close()
        # can cancel it (3.11's Server.wait_closed does not wait for handlers).
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        try:
            await self._serve(reader, writer, f"{peer[0]}:{peer[1]}" if peer else "?")
        except asyncio.CancelledError:
            # Only close() cancels these tasks, and nobody awaits their result. Ending
            # normally keeps 3.11's start_server callback from logging the cancellation as
            # an error ("Exception in callback StreamReaderProtocol...": task.exception()
            # raises CancelledError on a cancelled task).
            return
        except Exception:
            # A bug in a sink, a DTMF listener or the recogniser ends this stream only; it is
            # counted and logged loudly, the server keeps serving the other calls.
            self.stats.ended["internal_error"] += 1
            log.exception("音频流处理出错 / AudioSocket stream failed (peer %s)", peer)
        finally:
            self._tasks.discard(task)
            await self._close_writer(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer: str) -> None:
        async with contextlib.AsyncExitStack() as stack:
            try:
                uuid = await self._read_uuid(reader)
                call = await self._calls.wait_for(uuid, self._cfg.correlate_seconds)
                if call is None:
                    raise _Refused("unknown_call", uuid)
                if uuid in self._open:
                    raise _Refused("duplicate_uuid", uuid)
                sink = self._sink_factory(call)
                try:
                    stream = await stack.enter_async_context(
                        self._recognizer.open(uuid, self._rate, sink))
                except CapacityExceeded as exc:
                    raise _Refused("capacity", f"{uuid}: {exc}") from None
            except _Refused as refused:
                self.stats.rejected[refused.reason] += 1
                if refused.reason == "reset":
                    log.info("音频流在 UUID 前断开 / AudioSocket peer reset before its UUID: "
                             "peer=%s %s", peer, refused.detail)
                    return
                log.warning("拒绝音频流 / AudioSocket stream refused: %s (%s) peer=%s %s",
                            REASON_TEXT.get(refused.reason, refused.reason), refused.reason,
                            peer, refused.detail)
                await self._hang_up(reader, writer)
                return
            self._open.add(uuid)
            self.stats.accepted += 1
            self.stats.active += 1
            log.info("开始转写 / transcribing stream %s of call %s (%s) from %s",
                     uuid, call.linkedid, call.purpose, peer)
            try:
                reason, detail = await self._pump(reader, stream, call)
                # Whatever ended it, the audio received is real: deliver its final result.
                await stream.finish()
            finally:
                self.stats.active -= 1
                self._open.discard(uuid)
        self.stats.ended[reason] += 1
        level = logging.INFO if reason in NORMAL_ENDS else logging.WARNING
        log.log(level, "音频流结束 / stream %s of call %s ended: %s (%s) %s", uuid,
                call.linkedid, REASON_TEXT.get(reason, reason), reason, detail)
        if reason not in ("hangup", "eof", "reset"):
            await self._hang_up(reader, writer)

    async def _read_uuid(self, reader: asyncio.StreamReader) -> str:
        try:
            async with asyncio.timeout(self._cfg.idle_seconds):
                first = await read_frame(reader)
        except TimeoutError:
            raise _Refused("uuid_timeout") from None
        except FrameError as exc:
            raise _Refused(exc.reason, str(exc)) from None
        except ConnectionError as exc:
            raise _Refused("reset", type(exc).__name__) from None
        if first is None:
            raise _Refused("empty")
        if first.kind != Kind.UUID:
            reason = "audio_before_uuid" if first.sample_rate else "no_uuid"
            raise _Refused(reason, f"kind 0x{first.kind:02x}")
        try:
            return parse_uuid(first.payload)
        except FrameError as exc:
            raise _Refused(exc.reason, str(exc)) from None

    async def _pump(self, reader: asyncio.StreamReader, stream: RecognitionStream,
                    call: CallRef) -> tuple[str, str]:
        """Feed audio until the stream ends; returns (reason, detail)."""
        loop = asyncio.get_running_loop()
        limit, limit_reason = self._cfg.max_stream_seconds, "too_long"
        if call.purpose == "ivr" and self._ivr_seconds is not None \
                and self._ivr_seconds < limit:
            limit, limit_reason = self._ivr_seconds, "ivr_window"
        deadline = loop.time() + limit
        received = 0   # bytes of audio
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return limit_reason, ""
            try:
                async with asyncio.timeout(min(left, self._cfg.idle_seconds)):
                    frame = await read_frame(reader)
            except TimeoutError:
                if deadline - loop.time() <= 0:
                    return limit_reason, ""
                return "idle", f"{self._cfg.idle_seconds:g} s"
            except FrameError as exc:
                return exc.reason, str(exc)
            except ConnectionError as exc:
                # A peer that resets the socket (a crashed or restarted Asterisk, a NAT that
                # dropped the flow) is not a server error: the stream ends like at EOF, its
                # audio finished, one line and a count instead of a traceback.
                return "reset", type(exc).__name__
            if frame is None:
                return "eof", ""
            rate = frame.sample_rate
            if rate is not None:
                if rate != self._rate:
                    return "sample_rate", f"{rate} Hz, recogniser {self._rate} Hz"
                await stream.feed(frame.payload)
                received += len(frame.payload)
                self.stats.audio_seconds += len(frame.payload) / (2 * rate)
                continue
            end = await self._control(frame, call, received / (2 * self._rate))
            if end is not None:
                return end

    async def _control(self, frame: Frame, call: CallRef, at: float) -> tuple[str, str] | None:
        if frame.kind == Kind.HANGUP:
            return "hangup", ""
        if frame.kind == Kind.ERROR:
            return "asterisk_error", describe_error(frame.payload)
        if frame.kind == Kind.UUID:
            return "unexpected_uuid", ""
        try:
            digit = parse_dtmf(frame.payload)
        except FrameError as exc:
            return exc.reason, str(exc)
        self.stats.dtmf += 1
        log.info("通话 %s 按键 %s / DTMF at %.2f s", call.linkedid, digit, at)
        if self._on_dtmf is not None:
            await self._on_dtmf(call, digit, at)
        return None

    @staticmethod
    async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Hangup frame, then a lingering close: closing a socket with unread audio in it
        makes the kernel send RST, which can destroy the hangup frame before Asterisk reads
        it (Asterisk then fails the app instead of continuing the dialplan; seen in
        tests). So: send, shut our side, discard what still arrives until the peer closes."""
        try:
            writer.write(hangup_frame())
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(LINGER_SECONDS):
                while await reader.read(65536):
                    pass
        except (ConnectionError, RuntimeError, TimeoutError):
            pass   # the peer is gone or silent: nothing more to tell it

    @staticmethod
    async def _close_writer(writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
